"""``keras-convnext export --format openvino``: an OpenVINO IR that OpenVINO's own runtime runs with the Keras model's
outputs, at any batch size, from every backend."""

import keras
import numpy as np
import pytest

import keras_convnext as kc
from helpers import BACKEND, perturb
from keras_convnext.cli import main

openvino = pytest.importorskip("openvino", reason="the openvino extra (pip install keras-convnext[openvino]) is not "
                               "installed; make install and CI install it")


def _run(xml, images):
    # f32: on a CPU with native bf16 (AVX512_BF16, AMX) OpenVINO computes in bf16 unless told otherwise.
    compiled = openvino.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled(images)[compiled.output(0)]


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    model = perturb(kc.ConvNeXt((1, 1, 2, 1), (16, 24, 32, 48), input_shape=(32, 32, 3), classes=6,
                                classifier_activation=None))
    path = tmp_path_factory.mktemp("openvino") / "tiny.keras"
    model.save(path)
    return model, path


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the fast tier converts in this TensorFlow process; JAX and "
                    "PyTorch convert in a TensorFlow subprocess, tested in the large tier")
def test_openvino_runs_the_model_with_its_outputs_at_any_batch_size(keras_file, tmp_path, rng):
    from keras_convnext.export import export_openvino

    model, _ = keras_file
    path = export_openvino(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin", "model.xml"]
    for batch in (1, 5):
        images = rng.uniform(0, 255, (batch, 32, 32, 3)).astype("float32")
        expected = keras.ops.convert_to_numpy(model(images, training=False))
        got = _run(path, images)
        assert got.shape == (batch, 6)
        assert float(np.abs(got - expected).max()) <= 1e-4 * max(1.0, float(np.abs(expected).max()))


@pytest.mark.large
def test_the_cli_exports_from_any_backend(keras_file, tmp_path, rng, capsys):
    # Under JAX and PyTorch the conversion runs in a TensorFlow subprocess from the saved .keras file.
    model, path = keras_file
    assert main(["export", str(path), str(tmp_path / "out"), "--format", "openvino"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'out' / 'model.xml'}"
    images = rng.uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(images, training=False))
    got = _run(tmp_path / "out" / "model.xml", images)
    assert float(np.abs(got - expected).max()) <= 1e-4 * max(1.0, float(np.abs(expected).max()))


def test_a_missing_openvino_is_named_before_anything_is_written(keras_file, tmp_path, monkeypatch, capsys):
    import sys

    _, path = keras_file
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    assert main(["export", str(path), str(tmp_path / "out"), "--format", "openvino"]) == 2
    assert "OpenVINO export needs the openvino package: pip install keras-convnext[openvino]" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
