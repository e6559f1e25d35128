"""timm ConvNeXt state dicts made of random arrays, their open_clip form, and a NumPy forward that reads them as
they are (PyTorch layouts: OIHW convs, ``(out, in)`` linears).

The forward follows timm's ``convnext.py`` (``ConvNeXtBlock``, ``NormMlpClassifierHead``) and shares no code with
the package, not even its transposes, so a test comparing the two checks the checkpoint mapping as well as the
layers. open_clip's keys follow the inverse of timm's ``checkpoint_filter_fn``: ``visual.trunk.*`` and
``visual.head.proj`` (no bias) or ``visual.head.mlp.fc1`` / ``fc2`` (no bias on fc2).
"""

import numpy as np
from scipy.special import erf

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _tiered(channels):
    """timm's ``make_divisible(channels // 2)`` (divisor 8, never under 90% of the half), written out."""
    half = channels // 2
    width = max(8, int(half + 4) // 8 * 8)
    return width + 8 if width < 0.9 * half else width


def timm_state(depths, dims, width, hidden=None, seed=0, stem_type="patch", norm_type="layernorm",
               head_norm_first=False, conv_mlp=False):
    """A timm ConvNeXt (V1) state dict with a head of ``width`` outputs, after ``head.pre_logits.fc`` of
    ``hidden`` units when given; every parameter away from its initial value. ``stem_type``, ``norm_type``
    (``"layernorm"``, ``"rmsnorm"``, ``"simplenorm"``: the last two have no bias), ``head_norm_first`` (``norm_pre``,
    no ``head.norm``) and ``conv_mlp`` (1x1-conv MLP weights, ``(out, in, 1, 1)``) as timm's ``ConvNeXt`` takes them."""
    rng = np.random.default_rng(seed)

    def normal(*shape, scale=0.05):
        return (rng.normal(size=shape) * scale).astype(np.float32)

    def norm(prefix, channels):
        state[f"{prefix}.weight"] = 1.0 + normal(channels, scale=0.3)
        if norm_type == "layernorm":
            state[f"{prefix}.bias"] = normal(channels, scale=0.3)

    def linear(prefix, out_features, in_features, *kernel, scale=0.05):
        state[f"{prefix}.weight"] = normal(out_features, in_features, *kernel, scale=scale)
        state[f"{prefix}.bias"] = normal(out_features, scale=0.3)

    state = {}
    if stem_type == "patch":
        linear("stem.0", dims[0], 3, 4, 4, scale=0.2)
        norm("stem.1", dims[0])
    else:
        middle = _tiered(dims[0]) if stem_type == "overlap_tiered" else dims[0]
        second = 2 if stem_type == "overlap_act" else 1  # overlap_act's GELU is stem.1
        linear("stem.0", middle, 3, 3, 3, scale=0.2)
        linear(f"stem.{second}", dims[0], middle, 3, 3, scale=0.1)
        norm(f"stem.{second + 1}", dims[0])
    mlp_kernel = (1, 1) if conv_mlp else ()
    for stage, (depth, dim) in enumerate(zip(depths, dims)):
        if stage:
            norm(f"stages.{stage}.downsample.0", dims[stage - 1])
            linear(f"stages.{stage}.downsample.1", dim, dims[stage - 1], 2, 2, scale=0.2)
        for block in range(depth):
            prefix = f"stages.{stage}.blocks.{block}"
            linear(f"{prefix}.conv_dw", dim, 1, 7, 7, scale=0.1)
            norm(f"{prefix}.norm", dim)
            linear(f"{prefix}.mlp.fc1", 4 * dim, dim, *mlp_kernel)
            linear(f"{prefix}.mlp.fc2", dim, 4 * dim, *mlp_kernel)
            state[f"{prefix}.gamma"] = 0.5 + normal(dim, scale=0.2)
    norm("norm_pre" if head_norm_first else "head.norm", dims[-1])
    if hidden:
        linear("head.pre_logits.fc", hidden, dims[-1])
    linear("head.fc", width, hidden or dims[-1])
    return state


def to_open_clip(state):
    """The open_clip checkpoint ``state`` (a timm CLIP tower whose ``head.fc.bias`` is zero) came from, with a few
    text-tower tensors beside it, as open_clip's files hold."""
    out = {f"visual.trunk.{key}": value for key, value in state.items() if not key.startswith(("head.fc.", "head.pre_logits."))}
    if "head.pre_logits.fc.weight" in state:
        out["visual.head.mlp.fc1.weight"] = state["head.pre_logits.fc.weight"]
        out["visual.head.mlp.fc1.bias"] = state["head.pre_logits.fc.bias"]
        out["visual.head.mlp.fc2.weight"] = state["head.fc.weight"]
    else:
        out["visual.head.proj.weight"] = state["head.fc.weight"]
    text = {"positional_embedding": (77, 16), "token_embedding.weight": (49408, 16), "ln_final.weight": (16,),
            "transformer.resblocks.0.attn.in_proj_weight": (48, 16), "text_projection": (16, 16), "logit_scale": ()}
    out.update({key: np.ones(shape, np.float32) for key, shape in text.items()})
    return out


def _layer_norm(x, state, prefix, eps):
    """timm's ``LayerNorm2d`` / ``LayerNorm`` over the channels (the last axis here)."""
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + eps) * state[f"{prefix}.weight"] + state[f"{prefix}.bias"]


