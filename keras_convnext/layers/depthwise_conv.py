"""The depthwise convolution of the ConvNeXt block, with its JAX and torch fast paths."""

import keras
from keras import ops

from keras_convnext.layers.data_format import channel_axis, standardize_data_format
from keras_convnext.layers.fast_paths import fast_path, torch_functional
from keras_convnext.layers.initializers import kernel_initializer
from keras_convnext.layers.pallas_depthwise import pallas_depthwise, runs_in_interpreter


def shift_and_add_depthwise(inputs, kernel, data_format="channels_last"):
    """A stride-1, "same" depthwise convolution as ``k * k`` shifted multiply-adds, in ``keras.ops``.

    XLA on CPU runs a grouped convolution (``feature_group_count=channels``, what ``ops.depthwise_conv`` is on
    JAX) one group at a time, ~30x slower than these fused multiply-adds; its gradient is shifts and adds too.

    Example:
        >>> import numpy as np
        >>> tuple(shift_and_add_depthwise(np.ones((1, 8, 8, 4), "float32"), np.ones((3, 3, 4, 1), "float32")).shape)
        (1, 8, 8, 4)
    """
    size = kernel.shape[0]
    pad = size // 2
    channels_last = data_format == "channels_last"
    spatial = (1, 2) if channels_last else (2, 3)
    height, width = inputs.shape[spatial[0]], inputs.shape[spatial[1]]
    padding = [[0, 0], [pad, pad], [pad, pad], [0, 0]] if channels_last else [[0, 0], [0, 0], [pad, pad], [pad, pad]]
    padded = ops.pad(inputs, padding)
    taps = kernel[..., 0] if channels_last else ops.reshape(ops.transpose(kernel[..., 0], (2, 0, 1)), (-1, size, size, 1, 1))
    total = None
    for i in range(size):
        for j in range(size):
            if channels_last:
                term = padded[:, i : i + height, j : j + width, :] * taps[i, j]
            else:
                term = padded[:, :, i : i + height, j : j + width] * taps[:, i, j]
            total = term if total is None else total + term
    return total


