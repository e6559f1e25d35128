"""The training recipe: weight-decay exclusions, layer-wise lr decay, warm-up + cosine, EMA, fine-tuning helpers."""

import math

import keras
import numpy as np
import pytest

import keras_convnext as kc
from helpers import TINY_ARCH
from keras_convnext import training

TINY_DEPTHS = {"depths": (1, 2, 5, 1), "dims": (8, 16, 24, 32)}


def _tiny_model(**kwargs):
    return kc.ConvNeXt(**{**TINY_ARCH, **kwargs}, input_shape=(32, 32, 3), classes=4)


def _values(model):
    return {v.path: keras.ops.convert_to_numpy(v).copy() for v in model.trainable_variables}


def _apply(optimizer, model, gradients):
    optimizer.apply(gradients, model.trainable_variables)


def test_weight_decay_shrinks_kernels_only_and_leaves_excluded_variables_untouched():
    model = _tiny_model()
    optimizer = training.LayerwiseAdamW(learning_rate=0.1, weight_decay=0.5)
    before = _values(model)
    # Zero gradients: Adam's step is exactly 0, so only the decoupled weight decay can move a variable.
    _apply(optimizer, model, [np.zeros(v.shape, "float32") for v in model.trainable_variables])
    after = _values(model)
    decayed = [path for path in before if path.endswith("/kernel")]
    excluded = [path for path in before if not path.endswith("/kernel")]
    assert {p.rsplit("/", 1)[-1] for p in excluded} == {"bias", "gamma", "beta"}
    for path in excluded:
        np.testing.assert_array_equal(after[path], before[path], err_msg=path)
    for path in decayed:
        np.testing.assert_allclose(after[path], before[path] * (1 - 0.1 * 0.5), rtol=1e-6, err_msg=path)


def test_without_multipliers_or_exclusions_it_equals_keras_adamw():
    keras.utils.set_random_seed(0)
    ours, reference = _tiny_model(), _tiny_model()
    reference.set_weights(ours.get_weights())
    ours_opt = training.LayerwiseAdamW(learning_rate=0.01, weight_decay=0.1, epsilon=1e-7, no_weight_decay=())
    reference_opt = keras.optimizers.AdamW(learning_rate=0.01, weight_decay=0.1, epsilon=1e-7)
    rng = np.random.default_rng(0)
    for _ in range(3):
        grads = [rng.normal(size=v.shape).astype("float32") for v in ours.trainable_variables]
        _apply(ours_opt, ours, [keras.ops.convert_to_tensor(g) for g in grads])
        _apply(reference_opt, reference, [keras.ops.convert_to_tensor(g) for g in grads])
    for a, b in zip(ours.trainable_variables, reference.trainable_variables):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=1e-6, err_msg=a.path)


def _expected_tiny_groups(path):
    """ConvNeXt's official grouping written out for Tiny (3, 3, 9, 3): stage 3 in threes gives 3 groups."""
    layer = path.split("/")[0]
    if layer == "stem":
        return 0
    if layer.startswith("stage_0_block"):
        return 1
    if layer.startswith(("stage_1_",)):
        return 2
    if layer == "stage_2_downsample":
        return 3
    if layer.startswith("stage_2_block_"):
        return 3 + int(layer.rsplit("_", 1)[-1]) // 3
    if layer.startswith("stage_3_"):
        return 6
    return 7


def test_layer_groups_of_tiny_follow_the_official_grouping():
    model = kc.ConvNeXtTiny(input_shape=(32, 32, 3))  # the grouping reads layer names only
    groups = training.layer_groups(model)
    assert len(groups) == len(model.weights)
    for path, group in groups.items():
        assert group == _expected_tiny_groups(path), path
    multipliers = training.layer_decay_multipliers(model, 0.8)
    assert multipliers["head_dense/kernel"] == 1.0 and multipliers["head_layernorm/gamma"] == 1.0
    assert multipliers["stage_3_downsample/stage_3_downsample_conv/kernel"] == pytest.approx(0.8)
    assert multipliers["stage_2_block_8/stage_2_block_8_pointwise_2/kernel"] == pytest.approx(0.8**2)
    assert multipliers["stem/stem_conv/bias"] == pytest.approx(0.8**7)


