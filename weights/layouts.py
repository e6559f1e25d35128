"""Every checkpoint layout ConvNeXt weights come in, as data: how to recognise it and where each key goes.

A layout maps a source key (``stages.2.blocks.5.mlp.fc1.weight``) to this package's *canonical key*
(``stage_2_block_5/pointwise_1/kernel``) and converts the array to Keras' layout. Canonical keys are the
model's variable paths with the repeated layer prefix dropped (see ``loading.canonical_key``). The key names
follow each project's own code: FB ``convnext.py`` / ``convnextv2.py`` / ``convnext_isotropic.py`` and DINOv3's
``dinov3/models/convnext.py``, timm ``timm/models/convnext.py``, torchvision ``torchvision/models/convnext.py``,
Hugging Face ``modeling_convnext.py`` / ``modeling_convnextv2.py`` / ``modeling_dinov3_convnext.py`` and Keras
``keras/src/applications/convnext.py``.
"""

import dataclasses
import re

import numpy as np

from keras_convnext.layer_names import HEAD_DENSE, HEAD_HIDDEN, HEAD_LAYERNORM, STEM, block_name, downsample_name

LINEAR = {"weight": "kernel", "bias": "bias", "kernel": "kernel"}
AFFINE = {"weight": "gamma", "bias": "beta", "gamma": "gamma", "beta": "beta"}
SCALE = {"gamma": "gamma", "layer_scale": "gamma", "layer_scale_parameter": "gamma"}


@dataclasses.dataclass(frozen=True)
class Rule:
    """``pattern``'s last group is the parameter name, mapped by ``params`` (``"*"``: any name); the others
    fill ``prefix``."""

    pattern: str
    prefix: object  # a format string over the other groups, or a callable taking them
    params: dict

    def target(self, key):
        match = re.fullmatch(self.pattern, key)
        if match is None:
            return None
        *indices, param = match.groups()
        param = self.params.get(param, self.params.get("*"))
        if param is None:
            return None
        indices = [int(i) for i in indices]
        prefix = self.prefix(*indices) if callable(self.prefix) else self.prefix.format(*indices)
        return f"{prefix}/{param}"


def _in_block(part, block=block_name):
    """A rule prefix: ``part`` of the block that ``block`` names from the key's indices."""
    return lambda *indices: f"{block(*indices)}/{part}"


def _in_downsample(part, stage=lambda index: index):
    """A rule prefix: ``part`` of the downsampling layer of the stage that ``stage`` finds from the key's index."""
    return lambda index: f"{downsample_name(stage(index))}/{part}"


def _block_rules(block, sub, dwconv, norm, fc1, fc2, grn, scale):
    """The rules of one ConvNeXt block: ``block`` is the regex of its key prefix, ``sub`` names the block from
    the key's indices."""

    def at(part):
        return _in_block(part, sub)

    return [
        Rule(rf"{block}\.{dwconv}\.(weight|bias)", at("depthwise_conv"), LINEAR),
        Rule(rf"{block}\.{norm}\.(weight|bias)", at("layernorm"), AFFINE),
        Rule(rf"{block}\.{fc1}\.(weight|bias)", at("pointwise_1"), LINEAR),
        Rule(rf"{block}\.{fc2}\.(weight|bias)", at("pointwise_2"), LINEAR),
        Rule(rf"{block}\.{grn}\.(\w+)", at("grn"), AFFINE),
        Rule(rf"{block}\.({scale})", at("layer_scale"), SCALE),
    ]


@dataclasses.dataclass(frozen=True)
class Layout:
    """One source layout: its name, how to recognise its keys, its rules and its array convention."""

    name: str
    description: str
    signature: str  # a regex some key of every such checkpoint matches
    rules: tuple
    torch_arrays: bool = True
    ignored: str = r"$^"  # keys that carry no weights of ours (e.g. Keras' input normalisation)
    zero_biases: tuple = ()  # dense layers the source keeps without a bias: theirs is zeros (open_clip's projection)
    # Renames keys whose meaning depends on which other keys exist, before the rules see them.
    rename_keys: object = None

    def renamed(self, state):
        """``state`` with the keys this layout renames renamed (the same dict if none)."""
        return state if self.rename_keys is None else self.rename_keys(state)

    def matches(self, keys):
        return any(re.fullmatch(self.signature, key) for key in keys)

    def target(self, key):
        for rule in self.rules:
            found = rule.target(key)
            if found is not None:
                return found
        return None

    def to_keras(self, target, array):
        """Converts ``array`` for canonical key ``target`` from this layout's convention to Keras'."""
        array = np.asarray(array, dtype=np.float32)
        if not self.torch_arrays:
            if target.endswith("depthwise_conv/kernel"):  # grouped Conv2D (k, k, 1, C) -> (k, k, C, 1)
                return array.transpose(0, 1, 3, 2)
            return array
        if target.endswith("depthwise_conv/kernel"):  # (C, 1, k, k) -> (k, k, C, 1)
            return array.transpose(2, 3, 0, 1)
        if target.endswith(("conv/kernel", "conv_2/kernel")):  # OIHW -> HWIO
            return array.transpose(2, 3, 1, 0)
        if target.endswith(("pointwise_1/kernel", "pointwise_2/kernel", f"{HEAD_DENSE}/kernel", f"{HEAD_HIDDEN}/kernel")):
            return array.reshape(array.shape[0], -1).T  # Linear (out, in), or a 1x1 conv (out, in, 1, 1)
        return array.reshape(-1)


FB = Layout(
    "fb",
    "facebookresearch/ConvNeXt and ConvNeXt-V2 checkpoints ({'model': state_dict}), isotropic ones included",
    r"downsample_layers\.0\.0\.weight|blocks\.0\.dwconv\.weight",
    (
        Rule(r"downsample_layers\.0\.0\.(weight|bias)", f"{STEM}/conv", LINEAR),
        Rule(r"downsample_layers\.0\.1\.(weight|bias)", f"{STEM}/layernorm", AFFINE),
        Rule(r"downsample_layers\.(\d+)\.0\.(weight|bias)", _in_downsample("layernorm"), AFFINE),
        Rule(r"downsample_layers\.(\d+)\.1\.(weight|bias)", _in_downsample("conv"), LINEAR),
        *_block_rules(r"stages\.(\d+)\.(\d+)", block_name, "dwconv", "norm", "pwconv1", "pwconv2", "grn", "gamma"),
        Rule(r"stem\.(weight|bias)", f"{STEM}/conv", LINEAR),  # isotropic: one stage of blocks.N
        *_block_rules(r"blocks\.(\d+)", lambda block: block_name(0, block), "dwconv", "norm", "pwconv1", "pwconv2", "grn", "gamma"),
        Rule(r"norm\.(weight|bias)", HEAD_LAYERNORM, AFFINE),
        Rule(r"head\.(weight|bias)", HEAD_DENSE, LINEAR),
    ),
    # DINOv3's original checkpoints also hold norms.3, which is the module norm registered a second time; Meta's
    # EUPE-ConvNeXt checkpoints hold per-stage feature norms (norms.0-3) and distillation heads (projectors.*),
    # which timm's checkpoint_filter_fn drops too: norm.* is the final norm.
    ignored=r"norms\.\d+\.(weight|bias)|projectors\..*",
)

FCMAE_DECODER = r"proj\.(weight|bias)|mask_token|decoder\..*|pred\.(weight|bias)"


def minkowski_to_dense(kernel):
    """A MinkowskiEngine kernel as the PyTorch conv weight it equals (the official ``remap_checkpoint_keys``):
    ``(k*k, C)`` depthwise to ``(C, 1, k, k)``, ``(k*k, C_in, C_out)`` to ``(C_out, C_in, k, k)``.

    Example:
        >>> minkowski_to_dense(np.zeros((49, 40))).shape, minkowski_to_dense(np.zeros((4, 40, 80))).shape
        ((40, 1, 7, 7), (80, 40, 2, 2))
    """
    kernel = np.asarray(kernel)
    side = int(round(kernel.shape[0] ** 0.5))
    if side * side != kernel.shape[0] or kernel.ndim not in (2, 3):
        raise ValueError(f"A MinkowskiEngine kernel is (k*k, C) or (k*k, C_in, C_out); got shape {kernel.shape}.")
    if kernel.ndim == 2:
        return kernel.T.reshape(kernel.shape[1], 1, side, side).transpose(0, 1, 3, 2)
    return kernel.transpose(2, 1, 0).reshape(kernel.shape[2], kernel.shape[1], side, side).transpose(0, 1, 3, 2)


