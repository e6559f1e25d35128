"""The downsampling layer between ConvNeXt stages: LayerNorm, then a 2×2 stride-2 conv."""

import keras
from keras import ops

from keras_convnext.layers.data_format import halve_mask, standardize_data_format, strided_conv
from keras_convnext.layers.initializers import kernel_initializer
from keras_convnext.layers.scale_norms import channel_norm, check_norm_type


@keras.saving.register_keras_serializable(package="keras_convnext")
class ConvNeXtDownsample(keras.layers.Layer):
    """Halves the spatial size and changes the width to ``filters``.

    ``call(x, visible=...)`` is the sparse downsampling of FCMAE pretraining: ``visible`` (1 at kept positions, 0
    at removed ones; ``(B, H, W, 1)`` or ``(B, 1, H, W)``, constant on each 2x2 cell) zeroes the removed positions
    before the conv and after it, so that they neither feed nor receive anything.

    Args:
        filters: output channels.
        norm_epsilon: the LayerNorm epsilon.
        norm_type: ``"layernorm"``, ``"rmsnorm"`` or ``"simplenorm"`` (the sub-layer keeps the name ``_layernorm``).
        data_format: ``"channels_last"`` or ``"channels_first"``; ``None`` takes Keras' global default.

    Example:
        >>> import numpy as np
        >>> down = ConvNeXtDownsample(192, name="stage_1_downsample")
        >>> tuple(down(np.ones((1, 14, 14, 96), "float32")).shape)
        (1, 7, 7, 192)
    """

    def __init__(self, filters, norm_epsilon=1e-6, data_format="channels_last", norm_type="layernorm", **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.norm_epsilon = float(norm_epsilon)
        self.norm_type = check_norm_type(norm_type)
        self.data_format = standardize_data_format(data_format)
        self.layernorm = channel_norm(
            self.norm_type, self.norm_epsilon, data_format=self.data_format, dtype=self.dtype_policy,
            name=f"{self.name}_layernorm",
        )
        self.conv = keras.layers.Conv2D(
            self.filters,
            2,
            strides=2,
            kernel_initializer=kernel_initializer(),
            data_format=self.data_format,
            dtype=self.dtype_policy,
            name=f"{self.name}_conv",
        )

    def build(self, input_shape):
        self.layernorm.build(input_shape)
        self.conv.build(input_shape)

    def call(self, inputs, visible=None):
        spatial = inputs.shape[1:3] if self.data_format == "channels_last" else inputs.shape[2:4]
        if any(side is not None and side < 2 for side in spatial):
            # TensorFlow would say only "Negative dimension size caused by subtracting 2 from 1".
            raise ValueError(
                f"The image is too small for this ConvNeXt: {self.name} got a {spatial[0]}x{spatial[1]} feature map "
                "to halve. The standard variants need images of at least 32x32 pixels (the stem divides the side "
                "by 4, then each of three downsamplings by 2)."
            )
        x = self.layernorm(inputs)
        if visible is None:
            return strided_conv(self.conv, x)
        x = strided_conv(self.conv, x * ops.cast(visible, x.dtype))
        return x * ops.cast(halve_mask(visible, self.data_format), x.dtype)

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "norm_epsilon": self.norm_epsilon, "data_format": self.data_format,
                       "norm_type": self.norm_type})
        return config
