"""Writing weight and text files so that a crash or a full disk never leaves a half-written file under the final name."""

import os
import tempfile
from pathlib import Path


def save_weights(model, path, include_optimizer=False):
    """Saves ``model``'s weights to ``path`` (a ``.weights.h5`` file) through a temporary file and a rename.

    Keras writes a compiled model's optimizer state (moments, EMA) into ``.weights.h5`` too, tripling its size;
    the shared weight file holds the model alone unless ``include_optimizer`` (as a training backup needs).

    Example:
        >>> save_weights(model, "out/convnext_atto.weights.h5")
    """
    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise ValueError(f"Keras weight files must end in '.weights.h5'; got {str(path)!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial.weights.h5")
    os.close(fd)
    if not include_optimizer and getattr(model, "optimizer", None) is not None:
        import keras

        trained = model
        model = keras.models.clone_model(trained)
        model.set_weights(trained.get_weights())
    try:
        model.save_weights(temporary, overwrite=True)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_text_atomically(path, text):
    """Writes ``text`` to ``path`` through a temporary file in the same folder and a rename.

    Example:
        >>> write_text_atomically("out/train_config.json", json.dumps(config))
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
