"""ConvNeXt-V2's official FCMAE forward in NumPy, written from ``models/fcmae.py``, ``models/convnextv2_sparse.py``
and ``models/utils.py`` of facebookresearch/ConvNeXt-V2, reading the official checkpoint keys.

The sparse encoder is computed as MinkowskiEngine does: features exist at the kept sites only (removed sites hold
NaN here, so that reading one anywhere would show in the result), a sparse conv sums over the kernel offsets whose
input site exists, and the sparse GRN takes its norm over the features of every kept site of the batch
(``torch.norm(x.F, dim=0)``). A Minkowski kernel's offset ``k`` is ``(dy, dx) = (k % s, k // s)`` (centred for odd
``s``), the order the official ``remap_checkpoint_keys`` gives it. Everything is channels-last, float64.
"""

import numpy as np

from helpers.numpy_reference import depthwise_conv, gelu, grn, layer_norm

EPS = 1e-6


def random_fcmae_state(depths, dims, decoder_dim, decoder_depth, patch_size, rng):
    """An official-layout FCMAE state dict (sparse encoder keys) with every parameter random and off its init."""

    def normal(*shape, scale=0.2):
        return rng.normal(scale=scale, size=shape).astype(np.float32)

    state = {
        "encoder.downsample_layers.0.0.weight": normal(dims[0], 3, 4, 4),
        "encoder.downsample_layers.0.0.bias": normal(dims[0]),
        "encoder.downsample_layers.0.1.weight": 1 + normal(dims[0]),
        "encoder.downsample_layers.0.1.bias": normal(dims[0]),
    }
    for stage in range(1, len(dims)):
        prefix = f"encoder.downsample_layers.{stage}"
        state[f"{prefix}.0.ln.weight"] = 1 + normal(dims[stage - 1])
        state[f"{prefix}.0.ln.bias"] = normal(dims[stage - 1])
        state[f"{prefix}.1.kernel"] = normal(4, dims[stage - 1], dims[stage])
        state[f"{prefix}.1.bias"] = normal(1, dims[stage])
    for stage, (depth, dim) in enumerate(zip(depths, dims)):
        for index in range(depth):
            prefix = f"encoder.stages.{stage}.{index}"
            state[f"{prefix}.dwconv.kernel"] = normal(49, dim)
            state[f"{prefix}.dwconv.bias"] = normal(1, dim)
            state[f"{prefix}.norm.ln.weight"] = 1 + normal(dim)
            state[f"{prefix}.norm.ln.bias"] = normal(dim)
            state[f"{prefix}.pwconv1.linear.weight"] = normal(4 * dim, dim)
            state[f"{prefix}.pwconv1.linear.bias"] = normal(4 * dim)
            state[f"{prefix}.grn.gamma"] = normal(1, 4 * dim)
            state[f"{prefix}.grn.beta"] = normal(1, 4 * dim)
            state[f"{prefix}.pwconv2.linear.weight"] = normal(dim, 4 * dim)
            state[f"{prefix}.pwconv2.linear.bias"] = normal(dim)
    state["proj.weight"] = normal(decoder_dim, dims[-1], 1, 1)
    state["proj.bias"] = normal(decoder_dim)
    state["mask_token"] = normal(1, decoder_dim, 1, 1)
    for index in range(decoder_depth):
        prefix = f"decoder.{index}"
        state[f"{prefix}.dwconv.weight"] = normal(decoder_dim, 1, 7, 7)
        state[f"{prefix}.dwconv.bias"] = normal(decoder_dim)
        state[f"{prefix}.norm.weight"] = 1 + normal(decoder_dim)
        state[f"{prefix}.norm.bias"] = normal(decoder_dim)
        state[f"{prefix}.pwconv1.weight"] = normal(4 * decoder_dim, decoder_dim)
        state[f"{prefix}.pwconv1.bias"] = normal(4 * decoder_dim)
        state[f"{prefix}.grn.gamma"] = normal(1, 1, 1, 4 * decoder_dim)
        state[f"{prefix}.grn.beta"] = normal(1, 1, 1, 4 * decoder_dim)
        state[f"{prefix}.pwconv2.weight"] = normal(decoder_dim, 4 * decoder_dim)
        state[f"{prefix}.pwconv2.bias"] = normal(decoder_dim)
    state["pred.weight"] = normal(patch_size * patch_size * 3, decoder_dim, 1, 1)
    state["pred.bias"] = normal(patch_size * patch_size * 3)
    return state


