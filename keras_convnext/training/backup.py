"""A ``fit`` backup that survives being killed at any instant, and the epoch to resume from."""

import json
from pathlib import Path

import keras

from keras_convnext.atomic_files import write_text_atomically
from keras_convnext.weights.saving import save_weights


class AtomicBackupAndRestore(keras.callbacks.Callback):
    """Backs up the model and optimizer state after every epoch, and restores the last backup when ``fit`` starts.

    Pass ``fit(initial_epoch=backup.completed_epochs())`` so that ``fit`` goes on after the last backed-up epoch (a
    ``fit`` that would train a backed-up epoch again is refused). Keras' ``BackupAndRestore`` overwrites
    ``latest.weights.h5`` and then the epoch counter in place, so a kill during the write, or between the two writes,
    leaves a corrupt backup or weights one epoch ahead of the counter. Here each epoch's weights go to their own file
    (written to a temporary name and renamed), and only then does the counter, itself written atomically, point to
    them: any instant leaves a consistent pair. ``write_dir``: where this process writes (default ``backup_dir``); the
    processes of a data-parallel run other than process 0 restore from ``backup_dir`` but write into a throwaway
    folder (on JAX across hosts saving is collective: every process must save). ``delete_checkpoint`` removes the
    backup when ``fit`` ends.

    Example:
        >>> backup = AtomicBackupAndRestore("run/backup")  # doctest: +SKIP
        >>> model.fit(data, epochs=30, initial_epoch=backup.completed_epochs(), callbacks=[backup])  # doctest: +SKIP
    """

    def __init__(self, backup_dir, delete_checkpoint=True, write_dir=None):
        super().__init__()
        self.backup_dir = Path(backup_dir)
        self.delete_checkpoint = delete_checkpoint
        self._state_path = self.backup_dir / "state.json"
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

    def on_train_begin(self, logs=None):
        self._restored_epochs = 0
        if not self._state_path.exists():
            return
        state = json.loads(self._state_path.read_text())
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(self.backup_dir / state["weights"])
        self._restored_epochs = int(state["epoch"])

    def on_epoch_begin(self, epoch, logs=None):
        done = self._restored_epochs
        if epoch < done:
            raise ValueError(
                f"The backup in {self.backup_dir} holds {done} epochs, and fit was about to train epoch {epoch + 1} "
                f"again: pass fit(initial_epoch={done}) (AtomicBackupAndRestore.completed_epochs()) to resume."
            )

    def on_epoch_end(self, epoch, logs=None):
        name = f"epoch_{epoch + 1}.weights.h5"
        save_weights(self.model, self._write_dir / name, include_optimizer=True)
        write_text_atomically(self._write_dir / self._state_path.name, json.dumps({"epoch": epoch + 1, "weights": name}))
        for stale in self._write_dir.glob("epoch_*.weights.h5"):
            if stale.name != name:
                stale.unlink(missing_ok=True)

    def on_train_end(self, logs=None):
        if self.delete_checkpoint:
            for path in [self._write_dir / self._state_path.name, *self._write_dir.glob("epoch_*.weights.h5")]:
                path.unlink(missing_ok=True)
