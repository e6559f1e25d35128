"""Resolving the ``weights=`` argument of the builders.

This release builds randomly initialised models only; loading presets, URLs and foreign checkpoints is
the next step. ``weights`` never reaches back into ``keras_convnext.applications``: it is handed a model
and works on it by structure.
"""

from keras_convnext.version import __version__
from keras_convnext.weights.atomic_save import save_weights


def check_weights_argument(weights):
    """Raises ``ValueError`` for any ``weights`` other than ``None``, before a model is built.

    Example:
        >>> check_weights_argument(None)  # random initialisation: accepted
    """
    if weights is None:
        return
    raise ValueError(
        f"weights={weights!r} is not supported yet: keras-convnext {__version__} builds randomly "
        "initialised models only, so pass weights=None. To reuse weights saved by model.save_weights(), "
        "build the same variant with weights=None and call model.load_weights(path)."
    )

