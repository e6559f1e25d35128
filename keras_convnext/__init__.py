"""keras-convnext: ConvNeXt V1, V2 and isotropic for Keras 3 on TensorFlow, JAX and PyTorch.

The public API is ``__all__``: the builders of ``applications`` (one per variant), the layers of ``layers``,
and the functions below.

Example:
    >>> import keras_convnext as kc
    >>> kc.count_parameters("convnext_tiny")
    28589128
    >>> kc.create_model("convnext_atto", input_shape=(32, 32, 3), classes=10).output_shape
    (None, 10)
"""

from keras_convnext.process_setup import disable_ynn_fusion_on_jax_cpu

disable_ynn_fusion_on_jax_cpu()

# ruff: noqa: E402, F403
from keras_convnext import applications, distribute, export, layers, pretraining, training, weights
from keras_convnext.applications import *
from keras_convnext.compiled_inference import compile_for_inference
from keras_convnext.conversion import convert_weights
from keras_convnext.imagenet import decode_predictions, imagenet_classes, preprocess_image
from keras_convnext.layers import *
from keras_convnext.version import __version__
from keras_convnext.weight_folding import optimize_for_inference

__all__ = [
    "__version__",
    "applications",
    "compile_for_inference",
    "convert_weights",
    "decode_predictions",
    "distribute",
    "export",
    "imagenet_classes",
    "layers",
    "optimize_for_inference",
    "preprocess_image",
    "pretraining",
    "training",
    "weights",
]
__all__ += applications.__all__
__all__ += layers.__all__
