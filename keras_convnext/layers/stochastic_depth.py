"""Stochastic depth ("drop path"): drops a whole residual branch per sample while training."""

import keras
from keras import ops

from keras_convnext.layers.fast_paths import torch


@keras.saving.register_keras_serializable(package="keras_convnext")
class StochasticDepth(keras.layers.Layer):
    """Zeroes the input for a random ``rate`` of the samples in a batch and rescales the rest by ``1 / (1 - rate)``.

    Apply it to a residual branch before the addition. At inference, and at any time when ``rate == 0``,
    it returns its input unchanged.

    Args:
        rate: probability of dropping a sample's branch, in ``[0, 1)``.
        seed: optional integer seed for the dropping pattern.

    Example:
        >>> import numpy as np
        >>> drop = StochasticDepth(rate=0.1)
        >>> tuple(drop(np.ones((4, 7, 7, 8), "float32"), training=False).shape)
        (4, 7, 7, 8)
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        rate = float(rate)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"StochasticDepth rate must be in [0, 1); got {rate!r}.")
        self.rate = rate
        self.seed = seed
        # Like keras.layers.Dropout: a seed generator only when something is ever dropped.
        self.seed_generator = keras.random.SeedGenerator(seed) if rate > 0 else None
        self.supports_masking = True

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        keep_prob = 1.0 - self.rate
        mask_shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        if torch is not None and torch.compiler.is_compiling():
            # Keras' seeded torch generator is dynamo-disabled (pytorch#88576), a graph break per block; under
            # torch.compile the mask comes from torch's global generator, which keras.utils.set_random_seed seeds.
            random = torch.rand(mask_shape, dtype=inputs.dtype, device=inputs.device)
        else:
            random = keras.random.uniform(mask_shape, seed=self.seed_generator, dtype=self.compute_dtype)
        keep = ops.cast(random < keep_prob, self.compute_dtype)
        return inputs * keep / keep_prob

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config
