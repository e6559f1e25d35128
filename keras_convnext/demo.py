"""``keras-convnext demo``: train a small ConvNeXt on a real dataset that ships inside a package.

The dataset is scikit-learn's 1,797 handwritten digits (8x8 greyscale scans of 43 writers, UCI "optdigits"),
upsampled to RGB images: no network and no downloaded weights. Training uses the package's recipe
(``training.recipe_optimizer``: AdamW without decay on norms/biases/LayerScale, warm-up + cosine; label smoothing).
"""

import time
from pathlib import Path

import keras
import numpy as np

from keras_convnext.applications import create_model
from keras_convnext.training.recipe import recipe_loss, recipe_optimizer
from keras_convnext.weights import save_weights

CLASS_NAMES = tuple(str(digit) for digit in range(10))
_SHADES = " .:-=+*#%@"


def load_digits_images(image_size=32):
    """scikit-learn's digits as ``(images, labels, originals)``: RGB float32 images (0..255) of ``image_size``
    squared, upsampled bilinearly from the 8x8 scans, and the 8x8 scans themselves (0..16).

    Example:
        >>> images, labels, originals = load_digits_images(32)
        >>> images.shape, labels.shape, originals.shape
        ((1797, 32, 32, 3), (1797,), (1797, 8, 8))
    """
    from PIL import Image

    try:
        from sklearn.datasets import load_digits
    except ImportError as error:  # pragma: no cover - scikit-learn is a dependency
        raise ImportError("The demo reads scikit-learn's digits: pip install scikit-learn") from error
    digits = load_digits()
    originals = digits.images.astype("float32")
    resized = [
        np.asarray(Image.fromarray(scan * (255.0 / 16.0)).resize((image_size, image_size), Image.BILINEAR))
        for scan in originals
    ]
    images = np.repeat(np.stack(resized)[..., None], 3, axis=-1).clip(0, 255).astype("float32")
    return images, digits.target.astype("int64"), originals


def held_out_split(labels, fraction=0.2, seed=0):
    """Indices ``(train, held_out)`` with ``fraction`` of every class held out.

    Example:
        >>> import numpy as np
        >>> train, held_out = held_out_split(np.arange(100) % 10)
        >>> len(train), len(held_out)
        (80, 20)
    """
    rng = np.random.default_rng(seed)
    held_out = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        held_out.extend(members[: round(len(members) * fraction)])
    held_out = np.sort(np.asarray(held_out))
    return np.setdiff1d(np.arange(len(labels)), held_out), held_out


def ascii_digit(scan):
    """An 8x8 scan (0..16) as 8 lines of text, darker characters for more ink.

    Example:
        >>> import numpy as np
        >>> len(ascii_digit(np.zeros((8, 8))))
        8
    """
    levels = np.clip(np.asarray(scan) / 16.0 * (len(_SHADES) - 1), 0, len(_SHADES) - 1).round().astype(int)
    return ["".join(_SHADES[level] * 2 for level in row) for row in levels]


def run_demo(variant="convnext_atto", epochs=10, image_size=32, batch_size=32, output="demo-output", seed=0, log=print):
    """Trains ``variant`` on the digits, saves and reloads its weights, prints predictions; returns the figures.

    Example:
        >>> result = run_demo(epochs=1)  # trains for a minute; the README's first command  # doctest: +SKIP
        >>> sorted(result)  # doctest: +SKIP
        ['accuracy', 'backend', 'seconds', 'weights']
    """
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    images, labels, originals = load_digits_images(image_size)
    train, held_out = held_out_split(labels, seed=seed)
    one_hot = np.eye(len(CLASS_NAMES), dtype="float32")[labels]
    log(f"backend: {keras.backend.backend()}; {variant} on scikit-learn's handwritten digits: {len(train)} training "
        f"and {len(held_out)} held-out images, upsampled from 8x8 to {image_size}x{image_size}")

    def build():
        return create_model(variant, input_shape=(image_size, image_size, 3), classes=len(CLASS_NAMES))

    model = build()
    total_steps = epochs * -(-len(train) // batch_size)
    model.compile(
        optimizer=recipe_optimizer(
            model, learning_rate=2e-3, total_steps=total_steps, warmup_steps=total_steps // 10, weight_decay=0.05
        ),
        loss=recipe_loss(label_smoothing=0.1),
        metrics=["accuracy"],
    )
    model.fit(
        images[train], one_hot[train], batch_size=batch_size, epochs=epochs,
        validation_data=(images[held_out], one_hot[held_out]), verbose=2,
    )
    _, accuracy = model.evaluate(images[held_out], one_hot[held_out], verbose=0)

    weights = save_weights(model, Path(output) / f"{variant}_digits.weights.h5")
    reloaded = build()
    reloaded.load_weights(weights)
    shown = held_out[:: max(1, len(held_out) // 4)][:4]
    probabilities = reloaded.predict(images[shown], verbose=0)
    if not np.allclose(probabilities, model.predict(images[shown], verbose=0), atol=1e-6):
        raise RuntimeError(f"Reloading {weights} changed the model's predictions.")
    log(f"held-out accuracy: {accuracy:.4f} (chance 0.10); weights saved to {weights}, reloaded, same predictions:")
    captions = []
    for probs, index in zip(probabilities, shown):
        guess = int(np.argmax(probs))
        captions.append(f"{'ok' if guess == labels[index] else 'MISS'}: {guess} ({probs[guess]:.2f}), true {labels[index]}")
    pictures = [ascii_digit(originals[index]) for index in shown]
    for row in range(8):
        log("".join(f"|{picture[row]}|".ljust(24) for picture in pictures))
    log("".join(caption.ljust(24) for caption in captions))
    seconds = time.perf_counter() - start
    log(f"done in {seconds:.0f} s")
    return {"accuracy": float(accuracy), "backend": keras.backend.backend(), "seconds": seconds, "weights": str(weights)}
