"""The ConvNeXt learning-rate schedule: linear warm-up from 0, then cosine decay to a floor."""

import keras


def warmup_cosine(learning_rate, total_steps, warmup_steps=0, min_learning_rate=1e-6):
    """A ``keras.optimizers.schedules.CosineDecay`` that warms up linearly over ``warmup_steps`` to
    ``learning_rate``, then decays to ``min_learning_rate`` at ``total_steps``.

    Example:
        >>> schedule = warmup_cosine(4e-3, total_steps=1000, warmup_steps=100)
        >>> round(float(schedule(100)), 6)
        0.004
    """
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0; got {learning_rate!r}.")
    if not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be a positive integer; got {total_steps!r}.")
    if not isinstance(warmup_steps, int) or not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_steps must be an integer in [0, total_steps={total_steps}); got {warmup_steps!r}.")
    if not 0 <= min_learning_rate <= learning_rate:
        raise ValueError(f"min_learning_rate must be in [0, learning_rate={learning_rate}]; got {min_learning_rate!r}.")
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else learning_rate,
        decay_steps=total_steps - warmup_steps,
        alpha=min_learning_rate / learning_rate,
        warmup_target=learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )
