"""The names of a ConvNeXt's layers, made and parsed in this one place (standard library only).

A model's layers are named from their place, never from the model's ``name=``: ``stem``,
``stage_{s}_downsample`` (s >= 1), ``stage_{s}_block_{b}``, ``head_layernorm``, ``head_hidden`` (the first layer
of an MLP head, as CLIP towers have), ``head_dense``. The builders, the feature extractor, layer decay, freezing,
remat and the checkpoint layouts all read these names, so a ``.weights.h5`` written by one part loads in every
other.

Example:
    >>> block_name(2, 5), parse_stage_layer("stage_2_block_5"), parse_stage_layer("stage_1_downsample")
    ('stage_2_block_5', (2, 5), (1, None))
"""

import re

STEM = "stem"
HEAD_LAYERNORM = "head_layernorm"
HEAD_HIDDEN = "head_hidden"
HEAD_DROPOUT = "head_dropout"
HEAD_DENSE = "head_dense"
# The top's last layer: a classifier's activation, or a CLIP tower's embedding (no activation).
PREDICTIONS = "predictions"
EMBEDDING = "embedding"

_STAGE_LAYER = re.compile(r"^stage_(\d+)_(?:block_(\d+)|downsample)$")


def block_name(stage, block):
    """The name of block ``block`` of stage ``stage`` (both 0-based).

    Example:
        >>> block_name(2, 5)
        'stage_2_block_5'
    """
    return f"stage_{stage}_block_{block}"


def downsample_name(stage):
    """The name of the downsampling layer in front of stage ``stage`` (stage 0 has the stem instead).

    Example:
        >>> downsample_name(1)
        'stage_1_downsample'
    """
    return f"stage_{stage}_downsample"


def parse_stage_layer(name):
    """``(stage, block)`` of a block's name, ``(stage, None)`` of a downsampling layer's, else ``None``.

    Example:
        >>> parse_stage_layer("stage_3_block_0"), parse_stage_layer("head_dense")
        ((3, 0), None)
    """
    match = _STAGE_LAYER.match(name)
    if match is None:
        return None
    return int(match.group(1)), None if match.group(2) is None else int(match.group(2))


def parse_block_name(name):
    """``(stage, block)`` of a block's name, ``None`` for any other name (a downsampling layer's included).

    Example:
        >>> parse_block_name("stage_0_block_2"), parse_block_name("stage_1_downsample")
        ((0, 2), None)
    """
    parsed = parse_stage_layer(name)
    return parsed if parsed is not None and parsed[1] is not None else None
