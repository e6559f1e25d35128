"""``export_litert``: a LiteRT (TFLite) file of a model from any backend, on builtin ops only, float32 or quantized.

The model (pixels 0..255 in, its preprocessing inside) is traced under TensorFlow at one fixed input shape, batch 1,
and converted by ``tf.lite.TFLiteConverter`` restricted to ``TFLITE_BUILTINS``: a graph that would need a Flex
(TensorFlow) op fails to convert instead of silently leaving XNNPack. ConvNeXt's LayerNorm, exact GELU and
depthwise conv become MEAN / SQUARED_DIFFERENCE / RSQRT, GELU and DEPTHWISE_CONV_2D. Quantization:

- ``"float32"``: the weights as they are;
- ``"float16"``: weights stored in float16 (half the file), computed in float32 by XNNPack;
- ``"dynamic_int8"``: dynamic-range quantization, weights in int8 (about a quarter of the file), activations
  quantized on the fly by the kernels that support it;
- ``"int8"``: full-integer post-training quantization, weights and activations in int8 on ``TFLITE_BUILTINS_INT8``
  kernels, its activation ranges calibrated on a folder of the user's images (``calibration_images``); the file
  still takes float pixels and returns float outputs (a quantize op in, a dequantize op out).

Under JAX or PyTorch the model is rebuilt under TensorFlow in a subprocess from its saved file, as for SavedModel.
"""

import tempfile
from pathlib import Path

import keras

from keras_convnext.atomic_files import atomic_write_path
from keras_convnext.export import calibration
from keras_convnext.trained_model import describe_source, load_source

QUANTIZATIONS = ("float32", "float16", "dynamic_int8", "int8")


def export_litert(model_or_file, out_dir, *, variant=None, classes=None, image_size=None, quantization="float32",
                  calibration_images=None):
    """Writes ``out_dir/model.tflite`` (``model_<quantization>.tflite`` when quantized) and returns its path.

    ``model_or_file`` is what ``export_saved_model`` takes (a model, a ``.keras`` file, a ``.weights.h5`` with its
    variant, a training run folder). ``quantization="int8"`` needs ``calibration_images``, a folder of images like
    the ones the model will see (see ``export.calibration``). The file is
    written under a temporary name and renamed once complete; bad arguments are refused before anything is built.

    Example:
        >>> export_litert("runs/flowers", "litert/flowers", quantization="int8",
        ...               calibration_images="flowers/val")  # doctest: +SKIP
        PosixPath('litert/flowers/model_int8.tflite')
    """
    target = calibration.quantized_target(out_dir, "model.tflite", quantization, QUANTIZATIONS, "LiteRT")
    options = {"quantization": quantization,
               "calibration_files": calibration.calibration_files(quantization, calibration_images)}
    with tempfile.TemporaryDirectory() as scratch:
        spec = describe_source(model_or_file, scratch, variant=variant, classes=classes, image_size=image_size)
        if keras.backend.backend() == "tensorflow":
            write_litert(spec, target, **options)
        else:
            from keras_convnext.export.tensorflow_process import run_in_tensorflow_process

            run_in_tensorflow_process("litert", spec, target, options)
    return target


def litert_interpreter(path, num_threads=None):
    """An allocated LiteRT interpreter for the file at ``path``: ai-edge-litert's (``pip install
    keras-convnext[litert]``), else TensorFlow's ``tf.lite`` (the same API, older kernels).

    Example:
        >>> litert_interpreter("litert/flowers/model.tflite").get_input_details()[0]["shape"]  # doctest: +SKIP
        array([  1, 224, 224,   3], dtype=int32)
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
    interpreter.allocate_tensors()
    return interpreter


def write_litert(spec, target, *, quantization="float32", calibration_files=None):
    """Builds the model of ``spec`` under the TensorFlow backend and writes its LiteRT file to ``target``.

    Example:
        >>> write_litert({"kind": "keras", "path": "m.keras"}, Path("out/model.tflite"))  # doctest: +SKIP
    """
    import tensorflow as tf

    from keras_convnext.layers.fast_paths import portable_only

    model = load_source(spec)
    height, width, channels = model.input_shape[1:]
    if None in (height, width):
        raise ValueError(
            f"LiteRT export needs a fixed input size; the model takes {model.input_shape}. Build it with an "
            "input_shape, or pass --image-size for a .weights.h5."
        )
    target_spec = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}  # no Flex fallback
    if quantization == "float16":
        target_spec["supported_types"] = [tf.float16]
    converter_settings = {"target_spec": target_spec}
    if quantization != "float32":
        converter_settings["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if quantization == "int8":  # every op an int8 kernel, or the conversion fails (no float fallback)
        target_spec["supported_ops"] = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter_settings["representative_dataset"] = lambda: ([batch] for batch in calibration.calibration_batches(
            calibration_files, height, width))
    signature = [tf.TensorSpec((1, height, width, channels), tf.float32, name="images")]
    # Keras' own LiteRT exporter (through a SavedModel, which freezes the variables as TensorFlow's converter wants).
    with portable_only(), tempfile.TemporaryDirectory() as scratch:
        converted = Path(scratch) / "model.tflite"
        model.export(str(converted), format="litert", verbose=False, input_signature=signature, **converter_settings)
        content = converted.read_bytes()
    with atomic_write_path(target, suffix=".partial.tflite") as partial:
        partial.write_bytes(content)
    return target
