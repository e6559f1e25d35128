"""Parameter counts equal timm's for every V1 and V2 variant (the table in convnext-facts.md)."""

import gc

import keras
import pytest

import keras_convnext as kc

# timm create_model(name).num_params, 1000 classes (shared/reference/convnext-facts.md; the _ols, _rms and _hnf
# models counted with timm 1.0.31, 2026-11-27).
TIMM_PARAMETER_COUNTS = {
    "convnext_zepto_rms": 2_155_656,
    "convnext_zepto_rms_ols": 2_164_232,
    "convnext_atto": 3_695_520,
    "convnext_atto_ols": 3_702_912,
    "convnext_atto_rms": 3_693_040,
    "convnext_femto_ols": 5_226_520,
    "convnext_pico_ols": 9_061_928,
    "convnext_nano_ols": 15_649_560,
    "convnext_tiny_hnf": 28_589_128,
    "convnext_femto": 5_217_784,
    "convnext_pico": 9_045_672,
    "convnext_nano": 15_593_560,
    "convnext_tiny": 28_589_128,
    "convnext_small": 50_223_688,
    "convnext_base": 88_591_464,
    "convnext_large": 197_767_336,
    "convnext_large_mlp": 200_128_168,  # timm's 200.13M: convnext_large plus head.pre_logits.fc (1536 x 1536 + 1536)
    "convnext_xlarge": 350_196_968,
    "convnext_xxlarge": 846_471_016,
    "convnextv2_atto": 3_708_400,
    "convnextv2_femto": 5_233_240,
    "convnextv2_pico": 9_066_280,
    "convnextv2_nano": 15_623_800,
    "convnextv2_tiny": 28_635_496,
    "convnextv2_small": 50_318_440,
    "convnextv2_base": 88_717_800,
    "convnextv2_large": 197_956_840,
    "convnextv2_huge": 660_289_640,
}
# The FB isotropic models: the paper gives ~22M, 87M and 306M.
ISOTROPIC_APPROXIMATE_COUNTS = {
    "convnext_isotropic_small": 22e6,
    "convnext_isotropic_base": 87e6,
    "convnext_isotropic_large": 306e6,
}
# The fast tier builds the variants up to this size (atto, femto, pico of V1 and V2); the large tier builds the
# rest, up to 846M parameters.
FAST_TIER_LIMIT = 10_000_000


def _build_and_count(name):
    expected = kc.count_parameters(name)
    model = kc.create_model(name)
    assert model.count_params() == expected
    if name in TIMM_PARAMETER_COUNTS:
        assert expected == TIMM_PARAMETER_COUNTS[name]
    else:
        assert abs(expected - ISOTROPIC_APPROXIMATE_COUNTS[name]) / ISOTROPIC_APPROXIMATE_COUNTS[name] < 0.02
    del model
    keras.backend.clear_session()  # a large model's variables would otherwise stay for the rest of the session
    gc.collect()


def test_every_variant_has_a_reference_count():
    assert set(TIMM_PARAMETER_COUNTS) | set(ISOTROPIC_APPROXIMATE_COUNTS) == set(kc.list_models())


@pytest.mark.parametrize("name", list(TIMM_PARAMETER_COUNTS))
def test_count_parameters_formula_matches_timm(name):
    assert kc.count_parameters(name) == TIMM_PARAMETER_COUNTS[name]


# Variable shapes are the builder's, not the backend's (every backend builds the small test models elsewhere): once.
# timm's _ols/_rms/_hnf rows are built in the large tier; the fast tier builds their layers at a small size on every
# backend (test_timm_architectures.py) and checks their counts above.
TIMM_OWN_ROWS = {"convnext_zepto_rms", "convnext_zepto_rms_ols", "convnext_atto_ols", "convnext_atto_rms",
                 "convnext_femto_ols", "convnext_pico_ols", "convnext_nano_ols", "convnext_tiny_hnf"}


@pytest.mark.once
@pytest.mark.parametrize("name", [
    name if name not in TIMM_OWN_ROWS else pytest.param(name, marks=pytest.mark.large)
    for name in kc.list_models() if kc.count_parameters(name) <= FAST_TIER_LIMIT])
def test_built_model_has_the_exact_parameter_count(name):
    _build_and_count(name)


# Variable shapes are the builder's, not the backend's: the full-size builds (about two minutes) run once per suite.
@pytest.mark.large
@pytest.mark.once
@pytest.mark.parametrize("name", [name for name in kc.list_models() if kc.count_parameters(name) > FAST_TIER_LIMIT])
def test_built_full_size_model_has_the_exact_parameter_count(name):
    _build_and_count(name)


@pytest.mark.parametrize("classes, include_top, pooling", [(10, True, None), (21841, True, None), (1000, False, None),
                                                         (1000, False, "avg"), (1000, False, "max")])
def test_count_follows_the_head(classes, include_top, pooling):
    model = kc.create_model("convnext_atto", classes=classes, include_top=include_top, pooling=pooling)
    counted = kc.count_parameters("convnext_atto", classes=classes, include_top=include_top, pooling=pooling)
    assert model.count_params() == counted
    if pooling is not None:  # the pooled features keep the head's LayerNorm (gamma and beta of the last width)
        assert counted == kc.count_parameters("convnext_atto", include_top=False) + 2 * kc.get_variant("convnext_atto").dims[-1]
