"""``optimize_for_inference``: the same model with its exact algebraic folds applied, for serving.

Folds (each exact in real arithmetic; in float32 the outputs move by rounding only, ≤ 1e-5):

- a block's LayerNorm ``gamma``/``beta`` into ``pointwise_1``: ``(x̂·γ + β)·W + b = x̂·(γ ⊙ W) + (β·W + b)``
  (RmsNorm's and SimpleNorm's ``gamma`` alike, with ``β = 0``);
- LayerScale into ``pointwise_2``: ``(h·W + b)·s = h·(W ⊙ s) + b·s``;
- the head's LayerNorm into the head's first dense (``head_hidden`` of an MLP head, else ``head_dense``) the same
  way (dropout in between is the identity at inference, and so is the pooling between them in a ``head_norm_first``
  model: the mean of ``x̂·γ + β`` is ``mean(x̂)·γ + β``);
- stochastic depth, the identity at inference, is dropped.

Each block then runs three fewer elementwise passes over its activations.
"""

import keras
import numpy as np

from keras_convnext.layer_names import HEAD_DENSE, HEAD_HIDDEN, HEAD_LAYERNORM
from keras_convnext.layers import ConvNeXtBlock, LayerNorm
from keras_convnext.layers.fast_paths import is_plain_kernel_layer


def _fold_norm_into_dense(norm_weights, dense_weights):
    gamma = norm_weights[0].astype("float64")
    beta = norm_weights[1].astype("float64") if len(norm_weights) > 1 else np.zeros_like(gamma)  # RmsNorm: no shift
    kernel, bias = (w.astype("float64") for w in dense_weights)
    return [gamma[:, None] * kernel, bias + beta @ kernel]


def _set(layer, weights):
    layer.set_weights([np.asarray(w, dtype=v.dtype) for w, v in zip(weights, layer.weights)])


def _fold_block(block, target):
    target.depthwise_conv.set_weights(block.depthwise_conv.get_weights())
    _set(target.pointwise_1, _fold_norm_into_dense(block.layernorm.get_weights(), block.pointwise_1.get_weights()))
    if block.grn is not None:
        target.grn.set_weights(block.grn.get_weights())
    kernel, bias = (w.astype("float64") for w in block.pointwise_2.get_weights())
    if block.layer_scale is not None:
        scale = block.layer_scale.get_weights()[0].astype("float64")
        kernel, bias = kernel * scale, bias * scale
    _set(target.pointwise_2, [kernel, bias])


def unfoldable_layers(model):
    """Names of ``model``'s Dense and Conv layers whose weights are not plain float kernels (quantized, or with LoRA),
    which ``optimize_for_inference`` cannot fold.

    Example:
        >>> import keras_convnext as kc
        >>> unfoldable_layers(kc.ConvNeXt((1, 1), (8, 16), input_shape=(32, 32, 3), classes=3))
        []
    """
    return [layer.name for layer in model._flatten_layers()
            if hasattr(layer, "lora_enabled") and not is_plain_kernel_layer(layer)]


def optimize_for_inference(model):
    """A new model computing ``model``'s inference outputs with LayerNorm affines and LayerScale folded away.

    ``model`` is left untouched. The result has fewer weights and ops and the same outputs (≤ 1e-5 in float32);
    it is for inference and export, not for further training (its blocks have no LayerScale to train).

    Example:
        >>> import keras_convnext as kc
        >>> model = kc.ConvNeXt((1, 1), (8, 16), input_shape=(32, 32, 3), classes=3)
        >>> fast = optimize_for_inference(model)
        >>> images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
        >>> np.testing.assert_allclose(fast.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-5)
    """
    functional = isinstance(model, keras.Model) and not isinstance(model, keras.Sequential)
    if not functional or not getattr(model, "inputs", None):  # a subclassed model has no inputs
        raise ValueError(
            f"optimize_for_inference expects a functional keras.Model built by keras_convnext (e.g. create_model); "
            f"got {type(model).__name__}."
        )
    blocks = [layer for layer in model.layers if isinstance(layer, ConvNeXtBlock)]
    if not blocks:
        raise ValueError(f"optimize_for_inference found no ConvNeXtBlock in model {model.name!r}; nothing to fold.")
    transformed = unfoldable_layers(model)
    if transformed:
        raise ValueError(
            f"optimize_for_inference folds float weights; {len(transformed)} layer(s) of {model.name!r} are quantized "
            f"or carry LoRA (e.g. {transformed[0]!r}). Fold before model.quantize(...) or enable_lora(...), or run "
            "the model as it is (compile_for_inference does so by itself)."
        )
    names = {layer.name for layer in model.layers}
    fold_head = HEAD_LAYERNORM in names and HEAD_DENSE in names
    first_head_dense = HEAD_HIDDEN if HEAD_HIDDEN in names else HEAD_DENSE  # the dense the head's norm feeds

    def clone_layer(layer):
        config = layer.get_config()
        if isinstance(layer, ConvNeXtBlock):
            config.update(layer_scale_init_value=None, norm_affine=False, drop_path_rate=0.0)
        elif isinstance(layer, LayerNorm) and fold_head and layer.name == HEAD_LAYERNORM:
            config.update(affine=False)
        return layer.__class__.from_config(config)

    optimized = keras.models.clone_model(model, clone_function=clone_layer)
    for layer in model.layers:
        target = optimized.get_layer(layer.name)
        if isinstance(layer, ConvNeXtBlock):
            _fold_block(layer, target)
        elif fold_head and layer.name == first_head_dense:
            _set(target, _fold_norm_into_dense(model.get_layer(HEAD_LAYERNORM).get_weights(), layer.get_weights()))
        elif target.weights:
            target.set_weights(layer.get_weights())
    return optimized
