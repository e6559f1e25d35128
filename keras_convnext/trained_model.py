"""Finding a trained model: a ``.keras`` file, a ``.weights.h5`` and its variant, or a ``keras-convnext train`` folder.

The description is JSON, so that another process (the TensorFlow-backend half of an export) can rebuild it.
"""

import json
from pathlib import Path

RUN_CONFIG = "train_config.json"
# timm's ImageNet eval transform, for models not trained by `keras-convnext train`.
IMAGENET_EVAL = {"crop_pct": 0.875, "interpolation": "bicubic"}
# `keras-convnext train` crops the central square and resizes it bilinearly (image_dataset_from_directory).
TRAIN_EVAL = {"crop_pct": 1.0, "interpolation": "bilinear"}


def describe_source(model_or_file, scratch, *, variant=None, classes=None, image_size=None, class_names=None):
    """A JSON-able description of a trained model: a ``.keras`` file, a ``.weights.h5`` with its variant, or a
    training run folder (its ``train_config.json`` gives variant, size and class names). A ``keras.Model`` is
    saved to the folder ``scratch`` as ``.keras`` first.

    The number of classes is the file's own: ``classes`` (or ``class_names``) that differ from it are refused,
    naming both numbers, and so is a weights file without a classifier, before anything is built or written.

    Example:
        >>> describe_source("runs/flowers", "/tmp/scratch")["path"]  # a train --output folder  # doctest: +SKIP
        'runs/flowers/model.keras'
    """
    import keras

    if isinstance(model_or_file, keras.Model):
        path = Path(scratch) / "model.keras"
        model_or_file.save(path)
        return {"kind": "keras", "path": str(path), "class_names": class_names, "eval": IMAGENET_EVAL}
    path = Path(model_or_file)
    if path.is_dir():
        path = path / "model.keras"
    if not path.exists():
        raise ValueError(f"No model at {str(path)!r}; expected a .keras file, a .weights.h5 file or a training run folder.")
    run_path = path.parent / RUN_CONFIG
    run = json.loads(run_path.read_text()) if run_path.exists() else None
    class_names = class_names or (run and run["class_names"])
    evaluation = TRAIN_EVAL if run else IMAGENET_EVAL
    named_by = f"the run's {run_path}" if run and class_names == run["class_names"] else "the class names given"
    requested = _requested_classes(classes, class_names, named_by)
    if path.suffix == ".keras":
        return {"kind": "keras", "path": str(path), "classes": requested, "class_names": class_names, "eval": evaluation}
    if not path.name.endswith(".weights.h5"):
        raise ValueError(f"{str(path)!r} is neither a .keras nor a .weights.h5 file.")
    variant = variant or (run and run["config"]["variant"])
    if not variant:
        raise ValueError(f"{str(path)!r} has no {RUN_CONFIG} beside it: pass the variant (--variant) it was saved from.")
    image_size = image_size or (run and run["config"]["image_size"]) or 224
    return {
        "kind": "weights", "path": str(path), "variant": variant, "classes": _file_classes(path, requested),
        "image_size": image_size, "class_names": class_names, "eval": evaluation,
    }


def _requested_classes(classes, class_names, named_by):
    """The number of classes the caller asks for (``None``: whatever the file holds)."""
    if class_names and classes is not None and classes != len(class_names):
        raise ValueError(
            f"--classes {classes} does not match the {len(class_names)} class names of {named_by}; leave --classes out "
            "to use the model's own."
        )
    return len(class_names) if class_names else classes


def _file_classes(path, requested):
    """The classes of the weights file at ``path``; refuses a file without a classifier or with another count."""
    from keras_convnext.weights import checkpoint_classes

    held = checkpoint_classes(path)
    if held is None:
        raise ValueError(
            f"{str(path)!r} holds no classifier (head_dense): it is a backbone, and its classifier would be random. "
            "Fine-tune it first (keras-convnext train --weights), or load it with include_top=False in Python."
        )
    _check_own_classes(path, held, requested)
    return held


def _check_own_classes(path, held, requested):
    """Refuses ``requested`` classes (``None``: any) other than the ``held`` ones of the model file at ``path``."""
    if requested is not None and requested != held:
        raise ValueError(
            f"{str(path)!r} holds a {held}-class classifier, but {requested} classes were asked for (--classes or "
            f"the run's class names); expected the file's own {held}. Leave --classes out to use the file's."
        )


def load_source(spec):
    """Builds the model ``spec`` describes, on the current backend, with the file's own classifier.

    Example:
        >>> model = load_source({"kind": "keras", "path": "runs/flowers/model.keras"})  # doctest: +SKIP
    """
    import keras

    if spec["kind"] == "keras":
        import keras_convnext  # noqa: F401  (registers the layers and the optimizer)

        model = keras.saving.load_model(spec["path"], compile=False)
        _check_own_classes(spec["path"], model.output_shape[-1], spec.get("classes"))
        return model
    from keras_convnext.applications import create_model
    from keras_convnext.weights import load_weights

    size = spec["image_size"]
    model = create_model(spec["variant"], input_shape=(size, size, 3), classes=spec["classes"])
    # checked: a file of another variant is refused, naming it; a classifier that does not fit is never replaced
    load_weights(model, spec["path"], allow_new_classifier=False)
    return model
