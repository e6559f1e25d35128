"""Weights saved under the active backend load under the other two with the same logits (fresh processes)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import keras_convnext as kc
from conftest import BACKEND, perturb
from cross_backend_worker import CROSS_BACKEND_MODEL

WORKER = Path(__file__).with_name("cross_backend_worker.py")
TOLERANCE = 1e-5


@pytest.mark.parametrize("other", sorted({"tensorflow", "jax", "torch"} - {BACKEND}))
def test_weights_give_the_same_logits_on_another_backend(tmp_path, rng, other):
    model = perturb(kc.ConvNeXt(**CROSS_BACKEND_MODEL), seed=42)
    images = rng.uniform(0, 255, (3, 64, 64, 3)).astype("float32")
    np.save(tmp_path / "images.npy", images)
    model.save_weights(tmp_path / "model.weights.h5")
    expected = model.predict(images, verbose=0)
    assert np.abs(expected).max() > 0.1  # real logits, not a degenerate model

    env = {**os.environ, "KERAS_BACKEND": other}
    result = subprocess.run(
        [sys.executable, str(WORKER), str(tmp_path / "model.weights.h5"), str(tmp_path / "images.npy"), str(tmp_path / "out.npy")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{other} ok" in result.stdout
    got = np.load(tmp_path / "out.npy")
    delta = np.abs(got - expected).max()
    print(f"{BACKEND} -> {other}: max |delta logits| = {delta:.2e} (logits up to {np.abs(expected).max():.2f})")
    assert delta <= TOLERANCE
