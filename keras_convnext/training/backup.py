"""``keras.callbacks.BackupAndRestore`` whose backup survives being killed at any instant."""

import json
import os
import tempfile
from pathlib import Path

import keras

from keras_convnext.weights import save_weights


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


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Backs up the model and optimizer state after every epoch so that ``fit`` resumes after the last one.

    Keras' callback overwrites ``latest.weights.h5`` and then the epoch counter in place, so a kill during the
    write, or between the two writes, leaves a corrupt backup or weights one epoch ahead of the counter. Here
    each epoch's weights go to their own file (written to a temporary name and renamed), and only then does the
    counter, itself written atomically, point to them: any instant leaves a consistent pair.

    Example:
        >>> model.fit(data, epochs=30, callbacks=[AtomicBackupAndRestore("run/backup")])
    """

    def __init__(self, backup_dir, delete_checkpoint=True):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=delete_checkpoint)
        self._state_path = Path(backup_dir) / "state.json"

    def completed_epochs(self):
        """How many epochs the backup holds (0 when there is none).

        Example:
            >>> AtomicBackupAndRestore("run/backup").completed_epochs()
            0
        """
        if not self._state_path.exists():
            return 0
        return int(json.loads(self._state_path.read_text())["epoch"])

    def _load_model(self):
        if not self._state_path.exists():
            return
        state = json.loads(self._state_path.read_text())
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(Path(self.backup_dir) / state["weights"])
        self.model._initial_epoch = int(state["epoch"])  # read by fit(), as Keras' own callback does

    def _save_model(self):
        name = f"epoch_{self._current_epoch}.weights.h5"
        save_weights(self.model, Path(self.backup_dir) / name, include_optimizer=True)
        write_text_atomically(self._state_path, json.dumps({"epoch": self._current_epoch, "weights": name}))
        for stale in Path(self.backup_dir).glob("epoch_*.weights.h5"):
            if stale.name != name:
                stale.unlink(missing_ok=True)