def _sparse_conv(features, kernel, bias, side, stride):
    """A Minkowski conv on sites of ``features`` (NaN = no site): ``kernel`` (side*side, Cin, Cout)."""
    batch, height, width, _ = features.shape
    exists = ~np.isnan(features[..., 0])
    values = np.where(exists[..., None], features, 0.0)
    centre = side // 2 if side % 2 else 0
    pad = side
    padded = np.pad(values, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out_h, out_w = height // stride, width // stride
    out = np.zeros((batch, out_h, out_w, kernel.shape[-1]))
    for k in range(side * side):
        dy, dx = k % side - centre, k // side - centre
        rows = np.arange(out_h) * stride + dy + pad
        cols = np.arange(out_w) * stride + dx + pad
        out += padded[:, rows][:, :, cols] @ kernel[k]
    out_sites = exists[:, ::stride, ::stride]
    return np.where(out_sites[..., None], out + bias.reshape(-1), np.nan)


def _sparse_grn(x, gamma, beta):
    exists = ~np.isnan(x[..., 0])
    gx = np.sqrt((x[exists] ** 2).sum(axis=0))  # every kept site of the whole batch
    nx = gx / (gx.mean() + EPS)
    return gamma.reshape(-1) * (x * nx) + beta.reshape(-1) + x


def _patchify(images, p):
    n, h, w, c = images.shape
    x = images.reshape(n, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, (h // p) * (w // p), p * p * c)


def official_fcmae(state, images, mask, depths, patch_size, norm_pix_loss=True):
    """``(predictions (N, L, p*p*3), loss)`` of the official FCMAE for channels-last ``images`` (already
    normalised) and ``mask`` (N, L), 1 = removed."""
    s = {key: np.asarray(value, np.float64) for key, value in state.items()}
    n, height, width, _ = images.shape
    rows, cols = height // patch_size, width // patch_size
    scale = patch_size // 4
    removed = mask.reshape(n, rows, 1, cols, 1).repeat(scale, 2).repeat(scale, 4).reshape(n, rows * scale, cols * scale)

    stem = s["encoder.downsample_layers.0.0.weight"].transpose(2, 3, 1, 0).reshape(-1, s["encoder.downsample_layers.0.0.weight"].shape[0])
    x = _patchify(images.astype(np.float64), 4).reshape(n, height // 4, width // 4, -1) @ stem
    x = x + s["encoder.downsample_layers.0.0.bias"]
    x = layer_norm(x, s["encoder.downsample_layers.0.1.weight"], s["encoder.downsample_layers.0.1.bias"], EPS)
    x = np.where(removed[..., None] == 1, np.nan, x)  # x *= 1 - mask, then to_sparse keeps the nonzero sites

    for stage, depth in enumerate(depths):
        if stage > 0:
            prefix = f"encoder.downsample_layers.{stage}"
            x = layer_norm(x, s[f"{prefix}.0.ln.weight"], s[f"{prefix}.0.ln.bias"], EPS)
            x = _sparse_conv(x, s[f"{prefix}.1.kernel"], s[f"{prefix}.1.bias"], side=2, stride=2)
        for index in range(depth):
            prefix = f"encoder.stages.{stage}.{index}"
            dw = s[f"{prefix}.dwconv.kernel"]
            channels = dw.shape[1]
            dense_dw = np.zeros((49, channels, channels))
            dense_dw[:, np.arange(channels), np.arange(channels)] = dw
            h = _sparse_conv(x, dense_dw, s[f"{prefix}.dwconv.bias"], side=7, stride=1)
            h = layer_norm(h, s[f"{prefix}.norm.ln.weight"], s[f"{prefix}.norm.ln.bias"], EPS)
            h = gelu(h @ s[f"{prefix}.pwconv1.linear.weight"].T + s[f"{prefix}.pwconv1.linear.bias"])
            h = _sparse_grn(h, s[f"{prefix}.grn.gamma"], s[f"{prefix}.grn.beta"])
            h = h @ s[f"{prefix}.pwconv2.linear.weight"].T + s[f"{prefix}.pwconv2.linear.bias"]
            x = x + h
    x = np.nan_to_num(x, nan=0.0)  # x.dense(): zeros where no site

    x = x @ s["proj.weight"][:, :, 0, 0].T + s["proj.bias"]
    m = mask.reshape(n, rows, cols, 1)
    x = x * (1 - m) + s["mask_token"].reshape(-1) * m
    index = 0
    while f"decoder.{index}.dwconv.weight" in s:
        prefix = f"decoder.{index}"
        h = depthwise_conv(x, s[f"{prefix}.dwconv.weight"].transpose(2, 3, 0, 1), s[f"{prefix}.dwconv.bias"])
        h = layer_norm(h, s[f"{prefix}.norm.weight"], s[f"{prefix}.norm.bias"], EPS)
        h = gelu(h @ s[f"{prefix}.pwconv1.weight"].T + s[f"{prefix}.pwconv1.bias"])
        h = grn(h, s[f"{prefix}.grn.gamma"].reshape(-1), s[f"{prefix}.grn.beta"].reshape(-1))
        x = x + h @ s[f"{prefix}.pwconv2.weight"].T + s[f"{prefix}.pwconv2.bias"]
        index += 1
    predictions = (x @ s["pred.weight"][:, :, 0, 0].T + s["pred.bias"]).reshape(n, rows * cols, -1)

    target = _patchify(images.astype(np.float64), patch_size)
    if norm_pix_loss:
        target = (target - target.mean(-1, keepdims=True)) / np.sqrt(target.var(-1, ddof=1, keepdims=True) + EPS)
    per_patch = ((predictions - target) ** 2).mean(-1)
    return predictions, (per_patch * mask).sum() / mask.sum()
