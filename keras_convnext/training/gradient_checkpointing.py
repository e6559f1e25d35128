"""Gradient checkpointing per stage through ``keras.RematScope``."""

import keras

from keras_convnext.layer_names import block_name

# More blocks than any ConvNeXt stage has (the deepest, stage 3 of the large models, has 27).
_MAX_BLOCKS = 64


def checkpoint_stages(stages=(0, 1, 2, 3)):
    """A ``keras.RematScope`` under which the blocks of ``stages`` recompute their activations in the backward
    pass instead of keeping them (``jax.checkpoint``, ``tf.recompute_grad``, ``torch.utils.checkpoint``).

    Build the model inside the scope; it trades compute for memory only in training.

    Example:
        >>> import keras_convnext as kc
        >>> with checkpoint_stages((0, 1)):
        ...     model = kc.ConvNeXtAtto(input_shape=(32, 32, 3), classes=10)
    """
    stages = tuple(stages)
    if not stages or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in stages):
        raise ValueError(f"stages must be stage indices (integers >= 0); got {stages!r}.")
    names = [block_name(stage, block) for stage in stages for block in range(_MAX_BLOCKS)]
    return keras.RematScope(mode="list_of_layers", layer_names=names)
