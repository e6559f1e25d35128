"""Reference checkpoints for the weight tests: Hugging Face models (real PyTorch), re-keyed into the other layouts.

timm and torchvision do not import beside this machine's torch build, so their state dicts are built from a
Hugging Face model by the key mappings their code documents: timm ``convnext.py`` (``checkpoint_filter_fn``),
torchvision ``convnext.py`` (``features.N`` / ``classifier.N``) and facebookresearch ``convnext.py``.
"""

import re

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import ConvNextConfig, ConvNextForImageClassification, ConvNextV2Config, ConvNextV2ForImageClassification

SMALL = {"depths": [1, 1, 2, 1], "hidden_sizes": [8, 16, 24, 32]}
TINY = {"depths": [3, 3, 9, 3], "hidden_sizes": [96, 192, 384, 768]}


def hugging_face_model(version, arch=SMALL, classes=5, seed=0):
    """A randomly initialised HF ConvNext (V1) or ConvNextV2 whose every parameter is moved off its init."""
    torch.manual_seed(seed)
    if version == "V1":
        model = ConvNextForImageClassification(ConvNextConfig(**arch, num_labels=classes))
    else:
        model = ConvNextV2ForImageClassification(ConvNextV2Config(**arch, num_labels=classes))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            scale = 0.3 if parameter.ndim == 1 or "grn" in name or "layer_scale" in name else 0.05
            parameter.add_(torch.randn_like(parameter) * scale)
    return model.eval()


def hugging_face_logits(model, images_nhwc):
    with torch.no_grad():
        return model(torch.from_numpy(images_nhwc.transpose(0, 3, 1, 2).copy())).logits.numpy()


def _stage_block_rename(state, block_pattern, rename_block, renames):
    out = {}
    for key, value in state.items():
        match = re.fullmatch(block_pattern, key)
        if match:
            stage, block, rest = int(match.group(1)), int(match.group(2)), match.group(3)
            for old, new in renames:
                if rest.startswith(old):
                    rest = new + rest[len(old):]
                    break
            out[rename_block(stage, block) + rest] = value
        else:
            out[key] = value
    return out


def to_timm(hf_state, conv_mlp=False):
    """HF keys -> timm keys (timm's checkpoint_filter_fn maps the other way for FB keys)."""
    prefix = "convnextv2." if any(k.startswith("convnextv2.") for k in hf_state) else "convnext."
    state = {k.removeprefix(prefix): v.clone() for k, v in hf_state.items()}
    state = _stage_block_rename(
        state,
        r"encoder\.stages\.(\d+)\.layers\.(\d+)\.(.*)",
        lambda s, b: f"stages.{s}.blocks.{b}.",
        [("dwconv", "conv_dw"), ("layernorm", "norm"), ("pwconv1", "mlp.fc1"), ("pwconv2", "mlp.fc2"),
         ("grn.weight", "mlp.grn.weight"), ("grn.bias", "mlp.grn.bias"), ("layer_scale_parameter", "gamma")],
    )
    out = {}
    for key, value in state.items():
        key = key.replace("embeddings.patch_embeddings.", "stem.0.").replace("embeddings.layernorm.", "stem.1.")
        key = re.sub(r"encoder\.stages\.(\d+)\.downsampling_layer\.", r"stages.\1.downsample.", key)
        key = key.replace("classifier.", "head.fc.")
        if key.startswith("layernorm."):
            key = "head.norm." + key.removeprefix("layernorm.")
        if ".mlp.grn." in key:
            value = value.reshape(-1)  # timm stores GRN as (C,)
        if conv_mlp and (".mlp.fc1.weight" in key or ".mlp.fc2.weight" in key):
            value = value[:, :, None, None]
        out[key] = value
    return out


def to_torchvision(hf_state):
    """HF V1 keys -> torchvision's features.N / classifier.N."""
    state = {k.removeprefix("convnext."): v.clone() for k, v in hf_state.items()}
    state = _stage_block_rename(
        state,
        r"encoder\.stages\.(\d+)\.layers\.(\d+)\.(.*)",
        lambda s, b: f"features.{2 * s + 1}.{b}.",
        [("dwconv", "block.0"), ("layernorm", "block.2"), ("pwconv1", "block.3"), ("pwconv2", "block.5"),
         ("layer_scale_parameter", "layer_scale")],
    )
    out = {}
    for key, value in state.items():
        key = key.replace("embeddings.patch_embeddings.", "features.0.0.").replace("embeddings.layernorm.", "features.0.1.")
        match = re.fullmatch(r"encoder\.stages\.(\d+)\.downsampling_layer\.(\d)\.(\w+)", key)
        if match:
            key = f"features.{2 * int(match.group(1))}.{match.group(2)}.{match.group(3)}"
        key = key.replace("classifier.", "classifier.2.")
        if key.startswith("layernorm."):
            key = "classifier.0." + key.removeprefix("layernorm.")
        if key.endswith("layer_scale"):
            value = value.reshape(-1, 1, 1)  # torchvision stores (C, 1, 1)
        out[key] = value
    return out


