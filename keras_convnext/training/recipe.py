"""The ConvNeXt training recipe as one call: the optimizer, its schedule and the loss."""

import keras

from keras_convnext.training.layer_decay import layer_decay_multipliers
from keras_convnext.training.optimizer import LayerwiseAdamW
from keras_convnext.training.schedule import warmup_cosine


def recipe_optimizer(
    model,
    *,
    learning_rate,
    total_steps,
    warmup_steps=0,
    min_learning_rate=1e-6,
    weight_decay=0.05,
    layer_decay=None,
    use_ema=False,
    ema_momentum=0.9999,
    **kwargs,
):
    """``LayerwiseAdamW`` for ``model`` with ConvNeXt's recipe: warm-up + cosine, no decay on norms, biases,
    LayerScale and GRN, optional layer-wise learning-rate decay and EMA of the weights.

    Official values (``shared/reference``): from scratch lr 4e-3 per 4096 images, weight decay 0.05, 20 warm-up
    epochs; fine-tuning lr 5e-5, weight decay 1e-8, layer decay 0.8 (V1) or 0.9 (V2 Tiny).

    Example:
        >>> import keras_convnext as kc
        >>> model = kc.ConvNeXtAtto(input_shape=(32, 32, 3), classes=4)
        >>> optimizer = recipe_optimizer(model, learning_rate=5e-5, total_steps=3000, warmup_steps=300,
        ...                              weight_decay=1e-8, layer_decay=0.8, use_ema=True)
    """
    multipliers = None if layer_decay is None else layer_decay_multipliers(model, layer_decay)
    return LayerwiseAdamW(
        learning_rate=warmup_cosine(learning_rate, total_steps, warmup_steps, min(min_learning_rate, learning_rate)),
        weight_decay=weight_decay,
        learning_rate_multipliers=multipliers,
        use_ema=use_ema,
        ema_momentum=ema_momentum,
        **kwargs,
    )


def recipe_loss(label_smoothing=0.1):
    """Cross-entropy on one-hot (or MixUp/CutMix-mixed) labels with label smoothing, on probabilities.

    Example:
        >>> import keras_convnext as kc
        >>> model = kc.ConvNeXtAtto(input_shape=(32, 32, 3), classes=4)
        >>> model.compile(optimizer="adamw", loss=recipe_loss(0.1), metrics=["accuracy"])
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1); got {label_smoothing!r}.")
    return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
