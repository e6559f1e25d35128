"""The layer names every part of the package shares: made and parsed in one module, used by the builder."""

import keras_convnext as kc
from keras_convnext import layer_names
from keras_convnext.layer_names import block_name, downsample_name, parse_block_name, parse_stage_layer


def test_names_round_trip_through_their_parser():
    for stage in range(4):
        for block in (0, 1, 26):
            assert parse_stage_layer(block_name(stage, block)) == (stage, block)
            assert parse_block_name(block_name(stage, block)) == (stage, block)
        assert parse_stage_layer(downsample_name(stage)) == (stage, None)
        assert parse_block_name(downsample_name(stage)) is None
    for other in ("stem", "head_dense", "stage_x_block_1", "stage_1_block_", "my_stage_1_block_2", "stage_1_block_2_grn"):
        assert parse_stage_layer(other) is None, other


def test_the_builder_names_its_layers_with_them():
    model = kc.ConvNeXt((1, 2), (8, 16), input_shape=(32, 32, 3), classes=3)
    names = [layer.name for layer in model.layers]
    expected = [layer_names.STEM, block_name(0, 0), downsample_name(1), block_name(1, 0), block_name(1, 1),
                layer_names.HEAD_LAYERNORM, layer_names.HEAD_DENSE]
    assert [name for name in names if name in expected] == expected


def test_the_package_has_no_other_copy_of_the_pattern():
    from pathlib import Path

    roots = [Path(kc.__file__).parent, Path(kc.applications.__file__).parent, Path(kc.weights.__file__).parent]
    # Making a name (f"stage_{...") or parsing one (r"^stage_...") anywhere else would be a second copy.
    offenders = [str(path) for root in roots for path in root.rglob("*.py")
                 if path.name != "layer_names.py" and ('f"stage_{' in path.read_text() or 'r"^stage_' in path.read_text())]
    assert offenders == []
