"""The class of the models the builders make: a functional ``keras.Model`` that keeps its weights when a run fails."""

import contextlib

import keras

from keras_convnext.layers import ConvNeXtDownsample, ConvNeXtStem


@keras.saving.register_keras_serializable(package="keras_convnext")
class ConvNeXtModel(keras.Model):
    """A functional ``keras.Model`` (built from inputs and outputs, saved and loaded as one) whose ``fit``,
    ``evaluate`` and ``predict`` leave its weights in place when they fail, and which refuses images smaller than it
    takes (``smallest_image_side``) in those and the ``*_on_batch`` methods before anything is traced.

    Keras 3.15's JAX trainer takes the variables' values out of the model for the length of ``fit``, ``evaluate``
    and ``predict`` and puts them back only when they end; one that fails before its first step ends (an image too
    small for the model, a batch of the wrong shape) left a model with no weights, whose every later call failed
    with ``TypeError: 'NoneType' object is not callable``. Here every value taken out and not put back is restored
    as it was, and the error is raised as it came. On TensorFlow and PyTorch nothing is taken out; on every backend
    the step functions traced by a failed run are dropped, since TensorFlow refused to create the optimizer's
    variables in the ``fit`` after a failed first one.

    Example:
        >>> import numpy as np
        >>> import keras_convnext as kc
        >>> model = kc.ConvNeXtAtto(input_shape=(None, None, 3))
        >>> try:
        ...     model.predict(np.zeros((1, 8, 8, 3), "float32"), verbose=0)
        ... except ValueError as error:
        ...     print(error)
        The images are 8x8 pixels, too small for this ConvNeXt: it needs images of at least 32x32 pixels (the stem's stride times 2 for each downsampling).
        >>> model.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0).shape
        (1, 1000)
    """

    def fit(self, x=None, *args, **kwargs):
        self._check_image_size(x)
        with weights_kept_on_error(self):
            return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        self._check_image_size(x)
        with weights_kept_on_error(self):
            return super().evaluate(x, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._check_image_size(x)
        with weights_kept_on_error(self):
            return super().predict(x, *args, **kwargs)

    def train_on_batch(self, x, *args, **kwargs):
        self._check_image_size(x)
        return super().train_on_batch(x, *args, **kwargs)

    def test_on_batch(self, x, *args, **kwargs):
        self._check_image_size(x)
        return super().test_on_batch(x, *args, **kwargs)

    def predict_on_batch(self, x):
        self._check_image_size(x)
        return super().predict_on_batch(x)

    def smallest_image_side(self):
        """The smallest height and width the model takes: the stem's stride times 2 per downsampling (32 for the
        hierarchical ConvNeXts, 16 for the isotropic ones); ``None`` for a model without a ConvNeXt stem.

        Example:
            >>> import keras_convnext as kc
            >>> kc.ConvNeXtAtto(input_shape=(None, None, 3)).smallest_image_side()
            32
        """
        stem = self._stem()
        if stem is None:
            return None
        return stem.patch_size * 2 ** sum(isinstance(layer, ConvNeXtDownsample) for layer in self.layers)

    def _stem(self):
        stems = [layer for layer in self.layers if isinstance(layer, ConvNeXtStem)]
        return stems[0] if len(stems) == 1 else None

    def _check_image_size(self, images):
        """Refuses arrays (or a ``tf.data`` dataset's declared shape) whose images are too small, before a graph is
        traced or a variable touched: a graph traced for open sizes (TensorFlow's, after a first call) cannot say why."""
        spec = getattr(images, "element_spec", None)  # a tf.data.Dataset of images or of (images, labels, ...)
        if spec is not None:
            images = spec[0] if isinstance(spec, tuple) else spec
        shape = getattr(images, "shape", None)
        smallest = self.smallest_image_side() if shape is not None and len(shape) == 4 else None
        if smallest is None:
            return
        height, width = shape[2:4] if self._stem().data_format == "channels_first" else shape[1:3]
        if any(side is not None and side < smallest for side in (height, width)):
            raise ValueError(
                f"The images are {height}x{width} pixels, too small for this ConvNeXt: it needs images of at least "
                f"{smallest}x{smallest} pixels (the stem's stride times 2 for each downsampling)."
            )


def _taken_out(variable):
    # Keras has no public test for a value the JAX trainer took out; tests/test_internals.py guards this one.
    return getattr(variable, "_value", False) is None


@contextlib.contextmanager
def weights_kept_on_error(model):
    """Within the block, an error leaves ``model``'s variables (and its optimizer's) as they were wherever the JAX
    trainer took them out, and drops the step functions traced so far, so that the next run traces anew (TensorFlow
    refused to create the optimizer's variables in a second trace of the ``fit`` step that failed).

    Example:
        >>> import numpy as np
        >>> import keras_convnext as kc
        >>> model = kc.ConvNeXtAtto(input_shape=(32, 32, 3))
        >>> with weights_kept_on_error(model):
        ...     outputs = model.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0)
    """
    saved = []
    if keras.backend.backend() == "jax":
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and not optimizer.built and model.built:
            optimizer.build(model.trainable_variables)  # as fit would, so that its variables are saved here too
        variables = list(model.variables) + list(optimizer.variables if optimizer is not None else [])
        saved = [(variable, variable.value) for variable in variables]  # JAX arrays are immutable: no copies made
    try:
        yield
    except BaseException:
        for variable, value in saved:
            if _taken_out(variable):
                variable.assign(value)
        model.train_function = model.test_function = model.predict_function = None
        raise
