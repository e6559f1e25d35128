"""What the quantized exports share: the file each quantization writes, and the images that full-integer (int8)
quantization calibrates its activation ranges on.

A user names a folder of images like the ones the model will see (any nesting); the first ``CALIBRATION_LIMIT`` in
name order are read, each resized to the model's input size as Keras' own image loader resizes (bilinear), as
0..255 float32 RGB: the exported files take pixels, their preprocessing inside.
"""

from pathlib import Path

import numpy as np

# Images the int8 calibration reads at most (TensorFlow's converter and ONNX Runtime document a few hundred as enough).
CALIBRATION_LIMIT = 200


def quantized_target(out_dir, file_name, quantization, choices, runtime):
    """``out_dir/file_name`` for float32, ``out_dir/model_<quantization>.<ext>`` otherwise; ``ValueError`` naming
    ``runtime``'s ``choices`` for a quantization it does not make.

    Example:
        >>> quantized_target("out", "model.onnx", "int8", ("float32", "int8"), "ONNX").as_posix()
        'out/model_int8.onnx'
    """
    if quantization not in choices:
        raise ValueError(f"Unknown {runtime} quantization {quantization!r}; expected one of {', '.join(choices)}.")
    name = Path(file_name)
    return Path(out_dir) / (file_name if quantization == "float32" else f"{name.stem}_{quantization}{name.suffix}")


def calibration_files(quantization, calibration_images, calibrated=("int8",)):
    """The image files to calibrate ``quantization`` on, or ``None`` where it needs none; ``ValueError`` before
    anything is built for a missing or empty folder, unreadable images, or a folder given for another quantization.

    Example:
        >>> calibration_files("float16", None) is None
        True
        >>> calibration_files("int8", "flowers/val")[:1]  # a folder of yours  # doctest: +SKIP
        ['flowers/val/daisy/1.jpg']
    """
    if quantization not in calibrated:
        if calibration_images is not None:
            raise ValueError(f"calibration_images is for int8 quantization only; got quantization={quantization!r}.")
        return None
    if calibration_images is None:
        raise ValueError("int8 quantization is calibrated on your images: name a folder of them "
                         "(--calibration-images DIR).")
    from keras_convnext.pretraining.unlabelled_images import scan_unlabelled_folder

    return [str(file) for file in scan_unlabelled_folder(calibration_images)[:CALIBRATION_LIMIT]]


def calibration_batches(files, height, width):
    """Each file as one ``(1, height, width, 3)`` float32 batch of 0..255 RGB (``keras.utils.load_img``, bilinear).

    Example:
        >>> next(calibration_batches(["cat.jpg"], 224, 224)).shape  # doctest: +SKIP
        (1, 224, 224, 3)
    """
    import keras

    for file in files:
        image = keras.utils.load_img(file, color_mode="rgb", target_size=(height, width), interpolation="bilinear")
        yield np.asarray(image, dtype="float32")[np.newaxis]
