"""Saving a model's weights as the one ``.weights.h5`` file every backend loads, never half-written."""

from pathlib import Path

from keras_convnext.atomic_files import atomic_write_path


def save_weights(model, path, include_optimizer=False):
    """Saves ``model``'s weights to ``path`` (a ``.weights.h5`` file) through a temporary file and a rename.

    Keras writes a compiled model's optimizer state (moments, EMA) into ``.weights.h5`` too, tripling its size;
    the shared weight file holds the model alone unless ``include_optimizer`` (as a training backup needs).

    Example:
        >>> save_weights(model, "out/convnext_atto.weights.h5")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise ValueError(f"Keras weight files must end in '.weights.h5'; got {str(path)!r}.")
    if not include_optimizer and getattr(model, "optimizer", None) is not None:
        import keras

        trained = model
        model = keras.models.clone_model(trained)
        model.set_weights(trained.get_weights())
    with atomic_write_path(path, suffix=".partial.weights.h5") as temporary:
        model.save_weights(temporary, overwrite=True)
    return path
