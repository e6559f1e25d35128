"""``keras-convnext demo``: train a small ConvNeXt on pattern images the package draws itself.

No network and no downloaded weights: the images are stripes at four orientations, with random period,
phase, colours and noise, so the model must learn orientation rather than colour or brightness.
"""

import time
from pathlib import Path

import keras
import numpy as np

from keras_convnext.applications import create_model
from keras_convnext.weights import save_weights

CLASS_NAMES = ("horizontal", "vertical", "diagonal", "anti-diagonal")


def make_pattern_images(count, size=32, seed=0):
    """``count`` RGB images (0..255, float32) of stripes in one of four orientations, and their labels.

    Example:
        >>> images, labels = make_pattern_images(8, size=32)
        >>> images.shape, labels[:4]
        ((8, 32, 32, 3), array([0, 1, 2, 3]))
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % len(CLASS_NAMES)
    rows, cols = np.mgrid[0:size, 0:size].astype("float32")
    coordinate = {0: rows, 1: cols, 2: (rows + cols) / np.sqrt(2), 3: (rows - cols) / np.sqrt(2)}
    images = np.empty((count, size, size, 3), "float32")
    for i, label in enumerate(labels):
        period = rng.uniform(8.0, 16.0)
        wave = 0.5 + 0.5 * np.sin(2 * np.pi * coordinate[label] / period + rng.uniform(0, 2 * np.pi))
        background, foreground = rng.uniform(0, 80, 3), rng.uniform(170, 255, 3)
        image = background + wave[..., None] * (foreground - background)
        images[i] = np.clip(image + rng.normal(0, 10, image.shape), 0, 255)
    return images, labels


def run_demo(variant="convnext_atto", epochs=4, samples=1200, image_size=32, output="demo-output", seed=0, log=print):
    """Trains ``variant`` on pattern images, saves and reloads its weights, and returns what it measured.

    Example:
        >>> result = run_demo(epochs=1, samples=200)
        >>> sorted(result)
        ['accuracy', 'backend', 'seconds', 'weights']
    """
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    images, labels = make_pattern_images(samples, image_size, seed)
    held_out = max(len(CLASS_NAMES), samples // 5)
    train_x, train_y = images[held_out:], labels[held_out:]
    test_x, test_y = images[:held_out], labels[:held_out]
    log(f"backend: {keras.backend.backend()}; {variant} on {len(train_x)} training and {held_out} held-out "
        f"{image_size}x{image_size} images of {len(CLASS_NAMES)} stripe orientations")

    def build():
        return create_model(variant, input_shape=(image_size, image_size, 3), classes=len(CLASS_NAMES))

    model = build()
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=0.05),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(train_x, train_y, batch_size=32, epochs=epochs, validation_data=(test_x, test_y), verbose=2)
    _, accuracy = model.evaluate(test_x, test_y, verbose=0)

    weights = save_weights(model, Path(output) / f"{variant}_demo.weights.h5")
    reloaded = build()
    reloaded.load_weights(weights)
    probabilities = reloaded.predict(test_x[:6], verbose=0)
    if not np.allclose(probabilities, model.predict(test_x[:6], verbose=0), atol=1e-6):
        raise RuntimeError(f"Reloading {weights} changed the model's predictions.")
    log(f"held-out accuracy: {accuracy:.3f} (chance: {1 / len(CLASS_NAMES):.2f}); weights saved to {weights} and reloaded")
    for probs, label in zip(probabilities, test_y[:6]):
        guess = int(np.argmax(probs))
        mark = "ok " if guess == label else "MISS"
        log(f"  {mark} predicted {CLASS_NAMES[guess]:<13} ({probs[guess]:.2f})  true {CLASS_NAMES[label]}")
    seconds = time.perf_counter() - start
    log(f"done in {seconds:.0f} s")
    return {"accuracy": float(accuracy), "backend": keras.backend.backend(), "seconds": seconds, "weights": str(weights)}