def to_fb(hf_state):
    """HF keys -> facebookresearch ConvNeXt / ConvNeXt-V2 keys, wrapped as {"model": state_dict}."""
    prefix = "convnextv2." if any(k.startswith("convnextv2.") for k in hf_state) else "convnext."
    state = {k.removeprefix(prefix): v.clone() for k, v in hf_state.items()}
    state = _stage_block_rename(
        state,
        r"encoder\.stages\.(\d+)\.layers\.(\d+)\.(.*)",
        lambda s, b: f"stages.{s}.{b}.",
        [("layernorm", "norm"), ("grn.weight", "grn.gamma"), ("grn.bias", "grn.beta"), ("layer_scale_parameter", "gamma")],
    )
    out = {}
    for key, value in state.items():
        key = key.replace("embeddings.patch_embeddings.", "downsample_layers.0.0.").replace("embeddings.layernorm.", "downsample_layers.0.1.")
        key = re.sub(r"encoder\.stages\.(\d+)\.downsampling_layer\.", r"downsample_layers.\1.", key)
        key = key.replace("classifier.", "head.")
        if key.startswith("layernorm."):
            key = "norm." + key.removeprefix("layernorm.")
        out[key] = value
    return {"model": out}


def save(state, path):
    """Writes a state dict as ``.safetensors``, or as a torch pickle for any other suffix; returns ``path``."""
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, str(path))
    return path


def normalised_images(rng, count=2, size=64):
    return rng.normal(size=(count, size, size, 3)).astype(np.float32)


def dinov3_model(arch=SMALL, seed=0):
    """A randomly initialised transformers ``DINOv3ConvNextModel``, every parameter moved off its init."""
    from transformers import DINOv3ConvNextConfig, DINOv3ConvNextModel

    torch.manual_seed(seed)
    model = DINOv3ConvNextModel(DINOv3ConvNextConfig(depths=arch["depths"], hidden_sizes=arch["hidden_sizes"]))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.add_(torch.randn_like(parameter) * (0.3 if parameter.ndim == 1 else 0.05))
    return model.eval()


def dinov3_outputs(model, images_nhwc):
    """transformers' DINOv3 outputs, channels-last: pooled ``(B, C)``, patch tokens ``(B, h, w, C)`` and the four
    raw stage maps."""
    with torch.no_grad():
        output = model(torch.from_numpy(images_nhwc.transpose(0, 3, 1, 2).copy()), output_hidden_states=True)
    stages = [state.numpy().transpose(0, 2, 3, 1) for state in output.hidden_states[1:]]  # [0]: the pixels
    height, width, channels = stages[-1].shape[1:]
    patch_tokens = output.last_hidden_state[:, 1:].numpy().reshape(-1, height, width, channels)
    return {"embedding": output.pooler_output.numpy(), "patch_tokens": patch_tokens,
            **{f"stride_{4 * 2 ** i}": stage for i, stage in enumerate(stages)}}


def dinov3_to_original(hf_state):
    """transformers DINOv3 keys -> facebookresearch/dinov3 ``convnext.py`` keys, with the duplicate ``norms.3``."""
    out = {}
    for key, value in hf_state.items():
        key = key.removeprefix("model.")
        key = re.sub(r"stages\.(\d+)\.downsample_layers\.", r"downsample_layers.\1.", key)
        key = re.sub(r"stages\.(\d+)\.layers\.(\d+)\.", r"stages.\1.\2.", key)
        key = key.replace("depthwise_conv", "dwconv").replace("pointwise_conv", "pwconv").replace(".layer_norm.", ".norm.")
        if key.startswith("layer_norm."):
            key = "norm." + key.removeprefix("layer_norm.")
            out["norms.3." + key.removeprefix("norm.")] = value.clone()
        out[key] = value.clone()
    return out


def dinov3_to_timm(hf_state):
    """transformers DINOv3 keys -> timm ``convnext_*.dinov3_lvd1689m`` keys (the final norm is ``head.norm``)."""
    out = {}
    for key, value in hf_state.items():
        key = key.removeprefix("model.")
        key = re.sub(r"stages\.0\.downsample_layers\.", "stem.", key)
        key = re.sub(r"stages\.(\d+)\.downsample_layers\.", r"stages.\1.downsample.", key)
        key = re.sub(r"stages\.(\d+)\.layers\.(\d+)\.", r"stages.\1.blocks.\2.", key)
        key = (key.replace("depthwise_conv", "conv_dw").replace("pointwise_conv1", "mlp.fc1")
               .replace("pointwise_conv2", "mlp.fc2").replace(".layer_norm.", ".norm."))
        if key.startswith("layer_norm."):
            key = "head.norm." + key.removeprefix("layer_norm.")
        out[key] = value.clone()
    return out
