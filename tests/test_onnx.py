"""ONNX export from the active backend (tf2onnx, jax2onnx or torch.onnx, as Keras picks), run by onnxruntime."""

import importlib.util

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


QUANTIZED_ARCH = {"depths": (1, 1, 1, 1), "dims": (32, 64, 96, 128)}  # every pointwise layer big enough to quantize


@pytest.fixture(scope="module")
def quantized_files(tmp_path_factory):
    """A small model, its dynamic-range and calibrated int8 ONNX files and its int8 OpenVINO IR, and 8 images."""
    from helpers.image_folders import write_image_folder
    from keras_convnext.export import export_openvino
    from keras_convnext.export.calibration import calibration_batches

    folder = tmp_path_factory.mktemp("quantized")
    model = perturb(kc.ConvNeXt(**QUANTIZED_ARCH, input_shape=(32, 32, 3), classes=6, classifier_activation=None))
    calibration = write_image_folder(folder / "calibration", per_class=6, size=40)
    files = {quantization: export_onnx(model, folder / "onnx", quantization=quantization,
                                       calibration_images=calibration if quantization == "int8" else None)
             for quantization in ("dynamic_int8", "int8")}
    if importlib.util.find_spec("openvino"):
        files["openvino_int8"] = export_openvino(model, folder / "openvino", quantization="int8",
                                                 calibration_images=calibration)
    images = write_image_folder(folder / "images", per_class=3, size=32, seed=1)
    pixels = np.concatenate(list(calibration_batches(sorted(images.rglob("*.*")), 32, 32)))
    return model, files, pixels


@pytest.mark.fast_tier_backend("torch")  # the quantizer reads the exported file; the full tier exports from every backend
def test_int8_onnx_files_keep_the_answers_in_onnxruntime_on_integer_kernels(quantized_files):
    import onnx

    model, files, images = quantized_files
    expected = model.predict(images, verbose=0)
    assert sorted(p.name for p in files["int8"].parent.iterdir()) == ["model_dynamic_int8.onnx", "model_int8.onnx"]
    for quantization, limit in (("dynamic_int8", 0.1), ("int8", 0.3)):
        got = _run(files[quantization], images)
        delta = float(np.abs(got - expected).max()) / float(np.abs(expected).max())
        assert delta < limit, (quantization, delta)
        assert np.mean(got.argmax(1) == expected.argmax(1)) >= 0.75, quantization
        graph = onnx.load(str(files[quantization])).graph
        ops = {node.op_type for node in graph.node}
        int8_weights = {tensor.name for tensor in graph.initializer if tensor.data_type == onnx.TensorProto.INT8}
        assert len(int8_weights) >= 2 * sum(QUANTIZED_ARCH["depths"]), quantization  # both pointwise layers per block
        if quantization == "int8":  # QDQ: every convolution and matmul reads a dequantized input
            producers = {output: node.op_type for node in graph.node for output in node.output}
            computing = [node for node in graph.node if node.op_type in ("Conv", "MatMul", "Gemm")]
            assert computing and all(producers.get(node.input[0]) == "DequantizeLinear" for node in computing), ops
        else:
            assert "DynamicQuantizeLinear" in ops, ops


@pytest.mark.fast_tier_backend("torch")
def test_openvino_runs_the_int8_file_on_its_integer_kernels(quantized_files):
    openvino = pytest.importorskip("openvino", reason="the openvino extra is not installed; make install and CI do")
    model, files, images = quantized_files
    assert sorted(p.name for p in files["openvino_int8"].parent.iterdir()) == ["model_int8.bin", "model_int8.xml"]
    compiled = openvino.Core().compile_model(str(files["openvino_int8"]), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled(images)[compiled.output(0)]
    expected = model.predict(images, verbose=0)
    assert float(np.abs(got - expected).max()) / float(np.abs(expected).max()) < 0.3
    np.testing.assert_allclose(got, _run(files["int8"], images), atol=0.05 * float(np.abs(expected).max()))
    precisions = [op.get_rt_info()["runtimePrecision"].astype(str) for op in compiled.get_runtime_model().get_ops()
                  if op.get_rt_info()["layerType"].astype(str) in ("Convolution", "FullyConnected")]
    assert precisions and all(precision in ("u8", "i8") for precision in precisions), precisions


@pytest.mark.parametrize("case", ["float16_onnx", "dynamic_openvino", "missing_images", "saved_model"])
def test_a_quantization_a_format_cannot_make_is_refused_before_writing(tmp_path, capsys, case):
    model = kc.ConvNeXt(**TINY_ARCH, input_shape=(32, 32, 3), classes=5)
    keras_file = tmp_path / "m.keras"
    model.save(keras_file)
    format_, quantize, expected = {
        "float16_onnx": ("onnx", "float16", "Unknown ONNX quantization 'float16'; expected one of float32, "
                                            "dynamic_int8, int8."),
        "dynamic_openvino": ("openvino", "dynamic_int8", "Unknown OpenVINO quantization 'dynamic_int8'; expected "
                                                         "one of float32, int8."),
        "missing_images": ("onnx", "int8", "int8 quantization is calibrated on your images: name a folder of them"),
        "saved_model": ("saved_model", "int8", "--quantize and --calibration-images are for --format onnx, litert or "
                                               "openvino; --format saved_model writes float32."),
    }[case]
    assert main(["export", str(keras_file), str(tmp_path / "out"), "--format", format_, "--quantize", quantize]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("keras-convnext export: error: ") and expected in error[0], error
    assert not (tmp_path / "out").exists()
