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


def timm_state(depths, dims, width, hidden=None, seed=0):
    """A timm ConvNeXt (V1) state dict with a head of ``width`` outputs, after ``head.pre_logits.fc`` of
    ``hidden`` units when given; every parameter away from its initial value."""
    rng = np.random.default_rng(seed)

    def normal(*shape, scale=0.05):
        return (rng.normal(size=shape) * scale).astype(np.float32)

    def norm(prefix, channels):
        state[f"{prefix}.weight"] = 1.0 + normal(channels, scale=0.3)
        state[f"{prefix}.bias"] = normal(channels, scale=0.3)

    def linear(prefix, out_features, in_features, *kernel, scale=0.05):
        state[f"{prefix}.weight"] = normal(out_features, in_features, *kernel, scale=scale)
        state[f"{prefix}.bias"] = normal(out_features, scale=0.3)

    state = {}
    linear("stem.0", dims[0], 3, 4, 4, scale=0.2)
    norm("stem.1", dims[0])
    for stage, (depth, dim) in enumerate(zip(depths, dims)):
        if stage:
            norm(f"stages.{stage}.downsample.0", dims[stage - 1])
            linear(f"stages.{stage}.downsample.1", dim, dims[stage - 1], 2, 2, scale=0.2)
        for block in range(depth):
            prefix = f"stages.{stage}.blocks.{block}"
            linear(f"{prefix}.conv_dw", dim, 1, 7, 7, scale=0.1)
            norm(f"{prefix}.norm", dim)
            linear(f"{prefix}.mlp.fc1", 4 * dim, dim)
            linear(f"{prefix}.mlp.fc2", dim, 4 * dim)
            state[f"{prefix}.gamma"] = 0.5 + normal(dim, scale=0.2)
    norm("head.norm", dims[-1])
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
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + eps) * state[f"{prefix}.weight"] + state[f"{prefix}.bias"]


def _gelu(x):
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def _linear(x, state, prefix):
    return x @ state[f"{prefix}.weight"].astype(np.float64).T + state[f"{prefix}.bias"]


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


def timm_forward(state, images, depths, *, mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD, eps=1e-6):
    """timm's ``ConvNeXt.forward`` at inference on ``images`` ``(B, H, W, 3)`` in 0..255: normalise with ``mean`` /
    ``std``, stem, stages, pool, ``head.norm``, [``head.pre_logits``: fc and GELU], ``head.fc``. Float64."""
    x = (np.asarray(images, np.float64) / 255.0 - np.asarray(mean)) / np.asarray(std)
    x = _layer_norm(_patchify(x, state, "stem.0"), state, "stem.1", eps)
    for stage, depth in enumerate(depths):
        if stage:
            x = _patchify(_layer_norm(x, state, f"stages.{stage}.downsample.0", eps), state, f"stages.{stage}.downsample.1")
        for block in range(depth):
            prefix = f"stages.{stage}.blocks.{block}"
            h = _layer_norm(_depthwise(x, state, f"{prefix}.conv_dw"), state, f"{prefix}.norm", eps)
            h = _linear(_gelu(_linear(h, state, f"{prefix}.mlp.fc1")), state, f"{prefix}.mlp.fc2")
            x = x + h * state[f"{prefix}.gamma"]
    x = _layer_norm(x.mean(axis=(1, 2)), state, "head.norm", eps)
    if "head.pre_logits.fc.weight" in state:
        x = _gelu(_linear(x, state, "head.pre_logits.fc"))
    return _linear(x, state, "head.fc")
