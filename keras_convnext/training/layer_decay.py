"""ConvNeXt's layer-wise learning-rate decay: which group each variable belongs to, and its multiplier.

The official grouping (facebookresearch/ConvNeXt ``optim_factory.get_num_layer_for_convnext``) gives the stem
group 0, stage 1 group 1, stage 2 (with its downsampling) group 2, the blocks of stage 3 one group per three
blocks, stage 4 (with its downsampling) the next group, and the head the last. It hard-codes 12 groups for the
27-block stage 3 of Base/Large/XLarge; here the count follows stage 3's depth, so the figures equal the official
ones for those models and leave no empty groups for Tiny (9 blocks) or any custom depth. Isotropic models have
one stage and give each block its own group, as ViT/BEiT layer decay does.
"""

import math

from keras_convnext.layer_names import STEM, parse_block_name, parse_stage_layer


def _stage_depths(layer_names):
    depths = {}
    for name in layer_names:
        parsed = parse_block_name(name)
        if parsed:
            stage, block = parsed
            depths[stage] = max(depths.get(stage, 0), block + 1)
    if not depths:
        raise ValueError("Expected a ConvNeXt model with layers named 'stage_<s>_block_<b>'; found none.")
    return [depths.get(stage, 0) for stage in range(max(depths) + 1)]


def _group_table(depths):
    """Per stage, a function block -> group; and the head's group."""
    if len(depths) == 1:
        return [lambda block: 1 + block], depths[0] + 1
    if len(depths) != 4:
        raise ValueError(f"Layer decay is defined for isotropic (1 stage) or 4-stage ConvNeXts; got depths {depths}.")
    third_stage_groups = math.ceil(depths[2] / 3)
    last = 3 + third_stage_groups
    table = [lambda block: 1, lambda block: 2, lambda block: 3 + block // 3, lambda block: last]
    return table, last + 1


def layer_groups(model):
    """Maps each variable path of a ConvNeXt ``model`` to its layer-decay group (0 = stem, highest = head).

    Example:
        >>> import keras_convnext as kc
        >>> groups = layer_groups(kc.ConvNeXtTiny(input_shape=(32, 32, 3)))
        >>> groups["stem/stem_conv/kernel"], groups["stage_2_block_8/stage_2_block_8_pointwise_1/kernel"]
        (0, 5)
    """
    layer_names = {variable.path.split("/")[0] for variable in model.weights}
    table, head = _group_table(_stage_depths(layer_names))
    groups = {}
    for variable in model.weights:
        layer = variable.path.split("/")[0]
        parsed = parse_stage_layer(layer)
        if layer == STEM:
            groups[variable.path] = 0
        elif parsed is None:
            groups[variable.path] = head
        else:
            stage, block = parsed
            groups[variable.path] = table[stage](block or 0)
    return groups


def layer_decay_multipliers(model, layer_decay):
    """Learning-rate multiplier of each variable path: ``layer_decay ** (head_group - group)``.

    The head trains at the full learning rate, the stem at ``layer_decay ** head_group`` of it.

    Example:
        >>> import keras_convnext as kc
        >>> multipliers = layer_decay_multipliers(kc.ConvNeXtTiny(input_shape=(32, 32, 3)), 0.8)
        >>> multipliers["head_dense/kernel"], round(multipliers["stem/stem_conv/kernel"], 4)
        (1.0, 0.2097)
    """
    if not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1]; got {layer_decay!r}.")
    groups = layer_groups(model)
    head = max(groups.values())
    return {path: float(layer_decay ** (head - group)) for path, group in groups.items()}
