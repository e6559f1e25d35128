"""``keras-convnext evaluate``: accuracy, top-5 and a confusion matrix of a trained model on an image folder."""

import json
from pathlib import Path

import numpy as np

from keras_convnext.trained_model import describe_source, load_source
from keras_convnext.training.top_k import informative_top_k
from keras_convnext.training.datasets import evaluation_dataset, scan_image_folder
from keras_convnext.training.plots import confusion_matrix, plot_confusion_matrix


def evaluate_folder(data_dir, weights, *, variant=None, image_size=None, batch_size=32, output="evaluation", log=print):
    """Evaluates a trained model on an image folder (one sub-folder per class, as in training); writes
    ``confusion_matrix.png`` and ``metrics.json`` to ``output`` and returns the metrics.

    Example:
        >>> evaluate_folder("flowers-test/", "runs/flowers")["accuracy"]  # your folder and run  # doctest: +SKIP
        0.91
    """
    folder_classes, _ = scan_image_folder(data_dir, min_classes=1)
    spec = describe_source(weights, None, variant=variant, image_size=image_size)  # the file's own classes
    model, class_names = load_source(spec), spec["class_names"]
    if class_names is not None and class_names != folder_classes:
        raise ValueError(
            f"The model was trained on classes {class_names}, but {str(data_dir)!r} has sub-folders {folder_classes}; "
            "expected the same class folders."
        )
    classes = model.output_shape[-1]
    if classes != len(folder_classes):
        raise ValueError(f"The model predicts {classes} classes, but {str(data_dir)!r} has {len(folder_classes)} class folders.")
    size = model.input_shape[1] or image_size or 224
    images, labels, names = evaluation_dataset(data_dir, image_size=size, batch_size=batch_size, class_names=folder_classes)
    probabilities = np.asarray(model.predict(images, verbose=0))
    top_k = informative_top_k(classes)
    ranked = np.argsort(-probabilities, axis=-1)
    predictions = ranked[:, 0]
    metrics = {"images": int(len(labels)), "accuracy": float(np.mean(predictions == labels))}
    if top_k:
        metrics[f"top{top_k}_accuracy"] = float(np.mean(np.any(ranked[:, :top_k] == labels[:, None], axis=-1)))
    matrix = confusion_matrix(labels, predictions, classes)
    output = Path(output)
    plot_confusion_matrix(matrix, names, output / "confusion_matrix.png")
    from keras_convnext.atomic_files import write_text_atomically

    write_text_atomically(output / "metrics.json", json.dumps({**metrics, "confusion_matrix": matrix.tolist(), "class_names": names}, indent=2))
    top = f", top-{top_k} {metrics[f'top{top_k}_accuracy']:.4f}" if top_k else ""
    log(f"{metrics['images']} images: accuracy {metrics['accuracy']:.4f}{top}; wrote {output}/confusion_matrix.png and metrics.json")
    return metrics
