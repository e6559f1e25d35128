"""``export_onnx``: an ONNX file of a model, through Keras' own ``model.export(format="onnx")``."""

import tempfile
from pathlib import Path

from keras_convnext.atomic_files import atomic_write_path
from keras_convnext.layers.fast_paths import portable_only
from keras_convnext.trained_model import describe_source, load_source


def export_onnx(model_or_file, out_dir, *, variant=None, classes=None, image_size=None):
    """Writes ``out_dir/model.onnx`` (float32 pixels 0..255 in, the model's outputs out) from the active backend.

    Keras converts with tf2onnx under TensorFlow and JAX and with ``torch.onnx`` under PyTorch. The file is
    written under a temporary name and renamed once complete.

    Example:
        >>> export_onnx("runs/flowers", "onnx/flowers")  # a train --output folder  # doctest: +SKIP
        PosixPath('onnx/flowers/model.onnx')
    """
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as scratch:
        spec = describe_source(model_or_file, scratch, variant=variant, classes=classes, image_size=image_size)
        model = load_source(spec)
        height, width, channels = model.input_shape[1:]
        if None in (height, width):
            raise ValueError(f"ONNX export needs a fixed input size; the model takes {model.input_shape}.")
        import numpy as np

        model(np.zeros((1, height, width, channels), "float32"))  # Keras exports only models that have been called
        with atomic_write_path(out_dir / "model.onnx", suffix=".partial.onnx") as partial, portable_only():
            model.export(str(partial), format="onnx", verbose=False)
    return out_dir / "model.onnx"
