"""Fine-tuning helpers: a new classifier head, and freezing the first stages of the backbone."""

import re

import keras

from keras_convnext.layers.initializers import kernel_initializer

_STAGE_OF_LAYER = re.compile(r"^stage_(\d+)_(?:block_\d+|downsample)$")


def replace_head(model, classes, *, head_init_scale=0.001, classifier_activation="softmax"):
    """A model sharing ``model``'s backbone (and its weights) with a new ``head_dense`` of ``classes`` outputs,
    initialised at ``head_init_scale`` times the usual scale, as ConvNeXt's fine-tuning recipe does.

    Example:
        >>> pets = replace_head(kc.ConvNeXtTiny(weights="imagenet"), classes=37)
    """
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"classes must be a positive integer; got {classes!r}.")
    if not head_init_scale > 0:
        raise ValueError(f"head_init_scale must be > 0; got {head_init_scale!r}.")
    layer_names = {layer.name for layer in model.layers}
    if "head_dense" not in layer_names:
        raise ValueError("replace_head needs a model built with include_top=True (it has no 'head_dense' layer).")
    features = model.get_layer("head_dropout" if "head_dropout" in layer_names else "head_layernorm").output
    logits = keras.layers.Dense(classes, kernel_initializer=kernel_initializer(head_init_scale), name="head_dense")(features)
    outputs = keras.layers.Activation(classifier_activation, dtype="float32", name="predictions")(logits)
    return keras.Model(model.input, outputs, name=model.name)


def freeze_stages(model, stages):
    """Freezes the stem and the first ``stages`` stages (0 freezes nothing, 4 the whole backbone but the head).

    Recompile the model afterwards: Keras reads ``trainable`` when it compiles.

    Example:
        >>> freeze_stages(model, 2)     # stem, stage 0 and stage 1 stay fixed
    """
    stage_count = len({int(m.group(1)) for layer in model.layers if (m := _STAGE_OF_LAYER.match(layer.name))})
    if isinstance(stages, bool) or not isinstance(stages, int) or not 0 <= stages <= stage_count:
        raise ValueError(f"stages must be an integer in [0, {stage_count}] for this model; got {stages!r}.")
    for layer in model.layers:
        match = _STAGE_OF_LAYER.match(layer.name)
        if stages and (layer.name == "stem" or (match and int(match.group(1)) < stages)):
            layer.trainable = False
    return model


def unfreeze(model):
    """Makes every layer trainable again (recompile afterwards).

    Example:
        >>> unfreeze(model)
    """
    for layer in model.layers:
        layer.trainable = True
    return model
