"""The preset registry: well-formed records, "imagenet" defaults, variant checks, and a preset download."""

import re

import keras
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import keras_convnext as kc
from helpers.foreign_checkpoints import hugging_face_logits, hugging_face_model, normalised_images, to_timm
from keras_convnext.weights import list_presets, preset_for, presets, sha256_of

FIELDS = {"variant", "source", "layout", "urls", "sha256", "classes", "eval", "license", "top1", "default"}


@pytest.mark.parametrize("name", list(presets()))
def test_every_preset_is_well_formed(name):
    record = presets()[name]
    assert set(record) - {"output", "final_norm"} == FIELDS and record.get("output", "embedding") == "embedding"
    assert record.get("final_norm", False) is False and ("final_norm" not in record or record["classes"] is None)
    assert record["variant"] in kc.list_models()
    assert record["layout"] in {layout.name for layout in kc.weights.LAYOUTS}
    assert record["urls"] and all(url.startswith("https://") for url in record["urls"])
    assert record["sha256"] is None or re.fullmatch(r"[0-9a-f]{64}", record["sha256"])
    # None: a feature backbone (DINOv3, EUPE, FCMAE); 11821 and 21841: ImageNet-12k and -22k heads; a CLIP tower's
    # classes is its embedding width.
    assert record["classes"] in (1000, 11821, 21841, None) or record["output"] == "embedding"
    assert {"input_size", "crop_pct", "interpolation", "mean", "std"} <= set(record["eval"])
    if record["variant"].startswith("convnextv2"):
        assert record["license"] == "CC-BY-NC-4.0"


def test_every_pretrained_tag_of_timm_has_a_record():
    # timm 1.0.31's list_pretrained("convnext*"), test_* models aside (98 tags), plus this package's own: the
    # keras.applications files and the isotropic FB checkpoints, which timm lacks.
    timm_tags = [tag for tag in presets() if not tag.startswith(("keras_applications.", "convnext_isotropic_"))]
    assert len(timm_tags) == 98
    for tag in ["convnext_atto_ols.a2_in1k", "convnext_tiny_hnf.a2h_in1k", "convnext_zepto_rms.ra4_e3600_r224_in1k",
                "convnext_base.fb_in22k_ft_in1k", "convnext_small.in12k", "convnextv2_huge.fcmae_ft_in22k_in1k_512",
                "convnextv2_base.fcmae", "convnext_tiny.eupe_lvd1689m", "convnext_xxlarge.clip_laion2b_soup_ft_in12k"]:
        assert tag in timm_tags
    assert presets()["convnext_small.in12k"]["classes"] == 11821
    assert presets()["convnextv2_base.fcmae"]["final_norm"] is False
    assert presets()["convnext_tiny.eupe_lvd1689m"]["eval"]["input_size"] == 256


def test_an_fcmae_encoder_is_refused_with_a_top_naming_pooling_none():
    with pytest.raises(ValueError, match=r"neither a classifier nor a final norm: build it with include_top=False, "
                                         r"pooling=None"):
        kc.create_model("convnextv2_atto", weights="convnextv2_atto.fcmae")


def test_the_issue_s_example_tags_are_registered():
    for tag in ["convnext_tiny.fb_in1k", "convnext_tiny.fb_in22k_ft_in1k", "convnext_base.fb_in22k",
                "convnextv2_tiny.fcmae_ft_in22k_in1k_384", "convnext_atto.d2_in1k"]:
        assert tag in presets()
    assert presets()["convnext_base.fb_in22k"]["classes"] == 21841
    assert len(list_presets("convnext_tiny")) >= 3  # keras.applications, fb_in1k, fb_in22k_ft_in1k


@pytest.mark.parametrize("variant", kc.list_models())
def test_imagenet_means_one_default_preset_of_the_same_variant(variant):
    defaults = [name for name in list_presets(variant) if presets()[name]["default"]]
    assert len(defaults) <= 1
    if defaults:
        assert preset_for("imagenet", variant) == defaults[0]
    else:
        with pytest.raises(ValueError, match=f"No ImageNet weights are known for {variant}"):
            preset_for("imagenet", variant)


def test_a_preset_of_another_variant_is_refused_before_building():
    with pytest.raises(ValueError, match=r"Preset 'convnext_tiny.fb_in1k' holds convnext_tiny weights, not convnext_atto"):
        kc.ConvNeXtAtto(weights="convnext_tiny.fb_in1k")


def test_a_misspelt_preset_gets_a_suggestion():
    with pytest.raises(ValueError, match=r"Did you mean 'convnext_tiny.fb_in1k'"):
        kc.ConvNeXtTiny(weights="convnext_tiny.fb_1k")


def test_imagenet_preset_downloads_and_loads(weights_server, tmp_path, monkeypatch, rng):
    reference = hugging_face_model("V1", arch={"depths": [2, 2, 6, 2], "hidden_sizes": [40, 80, 160, 320]}, classes=1000)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in to_timm(reference.state_dict(), conv_mlp=True).items()}, str(path))
    url = weights_server.publish("/timm/convnext_atto.d2_in1k/model.safetensors", path.read_bytes())
    record = presets()["convnext_atto.d2_in1k"]
    monkeypatch.setitem(record, "urls", [url])
    monkeypatch.setitem(record, "sha256", sha256_of(path))
    model = kc.ConvNeXtAtto(weights="imagenet", include_preprocessing=False, classifier_activation=None,
                            input_shape=(64, 64, 3))
    images = normalised_images(rng)
    expected = hugging_face_logits(reference, images)
    delta = np.abs(keras.ops.convert_to_numpy(model(images)) - expected).max()
    assert delta <= 1e-4 * max(1.0, np.abs(expected).max())