def test_layer_groups_generalise_to_any_depth_and_to_isotropic_models():
    groups = training.layer_groups(kc.ConvNeXt(**TINY_DEPTHS, input_shape=(32, 32, 3), classes=3))
    by_layer = {path.split("/")[0]: group for path, group in groups.items()}
    # Stage 3 has 5 blocks: blocks 0-2 share group 3, blocks 3-4 group 4; stage 4 is then group 5, head 6.
    assert [by_layer[f"stage_2_block_{b}"] for b in range(5)] == [3, 3, 3, 4, 4]
    assert by_layer["stage_3_downsample"] == by_layer["stage_3_block_0"] == 5
    assert by_layer["head_dense"] == 6 and by_layer["stem"] == 0
    assert by_layer["stage_1_downsample"] == by_layer["stage_1_block_1"] == 2
    isotropic = kc.ConvNeXt(depths=(3,), dims=(16,), stem_patch_size=16, stem_norm=False,
                            input_shape=(32, 32, 3), classes=3)
    by_layer = {path.split("/")[0]: group for path, group in training.layer_groups(isotropic).items()}
    assert [by_layer[f"stage_0_block_{b}"] for b in range(3)] == [1, 2, 3]
    assert by_layer["stem"] == 0 and by_layer["head_dense"] == 4


def test_the_multiplier_scales_the_step_inside_the_optimizer():
    model = _tiny_model()
    multipliers = training.layer_decay_multipliers(model, 0.5)
    optimizer = training.LayerwiseAdamW(learning_rate=0.01, weight_decay=0.0, learning_rate_multipliers=multipliers)
    before = _values(model)
    # A first Adam step with gradient g moves each entry by lr * multiplier * g / (|g| + eps), i.e. by the
    # scaled learning rate whatever g's size: scaling the gradient instead would change nothing.
    _apply(optimizer, model, [np.full(v.shape, 3.0, "float32") for v in model.trainable_variables])
    after = _values(model)
    for path in before:
        step = before[path] - after[path]
        np.testing.assert_allclose(step, 0.01 * multipliers[path], rtol=1e-4, err_msg=path)
    assert len({round(m, 6) for m in multipliers.values()}) == 6  # depths (1, 1, 2, 1): groups 0..5


def test_optimizer_round_trips_through_its_config_and_rejects_bad_values():
    optimizer = training.LayerwiseAdamW(1e-3, weight_decay=0.02, learning_rate_multipliers={"a/kernel": 0.5})
    clone = training.LayerwiseAdamW.from_config(optimizer.get_config())
    assert clone.decoupled_weight_decay == 0.02 and clone.learning_rate_multipliers == {"a/kernel": 0.5}
    assert clone.no_weight_decay == ("bias", "gamma", "beta")
    with pytest.raises(ValueError, match="weight_decay must be a float >= 0"):
        training.LayerwiseAdamW(weight_decay=-1)
    with pytest.raises(ValueError, match="learning_rate_multipliers must be >= 0"):
        training.LayerwiseAdamW(learning_rate_multipliers={"x": -0.1})
    with pytest.raises(ValueError, match=r"layer_decay must be in \(0, 1\]"):
        training.layer_decay_multipliers(_tiny_model(), 1.5)


def test_warmup_then_cosine_values_at_chosen_steps():
    schedule = training.warmup_cosine(1e-3, total_steps=110, warmup_steps=10, min_learning_rate=1e-5)
    value = lambda step: float(keras.ops.convert_to_numpy(schedule(step)))  # noqa: E731
    assert value(0) == pytest.approx(0.0, abs=1e-12)
    assert value(5) == pytest.approx(5e-4)
    assert value(10) == pytest.approx(1e-3)
    assert value(60) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5, rel=1e-5)  # half way through the cosine
    assert value(35) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 0.25)), rel=1e-5)
    assert value(110) == pytest.approx(1e-5, rel=1e-4)
    assert value(500) == pytest.approx(1e-5, rel=1e-4)
    with pytest.raises(ValueError, match="warmup_steps must be an integer in"):
        training.warmup_cosine(1e-3, total_steps=10, warmup_steps=10)


