"""What the tests share: the active backend, a tiny ConvNeXt, weight perturbation, gradients, worker processes.

Tests import from here (``from helpers import TINY_ARCH``); ``conftest.py`` holds fixtures and the tiers only.
"""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np

BACKEND = keras.backend.backend()
BACKENDS = ("tensorflow", "jax", "torch")
TESTS = Path(__file__).resolve().parent.parent

# A ConvNeXt small enough for a CPU test, with both LayerScale and GRN so that one model exercises every layer.
TINY_ARCH = {"depths": (1, 1, 2, 1), "dims": (8, 16, 24, 32), "use_grn": True, "layer_scale_init_value": 0.5}


def perturb(model, seed=0, scale=0.1):
    """Moves every weight away from its initial value.

    Default inits (zero GRN, 1e-6 LayerScale, unit norms, zero biases) make a block nearly the identity,
    which would hide a wrong GRN, LayerScale or norm in any comparison.
    """
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        value = keras.ops.convert_to_numpy(variable)
        variable.assign((value + rng.normal(0.0, scale, value.shape)).astype(value.dtype))
    return model


def loss_and_gradients(model, inputs, loss_of_outputs):
    """``(loss, gradients)`` of ``loss_of_outputs(model(inputs, training=True))`` w.r.t. every trainable variable,
    with the active backend's own autodiff, as NumPy."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_of_outputs(model(inputs, training=True))
        grads = tape.gradient(loss, [v.value for v in model.trainable_variables])
    elif BACKEND == "torch":
        loss = loss_of_outputs(model(inputs, training=True))
        model.zero_grad()
        loss.backward()
        grads = [v.value.grad for v in model.trainable_variables]
    else:
        import jax

        def compute(trainable):
            non_trainable = [v.value for v in model.non_trainable_variables]
            outputs, _ = model.stateless_call(trainable, non_trainable, inputs, training=True)
            return loss_of_outputs(outputs)

        loss, grads = jax.jit(jax.value_and_grad(compute))([v.value for v in model.trainable_variables])
    return float(keras.ops.convert_to_numpy(loss)), [keras.ops.convert_to_numpy(g) for g in grads]


def run_worker(name, *args, backend=BACKEND, env=None, timeout=900):
    """Runs ``tests/workers/<name>.py`` in a fresh interpreter under ``backend``; returns the finished process.

    For what needs a process of its own: another backend, devices fixed at start-up, a TensorFlow-only client.
    """
    environment = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    if backend is None:
        environment.pop("KERAS_BACKEND", None)
    else:
        environment["KERAS_BACKEND"] = backend
    return subprocess.run(
        [sys.executable, "-m", f"workers.{name}", *map(str, args)],
        env=environment, capture_output=True, text=True, timeout=timeout,
    )
