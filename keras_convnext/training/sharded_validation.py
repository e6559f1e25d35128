"""Validation that counts every image exactly once on any number of devices.

A data-parallel step needs a batch that splits evenly over the devices, and a validation set of 13 images has a
last batch that does not. Keras' own ``fit(validation_data=...)`` would fail on it (JAX) or weigh it differently, so
under ``--devices`` the last batch is padded with blank images up to the global batch, run, and the padding's outputs
are dropped before the loss and metrics are computed: the same figures as on one device. With torch.distributed each
process validates its own share of the images and the totals are summed over the processes.
"""

import keras
import numpy as np


def validation_metrics(model, dataset, loss, *, top_k, batch_size, sum_over_processes=None):
    """``{"loss", "accuracy", f"top{top_k}"}`` (no top-k for ``top_k=None``) of ``model`` over ``dataset`` (batches of
    images and one-hot labels),
    each image counted once; batches smaller than ``batch_size`` are padded for the model and the padding ignored.
    ``sum_over_processes`` (``DataParallelSetup.sum_over_processes``) adds up the totals of processes that each
    validated their own share.

    Example:
        >>> validation_metrics(model, validation, recipe_loss(0.1), top_k=5, batch_size=32)  # doctest: +SKIP
        {'loss': 0.61, 'accuracy': 0.88, 'top5': 1.0}
    """
    total_loss, correct, in_top_k, count = 0.0, 0, 0, 0
    for images, labels in dataset:
        images, labels = np.asarray(images), np.asarray(labels)
        real = len(images)
        if real < batch_size:
            padding = np.zeros((batch_size - real,) + images.shape[1:], images.dtype)
            images = np.concatenate([images, padding])
        probabilities = np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(images)), "float32")[:real]
        total_loss += float(keras.ops.convert_to_numpy(loss(labels, probabilities))) * real
        truth = np.argmax(labels, axis=-1)
        ranked = np.argsort(-probabilities, axis=-1)
        correct += int(np.sum(ranked[:, 0] == truth))
        in_top_k += int(np.sum(np.any(ranked[:, :top_k or 1] == truth[:, None], axis=-1)))
        count += real
    if sum_over_processes is not None:
        total_loss, correct, in_top_k, count = sum_over_processes(np.array([total_loss, correct, in_top_k, count], "float64"))
    if count == 0:
        raise ValueError("The validation set holds no images.")
    metrics = {"loss": float(total_loss / count), "accuracy": float(correct / count)}
    return {**metrics, f"top{top_k}": float(in_top_k / count)} if top_k else metrics


class ShardedValidation(keras.callbacks.Callback):
    """Adds ``val_loss``, ``val_accuracy`` and ``val_top{k}`` from ``validation_metrics`` to each epoch's logs, for
    the callbacks after it (history, backups); use it instead of ``fit(validation_data=...)``.

    Example:
        >>> callback = ShardedValidation(validation, recipe_loss(0.1), top_k=5, batch_size=32)  # doctest: +SKIP
        >>> model.fit(train, epochs=10, callbacks=[callback, history])  # doctest: +SKIP
    """

    def __init__(self, dataset, loss, *, top_k, batch_size, sum_over_processes=None):
        super().__init__()
        self.dataset, self.loss, self.top_k, self.batch_size = dataset, loss, top_k, batch_size
        self.sum_over_processes = sum_over_processes

    def on_epoch_end(self, epoch, logs=None):
        metrics = validation_metrics(
            self.model, self.dataset, self.loss, top_k=self.top_k, batch_size=self.batch_size,
            sum_over_processes=self.sum_over_processes,
        )
        if logs is not None:
            logs.update({f"val_{name}": value for name, value in metrics.items()})
