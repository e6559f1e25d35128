"""ONNX export from the active backend (tf2onnx, jax2onnx or torch.onnx, as Keras picks), run by onnxruntime."""

import numpy as np
import pytest

import keras_convnext as kc
from helpers import BACKEND, TINY_ARCH, perturb
from keras_convnext.cli import main
from keras_convnext.export.onnx import export_onnx

onnxruntime = pytest.importorskip("onnxruntime")


def _run(path, x):
    session = onnxruntime.InferenceSession(str(path))
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("data_format", ["channels_last", pytest.param("channels_first", marks=pytest.mark.large)])
def test_onnxruntime_matches_keras(tmp_path, data_format):
    shape = (32, 32, 3) if data_format == "channels_last" else (3, 32, 32)
    model = perturb(kc.ConvNeXt(**TINY_ARCH, input_shape=shape, classes=5, data_format=data_format))
    path = export_onnx(model, tmp_path / "onnx")
    assert path.name == "model.onnx" and not [p for p in path.parent.iterdir() if "partial" in p.name]
    x = np.random.default_rng(0).uniform(0, 255, (3, *shape)).astype("float32")
    np.testing.assert_allclose(_run(path, x), model.predict(x, verbose=0), atol=1e-4)


@pytest.mark.large
def test_cli_exports_a_named_variant_to_onnx(tmp_path):
    model = perturb(kc.create_model("convnextv2_atto", input_shape=(32, 32, 3), classes=3), scale=0.02)
    weights = kc.weights.save_weights(model, tmp_path / "v2.weights.h5")
    assert main(["export", str(weights), str(tmp_path / "out"), "--format", "onnx", "--variant", "convnextv2_atto",
                 "--classes", "3", "--image-size", "32"]) == 0
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(_run(tmp_path / "out" / "model.onnx", x), model.predict(x, verbose=0), atol=1e-4)
