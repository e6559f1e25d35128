"""One ``fit`` lowers the loss, in float32 and under mixed precision, on the active backend."""

import keras
import numpy as np
import pytest

import keras_convnext as kc
from conftest import BACKEND, TINY_ARCH


def _batch(rng, n=8):
    images = rng.uniform(0, 255, (n, 32, 32, 3)).astype("float32")
    labels = np.arange(n) % 4
    return images, labels


def _fit_and_evaluate(model, images, labels, steps):
    model.compile(optimizer=keras.optimizers.AdamW(2e-3), loss="sparse_categorical_crossentropy")
    before = model.evaluate(images, labels, verbose=0)
    history = model.fit(images, labels, batch_size=len(images), epochs=steps, verbose=0)
    after = model.evaluate(images, labels, verbose=0)
    return before, history.history["loss"], after


def test_fit_lowers_the_loss_on_a_tiny_batch(rng):
    keras.utils.set_random_seed(0)
    model = kc.ConvNeXt(**TINY_ARCH, input_shape=(32, 32, 3), classes=4, drop_path_rate=0.1)
    images, labels = _batch(rng)
    before, losses, after = _fit_and_evaluate(model, images, labels, steps=8)
    assert np.all(np.isfinite(losses))
    assert after < before * 0.8, (before, after)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_builds_predicts_and_trains(rng, policy):
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    model = kc.ConvNeXt(**TINY_ARCH, input_shape=(32, 32, 3), classes=4)
    block = model.get_layer("stage_2_block_1")
    assert block.compute_dtype == policy.split("_")[1] and block.variable_dtype == "float32"
    images, labels = _batch(rng)
    probs = model.predict(images, verbose=0)
    assert probs.dtype == np.float32 and np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-3)
    before, losses, after = _fit_and_evaluate(model, images, labels, steps=3)
    assert np.all(np.isfinite(losses)) and np.isfinite(after)
    assert after < before, (BACKEND, policy, before, after)
