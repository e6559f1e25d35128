"""CLIP ConvNeXt image towers: the linear and MLP projection heads, OpenAI CLIP's normalisation inside the model,
timm's and open_clip's checkpoints against a NumPy forward of timm's state dict, the presets and their refusals."""

import keras
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.numpy import save_file

import keras_convnext as kc
from helpers.timm_states import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, timm_forward, timm_state, to_open_clip
from keras_convnext.weights import presets, sha256_of

DEPTHS, DIMS = (1, 1, 2, 1), (8, 16, 24, 32)
# The two heads of the CLIP towers: convnext_base's linear projection (640 wide) and convnext_large_mlp's MLP
# (LayerNorm -> 1536 -> GELU -> 768), here at a tiny width.
HEADS = {"projection": {"width": 12, "hidden": None}, "mlp": {"width": 10, "hidden": 20}}
# Max |delta| allowed, as a share of the output's scale: about 10x the worst measured on the three backends (the
# README quotes those), so that a regression of 100x fails. Measured on this CPU: timm projection 1.4e-7, timm MLP
# 2.9e-8, open_clip projection 1.6e-7 (scale 0.58), open_clip MLP 1.8e-8, the preset path 2.1e-6 at scale 4.3.
RELATIVE_TOLERANCE = {"projection": 1.5e-6, "mlp": 3e-7, "preset": 5e-6}


def _tower(head, weights=None, **kwargs):
    return kc.ConvNeXt(DEPTHS, DIMS, classes=HEADS[head]["width"], head_hidden_size=HEADS[head]["hidden"],
                       head_output="embedding", classifier_activation=None, pixel_mean=OPENAI_CLIP_MEAN,
                       pixel_std=OPENAI_CLIP_STD, input_shape=(None, None, 3), weights=weights, **kwargs)


def _state(head, zero_projection_bias=False):
    state = timm_state(DEPTHS, DIMS, HEADS[head]["width"], HEADS[head]["hidden"])
    if zero_projection_bias:  # what timm's checkpoint_filter_fn gives open_clip's bias-less projection
        state["head.fc.bias"] = np.zeros_like(state["head.fc.bias"])
    return state


def _assert_close(got, expected, label, tolerance):
    delta = float(np.abs(keras.ops.convert_to_numpy(got) - expected).max())
    print(f"{label}: max |delta| {delta:.2e} (scale {np.abs(expected).max():.2f})")
    assert delta <= tolerance * max(1.0, float(np.abs(expected).max())), (label, delta)


# One size per head (each new size is a new trace on JAX): the towers' own 256, and a non-square one.
@pytest.mark.parametrize("head, height, width", [("projection", 256, 256), ("mlp", 64, 96)])
def test_a_timm_clip_tower_gives_the_numpy_forward_of_its_state_dict(tmp_path, rng, head, height, width):
    state = _state(head)
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    tower = _tower(head, weights=path)
    assert tower.layers[-1].name == "embedding" and tower.output_shape == (None, HEADS[head]["width"])
    images = rng.uniform(0, 255, (2, height, width, 3)).astype("float32")
    _assert_close(tower(images), timm_forward(state, images, DEPTHS), f"timm {head} {height}x{width}", RELATIVE_TOLERANCE[head])


@pytest.mark.parametrize("head, filename", [("projection", "open_clip_model.safetensors"), ("mlp", "open_clip_pytorch_model.bin")])
def test_an_open_clip_checkpoint_gives_the_tower_with_a_zero_projection_bias(tmp_path, rng, head, filename):
    state = _state(head, zero_projection_bias=True)
    path = tmp_path / filename
    checkpoint = to_open_clip(state)
    if path.suffix == ".safetensors":
        save_file(checkpoint, str(path))
    else:
        torch.save({key: torch.from_numpy(value) for key, value in checkpoint.items()}, str(path))
    assert kc.weights.read_checkpoint(path)[2].name == "open_clip"
    tower = _tower(head, weights=path)
    images = rng.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    _assert_close(tower(images), timm_forward(state, images, DEPTHS), f"open_clip {head}", RELATIVE_TOLERANCE[head])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(tower.get_layer("head_dense").bias), 0.0)