def depthwise_kernel_gradient(inputs, output_gradient, kernel_size, data_format="channels_last"):
    """The gradients of a stride-1, "same" depthwise convolution with bias with respect to its ``(k, k, C, 1)``
    kernel and its ``(C,)`` bias, in JAX.

    Each kernel tap is a multiply-reduce of the input, shifted by the tap, with the output gradient. Summing all
    ``k * k`` taps one output row at a time (a ``lax.scan`` over images and rows) keeps the ``k`` input rows
    and the gradient row in cache across the taps; as ``k * k`` passes over whole tensors (autodiff's
    order) the same sums ran 3-8x slower on XLA:CPU. The bias gradient, the sum of the output gradient, is
    summed in the same loop, so that nothing outside the loop reads the output gradient.

    Example:
        >>> import numpy as np  # JAX only  # doctest: +SKIP
        >>> x = g = np.ones((1, 5, 5, 2), "float32")  # doctest: +SKIP
        >>> kernel_gradient, bias_gradient = depthwise_kernel_gradient(x, g, 3)  # doctest: +SKIP
        >>> kernel_gradient[1, 1, :, 0].tolist(), bias_gradient.tolist()  # the centre tap sums x * g  # doctest: +SKIP
        ([25.0, 25.0], [25.0, 25.0])
    """
    import jax
    import jax.numpy as jnp

    pad = kernel_size // 2
    channels_last = data_format == "channels_last"
    if channels_last:
        batch, height, width, channels = inputs.shape
        padded = jnp.pad(inputs, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    else:
        batch, channels, height, width = inputs.shape
        padded = jnp.pad(inputs, ((0, 0), (0, 0), (pad, pad), (pad, pad)))

    offsets = [(i, j) for i in range(kernel_size) for j in range(kernel_size)]

    def add_row(total, index):
        image, row = index // height, index % height
        if channels_last:  # rows of (width, channels)
            window = jax.lax.dynamic_slice(padded, (image, row, 0, 0), (1, kernel_size, width + 2 * pad, channels))[0]
            grad_row = jax.lax.dynamic_slice(output_gradient, (image, row, 0, 0), (1, 1, width, channels))[0, 0]
            shifted, width_axis = (lambda i, j: window[i, j : j + width]), 0
        else:
            window = jax.lax.dynamic_slice(padded, (image, 0, row, 0), (1, channels, kernel_size, width + 2 * pad))[0]
            grad_row = jax.lax.dynamic_slice(output_gradient, (image, 0, row, 0), (1, channels, 1, width))[0, :, 0]
            shifted, width_axis = (lambda i, j: window[:, i, j : j + width]), 1
        sums = [(shifted(i, j) * grad_row).sum(axis=width_axis, dtype="float32") for i, j in offsets]
        sums.append(grad_row.sum(axis=width_axis, dtype="float32"))
        return total + jnp.stack(sums), None

    zeros = jnp.zeros((kernel_size * kernel_size + 1, channels), "float32")
    total, _ = jax.lax.scan(add_row, zeros, jnp.arange(batch * height))
    return total[:-1].reshape(kernel_size, kernel_size, channels, 1), total[-1]


def shift_and_add_with_fast_gradient(inputs, kernel, bias, data_format="channels_last"):
    """``shift_and_add_depthwise`` plus ``bias`` for JAX on a CPU, computed once per use, with a hand-written
    gradient several times faster than autodiff's.

    XLA:CPU fuses elementwise producers into each of their consumers, and the 49 multiply-adds of this
    convolution count as elementwise: as plain ops, a ConvNeXt block computed its depthwise convolution again in
    each LayerNorm fusion that read it (mean, variance, output; five more in the LayerNorm's backward), and the
    LayerNorm's input gradient again in each consumer of the convolution's gradient. So the convolution runs image
    by image in a loop (``lax.map``), whose result XLA computes once; so does its input gradient, the same
    convolution of the output gradient with the kernel flipped; the kernel and bias gradients are
    ``depthwise_kernel_gradient``, one more loop. ConvNeXt-T on 2 cores: training 1.16x, inference 1.06x.

    Example:
        >>> import jax, numpy as np  # JAX only  # doctest: +SKIP
        >>> x, kernel = np.ones((1, 14, 14, 96), "float32"), np.ones((7, 7, 96, 1), "float32")  # doctest: +SKIP
        >>> bias = np.zeros(96, "float32")  # doctest: +SKIP
        >>> jax.grad(lambda k: shift_and_add_with_fast_gradient(x, k, bias).sum())(kernel).shape  # doctest: +SKIP
        (7, 7, 96, 1)
    """
    import jax

    bias_shape = (1, 1, -1) if data_format == "channels_last" else (-1, 1, 1)

    def convolve_image_by_image(x, k):
        return jax.lax.map(lambda image: shift_and_add_depthwise(image[None], k, data_format)[0], x)

    @jax.custom_vjp
    def convolve(x, k, b):
        return convolve_image_by_image(x, k) + b.reshape(bias_shape)

    def forward(x, k, b):
        return convolve(x, k, b), (x, k)

    def backward(saved, grad):
        x, k = saved
        grad_x = convolve_image_by_image(grad, k[::-1, ::-1])
        grad_k, grad_b = depthwise_kernel_gradient(x, grad, k.shape[0], data_format)
        return grad_x, grad_k.astype(k.dtype), grad_b.astype(k.dtype)

    convolve.defvjp(forward, backward)
    return convolve(inputs, kernel, bias)


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
        >>> import numpy as np
        >>> conv = DepthwiseConv(kernel_size=7)
        >>> tuple(conv(np.ones((1, 14, 14, 96), "float32")).shape)
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
        kernel = ops.cast(self.kernel, self.compute_dtype)
        bias = ops.cast(self.bias, self.compute_dtype)
        path = fast_path("depthwise")
        if path == "torch_conv2d":
            return self._torch_conv2d(inputs, kernel, bias)
        static_shape = None not in inputs.shape[1:]
        if path == "pallas" and self.axis == -1 and static_shape:
            return pallas_depthwise(inputs, kernel, bias, interpret=runs_in_interpreter())
        if path == "shift_and_add" and static_shape:
            return shift_and_add_with_fast_gradient(inputs, kernel, bias, self.data_format)
        if path == "shift_and_add_autodiff" and static_shape:
            x = shift_and_add_depthwise(inputs, kernel, self.data_format)
        else:
            x = ops.depthwise_conv(inputs, kernel, strides=1, padding="same", data_format=self.data_format)
        if self.axis != -1:
            bias = ops.reshape(bias, (-1, 1, 1))
        return x + bias

    def _torch_conv2d(self, inputs, kernel, bias):
        # Channels-last data is viewed as NCHW without a copy; oneDNN and cuDNN run that view channels-last.
        x = inputs.permute(0, 3, 1, 2) if self.axis == -1 else inputs
        x = torch_functional.conv2d(x, kernel.permute(2, 3, 0, 1), bias, padding=self.kernel_size // 2, groups=x.shape[1])
        return x.permute(0, 2, 3, 1) if self.axis == -1 else x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"kernel_size": self.kernel_size, "data_format": self.data_format})
        return config
