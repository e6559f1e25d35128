"""One call for the fastest compiled inference on the active backend: XLA on JAX (and TensorFlow on GPU),
inductor on torch."""

import keras

from keras_convnext.weight_folding import optimize_for_inference, unfoldable_layers


def compile_for_inference(model, *, fold_weights=True, torch_mode=None, tensorflow_xla=None):
    """A function ``images -> outputs`` that runs ``model`` in inference, compiled by the backend's compiler.

    - TensorFlow: ``tf.function``, with XLA (``jit_compile=True``) where a GPU is visible. ``tensorflow_xla``
      forces the choice: on CPU, XLA ran ConvNeXt-T 7x slower than TensorFlow's own oneDNN graph (BENCHMARKS.md).
    - JAX: ``jax.jit`` of ``model.stateless_call`` with the weights passed as arguments (not baked in as constants).
    - torch: ``torch.compile`` (inductor) of the model's forward under ``torch.no_grad()``; the package's layers
      trace with no graph break. ``torch_mode`` is ``torch.compile``'s ``mode`` (``"max-autotune"``, ...).

    With ``fold_weights`` (the default) the model first goes through ``optimize_for_inference`` (LayerNorm affines
    and LayerScale folded into the Dense layers), unless it has quantized or LoRA layers (``model.quantize``),
    which are compiled as they are. The first call per input shape compiles; later calls with the
    same shape run the compiled program. Outputs are backend tensors (``keras.ops.convert_to_numpy`` for NumPy) and
    equal the eager model's to float32 rounding. Later changes to ``model``'s weights are not seen when
    ``fold_weights`` made a copy; compile again after training.

    Example:
        >>> import numpy as np, keras_convnext as kc
        >>> model = kc.ConvNeXt(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), input_shape=(32, 32, 3), classes=4)
        >>> predict = compile_for_inference(model)  # doctest: +SKIP
        >>> tuple(predict(np.zeros((2, 32, 32, 3), "float32")).shape)  # compiles on the first call  # doctest: +SKIP
        (2, 4)
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"compile_for_inference needs a keras.Model; got {type(model).__name__}.")
    if fold_weights and not unfoldable_layers(model):
        model = optimize_for_inference(model)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow(model, tensorflow_xla)
    if backend == "jax":
        return _jax(model)
    if backend == "torch":
        return _torch(model, torch_mode)
    raise NotImplementedError(f"compile_for_inference supports tensorflow, jax and torch; the backend is {backend!r}.")


def _tensorflow(model, xla):
    import tensorflow as tf

    if xla is None:
        xla = bool(tf.config.list_logical_devices("GPU"))
    forward = tf.function(lambda images: model(images, training=False), jit_compile=xla, reduce_retracing=True)
    return lambda images: forward(tf.convert_to_tensor(images))


def _jax(model):
    import jax

    @jax.jit
    def forward(trainable, non_trainable, images):
        outputs, _ = model.stateless_call(trainable, non_trainable, images, training=False)
        return outputs

    def run(images):
        # The values are read at every call, never kept: Keras' JAX trainer donates them to its jitted steps
        # (predict, fit, evaluate), which deletes the arrays a kept list would still point to.
        trainable = [variable.value for variable in model.trainable_variables]
        non_trainable = [variable.value for variable in model.non_trainable_variables]
        return forward(trainable, non_trainable, images)

    return run


def _torch(model, mode):
    import torch

    def run(images):
        with torch.no_grad():
            return model(images, training=False)

    forward = torch.compile(run, mode=mode)
    return lambda images: forward(keras.ops.convert_to_tensor(images))
