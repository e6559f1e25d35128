"""Converting a checkpoint for a named variant: composed here, above ``applications`` and ``weights``."""

from keras_convnext.applications import create_model
from keras_convnext.layer_names import HEAD_DENSE, HEAD_LAYERNORM
from keras_convnext.weights import assign_arrays, read_checkpoint, save_weights


def convert_weights(source, variant, output):
    """Converts checkpoint ``source`` (any supported layout) for ``variant`` into one ``.weights.h5``.

    The model is built with the checkpoint's own classifier (or none, for a headless checkpoint), so the
    file holds everything the source held. Load it with ``weights=output`` on any backend.

    Example:
        >>> convert_weights("convnext_tiny_1k_224_ema.pth", "convnext_tiny", "convnext_tiny.weights.h5")  # doctest: +SKIP
        PosixPath('convnext_tiny.weights.h5')
    """
    arrays, unmatched, layout = read_checkpoint(source)
    head = arrays.get(f"{HEAD_DENSE}/kernel")
    model = create_model(
        variant,
        include_top=head is not None,
        classes=head.shape[1] if head is not None else 1000,
        pooling=None if head is not None or f"{HEAD_LAYERNORM}/gamma" not in arrays else "avg",
    )
    assign_arrays(model, arrays, source=f"{layout.name} checkpoint {source}", unmatched=unmatched)
    return save_weights(model, output)
