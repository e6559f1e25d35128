"""FCMAE pretraining (kc.pretraining): the official forward and loss, the masks, the checkpoints, and fit.

The fidelity test compares against ``helpers.fcmae_reference``, the official sparse code's forward written in NumPy
from its source, on an official-layout checkpoint with every parameter random.
"""

import keras
import numpy as np
import pytest

import keras_convnext as kc
from helpers.fcmae_reference import official_fcmae, random_fcmae_state
from helpers.foreign_checkpoints import save
from keras_convnext.applications.model_inputs import IMAGENET_MEAN, IMAGENET_STD
from keras_convnext.pretraining import FCMAE, load_fcmae_checkpoint, patchify, random_patch_mask, unpatchify

DEPTHS, DIMS = (1, 1, 2, 1), (8, 16, 24, 16)
DECODER_DIM, DECODER_DEPTH, PATCH = 16, 2, 32
HEIGHT, WIDTH = 64, 96  # a 2x3 grid of patches


def small_encoder(data_format="channels_last", include_preprocessing=False, **kwargs):
    shape = (HEIGHT, WIDTH, 3) if data_format == "channels_last" else (3, HEIGHT, WIDTH)
    return kc.ConvNeXt(DEPTHS, DIMS, use_grn=True, layer_scale_init_value=None, include_top=False,
                       include_preprocessing=include_preprocessing, input_shape=shape, data_format=data_format, **kwargs)


def small_fcmae(data_format="channels_last", **kwargs):
    return FCMAE(small_encoder(data_format), decoder_dim=DECODER_DIM, decoder_depth=DECODER_DEPTH, patch_size=PATCH,
                 **kwargs)


@pytest.fixture(scope="module")
def official_checkpoint(tmp_path_factory):
    import torch

    state = random_fcmae_state(DEPTHS, DIMS, DECODER_DIM, DECODER_DEPTH, PATCH, np.random.default_rng(0))
    path = tmp_path_factory.mktemp("fcmae") / "convnextv2_small_1k_224_fcmae.pt"
    save({"model": {key: torch.from_numpy(value) for key, value in state.items()}}, path)
    return state, path


@pytest.fixture(scope="module")
def images_and_mask():
    rng = np.random.default_rng(1)
    images = rng.normal(size=(3, HEIGHT, WIDTH, 3)).astype("float32")
    mask = np.array([[1, 0, 0, 1, 1, 0], [0, 1, 1, 1, 0, 0], [1, 1, 0, 1, 0, 1]], "float32")
    return images, mask


def to_layout(images, data_format):
    return images if data_format == "channels_last" else images.transpose(0, 3, 1, 2)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_predictions_and_loss_equal_the_official_sparse_fcmae(official_checkpoint, images_and_mask, data_format):
    state, path = official_checkpoint
    images, mask = images_and_mask
    model = small_fcmae(data_format)
    load_fcmae_checkpoint(model, path)
    outputs = model(to_layout(images, data_format), patch_mask=mask)
    predictions = keras.ops.convert_to_numpy(outputs["predictions"])
    loss = float(keras.ops.convert_to_numpy(model.compute_loss(x=to_layout(images, data_format), y_pred=outputs)))
    given = float(keras.ops.convert_to_numpy(model.reconstruction_loss(to_layout(images, data_format), mask)))

    expected, expected_loss = official_fcmae(state, images, mask, DEPTHS, PATCH)
    scale = np.abs(expected).max()
    assert predictions.shape == expected.shape == (3, 6, PATCH * PATCH * 3)
    assert np.abs(predictions - expected).max() / scale < 1e-4, np.abs(predictions - expected).max() / scale
    assert loss == pytest.approx(expected_loss, rel=1e-4) and given == pytest.approx(expected_loss, rel=1e-4)
    # The batch-wide GRN statistics are the official code's: one image alone gives other predictions.
    alone = keras.ops.convert_to_numpy(model.reconstruct(to_layout(images[:1], data_format), mask[:1]))
    alone_expected, _ = official_fcmae(state, images[:1], mask[:1], DEPTHS, PATCH)
    assert np.abs(alone - alone_expected).max() / scale < 1e-4
    assert np.abs(alone[0] - predictions[0]).max() / scale > 1e-3


