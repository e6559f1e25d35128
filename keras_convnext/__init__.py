"""keras-convnext: ConvNeXt V1, V2 and isotropic for Keras 3 on TensorFlow, JAX and PyTorch.

Example:
    >>> import keras_convnext as kc
    >>> kc.create_model("convnext_tiny").count_params()
    28589128
"""

from keras_convnext.layers.fast_paths import disable_ynn_fusion_on_jax_cpu

disable_ynn_fusion_on_jax_cpu()

from keras_convnext import distribute, export, layers, training, weights  # noqa: E402
from keras_convnext.applications import (
    BUILDERS,
    VARIANTS,
    ConvNeXt,
    ConvNeXtAtto,
    ConvNeXtBase,
    ConvNeXtFemto,
    ConvNeXtIsotropicBase,
    ConvNeXtIsotropicLarge,
    ConvNeXtIsotropicSmall,
    ConvNeXtLarge,
    ConvNeXtNano,
    ConvNeXtPico,
    ConvNeXtSmall,
    ConvNeXtTiny,
    ConvNeXtV2Atto,
    ConvNeXtV2Base,
    ConvNeXtV2Femto,
    ConvNeXtV2Huge,
    ConvNeXtV2Large,
    ConvNeXtV2Nano,
    ConvNeXtV2Pico,
    ConvNeXtV2Small,
    ConvNeXtV2Tiny,
    ConvNeXtXLarge,
    ConvNeXtXXLarge,
    count_parameters,
    create_model,
    feature_extractor,
    get_variant,
    list_models,
)
from keras_convnext.conversion import convert_weights
from keras_convnext.evaluation import decode_predictions, imagenet_classes, preprocess_image
from keras_convnext.inference import optimize_for_inference
from keras_convnext.layers import (
    ConvNeXtBlock,
    ConvNeXtDownsample,
    ConvNeXtStem,
    DepthwiseConv,
    GlobalResponseNorm,
    LayerNorm,
    LayerScale,
    StochasticDepth,
)
from keras_convnext.version import __version__
