"""The input side of every ConvNeXt builder: shape checks, ``input_tensor`` and the pixel normalisation."""

import keras

from keras_convnext.layers.pixel_normalization import PixelNormalization

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resolve_input_shape(input_shape, input_tensor, *, include_top, include_preprocessing, default_size, min_size, data_format):
    """Checks ``input_shape`` (or ``input_tensor``'s shape) and fills in the default; returns a 3-tuple.

    Without ``include_top`` the default leaves height and width open, so any image size works.

    Example:
        >>> resolve_input_shape(None, None, include_top=True, include_preprocessing=True,
        ...                     default_size=224, min_size=32, data_format="channels_last")
        (224, 224, 3)
    """
    if input_shape is None and input_tensor is not None:
        input_shape = tuple(input_tensor.shape[1:])
        what = f"input_tensor of shape {tuple(input_tensor.shape)}"
    else:
        what = f"input_shape={input_shape!r}"
    layout = "(height, width, channels)" if data_format == "channels_last" else "(channels, height, width)"
    if input_shape is None:
        side = default_size if include_top else None
        input_shape = (side, side, 3) if data_format == "channels_last" else (3, side, side)
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        raise ValueError(f"{what} is not an image shape: expected {layout} for {data_format} data, without the batch axis.")
    input_shape = tuple(None if d is None else int(d) for d in input_shape)
    if data_format == "channels_last":
        spatial, channels = input_shape[:2], input_shape[2]
    else:
        channels, spatial = input_shape[0], input_shape[1:]
    if channels is None or channels < 1:
        raise ValueError(f"{what}: the channel dimension must be a known positive integer (layout {layout}).")
    if include_preprocessing and channels != 3:
        raise ValueError(
            f"{what} has {channels} channels, but include_preprocessing=True normalises RGB images and "
            f"needs 3 channels (layout {layout}). Pass 3-channel RGB images, or include_preprocessing=False "
            "to feed other channel counts to the stem yourself."
        )
    for side in spatial:
        if side is not None and side < min_size:
            raise ValueError(f"{what}: height and width must be at least {min_size} pixels for this model (layout {layout}).")
    return input_shape


def model_inputs(input_shape, input_tensor, *, name="image"):
    """Returns ``(inputs, x)``: the model's input(s) and the tensor to build on.

    Example:
        >>> inputs, x = model_inputs((224, 224, 3), None)
    """
    if input_tensor is None:
        inputs = keras.Input(shape=input_shape, name=name)
        return inputs, inputs
    if not keras.backend.is_keras_tensor(input_tensor):
        inputs = keras.Input(tensor=input_tensor, shape=input_shape, name=name)
        return inputs, inputs
    sources = keras.utils.get_source_inputs(input_tensor)
    return (sources[0] if len(sources) == 1 else sources), input_tensor


def check_pixel_statistics(mean, std):
    """Returns ``(mean, std)`` as 3-tuples of floats; ``ValueError`` unless both are 3 numbers and std is positive.

    Example:
        >>> check_pixel_statistics([0.5, 0.5, 0.5], (0.5, 0.5, 0.5))
        ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    """
    try:
        mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    except (TypeError, ValueError):
        mean = std = ()
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(
            "pixel_mean and pixel_std must each be 3 numbers (R, G, B, for pixels scaled to 0..1), std positive; "
            f"got {mean or 'not numbers'} and {std or 'not numbers'}. ImageNet's are {IMAGENET_MEAN} and {IMAGENET_STD}."
        )
    return mean, std


def pixel_normalization(data_format, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """A layer mapping RGB pixels in 0..255 to ``(x / 255 - mean) / std`` (ImageNet's mean and std by default).

    Example:
        >>> normalize = pixel_normalization("channels_last")
    """
    scale = [1.0 / (255.0 * s) for s in std]
    offset = [-m / s for m, s in zip(mean, std)]
    return PixelNormalization(scale, offset, data_format=data_format, name="preprocessing")