def _fcmae_encoder_keys(state):
    """An official FCMAE checkpoint's encoder (``encoder.*``) as dense facebookresearch keys: sparse kernels
    (``*.kernel``) become conv weights, and the wrappers' ``.ln.`` / ``.linear.`` drop out of the names. A checkpoint
    whose sparse layers were already made dense passes through with only ``encoder.`` removed."""
    renamed = {}
    for key, value in state.items():
        if not key.startswith("encoder."):
            renamed[key] = value
            continue
        key = key.removeprefix("encoder.").replace(".ln.", ".").replace(".linear.", ".")
        if key.endswith(".kernel"):
            key, value = key.removesuffix(".kernel") + ".weight", minkowski_to_dense(value)
        renamed[key] = value
    return renamed


def _timm_stem_keys(state):
    """timm's overlapping stems number their modules on: ``stem.1`` is the norm of a patch stem but the second conv
    of an ``overlap`` stem (``stem.2``: its norm), and ``overlap_act`` has its GELU at ``stem.1`` (conv ``stem.2``,
    norm ``stem.3``). Their second conv and norm become ``stem.conv_2.*`` and ``stem.norm.*`` here."""
    keys = set(state)
    if "stem.3.weight" in keys:
        moves = {"stem.2.": "stem.conv_2.", "stem.3.": "stem.norm."}
    elif "stem.2.weight" in keys:
        moves = {"stem.1.": "stem.conv_2.", "stem.2.": "stem.norm."}
    else:
        return state
    renamed = {}
    for key, value in state.items():
        prefix = next((old for old in moves if key.startswith(old)), None)
        renamed[moves[prefix] + key[len(prefix):] if prefix else key] = value
    return renamed


TIMM = Layout(
    "timm",
    "timm (pytorch-image-models) .safetensors / .pth / .bin, Linear or 1x1-conv MLPs, every stem and norm type",
    r"stem\.0\.weight",
    (
        Rule(r"stem\.0\.(weight|bias)", f"{STEM}/conv", LINEAR),
        Rule(r"stem\.1\.(weight|bias)", f"{STEM}/layernorm", AFFINE),
        Rule(r"stem\.conv_2\.(weight|bias)", f"{STEM}/conv_2", LINEAR),
        Rule(r"stem\.norm\.(weight|bias)", f"{STEM}/layernorm", AFFINE),
        Rule(r"norm_pre\.(weight|bias)", HEAD_LAYERNORM, AFFINE),  # head_norm_first: the norm before the pooling
        Rule(r"stages\.(\d+)\.downsample\.0\.(weight|bias)", _in_downsample("layernorm"), AFFINE),
        Rule(r"stages\.(\d+)\.downsample\.1\.(weight|bias)", _in_downsample("conv"), LINEAR),
        *_block_rules(r"stages\.(\d+)\.blocks\.(\d+)", block_name, "conv_dw", "norm", r"mlp\.fc1", r"mlp\.fc2", r"mlp\.grn", "gamma"),
        Rule(r"head\.norm\.(weight|bias)", HEAD_LAYERNORM, AFFINE),
        Rule(r"head\.pre_logits\.fc\.(weight|bias)", HEAD_HIDDEN, LINEAR),  # convnext_large_mlp's MLP head
        Rule(r"head\.fc\.(weight|bias)", HEAD_DENSE, LINEAR),
    ),
    rename_keys=_timm_stem_keys,
)

