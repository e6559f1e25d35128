"""The ``weights=`` argument: a preset name, a URL or a file, resolved to a checkpoint, loaded, or converted."""

import re
from pathlib import Path

from keras_convnext.weights.download import download
from keras_convnext.weights.hugging_face_hub import HUB_PREFIX, hub_weights
from keras_convnext.weights.loading import load_checkpoint
from keras_convnext.weights.presets import presets, unknown_preset_hint
from keras_convnext.weights.saving import save_weights


def resolve_weights(weights):
    """Checks the ``weights=`` argument before a model is built; returns ``None`` or the checkpoint's path.

    A preset name or a URL is downloaded into the cache first (``URL#sha256=<hex>`` checks the file's hash).

    Example:
        >>> resolve_weights(None) is None
        True
    """
    if weights is None:
        return None
    text = str(weights)
    if text in presets():
        record = presets()[text]
        return download_from_mirrors(record["urls"], sha256=record["sha256"])
    if text == "imagenet":
        raise ValueError(
            "weights='imagenet' needs a named variant, e.g. keras_convnext.ConvNeXtTiny(weights='imagenet'); the "
            "generic ConvNeXt builder takes a preset name, a URL or a checkpoint file."
        )
    if text.startswith(("http://", "https://")):
        url, _, fragment = text.partition("#sha256=")
        return download(url, sha256=fragment or None)
    if text.startswith(HUB_PREFIX):
        return hub_weights(text.removeprefix(HUB_PREFIX))
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                return path / name
        raise ValueError(f"weights={str(weights)!r} is a directory without model.safetensors or pytorch_model.bin.")
    hub_hint = (f" If {text!r} is a Hugging Face model id, pass weights='{HUB_PREFIX}{text}'."
                if re.fullmatch(r"[\w.-]+/[\w.-]+", text) else "")
    raise ValueError(
        f"weights={weights!r} is not a file.{hub_hint} Pass None (random initialisation) or the path of a checkpoint: "
        "a .weights.h5 saved by this package, a keras.applications .h5, or a timm, torchvision, Hugging Face "
        "or facebookresearch checkpoint (.safetensors, .pth, .bin); or an http(s) URL of one, optionally ending "
        f"in '#sha256=<hex digest>'; or 'hf-hub:<owner>/<name>'; or a preset name (keras_convnext.weights.list_presets()).{unknown_preset_hint(text)}"
    )


def download_from_mirrors(urls, sha256=None):
    """The first of ``urls`` that downloads (each a copy of one checkpoint, in any layout the loader reads: a preset's
    publisher's file after timm's copy); ``ConnectionError`` naming every failure when none does.

    Example:
        >>> download_from_mirrors(["https://huggingface.co/timm/convnext_tiny.eupe_lvd1689m/resolve/main/model.safetensors",
        ...                        "https://huggingface.co/facebook/EUPE-ConvNeXt-T/resolve/main/EUPE-ConvNeXt-T.pt"])  # doctest: +SKIP
    """
    failures = []
    for url in urls:
        try:
            return download(url, sha256=sha256)
        except ConnectionError as error:
            failures.append(error)
    if len(failures) == 1:
        raise failures[0]
    reasons = "\n".join(f"  - {str(error).splitlines()[0]}" for error in failures)
    raise ConnectionError(f"None of the {len(urls)} copies of this checkpoint could be downloaded:\n{reasons}")


def load_weights(model, weights, *, allow_new_classifier=True):
    """Loads ``weights`` (as accepted by ``resolve_weights``) into ``model``; returns the layout's name or None.

    A checkpoint with another number of classes (or none) loads all but the classifier, with a warning, as
    fine-tuning wants; ``allow_new_classifier=False`` refuses it instead (``load_checkpoint``).

    Example:
        >>> load_weights(model, "convnext_tiny_hf/model.safetensors")  # doctest: +SKIP
        'huggingface'
    """
    path = resolve_weights(weights)
    return None if path is None else load_checkpoint(model, path, allow_new_classifier=allow_new_classifier)


def convert(source, model, output):
    """Converts checkpoint ``source`` into ``model`` and writes it as a ``.weights.h5`` to ``output``.

    ``model`` is the architecture to fill, classifier included: a checkpoint with another number of classes (or
    none) is refused rather than written out with a random classifier. ``keras_convnext.convert_weights`` takes a
    variant name instead and builds the checkpoint's own head.

    Example:
        >>> convert("convnext_tiny.pth", kc.create_model("convnext_tiny"), "tiny.weights.h5")  # doctest: +SKIP
    """
    load_weights(model, source, allow_new_classifier=False)
    return save_weights(model, output)
