"""``fit`` lowers the loss (float32 and mixed precision, plain and with the recipe), MixUp/CutMix, remat."""

import keras
import numpy as np
import pytest

import keras_convnext as kc
from helpers import BACKEND, TINY_ARCH, loss_and_gradients, perturb
from keras_convnext import training


def _batch(rng, n=8):
    images = rng.uniform(0, 255, (n, 32, 32, 3)).astype("float32")
    labels = np.arange(n) % 4
    return images, labels


def _fit_and_evaluate(model, images, labels, steps):
    model.compile(optimizer=keras.optimizers.AdamW(2e-3), loss="sparse_categorical_crossentropy")
    before = model.evaluate(images, labels, verbose=0)
    history = model.fit(images, labels, batch_size=len(images), epochs=steps, verbose=0)
    after = model.evaluate(images, labels, verbose=0)
    return before, history.history["loss"], after


@pytest.mark.large
def test_fit_lowers_the_loss_on_a_tiny_batch(rng):
    keras.utils.set_random_seed(0)
    model = kc.ConvNeXt(**TINY_ARCH, input_shape=(32, 32, 3), classes=4, drop_path_rate=0.1)
    images, labels = _batch(rng)
    before, losses, after = _fit_and_evaluate(model, images, labels, steps=8)
    assert np.all(np.isfinite(losses))
    assert after < before * 0.8, (before, after)


# The fast tier trains under mixed_bfloat16 in test_train_cli (the train command's --mixed-precision run).
@pytest.mark.large
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_builds_predicts_and_trains(rng, policy):
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    model = kc.ConvNeXt(**TINY_ARCH, input_shape=(32, 32, 3), classes=4)
    block = model.get_layer("stage_2_block_1")
    assert block.compute_dtype == policy.split("_")[1] and block.variable_dtype == "float32"
    images, labels = _batch(rng)
    probs = model.predict(images, verbose=0)
    assert probs.dtype == np.float32 and np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-3)
    before, losses, after = _fit_and_evaluate(model, images, labels, steps=3)
    assert np.all(np.isfinite(losses)) and np.isfinite(after)
    assert after < before, (BACKEND, policy, before, after)


def _one_hot_batches(rng, n=8, batch=4):
    import tensorflow as tf

    images = rng.uniform(0, 255, (n, 32, 32, 3)).astype("float32")
    labels = np.eye(4, dtype="float32")[np.arange(n) % 4]
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch)


# once: the mixing runs inside tf.data, where Keras' preprocessing layers use TensorFlow whatever KERAS_BACKEND is.
@pytest.mark.once
@pytest.mark.parametrize(
    "mixup, cutmix", [pytest.param(0.8, 0.0, marks=pytest.mark.large), pytest.param(0.0, 1.0, marks=pytest.mark.large), (0.8, 1.0)]
)
def test_mixup_and_cutmix_batches_keep_label_sums_of_one(rng, mixup, cutmix):
    mix = training.batch_mixing(mixup_alpha=mixup, cutmix_alpha=cutmix, seed=1)
    augment = training.image_augmentation(seed=1)
    mixed_any = False
    for images, labels in _one_hot_batches(rng, n=32).map(augment).map(mix):
        labels = labels.numpy()
        np.testing.assert_allclose(labels.sum(axis=-1), 1.0, atol=1e-6)
        assert images.shape == (4, 32, 32, 3) and labels.min() >= 0
        mixed_any |= bool(np.any((labels > 0) & (labels < 1)))
    assert mixed_any  # labels really were mixed, not passed through


