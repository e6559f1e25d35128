"""The scale-only norms of timm's small ConvNeXts, and the one place a norm is made from its name.

``RmsNorm`` (timm's ``RmsNorm2d``, ``convnext_atto_rms``) divides each position by the root mean square of its
channels; ``SimpleNorm`` (timm's ``SimpleNorm2d``, ``convnext_zepto_rms``) by their standard deviation, the
unbiased one as ``torch.var`` computes it, without centring. Both then scale by a learned ``gamma`` (no shift).
They are ``LayerNorm``s in everything else: float32 statistics under mixed precision, the same config, and
``affine=False`` for ``optimize_for_inference``.
"""

import keras
from keras import ops

from keras_convnext.layers.layer_norm import LayerNorm

NORM_TYPES = ("layernorm", "rmsnorm", "simplenorm")


@keras.saving.register_keras_serializable(package="keras_convnext")
class RmsNorm(LayerNorm):
    """``x / sqrt(mean(x**2) + eps) * gamma`` over the channel axis (timm's ``RmsNorm2d``).

    Example:
        >>> import numpy as np
        >>> norm = RmsNorm(epsilon=1e-6)
        >>> round(float(norm(np.full((1, 2, 2, 4), 3.0, "float32"))[0, 0, 0, 0]), 5)  # 3 / sqrt(9)
        1.0
    """

    has_shift = False

    def normalize(self, x):
        return x * ops.rsqrt(ops.mean(ops.square(x), axis=self.axis, keepdims=True) + self.epsilon)


@keras.saving.register_keras_serializable(package="keras_convnext")
class SimpleNorm(LayerNorm):
    """``x / sqrt(var(x) + eps) * gamma`` over the channel axis, with the unbiased variance and no centring
    (timm's ``SimpleNorm2d``).

    Example:
        >>> import numpy as np
        >>> norm = SimpleNorm(epsilon=1e-6)
        >>> values = norm(np.array([[1.0, 3.0]], "float32"))  # var = 2 (unbiased), so x / sqrt(2)
        >>> [round(float(value), 4) for value in keras.ops.convert_to_numpy(values)[0]]
        [0.7071, 2.1213]
    """

    has_shift = False

    def normalize(self, x):
        channels = x.shape[self.axis]
        centered = x - ops.mean(x, axis=self.axis, keepdims=True)
        variance = ops.sum(ops.square(centered), axis=self.axis, keepdims=True) / (channels - 1)
        return x * ops.rsqrt(variance + self.epsilon)


NORM_CLASSES = {"layernorm": LayerNorm, "rmsnorm": RmsNorm, "simplenorm": SimpleNorm}


def check_norm_type(norm_type):
    """``norm_type`` if it names a norm, else ``ValueError`` listing them.

    Example:
        >>> check_norm_type("rmsnorm")
        'rmsnorm'
    """
    if norm_type not in NORM_CLASSES:
        raise ValueError(f"Unknown norm_type {norm_type!r}; expected one of {', '.join(NORM_TYPES)}.")
    return norm_type


def channel_norm(norm_type, epsilon, **kwargs):
    """The norm ``norm_type`` names (``"layernorm"``, ``"rmsnorm"`` or ``"simplenorm"``), built with ``kwargs``.

    Example:
        >>> type(channel_norm("simplenorm", 1e-6, name="stem_layernorm")).__name__
        'SimpleNorm'
    """
    return NORM_CLASSES[check_norm_type(norm_type)](epsilon, **kwargs)
