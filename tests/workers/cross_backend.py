"""Run by test_cross_backend.py in a fresh process: loads a weight file under $KERAS_BACKEND, writes the logits.

Usage: KERAS_BACKEND=jax python cross_backend_worker.py WEIGHTS.weights.h5 IMAGES.npy OUT.npy [CONVNEXT_KWARGS_JSON]
"""

import json
import sys

import numpy as np

import keras
import keras_convnext as kc
from conftest import TINY_ARCH

CROSS_BACKEND_MODEL = {**TINY_ARCH, "input_shape": (64, 64, 3), "classes": 7, "classifier_activation": None}

if __name__ == "__main__":
    weights, images, out = sys.argv[1:4]
    kwargs = json.loads(sys.argv[4]) if len(sys.argv) > 4 else CROSS_BACKEND_MODEL
    model = kc.ConvNeXt(**kwargs)
    model.load_weights(weights)
    logits = model.predict(np.load(images), verbose=0)
    np.save(out, logits)
    print(keras.backend.backend(), "ok")
