"""Image folders (one sub-folder per class) checked up front and read with ``keras.utils.image_dataset_from_directory``."""

from pathlib import Path

import numpy as np

from keras_convnext.image_headers import DEFAULT_MAX_PIXELS, header_problem

# The extensions image_dataset_from_directory reads.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


def image_file_problem(path, max_pixels=DEFAULT_MAX_PIXELS):
    """Why the image at ``path`` cannot be trained on, or ``None``: it is decoded with the decoder training uses
    (``tf.io.decode_image``), after its header is checked for a palette BMP and for a decompression bomb.

    Example:
        >>> image_file_problem("flowers/rose/broken.jpg")  # doctest: +SKIP
        'not a decodable image (...)'
    """
    import tensorflow as tf

    try:
        data = Path(path).read_bytes()
    except OSError as error:
        return f"unreadable ({error.strerror or error})"
    problem = header_problem(data, max_pixels)
    if problem:
        return problem
    try:
        tf.io.decode_image(data, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        reason = (error.message or str(error)).strip().splitlines()[0]
        reason = reason.split("}} ", 1)[-1].split(" [Op:", 1)[0]  # TensorFlow's op name and device around the cause
        return f"not a decodable image, or cut short ({reason})"
    return None


def scan_image_folder(data_dir, *, min_classes=2):
    """The sorted class names of ``data_dir`` and its image count, after decoding every image once.

    Raises ``ValueError`` naming the problem (no such folder, no class sub-folders, fewer than ``min_classes``
    classes with images, or every file that training could not decode, with why) before anything is trained or
    written.

    Example:
        >>> scan_image_folder("flowers/")  # an image folder of yours  # doctest: +SKIP
        (['daisy', 'rose', 'tulip'], 1500)
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"{str(root)!r} is not a folder; expected a folder with one sub-folder of images per class.")
    counts, problems = {}, []
    for folder in sorted(path for path in root.iterdir() if path.is_dir()):
        files = [f for f in sorted(folder.rglob("*")) if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS]
        problems += [f"{file} ({problem})" for file in files if (problem := image_file_problem(file))]
        counts[folder.name] = len(files)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ValueError(
            f"{len(problems)} file(s) in {str(root)!r} cannot be trained on: {shown}. Remove them or re-save them as "
            "PNG or JPEG; nothing was written."
        )
    classes = [name for name, count in counts.items() if count]
    if not classes:
        raise ValueError(
            f"No images ({', '.join(IMAGE_EXTENSIONS)}) found in the class sub-folders of {str(root)!r}; "
            "expected DATA_DIR/<class name>/<image files>."
        )
    if len(classes) < min_classes:
        raise ValueError(
            f"{str(root)!r} has images of {len(classes)} class(es) ({', '.join(classes)}); "
            f"expected at least {min_classes} sub-folders with images, one per class."
        )
    empty = [name for name, count in counts.items() if not count]
    if empty:
        raise ValueError(f"Class folder(s) {empty} in {str(root)!r} hold no images; remove them or add images.")
    return classes, sum(counts.values())


def image_folder_datasets(data_dir, *, image_size, batch_size, validation_split=0.2, seed=0, class_names=None):
    """``(train, validation, class_names)``: batched ``tf.data`` datasets of 0..255 float images and one-hot labels.

    ``validation`` is ``None`` when ``validation_split`` is 0. Images are resized to ``image_size`` after a
    centre crop to a square, so they are not distorted. ``class_names`` from an earlier ``scan_image_folder``
    saves scanning the folder again.

    Example:
        >>> train, validation, class_names = image_folder_datasets("flowers/", image_size=224, batch_size=32)  # doctest: +SKIP
    """
    import keras

    if not 0.0 <= validation_split < 1.0:
        raise ValueError(f"validation_split must be in [0, 1); got {validation_split!r}.")
    if class_names is None:
        class_names, _ = scan_image_folder(data_dir)
    options = dict(
        labels="inferred", label_mode="categorical", class_names=class_names, image_size=(image_size, image_size),
        batch_size=batch_size, crop_to_aspect_ratio=True, seed=seed, verbose=False,
    )
    if validation_split:
        train, validation = keras.utils.image_dataset_from_directory(
            data_dir, validation_split=validation_split, subset="both", **options
        )
    else:
        train, validation = keras.utils.image_dataset_from_directory(data_dir, shuffle=True, **options), None
    return train, validation, class_names


def evaluation_dataset(data_dir, *, image_size, batch_size=32, class_names=None):
    """``(images dataset, labels array, class_names)`` of a whole image folder, in a fixed order, for evaluation.

    ``class_names`` from an earlier ``scan_image_folder`` saves scanning the folder again.

    Example:
        >>> images, labels, class_names = evaluation_dataset("flowers-test/", image_size=224)  # doctest: +SKIP
    """
    import keras

    if class_names is None:
        class_names, _ = scan_image_folder(data_dir)
    dataset = keras.utils.image_dataset_from_directory(
        data_dir, labels="inferred", label_mode="int", class_names=class_names, image_size=(image_size, image_size),
        batch_size=batch_size, crop_to_aspect_ratio=True, shuffle=False, verbose=False,
    )
    labels = np.concatenate([batch_labels.numpy() for _, batch_labels in dataset])
    return dataset.map(lambda images, _: images), labels, class_names
