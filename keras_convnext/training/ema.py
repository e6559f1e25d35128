"""Evaluating and saving the exponential moving average of the weights that ``use_ema=True`` keeps."""

import contextlib

import keras

from keras_convnext.weights import save_weights


def _ema_optimizer(model):
    optimizer = getattr(model, "optimizer", None)
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer under mixed_float16
    if inner is None or not getattr(inner, "use_ema", False):
        raise ValueError("The model's optimizer keeps no EMA weights; compile it with an optimizer made with use_ema=True.")
    if not inner.built:
        raise ValueError("The optimizer has no EMA weights yet: train (or build the optimizer) first.")
    return inner


@contextlib.contextmanager
def ema_weights(model):
    """Inside the block ``model`` holds its EMA weights; on leaving, its raw weights come back.

    Uses ``keras.callbacks.SwapEMAWeights``, the swap Keras itself does around evaluation. Note that ``fit``
    ends by copying the EMA into the model (``optimizer.finalize_variable_values``), so after ``fit`` the model
    already holds its EMA weights; this is for use during training (callbacks, ``train_on_batch`` loops).

    Example:
        >>> with ema_weights(model):  # a model compiled with use_ema=True and trained  # doctest: +SKIP
        ...     model.evaluate(validation)
    """
    _ema_optimizer(model)
    # Keras swaps arithmetically on TensorFlow (a += b; b = a - b; a -= b), which is off by float rounding:
    # the raw weights are put back from a copy, so they return bit for bit.
    raw = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    swap = keras.callbacks.SwapEMAWeights()
    swap.set_model(model)
    swap.on_test_begin()
    try:
        yield model
    finally:
        swap.on_test_end()
        for variable, value in zip(model.trainable_variables, raw):
            variable.assign(value)


def save_ema_weights(model, path):
    """Writes ``model``'s EMA weights to a ``.weights.h5`` (atomically); the model keeps its raw weights.

    Example:
        >>> save_ema_weights(model, "out/model_ema.weights.h5")  # as above  # doctest: +SKIP
    """
    with ema_weights(model):
        return save_weights(model, path)
