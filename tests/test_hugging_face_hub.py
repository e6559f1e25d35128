"""``create_model("hf-hub:<owner>/<name>")``: a Hugging Face repository served from 127.0.0.1 (``HF_ENDPOINT``), its
``config.json`` building the model and its weights loading, against transformers' own outputs."""

import io
import json

import keras
import numpy as np
import pytest
import torch

import keras_convnext as kc
from helpers.foreign_checkpoints import hugging_face_logits, hugging_face_model


@pytest.fixture
def hub(weights_server, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_CONVNEXT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_ENDPOINT", weights_server.url)
    return weights_server


def _publish(hub, tmp_path, repo, model, weights_file):
    """``model.save_pretrained`` (config.json with its ``architectures``, model.safetensors), served as ``repo``; with
    ``pytorch_model.bin`` the weights are served in that older form only."""
    folder = tmp_path / repo.replace("/", "--")
    model.save_pretrained(folder)
    hub.publish(f"/{repo}/resolve/main/config.json", (folder / "config.json").read_bytes())
    if weights_file == "model.safetensors":
        body = (folder / "model.safetensors").read_bytes()
    else:
        buffer = io.BytesIO()
        torch.save({key: value.contiguous() for key, value in model.state_dict().items()}, buffer)
        body = buffer.getvalue()
    hub.publish(f"/{repo}/resolve/main/{weights_file}", body)


# V1 with safetensors; V2 with only pytorch_model.bin, as older repositories have (the .safetensors URL is a 404).
@pytest.mark.parametrize("version, weights_file", [("V1", "model.safetensors"), ("V2", "pytorch_model.bin")])
def test_a_hub_id_builds_the_repository_s_model_with_its_weights(hub, tmp_path, rng, version, weights_file):
    reference = hugging_face_model(version, classes=7)
    repo = f"facebook/convnext{'v2' if version == 'V2' else ''}-small-test"
    _publish(hub, tmp_path, repo, reference, weights_file)
    model = kc.create_model(f"hf-hub:{repo}", include_preprocessing=False, classifier_activation=None,
                            input_shape=(64, 64, 3))
    assert model.output_shape == (None, 7)
    images = rng.normal(size=(2, 64, 64, 3)).astype("float32")
    expected = hugging_face_logits(reference, images)
    delta = float(np.abs(keras.ops.convert_to_numpy(model(images)) - expected).max())
    assert delta <= 1e-4 * max(1.0, float(np.abs(expected).max())), delta
    untrained = kc.create_model(f"hf-hub:{repo}", weights=None, input_shape=(64, 64, 3))
    assert untrained.count_params() == model.count_params()


@pytest.mark.once  # which builder is chosen depends on no backend
def test_a_hub_id_of_a_known_shape_builds_that_variant(hub, tmp_path):
    reference = hugging_face_model("V1", arch={"depths": [2, 2, 6, 2], "hidden_sizes": [40, 80, 160, 320]}, classes=3)
    _publish(hub, tmp_path, "facebook/convnext-atto-test", reference, "model.safetensors")
    model = kc.create_model("hf-hub:facebook/convnext-atto-test", input_shape=(32, 32, 3))
    assert model.name == "convnext_atto" and model.output_shape == (None, 3)


@pytest.mark.once
def test_a_bad_hub_id_or_a_repository_of_another_model_is_refused_by_name(hub):
    with pytest.raises(ValueError, match=r"A Hugging Face model id is 'owner/name' .*got 'convnext-tiny-224'"):
        kc.create_model("hf-hub:convnext-tiny-224")
    hub.publish("/google/vit-test/resolve/main/config.json", json.dumps({"model_type": "vit"}).encode())
    with pytest.raises(ValueError, match=r"'google/vit-test' is a 'vit' model; keras_convnext builds convnext, "):
        kc.create_model("hf-hub:google/vit-test")
    with pytest.raises(ConnectionError, match=r"facebook/missing/resolve/main/config.json"):
        kc.create_model("hf-hub:facebook/missing")


@pytest.mark.large
def test_a_dinov3_hub_id_builds_the_pooled_backbone(hub, tmp_path, rng):
    from helpers.foreign_checkpoints import dinov3_model, dinov3_outputs

    reference = dinov3_model()
    _publish(hub, tmp_path, "facebook/dinov3-convnext-test", reference, "model.safetensors")
    backbone = kc.create_model("hf-hub:facebook/dinov3-convnext-test", include_preprocessing=False,
                               input_shape=(64, 64, 3))
    images = rng.normal(size=(2, 64, 64, 3)).astype("float32")
    expected = dinov3_outputs(reference, images)["embedding"]
    delta = float(np.abs(keras.ops.convert_to_numpy(backbone(images)) - expected).max())
    assert delta <= 1e-4 * max(1.0, float(np.abs(expected).max())), delta


def test_a_builder_takes_hub_weights_and_a_bare_id_gets_a_hint(hub, tmp_path, rng):
    reference = hugging_face_model("V2", classes=4)
    _publish(hub, tmp_path, "facebook/convnextv2-small-test", reference, "model.safetensors")
    arch = reference.config
    model = kc.ConvNeXt(tuple(arch.depths), tuple(arch.hidden_sizes), use_grn=True, layer_scale_init_value=None,
                        classes=4, classifier_activation=None, include_preprocessing=False, input_shape=(32, 32, 3),
                        weights="hf-hub:facebook/convnextv2-small-test")
    images = rng.normal(size=(1, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(images)), hugging_face_logits(reference, images),
                               atol=1e-4)
    with pytest.raises(ValueError, match=r"If 'facebook/convnext-tiny-224' is a Hugging Face model id, pass "
                                         r"weights='hf-hub:facebook/convnext-tiny-224'"):
        kc.ConvNeXtAtto(weights="facebook/convnext-tiny-224")
