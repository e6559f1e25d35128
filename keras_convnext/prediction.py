"""``keras-convnext predict``: the top-k classes of each image, from a run, a saved model, a weights file or a preset."""

import tempfile
from pathlib import Path

import numpy as np

from keras_convnext.image_headers import size_problem
from keras_convnext.training.datasets import IMAGE_EXTENSIONS

PREDICTABLE_EXTENSIONS = IMAGE_EXTENSIONS + (".webp", ".tif", ".tiff")


def image_files(image_or_dir):
    """The image files under ``image_or_dir`` (a file, or a folder searched recursively), sorted.

    Example:
        >>> image_files("photos/")  # a folder of yours  # doctest: +SKIP
        [PosixPath('photos/cat.jpg'), PosixPath('photos/trip/dog.png')]
    """
    path = Path(image_or_dir)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ValueError(f"{str(path)!r} is neither an image file nor a folder of images.")
    files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in PREDICTABLE_EXTENSIONS)
    if not files:
        raise ValueError(f"No images ({', '.join(PREDICTABLE_EXTENSIONS)}) found under {str(path)!r}.")
    return files


def load_classifier(weights, variant=None, image_size=None):
    """``(model, class_names, eval_config)`` for a preset name, a training run folder, a ``.keras`` file, or a
    ``.weights.h5`` (with ``variant``, and ``image_size`` unless 224, unless a ``train_config.json`` lies beside it),
    built with the file's own classifier. ``class_names`` is the run's,
    ImageNet's for a 1k, 12k or 22k head, else ``None``; ``eval_config`` is ``preprocess_image``'s.

    Example:
        >>> model, class_names, eval_config = load_classifier("convnext_tiny.fb_in1k")  # downloads  # doctest: +SKIP
    """
    from keras_convnext.imagenet import HEAD_WIDTHS, imagenet_classes
    from keras_convnext.trained_model import describe_source, load_source
    from keras_convnext.weights import preset_output, presets

    known = presets()
    if isinstance(weights, str) and weights in known:
        from keras_convnext.applications import create_model

        record = known[weights]
        if variant and variant != record["variant"]:
            raise ValueError(f"Preset {weights!r} holds {record['variant']} weights, not {variant}.")
        if preset_output(weights) == "embedding":
            raise ValueError(
                f"Preset {weights!r} is a CLIP image tower: it gives image embeddings, not classes. Compare its "
                f"embeddings instead (keras_convnext.create_model({record['variant']!r}, weights={weights!r}))."
            )
        size = record["eval"]["input_size"]
        model = create_model(record["variant"], weights=weights, input_shape=(size, size, 3), classes=record["classes"])
        class_names, eval_config = None, dict(record["eval"])
    else:
        with tempfile.TemporaryDirectory() as scratch:
            spec = describe_source(weights, scratch, variant=variant, image_size=image_size)
            model = load_source(spec)
        class_names = spec["class_names"]
        eval_config = {**spec["eval"], "input_size": model.input_shape[1] or spec.get("image_size") or 224}
    classes = model.output_shape[-1]
    if class_names is None and classes in HEAD_WIDTHS:
        class_names = imagenet_classes(classes)
    return model, class_names, eval_config


def _probabilities(model, images):
    outputs = np.asarray(model.predict(images, verbose=0), dtype="float64")
    sums = outputs.sum(axis=-1)
    if np.all(outputs >= 0) and np.allclose(sums, 1.0, atol=1e-3):
        return outputs
    exp = np.exp(outputs - outputs.max(axis=-1, keepdims=True))  # a logits head
    return exp / exp.sum(axis=-1, keepdims=True)


def predict_images(image_or_dir, weights, *, variant=None, image_size=None, top_k=5, batch_size=32):
    """One record per image: ``{"image", "top_k": [{"class", "index", "score"}, ...]}``, or ``{"image", "error"}``
    for a file that cannot be read (the others are still predicted).

    Example:
        >>> predict_images("photos/", "convnext_tiny.fb_in1k", top_k=3)[0]["top_k"][0]  # doctest: +SKIP
        {'class': 'tabby', 'index': 281, 'score': 0.83}
    """
    from PIL import Image, UnidentifiedImageError

    from keras_convnext.imagenet import preprocess_image

    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer; got {top_k!r}.")
    files = image_files(image_or_dir)
    model, class_names, eval_config = load_classifier(weights, variant, image_size)
    records, pixels, placed = [], [], []
    for file in files:
        try:
            problem = size_problem(file.read_bytes())  # PIL decodes here, and it reads palette BMPs right
            if problem:
                raise ValueError(problem)
            pixels.append(preprocess_image(file, eval_config))
            placed.append(len(records))
            records.append({"image": str(file)})
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
            records.append({"image": str(file), "error": str(error) or type(error).__name__})
    k = min(top_k, model.output_shape[-1])
    for start in range(0, len(pixels), batch_size):
        probabilities = _probabilities(model, np.stack(pixels[start: start + batch_size]))
        for row, index in zip(probabilities, placed[start: start + batch_size]):
            best = np.argsort(-row)[:k]
            records[index]["top_k"] = [
                {"class": class_names[i] if class_names else str(i), "index": int(i), "score": float(row[i])}
                for i in best
            ]
    return records
