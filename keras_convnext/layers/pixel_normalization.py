"""Per-channel ``x * scale + offset`` with the constants in the config: the model's built-in preprocessing."""

import keras
from keras import ops

from keras_convnext.layers.data_format import channel_axis, standardize_data_format


@keras.saving.register_keras_serializable(package="keras_convnext")
class PixelNormalization(keras.layers.Layer):
    """Maps each channel ``c`` of an image to ``x[c] * scale[c] + offset[c]``, in the compute dtype.

    Unlike ``keras.layers.Rescaling``, a plain layer: it has no ``tf.data`` machinery, which on the torch backend
    imports a backend module on every call and so breaks ``torch.compile``'s graph twelve times. Unlike
    ``keras.layers.Normalization``, it holds its constants in the config, not as captured tensors (tf2onnx turns
    those into extra model inputs). It refuses an image whose channel count differs from ``len(scale)`` instead of
    broadcasting a grey image to colour.

    Args:
        scale: one multiplier per channel.
        offset: one addend per channel.
        data_format: ``"channels_last"`` or ``"channels_first"``; ``None`` takes Keras' global default.

    Example:
        >>> import numpy as np
        >>> normalize = PixelNormalization(scale=[1 / 255] * 3, offset=[0.0] * 3)
        >>> keras.ops.convert_to_numpy(normalize(np.full((1, 2, 2, 3), 255.0, "float32")))[0, 0, 0].tolist()
        [1.0, 1.0, 1.0]
    """

    def __init__(self, scale, offset, data_format="channels_last", **kwargs):
        super().__init__(**kwargs)
        # Tuples, not lists: Keras wraps a list attribute in a TrackedList, which torch.compile cannot trace.
        self.scale = tuple(float(v) for v in scale)
        self.offset = tuple(float(v) for v in offset)
        if len(self.scale) != len(self.offset) or not self.scale:
            raise ValueError(
                f"PixelNormalization needs one scale and one offset per channel; got {len(self.scale)} scales and "
                f"{len(self.offset)} offsets."
            )
        self.data_format = standardize_data_format(data_format)
        self.axis = channel_axis(self.data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={self.axis: len(self.scale)})

    def call(self, inputs):
        shape = (-1,) if self.axis == -1 else (-1, 1, 1)
        scale = ops.reshape(ops.convert_to_tensor(self.scale, self.compute_dtype), shape)
        offset = ops.reshape(ops.convert_to_tensor(self.offset, self.compute_dtype), shape)
        return ops.cast(inputs, self.compute_dtype) * scale + offset

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"scale": list(self.scale), "offset": list(self.offset), "data_format": self.data_format})
        return config
