"""The weight initialisation of the official ConvNeXt code (timm's ``_init_weights``)."""

import keras

CONV_AND_DENSE_STDDEV = 0.02


def kernel_initializer(scale=1.0):
    """Truncated normal with standard deviation ``0.02 * scale``, as ConvNeXt initialises convs and linears.

    Example:
        >>> init = kernel_initializer(scale=0.001)  # the fine-tuning head's ``head_init_scale``
    """
    return keras.initializers.TruncatedNormal(stddev=CONV_AND_DENSE_STDDEV * scale)
