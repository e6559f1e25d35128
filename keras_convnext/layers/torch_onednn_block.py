"""The ConvNeXt block's MLP on oneDNN's fused CPU kernels, for torch inference.

``pointwise_1`` and the GELU run as one ``mkldnn._linear_pointwise`` (GELU as a post-op), and ``pointwise_2``,
LayerScale and the residual add as one ``mkldnn._linear_pointwise.binary`` (LayerScale folded into its weights,
the residual added as a post-op). These are the kernels ``torch.compile`` emits for the same pattern on CPU; they
have no gradient, so the block uses them only where autograd is off (``predict``, ``evaluate``, ``no_grad``), and
only in eager execution.
"""

from keras import ops

from keras_convnext.layers.fast_paths import is_plain_kernel_layer, torch


def can_fuse(block, inputs, training):
    """Whether ``block`` may run ``fused_block_call`` on ``inputs``: eager torch (under ``torch.compile`` inductor
    makes its own fusions), CPU float32, channels-last, no autograd, no active drop path, and plain ``Dense``
    pointwise layers (no LoRA, no quantization).

    Example:
        >>> import torch  # needs the torch backend  # doctest: +SKIP
        >>> from keras_convnext.layers import ConvNeXtBlock  # doctest: +SKIP
        >>> block = ConvNeXtBlock(name="stage_0_block_0")  # doctest: +SKIP
        >>> block.build((None, 8, 8, 96))  # doctest: +SKIP
        >>> with torch.no_grad():  # doctest: +SKIP
        ...     can_fuse(block, torch.ones(1, 8, 8, 96), training=False)
        True
    """
    return (
        not torch.compiler.is_compiling()
        and block.axis == -1
        and not torch.is_grad_enabled()
        and isinstance(inputs, torch.Tensor)
        and inputs.device.type == "cpu"
        and inputs.dtype == torch.float32
        and block.compute_dtype == "float32"
        and not (training and block.drop_path_rate > 0)
        and is_plain_kernel_layer(block.pointwise_1)
        and is_plain_kernel_layer(block.pointwise_2)
    )


def fused_block_call(block, inputs):
    """``block(inputs)`` in inference with the fused kernels; same result as the layer-by-layer call to ~1e-6.

    Example:
        >>> with torch.no_grad():  # needs the torch backend and a block, as in can_fuse  # doctest: +SKIP
        ...     outputs = fused_block_call(block, torch.ones(1, 8, 8, 96))
    """
    x = block.layernorm(block.depthwise_conv(inputs))
    channels = inputs.shape[-1]
    rows = x.reshape(-1, channels)
    kernel_1 = ops.convert_to_tensor(block.pointwise_1.kernel)
    hidden = torch.ops.mkldnn._linear_pointwise(
        rows, kernel_1.T, ops.convert_to_tensor(block.pointwise_1.bias), "gelu", [], "none"
    )
    if block.grn is not None:
        hidden = block.grn(hidden.reshape(*x.shape[:-1], -1)).reshape(rows.shape[0], -1)
    kernel_2 = ops.convert_to_tensor(block.pointwise_2.kernel)
    bias_2 = ops.convert_to_tensor(block.pointwise_2.bias)
    if block.layer_scale is not None:
        gamma = ops.convert_to_tensor(block.layer_scale.gamma)
        kernel_2, bias_2 = kernel_2 * gamma, bias_2 * gamma
    residual = inputs.reshape(-1, channels)
    out = torch.ops.mkldnn._linear_pointwise.binary(hidden, residual, kernel_2.T, bias_2, "add")
    return out.reshape(inputs.shape)
