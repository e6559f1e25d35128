"""DINOv3 ConvNeXt: checkpoints of transformers, the original code and timm give transformers' outputs, on the
active backend (pooled embedding, normalised patch tokens, raw stage maps)."""

import keras
import numpy as np
import pytest

import keras_convnext as kc
from helpers.foreign_checkpoints import SMALL, dinov3_model, dinov3_outputs, dinov3_to_original, dinov3_to_timm, save

# Of each output's largest value: about 9x the worst measured on the three backends (1.34e-6 at scale 3.06, the
# patch tokens at 256x320), so that a regression of 100x fails.
RELATIVE_TOLERANCE = 4e-6


@pytest.fixture(scope="module")
def reference():
    return dinov3_model()


def _backbone(weights, data_format=None):
    return kc.ConvNeXt(SMALL["depths"], SMALL["hidden_sizes"], include_top=False, pooling="avg",
                       include_preprocessing=False, weights=weights, data_format=data_format,
                       input_shape=(3, None, None) if data_format == "channels_first" else (None, None, 3))


def _eupe_original(state):
    """An EUPE-ConvNeXt ``.pt`` (facebook/EUPE-ConvNeXt-T): the facebookresearch layout plus the distillation heads
    (``projectors.*``) and per-stage feature norms (``norms.*``), both of which timm drops; random values, so that
    loading one of them by mistake changes the weights."""
    import torch

    generator = torch.Generator().manual_seed(0)
    out = {key: value for key, value in dinov3_to_original(state).items() if not key.startswith("norms.")}
    for stage, width in enumerate(SMALL["hidden_sizes"]):
        out[f"norms.{stage}.weight"] = torch.randn(width, generator=generator)
        out[f"norms.{stage}.bias"] = torch.randn(width, generator=generator)
    out["projectors.0.mlp.0.weight"] = torch.randn(16, SMALL["hidden_sizes"][-1], generator=generator)
    out["projectors.0.mlp.0.bias"] = torch.randn(16, generator=generator)
    return out


def _state(reference, layout):
    state = {key: value.detach() for key, value in reference.state_dict().items()}
    layouts = {"huggingface": lambda: state, "original": lambda: dinov3_to_original(state),
               "timm": lambda: dinov3_to_timm(state), "eupe_original": lambda: _eupe_original(state)}
    return layouts[layout]()


@pytest.fixture(scope="module")
def hugging_face_backbone(reference, tmp_path_factory):
    return _backbone(str(save(_state(reference, "huggingface"), tmp_path_factory.mktemp("dinov3") / "model.safetensors")))


@pytest.mark.parametrize("height, width", [(224, 224), pytest.param(256, 320, marks=pytest.mark.large)])
def test_outputs_equal_transformers_at_square_and_non_square_sizes(rng, reference, hugging_face_backbone, height, width):
    images = rng.normal(size=(2, height, width, 3)).astype("float32")
    expected = dinov3_outputs(reference, images)
    got = {name: keras.ops.convert_to_numpy(value) for name, value in kc.dense_features(hugging_face_backbone)(images).items()}
    assert sorted(got) == sorted(expected)
    assert got["patch_tokens"].shape == (2, height // 32, width // 32, SMALL["hidden_sizes"][-1])
    for name, value in expected.items():
        delta = float(np.abs(got[name] - value).max())
        print(f"{height}x{width} {name}: max |delta| {delta:.2e} (scale {np.abs(value).max():.2f})")
        assert delta <= RELATIVE_TOLERANCE * max(1.0, float(np.abs(value).max())), (name, delta)


@pytest.mark.parametrize("layout, filename", [("original", "dinov3.pth"), ("timm", "model.safetensors"),
                                              ("eupe_original", "EUPE-ConvNeXt-T.pt")])
def test_the_original_and_timm_layouts_load_the_same_weights(tmp_path, reference, hugging_face_backbone, layout, filename):
    backbone = _backbone(str(save(_state(reference, layout), tmp_path / filename)))
    expected = hugging_face_backbone.get_weights()
    assert len(expected) == len(backbone.weights) > 30
    for got, want in zip(backbone.get_weights(), expected):
        np.testing.assert_array_equal(got, want)


@pytest.mark.large
def test_channels_first_gives_the_same_channels_last_patch_tokens(tmp_path, rng, reference):
    path = save({key: value.detach() for key, value in reference.state_dict().items()}, tmp_path / "model.safetensors")
    images = rng.normal(size=(1, 64, 96, 3)).astype("float32")
    last = kc.dense_features(_backbone(str(path)))(images)
    first = kc.dense_features(_backbone(str(path), "channels_first"))(images.transpose(0, 3, 1, 2))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(first["patch_tokens"]),
                               keras.ops.convert_to_numpy(last["patch_tokens"]), atol=1e-4)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(first["embedding"]),
                               keras.ops.convert_to_numpy(last["embedding"]), atol=1e-4)


def test_dense_features_refuses_a_model_without_the_pooled_norm():
    with pytest.raises(ValueError, match="include_top=False, pooling='avg'"):
        kc.dense_features(kc.ConvNeXt((1, 1, 1, 1), (8, 16, 24, 32), include_top=False, input_shape=(64, 64, 3)))


@pytest.mark.large
def test_a_linear_probe_on_the_frozen_patch_tokens_trains_with_fit(rng):
    backbone = kc.ConvNeXt((1, 1, 1, 1), (8, 16, 24, 32), include_top=False, pooling="avg", input_shape=(64, 64, 3))
    features = kc.dense_features(backbone)
    backbone.trainable = False
    probe = keras.Model(features.input, keras.layers.Dense(3, activation="softmax", name="probe")(features.output["patch_tokens"]))
    # One-hot labels: Keras 3.15's torch sparse_categorical_crossentropy fails in backward on (B, h, w, classes)
    # outputs ("grad_input must be contiguous", inside torch's nll_loss).
    probe.compile(optimizer=keras.optimizers.SGD(0.5), loss="categorical_crossentropy")
    frozen = [np.array(w) for w in backbone.get_weights()]
    head = np.array(probe.get_layer("probe").kernel)
    images, labels = rng.uniform(0, 255, (4, 64, 64, 3)).astype("float32"), np.eye(3, dtype="float32")[rng.integers(0, 3, (4, 2, 2))]
    probe.fit(images, labels, epochs=1, batch_size=4, verbose=0)
    assert len(probe.trainable_weights) == 2  # the probe's kernel and bias only
    assert not np.allclose(np.array(probe.get_layer("probe").kernel), head)
    for before, after in zip(frozen, backbone.get_weights()):
        np.testing.assert_array_equal(after, before)
