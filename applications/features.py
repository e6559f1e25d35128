"""Multi-scale features for detection and segmentation heads."""

import keras

from keras_convnext.applications.convnext_model import ConvNeXtModel
from keras_convnext.layer_names import HEAD_LAYERNORM, STEM, parse_block_name
from keras_convnext.layers.data_format import standardize_data_format


def feature_extractor(model, name=None):
    """A model with ``model``'s input whose output is a dict of the feature map after each stage.

    Keys name the stride relative to the input: ``stride_4``, ``stride_8``, ``stride_16`` and ``stride_32``
    for the hierarchical ConvNeXts; ``stride_16`` alone for the isotropic ones. The maps are the raw stage
    outputs (no extra norm). Build the backbone with ``include_top=False`` and an open input shape such
    as ``(None, None, 3)`` to accept any image size divisible by 32.

    Example:
        >>> import numpy as np
        >>> from keras_convnext import ConvNeXt
        >>> backbone = ConvNeXt((1, 1, 1, 1), (8, 16, 24, 32), include_top=False, input_shape=(None, None, 3))
        >>> features = feature_extractor(backbone)
        >>> sorted(features(np.zeros((1, 64, 96, 3), "float32")).keys())
        ['stride_16', 'stride_32', 'stride_4', 'stride_8']
    """
    last_block = {}
    for layer in model.layers:
        parsed = parse_block_name(layer.name)
        if parsed:
            stage, block = parsed
            if block >= last_block.get(stage, (-1, None))[0]:
                last_block[stage] = (block, layer)
    try:
        stem = model.get_layer(STEM)
    except ValueError:
        stem = None
    if not last_block or stem is None:
        raise ValueError(
            f"feature_extractor needs a keras_convnext model (layers named 'stem' and 'stage_<s>_block_<b>'); "
            f"model {model.name!r} has none."
        )
    outputs = {
        f"stride_{stem.patch_size * 2 ** stage}": layer.output for stage, (_, layer) in sorted(last_block.items())
    }
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return ConvNeXtModel(inputs, outputs, name=name or f"{model.name}_features")


def dense_features(model, name=None):
    """DINOv3's outputs from one call: a model with ``model``'s input and a dict of

    - ``embedding``: the final LayerNorm of the average-pooled last map, ``(B, C)`` (transformers'
      ``pooler_output``, the original's ``x_norm_clstoken``);
    - ``patch_tokens``: the same LayerNorm at every position of the last map, ``(B, H/32, W/32, C)`` whatever the
      data format (``x_norm_patchtokens``);
    - ``stride_4`` … ``stride_32``: the raw stage maps, as ``feature_extractor`` (``DINOv3ConvNextBackbone``).

    ``model`` is a backbone built with ``include_top=False, pooling="avg"``: its ``head_layernorm`` is DINOv3's
    final norm (``norm`` in the original, ``layer_norm`` in transformers, ``head.norm`` in timm).

    Example:
        >>> import numpy as np
        >>> from keras_convnext import ConvNeXt
        >>> backbone = ConvNeXt((1, 1, 1, 1), (8, 16, 24, 32), include_top=False, pooling="avg",
        ...                     input_shape=(None, None, 3))
        >>> outputs = dense_features(backbone)(np.zeros((1, 64, 96, 3), "float32"))
        >>> tuple(outputs["embedding"].shape), tuple(outputs["patch_tokens"].shape)
        ((1, 32), (1, 2, 3, 32))
    """
    try:
        norm = model.get_layer(HEAD_LAYERNORM)
    except ValueError:
        norm = None
    if norm is None or len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
        raise ValueError(
            f"dense_features needs a backbone built with include_top=False, pooling='avg' (its '{HEAD_LAYERNORM}' "
            f"is the final norm); model {model.name!r} has "
            + ("no such layer." if norm is None else f"outputs of shape {[tuple(o.shape) for o in model.outputs]}.")
        )
    maps = dict(feature_extractor(model).output)
    last = maps[max(maps, key=lambda key: int(key.split("_")[1]))]
    if standardize_data_format(model.get_layer(STEM).data_format) == "channels_first":
        last = keras.layers.Permute((2, 3, 1), name="patch_tokens_channels_last")(last)
    outputs = {"embedding": model.outputs[0], "patch_tokens": norm(last), **maps}
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return ConvNeXtModel(inputs, outputs, name=name or f"{model.name}_dense_features")
