"""Gradient checkpointing per stage through ``keras.RematScope``."""

import keras

from keras_convnext.layer_names import parse_block_name


class StageBlockNames(tuple):
    """The layer names ``keras.RematScope(mode="list_of_layers")`` checks with ``in``: every block of ``stages``, at
    any depth, since the scope is made before the model and a custom stage may be as deep as its user wants.

    Example:
        >>> names = StageBlockNames((1, 2))
        >>> "stage_2_block_120" in names, "stage_3_block_0" in names, "stage_1_downsample" in names
        (True, False, False)
    """

    def __new__(cls, stages):
        return super().__new__(cls, stages)

    def __contains__(self, name):
        parsed = parse_block_name(name) if isinstance(name, str) else None
        return parsed is not None and tuple.__contains__(self, parsed[0])

    def __repr__(self):
        return f"StageBlockNames(stages={tuple(self)!r})"


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
    return keras.RematScope(mode="list_of_layers", layer_names=StageBlockNames(stages))