def test_a_21841_class_head_loads(tmp_path, rng):
    reference = hugging_face_model("V1", classes=21841)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    model = kc.ConvNeXt((1, 1, 2, 1), (8, 16, 24, 32), classes=21841, include_preprocessing=False,
                        classifier_activation=None, input_shape=(64, 64, 3), weights=path)
    images = normalised_images(rng)
    expected = hugging_face_logits(reference, images)
    assert model.output_shape == (None, 21841)
    assert np.abs(keras.ops.convert_to_numpy(model(images)) - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())


def test_dinov3_presets_are_backbones_refused_with_a_classifier_before_building():
    for size in ("tiny", "small", "base", "large"):
        record = presets()[f"convnext_{size}.dinov3_lvd1689m"]
        assert record["classes"] is None and record["eval"]["crop_pct"] == 1.0 and "DINOv3 License" in record["license"]
    with pytest.raises(ValueError, match="feature backbone without a classifier: build it with include_top=False"):
        kc.create_model("convnext_tiny", weights="convnext_tiny.dinov3_lvd1689m")
    with pytest.raises(ValueError, match="holds convnext_small weights, not convnext_tiny"):
        kc.create_model("convnext_tiny", weights="convnext_small.dinov3_lvd1689m", include_top=False)


def test_a_preset_s_own_classifier_is_built_unless_other_classes_are_asked_for(weights_server, tmp_path, monkeypatch, rng):
    """An ImageNet-22k preset (21841 classes) built with the default classes gets its own head, not a random 1000-class
    one; here a 7-class stand-in of convnext_atto's preset, served from 127.0.0.1."""
    import warnings

    source = kc.create_model("convnext_atto", input_shape=(32, 32, 3), classes=7)
    kc.weights.save_weights(source, tmp_path / "seven.weights.h5")
    url = weights_server.publish("/seven.weights.h5", (tmp_path / "seven.weights.h5").read_bytes())
    record = presets()["convnext_atto.d2_in1k"]
    for key, value in (("urls", [url]), ("sha256", sha256_of(tmp_path / "seven.weights.h5")), ("classes", 7)):
        monkeypatch.setitem(record, key, value)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the whole checkpoint loads: no "keeps its initialisation"
        model = kc.ConvNeXtAtto(weights="convnext_atto.d2_in1k", input_shape=(32, 32, 3))
    images = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    assert model.output_shape == (None, 7)
    np.testing.assert_array_equal(model.predict(images, verbose=0), source.predict(images, verbose=0))
    with pytest.warns(UserWarning, match=r"another number of classes \(7\) than the model"):
        tuned = kc.ConvNeXtAtto(weights="convnext_atto.d2_in1k", input_shape=(32, 32, 3), classes=3)
    assert tuned.output_shape == (None, 3)
    by_tag = kc.create_model("convnext_atto.d2_in1k", input_shape=(32, 32, 3))  # timm's naming: the tag's own model
    np.testing.assert_array_equal(by_tag.predict(images, verbose=0), source.predict(images, verbose=0))


def test_list_models_lists_every_pretrained_tag_and_filters_like_timm():
    tags = kc.list_models(pretrained=True)
    assert sorted(tags) == sorted(presets()) and len(tags) == len(set(tags))
    assert kc.list_models("convnextv2_atto*", pretrained=True) == [
        tag for tag in presets() if tag.startswith("convnextv2_atto")]
    assert kc.list_models("*atto") == ["convnext_atto", "convnextv2_atto"]
    assert kc.list_models("V2") == kc.list_models(family="V2") == [n for n in kc.list_models() if n.startswith("convnextv2_")]
    with pytest.raises(ValueError, match="family must be one of"):
        kc.list_models(family="V3")


def test_every_tag_builds_its_model_by_name_without_building_or_downloading_here(monkeypatch):
    """What create_model(tag) hands the generic builder, for every tag: the tag's classes, size, normalisation and
    weights (or none), checked without building 846M parameters or going online."""
    from keras_convnext.applications import variants

    handed = {}
    monkeypatch.setattr(variants, "ConvNeXt", lambda **kwargs: handed.update(kwargs) or kwargs)
    for tag, record in presets().items():
        for weights in (tag, None):
            handed.clear()
            kc.create_model(tag, **({} if weights else {"weights": None}))
            assert handed["weights"] == weights, tag
            assert handed["default_size"] == record["eval"]["input_size"], tag
            assert tuple(handed["pixel_mean"]) == tuple(record["eval"]["mean"]), tag
            assert tuple(handed["pixel_std"]) == tuple(record["eval"]["std"]), tag
            if record["classes"] is None:  # a backbone: pooled features as timm's num_classes=0, or an FCMAE
                # encoder's last stage map (it has no final norm to pool with)
                pooling = "avg" if record.get("final_norm", True) else None
                assert handed["include_top"] is False and handed["pooling"] == pooling, tag
            else:
                assert handed.get("include_top", True) and handed["classes"] == record["classes"], tag
            architecture = kc.get_variant(record["variant"]).architecture()
            assert {key: handed[key] for key in architecture} == architecture, tag


@pytest.mark.parametrize("name, message", [
    ("convnext_tiny.fb_1k", r"Unknown pretrained tag 'convnext_tiny.fb_1k'\. Did you mean 'convnext_tiny.fb_in1k'"),
    ("convnext_tiny.fb_in1k", r"weights= may only be None .* create_model\('convnext_tiny', weights=\.\.\.\)"),
])
def test_a_bad_tag_or_other_weights_for_a_tag_are_refused_before_building(name, message):
    with pytest.raises(ValueError, match=message):
        kc.create_model(name, weights="elsewhere.safetensors")
