"""The per-epoch history of a run as a CSV file that stays right across kills and resumes."""

import csv
import io
from pathlib import Path

import keras

from keras_convnext.atomic_files import write_text_atomically


def read_history(path):
    """The rows of a history CSV as a list of dicts of floats (``epoch`` as int); ``[]`` if there is no file.

    Example:
        >>> [row["epoch"] for row in read_history("run/history.csv")]  # a run of three epochs  # doctest: +SKIP
        [0, 1, 2]
    """
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for row in csv.DictReader(io.StringIO(path.read_text())):
        rows.append({key: int(value) if key == "epoch" else float(value) for key, value in row.items()})
    return rows


class HistoryCSV(keras.callbacks.Callback):
    """Writes one row per epoch (the epoch and every log) to a CSV, rewriting the file atomically each time.

    On the first epoch of a ``fit`` it drops any rows from that epoch on, left by a run killed after logging an
    epoch but before backing it up; ``CSVLogger(append=True)`` would repeat them. Put it before the backup callback.

    Example:
        >>> model.fit(data, epochs=5, callbacks=[HistoryCSV("run/history.csv")])  # doctest: +SKIP
    """

    def __init__(self, path):
        super().__init__()
        self.path = Path(path)
        self._rows = None

    def on_epoch_begin(self, epoch, logs=None):
        if self._rows is None:
            self._rows = [row for row in read_history(self.path) if row["epoch"] < epoch]

    def on_epoch_end(self, epoch, logs=None):
        self._rows.append({"epoch": epoch, **{key: float(value) for key, value in (logs or {}).items()}})
        fields = list(dict.fromkeys(key for row in self._rows for key in row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fields, restval="nan")
        writer.writeheader()
        writer.writerows(self._rows)
        write_text_atomically(self.path, buffer.getvalue())
