"""Checks shared by every layer that takes a ``data_format``."""

import keras

DATA_FORMATS = ("channels_last", "channels_first")


def standardize_data_format(data_format):
    """Returns ``data_format``, or Keras' global default when it is ``None``.

    Example:
        >>> standardize_data_format("channels_first")
        'channels_first'
    """
    if data_format is None:
        return keras.config.image_data_format()
    if data_format not in DATA_FORMATS:
        raise ValueError(
            f"data_format must be one of {DATA_FORMATS} or None; got {data_format!r}."
        )
    return data_format


def channel_axis(data_format):
    """The axis holding the channels of a 4-D image tensor in ``data_format``.

    Example:
        >>> channel_axis("channels_first")
        1
    """
    return -1 if data_format == "channels_last" else 1