def test_an_mlp_tower_into_a_linear_head_is_refused_naming_the_hidden_layer(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file(_state("mlp"), str(path))
    with pytest.raises(ValueError, match=r"has an MLP head \(head_hidden, 20 units.*build it with head_hidden_size=20"):
        kc.ConvNeXt(DEPTHS, DIMS, classes=HEADS["mlp"]["width"], input_shape=(None, None, 3), weights=path)
    linear = tmp_path / "linear.safetensors"
    save_file(_state("projection"), str(linear))
    with pytest.raises(ValueError, match=r"has a linear head and the model an MLP head \(head_hidden\)"):
        kc.ConvNeXt(DEPTHS, DIMS, classes=HEADS["projection"]["width"], head_hidden_size=20, input_shape=(None, None, 3),
                    weights=linear)


def test_the_mlp_head_folds_for_inference_and_keeps_its_hidden_layer_when_the_classifier_is_replaced(rng):
    tower = _tower("mlp")
    images = rng.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    folded = kc.optimize_for_inference(tower)
    np.testing.assert_allclose(folded.predict(images, verbose=0), tower.predict(images, verbose=0), atol=1e-5)
    classifier = kc.training.replace_head(tower, 3)
    assert [layer.name for layer in classifier.layers][-4:] == ["head_layernorm", "head_hidden", "head_dense", "predictions"]
    assert classifier.get_layer("head_hidden") is tower.get_layer("head_hidden")


@pytest.mark.once
def test_clip_presets_name_their_heads_widths_and_openai_normalisation():
    towers = {name: record for name, record in presets().items() if record.get("output") == "embedding"}
    fine_tuned = {name: record for name, record in presets().items() if ".clip_" in name and name not in towers}
    assert {"convnext_base.clip_laion2b", "convnext_large_mlp.clip_laion2b_augreg", "convnext_xxlarge.clip_laion2b_soup"} <= set(towers)
    assert "convnext_large_mlp.clip_laion2b_soup_ft_in12k_in1k_384" in fine_tuned
    widths = {"convnext_base": 640, "convnext_large_mlp": 768, "convnext_xxlarge": 1024}
    for name, record in {**towers, **fine_tuned}.items():
        assert record["eval"]["mean"] == list(OPENAI_CLIP_MEAN) and record["eval"]["std"] == list(OPENAI_CLIP_STD), name
        assert record["eval"]["input_size"] in (256, 320, 384) and record["eval"]["crop_pct"] == 1.0, name
        # A fine-tune's head: ImageNet-1k, or ImageNet-12k (11821 classes) for timm's ft_in12k tags without in1k.
        fine_tune_classes = 11821 if "ft_in12k" in name and "in1k" not in name else 1000
        assert record["classes"] == (widths[record["variant"]] if name in towers else fine_tune_classes), name
        assert "LAION" in record["license"]
    assert kc.get_variant("convnext_large_mlp").head_hidden_size == 1536
    assert kc.get_variant("convnext_xxlarge").norm_epsilon == 1e-5


@pytest.mark.once
def test_a_clip_tower_preset_builds_an_embedding_model_with_clip_normalisation(weights_server, tmp_path, monkeypatch, rng):
    """The preset mechanism on a small variant: a tower record pointed at convnext_atto weights on a local server."""
    depths, dims, width = (2, 2, 6, 2), (40, 80, 160, 320), 640
    state = timm_state(depths, dims, width)
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    record = presets()["convnext_base.clip_laion2b"]
    monkeypatch.setitem(record, "variant", "convnext_atto")
    monkeypatch.setitem(record, "urls", [weights_server.publish("/timm/clip/model.safetensors", path.read_bytes())])
    monkeypatch.setitem(record, "sha256", sha256_of(path))
    tower = kc.create_model("convnext_atto", weights="convnext_base.clip_laion2b", input_shape=(64, 64, 3))
    assert tower.output_shape == (None, width) and tower.layers[-1].name == "embedding"
    assert kc.create_model("convnext_atto", weights="convnext_base.clip_laion2b").input_shape == (None, 256, 256, 3)
    images = rng.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    _assert_close(tower(images), timm_forward(state, images, depths), "preset tower", RELATIVE_TOLERANCE["preset"])
    # ImageNet's statistics instead of CLIP's would move the embedding far beyond the tolerance.
    imagenet = timm_forward(state, images, depths, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    assert np.abs(keras.ops.convert_to_numpy(tower(images)) - imagenet).max() > 1e-2


@pytest.mark.once
@pytest.mark.parametrize("arguments, message", [
    ({"head_hidden_size": None}, r"head_hidden_size=None builds another architecture \(the preset's: head_hidden_size=1536\)"),
    ({"classes": 10}, r"projecting to 768-dimensional embeddings; build it with classes=768"),
    ({"classifier_activation": "sigmoid"}, r"its output is an embedding with no activation"),
])
def test_a_clip_preset_built_with_another_head_is_refused_before_downloading(arguments, message):
    with pytest.raises(ValueError, match=message):
        kc.create_model("convnext_large_mlp", weights="convnext_large_mlp.clip_laion2b_augreg", **arguments)
    with pytest.raises(ValueError, match=r"holds convnext_large_mlp weights, not convnext_large\b"):
        kc.create_model("convnext_large", weights="convnext_large_mlp.clip_laion2b_augreg")
    with pytest.raises(ValueError, match=r"expects pixel_mean=\(0.48145466, .*head_output='embedding'; build it with "
                                         r"keras_convnext.create_model\('convnext_large_mlp'"):
        kc.ConvNeXt((3, 3, 27, 3), (192, 384, 768, 1536), head_hidden_size=1536, classes=768,
                    weights="convnext_large_mlp.clip_laion2b_augreg")


@pytest.mark.once
def test_predict_refuses_a_tower_preset_and_squash_presets_resize_the_whole_image(rng):
    from keras_convnext.prediction import load_classifier

    with pytest.raises(ValueError, match="is a CLIP image tower: it gives image embeddings, not classes"):
        load_classifier("convnext_base.clip_laion2b")
    record = presets()["convnext_large_mlp.clip_laion2b_soup_ft_in12k_in1k_384"]
    assert record["eval"]["crop_mode"] == "squash"
    image = rng.integers(0, 256, (300, 500, 3)).astype("uint8")
    expected = np.asarray(Image.fromarray(image).resize((384, 384), Image.Resampling.BICUBIC), np.float32)
    np.testing.assert_array_equal(kc.preprocess_image(image, "convnext_large_mlp.clip_laion2b_soup_ft_in12k_in1k_384"), expected)
    with pytest.raises(ValueError, match=r"crop_mode 'zoom'; expected one of \('center', 'squash'\)"):
        kc.preprocess_image(image, {**record["eval"], "crop_mode": "zoom"})
