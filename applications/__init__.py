"""ConvNeXt builders: the generic ``ConvNeXt``, one function per variant, ``create_model`` and features.

The per-variant builders (``ConvNeXtTiny``, ...) are listed once, by the variant table (``variants.__all__``).
"""

from keras_convnext.applications import variants
from keras_convnext.applications.convnext import ConvNeXt
from keras_convnext.applications.convnext_model import ConvNeXtModel
from keras_convnext.applications.features import dense_features, feature_extractor
from keras_convnext.applications.variants import *  # noqa: F403 (the builders, one per row of the table)

__all__ = ["ConvNeXt", "ConvNeXtModel", "dense_features", "feature_extractor"]
__all__ += variants.__all__
