"""Loading ConvNeXt weights from every layout they come in, into a model handed over by the caller.

``weights`` never reaches back into ``keras_convnext.applications``: it matches a checkpoint to a model by
structure (canonical keys), so it never needs the variant table.
"""

from keras_convnext.weights.checkpoint_readers import read_state_dict, sniff_container
from keras_convnext.weights.download import cache_dir, download, sha256_of
from keras_convnext.weights.layouts import LAYOUTS, detect_layout
from keras_convnext.weights.loading import (
    assign_arrays,
    canonical_key,
    checkpoint_classes,
    convert_state_dict,
    load_checkpoint,
    model_slots,
    read_checkpoint,
)
from keras_convnext.weights.presets import list_presets, preset_for, preset_output, presets, unknown_preset_hint
from keras_convnext.weights.resolve import convert, load_weights, resolve_weights
from keras_convnext.weights.saving import save_weights

__all__ = [
    "LAYOUTS",
    "assign_arrays",
    "cache_dir",
    "canonical_key",
    "checkpoint_classes",
    "convert",
    "convert_state_dict",
    "detect_layout",
    "download",
    "load_checkpoint",
    "list_presets",
    "load_weights",
    "model_slots",
    "preset_for",
    "preset_output",
    "presets",
    "read_checkpoint",
    "read_state_dict",
    "resolve_weights",
    "save_weights",
    "sha256_of",
    "sniff_container",
]