OPEN_CLIP = Layout(
    "open_clip",
    "open_clip CLIP checkpoints of a timm ConvNeXt image tower (visual.trunk.*, visual.head.proj or visual.head.mlp); "
    "the text tower is ignored",
    r"visual\.trunk\.stem\.0\.weight",
    (
        *(Rule(r"visual\.trunk\." + rule.pattern, rule.prefix, rule.params) for rule in TIMM.rules),
        Rule(r"visual\.head\.proj\.(weight)", HEAD_DENSE, LINEAR),
        Rule(r"visual\.head\.mlp\.fc1\.(weight|bias)", HEAD_HIDDEN, LINEAR),
        Rule(r"visual\.head\.mlp\.fc2\.(weight)", HEAD_DENSE, LINEAR),
    ),
    ignored=r"(?!visual\.).*",
    zero_biases=(HEAD_DENSE,),
)

TORCHVISION = Layout(
    "torchvision",
    "torchvision convnext_* .pth (features.N / classifier.N)",
    r"features\.0\.0\.weight",
    (
        Rule(r"features\.0\.0\.(weight|bias)", f"{STEM}/conv", LINEAR),
        Rule(r"features\.0\.1\.(weight|bias)", f"{STEM}/layernorm", AFFINE),
        # features.{2s+1} holds stage s's blocks, features.{2s} (s >= 1) its downsampling.
        Rule(r"features\.(\d*[02468])\.0\.(weight|bias)", _in_downsample("layernorm", lambda n: n // 2), AFFINE),
        Rule(r"features\.(\d*[02468])\.1\.(weight|bias)", _in_downsample("conv", lambda n: n // 2), LINEAR),
        *_block_rules(
            r"features\.(\d*[13579])\.(\d+)",
            lambda n, b: block_name(n // 2, b),
            r"block\.0", r"block\.2", r"block\.3", r"block\.5", "grn", "layer_scale",
        ),
        Rule(r"classifier\.0\.(weight|bias)", HEAD_LAYERNORM, AFFINE),
        Rule(r"classifier\.2\.(weight|bias)", HEAD_DENSE, LINEAR),
    ),
)

HUGGING_FACE = Layout(
    "huggingface",
    "Hugging Face ConvNextForImageClassification / ConvNextV2ForImageClassification (model.safetensors, pytorch_model.bin)",
    r"convnext(?:v2)?\.embeddings\.patch_embeddings\.weight",
    (
        Rule(r"convnext(?:v2)?\.embeddings\.patch_embeddings\.(weight|bias)", f"{STEM}/conv", LINEAR),
        Rule(r"convnext(?:v2)?\.embeddings\.layernorm\.(weight|bias)", f"{STEM}/layernorm", AFFINE),
        Rule(r"convnext(?:v2)?\.encoder\.stages\.(\d+)\.downsampling_layer\.0\.(weight|bias)", _in_downsample("layernorm"), AFFINE),
        Rule(r"convnext(?:v2)?\.encoder\.stages\.(\d+)\.downsampling_layer\.1\.(weight|bias)", _in_downsample("conv"), LINEAR),
        *_block_rules(
            r"convnext(?:v2)?\.encoder\.stages\.(\d+)\.layers\.(\d+)",
            block_name, "dwconv", "layernorm", "pwconv1", "pwconv2", "grn", "layer_scale_parameter",
        ),
        Rule(r"convnext(?:v2)?\.layernorm\.(weight|bias)", HEAD_LAYERNORM, AFFINE),
        Rule(r"classifier\.(weight|bias)", HEAD_DENSE, LINEAR),
    ),
)

HUGGING_FACE_DINOV3 = Layout(
    "huggingface_dinov3",
    "Hugging Face DINOv3ConvNextModel / DINOv3ConvNextBackbone (facebook/dinov3-convnext-*-pretrain-lvd1689m)",
    r"(?:model\.)?stages\.0\.downsample_layers\.0\.weight",
    (
        Rule(r"(?:model\.)?stages\.0\.downsample_layers\.0\.(weight|bias)", f"{STEM}/conv", LINEAR),
        Rule(r"(?:model\.)?stages\.0\.downsample_layers\.1\.(weight|bias)", f"{STEM}/layernorm", AFFINE),
        Rule(r"(?:model\.)?stages\.(\d+)\.downsample_layers\.0\.(weight|bias)", _in_downsample("layernorm"), AFFINE),
        Rule(r"(?:model\.)?stages\.(\d+)\.downsample_layers\.1\.(weight|bias)", _in_downsample("conv"), LINEAR),
        *_block_rules(
            r"(?:model\.)?stages\.(\d+)\.layers\.(\d+)",
            block_name, "depthwise_conv", "layer_norm", "pointwise_conv1", "pointwise_conv2", "grn", "gamma",
        ),
        Rule(r"layer_norm\.(weight|bias)", HEAD_LAYERNORM, AFFINE),
    ),
)

FB_FCMAE = Layout(
    "fb_fcmae",
    "ConvNeXt-V2's official FCMAE pretraining checkpoints (convnextv2_*_1k_224_fcmae.pt): the encoder, sparse "
    "(MinkowskiEngine) or dense; the decoder is kc.pretraining.FCMAE's",
    r"encoder\.downsample_layers\.0\.0\.weight",
    FB.rules,
    ignored=FCMAE_DECODER,
    rename_keys=_fcmae_encoder_keys,
)

KERAS_APPLICATIONS = Layout(
    "keras_applications",
    "keras.applications ConvNeXt .h5 weight files (convnext_tiny.h5, convnext_tiny_notop.h5, ...)",
    r".*_stem_conv/kernel",
    (
        Rule(r".*_stem_conv/(kernel|bias)", f"{STEM}/conv", LINEAR),
        Rule(r".*_stem_layernorm/(gamma|beta)", f"{STEM}/layernorm", AFFINE),
        Rule(r".*_downsampling_layernorm_(\d+)/(gamma|beta)", _in_downsample("layernorm", lambda i: i + 1), AFFINE),
        Rule(r".*_downsampling_conv_(\d+)/(kernel|bias)", _in_downsample("conv", lambda i: i + 1), LINEAR),
        Rule(r".*_stage_(\d+)_block_(\d+)_depthwise_conv/(kernel|bias)", _in_block("depthwise_conv"), LINEAR),
        Rule(r".*_stage_(\d+)_block_(\d+)_layernorm/(gamma|beta)", _in_block("layernorm"), AFFINE),
        Rule(r".*_stage_(\d+)_block_(\d+)_pointwise_conv_1/(kernel|bias)", _in_block("pointwise_1"), LINEAR),
        Rule(r".*_stage_(\d+)_block_(\d+)_pointwise_conv_2/(kernel|bias)", _in_block("pointwise_2"), LINEAR),
        # keras.applications' LayerScale leaves its one weight unnamed ("variable_7", "Variable"...).
        Rule(r".*_stage_(\d+)_block_(\d+)_layer_scale/(\w+)", _in_block("layer_scale"), {"*": "gamma"}),
        Rule(r".*_head_layernorm/(gamma|beta)", HEAD_LAYERNORM, AFFINE),
        Rule(r"layer_normalization(?:_\d+)?/(gamma|beta)", HEAD_LAYERNORM, AFFINE),  # the _notop files' last norm
        Rule(r".*_head_dense/(kernel|bias)", HEAD_DENSE, LINEAR),
    ),
    torch_arrays=False,
    ignored=r".*normalization.*/(mean|variance|count)",
)

LAYOUTS = (HUGGING_FACE, HUGGING_FACE_DINOV3, TIMM, OPEN_CLIP, TORCHVISION, FB, FB_FCMAE, KERAS_APPLICATIONS)


def detect_layout(keys):
    """The ``Layout`` whose signature some key matches; ``ValueError`` listing the supported ones otherwise.

    Example:
        >>> detect_layout(["stem.0.weight", "stem.0.bias"]).name
        'timm'
    """
    keys = list(keys)
    for layout in LAYOUTS:
        if layout.matches(keys):
            return layout
    shown = ", ".join(keys[:5]) + (", ..." if len(keys) > 5 else "")
    supported = "\n".join(f"  - {layout.name}: {layout.description}" for layout in LAYOUTS)
    raise ValueError(
        f"Unknown checkpoint layout (first keys: {shown}). Supported layouts:\n{supported}\n"
        "  - keras_convnext: a .weights.h5 file saved by this package (model.save_weights)"
    )
