"""Multi-scale features for detection and segmentation heads."""

import keras

from keras_convnext.layer_names import STEM, parse_block_name


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
    return keras.Model(inputs, outputs, name=name or f"{model.name}_features")
