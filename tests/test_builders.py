"""Builders, the variant table, output shapes and the feature extractor, on the active backend."""

import keras
import numpy as np
import pytest

import keras_convnext as kc
from helpers import numpy_reference as ref
from helpers import TINY_ARCH, perturb


def tiny(**kwargs):
    return kc.ConvNeXt(**{**TINY_ARCH, "input_shape": (64, 64, 3), **kwargs})


def test_every_variant_has_a_top_level_builder_and_a_create_model_name():
    # convnext_large_mlp: timm's row for the CLIP towers' MLP head; 8 more rows for timm's _ols, _rms and _hnf models
    assert len(kc.list_models()) == 31
    assert len(kc.list_models("V1")) == 19 and len(kc.list_models("V2")) == 9 and len(kc.list_models("isotropic")) == 3
    for variant in kc.VARIANTS.values():
        builder = getattr(kc, variant.builder_name)
        assert builder is kc.BUILDERS[variant.builder_name]
        assert builder.__name__ == variant.builder_name
        assert "Example:" in builder.__doc__


def test_the_public_api_is_listed_once_and_exports_every_builder():
    assert len(kc.__all__) == len(set(kc.__all__))
    assert all(hasattr(kc, name) for name in kc.__all__)
    for variant in kc.VARIANTS.values():
        assert variant.builder_name in kc.__all__ and variant.builder_name in kc.applications.__all__
    namespace = {}
    exec("from keras_convnext import *", namespace)
    assert set(kc.__all__) <= set(namespace)
    assert {"create_model", "ConvNeXt", "ConvNeXtBlock", "optimize_for_inference", "convert_weights"} <= set(kc.__all__)


def test_builder_and_create_model_build_the_same_architecture():
    a = kc.ConvNeXtV2Atto(input_shape=(32, 32, 3), classes=7)
    b = kc.create_model("convnextv2_atto", input_shape=(32, 32, 3), classes=7)
    assert [w.shape for w in a.weights] == [w.shape for w in b.weights]
    assert [v.path for v in a.weights] == [v.path for v in b.weights]
    assert a.name == b.name == "convnextv2_atto"


def test_model_matches_numpy_forward(rng):
    model = tiny(include_preprocessing=False, classifier_activation=None, classes=5)
    perturb(model, scale=0.2)
    x = rng.normal(size=(2, 64, 64, 3)).astype("float32")
    logits = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_allclose(logits, ref.convnext_logits(model, x), atol=1e-4)


def test_isotropic_model_matches_numpy_forward(rng):
    model = kc.ConvNeXt(
        (3,), (24,), stem_patch_size=16, stem_norm=False, layer_scale_init_value=None,
        input_shape=(48, 48, 3), include_preprocessing=False, classifier_activation=None, classes=4,
    )
    perturb(model, scale=0.2)
    x = rng.normal(size=(2, 48, 48, 3)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), ref.convnext_logits(model, x), atol=1e-4)


def test_preprocessing_normalises_0_255_rgb_with_imagenet_statistics(rng):
    with_pre = tiny(classifier_activation=None)
    without = tiny(include_preprocessing=False, classifier_activation=None)
    perturb(with_pre, scale=0.2)
    without.set_weights(with_pre.get_weights())
    pixels = rng.uniform(0, 255, size=(2, 64, 64, 3)).astype("float32")
    normalised = (pixels / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(with_pre(pixels)),
        keras.ops.convert_to_numpy(without(normalised.astype("float32"))),
        atol=1e-4,
    )


@pytest.mark.parametrize(
    "kwargs, shape",
    [
        ({}, (2, 1000)),
        ({"classes": 10}, (2, 10)),
        ({"include_top": False}, (2, 2, 2, 32)),
        ({"include_top": False, "pooling": "avg"}, (2, 32)),
        ({"include_top": False, "pooling": "max"}, (2, 32)),
    ],
)
def test_output_shapes(kwargs, shape):
    model = tiny(**kwargs)
    assert model(np.zeros((2, 64, 64, 3), "float32")).shape == shape


def test_softmax_head_sums_to_one_and_none_gives_logits(rng):
    x = rng.uniform(0, 255, size=(3, 64, 64, 3)).astype("float32")
    probs = keras.ops.convert_to_numpy(perturb(tiny(classes=6))(x))
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)
    logits = keras.ops.convert_to_numpy(perturb(tiny(classes=6, classifier_activation=None))(x))
    assert logits.min() < 0


def test_no_top_no_pooling_returns_the_last_stage_without_an_extra_norm():
    model = tiny(include_top=False)
    assert model.layers[-1].name == "stage_3_block_0"
    assert not any(layer.name == "head_layernorm" for layer in model.layers)


def test_open_input_size_and_odd_sizes():
    model = tiny(include_top=False, input_shape=(None, None, 3))
    assert model(np.zeros((1, 96, 64, 3), "float32")).shape == (1, 3, 2, 32)
    assert model(np.zeros((1, 67, 65, 3), "float32")).shape == (1, 2, 2, 32)  # floors like PyTorch
    top = tiny(input_shape=(None, None, 3), classes=3)
    assert top(np.zeros((1, 65, 33, 3), "float32")).shape == (1, 3)


