"""Folders of unlabelled images (any nesting) read for pretraining, with FCMAE's augmentation: RandomResizedCrop
(scale 0.2-1, bicubic) and a horizontal flip, nothing else."""

from pathlib import Path

from keras_convnext.training.datasets import IMAGE_EXTENSIONS, image_file_problem

CROP_SCALE = (0.2, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)


def scan_unlabelled_folder(data_dir):
    """The sorted image files anywhere under ``data_dir``, after decoding each once; ``ValueError`` naming every
    file that cannot be read (or the lack of images) before anything is trained or written.

    Example:
        >>> files = scan_unlabelled_folder("photos/")  # a folder of yours  # doctest: +SKIP
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"{str(root)!r} is not a folder; expected a folder of images (sub-folders allowed).")
    files = [f for f in sorted(root.rglob("*")) if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
        raise ValueError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found anywhere under {str(root)!r}.")
    problems = [f"{file} ({problem})" for file in files if (problem := image_file_problem(file))]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ValueError(
            f"{len(problems)} file(s) under {str(root)!r} cannot be trained on: {shown}. Remove them or re-save them "
            "as PNG or JPEG; nothing was written."
        )
    return files


def pretraining_dataset(files, *, image_size, batch_size, seed=0, augment=True):
    """A ``tf.data`` pipeline of ``(batch_size, image_size, image_size, 3)`` float batches of 0..255 RGB, reshuffled
    each epoch, whole batches only; ``augment``: RandomResizedCrop(0.2-1, bicubic) and a horizontal flip, else a
    plain resize.

    Example:
        >>> dataset = pretraining_dataset(files, image_size=224, batch_size=64)  # doctest: +SKIP
    """
    import tensorflow as tf

    if len(files) < batch_size:
        raise ValueError(f"The {len(files)} images make no whole batch of {batch_size}; lower --batch-size.")

    def load(path, image_seed):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image.set_shape((None, None, 3))
        if not augment:
            return tf.cast(tf.image.resize(image, (image_size, image_size), "bicubic"), tf.float32)
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(image), tf.zeros((1, 0, 4)), seed=image_seed, area_range=CROP_SCALE,
            aspect_ratio_range=CROP_RATIO, use_image_if_no_bounding_boxes=True, min_object_covered=0.0,
        )
        crop = tf.slice(image, begin, size)
        crop = tf.image.resize(crop, (image_size, image_size), "bicubic")
        crop = tf.image.stateless_random_flip_left_right(crop, seed=image_seed + 1)
        return tf.clip_by_value(crop, 0.0, 255.0)

    paths = tf.data.Dataset.from_tensor_slices([str(f) for f in files])
    paths = paths.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    data = tf.data.Dataset.zip(paths, seeds).map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return data.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