def test_rand_augment_traces_into_a_small_tf_data_graph_with_keras_equalization(rng):
    """Keras 3.15's Equalization unrolls 256 bins per channel under JAX even inside tf.data (23,000 ops, 15 s)."""
    import tensorflow as tf

    augment = training.image_augmentation(flip=False, rand_augment=True, random_erasing=0, seed=1)
    graph = tf.function(augment).get_concrete_function(tf.TensorSpec((4, 32, 32, 3)), tf.TensorSpec((4, 4))).graph
    assert len(graph.get_operations()) < 5000
    images = rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    ours = tf.function(lambda x: training.augment.BincountEqualization()(x))(images)
    keras_own = tf.function(lambda x: keras.layers.Equalization()(x))(images)
    np.testing.assert_array_equal(ours.numpy(), keras_own.numpy())


def test_batch_mixing_is_off_when_both_are_zero_and_rejects_negative_values():
    assert training.batch_mixing(mixup_alpha=0, cutmix_alpha=0) is None
    with pytest.raises(ValueError, match="mixup_alpha must be >= 0"):
        training.batch_mixing(mixup_alpha=-1)


@pytest.mark.fast_tier_backend("torch")  # MixUp/CutMix are tf.data maps; fit on each backend is tested elsewhere
@pytest.mark.parametrize("policy", ["float32", pytest.param("mixed_bfloat16", marks=pytest.mark.large)])
def test_recipe_fit_with_mixing_lowers_the_loss(rng, policy):
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    model = kc.ConvNeXt(**TINY_ARCH, input_shape=(32, 32, 3), classes=4, drop_path_rate=0.1)
    data = _one_hot_batches(rng, n=8, batch=8)
    model.compile(
        optimizer=training.recipe_optimizer(model, learning_rate=2e-3, total_steps=12, warmup_steps=2, layer_decay=0.8),
        loss=training.recipe_loss(0.1),
    )
    before = model.evaluate(data, verbose=0)
    mix = training.batch_mixing(mixup_alpha=0.2, cutmix_alpha=0.0, seed=0)
    history = model.fit(data.map(mix), epochs=12, verbose=0)
    after = model.evaluate(data, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert after < before * 0.9, (policy, before, after)


def _loss_and_gradients(model, images, labels):
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    return loss_and_gradients(model, images, lambda outputs: loss_fn(labels, outputs))


def test_gradient_checkpointing_per_stage_gives_the_same_loss_and_gradients(rng):
    images = rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    labels = np.arange(4) % 4
    plain = kc.ConvNeXt(**TINY_ARCH, input_shape=(32, 32, 3), classes=4)
    scope = training.checkpoint_stages((1, 2))
    assert "stage_1_block_0" in scope.layer_names and "stage_2_block_1" in scope.layer_names
    assert not any(name in scope.layer_names for name in ("stage_0_block_0", "stage_3_block_0", "stage_1_downsample"))
    with scope:
        checkpointed = kc.ConvNeXt(**TINY_ARCH, input_shape=(32, 32, 3), classes=4)
    checkpointed.set_weights(perturb(plain).get_weights())
    loss, grads = _loss_and_gradients(plain, images, labels)
    remat_loss, remat_grads = _loss_and_gradients(checkpointed, images, labels)
    assert remat_loss == pytest.approx(loss, rel=1e-6)
    for variable, g, h in zip(plain.trainable_variables, grads, remat_grads):
        np.testing.assert_allclose(h, g, rtol=1e-4, atol=1e-6, err_msg=variable.path)


# Deeper than any ConvNeXt stage (27 blocks): a stage of any depth is checkpointed whole.
DEEP_STAGE = 66


def _block_calls_in_one_training_step(model, images, labels):
    """{block name: how many times its ``call`` ran} in one forward and backward pass; 2 means recomputed."""
    calls = {}
    for layer in model.layers:
        if layer.name.startswith("stage_") and "_block_" in layer.name:
            def counted(*args, _call=layer.call, _name=layer.name, **kwargs):
                calls[_name] = calls.get(_name, 0) + 1
                return _call(*args, **kwargs)

            layer.call = counted
    _loss_and_gradients(model, images, labels)
    return calls


def _jax_checkpoints_in_the_gradient(model, images):
    """How many ``jax.checkpoint`` (remat) calls the gradient's jaxpr makes: JAX traces a checkpointed block once
    and replays it in the backward pass from that call, so the count is the number of blocks recomputed."""
    import jax

    non_trainable = [v.value for v in model.non_trainable_variables]

    def loss(trainable):
        outputs, _ = model.stateless_call(trainable, non_trainable, images, training=True)
        return keras.ops.sum(outputs)

    jaxpr = jax.make_jaxpr(jax.grad(loss))([v.value for v in model.trainable_variables])
    return sum(equation.primitive.name in ("remat", "remat2", "checkpoint") for equation in jaxpr.jaxpr.eqns)


def test_every_block_of_the_checkpointed_stages_is_recomputed_in_backward_and_no_other(rng):
    images = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    labels = np.arange(2) % 4
    # JAX traces the deep stage's gradient in 20 s; its test of any depth is the name check below.
    depth = 2 if BACKEND == "jax" else DEEP_STAGE
    with training.checkpoint_stages((0, 2)):
        model = kc.ConvNeXt(**{**TINY_ARCH, "depths": (1, 1, depth, 1)}, input_shape=(32, 32, 3), classes=4)
    checkpointed = {"stage_0_block_0"} | {f"stage_2_block_{i}" for i in range(depth)}
    if BACKEND == "jax":
        assert _jax_checkpoints_in_the_gradient(model, images) == len(checkpointed)
        plain = kc.ConvNeXt(**TINY_ARCH, input_shape=(32, 32, 3), classes=4)
        assert _jax_checkpoints_in_the_gradient(plain, images) == 0
        return
    calls = _block_calls_in_one_training_step(model, images, labels)
    assert len(calls) == depth + 3
    assert {name for name, count in calls.items() if count == 2} == checkpointed
    assert {count for name, count in calls.items() if name not in checkpointed} == {1}


def test_the_checkpointed_stages_name_blocks_at_any_depth():
    names = training.checkpoint_stages((2,)).layer_names
    assert all(f"stage_2_block_{i}" in names for i in (0, 26, 63, 64, DEEP_STAGE, 10_000))
    assert not any(name in names for name in ("stage_1_block_0", "stage_3_block_70", "stage_2_downsample", "stage_2", 2))


@pytest.mark.fast_tier_backend("tensorflow")  # the backup's file logic; the full tier runs it on every backend
def test_the_atomic_backup_resumes_after_its_last_epoch_and_refuses_to_train_one_again(tmp_path, rng):
    images, labels = _batch(rng, n=4)

    def compiled():
        keras.utils.set_random_seed(0)
        model = kc.ConvNeXt(**TINY_ARCH, input_shape=(32, 32, 3), classes=4)
        model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="sparse_categorical_crossentropy")
        return model

    first = compiled()
    first.fit(images, labels, epochs=2, verbose=0,
              callbacks=[training.AtomicBackupAndRestore(tmp_path / "backup", delete_checkpoint=False)])
    backup = training.AtomicBackupAndRestore(tmp_path / "backup", delete_checkpoint=False)
    assert backup.completed_epochs() == 2
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == ["epoch_2.weights.h5", "state.json"]
    resumed = compiled()
    with pytest.raises(ValueError, match=r"holds 2 epochs, and fit was about to train epoch 1 again: pass fit\(initial_epoch=2\)"):
        resumed.fit(images, labels, epochs=3, verbose=0, callbacks=[backup])
    history = resumed.fit(images, labels, epochs=3, initial_epoch=backup.completed_epochs(), verbose=0, callbacks=[backup])
    assert history.epoch == [2] and backup.completed_epochs() == 3
    # The optimizer state came back with the weights: two epochs of one step each, then one more.
    assert int(keras.ops.convert_to_numpy(first.optimizer.iterations)) == 2
    assert int(keras.ops.convert_to_numpy(resumed.optimizer.iterations)) == 3
