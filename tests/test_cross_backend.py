"""One weight file gives the same logits on TensorFlow, JAX and PyTorch, each in a fresh process.

Runs once per suite (marked ``once``): the file is written under the active backend and loaded under the other
two, which write it again; the files they write hold the same tensors under the same names, so a file written
under any backend loads under every other.
"""

import json

import h5py
import numpy as np
import pytest

import keras_convnext as kc
from helpers import BACKEND, BACKENDS, TINY_ARCH, perturb, run_worker
from helpers.foreign_checkpoints import SMALL, hugging_face_logits, hugging_face_model, normalised_images, save, to_timm

TOLERANCE = 1e-5


def _tensors(path):
    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: found.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return found


@pytest.mark.once
def test_weight_files_give_the_same_logits_on_every_backend(tmp_path, rng):
    # A model with every layer (LayerScale, GRN, the preprocessing), saved here; and a V2 checkpoint in timm's
    # layout, converted here, whose logits must equal the Hugging Face model's it came from.
    every_layer = {**TINY_ARCH, "input_shape": [64, 64, 3], "classes": 7, "classifier_activation": None}
    model = perturb(kc.ConvNeXt(**every_layer), seed=42)
    model.save_weights(tmp_path / "every_layer.weights.h5")
    pixels = rng.uniform(0, 255, (3, 64, 64, 3)).astype("float32")

    reference = hugging_face_model("V2")
    v2 = {"depths": SMALL["depths"], "dims": SMALL["hidden_sizes"], "use_grn": True, "layer_scale_init_value": None,
          "include_preprocessing": False, "classifier_activation": None, "classes": 5, "input_shape": [64, 64, 3]}
    checkpoint = save(to_timm(reference.state_dict()), tmp_path / "model.safetensors")
    kc.weights.convert(checkpoint, kc.ConvNeXt(**v2), tmp_path / "converted.weights.h5")
    images = normalised_images(rng)

    np.save(tmp_path / "pixels.npy", pixels)
    np.save(tmp_path / "images.npy", images)
    expected = {"every_layer": model.predict(pixels, verbose=0), "converted": hugging_face_logits(reference, images)}
    assert np.abs(expected["every_layer"]).max() > 0.1  # real logits, not a degenerate model
    inputs = {"every_layer": ("pixels.npy", every_layer), "converted": ("images.npy", v2)}

    for other in sorted(set(BACKENDS) - {BACKEND}):
        jobs = [{"weights": str(tmp_path / f"{name}.weights.h5"), "kwargs": kwargs, "images": str(tmp_path / data),
                 "logits": str(tmp_path / f"{name}-{other}.npy"), "resaved": str(tmp_path / f"{name}-{other}.weights.h5")}
                for name, (data, kwargs) in inputs.items()]
        (tmp_path / "jobs.json").write_text(json.dumps(jobs))
        result = run_worker("cross_backend", tmp_path / "jobs.json", backend=other)
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"{other} ok" in result.stdout
        for name in inputs:
            got = np.load(tmp_path / f"{name}-{other}.npy")
            delta = float(np.abs(got - expected[name]).max())
            print(f"{name}: {BACKEND} -> {other}: max |delta logits| = {delta:.2e}")
            assert delta <= TOLERANCE * max(1.0, float(np.abs(expected[name]).max())), (name, other, delta)
            written_here, written_there = (_tensors(tmp_path / f"{name}{suffix}.weights.h5") for suffix in ("", f"-{other}"))
            assert written_here.keys() == written_there.keys(), (name, other)
            for key, value in written_here.items():
                np.testing.assert_array_equal(written_there[key], value, err_msg=f"{name} {other} {key}")
