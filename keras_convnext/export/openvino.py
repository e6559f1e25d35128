"""``export_openvino``: an OpenVINO IR (``model.xml`` + ``model.bin``) of a model from any backend, float32 or int8.

The model (pixels 0..255 in, its preprocessing inside) is traced under TensorFlow with an open batch size and
converted by OpenVINO's ``convert_model`` (through Keras' ``model.export(format="openvino")``), which fuses the
LayerNorm, exact GELU and depthwise conv into its own ops. Under JAX or PyTorch the model is rebuilt under TensorFlow
in a subprocess from its saved file, as for SavedModel and LiteRT. Needs ``pip install keras-convnext[openvino]``.

``quantization="int8"`` converts the calibrated QDQ ONNX file of ``export_onnx`` instead (``model_int8.xml``):
OpenVINO turns its QuantizeLinear/DequantizeLinear pairs into FakeQuantize ops and runs the convolutions and matmuls
on its int8 kernels.
"""

import tempfile
from pathlib import Path

import keras

from keras_convnext.atomic_files import atomic_write_path
from keras_convnext.export import calibration
from keras_convnext.trained_model import describe_source, load_source

INSTALL_HINT = "OpenVINO export needs the openvino package: pip install keras-convnext[openvino] (or openvino)."


def check_openvino_installed():
    """Raises ``ValueError`` with the install command unless ``openvino`` imports.

    Example:
        >>> check_openvino_installed()  # doctest: +SKIP
    """
    try:
        import openvino  # noqa: F401
    except ImportError as error:
        raise ValueError(INSTALL_HINT) from error


QUANTIZATIONS = ("float32", "int8")


def export_openvino(model_or_file, out_dir, *, variant=None, classes=None, image_size=None, quantization="float32",
                    calibration_images=None):
    """Writes ``out_dir/model.xml`` and ``out_dir/model.bin`` (``model_int8.*`` when quantized) and returns the
    ``.xml`` path.

    ``model_or_file`` is what ``export_saved_model`` takes (a model, a ``.keras`` file, a ``.weights.h5`` with its
    variant, a training run folder); ``quantization="int8"`` needs ``calibration_images``, a folder of images like
    the ones the model will see. Both files are written under temporary names and renamed once complete, the
    ``.bin`` first; a missing ``openvino`` or a bad argument is refused before anything is built.

    Example:
        >>> export_openvino("runs/flowers", "openvino/flowers")  # doctest: +SKIP
        PosixPath('openvino/flowers/model.xml')
    """
    target = calibration.quantized_target(out_dir, "model.xml", quantization, QUANTIZATIONS, "OpenVINO")
    check_openvino_installed()
    if quantization == "int8":
        return _export_int8(model_or_file, target, variant, classes, image_size, calibration_images)
    calibration.calibration_files(quantization, calibration_images)  # refuses a folder given for float32
    with tempfile.TemporaryDirectory() as scratch:
        spec = describe_source(model_or_file, scratch, variant=variant, classes=classes, image_size=image_size)
        if keras.backend.backend() == "tensorflow":
            write_openvino(spec, target)
        else:
            from keras_convnext.export.tensorflow_process import run_in_tensorflow_process

            run_in_tensorflow_process("openvino", spec, target, {})
    return target


def write_openvino(spec, target):
    """Builds the model of ``spec`` under the TensorFlow backend and writes its OpenVINO IR to ``target`` (``.xml``).

    Example:
        >>> write_openvino({"kind": "keras", "path": "m.keras"}, Path("out/model.xml"))  # doctest: +SKIP
    """
    import tensorflow as tf

    from keras_convnext.layers.fast_paths import portable_only

    check_openvino_installed()
    model = load_source(spec)
    signature = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="images")]
    with portable_only(), tempfile.TemporaryDirectory() as scratch:
        converted = Path(scratch) / "model.xml"
        model.export(str(converted), format="openvino", verbose=False, input_signature=signature)
        _move_ir(converted, target)
    return target


def _export_int8(model_or_file, target, variant, classes, image_size, calibration_images):
    import openvino

    from keras_convnext.export.onnx import export_onnx

    with tempfile.TemporaryDirectory() as scratch:
        onnx_file = export_onnx(model_or_file, scratch, variant=variant, classes=classes, image_size=image_size,
                                quantization="int8", calibration_images=calibration_images)
        converted = Path(scratch) / "model.xml"
        openvino.save_model(openvino.convert_model(str(onnx_file)), str(converted), compress_to_fp16=False)
        _move_ir(converted, target)
    return target


def _move_ir(converted, target):
    """Copies an IR (``.xml`` and its ``.bin``) to ``target``, each file whole or not at all, the ``.bin`` first."""
    with atomic_write_path(target.with_suffix(".bin"), suffix=".partial.bin") as partial:
        partial.write_bytes(converted.with_suffix(".bin").read_bytes())
    with atomic_write_path(target, suffix=".partial.xml") as partial:
        partial.write_bytes(converted.read_bytes())
