"""Checks shared by every layer that takes a ``data_format``."""

import keras

from keras_convnext.layers import jax_cpu_gradients
from keras_convnext.layers.fast_paths import fast_path, is_plain_kernel_layer

DATA_FORMATS = ("channels_last", "channels_first")


def standardize_data_format(data_format):
    """Returns ``data_format``, or Keras' global default when it is ``None``.

    Example:
        >>> standardize_data_format("channels_first")
        'channels_first'
    """
    if data_format is None:
        return keras.config.image_data_format()
    if data_format not in DATA_FORMATS:
        raise ValueError(
            f"data_format must be one of {DATA_FORMATS} or None; got {data_format!r}."
        )
    return data_format


def channel_axis(data_format):
    """The axis holding the channels of a 4-D image tensor in ``data_format``.

    Example:
        >>> channel_axis("channels_first")
        1
    """
    return -1 if data_format == "channels_last" else 1


def strided_conv(conv, inputs):
    """``conv(inputs)`` for the stem's and the downsampling layers' ``Conv2D``, right on every backend.

    TensorFlow's own CPU convolutions are NHWC only. With oneDNN (TensorFlow 2.21's default), a channels_first
    ``Conv2D`` layer gives wrong outputs in eager execution and under XLA (up to 0.9 off for unit-scale weights), while
    ``tf.function`` graphs transpose around the conv and are right; so on TensorFlow a channels_first conv runs here on
    channels-last data with the layer's own kernel and bias, as those graphs do.

    On JAX on a CPU (the ``dense`` path ``jax_cpu_gradient``), a channels-last conv whose stride equals its kernel
    runs as a matrix product over patches (``jax_cpu_gradients.patchify_conv_with_cpu_gradient``).

    Example:
        >>> import numpy as np
        >>> conv = keras.layers.Conv2D(4, 2, strides=2, data_format="channels_first")
        >>> tuple(strided_conv(conv, np.ones((1, 3, 8, 8), "float32")).shape)
        (1, 4, 4, 4)
    """
    if _runs_as_patch_product(conv, inputs):
        if not conv.built:
            conv.build(tuple(inputs.shape))
        dtype = conv.compute_dtype
        return jax_cpu_gradients.patchify_conv_with_cpu_gradient(
            keras.ops.cast(inputs, dtype), keras.ops.cast(conv.kernel, dtype), keras.ops.cast(conv.bias, dtype))
    tensorflow_channels_first = conv.data_format == "channels_first" and keras.backend.backend() == "tensorflow"
    if not tensorflow_channels_first or not is_plain_kernel_layer(conv):
        return conv(inputs)
    if not conv.built:
        conv.build(tuple(inputs.shape))
    x = keras.ops.transpose(keras.ops.cast(inputs, conv.compute_dtype), (0, 2, 3, 1))
    kernel = keras.ops.cast(conv.kernel, conv.compute_dtype)
    x = keras.ops.conv(x, kernel, strides=conv.strides, padding=conv.padding, data_format="channels_last")
    if conv.use_bias:
        x = x + keras.ops.cast(conv.bias, conv.compute_dtype)
    return keras.ops.transpose(x, (0, 3, 1, 2))


def _runs_as_patch_product(conv, inputs):
    return (
        fast_path("dense") == "jax_cpu_gradient"
        and conv.data_format == "channels_last"
        and tuple(conv.kernel_size) == tuple(conv.strides)
        and conv.padding == "valid"
        and conv.use_bias
        and tuple(conv.dilation_rate) == (1, 1)
        and conv.groups == 1
        and None not in inputs.shape[1:]
        and is_plain_kernel_layer(conv)
    )


def halve_mask(visible, data_format):
    """A visibility mask (1 kept, 0 removed, one channel) at half the side: the top-left of each 2x2 cell.

    FCMAE's masks are constant on each cell that a stride-2 downsampling merges, so any corner gives the cell's value.

    Example:
        >>> import numpy as np
        >>> tuple(halve_mask(np.ones((1, 8, 8, 1), "float32"), "channels_last").shape)
        (1, 4, 4, 1)
    """
    if data_format == "channels_last":
        return visible[:, ::2, ::2, :]
    return visible[:, :, ::2, ::2]
