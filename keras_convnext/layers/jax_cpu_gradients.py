"""Hand-written JAX gradients for the block's GELU, pointwise layers, LayerNorm and LayerScale, which XLA:CPU
runs faster than autodiff's.

Autodiff's gradients are correct, but XLA:CPU fuses their elementwise parts into the column sums that give the
bias, ``gamma`` and ``beta`` gradients, and runs such a fused sum over a ``(batch, height, width, channels)``
tensor ~30x slower than the same sum over a materialised matrix (a stage-3 ConvNeXt-T block spent 55 ms of its
190 ms backward in one). These functions keep autodiff's forward and write the backward so that every big
intermediate is made once by an elementwise pass, and every sum over positions is a matrix-vector product.
They compute the same values as the portable layers (tested in outputs and gradients); the ``fast_paths``
module chooses them on JAX on a CPU only.
"""


def _on_rows(function, x, *arguments):
    """``function`` of the 2-D ``(positions, channels)`` view of ``x``, reshaped back to ``x``'s leading axes."""
    outputs = function(x.reshape(-1, x.shape[-1]), *arguments)
    return outputs.reshape(*x.shape[:-1], outputs.shape[-1])


def _column_sums(matrix):
    """``matrix.sum(axis=0)`` as a product with a vector of ones, which XLA cannot turn back into a fused reduce;
    accumulated in float32 and returned in ``matrix``'s dtype."""
    import jax
    import jax.numpy as jnp

    ones = jax.lax.optimization_barrier(jnp.ones((1, matrix.shape[0]), matrix.dtype))
    return jax.lax.dot(ones, matrix, preferred_element_type="float32")[0].astype(matrix.dtype)


def _weight_gradient(inputs, output_gradient):
    """``inputs.T @ output_gradient`` for 2-D operands, with the bigger one as the dot's left operand: XLA:CPU
    copies the right operand transposed, so the copy is of the smaller matrix."""
    import jax

    contract_rows = (((0,), (0,)), ((), ()))
    if inputs.shape[1] >= output_gradient.shape[1]:
        product = jax.lax.dot_general(inputs, output_gradient, contract_rows, preferred_element_type="float32")
    else:
        product = jax.lax.dot_general(output_gradient, inputs, contract_rows, preferred_element_type="float32").T
    return product.astype(inputs.dtype)


def dense_with_cpu_gradient(inputs, kernel, bias):
    """``inputs @ kernel + bias`` over the last axis, as ``keras.layers.Dense`` computes it, with a gradient
    written for XLA:CPU (the bias gradient a matrix-vector product, the kernel gradient without a big transpose).

    Example:
        >>> import numpy as np  # JAX only  # doctest: +SKIP
        >>> dense_with_cpu_gradient(np.ones((2, 3, 3, 4), "float32"), np.ones((4, 5), "float32"),
        ...                         np.zeros(5, "float32")).shape  # doctest: +SKIP
        (2, 3, 3, 5)
    """
    import jax

    @jax.custom_vjp
    def dense(x, w, b):
        return x @ w + b

    def forward(x, w, b):
        return dense(x, w, b), (x, w)

    def backward(saved, grad):
        x, w = saved
        return grad @ w.T, _weight_gradient(x, grad).astype(w.dtype), _column_sums(grad).astype(w.dtype)

    dense.defvjp(forward, backward)
    return _on_rows(dense, inputs, kernel, bias)


def patchify_conv_with_cpu_gradient(inputs, kernel, bias):
    """A channels-last ``Conv2D`` whose stride equals its ``(p, p, C, F)`` kernel ("valid" padding: the stem's
    4x4 and the downsamplings' 2x2) as one matrix product over the image's p x p patches, with
    ``dense_with_cpu_gradient``'s gradient. XLA:CPU ran ConvNeXt-T's stem conv (3 input channels) at ~1% of the
    machine's peak, 28 ms of a 1.7 s training step, and copied its input gradient transposed for the kernel gradient.

    Example:
        >>> import numpy as np  # JAX only  # doctest: +SKIP
        >>> patchify_conv_with_cpu_gradient(np.ones((1, 9, 8, 3), "float32"), np.ones((4, 4, 3, 5), "float32"),
        ...                                 np.zeros(5, "float32")).shape  # doctest: +SKIP
        (1, 2, 2, 5)
    """
    patch, _, channels, filters = kernel.shape
    batch, height, width = inputs.shape[0], inputs.shape[1] // patch, inputs.shape[2] // patch
    x = inputs[:, : height * patch, : width * patch]  # "valid": a remainder smaller than a patch is dropped
    x = x.reshape(batch, height, patch, width, patch, channels).transpose(0, 1, 3, 2, 4, 5)
    x = x.reshape(batch, height, width, patch * patch * channels)
    return dense_with_cpu_gradient(x, kernel.reshape(patch * patch * channels, filters), bias)


