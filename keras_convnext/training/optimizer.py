"""AdamW with a learning-rate multiplier per variable and weight decay only where the recipe applies it."""

import re

import keras
from keras import ops

# The last path component of the variables ConvNeXt's recipes keep out of weight decay: biases, LayerNorm
# gamma/beta, LayerScale gamma and GRN gamma/beta. Only kernels (convolutions and dense layers) are decayed.
NO_WEIGHT_DECAY = ("bias", "gamma", "beta")


@keras.saving.register_keras_serializable(package="keras_convnext")
class LayerwiseAdamW(keras.optimizers.Adam):
    """AdamW whose learning rate is scaled per variable, inside the update, on every backend.

    Scaling gradients instead would cancel out in Adam's normalisation, so the multiplier is applied to the
    step itself and to the decoupled weight decay (``w -= lr * multiplier * weight_decay * w``), as PyTorch's
    AdamW does with parameter groups. With no multipliers and nothing excluded it equals ``keras.optimizers.AdamW``.

    Args:
        learning_rate: a float or a ``keras.optimizers.schedules`` schedule.
        weight_decay: decoupled weight decay.
        learning_rate_multipliers: ``{variable.path: multiplier}``; paths not listed get 1.0.
        no_weight_decay: variable names (the last path component, matched whole) that are never decayed.
        Other keyword arguments are those of ``keras.optimizers.Adam`` (``use_ema``, ``ema_momentum``, ...).

    Example:
        >>> import keras_convnext as kc
        >>> from keras_convnext.training import layer_decay_multipliers
        >>> model = kc.ConvNeXtAtto(input_shape=(32, 32, 3), classes=4)
        >>> optimizer = LayerwiseAdamW(1e-3, weight_decay=0.05,
        ...                            learning_rate_multipliers=layer_decay_multipliers(model, 0.8))
    """

    def __init__(
        self,
        learning_rate=0.001,
        weight_decay=0.05,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        learning_rate_multipliers=None,
        no_weight_decay=NO_WEIGHT_DECAY,
        name="layerwise_adamw",
        **kwargs,
    ):
        kwargs.pop("amsgrad", None)
        super().__init__(
            learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, weight_decay=None, name=name,
            **kwargs,
        )
        if weight_decay is None or not weight_decay >= 0:
            raise ValueError(f"weight_decay must be a float >= 0; got {weight_decay!r}.")
        multipliers = dict(learning_rate_multipliers or {})
        bad = {path: value for path, value in multipliers.items() if not value >= 0}
        if bad:
            raise ValueError(f"learning_rate_multipliers must be >= 0; got {bad}.")
        self.decoupled_weight_decay = float(weight_decay)
        self.learning_rate_multipliers = multipliers
        self.no_weight_decay = tuple(no_weight_decay or ())
        self._no_decay_pattern = re.compile("|".join(map(re.escape, self.no_weight_decay))) if self.no_weight_decay else None

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._multipliers = [self.multiplier(v) for v in var_list]
        self._decays = [self.decays(v) for v in var_list]

    def decays(self, variable):
        """Whether weight decay applies to ``variable``.

        Example:
            >>> import keras_convnext as kc
            >>> model, optimizer = kc.ConvNeXtAtto(input_shape=(32, 32, 3), classes=4), LayerwiseAdamW(1e-3)
            >>> optimizer.decays(model.get_layer("head_dense").bias)
            False
        """
        if self.decoupled_weight_decay == 0:
            return False
        name = variable.path.rsplit("/", 1)[-1]
        return self._no_decay_pattern is None or self._no_decay_pattern.fullmatch(name) is None

    def multiplier(self, variable):
        """The learning-rate multiplier of ``variable``.

        Example:
            >>> import keras_convnext as kc
            >>> model, optimizer = kc.ConvNeXtAtto(input_shape=(32, 32, 3), classes=4), LayerwiseAdamW(1e-3)
            >>> optimizer.multiplier(model.get_layer("head_dense").kernel)
            1.0
        """
        return float(self.learning_rate_multipliers.get(variable.path, 1.0))

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        learning_rate = ops.multiply(ops.cast(learning_rate, variable.dtype), self._multipliers[index])
        if self._decays[index]:
            shrink = ops.multiply(learning_rate, ops.cast(self.decoupled_weight_decay, variable.dtype))
            self.assign(variable, ops.subtract(variable, ops.multiply(variable, shrink)))
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config.pop("amsgrad", None)
        config.update(
            weight_decay=self.decoupled_weight_decay,
            learning_rate_multipliers=self.learning_rate_multipliers,
            no_weight_decay=list(self.no_weight_decay),
        )
        return config
