"""ConvNeXt-V2's Global Response Normalization (GRN)."""

import keras
from keras import ops

# sqrt's gradient is infinite at 0, so a channel that is all zeros (common in bfloat16, and at 1x1 feature maps)
# would make every gradient NaN; flooring the sum of squares at float32's smallest normal number gives it a zero
# gradient there, as torch.linalg.vector_norm does, and changes Gx by at most 1e-19.
_SUM_OF_SQUARES_FLOOR = 1.1754944e-38

from keras_convnext.layers.data_format import channel_axis, standardize_data_format


@keras.saving.register_keras_serializable(package="keras_convnext")
class GlobalResponseNorm(keras.layers.Layer):
    """``gamma * (x * Nx) + beta + x`` with ``Nx = Gx / (mean_c(Gx) + eps)`` and ``Gx`` the spatial L2 norm.

    ``Gx`` is the L2 norm of each channel over height and width; ``Nx`` divides it by its mean over the
    channels. ``gamma`` and ``beta`` start at zero, so a new GRN is the identity. The arithmetic runs in
    float32 under mixed precision.

    ``call(x, visible=...)`` is the masked (sparse) GRN of FCMAE pretraining: ``visible`` is 1 at the positions that
    exist and 0 at removed ones (shape ``(B, H, W, 1)``, or ``(B, 1, H, W)`` channels-first), and ``Gx`` is the norm
    over the visible positions of the *whole batch*, as the official sparse code (``MinkowskiGRN``) takes it.
    Outputs at removed positions are meaningless there; the caller zeroes them.

    Args:
        epsilon: added to the channel mean of ``Gx`` (1e-6 in the official code, timm and Hugging Face).
        data_format: ``"channels_last"`` or ``"channels_first"``; ``None`` takes Keras' global default.

    Example:
        >>> import numpy as np
        >>> grn = GlobalResponseNorm()
        >>> tuple(grn(np.ones((2, 7, 7, 384), "float32")).shape)
        (2, 7, 7, 384)
    """

    def __init__(self, epsilon=1e-6, data_format="channels_last", **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)
        self.data_format = standardize_data_format(data_format)
        self.axis = channel_axis(self.data_format)
        self.spatial_axes = (1, 2) if self.axis == -1 else (2, 3)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"GlobalResponseNorm expects a 4-D image tensor; got shape {input_shape}.")
        channels = input_shape[self.axis]
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="zeros")
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")

    def call(self, inputs, visible=None):
        x = ops.cast(inputs, "float32")
        if visible is None:
            sum_of_squares = ops.sum(ops.square(x), axis=self.spatial_axes, keepdims=True)
        else:
            kept = x * ops.cast(visible, "float32")
            sum_of_squares = ops.sum(ops.square(kept), axis=(0, *self.spatial_axes), keepdims=True)
        gx = ops.sqrt(ops.maximum(sum_of_squares, _SUM_OF_SQUARES_FLOOR))
        nx = gx / (ops.mean(gx, axis=self.axis, keepdims=True) + self.epsilon)
        gamma = ops.cast(self.gamma, "float32")
        beta = ops.cast(self.beta, "float32")
        if self.axis != -1:
            gamma = ops.reshape(gamma, (-1, 1, 1))
            beta = ops.reshape(beta, (-1, 1, 1))
        return ops.cast(gamma * (x * nx) + beta + x, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon, "data_format": self.data_format})
        return config
