"""The generic ConvNeXt builder: every V1, V2 and isotropic variant is a set of arguments to it."""

import keras
import numpy as np

from keras_convnext.layer_names import STEM, block_name, downsample_name
from keras_convnext.layers import ConvNeXtBlock, ConvNeXtDownsample, ConvNeXtStem
from keras_convnext.layers.data_format import standardize_data_format
from keras_convnext.applications.convnext_model import ConvNeXtModel
from keras_convnext.applications.model_head import check_head_arguments, head
from keras_convnext.applications.model_inputs import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    check_pixel_statistics,
    model_inputs,
    pixel_normalization,
    resolve_input_shape,
)
from keras_convnext.weights import load_checkpoint, preset_output, presets, resolve_weights


def drop_path_rates(depths, drop_path_rate):
    """Stochastic-depth rates rising linearly from 0 to ``drop_path_rate`` over all blocks, per stage.

    Example:
        >>> drop_path_rates((2, 2), 0.3)
        [[0.0, 0.1], [0.2, 0.3]]
    """
    rates = np.linspace(0.0, drop_path_rate, sum(depths)).tolist()
    per_stage, start = [], 0
    for depth in depths:
        per_stage.append([round(r, 12) for r in rates[start : start + depth]])
        start += depth
    return per_stage


def _check_preset_fits(weights, pixel_mean, pixel_std, normalises, head_output):
    """A preset's weights give right answers only with its normalisation and head; the variant builders set both.
    ``pixel_mean`` / ``pixel_std`` are already checked tuples."""
    record = presets().get(weights) if isinstance(weights, str) else None
    if record is None:
        return
    wants = preset_output(weights)
    mismatched_statistics = normalises and (
        (pixel_mean, pixel_std) != check_pixel_statistics(record["eval"]["mean"], record["eval"]["std"])
    )
    if mismatched_statistics or (head_output and head_output != wants):
        raise ValueError(
            f"Preset {weights!r} expects pixel_mean={tuple(record['eval']['mean'])}, pixel_std={tuple(record['eval']['std'])}"
            f" and head_output={wants!r}; build it with keras_convnext.create_model({record['variant']!r}, "
            f"weights={weights!r}), which sets them."
        )


