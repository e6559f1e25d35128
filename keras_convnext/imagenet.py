"""Evaluation helpers: a preset's eval preprocessing, and the ImageNet class names of 1k, 12k and 22k heads.

The 1k names are keras.applications'. The 22k list (``imagenet22k_classes.tsv``: WordNet synset and its first lemma,
in the label order of the ImageNet-22k heads, 21841 classes) and the 12k subset (``imagenet12k_indices.txt``: the
22k label of each of the 11821 ImageNet-12k labels) come from timm's ``timm/data/_info`` (Apache-2.0), the order
timm's own ``ImageNetInfo`` gives these heads.
"""

import functools
import json
import math
from pathlib import Path

import numpy as np

from keras_convnext.weights import presets

CLASSES_FILE = Path(__file__).with_name("imagenet_classes.json")
CLASSES_22K_FILE = Path(__file__).with_name("imagenet22k_classes.tsv")
INDICES_12K_FILE = Path(__file__).with_name("imagenet12k_indices.txt")
HEAD_WIDTHS = (1000, 11821, 21841)  # ImageNet-1k, -12k and -22k
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
CROP_MODES = ("center", "squash")


def preprocess_image(image, preset="convnext_tiny.fb_in1k"):
    """Resizes and centre-crops an image as ``preset``'s eval config says; returns (size, size, 3) float32 0..255.

    The shorter side goes to ``floor(input_size / crop_pct)`` with the preset's interpolation, then the
    centre ``input_size`` square is kept (timm's eval transform); a config with ``crop_mode: "squash"`` resizes
    the whole image to ``input_size`` squared instead (timm's squash). Mean/std normalisation is left to the
    model (``include_preprocessing=True``). ``image`` is a file path or an RGB array in 0..255; ``preset`` a
    preset name or an eval config ``{"input_size": 224, "crop_pct": 0.875, "interpolation": "bicubic"}``.

    Example:
        >>> import numpy as np
        >>> x = preprocess_image(np.zeros((300, 400, 3), "uint8"), "convnext_tiny.fb_in1k")
        >>> x.shape, x.dtype
        ((224, 224, 3), dtype('float32'))
    """
    from PIL import Image

    if isinstance(preset, dict):
        missing = {"input_size", "crop_pct", "interpolation"} - set(preset)
        if missing:
            raise ValueError(f"An eval config needs input_size, crop_pct and interpolation; missing {sorted(missing)}.")
        config = preset
    elif preset not in presets():
        raise ValueError(f"Unknown preset {preset!r}; see keras_convnext.weights.list_presets().")
    else:
        config = presets()[preset]["eval"]
    if config["interpolation"] not in INTERPOLATIONS:
        raise ValueError(f"Preset {preset!r} names interpolation {config['interpolation']!r}; expected one of {INTERPOLATIONS}.")
    if isinstance(image, (str, Path)):
        picture = Image.open(image).convert("RGB")
    else:
        array = np.asarray(image)
        if array.ndim != 3 or array.shape[-1] != 3:
            raise ValueError(f"Expected an RGB image of shape (height, width, 3) in 0..255; got shape {array.shape}.")
        picture = Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8))
    size = int(config["input_size"])
    resample = getattr(Image.Resampling, config["interpolation"].upper())
    crop_mode = config.get("crop_mode", "center")
    if crop_mode not in CROP_MODES:
        raise ValueError(f"Preset {preset!r} names crop_mode {crop_mode!r}; expected one of {CROP_MODES}.")
    if crop_mode == "squash":
        return np.asarray(picture.resize((size, size), resample), dtype=np.float32)
    scale = math.floor(size / config["crop_pct"])
    width, height = picture.size
    ratio = scale / min(width, height)
    new_size = (max(size, round(width * ratio)), max(size, round(height * ratio)))
    picture = picture.resize(new_size, resample)
    left, top = (new_size[0] - size) // 2, (new_size[1] - size) // 2
    return np.asarray(picture.crop((left, top, left + size, top + size)), dtype=np.float32)


@functools.cache
def imagenet_classes(classes=1000):
    """The class names of an ImageNet head in label order: ``classes`` 1000 (ImageNet-1k), 11821 (timm's
    ImageNet-12k) or 21841 (ImageNet-22k, as FB's ``in22k`` heads).

    Example:
        >>> imagenet_classes()[:2], imagenet_classes(21841)[:2], len(imagenet_classes(11821))
        (['tench', 'goldfish'], ['organism', 'benthos'], 11821)
    """
    if classes == 1000:
        return json.loads(CLASSES_FILE.read_text())["classes"]
    if classes not in HEAD_WIDTHS:
        raise ValueError(f"ImageNet heads have {', '.join(map(str, HEAD_WIDTHS))} classes; got {classes!r}.")
    names_22k = [line.split("\t", 1)[1] for line in CLASSES_22K_FILE.read_text().splitlines()]
    if classes == 21841:
        return names_22k
    return [names_22k[int(index)] for index in INDICES_12K_FILE.read_text().split()]


def decode_predictions(predictions, top=5):
    """``[(class index, class name, score), ...]`` for the ``top`` classes of each row of ``predictions``, the
    scores of an ImageNet-1k, -12k or -22k head.

    Example:
        >>> import numpy as np
        >>> decode_predictions(np.eye(1000)[[1]], top=1)
        [[(1, 'goldfish', 1.0)]]
    """
    predictions = np.asarray(predictions)
    if predictions.ndim != 2 or predictions.shape[1] not in HEAD_WIDTHS:
        raise ValueError(
            f"decode_predictions expects the scores of an ImageNet-1k, -12k or -22k head, of shape (batch, 1000), "
            f"(batch, 11821) or (batch, 21841); got shape {predictions.shape}."
        )
    if not 1 <= top <= predictions.shape[1]:
        raise ValueError(f"top must be between 1 and {predictions.shape[1]}; got {top!r}.")
    names = imagenet_classes(predictions.shape[1])
    order = np.argsort(-predictions, axis=1)[:, :top]
    return [[(int(i), names[i], float(row[i])) for i in indices] for row, indices in zip(predictions, order)]