def test_default_input_shape_is_224_with_top_and_open_without():
    assert kc.ConvNeXt((1,), (8,), stem_patch_size=16, stem_norm=False).input_shape == (None, 224, 224, 3)
    assert kc.ConvNeXt((1, 1), (8, 16), include_top=False).input_shape == (None, None, None, 3)


def test_channels_first_gives_the_same_outputs_as_channels_last(rng):
    last = tiny(classifier_activation=None)
    first = tiny(classifier_activation=None, data_format="channels_first", input_shape=(3, 64, 64))
    perturb(last, scale=0.2)
    first.set_weights(last.get_weights())
    x = rng.uniform(0, 255, size=(2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(first(x.transpose(0, 3, 1, 2))), keras.ops.convert_to_numpy(last(x)), atol=1e-4
    )
    # An odd batch of small images: TensorFlow's eager channels_first Conv2D (oneDNN) went wrong on exactly this.
    small_last, small_first = tiny(input_shape=(32, 32, 3)), tiny(data_format="channels_first", input_shape=(3, 32, 32))
    small_first.set_weights(perturb(small_last).get_weights())
    x = rng.uniform(0, 255, size=(3, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(small_first(x.transpose(0, 3, 1, 2))), keras.ops.convert_to_numpy(small_last(x)),
        atol=1e-5,
    )
    features = kc.feature_extractor(tiny(include_top=False, data_format="channels_first", input_shape=(3, None, None)))
    assert features(np.zeros((1, 3, 64, 96), "float32"))["stride_8"].shape == (1, 16, 8, 12)


def test_feature_extractor_returns_strides_4_to_32():
    features = kc.feature_extractor(tiny(include_top=False, input_shape=(None, None, 3)))
    out = features(np.zeros((2, 64, 96, 3), "float32"))
    assert {key: tuple(value.shape) for key, value in out.items()} == {
        "stride_4": (2, 16, 24, 8),
        "stride_8": (2, 8, 12, 16),
        "stride_16": (2, 4, 6, 24),
        "stride_32": (2, 2, 3, 32),
    }


def test_feature_extractor_of_a_real_variant_and_of_an_isotropic_model():
    backbone = kc.create_model("convnext_atto", include_top=False, input_shape=(None, None, 3))
    out = kc.feature_extractor(backbone)(np.zeros((1, 64, 64, 3), "float32"))
    assert [tuple(out[f"stride_{s}"].shape) for s in (4, 8, 16, 32)] == [
        (1, 16, 16, 40), (1, 8, 8, 80), (1, 4, 4, 160), (1, 2, 2, 320)
    ]
    iso = kc.ConvNeXt((2,), (16,), stem_patch_size=16, stem_norm=False, layer_scale_init_value=None, include_top=False)
    assert list(kc.feature_extractor(iso).output.keys()) == ["stride_16"]


def test_feature_extractor_rejects_other_models():
    other = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3)])
    with pytest.raises(ValueError, match="needs a keras_convnext model"):
        kc.feature_extractor(other)


def test_input_tensor_is_used_as_the_model_input():
    tensor = keras.Input((64, 64, 3), name="my_images")
    model = tiny(input_tensor=tensor, input_shape=None)
    assert model.inputs[0] is tensor


def test_drop_path_rate_rises_linearly_over_all_blocks():
    model = tiny(drop_path_rate=0.4)
    rates = [layer.drop_path_rate for layer in model.layers if isinstance(layer, kc.ConvNeXtBlock)]
    np.testing.assert_allclose(rates, np.linspace(0, 0.4, 5))


def test_variant_defaults_v1_has_layer_scale_v2_has_grn():
    v1 = kc.create_model("convnext_atto", input_shape=(32, 32, 3))
    v2 = kc.create_model("convnextv2_atto", input_shape=(32, 32, 3))
    block1, block2 = v1.get_layer("stage_0_block_0"), v2.get_layer("stage_0_block_0")
    assert block1.layer_scale is not None and block1.grn is None
    assert block2.layer_scale is None and block2.grn is not None
    np.testing.assert_allclose(keras.ops.convert_to_numpy(block1.layer_scale.gamma), 1e-6)
    assert kc.get_variant("convnext_xxlarge").norm_epsilon == 1e-5


def test_head_init_scale_shrinks_the_classifier():
    keras.utils.set_random_seed(0)
    base = np.std(keras.ops.convert_to_numpy(tiny(classes=100).get_layer("head_dense").kernel))
    keras.utils.set_random_seed(0)
    small = np.std(keras.ops.convert_to_numpy(tiny(classes=100, head_init_scale=0.001).get_layer("head_dense").kernel))
    assert small < base * 0.01


def test_dropout_rate_adds_dropout_before_the_classifier():
    assert tiny(dropout_rate=0.3).get_layer("head_dropout").rate == 0.3


def test_an_image_too_small_for_the_downsamplings_is_refused_with_the_minimum_size():
    model = tiny(include_top=False, pooling="avg", input_shape=(None, None, 3))
    with pytest.raises(ValueError, match=r"stage_3_downsample got a 1x1 feature map .* at least 32x32 pixels"):
        model(np.zeros((1, 16, 16, 3), "float32"))
    assert tuple(model(np.zeros((1, 32, 32, 3), "float32")).shape) == (1, 32)
