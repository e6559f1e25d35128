"""Hugging Face model ids (``"hf-hub:facebook/convnext-tiny-224"``): the repository's ``config.json`` says which
ConvNeXt to build, its weight file is downloaded into the cache and read by the Hugging Face layouts.

The files come from ``$HF_ENDPOINT`` (as ``huggingface_hub`` reads it), else ``https://huggingface.co``; each through
``download``, so they are cached and never left half-written. transformers' ``ConvNextConfig``,
``ConvNextV2Config`` and ``DINOv3ConvNextConfig`` are read; any other ``model_type`` is refused by name.
"""

import json
import os

from keras_convnext.weights.download import download

HUB_PREFIX = "hf-hub:"
MODEL_TYPES = ("convnext", "convnextv2", "dinov3_convnext")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # the first a repository has is taken


def hub_url(repo, filename):
    """The download URL of ``filename`` in the main branch of Hugging Face repository ``repo``.

    Example:
        >>> hub_url("facebook/convnext-tiny-224", "config.json")
        'https://huggingface.co/facebook/convnext-tiny-224/resolve/main/config.json'
    """
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    return f"{endpoint}/{repo}/resolve/main/{filename}"


def check_repo(repo):
    """``repo`` if it is an ``owner/name`` id, else ``ValueError``.

    Example:
        >>> check_repo("facebook/convnextv2-atto-1k-224")
        'facebook/convnextv2-atto-1k-224'
    """
    parts = str(repo).split("/")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"A Hugging Face model id is 'owner/name' (e.g. facebook/convnext-tiny-224); got {repo!r}.")
    return str(repo)


def hub_config(repo):
    """The repository's ``config.json``, downloaded (and cached); ``ValueError`` if it is no ConvNeXt's.

    Example:
        >>> hub_config("facebook/convnext-tiny-224")["depths"]  # downloads  # doctest: +SKIP
        [3, 3, 9, 3]
    """
    config = json.loads(download(hub_url(check_repo(repo), "config.json")).read_text())
    if config.get("model_type") not in MODEL_TYPES:
        raise ValueError(
            f"Hugging Face model {repo!r} is a {config.get('model_type')!r} model; keras_convnext builds "
            f"{', '.join(MODEL_TYPES)} models."
        )
    return config


def hub_architecture(config):
    """``ConvNeXt`` arguments for a transformers ConvNeXt ``config``: family (``"V1"``/``"V2"``), stages, widths,
    LayerScale, input size, and the top: a classifier of ``len(id2label)`` classes for ``*ForImageClassification``,
    else a pooled backbone (``ConvNextModel``, DINOv3).

    Example:
        >>> hub_architecture({"model_type": "convnextv2", "depths": [2, 2, 6, 2], "hidden_sizes": [40, 80, 160, 320],
        ...                   "architectures": ["ConvNextV2ForImageClassification"], "id2label": {"0": "a", "1": "b"}})
        ... # doctest: +NORMALIZE_WHITESPACE
        {'family': 'V2', 'depths': (2, 2, 6, 2), 'dims': (40, 80, 160, 320), 'use_grn': True,
         'layer_scale_init_value': None, 'default_size': 224, 'include_top': True, 'classes': 2}
    """
    v2 = config["model_type"] == "convnextv2"
    arguments = {
        "family": "V2" if v2 else "V1",
        "depths": tuple(config["depths"]),
        "dims": tuple(config["hidden_sizes"]),
        "use_grn": v2,
        "layer_scale_init_value": None if v2 else config.get("layer_scale_init_value", 1e-6),
        "default_size": int(config.get("image_size", 224)),
    }
    classifier = any(name.endswith("ForImageClassification") for name in config.get("architectures") or [])
    if classifier:
        arguments.update(include_top=True, classes=len(config.get("id2label") or {}) or config.get("num_labels", 2))
    else:
        arguments.update(include_top=False, pooling="avg")
    return arguments


def hub_weights(repo):
    """The path of the repository's weights (``model.safetensors``, else ``pytorch_model.bin``), downloaded and cached.

    Example:
        >>> hub_weights("facebook/convnext-tiny-224")  # downloads  # doctest: +SKIP
        PosixPath('/root/.keras/keras_convnext/downloads/.../model.safetensors')
    """
    from keras_convnext.weights.resolve import download_from_mirrors  # resolve imports this module

    return download_from_mirrors([hub_url(check_repo(repo), name) for name in WEIGHT_FILES])