def test_pixels_of_removed_patches_reach_no_prediction(official_checkpoint, images_and_mask):
    _, path = official_checkpoint
    images, mask = images_and_mask
    model = small_fcmae()
    load_fcmae_checkpoint(model, path)
    changed = images.copy()
    removed_pixels = unpatchify(np.repeat(mask[..., None], PATCH * PATCH * 3, axis=-1), (2, 3), PATCH)
    changed += 100.0 * keras.ops.convert_to_numpy(removed_pixels) * np.random.default_rng(2).normal(size=images.shape)
    before = keras.ops.convert_to_numpy(model.reconstruct(images, mask))
    after = keras.ops.convert_to_numpy(model.reconstruct(changed, mask))
    assert np.abs(changed - images).max() > 10
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-5 * np.abs(before).max())
    # ...while a kept patch's pixels do reach the predictions.
    kept = images.copy()
    kept[0, :PATCH, PATCH : 2 * PATCH] += 1.0  # patch 1 of image 0 is kept
    assert np.abs(keras.ops.convert_to_numpy(model.reconstruct(kept, mask)) - before).max() > 1e-3


def test_random_masks_remove_the_ratio_of_each_image_at_random_places():
    mask = keras.ops.convert_to_numpy(random_patch_mask(64, 49, 0.6, seed=3))
    assert set(np.unique(mask)) == {0.0, 1.0}
    assert (mask.sum(axis=1) == 49 - int(49 * 0.4)).all()
    assert len({row.tobytes() for row in mask}) == 64
    again = keras.ops.convert_to_numpy(random_patch_mask(64, 49, 0.6, seed=3))
    np.testing.assert_array_equal(again, mask)
    assert 0.5 < mask.mean(axis=0).min() and mask.mean(axis=0).max() < 0.7 or mask.mean(axis=0).std() < 0.1


def test_patchify_orders_a_patch_row_by_row_with_the_colours_innermost():
    images = np.arange(2 * 64 * 96 * 3, dtype="float32").reshape(2, 64, 96, 3)
    patches = keras.ops.convert_to_numpy(patchify(images, 32))
    assert patches.shape == (2, 6, 3072)
    np.testing.assert_array_equal(patches[1, 4, :6], images[1, 32, 32:34].reshape(-1))  # patch (1, 1), first row
    np.testing.assert_array_equal(patches[1, 4, 96:99], images[1, 33, 32])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(unpatchify(patches, (2, 3), 32)), images)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(patchify(images.transpose(0, 3, 1, 2), 32, "channels_first")),
                                  patches)


def test_fit_lowers_the_reconstruction_loss():
    keras.utils.set_random_seed(0)
    model = FCMAE(small_encoder(include_preprocessing=True), decoder_dim=DECODER_DIM, decoder_depth=1, seed=0)
    model.compile(optimizer=keras.optimizers.AdamW(3e-3))
    rng = np.random.default_rng(0)
    # Smooth images: colour gradients that a masked patch's neighbours predict.
    ramp = np.linspace(0, 1, WIDTH)[None, None, :, None] * rng.uniform(0, 255, (8, 1, 1, 3))
    images = (ramp + np.linspace(0, 1, HEIGHT)[None, :, None, None] * rng.uniform(0, 255, (8, 1, 1, 3))) / 2
    history = model.fit(images.astype("float32"), batch_size=4, epochs=12, verbose=0).history["loss"]
    assert np.isfinite(history).all()
    assert np.mean(history[-3:]) < 0.85 * np.mean(history[:2]), history


def test_the_targets_are_the_encoder_s_normalised_pixels():
    model = FCMAE(small_encoder(include_preprocessing=True), decoder_dim=DECODER_DIM, decoder_depth=1)
    images = np.random.default_rng(4).uniform(0, 255, (2, HEIGHT, WIDTH, 3)).astype("float32")
    normalised = (images / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.patch_targets(images)),
                               keras.ops.convert_to_numpy(patchify(normalised.astype("float32"), 32)), atol=1e-5)


def test_the_official_encoder_loads_into_any_builder_and_a_dense_copy_loads_alike(official_checkpoint, images_and_mask,
                                                                                    tmp_path):
    import torch

    state, path = official_checkpoint
    images, mask = images_and_mask
    model = small_fcmae()
    load_fcmae_checkpoint(model, path)
    encoder = small_encoder(weights=str(path))
    for ours, theirs in zip(model.encoder.weights, encoder.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(theirs))

    # The same model with its sparse layers made dense (the official remap): the keys of a dense-masked port.
    dense = {}
    for key, value in state.items():
        key = key.replace(".ln.", ".").replace(".linear.", ".")
        if key.endswith(".kernel"):
            key, value = key.removesuffix(".kernel") + ".weight", kc.weights.layouts.minkowski_to_dense(value)
        dense[key] = np.ascontiguousarray(value)
    dense_path = save({"model": {k: torch.from_numpy(v) for k, v in dense.items()}}, tmp_path / "dense.pt")
    other = small_fcmae()
    load_fcmae_checkpoint(other, dense_path)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(other.reconstruct(images, mask)),
                                  keras.ops.convert_to_numpy(model.reconstruct(images, mask)))


