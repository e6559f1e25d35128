"""Loads ConvNeXt-V2's official FCMAE checkpoints (``convnextv2_*_1k_224_fcmae.pt``), decoder included."""

import re

import numpy as np

from keras_convnext.layer_names import block_name
from keras_convnext.weights.checkpoint_readers import read_state_dict
from keras_convnext.weights.layouts import FB, FB_FCMAE
from keras_convnext.weights.loading import assign_arrays, canonical_key, convert_state_dict

_DECODER_BLOCK = re.compile(r"decoder\.(\d+)\.(.*)")


def _decoder_arrays(state):
    """``{canonical key of the FCMAE decoder: Keras array}`` from the official decoder's keys."""
    arrays = {}
    blocks = {}
    for key, value in state.items():
        match = _DECODER_BLOCK.fullmatch(key)
        if match:  # the official decoder block is the dense ConvNeXt-V2 block: the FB layout's rules convert it
            blocks[f"stages.0.{match.group(1)}.{match.group(2)}"] = value
    converted, unmatched, _ = convert_state_dict(blocks, layout=FB)
    if unmatched:
        raise ValueError(f"Unknown decoder keys in the FCMAE checkpoint: {', '.join(sorted(unmatched)[:6])}.")
    stage_0 = block_name(0, 0).removesuffix("0")
    for key, value in converted.items():
        arrays["decoder_block_" + key.removeprefix(stage_0)] = value
    for source, target in (("proj", "decoder_projection"), ("pred", "decoder_prediction")):
        if f"{source}.weight" in state:
            weight = state[f"{source}.weight"]
            arrays[f"{target}/kernel"] = weight.reshape(weight.shape[0], -1).T
            arrays[f"{target}/bias"] = state[f"{source}.bias"].reshape(-1)
    if "mask_token" in state:
        arrays["mask_token"] = state["mask_token"].reshape(-1)
    return arrays


def _decoder_slots(model):
    variables = [*model.projection.weights, *model.prediction.weights]
    for block in model.decoder_blocks:
        variables += block.weights
    # The mask token's path starts with the model's own name.
    return {"mask_token": model.mask_token, **{canonical_key(variable.path): variable for variable in variables}}


def load_fcmae_checkpoint(model, path):
    """Loads an official FCMAE checkpoint (sparse MinkowskiEngine keys, or the same model made dense) into
    ``model``, a ``kc.pretraining.FCMAE`` of the same variant, decoder width and depth; every shape is checked
    before any weight changes. The encoder alone loads into any builder too (``weights=`` the file).

    Example:
        >>> model = FCMAE("convnextv2_atto")  # doctest: +SKIP
        >>> load_fcmae_checkpoint(model, "convnextv2_atto_1k_224_fcmae.pt")  # doctest: +SKIP
    """
    source = f"FCMAE checkpoint {path}"
    state = read_state_dict(path)
    if not FB_FCMAE.matches(state):
        raise ValueError(
            f"{path} is not an FCMAE checkpoint: it has no encoder.downsample_layers.0.0.weight (first keys: "
            f"{', '.join(list(state)[:4])})."
        )
    decoder = _decoder_arrays(state)
    slots = _decoder_slots(model)
    missing = sorted(set(slots) - set(decoder))
    unexpected = sorted(set(decoder) - set(slots))
    if missing or unexpected:
        raise ValueError(
            f"The {source} does not fit this FCMAE's decoder (decoder_depth {model.decoder_depth}). Missing from it: "
            f"{', '.join(missing[:6]) or 'nothing'}. Unexpected in it: {', '.join(unexpected[:6]) or 'nothing'}."
        )
    for key, variable in slots.items():
        if tuple(decoder[key].shape) != tuple(variable.shape):
            raise ValueError(
                f"The {source} does not fit this FCMAE: {key} has shape {tuple(decoder[key].shape)} in the checkpoint "
                f"and {tuple(variable.shape)} in the model (decoder_dim {model.decoder_dim}, patch_size "
                f"{model.patch_size})."
            )
    arrays, unmatched, _ = convert_state_dict(state, layout=FB_FCMAE)
    assign_arrays(model.encoder, arrays, source=source, unmatched=unmatched, allow_new_classifier=False)
    for key, variable in slots.items():
        variable.assign(np.asarray(decoder[key], dtype=variable.dtype))
