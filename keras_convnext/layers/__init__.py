"""ConvNeXt's layers, one file each, all registered for ``.keras`` loading without ``custom_objects``."""

from keras_convnext.layers.convnext_block import ConvNeXtBlock
from keras_convnext.layers.depthwise_conv import DepthwiseConv
from keras_convnext.layers.downsample import ConvNeXtDownsample
from keras_convnext.layers.global_response_norm import GlobalResponseNorm
from keras_convnext.layers.layer_norm import LayerNorm
from keras_convnext.layers.layer_scale import LayerScale
from keras_convnext.layers.pixel_normalization import PixelNormalization
from keras_convnext.layers.scale_norms import RmsNorm, SimpleNorm
from keras_convnext.layers.stem import ConvNeXtStem
from keras_convnext.layers.stochastic_depth import StochasticDepth

__all__ = [
    "ConvNeXtBlock",
    "ConvNeXtDownsample",
    "ConvNeXtStem",
    "DepthwiseConv",
    "GlobalResponseNorm",
    "LayerNorm",
    "LayerScale",
    "PixelNormalization",
    "RmsNorm",
    "SimpleNorm",
    "StochasticDepth",
]
