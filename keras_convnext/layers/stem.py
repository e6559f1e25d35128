"""The stem: the patchify conv of the paper, or one of timm's overlapping stems, then a norm."""

import keras

from keras_convnext.layers.data_format import standardize_data_format, strided_conv
from keras_convnext.layers.initializers import kernel_initializer
from keras_convnext.layers.scale_norms import channel_norm, check_norm_type

STEM_TYPES = ("patch", "overlap", "overlap_tiered", "overlap_act")


def tiered_width(filters, divisor=8):
    """The first conv's width in timm's ``overlap_tiered`` stem: half of ``filters``, rounded as timm's
    ``make_divisible`` rounds (to a multiple of 8, never below 90% of the half).

    Example:
        >>> tiered_width(40), tiered_width(48), tiered_width(64)
        (24, 24, 32)
    """
    half = filters // 2
    width = max(divisor, int(half + divisor / 2) // divisor * divisor)
    return width + divisor if width < 0.9 * half else width


@keras.saving.register_keras_serializable(package="keras_convnext")
class ConvNeXtStem(keras.layers.Layer):
    """Embeds the image into ``filters`` channels at a quarter (``patch_size`` for ``"patch"``) of its side.

    - ``"patch"``: a ``patch_size`` × ``patch_size`` conv with the same stride (4 for hierarchical ConvNeXts; 16 with
      no norm for the isotropic ones of the paper's section 3), then the norm.
    - timm's overlapping stems (``stem_type`` of ``timm.models.convnext``): two 3×3 stride-2 convs, each padded by 1
      on every side, then the norm. ``"overlap"``: both ``filters`` wide; ``"overlap_tiered"``: the first
      ``tiered_width(filters)`` wide; ``"overlap_act"``: both ``filters`` wide with GELU between them.

    Sub-layers: ``{name}_conv`` (the first conv), ``{name}_conv_2`` (overlapping stems), ``{name}_layernorm`` (the
    norm slot, whatever ``norm_type``).

    Args:
        filters: output channels.
        patch_size: side and stride of the patchify conv (``"patch"`` only).
        use_norm: follow the conv with the norm.
        norm_epsilon: the norm's epsilon.
        data_format: ``"channels_last"`` or ``"channels_first"``; ``None`` takes Keras' global default.
        stem_type: one of ``STEM_TYPES``.
        norm_type: ``"layernorm"``, ``"rmsnorm"`` or ``"simplenorm"``.

    Example:
        >>> import numpy as np
        >>> stem = ConvNeXtStem(96, name="stem")
        >>> tuple(stem(np.ones((1, 64, 64, 3), "float32")).shape)
        (1, 16, 16, 96)
        >>> tuple(ConvNeXtStem(40, stem_type="overlap_tiered", name="stem")(np.ones((1, 64, 64, 3), "float32")).shape)
        (1, 16, 16, 40)
    """

    def __init__(self, filters, patch_size=4, use_norm=True, norm_epsilon=1e-6, data_format="channels_last",
                 stem_type="patch", norm_type="layernorm", **kwargs):
        super().__init__(**kwargs)
        if stem_type not in STEM_TYPES:
            raise ValueError(f"Unknown stem_type {stem_type!r}; expected one of {', '.join(STEM_TYPES)}.")
        self.filters = int(filters)
        self.patch_size = int(patch_size)
        self.use_norm = bool(use_norm)
        self.norm_epsilon = float(norm_epsilon)
        self.data_format = standardize_data_format(data_format)
        self.stem_type = stem_type
        self.norm_type = check_norm_type(norm_type)
        common = {"kernel_initializer": kernel_initializer(), "data_format": self.data_format,
                  "dtype": self.dtype_policy}
        if stem_type == "patch":
            self.conv = keras.layers.Conv2D(self.filters, self.patch_size, strides=self.patch_size,
                                            name=f"{self.name}_conv", **common)
            self.conv_2 = None
        else:
            first = tiered_width(self.filters) if stem_type == "overlap_tiered" else self.filters
            self.conv = keras.layers.Conv2D(first, 3, strides=2, name=f"{self.name}_conv", **common)
            self.conv_2 = keras.layers.Conv2D(self.filters, 3, strides=2, name=f"{self.name}_conv_2", **common)
        self.layernorm = (
            channel_norm(self.norm_type, self.norm_epsilon, data_format=self.data_format, dtype=self.dtype_policy,
                         name=f"{self.name}_layernorm")
            if self.use_norm
            else None
        )

    def _pad(self, x):
        # PyTorch's padding=1: one row and column of zeros on every side (Keras' "same" would pad only after).
        spatial = ((1, 1), (1, 1))
        return keras.ops.pad(x, ((0, 0), *spatial, (0, 0)) if self.data_format == "channels_last" else
                             ((0, 0), (0, 0), *spatial))

    def _padded_shape(self, input_shape):
        shape = list(input_shape)
        for axis in (1, 2) if self.data_format == "channels_last" else (2, 3):
            shape[axis] = None if shape[axis] is None else shape[axis] + 2
        return tuple(shape)

    def build(self, input_shape):
        if self.conv_2 is None:
            self.conv.build(input_shape)
            output_shape = self.conv.compute_output_shape(input_shape)
        else:
            padded = self._padded_shape(input_shape)
            self.conv.build(padded)
            middle = self._padded_shape(self.conv.compute_output_shape(padded))
            self.conv_2.build(middle)
            output_shape = self.conv_2.compute_output_shape(middle)
        if self.layernorm is not None:
            self.layernorm.build(output_shape)

    def call(self, inputs):
        if self.conv_2 is None:
            x = strided_conv(self.conv, inputs)
        else:
            x = strided_conv(self.conv, self._pad(inputs))
            if self.stem_type == "overlap_act":
                x = keras.ops.gelu(x, approximate=False)
            x = strided_conv(self.conv_2, self._pad(x))
        return self.layernorm(x) if self.layernorm is not None else x

    def compute_output_shape(self, input_shape):
        if self.conv_2 is None:
            return self.conv.compute_output_shape(input_shape)
        middle = self.conv.compute_output_shape(self._padded_shape(input_shape))
        return self.conv_2.compute_output_shape(self._padded_shape(middle))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "patch_size": self.patch_size,
                "use_norm": self.use_norm,
                "norm_epsilon": self.norm_epsilon,
                "data_format": self.data_format,
                "stem_type": self.stem_type,
                "norm_type": self.norm_type,
            }
        )
        return config
