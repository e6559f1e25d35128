"""Layer normalisation over the channel axis, computed in float32."""

import keras
from keras import ops

from keras_convnext.layers.data_format import channel_axis, standardize_data_format
from keras_convnext.layers import jax_cpu_gradients
from keras_convnext.layers.fast_paths import fast_path, torch_functional


@keras.saving.register_keras_serializable(package="keras_convnext")
class LayerNorm(keras.layers.Layer):
    """Normalises each position over its channels: ``(x - mean) / sqrt(var + eps) * gamma + beta``.

    Statistics and the affine transform run in float32 whatever the compute dtype, so ``mixed_float16``
    and ``mixed_bfloat16`` give the same normalised values as float32; the output is cast back to the
    layer's compute dtype.

    Args:
        epsilon: added to the variance. ConvNeXt uses 1e-6 (Keras' own default, 1e-3, is wrong here).
        affine: learn ``gamma`` and ``beta``; ``optimize_for_inference`` turns it off where it folds them into
            the next layer.
        data_format: ``"channels_last"`` or ``"channels_first"``; ``None`` takes Keras' global default.

    Example:
        >>> import numpy as np
        >>> norm = LayerNorm(epsilon=1e-6)
        >>> tuple(norm(np.ones((2, 7, 7, 96), "float32")).shape)
        (2, 7, 7, 96)
    """

    def __init__(self, epsilon=1e-6, data_format="channels_last", affine=True, **kwargs):
        super().__init__(**kwargs)
        if not epsilon > 0:
            raise ValueError(f"LayerNorm epsilon must be > 0; got {epsilon!r}.")
        self.epsilon = float(epsilon)
        self.affine = bool(affine)
        self.data_format = standardize_data_format(data_format)
        self.axis = channel_axis(self.data_format)
        self.supports_masking = True

    # Whether the affine transform has a shift (``beta``); the scale-only norms (RmsNorm, SimpleNorm) have none.
    has_shift = True

    def build(self, input_shape):
        channels = input_shape[self.axis]
        if channels is None:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} needs a known channel dimension; got input shape {input_shape}."
            )
        if self.affine:
            self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
            if self.has_shift:
                self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")

    def _broadcastable(self, vector, rank):
        if self.axis == -1 or rank == 2:
            return vector
        return ops.reshape(vector, (-1,) + (1,) * (rank - 2))

    def normalize(self, x):
        """``x`` (float32) normalised over the channel axis, before the affine transform."""
        mean = ops.mean(x, axis=self.axis, keepdims=True)
        centered = x - mean
        variance = ops.mean(ops.square(centered), axis=self.axis, keepdims=True)
        return centered * ops.rsqrt(variance + self.epsilon)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        gamma = ops.cast(self.gamma, "float32") if self.affine else None
        beta = ops.cast(self.beta, "float32") if self.affine and self.has_shift else None
        path = fast_path("layer_norm") if type(self) is LayerNorm and self.axis == -1 else "portable"
        if path == "torch_layer_norm":
            return ops.cast(torch_functional.layer_norm(x, (x.shape[-1],), gamma, beta, self.epsilon), self.compute_dtype)
        if path == "jax_cpu_gradient" and self.affine and None not in x.shape:
            normalized = jax_cpu_gradients.layer_norm_with_cpu_gradient(x, gamma, beta, self.epsilon)
            return ops.cast(normalized, self.compute_dtype)
        x = self.normalize(x)
        if self.affine:
            rank = len(inputs.shape)
            x = x * self._broadcastable(gamma, rank)
            if beta is not None:
                x = x + self._broadcastable(beta, rank)
        return ops.cast(x, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon, "data_format": self.data_format, "affine": self.affine})
        return config
