"""The picture of what an FCMAE fills in: each image, its kept patches, and the model's reconstruction."""

import keras
import numpy as np

from keras_convnext.pretraining.patches import patch_grid, patchify, unpatchify
from keras_convnext.training.plots import _pyplot, _save_figure


def reconstruction_images(model, images, mask):
    """``(masked, reconstruction)`` as 0..255 channels-last images: the kept patches on grey, and the kept patches
    with the model's predictions pasted into the removed ones. With ``norm_pix_loss`` the model predicts each patch
    normalised by its own mean and spread, which the picture borrows from the true patch (as the
    MAE demo does); the encoder's pixel normalisation is then undone.

    Example:
        >>> masked, filled = reconstruction_images(model, images, mask)  # doctest: +SKIP
    """
    images = np.asarray(images, "float32")
    grid = patch_grid(images.shape, model.patch_size)
    patches = keras.ops.convert_to_numpy(patchify(images, model.patch_size))
    targets = keras.ops.convert_to_numpy(model.patch_targets(images))
    predictions = keras.ops.convert_to_numpy(model.reconstruct(images, mask)).astype("float64")
    if model.norm_pix_loss:  # predictions are in units of each target patch's own spread: back to the target's scale
        mean, std = targets.mean(-1, keepdims=True), targets.std(-1, ddof=1, keepdims=True)
        predictions = predictions * np.sqrt(std**2 + 1e-6) + mean
    if model.preprocessing is not None:  # the encoder's per-channel normalisation, undone (colours innermost)
        scale = np.tile(model.preprocessing.scale, predictions.shape[-1] // 3)
        predictions = (predictions - np.tile(model.preprocessing.offset, predictions.shape[-1] // 3)) / scale
    pixels = predictions
    removed = np.asarray(mask, "float32")[..., None]
    masked = patches * (1 - removed) + 127.5 * removed
    filled = patches * (1 - removed) + np.clip(pixels, 0, 255) * removed
    return (keras.ops.convert_to_numpy(unpatchify(masked, grid, model.patch_size)),
            keras.ops.convert_to_numpy(unpatchify(filled, grid, model.patch_size)))


def plot_reconstructions(model, images, mask, path, title=None):
    """A PNG with one row per image: original, masked, reconstruction.

    Example:
        >>> plot_reconstructions(model, images, mask, "run/reconstruction_epoch_1.png")  # doctest: +SKIP
    """
    masked, filled = reconstruction_images(model, images, mask)
    plt = _pyplot()
    figure, axes = plt.subplots(len(images), 3, figsize=(6, 2 * len(images)), squeeze=False)
    for row, columns in enumerate(zip(images, masked, filled)):
        for axis, picture, label in zip(axes[row], columns, ("original", "masked", "reconstruction")):
            axis.imshow(np.clip(picture, 0, 255).astype("uint8"))
            axis.set_axis_off()
            if row == 0:
                axis.set_title(label)
    if title:
        figure.suptitle(title)
    return _save_figure(figure, path)


class ReconstructionFigures(keras.callbacks.Callback):
    """Writes ``reconstruction_epoch_{N}.png`` into ``folder`` after each epoch, for fixed images and masks.

    Example:
        >>> model.fit(data, callbacks=[ReconstructionFigures(images, mask, "run")])  # doctest: +SKIP
    """

    def __init__(self, images, mask, folder):
        super().__init__()
        self.images, self.mask, self.folder = images, mask, folder

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        title = f"epoch {epoch + 1}" + (f", loss {loss:.4f}" if loss is not None else "")
        plot_reconstructions(self.model, self.images, self.mask, f"{self.folder}/reconstruction_epoch_{epoch + 1}.png",
                             title)
