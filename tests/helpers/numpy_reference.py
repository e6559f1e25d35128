"""Plain NumPy forwards of ConvNeXt's pieces, written from the paper and the official PyTorch code.

They read a model's weights by layer name and share no code with the package, so a test that compares the
two checks the package against an independent implementation. Everything is channels-last, float64.
"""

import keras
import numpy as np
from scipy.special import erf


def to_numpy(variable):
    return np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float64)


def layer_norm(x, gamma, beta, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def grn(x, gamma, beta, eps=1e-6):
    gx = np.sqrt((x**2).sum(axis=(1, 2), keepdims=True))
    nx = gx / (gx.mean(axis=-1, keepdims=True) + eps)
    return gamma * (x * nx) + beta + x


def depthwise_conv(x, kernel, bias):
    """``kernel``: (k, k, C, 1); stride 1, zero padding k // 2 on every side."""
    k = kernel.shape[0]
    pad = k // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = np.zeros_like(x)
    height, width = x.shape[1:3]
    for i in range(k):
        for j in range(k):
            out += padded[:, i : i + height, j : j + width, :] * kernel[i, j, :, 0]
    return out + bias


def patch_conv(x, kernel, bias):
    """A conv whose stride equals its kernel side, no padding; ``kernel``: (p, p, Cin, Cout)."""
    p = kernel.shape[0]
    batch, height, width, channels = x.shape
    rows, cols = height // p, width // p
    patches = x[:, : rows * p, : cols * p, :].reshape(batch, rows, p, cols, p, channels).transpose(0, 1, 3, 2, 4, 5)
    return patches.reshape(batch, rows, cols, p * p * channels) @ kernel.reshape(-1, kernel.shape[-1]) + bias


def block(x, layer):
    """One ConvNeXtBlock at inference, from the layer's own weights."""
    h = depthwise_conv(x, to_numpy(layer.depthwise_conv.kernel), to_numpy(layer.depthwise_conv.bias))
    h = layer_norm(h, to_numpy(layer.layernorm.gamma), to_numpy(layer.layernorm.beta), layer.norm_epsilon)
    h = gelu(h @ to_numpy(layer.pointwise_1.kernel) + to_numpy(layer.pointwise_1.bias))
    if layer.grn is not None:
        h = grn(h, to_numpy(layer.grn.gamma), to_numpy(layer.grn.beta))
    h = h @ to_numpy(layer.pointwise_2.kernel) + to_numpy(layer.pointwise_2.bias)
    if layer.layer_scale is not None:
        h = h * to_numpy(layer.layer_scale.gamma)
    return x + h


def convnext_logits(model, images):
    """The whole channels-last model at inference (``include_preprocessing=False``, linear head)."""
    x = np.asarray(images, dtype=np.float64)
    names = [layer.name for layer in model.layers]
    for layer in model.layers:
        if layer.name == "stem":
            x = patch_conv(x, to_numpy(layer.conv.kernel), to_numpy(layer.conv.bias))
            if layer.layernorm is not None:
                ln = layer.layernorm
                x = layer_norm(x, to_numpy(ln.gamma), to_numpy(ln.beta), ln.epsilon)
        elif layer.name.endswith("_downsample"):
            ln = layer.layernorm
            x = layer_norm(x, to_numpy(ln.gamma), to_numpy(ln.beta), ln.epsilon)
            x = patch_conv(x, to_numpy(layer.conv.kernel), to_numpy(layer.conv.bias))
        elif "_block_" in layer.name:
            x = block(x, layer)
    assert "head_dense" in names, "convnext_logits needs a model with include_top=True"
    pooled = x.mean(axis=(1, 2))
    ln = model.get_layer("head_layernorm")
    pooled = layer_norm(pooled, to_numpy(ln.gamma), to_numpy(ln.beta), ln.epsilon)
    dense = model.get_layer("head_dense")
    return pooled @ to_numpy(dense.kernel) + to_numpy(dense.bias)
