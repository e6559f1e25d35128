"""Patches and patch masks of masked-image pretraining: one mask bit per ``patch_size`` square, 1 = removed.

The order of a patch's values is the official FCMAE code's (``patchify``: rows of patches, then the pixels of a patch
row by row, the three colours innermost), so predictions and checkpoints line up with it.
"""

import keras
from keras import ops


def patch_grid(image_shape, patch_size, data_format="channels_last"):
    """``(rows, columns)`` of patches of a batch of images of static ``image_shape`` (with the batch axis);
    ``ValueError`` unless both sides are known multiples of ``patch_size``.

    Example:
        >>> patch_grid((8, 64, 96, 3), 32)
        (2, 3)
    """
    height, width = image_shape[1:3] if data_format == "channels_last" else image_shape[2:4]
    if height is None or width is None or height % patch_size or width % patch_size:
        raise ValueError(
            f"Masked pretraining needs image sides that are known multiples of the patch size {patch_size}; got "
            f"{height}x{width} images. Resize or crop them to, e.g., {224 // patch_size * patch_size}x"
            f"{224 // patch_size * patch_size}."
        )
    return height // patch_size, width // patch_size


def random_patch_mask(batch_size, patch_count, mask_ratio, seed=None):
    """A ``(batch_size, patch_count)`` float mask with ``patch_count - int(patch_count * (1 - mask_ratio))`` ones
    (removed patches) per image, at random places: the official ``gen_random_mask``, drawn with Keras' random ops
    (a ``keras.random.SeedGenerator`` as ``seed`` keeps it stateless under JAX).

    Example:
        >>> mask = random_patch_mask(2, 49, 0.6, seed=0)
        >>> [int(row) for row in keras.ops.convert_to_numpy(keras.ops.sum(mask, axis=1))]
        [30, 30]
    """
    keep = int(patch_count * (1 - mask_ratio))
    noise = keras.random.uniform((batch_size, patch_count), seed=seed)
    rank = ops.argsort(ops.argsort(noise, axis=1), axis=1)
    return ops.cast(ops.greater_equal(rank, keep), "float32")


def mask_map(mask, grid, scale, data_format="channels_last"):
    """The ``(B, L)`` patch mask as a one-channel map with each patch ``scale`` positions wide: ``(B, rows*scale,
    columns*scale, 1)`` (``(B, 1, ...)`` channels-first), as the official ``upsample_mask``.

    Example:
        >>> import numpy as np
        >>> tuple(mask_map(np.zeros((2, 6), "float32"), (2, 3), 4).shape)
        (2, 8, 12, 1)
    """
    rows, columns = grid
    x = ops.reshape(mask, (-1, rows, 1, columns, 1))
    x = ops.tile(x, (1, 1, scale, 1, scale))
    x = ops.reshape(x, (-1, rows * scale, columns * scale, 1))
    return x if data_format == "channels_last" else ops.transpose(x, (0, 3, 1, 2))


def patchify(images, patch_size, data_format="channels_last"):
    """``(B, H, W, C)`` images (``(B, C, H, W)`` channels-first) to ``(B, L, patch_size**2 * C)`` patches.

    Example:
        >>> import numpy as np
        >>> tuple(patchify(np.zeros((2, 64, 64, 3), "float32"), 32).shape)
        (2, 4, 3072)
    """
    if data_format != "channels_last":
        images = ops.transpose(images, (0, 2, 3, 1))
    rows, columns = patch_grid(images.shape, patch_size)
    channels = images.shape[-1]
    x = ops.reshape(images, (-1, rows, patch_size, columns, patch_size, channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, rows * columns, patch_size * patch_size * channels))


def unpatchify(patches, grid, patch_size, channels=3):
    """``(B, L, patch_size**2 * channels)`` patches back to ``(B, rows*patch_size, columns*patch_size, channels)``
    images (channels-last), the inverse of ``patchify``.

    Example:
        >>> import numpy as np
        >>> tuple(unpatchify(np.zeros((2, 6, 3072), "float32"), (2, 3), 32).shape)
        (2, 64, 96, 3)
    """
    rows, columns = grid
    x = ops.reshape(patches, (-1, rows, columns, patch_size, patch_size, channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, rows * patch_size, columns * patch_size, channels))
