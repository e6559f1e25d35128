"""The ConvNeXt block, V1 and V2 in one class."""

import keras
from keras import ops

from keras_convnext.layers.data_format import channel_axis, standardize_data_format
from keras_convnext.layers.depthwise_conv import DepthwiseConv
from keras_convnext.layers import jax_cpu_gradients, torch_onednn_block
from keras_convnext.layers.fast_paths import fast_path, is_plain_kernel_layer, torch_functional
from keras_convnext.layers.global_response_norm import GlobalResponseNorm
from keras_convnext.layers.initializers import kernel_initializer
from keras_convnext.layers.scale_norms import channel_norm, check_norm_type
from keras_convnext.layers.layer_scale import LayerScale
from keras_convnext.layers.stochastic_depth import StochasticDepth

TO_CHANNELS_LAST = (0, 2, 3, 1)
TO_CHANNELS_FIRST = (0, 3, 1, 2)


def exact_gelu(x):
    """The exact (erf) GELU of the official weights: the backend's fused kernel where the ``gelu`` fast path
    allows, else ``x/2 * (1 + erf(x/sqrt(2)))`` (see ``fast_paths``).

    Example:
        >>> import numpy as np
        >>> [round(float(v), 4) for v in keras.ops.convert_to_numpy(exact_gelu(np.array([0.0, 1.0])))]
        [0.0, 0.8413]
    """
    path = fast_path("gelu")
    if path == "backend_gelu":
        return keras.activations.gelu(x, approximate=False)
    if path == "jax_cpu_gradient":
        return jax_cpu_gradients.gelu_with_cpu_gradient(x)
    return 0.5 * x * (1.0 + ops.erf(x * 0.7071067811865476))


