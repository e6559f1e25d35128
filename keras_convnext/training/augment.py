"""The recipe's data augmentation from ``keras.layers``, applied to batches in a ``tf.data`` pipeline.

Per image: horizontal flip, RandAugment and RandomErasing; per batch: MixUp or CutMix (one of the two, chosen at
random per batch when both are on, as timm does), on one-hot labels so that every label row still sums to 1.
The layers compute in float32 whatever the global dtype policy: they feed the model, whose first layer casts.
"""

import keras


def image_augmentation(*, flip=True, rand_augment=True, random_erasing=0.25, seed=None):
    """A function ``(images, labels) -> (augmented images, labels)`` for batches with values in 0..255.

    The ``keras.layers`` it chains run on TensorFlow inside ``tf.data`` whatever the backend (a ``Sequential``
    of them would not), so map it over a dataset.

    Example:
        >>> import tensorflow as tf
        >>> dataset = tf.data.Dataset.from_tensor_slices((tf.zeros((4, 32, 32, 3)), tf.one_hot([0, 1, 2, 3], 4)))
        >>> dataset = dataset.map(image_augmentation(rand_augment=False, random_erasing=0.25))
        >>> [tuple(images.shape) for images, labels in dataset.batch(4)]
        [(4, 32, 32, 3)]
    """
    if not 0.0 <= random_erasing <= 1.0:
        raise ValueError(f"random_erasing must be a probability in [0, 1]; got {random_erasing!r}.")
    layers = []
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed, dtype="float32"))
    if rand_augment:
        layers.append(keras.layers.RandAugment(value_range=(0, 255), num_ops=2, factor=0.5, seed=seed, dtype="float32"))
    if random_erasing:
        layers.append(keras.layers.RandomErasing(factor=random_erasing, value_range=(0, 255), seed=seed, dtype="float32"))

    def augment(images, labels):
        for layer in layers:
            images = layer(images, training=True)
        return images, labels

    return augment


def batch_mixing(*, mixup_alpha=0.8, cutmix_alpha=1.0, seed=None):
    """A function ``(images, one_hot_labels) -> (images, labels)`` for ``tf.data`` that applies MixUp or CutMix
    (``keras.layers.MixUp`` / ``keras.layers.CutMix``); ``None`` when both are off.

    Example:
        >>> import tensorflow as tf
        >>> batches = tf.data.Dataset.from_tensor_slices((tf.zeros((4, 32, 32, 3)), tf.one_hot([0, 1, 2, 3], 4)))
        >>> mixed = batches.batch(4).map(batch_mixing(mixup_alpha=0.8, cutmix_alpha=1.0))
        >>> [round(float(tf.reduce_sum(labels)), 4) for images, labels in mixed]  # each row's labels still sum to 1
        [4.0]
    """
    import tensorflow as tf

    for name, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0 (0 turns it off); got {value!r}.")
    mixers = []
    if mixup_alpha:
        mixers.append(keras.layers.MixUp(alpha=mixup_alpha, seed=seed, dtype="float32"))
    if cutmix_alpha:
        mixers.append(keras.layers.CutMix(factor=cutmix_alpha, seed=seed, dtype="float32"))
    if not mixers:
        return None

    def mix(images, labels):
        outputs = [mixer({"images": images, "labels": tf.cast(labels, "float32")}) for mixer in mixers]
        if len(outputs) == 1:
            return outputs[0]["images"], outputs[0]["labels"]
        use_first = tf.random.uniform([]) < 0.5
        return (
            tf.where(use_first, outputs[0]["images"], outputs[1]["images"]),
            tf.where(use_first, outputs[0]["labels"], outputs[1]["labels"]),
        )

    return mix
