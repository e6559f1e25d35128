"""Loading ConvNeXt weights from every layout they come in, into a model handed over by the caller.

``weights`` never reaches back into ``keras_convnext.applications``: it matches a checkpoint to a model by
structure (canonical keys), so it never needs the variant table.
"""

from pathlib import Path

from keras_convnext.weights.atomic_save import save_weights
from keras_convnext.weights.presets import list_presets, preset_for, presets, unknown_preset_hint
from keras_convnext.weights.download import cache_dir, download, sha256_of
from keras_convnext.weights.checkpoint_readers import read_state_dict, sniff_container
from keras_convnext.weights.layouts import LAYOUTS, detect_layout
from keras_convnext.weights.loading import (
    assign_arrays,
    canonical_key,
    convert_state_dict,
    load_checkpoint,
    model_slots,
    read_checkpoint,
)


def resolve_weights(weights):
    """Checks the ``weights=`` argument before a model is built; returns ``None`` or the checkpoint's path.

    A preset name or a URL is downloaded into the cache first (``URL#sha256=<hex>`` checks the file's hash).

    Example:
        >>> resolve_weights(None) is None
        True
    """
    if weights is None:
        return None
    text = str(weights)
    if text in presets():
        record = presets()[text]
        return download(record["urls"][0], sha256=record["sha256"])
    if text == "imagenet":
        raise ValueError(
            "weights='imagenet' needs a named variant, e.g. keras_convnext.ConvNeXtTiny(weights='imagenet'); the "
            "generic ConvNeXt builder takes a preset name, a URL or a checkpoint file."
        )
    if text.startswith(("http://", "https://")):
        url, _, fragment = text.partition("#sha256=")
        return download(url, sha256=fragment or None)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                return path / name
        raise ValueError(f"weights={str(weights)!r} is a directory without model.safetensors or pytorch_model.bin.")
    raise ValueError(
        f"weights={weights!r} is not a file. Pass None (random initialisation) or the path of a checkpoint: "
        "a .weights.h5 saved by this package, a keras.applications .h5, or a timm, torchvision, Hugging Face "
        "or facebookresearch checkpoint (.safetensors, .pth, .bin); or an http(s) URL of one, optionally ending "
        f"in '#sha256=<hex digest>'; or a preset name (keras_convnext.weights.list_presets()).{unknown_preset_hint(text)}"
    )


def load_weights(model, weights):
    """Loads ``weights`` (as accepted by ``resolve_weights``) into ``model``; returns the layout's name or None.

    Example:
        >>> load_weights(model, "convnext_tiny_hf/model.safetensors")  # doctest: +SKIP
        'huggingface'
    """
    path = resolve_weights(weights)
    return None if path is None else load_checkpoint(model, path)


def convert(source, model, output):
    """Converts checkpoint ``source`` into ``model`` and writes it as a ``.weights.h5`` to ``output``.

    ``model`` is the architecture to fill; ``keras_convnext.convert_weights`` takes a variant name instead.

    Example:
        >>> convert("convnext_tiny.pth", kc.create_model("convnext_tiny"), "tiny.weights.h5")  # doctest: +SKIP
    """
    load_weights(model, source)
    return save_weights(model, output)


__all__ = [
    "LAYOUTS",
    "assign_arrays",
    "cache_dir",
    "canonical_key",
    "convert",
    "convert_state_dict",
    "detect_layout",
    "download",
    "load_checkpoint",
    "list_presets",
    "load_weights",
    "model_slots",
    "preset_for",
    "presets",
    "read_checkpoint",
    "read_state_dict",
    "resolve_weights",
    "save_weights",
    "sha256_of",
    "sniff_container",
]