def test_a_checkpoint_that_does_not_fit_changes_nothing(official_checkpoint):
    _, path = official_checkpoint
    model = FCMAE(small_encoder(), decoder_dim=DECODER_DIM, decoder_depth=1)
    before = [keras.ops.convert_to_numpy(v).copy() for v in model.weights]
    with pytest.raises(ValueError, match=r"decoder_depth 1.*Unexpected in it: decoder_block_1"):
        load_fcmae_checkpoint(model, path)
    wide = FCMAE(small_encoder(), decoder_dim=32, decoder_depth=2)
    with pytest.raises(ValueError, match=r"mask_token has shape \(16,\) in the checkpoint and \(32,\) in the model \(decoder_dim 32"):
        load_fcmae_checkpoint(wide, path)
    for old, variable in zip(before, model.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), old)


def test_bad_encoders_masks_and_sizes_are_refused_by_name():
    # timm's FCMAE encoder tags build the right kind of encoder (here without downloading their weights).
    assert FCMAE(encoder=kc.create_model("convnextv2_atto.fcmae", weights=None), decoder_dim=16).patch_size == 32
    with pytest.raises(ValueError, match="include_top=False, pooling=None"):
        FCMAE(small_encoder(pooling="avg"))
    with pytest.raises(ValueError, match="patchify stem.*'overlap'"):
        FCMAE(kc.ConvNeXt(DEPTHS, DIMS, stem_type="overlap", include_top=False, input_shape=(64, 64, 3)))
    with pytest.raises(ValueError, match="patch_size must be the encoder's total stride, 32"):
        FCMAE(small_encoder(), patch_size=16)
    with pytest.raises(ValueError, match=r"mask_ratio must be in \(0, 1\)"):
        FCMAE(small_encoder(), mask_ratio=1.0)
    model = small_fcmae()
    with pytest.raises(ValueError, match=r"mask must have shape \(images, patches\) = \(1, 6\)"):
        model.reconstruct(np.zeros((1, HEIGHT, WIDTH, 3), "float32"), np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match="known multiples of the patch size 32; got 64x80"):
        model.reconstruct(np.zeros((1, 64, 80, 3), "float32"), np.zeros((1, 4), "float32"))


def test_weights_save_and_load_and_the_config_rebuilds_the_model(tmp_path, images_and_mask):
    images, mask = images_and_mask
    model = small_fcmae(seed=5)
    model.save_weights(tmp_path / "fcmae.weights.h5")
    rebuilt = FCMAE.from_config(model.get_config())
    rebuilt.load_weights(tmp_path / "fcmae.weights.h5")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(rebuilt.reconstruct(images, mask)),
                                  keras.ops.convert_to_numpy(model.reconstruct(images, mask)))
    assert rebuilt.get_config()["decoder_depth"] == DECODER_DEPTH and rebuilt.seed == 5
    model.save(tmp_path / "fcmae.keras")
    loaded = keras.saving.load_model(tmp_path / "fcmae.keras")
    assert isinstance(loaded, FCMAE)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded.reconstruct(images, mask)),
                                  keras.ops.convert_to_numpy(model.reconstruct(images, mask)))


@pytest.mark.once  # plain PyTorch, whatever the Keras backend
def test_the_benchmark_s_pytorch_baseline_computes_the_official_fcmae(official_checkpoint, images_and_mask):
    import torch

    from keras_convnext.benchmarks.torch_fcmae import DenseMaskedFCMAE, random_mask
    from keras_convnext.weights.layouts import minkowski_to_dense

    state, _ = official_checkpoint
    images, mask = images_and_mask
    port = DenseMaskedFCMAE(DEPTHS, DIMS, DECODER_DIM, DECODER_DEPTH, PATCH)
    expected_shapes = port.state_dict()
    dense = {}
    for key, value in state.items():
        key = key.replace(".ln.", ".").replace(".linear.", ".")
        if key.endswith(".kernel"):
            key, value = key.removesuffix(".kernel") + ".weight", minkowski_to_dense(value)
        dense[key] = torch.from_numpy(np.ascontiguousarray(value)).reshape(expected_shapes[key].shape)
    port.load_state_dict(dense)
    with torch.no_grad():
        loss, predictions, _ = port(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()), torch.from_numpy(mask))
    expected, expected_loss = official_fcmae(state, images, mask, DEPTHS, PATCH)
    assert np.abs(predictions.numpy() - expected).max() / np.abs(expected).max() < 1e-4
    assert float(loss) == pytest.approx(expected_loss, rel=1e-4)
    assert (random_mask(4, 49, 0.6).sum(dim=1) == 30).all()