def _rms_norm(x, state, prefix, eps):
    """timm's ``rms_norm``: ``x * rsqrt(mean(x**2) + eps) * weight``."""
    return x / np.sqrt((x**2).mean(axis=-1, keepdims=True) + eps) * state[f"{prefix}.weight"]


def _simple_norm(x, state, prefix, eps):
    """timm's ``simple_norm``: ``x * rsqrt(torch.var(x) + eps) * weight``, torch.var being the unbiased variance."""
    return x / np.sqrt(x.var(axis=-1, ddof=1, keepdims=True) + eps) * state[f"{prefix}.weight"]


_NORMS = {"layernorm": _layer_norm, "rmsnorm": _rms_norm, "simplenorm": _simple_norm}


def _gelu(x):
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def _linear(x, state, prefix):
    weight = state[f"{prefix}.weight"].astype(np.float64)
    return x @ weight.reshape(weight.shape[0], -1).T + state[f"{prefix}.bias"]  # Linear, or a 1x1 conv


def _conv3x3_stride2(x, state, prefix):
    """``nn.Conv2d(kernel_size=3, stride=2, padding=1)``: one zero row and column on every side."""
    weight = state[f"{prefix}.weight"].astype(np.float64)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    rows, cols = (x.shape[1] - 1) // 2 + 1, (x.shape[2] - 1) // 2 + 1
    out = sum(np.einsum("brci,oi->brco", padded[:, i : i + 2 * rows : 2, j : j + 2 * cols : 2], weight[:, :, i, j])
              for i in range(3) for j in range(3))
    return out + state[f"{prefix}.bias"]


def _patchify(x, state, prefix):
    """Conv2d with kernel = stride = p, no padding: ``out[b, r, c, o] = sum x[b, r*p+h, c*p+w, i] * W[o, i, h, w]``."""
    weight = state[f"{prefix}.weight"].astype(np.float64)
    p = weight.shape[-1]
    batch, height, width, channels = x.shape
    patches = x[:, : height // p * p, : width // p * p].reshape(batch, height // p, p, width // p, p, channels)
    return np.einsum("brhcwi,oihw->brco", patches, weight) + state[f"{prefix}.bias"]


def _depthwise(x, state, prefix):
    """Depthwise 7x7 conv, padding 3: ``W`` is ``(C, 1, 7, 7)``."""
    weight = state[f"{prefix}.weight"].astype(np.float64)
    k = weight.shape[-1]
    padded = np.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    height, width = x.shape[1:3]
    out = sum(padded[:, i : i + height, j : j + width, :] * weight[:, 0, i, j] for i in range(k) for j in range(k))
    return out + state[f"{prefix}.bias"]


def timm_forward(state, images, depths, *, mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD, eps=1e-6, stem_type="patch",
                 norm_type="layernorm"):
    """timm's ``ConvNeXt.forward`` at inference on ``images`` ``(B, H, W, 3)`` in 0..255: normalise with ``mean`` /
    ``std``, stem, stages, [``norm_pre``], pool, [``head.norm``], [``head.pre_logits``: fc and GELU], ``head.fc``.
    Float64."""
    norm = _NORMS[norm_type]
    x = (np.asarray(images, np.float64) / 255.0 - np.asarray(mean)) / np.asarray(std)
    if stem_type == "patch":
        x = norm(_patchify(x, state, "stem.0"), state, "stem.1", eps)
    else:
        x = _conv3x3_stride2(x, state, "stem.0")
        second = 2 if stem_type == "overlap_act" else 1
        if stem_type == "overlap_act":
            x = _gelu(x)
        x = norm(_conv3x3_stride2(x, state, f"stem.{second}"), state, f"stem.{second + 1}", eps)
    for stage, depth in enumerate(depths):
        if stage:
            x = _patchify(norm(x, state, f"stages.{stage}.downsample.0", eps), state, f"stages.{stage}.downsample.1")
        for block in range(depth):
            prefix = f"stages.{stage}.blocks.{block}"
            h = norm(_depthwise(x, state, f"{prefix}.conv_dw"), state, f"{prefix}.norm", eps)
            h = _linear(_gelu(_linear(h, state, f"{prefix}.mlp.fc1")), state, f"{prefix}.mlp.fc2")
            x = x + h * state[f"{prefix}.gamma"]
    if "norm_pre.weight" in state:
        x = norm(x, state, "norm_pre", eps).mean(axis=(1, 2))
    else:
        x = norm(x.mean(axis=(1, 2)), state, "head.norm", eps)
    if "head.pre_logits.fc.weight" in state:
        x = _gelu(_linear(x, state, "head.pre_logits.fc"))
    return _linear(x, state, "head.fc")
