"""``.keras`` and ``.weights.h5`` round trips with no ``custom_objects``, and stable weight names."""

import h5py
import keras
import numpy as np
import pytest

import keras_convnext as kc
from helpers import TINY_ARCH, perturb


def tiny(**kwargs):
    return kc.ConvNeXt(**{**TINY_ARCH, "input_shape": (64, 64, 3), "classes": 5, **kwargs})


def h5_paths(path):
    found = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
    return sorted(found)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_keras_file_round_trip_without_custom_objects(tmp_path, rng, data_format):
    shape = (64, 64, 3) if data_format == "channels_last" else (3, 64, 64)
    model = perturb(tiny(drop_path_rate=0.1, data_format=data_format, input_shape=shape))
    x = rng.uniform(0, 255, (2, *shape)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)))
    assert isinstance(loaded.get_layer("stage_2_block_1"), kc.ConvNeXtBlock)
    assert loaded.get_layer("stage_2_block_1").get_config() == model.get_layer("stage_2_block_1").get_config()


def test_weights_file_round_trip_into_a_fresh_model(tmp_path, rng):
    model = perturb(tiny())
    path = tmp_path / "tiny.weights.h5"
    model.save_weights(path)
    fresh = tiny()
    fresh.load_weights(path)
    x = rng.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(fresh(x)), keras.ops.convert_to_numpy(model(x)))


def test_same_variant_built_twice_has_identical_weight_paths(tmp_path):
    first = kc.create_model("convnextv2_atto", input_shape=(32, 32, 3))
    second = kc.create_model("convnextv2_atto", input_shape=(32, 32, 3), name="renamed")
    assert [v.path for v in first.weights] == [v.path for v in second.weights]
    first.save_weights(tmp_path / "a.weights.h5")
    second.save_weights(tmp_path / "b.weights.h5")
    assert h5_paths(tmp_path / "a.weights.h5") == h5_paths(tmp_path / "b.weights.h5")


def test_weights_saved_from_a_renamed_model_load_into_the_default_one(tmp_path, rng):
    source = perturb(kc.create_model("convnext_atto", input_shape=(32, 32, 3), name="my_backbone"))
    source.save_weights(tmp_path / "w.weights.h5")
    target = kc.create_model("convnext_atto", input_shape=(32, 32, 3))
    target.load_weights(tmp_path / "w.weights.h5")
    x = rng.uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(target(x)), keras.ops.convert_to_numpy(source(x)))


def test_layers_are_named_from_their_place():
    paths = {v.path for v in kc.create_model("convnext_tiny").weights}
    for expected in [
        "stem/stem_conv/kernel",
        "stem/stem_layernorm/gamma",
        "stage_1_downsample/stage_1_downsample_conv/kernel",
        "stage_2_block_5/stage_2_block_5_pointwise_1/kernel",
        "stage_2_block_8/stage_2_block_8_layer_scale/gamma",
        "stage_3_block_2/stage_3_block_2_depthwise_conv/kernel",
        "head_layernorm/gamma",
        "head_dense/kernel",
    ]:
        assert expected in paths, expected
    assert not any("convnext_tiny" in p for p in paths)
