"""``keras.callbacks.BackupAndRestore`` whose backup survives being killed at any instant."""

import json
from pathlib import Path

import keras

from keras_convnext.atomic_files import write_text_atomically
from keras_convnext.weights.saving import save_weights


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Backs up the model and optimizer state after every epoch so that ``fit`` resumes after the last one.

    Keras' callback overwrites ``latest.weights.h5`` and then the epoch counter in place, so a kill during the
    write, or between the two writes, leaves a corrupt backup or weights one epoch ahead of the counter. Here
    each epoch's weights go to their own file (written to a temporary name and renamed), and only then does the
    counter, itself written atomically, point to them: any instant leaves a consistent pair. ``write_dir``: where
    this process writes (default ``backup_dir``); the processes of a data-parallel run other than process 0 restore
    from ``backup_dir`` but write into a throwaway folder (on JAX across hosts saving is collective: every process
    must save).

    Example:
        >>> model.fit(data, epochs=30, callbacks=[AtomicBackupAndRestore("run/backup")])  # doctest: +SKIP
    """

    def __init__(self, backup_dir, delete_checkpoint=True, write_dir=None):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=delete_checkpoint)
        self._state_path = Path(backup_dir) / "state.json"
        self._write_dir = Path(write_dir or backup_dir)

    def completed_epochs(self):
        """How many epochs the backup holds (0 when there is none).

        Example:
            >>> AtomicBackupAndRestore("a-run-not-started/backup").completed_epochs()
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
        save_weights(self.model, self._write_dir / name, include_optimizer=True)
        state = json.dumps({"epoch": self._current_epoch, "weights": name})
        write_text_atomically(self._write_dir / self._state_path.name, state)
        for stale in self._write_dir.glob("epoch_*.weights.h5"):
            if stale.name != name:
                stale.unlink(missing_ok=True)
