"""Per-channel learnable scale of a residual branch (CaiT's LayerScale, as ConvNeXt V1 uses it)."""

import keras
from keras import ops

from keras_convnext.layers import jax_cpu_gradients
from keras_convnext.layers.data_format import channel_axis, standardize_data_format
from keras_convnext.layers.fast_paths import fast_path


@keras.saving.register_keras_serializable(package="keras_convnext")
class LayerScale(keras.layers.Layer):
    """Multiplies each channel by a learnable ``gamma`` that starts at ``init_value``.

    Args:
        init_value: the starting value of every ``gamma`` entry (ConvNeXt V1 uses 1e-6).
        data_format: ``"channels_last"`` or ``"channels_first"``; ``None`` takes Keras' global default.

    Example:
        >>> import numpy as np
        >>> scale = LayerScale(init_value=1e-6)
        >>> tuple(scale(np.ones((1, 4, 4, 8), "float32")).shape)
        (1, 4, 4, 8)
    """

    def __init__(self, init_value=1e-6, data_format="channels_last", **kwargs):
        super().__init__(**kwargs)
        self.init_value = float(init_value)
        self.data_format = standardize_data_format(data_format)
        self.axis = channel_axis(self.data_format)

    def build(self, input_shape):
        self.gamma = self.add_weight(
            name="gamma",
            shape=(input_shape[self.axis],),
            initializer=keras.initializers.Constant(self.init_value),
        )

    def call(self, inputs):
        gamma = ops.cast(self.gamma, self.compute_dtype)
        if self.axis == -1 and fast_path("dense") == "jax_cpu_gradient" and None not in inputs.shape:
            return jax_cpu_gradients.channel_scale_with_cpu_gradient(inputs, gamma)
        if self.axis != -1:
            gamma = ops.reshape(gamma, (-1,) + (1,) * (len(inputs.shape) - 2))
        return inputs * gamma

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"init_value": self.init_value, "data_format": self.data_format})
        return config
