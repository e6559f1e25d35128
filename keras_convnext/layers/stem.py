"""The patchify stem: a ``patch_size`` × ``patch_size`` conv with the same stride, then LayerNorm."""

import keras

from keras_convnext.layers.data_format import channel_axis, standardize_data_format, strided_conv
from keras_convnext.layers.initializers import kernel_initializer
from keras_convnext.layers.layer_norm import LayerNorm


@keras.saving.register_keras_serializable(package="keras_convnext")
class ConvNeXtStem(keras.layers.Layer):
    """Cuts the image into non-overlapping patches and embeds each into ``filters`` channels.

    Hierarchical ConvNeXts use a 4×4 stride-4 conv followed by LayerNorm; the isotropic ConvNeXts of the
    paper's section 3 use a 16×16 stride-16 conv with no norm (``patch_size=16, use_norm=False``).

    Args:
        filters: output channels.
        patch_size: side and stride of the patchify conv.
        use_norm: follow the conv with LayerNorm.
        norm_epsilon: the LayerNorm epsilon.
        data_format: ``"channels_last"`` or ``"channels_first"``; ``None`` takes Keras' global default.

    Example:
        >>> import numpy as np
        >>> stem = ConvNeXtStem(96, name="stem")
        >>> tuple(stem(np.ones((1, 64, 64, 3), "float32")).shape)
        (1, 16, 16, 96)
    """

    def __init__(self, filters, patch_size=4, use_norm=True, norm_epsilon=1e-6, data_format="channels_last", **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.patch_size = int(patch_size)
        self.use_norm = bool(use_norm)
        self.norm_epsilon = float(norm_epsilon)
        self.data_format = standardize_data_format(data_format)
        self.conv = keras.layers.Conv2D(
            self.filters,
            self.patch_size,
            strides=self.patch_size,
            kernel_initializer=kernel_initializer(),
            data_format=self.data_format,
            dtype=self.dtype_policy,
            name=f"{self.name}_conv",
        )
        self.layernorm = (
            LayerNorm(self.norm_epsilon, data_format=self.data_format, dtype=self.dtype_policy, name=f"{self.name}_layernorm")
            if self.use_norm
            else None
        )

    def build(self, input_shape):
        self.conv.build(input_shape)
        if self.layernorm is not None:
            self.layernorm.build(self.conv.compute_output_shape(input_shape))

    def call(self, inputs):
        x = strided_conv(self.conv, inputs)
        return self.layernorm(x) if self.layernorm is not None else x

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "patch_size": self.patch_size,
                "use_norm": self.use_norm,
                "norm_epsilon": self.norm_epsilon,
                "data_format": self.data_format,
            }
        )
        return config
