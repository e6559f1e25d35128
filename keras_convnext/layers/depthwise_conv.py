"""The depthwise convolution of the ConvNeXt block: the one place where backend fast paths live."""

import keras
from keras import ops

from keras_convnext.layers.data_format import channel_axis, standardize_data_format
from keras_convnext.layers.initializers import kernel_initializer


@keras.saving.register_keras_serializable(package="keras_convnext")
class DepthwiseConv(keras.layers.Layer):
    """A stride-1, "same"-padded depthwise convolution with bias.

    The kernel has Keras' ``DepthwiseConv2D`` layout ``(k, k, channels, 1)``; a PyTorch kernel of shape
    ``(channels, 1, k, k)`` converts with ``transpose(2, 3, 0, 1)``. ``kernel_size`` must be odd so that the
    padding is symmetric, as in PyTorch's ``padding=k // 2``.

    Args:
        kernel_size: odd side of the square kernel (7 in ConvNeXt).
        data_format: ``"channels_last"`` or ``"channels_first"``; ``None`` takes Keras' global default.

    Example:
        >>> conv = DepthwiseConv(kernel_size=7)
        >>> conv(np.ones((1, 14, 14, 96), "float32")).shape
        (1, 14, 14, 96)
    """

    def __init__(self, kernel_size=7, data_format="channels_last", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"DepthwiseConv kernel_size must be a positive odd integer; got {kernel_size!r}.")
        self.kernel_size = kernel_size
        self.data_format = standardize_data_format(data_format)
        self.axis = channel_axis(self.data_format)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"DepthwiseConv expects a 4-D image tensor; got shape {input_shape}.")
        channels = input_shape[self.axis]
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.kernel_size, self.kernel_size, channels, 1),
            initializer=kernel_initializer(),
        )
        self.bias = self.add_weight(name="bias", shape=(channels,), initializer="zeros")

    def call(self, inputs):
        x = ops.depthwise_conv(
            inputs,
            ops.cast(self.kernel, self.compute_dtype),
            strides=1,
            padding="same",
            data_format=self.data_format,
        )
        bias = ops.cast(self.bias, self.compute_dtype)
        if self.axis != -1:
            bias = ops.reshape(bias, (-1, 1, 1))
        return x + bias

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"kernel_size": self.kernel_size, "data_format": self.data_format})
        return config
