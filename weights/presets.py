"""The preset registry (``presets.json``): named pretrained weights with their source, hash and eval config."""

import difflib
import functools
import json
from pathlib import Path

PRESETS_FILE = Path(__file__).with_name("presets.json")


@functools.cache
def presets():
    """``{preset name: record}`` from ``presets.json``.

    Example:
        >>> presets()["convnext_tiny.fb_in1k"]["variant"]
        'convnext_tiny'
    """
    return json.loads(PRESETS_FILE.read_text())["presets"]


def list_presets(variant=None):
    """Preset names, optionally only those of one variant.

    Example:
        >>> list_presets("convnext_base")[:2]
        ['keras_applications.convnext_base', 'convnext_base.fb_in1k']
    """
    return [name for name, record in presets().items() if variant in (None, record["variant"])]


def preset_for(weights, variant):
    """The preset name ``weights`` means for ``variant``: ``"imagenet"`` picks the variant's default.

    Returns ``None`` when ``weights`` is no preset name (a path or URL); raises ``ValueError`` for a preset of
    another variant or a variant without ImageNet weights.

    Example:
        >>> preset_for("imagenet", "convnext_tiny")
        'convnext_tiny.fb_in1k'
    """
    if not isinstance(weights, str):
        return None
    if weights == "imagenet":
        defaults = [name for name in list_presets(variant) if presets()[name]["default"]]
        if not defaults:
            raise ValueError(f"No ImageNet weights are known for {variant}; pass weights=None or a checkpoint file.")
        return defaults[0]
    record = presets().get(weights)
    if record is None:
        return None
    if record["variant"] != variant:
        raise ValueError(
            f"Preset {weights!r} holds {record['variant']} weights, not {variant}. Presets for {variant}: "
            f"{', '.join(list_presets(variant)) or 'none'}."
        )
    return weights


def preset_output(name):
    """What preset ``name``'s top gives: ``"embedding"`` for a CLIP image tower, else ``"predictions"``.

    Example:
        >>> preset_output("convnext_base.clip_laion2b"), preset_output("convnext_tiny.fb_in1k")
        ('embedding', 'predictions')
    """
    return presets()[name].get("output", "predictions")


def unknown_preset_hint(weights):
    """A sentence naming the closest preset names, for errors about a string that is neither file nor preset.

    Example:
        >>> unknown_preset_hint("convnext_tiny.fb_1k")
        " Did you mean 'convnext_tiny.fb_in1k', 'convnext_tiny.fb_in22k', 'convnext_tiny.in12k'?"
    """
    close = difflib.get_close_matches(str(weights), list(presets()), n=3, cutoff=0.6)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