def test_recipe_optimizer_uses_the_schedule_in_fit():
    model = _tiny_model()
    optimizer = training.recipe_optimizer(model, learning_rate=1e-3, total_steps=4, warmup_steps=2)
    model.compile(optimizer=optimizer, loss=training.recipe_loss(0.1))
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    y = np.eye(4, dtype="float32")[[0, 1, 2, 3]]
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == 2
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(1e-3)


@pytest.mark.fast_tier_backend("tensorflow")  # Keras' EMA swap; the full tier runs it on every backend
def test_ema_weights_differ_from_raw_ones_and_swap_in_and_out(tmp_path):
    keras.utils.set_random_seed(0)
    model = _tiny_model()
    optimizer = training.recipe_optimizer(model, learning_rate=1e-2, total_steps=6, use_ema=True, ema_momentum=0.9)
    model.compile(optimizer=optimizer, loss=training.recipe_loss(0.0))
    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    y = np.eye(4, dtype="float32")[np.arange(8) % 4]
    for _ in range(6):  # train_on_batch: fit() itself ends by copying the EMA into the model, as Keras does
        model.train_on_batch(x, y)
    raw = _values(model)
    with training.ema_weights(model):
        ema = _values(model)
        ema_predictions = model.predict(x, verbose=0)
    assert any(not np.allclose(raw[p], ema[p]) for p in raw)
    for path, value in _values(model).items():
        np.testing.assert_array_equal(value, raw[path], err_msg=path)  # swapped back exactly
    path = training.save_ema_weights(model, tmp_path / "ema.weights.h5")
    fresh = _tiny_model()
    fresh.load_weights(path)
    np.testing.assert_allclose(fresh.predict(x, verbose=0), ema_predictions, atol=1e-6)
    assert not np.allclose(model.predict(x, verbose=0), ema_predictions, atol=1e-6)


def test_ema_helpers_refuse_a_model_without_ema():
    model = _tiny_model()
    model.compile(optimizer="adam", loss="mse")
    with pytest.raises(ValueError, match="keeps no EMA weights"):
        with training.ema_weights(model):
            pass


def test_replace_head_keeps_the_backbone_and_scales_the_new_head():
    keras.utils.set_random_seed(0)
    model = _tiny_model()
    new = training.replace_head(model, classes=7, head_init_scale=0.001)
    assert new.output_shape == (None, 7)
    assert new.get_layer("stage_2_block_1") is model.get_layer("stage_2_block_1")
    kernel = keras.ops.convert_to_numpy(new.get_layer("head_dense").kernel)
    assert 0 < np.std(kernel) < 0.02 * 0.01
    probs = new.predict(np.zeros((1, 32, 32, 3)), verbose=0)
    np.testing.assert_allclose(probs, 1 / 7, atol=1e-3)  # a near-zero head starts from uniform predictions
    with pytest.raises(ValueError, match="include_top=True"):
        training.replace_head(kc.ConvNeXt(**TINY_ARCH, include_top=False, input_shape=(32, 32, 3)), 3)


def test_freeze_stages_then_unfreeze():
    model = _tiny_model()
    training.freeze_stages(model, 2)
    frozen = {layer.name for layer in model.layers if not layer.trainable}
    assert frozen == {"stem", "stage_0_block_0", "stage_1_downsample", "stage_1_block_0"}
    frozen_paths = {v.path for v in model.non_trainable_variables}
    assert "stem/stem_conv/kernel" in frozen_paths and "stage_2_block_0/stage_2_block_0_pointwise_1/kernel" not in frozen_paths
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    before = keras.ops.convert_to_numpy(model.get_layer("stem").weights[0]).copy()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    model.fit(x, np.arange(4), epochs=1, verbose=0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.get_layer("stem").weights[0]), before)
    training.unfreeze(model)
    assert all(layer.trainable for layer in model.layers)
    with pytest.raises(ValueError, match=r"stages must be an integer in \[0, 4\]"):
        training.freeze_stages(model, 5)
