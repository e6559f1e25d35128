"""timm's own ConvNeXt architectures (overlapping stems, RmsNorm/SimpleNorm, head norm first): a timm state dict of
each kind, loaded through the timm layout, gives the NumPy forward of timm's ``convnext.py`` on every backend; the
variant rows set what timm's model functions set; the new layers save and load."""

import keras
import numpy as np
import pytest
from safetensors.numpy import save_file

import keras_convnext as kc
from helpers.timm_states import timm_forward, timm_state
from keras_convnext.layers import RmsNorm, SimpleNorm

DEPTHS, DIMS, CLASSES = (1, 1, 1, 1), (40, 48, 56, 64), 7
IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
# One case per new kind of layer, each as a timm model function combines them (1x1-conv MLPs, as they all have).
CASES = {
    "overlap_tiered": {"stem_type": "overlap_tiered"},  # convnext_atto_ols, femto_ols, pico_ols
    "overlap": {"stem_type": "overlap"},  # convnext_nano_ols
    "overlap_act+simplenorm": {"stem_type": "overlap_act", "norm_type": "simplenorm"},  # convnext_zepto_rms_ols
    "simplenorm": {"norm_type": "simplenorm"},  # convnext_zepto_rms
    "rmsnorm": {"norm_type": "rmsnorm"},  # convnext_atto_rms
    "head_norm_first": {"head_norm_first": True},  # convnext_tiny_hnf
}
# timm's model functions (timm/models/convnext.py), as data.
TIMM_ARCHITECTURES = {
    "convnext_zepto_rms": {"depths": (2, 2, 4, 2), "dims": (32, 64, 128, 256), "norm_type": "simplenorm"},
    "convnext_zepto_rms_ols": {"depths": (2, 2, 4, 2), "dims": (32, 64, 128, 256), "norm_type": "simplenorm",
                               "stem_type": "overlap_act"},
    "convnext_atto_ols": {"depths": (2, 2, 6, 2), "dims": (40, 80, 160, 320), "stem_type": "overlap_tiered"},
    "convnext_atto_rms": {"depths": (2, 2, 6, 2), "dims": (40, 80, 160, 320), "norm_type": "rmsnorm"},
    "convnext_femto_ols": {"depths": (2, 2, 6, 2), "dims": (48, 96, 192, 384), "stem_type": "overlap_tiered"},
    "convnext_pico_ols": {"depths": (2, 2, 6, 2), "dims": (64, 128, 256, 512), "stem_type": "overlap_tiered"},
    "convnext_nano_ols": {"depths": (2, 2, 8, 2), "dims": (80, 160, 320, 640), "stem_type": "overlap"},
    "convnext_tiny_hnf": {"depths": (3, 3, 9, 3), "dims": (96, 192, 384, 768), "head_norm_first": True},
}
# Max |delta| as a share of the logits' scale (float32 against float64); measured on this CPU at most ~3e-7.
RELATIVE_TOLERANCE = 3e-6


@pytest.mark.parametrize("case", list(CASES))
def test_a_timm_state_dict_of_each_new_kind_gives_timms_forward(tmp_path, rng, case):
    arguments = CASES[case]
    state = timm_state(DEPTHS, DIMS, CLASSES, conv_mlp=True, **arguments)
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    model = kc.ConvNeXt(DEPTHS, DIMS, classes=CLASSES, classifier_activation=None, input_shape=(None, None, 3),
                        pixel_mean=IMAGENET["mean"], pixel_std=IMAGENET["std"], weights=path, **arguments)
    # An odd side (70 / 2 = 35): the overlapping stems' PyTorch padding (1 on every side) differs from Keras' "same"
    # there; one size per case, each new size being a new trace on JAX.
    for height, width in ((70, 66),):
        images = rng.uniform(0, 255, (2, height, width, 3)).astype("float32")
        expected = timm_forward(state, images, DEPTHS, **IMAGENET, stem_type=arguments.get("stem_type", "patch"),
                                norm_type=arguments.get("norm_type", "layernorm"))
        got = keras.ops.convert_to_numpy(model(images, training=False))
        delta = float(np.abs(got - expected).max())
        print(f"{case} {height}x{width}: max |delta| {delta:.2e} (scale {np.abs(expected).max():.2f})")
        assert delta <= RELATIVE_TOLERANCE * max(1.0, float(np.abs(expected).max())), (case, delta)
    folded = kc.optimize_for_inference(model)  # the scale-only norms and the norm before pooling fold too
    np.testing.assert_allclose(keras.ops.convert_to_numpy(folded(images, training=False)), got, atol=2e-5)


@pytest.mark.parametrize("name", list(TIMM_ARCHITECTURES))
def test_each_timm_architecture_is_a_row_with_what_its_model_function_sets(name):
    expected = {"stem_type": "patch", "norm_type": "layernorm", "head_norm_first": False, **TIMM_ARCHITECTURES[name]}
    architecture = kc.applications.get_variant(name).architecture()
    assert {key: architecture[key] for key in expected} == expected
    assert name in kc.list_models() and kc.applications.get_variant(name).family == "V1"


def test_the_scale_only_norms_compute_timms_formulas_in_float32_under_mixed_precision(rng):
    x = rng.normal(size=(2, 3, 3, 6)).astype("float32") * 4 + 1
    gamma = rng.normal(size=6).astype("float32")
    expected = {
        RmsNorm: x / np.sqrt((x.astype("float64") ** 2).mean(-1, keepdims=True) + 1e-6) * gamma,
        SimpleNorm: x / np.sqrt(x.astype("float64").var(-1, ddof=1, keepdims=True) + 1e-6) * gamma,
    }
    for layer_class, reference in expected.items():
        layer = layer_class(1e-6)
        layer.build(x.shape)
        assert [w.name for w in layer.weights] == ["gamma"]  # scale only: no beta
        layer.gamma.assign(gamma)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), reference, rtol=1e-5, atol=1e-5)
        mixed = layer_class(1e-6, dtype="mixed_bfloat16")
        mixed.build(x.shape)
        mixed.gamma.assign(gamma)
        assert keras.backend.standardize_dtype(mixed(x).dtype) == "bfloat16"
        np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.cast(mixed(x), "float32")), reference,
                                   rtol=2e-2, atol=2e-2)
        first = layer_class(1e-6, data_format="channels_first")
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(first(np.moveaxis(x, -1, 1))),
            np.moveaxis(keras.ops.convert_to_numpy(layer_class(1e-6)(x)), -1, 1), rtol=1e-5, atol=1e-5)


def test_a_model_with_every_new_kind_saves_and_loads_as_itself(tmp_path, rng):
    model = kc.ConvNeXt(DEPTHS, DIMS, classes=CLASSES, input_shape=(32, 32, 3), stem_type="overlap_act",
                        norm_type="rmsnorm", head_norm_first=True)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("stem").layernorm, RmsNorm)
    assert loaded.get_layer("stem").stem_type == "overlap_act"
    images = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)


def test_unknown_stem_and_norm_types_are_refused_by_name():
    with pytest.raises(ValueError, match=r"Unknown stem_type 'overlapping'; expected one of patch, overlap, "):
        kc.ConvNeXt(DEPTHS, DIMS, input_shape=(32, 32, 3), stem_type="overlapping")
    with pytest.raises(ValueError, match=r"Unknown norm_type 'batchnorm'; expected one of layernorm, rmsnorm, "):
        kc.ConvNeXt(DEPTHS, DIMS, input_shape=(32, 32, 3), norm_type="batchnorm")
