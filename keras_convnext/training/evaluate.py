"""``keras-convnext evaluate``: accuracy, top-5 and a confusion matrix of a trained model on an image folder."""

import json
from pathlib import Path

import numpy as np

from keras_convnext.training.datasets import evaluation_dataset, scan_image_folder
from keras_convnext.training.plots import confusion_matrix, plot_confusion_matrix

CONFIG_FILE = "train_config.json"


def _run_config(weights):
    """The ``train_config.json`` of the run that wrote ``weights`` (a run folder or a file in one), or None."""
    path = Path(weights)
    config_path = path / CONFIG_FILE if path.is_dir() else path.parent / CONFIG_FILE
    return json.loads(config_path.read_text()) if config_path.exists() else None


def load_trained_model(weights, *, variant=None, image_size=None, classes=None):
    """``(model, class_names or None)`` from a ``.keras`` file, a training run folder, or a ``.weights.h5``
    (whose variant and size come from the run's ``train_config.json`` beside it, or from the arguments).

    Example:
        >>> model, class_names = load_trained_model("runs/flowers")
    """
    import keras

    from keras_convnext.applications import create_model

    path = Path(weights)
    if path.is_dir():
        path = path / "model.weights.h5"
    if not path.exists():
        raise ValueError(f"No model at {str(path)!r}; expected a .keras file, a .weights.h5 file or a training run folder.")
    run = _run_config(weights)
    class_names = run["class_names"] if run else None
    if path.suffix == ".keras":
        return keras.saving.load_model(path), class_names
    if not path.name.endswith(".weights.h5"):
        raise ValueError(f"{str(path)!r} is neither a .keras nor a .weights.h5 file.")
    variant = variant or (run and run["config"]["variant"])
    image_size = image_size or (run and run["config"]["image_size"]) or 224
    classes = len(class_names) if class_names else classes
    if not variant or not classes:
        raise ValueError(
            f"{str(path)!r} has no train_config.json beside it; pass --variant (and the folder gives the classes)."
        )
    model = create_model(variant, input_shape=(image_size, image_size, 3), classes=classes)
    model.load_weights(path)
    return model, class_names


def evaluate_folder(data_dir, weights, *, variant=None, image_size=None, batch_size=32, output="evaluation", log=print):
    """Evaluates a trained model on an image folder (one sub-folder per class, as in training); writes
    ``confusion_matrix.png`` and ``metrics.json`` to ``output`` and returns the metrics.

    Example:
        >>> evaluate_folder("flowers-test/", "runs/flowers")["accuracy"]
        0.91
    """
    folder_classes, _ = scan_image_folder(data_dir, min_classes=1)
    model, class_names = load_trained_model(weights, variant=variant, image_size=image_size, classes=len(folder_classes))
    if class_names is not None and class_names != folder_classes:
        raise ValueError(
            f"The model was trained on classes {class_names}, but {str(data_dir)!r} has sub-folders {folder_classes}; "
            "expected the same class folders."
        )
    classes = model.output_shape[-1]
    if classes != len(folder_classes):
        raise ValueError(f"The model predicts {classes} classes, but {str(data_dir)!r} has {len(folder_classes)} class folders.")
    size = model.input_shape[1] or image_size or 224
    images, labels, names = evaluation_dataset(data_dir, image_size=size, batch_size=batch_size)
    probabilities = np.asarray(model.predict(images, verbose=0))
    top_k = min(5, classes)
    ranked = np.argsort(-probabilities, axis=-1)
    predictions = ranked[:, 0]
    metrics = {
        "images": int(len(labels)),
        "accuracy": float(np.mean(predictions == labels)),
        f"top{top_k}_accuracy": float(np.mean(np.any(ranked[:, :top_k] == labels[:, None], axis=-1))),
    }
    matrix = confusion_matrix(labels, predictions, classes)
    output = Path(output)
    plot_confusion_matrix(matrix, names, output / "confusion_matrix.png")
    from keras_convnext.weights.atomic_save import write_text_atomically

    write_text_atomically(output / "metrics.json", json.dumps({**metrics, "confusion_matrix": matrix.tolist(), "class_names": names}, indent=2))
    log(f"{metrics['images']} images: accuracy {metrics['accuracy']:.4f}, top-{top_k} {metrics[f'top{top_k}_accuracy']:.4f}; "
        f"wrote {output}/confusion_matrix.png and metrics.json")
    return metrics
