"""The output side of every ConvNeXt builder: the classifier head or the pooled features."""

import keras

from keras_convnext.layer_names import EMBEDDING, HEAD_DENSE, HEAD_DROPOUT, HEAD_HIDDEN, HEAD_LAYERNORM, PREDICTIONS
from keras_convnext.layers.initializers import kernel_initializer
from keras_convnext.layers.scale_norms import channel_norm

POOLINGS = (None, "avg", "max")
# What the top's last layer gives: class scores, or an image embedding (a CLIP tower's projection, no activation).
HEAD_OUTPUTS = (PREDICTIONS, EMBEDDING)


def _positive_integer(value):
    return not isinstance(value, bool) and isinstance(value, int) and value >= 1


def check_head_arguments(
    *, include_top, pooling, classes, classifier_activation, dropout_rate, head_init_scale, head_hidden_size=None,
    head_output=PREDICTIONS,
):
    """Raises ``ValueError`` naming the first bad head argument.

    Example:
        >>> check_head_arguments(include_top=True, pooling=None, classes=10,
        ...                      classifier_activation="softmax", dropout_rate=0.0, head_init_scale=1.0)
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}; got {pooling!r}.")
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"dropout_rate must be in [0, 1); got {dropout_rate!r}.")
    if head_hidden_size is not None and not _positive_integer(head_hidden_size):
        raise ValueError(f"head_hidden_size must be None or a positive integer; got {head_hidden_size!r}.")
    if head_output not in HEAD_OUTPUTS:
        raise ValueError(f"head_output must be one of {HEAD_OUTPUTS}; got {head_output!r}.")
    if not include_top:
        return
    if head_output == EMBEDDING and classifier_activation is not None:
        raise ValueError(
            f"head_output='embedding' is a linear projection; classifier_activation must be None, got "
            f"{classifier_activation!r}."
        )
    if not _positive_integer(classes):
        raise ValueError(f"classes must be a positive integer when include_top=True; got {classes!r}.")
    if not head_init_scale > 0:
        raise ValueError(f"head_init_scale must be > 0; got {head_init_scale!r}.")
    try:
        keras.activations.get(classifier_activation)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"classifier_activation must be None, a Keras activation name such as 'softmax', or a callable; "
            f"got {classifier_activation!r}."
        ) from error


def pool(x, pooling, data_format):
    """Global average or max pooling of a feature map, named ``avg_pool`` / ``max_pool``.

    Example:
        >>> features = keras.Input((7, 7, 768))
        >>> pool(features, "avg", "channels_last").shape
        (None, 768)
    """
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(data_format=data_format, name="avg_pool")(x)
    return keras.layers.GlobalMaxPooling2D(data_format=data_format, name="max_pool")(x)


def head(
    x, *, include_top, pooling, classes, classifier_activation, dropout_rate, head_init_scale, norm_epsilon, data_format,
    head_hidden_size=None, head_output=PREDICTIONS, norm_type="layernorm", head_norm_first=False,
):
    """Adds ConvNeXt's head on the last feature map.

    ``include_top``: average pool → ``head_layernorm`` → [``head_hidden``: dense of ``head_hidden_size`` and GELU,
    timm's ``head.pre_logits``] → dropout → ``head_dense`` → ``predictions`` (the activation, computed in float32),
    or ``embedding`` for ``head_output="embedding"`` (a CLIP tower: no activation). Without the top,
    ``pooling="avg"`` or ``"max"`` pools and applies ``head_layernorm`` (as timm's pre-logits and
    keras.applications do); ``pooling=None`` returns the last feature map itself, with no extra LayerNorm.
    ``head_norm_first`` (timm's ``_hnf`` models) puts ``head_layernorm`` on the feature map before the pooling.
    ``norm_type`` is the norm of ``head_layernorm``.

    Example:
        >>> features = keras.Input((7, 7, 768))
        >>> outputs = head(features, include_top=True, pooling=None, classes=1000,
        ...                classifier_activation="softmax", dropout_rate=0.0, head_init_scale=1.0,
        ...                norm_epsilon=1e-6, data_format="channels_last")
        >>> outputs.shape
        (None, 1000)
    """
    if not include_top and pooling is None:
        return x
    if head_norm_first:
        x = channel_norm(norm_type, norm_epsilon, data_format=data_format, name=HEAD_LAYERNORM)(x)
        x = pool(x, "avg" if include_top else pooling, data_format)
    else:
        x = pool(x, "avg" if include_top else pooling, data_format)
        x = channel_norm(norm_type, norm_epsilon, name=HEAD_LAYERNORM)(x)
    if not include_top:
        return x
    if head_hidden_size:
        x = keras.layers.Dense(
            head_hidden_size, activation="gelu", kernel_initializer=kernel_initializer(head_init_scale), name=HEAD_HIDDEN
        )(x)
    if dropout_rate > 0:
        x = keras.layers.Dropout(dropout_rate, name=HEAD_DROPOUT)(x)
    x = keras.layers.Dense(classes, kernel_initializer=kernel_initializer(head_init_scale), name=HEAD_DENSE)(x)
    return keras.layers.Activation(classifier_activation, dtype="float32", name=head_output)(x)