def gelu_with_cpu_gradient(x):
    """The exact GELU in its erf form (cheaper for XLA than ``jax.nn.gelu``'s ``erfc`` form: 1.06x ConvNeXt-T
    inference on a CPU), with its derivative ``Φ(x) + x φ(x)`` written out in float32 instead of autodiff's
    expression, which XLA:CPU recomputes inside each consumer of the gradient.

    Example:
        >>> import numpy as np  # JAX only  # doctest: +SKIP
        >>> [round(float(v), 4) for v in gelu_with_cpu_gradient(np.array([0.0, 1.0], "float32"))]  # doctest: +SKIP
        [0.0, 0.8413]
    """
    import jax
    import jax.numpy as jnp

    @jax.custom_vjp
    def gelu(x):
        return 0.5 * x * (1.0 + jax.lax.erf(x * 0.7071067811865476))

    def forward(x):
        return gelu(x), x

    def backward(x, grad):
        x32 = x.astype("float32")
        # Φ(x) as 1 - Φ(-x) (erf is odd): with the forward's own erf(x/√2), XLA would share it with the forward,
        # which then writes erf's whole tensor and reads it back for the product instead of one fused pass.
        derivative = 0.5 * (1.0 - jax.lax.erf(x32 * -0.7071067811865476)) + x32 * jnp.exp(-0.5 * x32 * x32) * (
            0.3989422804014327
        )
        return ((grad.astype("float32") * derivative).astype(x.dtype),)

    gelu.defvjp(forward, backward)
    return gelu(x)


def layer_norm_with_cpu_gradient(x, gamma, beta, epsilon):
    """``(x - mean) / sqrt(var + epsilon) * gamma + beta`` over the last axis (float32, as ``LayerNorm`` computes
    it), with the textbook LayerNorm gradient written out: one pass for the input gradient, and the ``gamma``
    and ``beta`` gradients as matrix-vector products.

    Example:
        >>> import numpy as np  # JAX only  # doctest: +SKIP
        >>> y = layer_norm_with_cpu_gradient(np.array([[1.0, 3.0]], "float32"), np.ones(2, "float32"),
        ...                                  np.zeros(2, "float32"), 1e-6)  # doctest: +SKIP
        >>> np.round(np.asarray(y), 3).tolist()  # doctest: +SKIP
        [[-1.0, 1.0]]
    """
    import jax
    import jax.numpy as jnp

    def normalize(x):
        mean = jnp.mean(x, axis=-1, keepdims=True)
        centered = x - mean
        inverse_std = jax.lax.rsqrt(jnp.mean(centered * centered, axis=-1, keepdims=True) + epsilon)
        return centered * inverse_std, inverse_std

    @jax.custom_vjp
    def layer_norm(x, gamma, beta):
        return normalize(x)[0] * gamma + beta

    def forward(x, gamma, beta):
        normalized, inverse_std = normalize(x)
        return normalized * gamma + beta, (normalized, inverse_std, gamma)

    def backward(saved, grad):
        normalized, inverse_std, gamma = saved
        grad_normalized = grad * gamma
        grad_x = inverse_std * (
            grad_normalized
            - jnp.mean(grad_normalized, axis=-1, keepdims=True)
            - normalized * jnp.mean(grad_normalized * normalized, axis=-1, keepdims=True)
        )
        return grad_x, _column_sums(grad * normalized), _column_sums(grad)

    layer_norm.defvjp(forward, backward)
    return _on_rows(layer_norm, x, gamma, beta)


def channel_scale_with_cpu_gradient(x, gamma):
    """``x * gamma`` over the last axis (``LayerScale``), with ``gamma``'s gradient as a matrix-vector product.

    Example:
        >>> import numpy as np  # JAX only  # doctest: +SKIP
        >>> channel_scale_with_cpu_gradient(np.ones((2, 3), "float32"), np.array([1, 2, 3], "float32")).tolist()
        ... # doctest: +SKIP
        [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]
    """
    import jax

    @jax.custom_vjp
    def scale(x, gamma):
        return x * gamma

    def forward(x, gamma):
        return x * gamma, (x, gamma)

    def backward(saved, grad):
        x, gamma = saved
        return grad * gamma, _column_sums(grad * x)

    scale.defvjp(forward, backward)
    return _on_rows(scale, x, gamma)
