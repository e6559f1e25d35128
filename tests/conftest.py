"""Shared fixtures. The suite runs unchanged under KERAS_BACKEND=tensorflow, jax and torch."""

import keras
import numpy as np
import pytest

BACKEND = keras.backend.backend()

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

        loss, grads = jax.value_and_grad(compute)([v.value for v in model.trainable_variables])
    return float(keras.ops.convert_to_numpy(loss)), [keras.ops.convert_to_numpy(g) for g in grads]


@pytest.fixture(autouse=True)
def _float32_policy():
    """Every test starts and ends under float32, even one that sets a mixed-precision policy and fails."""
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture(autouse=True)
def _private_weights_cache(tmp_path, monkeypatch):
    """Downloads and converted checkpoints go to the test's own folder, never to the user's ~/.keras."""
    monkeypatch.setenv("KERAS_CONVNEXT_CACHE", str(tmp_path / "weights-cache"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
