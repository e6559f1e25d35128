"""Loads weight files under $KERAS_BACKEND, writes the logits, and saves each model's weights again from here.

Usage: KERAS_BACKEND=jax python -m workers.cross_backend JOBS.json
JOBS.json: a list of {"weights", "kwargs" (for kc.ConvNeXt), "images" (.npy), "logits" (.npy out), "resaved" (out)}.
"""

import json
import sys

import keras
import numpy as np

import keras_convnext as kc

if __name__ == "__main__":
    for job in json.loads(open(sys.argv[1]).read()):
        model = kc.ConvNeXt(**job["kwargs"])
        model.load_weights(job["weights"])
        np.save(job["logits"], model.predict(np.load(job["images"]), verbose=0))
        model.save_weights(job["resaved"])
    print(keras.backend.backend(), "ok")
