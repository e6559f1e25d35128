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
    if path.suffix == ".keras":
        return {"kind": "keras", "path": str(path), "class_names": class_names, "eval": evaluation}
    if not path.name.endswith(".weights.h5"):
        raise ValueError(f"{str(path)!r} is neither a .keras nor a .weights.h5 file.")
    variant = variant or (run and run["config"]["variant"])
    image_size = image_size or (run and run["config"]["image_size"]) or 224
    classes = (len(class_names) if class_names else None) or classes or 1000
    if not variant:
        raise ValueError(f"{str(path)!r} has no {RUN_CONFIG} beside it: pass the variant (--variant) it was saved from.")
    return {
        "kind": "weights", "path": str(path), "variant": variant, "classes": classes, "image_size": image_size,
        "class_names": class_names, "eval": evaluation,
    }


def load_source(spec):
    """Builds the model ``spec`` describes, on the current backend.

    Example:
        >>> model = load_source({"kind": "keras", "path": "runs/flowers/model.keras"})  # doctest: +SKIP
    """
    import keras

    if spec["kind"] == "keras":
        import keras_convnext  # noqa: F401  (registers the layers and the optimizer)

        return keras.saving.load_model(spec["path"], compile=False)
    from keras_convnext.applications import create_model
    from keras_convnext.weights import load_weights

    size = spec["image_size"]
    model = create_model(spec["variant"], input_shape=(size, size, 3), classes=spec["classes"])
    load_weights(model, spec["path"])  # checked: a file of another variant is refused, naming it
    return model