@keras.saving.register_keras_serializable(package="keras_convnext")
class ConvNeXtBlock(keras.layers.Layer):
    """``x + drop_path(scale(pw2(grn(gelu(pw1(norm(dwconv(x))))))))``, keeping the input's shape.

    V1: depthwise conv → LayerNorm → pointwise to ``mlp_ratio * C`` → GELU (exact erf) → pointwise to C →
    LayerScale → drop path → + input. V2 (``use_grn=True, layer_scale_init_value=None``) adds GRN after the
    GELU and has no LayerScale. Sub-layers are named ``{name}_depthwise_conv``, ``{name}_layernorm``,
    ``{name}_pointwise_1``, ``{name}_grn``, ``{name}_pointwise_2``, ``{name}_layer_scale``; the MLP runs
    on channels-last data in both data formats, so the weights are the same for both.

    ``call(x, visible=...)`` is the sparse block of FCMAE pretraining, run dense: ``visible`` (1 at kept positions,
    0 at removed ones; ``(B, H, W, 1)`` or ``(B, 1, H, W)``) zeroes the removed positions before the depthwise conv
    and after the branch, and GRN takes its statistics over the kept positions only (see ``GlobalResponseNorm``), so
    that the output equals the official sparse block's at kept positions and is zero elsewhere.

    Args:
        kernel_size: odd side of the depthwise kernel.
        mlp_ratio: hidden width of the pointwise MLP, as a multiple of the input channels.
        layer_scale_init_value: initial LayerScale value, or ``None`` for no LayerScale.
        drop_path_rate: stochastic-depth rate of the residual branch, in ``[0, 1)``.
        use_grn: add ConvNeXt-V2's Global Response Normalization.
        norm_epsilon: the LayerNorm epsilon.
        norm_affine: give the LayerNorm its own ``gamma`` and ``beta``; ``optimize_for_inference`` folds them into
            ``pointwise_1`` and builds blocks without.
        norm_type: ``"layernorm"``, or timm's scale-only ``"rmsnorm"`` / ``"simplenorm"`` (the sub-layer keeps the
            name ``{name}_layernorm``: it is the block's norm slot).
        data_format: ``"channels_last"`` or ``"channels_first"``; ``None`` takes Keras' global default.

    Example:
        >>> import numpy as np
        >>> block = ConvNeXtBlock(use_grn=True, layer_scale_init_value=None, name="stage_0_block_0")
        >>> tuple(block(np.ones((1, 14, 14, 96), "float32")).shape)
        (1, 14, 14, 96)
    """

    def __init__(
        self,
        kernel_size=7,
        mlp_ratio=4,
        layer_scale_init_value=1e-6,
        drop_path_rate=0.0,
        use_grn=False,
        norm_epsilon=1e-6,
        norm_affine=True,
        data_format="channels_last",
        norm_type="layernorm",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not (isinstance(mlp_ratio, (int, float)) and mlp_ratio > 0):
            raise ValueError(f"ConvNeXtBlock mlp_ratio must be a positive number; got {mlp_ratio!r}.")
        if layer_scale_init_value is not None and not layer_scale_init_value > 0:
            raise ValueError(
                f"ConvNeXtBlock layer_scale_init_value must be > 0, or None to disable LayerScale; "
                f"got {layer_scale_init_value!r}."
            )
        self.kernel_size = kernel_size
        self.mlp_ratio = mlp_ratio
        self.layer_scale_init_value = layer_scale_init_value
        self.drop_path_rate = float(drop_path_rate)
        self.use_grn = bool(use_grn)
        self.norm_epsilon = float(norm_epsilon)
        self.norm_affine = bool(norm_affine)
        self.norm_type = check_norm_type(norm_type)
        self.data_format = standardize_data_format(data_format)
        self.axis = channel_axis(self.data_format)

        # Sub-layers whose sizes depend on the channel count are made in build().
        self.depthwise_conv = DepthwiseConv(
            kernel_size, data_format=self.data_format, dtype=self.dtype_policy, name=f"{self.name}_depthwise_conv"
        )
        self.drop_path = StochasticDepth(self.drop_path_rate, dtype=self.dtype_policy, name=f"{self.name}_drop_path")

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"ConvNeXtBlock expects a 4-D image tensor; got shape {input_shape}.")
        channels = input_shape[self.axis]
        if channels is None:
            raise ValueError(f"ConvNeXtBlock {self.name!r} needs a known channel dimension; got {input_shape}.")
        hidden = int(round(self.mlp_ratio * channels))
        common = {"dtype": self.dtype_policy}
        self.layernorm = channel_norm(
            self.norm_type, self.norm_epsilon, affine=self.norm_affine, name=f"{self.name}_layernorm", **common
        )
        self.pointwise_1 = keras.layers.Dense(
            hidden, kernel_initializer=kernel_initializer(), name=f"{self.name}_pointwise_1", **common
        )
        self.grn = GlobalResponseNorm(name=f"{self.name}_grn", **common) if self.use_grn else None
        self.pointwise_2 = keras.layers.Dense(
            channels, kernel_initializer=kernel_initializer(), name=f"{self.name}_pointwise_2", **common
        )
        self.layer_scale = (
            LayerScale(self.layer_scale_init_value, name=f"{self.name}_layer_scale", **common)
            if self.layer_scale_init_value is not None
            else None
        )

        self.depthwise_conv.build(input_shape)
        # Built here, not on its first call: a build inside torch.compile's trace is a graph break.
        self.drop_path.build(input_shape)
        channels_last = (None, None, None, channels)
        self.layernorm.build(channels_last)
        self.pointwise_1.build(channels_last)
        hidden_shape = (None, None, None, hidden)
        if self.grn is not None:
            self.grn.build(hidden_shape)
        self.pointwise_2.build(hidden_shape)
        if self.layer_scale is not None:
            self.layer_scale.build(channels_last)

    def rematerialized_call(self, layer_call, *args, **kwargs):
        # Keras hands ``training`` to jax.checkpoint as an argument, which turns the Python flag into a tracer and
        # fails under JAX; closing over it instead works on every backend.
        wrapped = super().rematerialized_call(layer_call, *args, **kwargs)
        if wrapped is layer_call:
            return layer_call

        def call_with_static_training(inputs, training=None, **kwargs):
            return keras.remat(lambda x: layer_call(x, training=training, **kwargs))(inputs)

        return call_with_static_training

    def call(self, inputs, training=None, visible=None):
        if visible is None and fast_path("fused_mlp") == "torch_onednn" and torch_onednn_block.can_fuse(
            self, inputs, training
        ):
            return torch_onednn_block.fused_block_call(self, inputs)
        if visible is not None:
            visible = ops.cast(visible, inputs.dtype)
            inputs = inputs * visible
        x = self.depthwise_conv(inputs)
        if self.axis != -1:
            x = ops.transpose(x, TO_CHANNELS_LAST)
        x = self.layernorm(x)
        x = self._pointwise(self.pointwise_1, x)
        x = exact_gelu(x)
        if self.grn is not None:
            if visible is None:
                x = self.grn(x)
            else:
                x = self.grn(x, visible=visible if self.axis == -1 else ops.transpose(visible, TO_CHANNELS_LAST))
        x = self._pointwise(self.pointwise_2, x)
        if self.layer_scale is not None:
            x = self.layer_scale(x)
        if self.axis != -1:
            x = ops.transpose(x, TO_CHANNELS_FIRST)
        if visible is not None:
            x = x * visible
        return inputs + self.drop_path(x, training=training)

    def _pointwise(self, dense, x):
        path = fast_path("dense") if is_plain_kernel_layer(dense) else "portable"
        if path == "portable" or (path == "jax_cpu_gradient" and None in x.shape):
            return dense(x)
        kernel, bias = ops.cast(dense.kernel, self.compute_dtype), ops.cast(dense.bias, self.compute_dtype)
        if path == "torch_linear":
            return torch_functional.linear(x, kernel.T, bias)
        return jax_cpu_gradients.dense_with_cpu_gradient(x, kernel, bias)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_size": self.kernel_size,
                "mlp_ratio": self.mlp_ratio,
                "layer_scale_init_value": self.layer_scale_init_value,
                "drop_path_rate": self.drop_path_rate,
                "use_grn": self.use_grn,
                "norm_epsilon": self.norm_epsilon,
                "norm_affine": self.norm_affine,
                "norm_type": self.norm_type,
                "data_format": self.data_format,
            }
        )
        return config
