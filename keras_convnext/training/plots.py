"""PNG figures of a run: training curves and a confusion matrix (matplotlib, no display needed)."""

from pathlib import Path

import numpy as np

from keras_convnext.atomic_files import atomic_write_path


def _save_figure(figure, path):
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        with atomic_write_path(path, suffix=".png") as temporary:
            figure.savefig(temporary, dpi=100, bbox_inches="tight")
    finally:
        plt.close(figure)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(rows, path):
    """Loss and accuracy per epoch (training and validation) from history rows, saved as a PNG.

    Example:
        >>> import tempfile
        >>> rows = [{"epoch": 0, "loss": 1.2, "accuracy": 0.4}, {"epoch": 1, "loss": 0.8, "accuracy": 0.7}]
        >>> plot_history(rows, Path(tempfile.mkdtemp()) / "training_curves.png").name
        'training_curves.png'
    """
    if not rows:
        raise ValueError("plot_history needs at least one epoch of history.")
    plt = _pyplot()
    epochs = [row["epoch"] + 1 for row in rows]
    metrics = [metric for metric in ("loss", "accuracy") if metric in rows[0] or f"val_{metric}" in rows[0]]
    figure, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        for prefix, style in (("", "-o"), ("val_", "--s")):
            if prefix + metric in rows[0]:
                axis.plot(epochs, [row[prefix + metric] for row in rows], style, label=(prefix or "train_") + metric)
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    return _save_figure(figure, path)


def plot_confusion_matrix(matrix, class_names, path):
    """A confusion matrix (rows: true class, columns: predicted) with its counts, saved as a PNG.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "confusion_matrix.png"
        >>> plot_confusion_matrix(np.array([[5, 1], [0, 6]]), ["cat", "dog"], path).exists()
        True
    """
    matrix = np.asarray(matrix)
    if matrix.shape != (len(class_names), len(class_names)):
        raise ValueError(f"matrix must be {len(class_names)}x{len(class_names)} for {len(class_names)} classes; got {matrix.shape}.")
    plt = _pyplot()
    size = max(4.0, 0.45 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues")
    ticks = np.arange(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=90)
    axis.set_yticks(ticks, class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if len(class_names) <= 30:
        threshold = matrix.max() / 2 if matrix.size else 0
        for (row, col), count in np.ndenumerate(matrix):
            axis.text(col, row, str(count), ha="center", va="center", color="white" if count > threshold else "black")
    return _save_figure(figure, path)


def confusion_matrix(labels, predictions, classes):
    """Counts of (true, predicted) pairs as a ``classes`` x ``classes`` integer matrix.

    Example:
        >>> confusion_matrix([0, 1, 1], [0, 1, 0], 2).tolist()
        [[1, 0], [1, 1]]
    """
    matrix = np.zeros((classes, classes), "int64")
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix
