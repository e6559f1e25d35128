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
        rand_augment_layer = keras.layers.RandAugment(value_range=(0, 255), num_ops=2, factor=0.5, seed=seed, dtype="float32")
        if type(getattr(rand_augment_layer, "equalization", None)) is keras.layers.Equalization:
            rand_augment_layer.equalization = BincountEqualization(value_range=(0, 255), dtype="float32")
        layers.append(rand_augment_layer)
    if random_erasing:
        layers.append(keras.layers.RandomErasing(factor=random_erasing, value_range=(0, 255), seed=seed, dtype="float32"))

    def augment(images, labels):
        for layer in layers:
            images = layer(images, training=True)
        return images, labels

    return augment


class BincountEqualization(keras.layers.Equalization):
    """``keras.layers.Equalization`` whose histogram is one ``bincount`` wherever the layer runs on TensorFlow.

    Keras 3.15 chooses the histogram's code by the global backend: under JAX it unrolls a loop over the 256 bins,
    also inside ``tf.data``, where the layer runs on TensorFlow and ``bincount`` works. RandAugment's graph for a
    batch then held 23,000 ops instead of 1,600 and took 15 s to trace (a second or so on TensorFlow); it is the
    equalization RandAugment uses here. Same histogram, same outputs.

    Example:
        >>> import numpy as np
        >>> images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
        >>> same = BincountEqualization()(images) == keras.layers.Equalization()(images)
        >>> bool(np.all(keras.ops.convert_to_numpy(same)))
        True
    """

    def _custom_histogram_fixed_width(self, values, value_range, nbins):
        if self.backend.name == "jax":
            return super()._custom_histogram_fixed_width(values, value_range, nbins)
        value_min, value_max = (self.backend.cast(bound, "float32") for bound in value_range)
        scaled = (self.backend.cast(values, "float32") - value_min) * (nbins - 1) / (value_max - value_min)
        indices = self.backend.numpy.clip(self.backend.cast(scaled, "int32"), 0, nbins - 1)
        return self.backend.numpy.bincount(self.backend.numpy.reshape(indices, [-1]), minlength=nbins)


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
