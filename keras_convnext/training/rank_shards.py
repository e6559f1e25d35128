"""Each process's share of an image folder when every process runs its own ``model.fit`` (torch.distributed):
what ``torch.utils.data.DistributedSampler`` does for a PyTorch loader, for ``tf.data`` and Keras.

Every epoch the training files are put in an order seeded by ``(seed, epoch)`` (the same on every process), cut
into whole global batches (the last partial one dropped), and process ``r`` of ``n`` takes the ``r``-th slice of
each: the processes together see exactly the batches one process with the global batch would, and only decode
their own images.

Example:
    >>> rank_indices(10, global_batch=4, rank=1, world_size=2, seed=0, epoch=0).shape  # 2 whole batches, 2 each
    (4,)
"""

from pathlib import Path

import numpy as np


def rank_indices(count, *, global_batch, rank, world_size, seed, epoch):
    """The indices of the files process ``rank`` trains on in ``epoch``, in its order: its slice of each whole
    global batch of a permutation seeded by ``(seed, epoch)``.

    Example:
        >>> first = rank_indices(8, global_batch=4, rank=0, world_size=2, seed=0, epoch=0)
        >>> second = rank_indices(8, global_batch=4, rank=1, world_size=2, seed=0, epoch=0)
        >>> sorted(np.concatenate([first, second]).tolist())
        [0, 1, 2, 3, 4, 5, 6, 7]
    """
    order = np.random.default_rng([seed, epoch]).permutation(count)
    steps = count // global_batch
    per_process = global_batch // world_size
    return order[: steps * global_batch].reshape(steps, world_size, per_process)[:, rank].reshape(-1)


def class_labels(paths, data_dir, class_names):
    """The class index of each file: the class sub-folder of ``data_dir`` it lies in (at any depth).

    Example:
        >>> class_labels(["d/rose/1.png", "d/tulip/a/2.png"], "d", ["rose", "tulip"]).tolist()
        [0, 1]
    """
    index = {name: number for number, name in enumerate(class_names)}
    return np.array([index[Path(path).relative_to(data_dir).parts[0]] for path in paths], "int64")


def load_image(path, image_size):
    """A ``tf.data`` map function: the image file at ``path`` as a float32 ``(image_size, image_size, 3)`` tensor of
    0..255, centre-cropped to a square and resized bilinearly, as ``keras.utils.image_dataset_from_directory`` with
    ``crop_to_aspect_ratio=True`` reads it.

    Example:
        >>> import tensorflow as tf
        >>> images = tf.data.Dataset.from_tensor_slices(paths).map(lambda p: load_image(p, 224))  # doctest: +SKIP
    """
    import tensorflow as tf

    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    side = tf.minimum(height, width)
    image = image[(height - side) // 2:(height - side) // 2 + side, (width - side) // 2:(width - side) // 2 + side]
    image = tf.image.resize(image, (image_size, image_size), method="bilinear")
    image.set_shape((image_size, image_size, 3))
    return image


def _labelled_image_loader(image_size, classes):
    import tensorflow as tf

    def load(path, label):
        return load_image(path, image_size), tf.one_hot(label, classes)

    return load


def rank_training_dataset(paths, labels, *, classes, image_size, global_batch, rank, world_size, seed, epochs,
                          first_epoch=0):
    """Process ``rank``'s batches for epochs ``first_epoch .. epochs - 1`` in one stream (pass
    ``steps_per_epoch = len(paths) // global_batch`` to ``fit``), with one-hot labels.

    Example:
        >>> train = rank_training_dataset(paths, labels, classes=5, image_size=224, global_batch=64,  # doctest: +SKIP
        ...                               rank=0, world_size=2, seed=0, epochs=10)
        >>> model.fit(train, epochs=10, steps_per_epoch=len(paths) // 64)  # doctest: +SKIP
    """
    import tensorflow as tf

    paths, labels = np.asarray(paths), np.asarray(labels)

    def indices():
        for epoch in range(first_epoch, epochs):
            yield from rank_indices(len(paths), global_batch=global_batch, rank=rank, world_size=world_size,
                                    seed=seed, epoch=epoch)

    order = tf.data.Dataset.from_generator(indices, output_signature=tf.TensorSpec((), tf.int64))
    files = order.map(lambda i: (tf.gather(paths, i), tf.gather(labels, i)))
    load = _labelled_image_loader(image_size, classes)
    return files.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(global_batch // world_size)


def rank_evaluation_dataset(paths, labels, *, classes, image_size, batch_size, rank, world_size):
    """Process ``rank``'s share of a held-out set (every ``world_size``-th file from ``rank``): the shares together
    hold every file exactly once.

    Example:
        >>> validation = rank_evaluation_dataset(paths, labels, classes=5, image_size=224, batch_size=32,  # doctest: +SKIP
        ...                                      rank=0, world_size=2)
    """
    import tensorflow as tf

    share = tf.data.Dataset.from_tensor_slices((np.asarray(paths)[rank::world_size], np.asarray(labels)[rank::world_size]))
    load = _labelled_image_loader(image_size, classes)
    return share.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
