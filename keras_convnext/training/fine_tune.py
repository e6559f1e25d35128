"""Fine-tuning helpers: a new classifier head, and freezing the first stages of the backbone."""

import keras

from keras_convnext.layer_names import (
    HEAD_DENSE,
    HEAD_DROPOUT,
    HEAD_HIDDEN,
    HEAD_LAYERNORM,
    PREDICTIONS,
    STEM,
    parse_stage_layer,
)
from keras_convnext.applications.convnext_model import ConvNeXtModel
from keras_convnext.layers.initializers import kernel_initializer


def replace_head(model, classes, *, head_init_scale=0.001, classifier_activation="softmax"):
    """A model sharing ``model``'s backbone (and its weights) with a new ``head_dense`` of ``classes`` outputs,
    initialised at ``head_init_scale`` times the usual scale, as ConvNeXt's fine-tuning recipe does. An MLP head
    keeps its hidden layer (as timm's ``reset_classifier`` does), so a CLIP tower fine-tunes as timm's do.

    Example:
        >>> import keras_convnext as kc
        >>> pets = replace_head(kc.ConvNeXtAtto(input_shape=(32, 32, 3)), classes=37)
        >>> pets.output_shape
        (None, 37)
    """
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"classes must be a positive integer; got {classes!r}.")
    if not head_init_scale > 0:
        raise ValueError(f"head_init_scale must be > 0; got {head_init_scale!r}.")
    layer_names = {layer.name for layer in model.layers}
    if HEAD_DENSE not in layer_names:
        raise ValueError("replace_head needs a model built with include_top=True (it has no 'head_dense' layer).")
    features_layer = next(name for name in (HEAD_DROPOUT, HEAD_HIDDEN, HEAD_LAYERNORM) if name in layer_names)
    features = model.get_layer(features_layer).output
    logits = keras.layers.Dense(classes, kernel_initializer=kernel_initializer(head_init_scale), name=HEAD_DENSE)(features)
    outputs = keras.layers.Activation(classifier_activation, dtype="float32", name=PREDICTIONS)(logits)
    return ConvNeXtModel(model.input, outputs, name=model.name)


def freeze_stages(model, stages):
    """Freezes the stem and the first ``stages`` stages (0 freezes nothing, 4 the whole backbone but the head).

    Recompile the model afterwards: Keras reads ``trainable`` when it compiles.

    Example:
        >>> import keras_convnext as kc
        >>> model = freeze_stages(kc.ConvNeXtAtto(input_shape=(32, 32, 3)), 2)  # stem, stages 0 and 1 stay fixed
        >>> model.get_layer("stage_1_block_0").trainable, model.get_layer("stage_2_downsample").trainable
        (False, True)
    """
    stage_of = {layer.name: parsed[0] for layer in model.layers if (parsed := parse_stage_layer(layer.name))}
    stage_count = len(set(stage_of.values()))
    if isinstance(stages, bool) or not isinstance(stages, int) or not 0 <= stages <= stage_count:
        raise ValueError(f"stages must be an integer in [0, {stage_count}] for this model; got {stages!r}.")
    for layer in model.layers:
        if stages and (layer.name == STEM or stage_of.get(layer.name, stages) < stages):
            layer.trainable = False
    return model


def unfreeze(model):
    """Makes every layer trainable again (recompile afterwards).

    Example:
        >>> import keras_convnext as kc
        >>> model = freeze_stages(kc.ConvNeXtAtto(input_shape=(32, 32, 3)), 2)
        >>> unfreeze(model).get_layer("stage_1_block_0").trainable
        True
    """
    for layer in model.layers:
        layer.trainable = True
    return model