def ConvNeXt(
    depths,
    dims,
    *,
    kernel_size=7,
    mlp_ratio=4,
    stem_patch_size=4,
    stem_norm=True,
    stem_type="patch",
    norm_type="layernorm",
    head_norm_first=False,
    use_grn=False,
    layer_scale_init_value=1e-6,
    norm_epsilon=1e-6,
    include_top=True,
    include_preprocessing=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    head_hidden_size=None,
    head_output="predictions",
    pixel_mean=IMAGENET_MEAN,
    pixel_std=IMAGENET_STD,
    drop_path_rate=0.0,
    head_init_scale=1.0,
    dropout_rate=0.0,
    data_format=None,
    default_size=224,
    name="convnext",
):
    """Builds a ConvNeXt as a functional ``keras.Model``.

    Stages of ``depths[i]`` blocks of width ``dims[i]``; a patchify stem before the first stage and a
    downsampling layer before each later one. One stage with a 16×16 unnormalised stem and no LayerScale
    gives the isotropic ConvNeXt. Layers are named from their place (``stem``, ``stage_1_downsample``,
    ``stage_2_block_5``, ``head_layernorm``, ``head_dense``), never from ``name``.

    Args:
        depths, dims: blocks per stage and channels per stage.
        kernel_size, mlp_ratio: depthwise kernel side and MLP expansion of each block.
        stem_patch_size, stem_norm: patchify stem (4 and True, or 16 and False for isotropic models).
        stem_type: ``"patch"``, or one of timm's overlapping stems (``"overlap"``, ``"overlap_tiered"``,
            ``"overlap_act"``: two 3x3 stride-2 convs; see ``ConvNeXtStem``).
        norm_type: every norm of the model (stem, downsampling, blocks, head): ``"layernorm"``, or timm's
            scale-only ``"rmsnorm"`` / ``"simplenorm"``.
        head_norm_first: the head's norm before the pooling (timm's ``_hnf`` models), not after.
        use_grn: ConvNeXt-V2's Global Response Normalization in every block.
        layer_scale_init_value: LayerScale's initial value, ``None`` for none (V2, isotropic).
        norm_epsilon: epsilon of every LayerNorm.
        include_top: end with the classifier (pool, LayerNorm, dense, activation).
        include_preprocessing: the model takes RGB in 0..255 and normalises it with ``pixel_mean`` / ``pixel_std``.
        weights: ``None`` (random initialisation), a preset name, an http(s) URL, or a checkpoint file in
            any supported layout (our ``.weights.h5``, keras.applications ``.h5``, timm, torchvision,
            Hugging Face, facebookresearch). ``"imagenet"`` needs a variant builder, which knows its default.
        input_tensor: optional Keras tensor (or backend tensor) to use as the image input.
        input_shape: shape without the batch axis; default ``(224, 224, 3)`` with the top, else open size.
        pooling: without the top, ``None`` (feature map), ``"avg"`` or ``"max"`` (pooled and normalised).
        classes: classifier width (or embedding width). classifier_activation: its activation, ``None`` for logits.
        head_hidden_size: an MLP head: ``head_hidden`` (dense of this width, GELU) before ``head_dense``, as
            timm's ``head_hidden_size`` (``convnext_large_mlp``'s CLIP towers); ``None`` for the linear head.
        head_output: ``"predictions"`` (a classifier) or ``"embedding"`` (the top is a projection with no
            activation, named ``embedding``, which export serves as such: CLIP image towers).
        pixel_mean, pixel_std: the per-channel statistics of ``include_preprocessing`` (for 0..1 pixels):
            ImageNet's by default; a preset sets its own (OpenAI CLIP's for the CLIP presets).
        drop_path_rate: stochastic depth, linear over all blocks from 0 to this rate.
        head_init_scale: multiplies the classifier's initial weights (0.001 when fine-tuning).
        dropout_rate: dropout before the classifier.
        data_format: ``"channels_last"`` or ``"channels_first"``; ``None`` takes Keras' global default.
        default_size: image side used when ``input_shape`` is not given and the top is included.
        name: the model's name.

    Example:
        >>> model = ConvNeXt((1, 1, 1, 1), (8, 16, 24, 32), input_shape=(64, 64, 3), classes=10)
        >>> model.output_shape
        (None, 10)
    """
    pixel_mean, pixel_std = check_pixel_statistics(pixel_mean, pixel_std)
    _check_preset_fits(weights, pixel_mean, pixel_std, include_preprocessing, head_output if include_top else None)
    weights_path = resolve_weights(weights)
    depths, dims = tuple(int(d) for d in depths), tuple(int(d) for d in dims)
    if not depths or len(depths) != len(dims) or min(depths) < 1 or min(dims) < 1:
        raise ValueError(f"depths and dims must be equally long sequences of positive integers; got {depths} and {dims}.")
    if stem_type != "patch" and stem_patch_size != 4:
        raise ValueError(f"stem_type={stem_type!r} divides the side by 4; stem_patch_size must be 4, got {stem_patch_size}.")
    if not 0.0 <= drop_path_rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1); got {drop_path_rate!r}.")
    head_arguments = {
        "include_top": include_top,
        "pooling": pooling,
        "classes": classes,
        "classifier_activation": classifier_activation,
        "dropout_rate": dropout_rate,
        "head_init_scale": head_init_scale,
        "head_hidden_size": head_hidden_size,
        "head_output": head_output,
    }
    check_head_arguments(**head_arguments)
    data_format = standardize_data_format(data_format)
    input_shape = resolve_input_shape(
        input_shape,
        input_tensor,
        include_top=include_top,
        include_preprocessing=include_preprocessing,
        default_size=default_size,
        min_size=stem_patch_size * 2 ** (len(depths) - 1),
        data_format=data_format,
    )

    inputs, x = model_inputs(input_shape, input_tensor)
    if include_preprocessing:
        x = pixel_normalization(data_format, pixel_mean, pixel_std)(x)
    x = ConvNeXtStem(
        dims[0], stem_patch_size, use_norm=stem_norm, norm_epsilon=norm_epsilon, data_format=data_format,
        stem_type=stem_type, norm_type=norm_type, name=STEM,
    )(x)
    for stage, (depth, width, rates) in enumerate(zip(depths, dims, drop_path_rates(depths, drop_path_rate))):
        if stage > 0:
            x = ConvNeXtDownsample(
                width, norm_epsilon, data_format=data_format, norm_type=norm_type, name=downsample_name(stage)
            )(x)
        for block in range(depth):
            x = ConvNeXtBlock(
                kernel_size=kernel_size,
                mlp_ratio=mlp_ratio,
                layer_scale_init_value=layer_scale_init_value,
                drop_path_rate=rates[block],
                use_grn=use_grn,
                norm_epsilon=norm_epsilon,
                norm_type=norm_type,
                data_format=data_format,
                name=block_name(stage, block),
            )(x)
    outputs = head(x, **head_arguments, norm_epsilon=norm_epsilon, data_format=data_format, norm_type=norm_type,
                   head_norm_first=head_norm_first)
    model = ConvNeXtModel(inputs, outputs, name=name)
    if weights_path is not None:
        load_checkpoint(model, weights_path)
    return model
