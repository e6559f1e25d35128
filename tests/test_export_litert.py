"""``keras-convnext export --format litert``: a LiteRT file on builtin ops only that the interpreter runs with the
Keras model's outputs (float32), or with the same top-1 (float16, dynamic-range int8), from every backend."""

import keras
import numpy as np
import pytest

import keras_convnext as kc
from helpers import BACKEND, perturb
from keras_convnext.cli import main

ARCH = {"depths": (1, 1, 1, 1), "dims": (32, 64, 96, 128)}  # pointwise kernels above 1024 weights: int8 applies


def _interpreter(path):
    from ai_edge_litert.interpreter import Interpreter  # LiteRT's own interpreter, the [litert] extra

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    return interpreter


def _run(interpreter, images):
    (given,), (taken,) = interpreter.get_input_details(), interpreter.get_output_details()
    outputs = []
    for image in images:  # the file takes one image at a time (batch 1, as on a device)
        interpreter.set_tensor(given["index"], image[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(taken["index"])[0])
    return np.stack(outputs)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    model = perturb(kc.ConvNeXt(**ARCH, input_shape=(32, 32, 3), classes=6, classifier_activation=None))
    path = tmp_path_factory.mktemp("litert") / "tiny.weights.h5"
    model.save_weights(path)
    return model, path


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the fast tier converts in this TensorFlow process; JAX and "
                    "PyTorch convert in a TensorFlow subprocess, tested in the large tier")
def test_each_quantization_runs_in_the_interpreter_on_builtin_ops(weights_file, tmp_path, rng):
    from keras_convnext.export.litert import QUANTIZATIONS, export_litert

    model, _ = weights_file
    images = rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    expected = model.predict(images, verbose=0)
    calibration = _image_folder(tmp_path / "calibration", rng.uniform(0, 255, (16, 40, 48, 3)))
    sizes = {}
    for quantization in QUANTIZATIONS:
        path = export_litert(model, tmp_path / "out", quantization=quantization,
                             calibration_images=calibration if quantization == "int8" else None)
        sizes[quantization] = path.stat().st_size
        interpreter = _interpreter(path)
        ops = {op["op_name"] for op in interpreter._get_ops_details()}
        assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops
        assert {"CONV_2D", "DEPTHWISE_CONV_2D", "RSQRT"} <= ops, ops
        got = _run(interpreter, images)
        delta = float(np.abs(got - expected).max()) / float(np.abs(expected).max())
        print(f"{quantization}: {sizes[quantization]} bytes, max |delta| / scale {delta:.1e}")
        limit = {"float32": 1e-5, "float16": 1e-2, "dynamic_int8": 1e-1, "int8": 0.3}[quantization]
        assert delta < limit, (quantization, delta)
        if quantization in ("float32", "float16"):
            np.testing.assert_array_equal(got.argmax(1), expected.argmax(1))
        if quantization == "int8":  # integer kernels throughout: every conv and matmul reads int8 activations
            tensors = interpreter.get_tensor_details()
            for op in interpreter._get_ops_details():
                if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL"):
                    assert tensors[op["inputs"][0]]["dtype"] == np.int8, op
    assert sizes["float16"] < 0.6 * sizes["float32"] and sizes["dynamic_int8"] < 0.4 * sizes["float32"], sizes
    assert sizes["int8"] < 0.4 * sizes["float32"], sizes
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "model.tflite", "model_dynamic_int8.tflite", "model_float16.tflite", "model_int8.tflite"]


def _image_folder(folder, pixels):
    """A folder of PNGs (in a sub-folder, as calibration folders may nest) made from ``pixels``."""
    import PIL.Image

    (folder / "nested").mkdir(parents=True)
    for index, image in enumerate(pixels):
        PIL.Image.fromarray(image.astype("uint8")).save(folder / "nested" / f"{index}.png")
    return folder


@pytest.mark.parametrize("calibration", ["missing", "empty", "not_for_float16"])
def test_int8_without_calibration_images_is_refused_before_writing(weights_file, tmp_path, rng, capsys, calibration):
    _, weights = weights_file
    out = tmp_path / "out"
    args = ["export", str(weights), str(out), "--variant", "convnext_atto", "--classes", "6", "--format", "litert"]
    if calibration == "missing":
        expected = "int8 quantization is calibrated on your images: name a folder of them (--calibration-images DIR)"
        args += ["--quantize", "int8"]
    elif calibration == "empty":
        (tmp_path / "empty").mkdir()
        expected = "No images (.bmp, .gif, .jpeg, .jpg, .png) found anywhere under"
        args += ["--quantize", "int8", "--calibration-images", str(tmp_path / "empty")]
    else:
        expected = "calibration_images is for int8 quantization only; got quantization='float16'"
        args += ["--quantize", "float16", "--calibration-images", str(_image_folder(tmp_path / "cal", np.zeros((1, 8, 8, 3))))]
    assert main(args) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("keras-convnext export: error: ") and expected in error[0], error
    assert not out.exists()


@pytest.mark.large
def test_the_cli_exports_from_any_backend(weights_file, tmp_path, rng, capsys):
    # Under JAX and PyTorch the conversion runs in a TensorFlow subprocess from the saved .keras file.
    model, _ = weights_file
    keras_file = tmp_path / "tiny.keras"
    model.save(keras_file)
    assert main(["export", str(keras_file), str(tmp_path / "out"), "--format", "litert"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'out' / 'model.tflite'}"
    images = rng.uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    got = _run(_interpreter(tmp_path / "out" / "model.tflite"), images)
    expected = keras.ops.convert_to_numpy(model(images, training=False))
    assert float(np.abs(got - expected).max()) <= 1e-4 * max(1.0, float(np.abs(expected).max()))


def test_an_open_size_model_or_an_unknown_quantization_is_refused_before_writing(tmp_path, capsys):
    open_size = kc.ConvNeXt(**ARCH, input_shape=(None, None, 3), classes=6)
    keras_file = tmp_path / "open.keras"
    open_size.save(keras_file)
    assert main(["export", str(keras_file), str(tmp_path / "out"), "--format", "litert"]) == 2
    assert "LiteRT export needs a fixed input size; the model takes (None, None, None, 3)" in capsys.readouterr().err
    from keras_convnext.export.litert import export_litert

    with pytest.raises(ValueError, match=r"Unknown LiteRT quantization 'int4'; expected one of float32, float16, "):
        export_litert(keras_file, tmp_path / "out", quantization="int4")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
