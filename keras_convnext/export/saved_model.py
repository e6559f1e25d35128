"""``export_saved_model``: a TF Serving model version from a model trained on any backend."""

import os
import shutil
import tempfile
from pathlib import Path

import keras

from keras_convnext.export.serving_files import write_serving_files
from keras_convnext.image_headers import DEFAULT_MAX_PIXELS
from keras_convnext.trained_model import describe_source, load_source


def _check_arguments(version, top_k, min_image_side, max_image_pixels):
    for name, value in (("version", version), ("top_k", top_k), ("min_image_side", min_image_side),
                        ("max_image_pixels", max_image_pixels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")


def export_saved_model(
    model_or_file,
    export_dir,
    *,
    version=1,
    variant=None,
    classes=None,
    image_size=None,
    class_names=None,
    top_k=5,
    crop_pct=None,
    interpolation=None,
    min_image_side=16,
    max_image_pixels=DEFAULT_MAX_PIXELS,
    overwrite=False,
):
    """Writes ``export_dir/<version>/``, a SavedModel with TF Serving signatures, plus an example
    ``models.config`` and ``batching_parameters.txt`` in ``export_dir``; returns the version folder.

    ``model_or_file``: a ``keras.Model``, a ``.keras`` file, a ``.weights.h5`` (with ``variant`` and ``image_size``
    unless a ``train_config.json`` lies beside it) or a ``keras-convnext train`` output folder. The classes are the
    file's own: a ``classes`` that differs from them, or a file without a classifier, is refused before anything is
    written.
    Under JAX or PyTorch the model is rebuilt under TensorFlow in a subprocess from the saved file, so the graph
    holds plain TF ops (no XLA), which TF Serving's CPU and GPU builds run. The version folder appears by a
    rename once complete, so a watching TF Serving never loads half a model.

    ``max_image_pixels`` bounds what ``serving_image_bytes`` decodes: a larger size declared in an image's header is
    refused before decoding. ``crop_pct`` / ``interpolation`` set how ``serving_image_bytes`` resizes: by default, as ``keras-convnext
    train`` does for its runs (central square, bilinear), else timm's ImageNet eval (0.875, bicubic).

    Example:
        >>> export_saved_model("runs/flowers", "serving/flowers")  # a train --output folder  # doctest: +SKIP
        PosixPath('serving/flowers/1')
    """
    _check_arguments(version, top_k, min_image_side, max_image_pixels)
    export_dir = Path(export_dir)
    target = export_dir / str(version)
    if target.exists() and not overwrite:
        raise ValueError(f"{str(target)!r} exists; choose another version (--version) or pass overwrite=True.")
    with tempfile.TemporaryDirectory() as scratch:
        spec = describe_source(
            model_or_file, scratch, variant=variant, classes=classes, image_size=image_size, class_names=class_names
        )
        spec["eval"] = {
            "crop_pct": crop_pct or spec["eval"]["crop_pct"],
            "interpolation": interpolation or spec["eval"]["interpolation"],
        }
        options = {"top_k": top_k, "min_image_side": min_image_side, "max_image_pixels": max_image_pixels}
        if keras.backend.backend() == "tensorflow":
            write_version(spec, target, **options)
        else:
            from keras_convnext.export.tensorflow_process import run_in_tensorflow_process

            run_in_tensorflow_process("saved_model", spec, target, options)
    write_serving_files(export_dir)
    return target


def write_version(spec, target, *, top_k, min_image_side, max_image_pixels=DEFAULT_MAX_PIXELS):
    """Builds the model of ``spec`` and writes its SavedModel to ``target`` via a temporary folder and a rename.

    Runs under the TensorFlow backend (``python -m keras_convnext.export`` calls it from other backends).

    Example:
        >>> write_version({"kind": "keras", "path": "m.keras", "class_names": None,  # doctest: +SKIP
        ...                "eval": {"crop_pct": 0.875, "interpolation": "bicubic"}}, Path("out/1"),
        ...               top_k=5, min_image_side=16)
    """
    from keras_convnext.export.serving_graph import build_export_archive

    model = load_source(spec)
    archive = build_export_archive(
        model, class_names=spec.get("class_names"), top_k=top_k, min_image_side=min_image_side,
        max_image_pixels=max_image_pixels, **spec["eval"]
    )
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.partial-"))
    try:
        archive.write_out(str(partial), verbose=False)
        if target.exists():
            old = target.with_name(f".{target.name}.replaced")
            os.replace(target, old)
            shutil.rmtree(old)
        os.replace(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target
