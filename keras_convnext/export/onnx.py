"""``export_onnx``: an ONNX file of a model, through Keras' own ``model.export(format="onnx")``, float32 or int8.

Quantization is ONNX Runtime's own (``onnxruntime.quantization``):

- ``"dynamic_int8"``: the weights of the convolutions and matmuls in int8, activations quantized on the fly;
- ``"int8"``: static post-training quantization in QDQ form (QuantizeLinear/DequantizeLinear pairs around each
  convolution and matmul: uint8 activations, per-channel int8 weights), its activation ranges calibrated on a
  folder of the user's images (``export.calibration``). ONNX Runtime and OpenVINO both run QDQ files on their int8
  kernels; the file still takes float pixels and returns float outputs.
"""

import tempfile
from pathlib import Path

from keras_convnext.atomic_files import atomic_write_path
from keras_convnext.export import calibration
from keras_convnext.layers.fast_paths import portable_only
from keras_convnext.trained_model import describe_source, load_source

QUANTIZATIONS = ("float32", "dynamic_int8", "int8")


def export_onnx(model_or_file, out_dir, *, variant=None, classes=None, image_size=None, quantization="float32",
                calibration_images=None):
    """Writes ``out_dir/model.onnx`` (``model_<quantization>.onnx`` when quantized: float32 pixels 0..255 in, the
    model's outputs out) from the active backend, and returns its path.

    Keras converts with tf2onnx under TensorFlow and JAX and with ``torch.onnx`` under PyTorch.
    ``quantization="int8"`` needs ``calibration_images``, a folder of images like the ones the model will see. The
    file is written under a temporary name and renamed once complete; bad arguments are refused before anything is
    built.

    Example:
        >>> export_onnx("runs/flowers", "onnx/flowers")  # a train --output folder  # doctest: +SKIP
        PosixPath('onnx/flowers/model.onnx')
        >>> export_onnx("runs/flowers", "onnx/flowers", quantization="int8",
        ...             calibration_images="flowers/val")  # doctest: +SKIP
        PosixPath('onnx/flowers/model_int8.onnx')
    """
    target = calibration.quantized_target(out_dir, "model.onnx", quantization, QUANTIZATIONS, "ONNX")
    files = calibration.calibration_files(quantization, calibration_images)
    if quantization != "float32":
        _check_onnxruntime_installed()
    with tempfile.TemporaryDirectory() as scratch:
        spec = describe_source(model_or_file, scratch, variant=variant, classes=classes, image_size=image_size)
        model = load_source(spec)
        height, width, channels = model.input_shape[1:]
        if None in (height, width):
            raise ValueError(f"ONNX export needs a fixed input size; the model takes {model.input_shape}.")
        import numpy as np

        model(np.zeros((1, height, width, channels), "float32"))  # Keras exports only models that have been called
        float_file = Path(scratch) / "float32.onnx"
        with atomic_write_path(target if quantization == "float32" else float_file, suffix=".partial.onnx") as partial:
            with portable_only():
                model.export(str(partial), format="onnx", verbose=False)
        if quantization != "float32":
            with atomic_write_path(target, suffix=".partial.onnx") as partial:
                quantize_onnx_file(float_file, partial, quantization, files, (height, width), scratch)
    return target


def _check_onnxruntime_installed():
    try:
        import onnxruntime.quantization  # noqa: F401
    except ImportError as error:
        raise ValueError("ONNX quantization is ONNX Runtime's: pip install keras-convnext[onnx] (or onnxruntime).") \
            from error


def quantize_onnx_file(source, target, quantization, files, size, scratch):
    """Writes ``source`` (a float32 ONNX file) quantized by ONNX Runtime to ``target``: ``"dynamic_int8"``, or
    ``"int8"`` (QDQ) calibrated on ``files`` read at ``size`` (height, width).

    Example:
        >>> quantize_onnx_file("model.onnx", "model_int8.onnx", "int8", ["cat.jpg"], (224, 224), "/tmp")  # doctest: +SKIP
    """
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quant_pre_process,
                                          quantize_dynamic, quantize_static)

    if quantization == "dynamic_int8":
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
        return
    # Shape inference and ONNX Runtime's graph fusions first, as its quantization guide asks: the ranges are then
    # calibrated on the graph the runtime will run.
    prepared = Path(scratch) / "prepared.onnx"
    quant_pre_process(str(source), str(prepared))
    import onnx

    input_name = onnx.load(str(prepared), load_external_data=False).graph.input[0].name

    class Images(CalibrationDataReader):
        def __init__(self):
            self.batches = calibration.calibration_batches(files, *size)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    # uint8 activations with int8 weights: ONNX Runtime's advice for x86 CPUs (VNNI), and what OpenVINO reads.
    quantize_static(str(prepared), str(target), Images(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
