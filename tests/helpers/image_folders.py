"""Small image folders (one sub-folder per class) written by the tests for ``train`` and ``evaluate``."""

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 60, 220)}


def write_image_folder(root, per_class=8, size=40, classes=COLOURS, seed=0):
    """Writes ``per_class`` noisy images of each class's colour, alternating PNG and JPEG; returns ``root``."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for name, colour in classes.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, (size, size + 6, 3)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(folder / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root
