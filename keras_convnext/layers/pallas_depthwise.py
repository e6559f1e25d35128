"""The block's depthwise convolution and its bias as one Pallas kernel, for JAX on a GPU (``depthwise="pallas"``).

On the H200, cuDNN's grouped convolution (``conv2d_c1_k1_nhwc_specialized``) is the top kernel of a ConvNeXt-T step
under JAX and under timm ``torch.compile`` alike: 4.55 ms per batch of 256, about 9x the time its bytes need at the
card's bandwidth. This kernel computes one output row of one image and one power-of-two slice of channels per
program, its 7x7 taps as multiply-adds in float32 from the (L1/L2-resident) padded input rows, and adds the bias in
the same pass. Its gradient is XLA's own (the portable grouped convolution's), so training changes in the forward
pass only. Never chosen by default: the GPU sweep times it (``compiled+depthwise=pallas``); on a CPU it runs in
Pallas' interpreter, which is what the tests check against the portable layer, in outputs and gradients.
"""

import functools

CHANNEL_BLOCK_LIMIT = 256


def _power_of_two_at_least(n):
    return 1 << max(0, (n - 1).bit_length())


def channel_block(channels):
    """The channels one program computes: the largest power of two that divides ``channels``, at most 256.

    Example:
        >>> channel_block(96), channel_block(768), channel_block(40)
        (32, 256, 8)
    """
    return min(channels & -channels, CHANNEL_BLOCK_LIMIT)


def pallas_depthwise(inputs, kernel, bias, interpret=False):
    """``depthwise_conv(inputs, kernel, padding="same") + bias`` for channels-last ``inputs`` (B, H, W, C), a
    ``(k, k, C, 1)`` kernel and a ``(C,)`` bias, as one Pallas kernel with XLA's gradient.

    Example:
        >>> import numpy as np  # JAX only  # doctest: +SKIP
        >>> pallas_depthwise(np.ones((1, 8, 8, 32), "float32"), np.ones((7, 7, 32, 1), "float32"),
        ...                  np.zeros(32, "float32"), interpret=True).shape  # doctest: +SKIP
        (1, 8, 8, 32)
    """
    import jax

    @jax.custom_vjp
    def convolve(x, k, b):
        return _forward(x, k, b, interpret)

    def forward(x, k, b):
        return convolve(x, k, b), (x, k)

    def backward(saved, grad):
        x, k = saved
        _, vjp = jax.vjp(_xla_depthwise, x, k)
        grad_x, grad_k = vjp(grad)
        return grad_x, grad_k, grad.sum(axis=(0, 1, 2)).astype(grad.dtype)

    convolve.defvjp(forward, backward)
    return convolve(inputs, kernel, bias)


def _xla_depthwise(x, k):
    import jax

    k = k.reshape(k.shape[0], k.shape[1], 1, k.shape[2])  # Keras' (k, k, C, 1) as HWIO with one input per group
    return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=x.shape[-1])


def _forward(inputs, kernel, bias, interpret):
    import jax
    import jax.numpy as jnp
    from jax.experimental import pallas as pl

    batch, height, width, channels = inputs.shape
    size = kernel.shape[0]
    pad = size // 2
    block_width, block_channels = _power_of_two_at_least(width), channel_block(channels)
    # Padded so that every tap's load of ``block_width`` columns is in bounds; the output is ``block_width`` wide
    # and sliced back (XLA fuses the slice into the LayerNorm that reads it).
    padded = jnp.pad(inputs, ((0, 0), (pad, pad), (pad, pad + block_width - width), (0, 0)))
    taps = kernel[:, :, :, 0]

    def kernel_body(x_ref, taps_ref, bias_ref, out_ref):
        image, row, channel_tile = pl.program_id(0), pl.program_id(1), pl.program_id(2)
        columns = pl.ds(channel_tile * block_channels, block_channels)
        total = jnp.zeros((block_width, block_channels), jnp.float32) + bias_ref[columns].astype(jnp.float32)
        for dy in range(size):
            for dx in range(size):
                window = x_ref[image, row + dy, pl.ds(dx, block_width), columns]
                total += window.astype(jnp.float32) * taps_ref[dy, dx, columns].astype(jnp.float32)
        out_ref[...] = total.astype(out_ref.dtype)

    # The inputs unblocked (each program reads its rows' halo itself); the output in (row, channel-slice) blocks.
    out = pl.pallas_call(
        kernel_body,
        out_shape=jax.ShapeDtypeStruct((batch, height, block_width, channels), inputs.dtype),
        grid=(batch, height, channels // block_channels),
        out_specs=pl.BlockSpec((None, None, block_width, block_channels), lambda b, h, c: (b, h, 0, c)),
        interpret=interpret,
    )(padded, taps, bias)
    return out[:, :, :width, :]


@functools.cache
def runs_in_interpreter():
    """Whether Pallas must interpret the kernel here (no GPU backend), decided once per process.

    Example:
        >>> runs_in_interpreter() in (True, False)  # JAX only  # doctest: +SKIP
        True
    """
    import jax

    return jax.default_backend() not in ("gpu", "cuda", "rocm")
