"""Checkpoints of every layout load into our models with the source framework's logits, on the active backend."""

import warnings

import h5py
import keras
import numpy as np
import pytest
import torch

import keras_convnext as kc
from helpers import perturb
from helpers.foreign_checkpoints import (
    SMALL,
    TINY,
    hugging_face_logits,
    hugging_face_model,
    normalised_images,
    save,
    to_fb,
    to_timm,
    to_torchvision,
)

# Relative to the logits' scale; HF's final LayerNorm uses eps 1e-12 where ours uses 1e-6.
RELATIVE_TOLERANCE = 1e-4


def ours(version, arch=SMALL, classes=5, size=64, **kwargs):
    return kc.ConvNeXt(
        arch["depths"],
        arch["hidden_sizes"],
        use_grn=version == "V2",
        layer_scale_init_value=1e-6 if version == "V1" else None,
        include_preprocessing=False,
        classifier_activation=None,
        classes=classes,
        input_shape=(size, size, 3),
        **kwargs,
    )


def assert_logits_close(model, reference, images, label):
    got = keras.ops.convert_to_numpy(model(images))
    scale = max(1.0, float(np.abs(reference).max()))
    delta = float(np.abs(got - reference).max())
    print(f"{label}: max |delta logits| = {delta:.2e} (logit scale {scale:.2f})")
    assert delta <= RELATIVE_TOLERANCE * scale, (label, delta, scale)


LAYOUT_FILES = [
    ("huggingface", "model.safetensors"),
    ("huggingface", "pytorch_model.bin"),
    ("timm", "model.safetensors"),
    ("timm", "model.pth"),
    ("timm_conv_mlp", "model.safetensors"),
    ("fb", "checkpoint.pth"),
]


@pytest.mark.parametrize(
    "version, layout, filename",
    # torchvision publishes V1 ConvNeXts only.
    [(v, layout, f) for v in ("V1", "V2") for layout, f in LAYOUT_FILES] + [("V1", "torchvision", "model.pth")],
)
def test_every_layout_loads_with_the_reference_logits(tmp_path, rng, version, layout, filename):
    reference = hugging_face_model(version)
    images = normalised_images(rng)
    expected = hugging_face_logits(reference, images)
    hf_state = reference.state_dict()
    state = {
        "huggingface": lambda: hf_state,
        "timm": lambda: to_timm(hf_state),
        "timm_conv_mlp": lambda: to_timm(hf_state, conv_mlp=True),
        "torchvision": lambda: to_torchvision(hf_state),
        "fb": lambda: to_fb(hf_state),
    }[layout]()
    path = save(state, tmp_path / filename)
    model = ours(version, weights=path)
    assert_logits_close(model, expected, images, f"{layout} {version} {filename}")


def test_hugging_face_save_pretrained_directory_loads(tmp_path, rng):
    reference = hugging_face_model("V2")
    reference.save_pretrained(tmp_path / "hf")
    images = normalised_images(rng)
    assert_logits_close(ours("V2", weights=tmp_path / "hf"), hugging_face_logits(reference, images), images, "HF dir")


@pytest.mark.large
@pytest.mark.parametrize("version, builder", [("V1", kc.ConvNeXtTiny), ("V2", kc.ConvNeXtV2Tiny)])
def test_real_tiny_config_from_hugging_face(tmp_path, rng, version, builder):
    reference = hugging_face_model(version, arch=TINY, classes=1000)
    path = save(reference.state_dict(), tmp_path / "model.safetensors")
    images = normalised_images(rng, count=1, size=224)
    model = builder(weights=path, include_preprocessing=False, classifier_activation=None)
    assert_logits_close(model, hugging_face_logits(reference, images), images, f"HF {version} tiny 224")


def _keras_applications_h5(model, path):
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    with h5py.File(path, "w") as f:
        save_weights_to_hdf5_group(f, model)
    return path


@pytest.mark.fast_tier_backend("tensorflow")  # reading the .h5 is NumPy; two ConvNeXt-T forwards (20 s under JAX)
@pytest.mark.parametrize("include_top", [True, False])
def test_keras_applications_weights_load_with_equal_logits(tmp_path, rng, include_top):
    # The weights do not depend on the input size; 64x64 keeps the two forward passes short.
    source = keras.applications.ConvNeXtTiny(
        weights=None, include_top=include_top, pooling=None if include_top else "avg", classifier_activation=None,
        input_shape=(64, 64, 3),
    )
    perturb(source, seed=3, scale=0.02)
    path = _keras_applications_h5(source, tmp_path / "convnext_tiny.h5")
    images = rng.uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(source(images))
    model = kc.ConvNeXtTiny(weights=path, include_top=include_top, pooling=None if include_top else "avg",
                            classifier_activation=None, input_shape=(64, 64, 3))
    delta = float(np.abs(keras.ops.convert_to_numpy(model(images)) - expected).max())
    print(f"keras.applications include_top={include_top}: max |delta| = {delta:.2e}")
    assert delta <= 1e-5 * max(1.0, float(np.abs(expected).max()))


def test_other_classes_load_everything_but_the_head_and_say_so(tmp_path, rng):
    reference = hugging_face_model("V1", classes=5)
    path = save(reference.state_dict(), tmp_path / "model.safetensors")
    with pytest.warns(UserWarning, match=r"5-class head and the model 3 classes: loaded every weight but the classifier"):
        model = ours("V1", classes=3, weights=path)
    stem = reference.state_dict()["convnext.embeddings.patch_embeddings.weight"].numpy().transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.get_layer("stem").conv.kernel), stem)


def test_include_top_false_skips_the_head(tmp_path, rng):
    reference = hugging_face_model("V2")
    path = save(reference.state_dict(), tmp_path / "model.safetensors")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = ours("V2", include_top=False, weights=path)
    assert model.output_shape == (None, 2, 2, 32)


def test_a_checkpoint_of_another_variant_names_the_tensor_and_both_shapes_and_changes_nothing(tmp_path):
    reference = hugging_face_model("V1", arch={"depths": [1, 1, 2, 1], "hidden_sizes": [8, 16, 24, 40]})
    path = save(reference.state_dict(), tmp_path / "model.safetensors")
    model = ours("V1")
    before = [keras.ops.convert_to_numpy(v) for v in model.weights]
    with pytest.raises(ValueError, match=r"stage_3_downsample/conv/kernel has shape \(2, 2, 24, 40\) in the .* and \(2, 2, 24, 32\) in the model"):
        kc.weights.load_weights(model, path)
    for value, variable in zip(before, model.weights):
        np.testing.assert_array_equal(value, keras.ops.convert_to_numpy(variable))


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    state = to_timm(hugging_face_model("V1").state_dict())
    del state["stages.2.blocks.1.mlp.fc2.weight"]
    state["stages.2.blocks.1.extra.weight"] = torch.zeros(3)
    path = save(state, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"Missing from it \(1\): stage_2_block_1/pointwise_2/kernel.*Unexpected in it \(1\): stages.2.blocks.1.extra.weight"):
        ours("V1", weights=path)


def test_unknown_layout_lists_the_supported_ones(tmp_path):
    path = save({"encoder.weight": torch.zeros(2, 2)}, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"(?s)Unknown checkpoint layout.*huggingface.*timm.*torchvision.*fb.*keras_applications"):
        ours("V1", weights=path)


def test_a_file_that_is_no_checkpoint_is_refused(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="is not a checkpoint this package reads"):
        ours("V1", weights=path)


def test_our_weights_file_with_other_classes_loads_all_but_the_head(tmp_path, rng):
    source = perturb(ours("V2", classes=5))
    source.save_weights(tmp_path / "ours.weights.h5")
    with pytest.warns(UserWarning, match="loaded every weight but the classifier"):
        model = ours("V2", classes=3, weights=tmp_path / "ours.weights.h5")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model.get_layer("stage_2_block_1").pointwise_1.kernel),
        keras.ops.convert_to_numpy(source.get_layer("stage_2_block_1").pointwise_1.kernel),
    )


def test_convert_writes_one_weights_file_that_loads_plainly(tmp_path, rng):
    reference = hugging_face_model("V2")
    source = save(to_fb(reference.state_dict()), tmp_path / "convnextv2.pt")
    output = kc.weights.convert(source, ours("V2"), tmp_path / "converted.weights.h5")
    model = ours("V2")
    model.load_weights(output)
    images = normalised_images(rng)
    assert_logits_close(model, hugging_face_logits(reference, images), images, "converted .weights.h5")


def test_convert_cli_writes_weights_for_a_named_variant(tmp_path, rng, capsys):
    from keras_convnext.cli import main

    reference = hugging_face_model("V1", arch={"depths": [2, 2, 6, 2], "hidden_sizes": [40, 80, 160, 320]}, classes=10)
    source = save(to_timm(reference.state_dict(), conv_mlp=True), tmp_path / "convnext_atto.safetensors")
    output = tmp_path / "atto.weights.h5"
    assert main(["convert", str(source), "--variant", "convnext_atto", "-o", str(output)]) == 0
    assert f"wrote {output}" in capsys.readouterr().out
    model = kc.ConvNeXtAtto(weights=output, classes=10, include_preprocessing=False, classifier_activation=None,
                            input_shape=(64, 64, 3))
    images = normalised_images(rng)
    assert_logits_close(model, hugging_face_logits(reference, images), images, "convert CLI atto")


def test_convert_refuses_a_checkpoint_of_another_variant(tmp_path):
    source = save(hugging_face_model("V1").state_dict(), tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"stem/conv/kernel has shape \(4, 4, 3, 8\) in the .* and \(4, 4, 3, 40\) in the model"):
        kc.convert_weights(source, "convnext_atto", tmp_path / "out.weights.h5")
    assert not (tmp_path / "out.weights.h5").exists()


def _converted_files():
    import os
    from pathlib import Path

    root = Path(os.environ["KERAS_CONVNEXT_CACHE"]) / "converted"
    return sorted(root.glob("*.weights.h5")) if root.exists() else []


def test_a_converted_checkpoint_is_cached_and_the_second_load_is_a_plain_keras_load(tmp_path, rng, monkeypatch):
    reference = hugging_face_model("V1")
    path = save(to_fb(reference.state_dict()), tmp_path / "checkpoint.pth")
    images = normalised_images(rng)
    expected = hugging_face_logits(reference, images)
    assert kc.weights.load_weights(ours("V1"), path) == "fb"
    (cached,) = _converted_files()
    assert cached.name == f"{kc.weights.sha256_of(path)[:16]}.weights.h5"

    def no_conversion(*args, **kwargs):
        raise AssertionError("the checkpoint was read again instead of the converted cache")

    monkeypatch.setattr("keras_convnext.weights.loading.read_state_dict", no_conversion)
    model = ours("V1")
    assert kc.weights.load_weights(model, path) == "keras_convnext"
    assert_logits_close(model, expected, images, "cached conversion")
    with pytest.warns(UserWarning, match="loaded every weight but the classifier"):
        ours("V1", classes=3, weights=path)


def test_a_partial_load_caches_nothing(tmp_path):
    path = save(hugging_face_model("V2").state_dict(), tmp_path / "model.safetensors")
    ours("V2", include_top=False, weights=path)
    assert _converted_files() == []


def test_the_cached_conversion_of_another_variant_still_names_what_does_not_fit(tmp_path):
    path = save(hugging_face_model("V1").state_dict(), tmp_path / "model.safetensors")
    ours("V1", weights=path)
    with pytest.raises(ValueError, match=r"stem/conv/kernel has shape \(4, 4, 3, 8\) in the .* and \(4, 4, 3, 40\) in the model"):
        kc.ConvNeXtAtto(weights=path, input_shape=(64, 64, 3))


def test_our_weights_file_of_a_deeper_model_is_refused_and_changes_nothing(tmp_path):
    deeper = kc.ConvNeXt((1, 1, 2, 1), (8, 8, 8, 8), input_shape=(32, 32, 3), classes=5)
    deeper.save_weights(tmp_path / "deeper.weights.h5")
    model = kc.ConvNeXt((1, 1, 1, 1), (8, 8, 8, 8), input_shape=(32, 32, 3), classes=5)
    before = [keras.ops.convert_to_numpy(v) for v in model.weights]
    with pytest.raises(ValueError, match=r"does not fit this model: it holds \d+ tensors and the model \d+ besides its head"):
        kc.weights.load_weights(model, tmp_path / "deeper.weights.h5")
    for value, variable in zip(before, model.weights):
        np.testing.assert_array_equal(value, keras.ops.convert_to_numpy(variable))


def _truncated(path):
    half = path.with_name(f"half-{path.name}")
    half.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return half


@pytest.mark.parametrize("name", ["model.safetensors", "model.pth", "ours.weights.h5"])
def test_a_truncated_checkpoint_is_refused_naming_the_file_in_one_cli_line(tmp_path, capsys, name):
    from keras_convnext.cli import main

    if name == "ours.weights.h5":
        full = kc.weights.save_weights(kc.create_model("convnext_atto", input_shape=(32, 32, 3)), tmp_path / name)
    else:
        full = save(to_timm(hugging_face_model("V1", arch={"depths": [2, 2, 6, 2], "hidden_sizes": [40, 80, 160, 320]},
                                               classes=10).state_dict()), tmp_path / name)
    half = _truncated(full)
    assert main(["convert", str(half), "--variant", "convnext_atto", "-o", str(tmp_path / "out.weights.h5")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("keras-convnext convert: error: ") and str(half) in err[0], err
    assert "truncated or damaged" in err[0]
    with pytest.raises(ValueError, match="truncated or damaged"):
        kc.ConvNeXtAtto(weights=half, input_shape=(32, 32, 3), classes=10)
    assert not (tmp_path / "out.weights.h5").exists()


def test_a_keras_file_given_as_weights_loads_its_weights(tmp_path, rng):
    source = perturb(ours("V2"))
    source.save(tmp_path / "model.keras")
    model = ours("V2", weights=tmp_path / "model.keras")
    images = normalised_images(rng)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(images)), keras.ops.convert_to_numpy(source(images)))
    with pytest.raises(ValueError, match=r"model.keras does not fit this model"):
        ours("V1", weights=tmp_path / "model.keras")


def test_an_unreadable_cached_conversion_is_converted_again_and_replaced(tmp_path, rng):
    reference = hugging_face_model("V1")
    path = save(to_fb(reference.state_dict()), tmp_path / "checkpoint.pth")
    ours("V1", weights=path)
    (cached,) = _converted_files()
    cached.write_bytes(cached.read_bytes()[:100])  # a cache entry cut short, as a full disk or a kill would leave
    images = normalised_images(rng)
    with pytest.warns(UserWarning, match="cached conversion of .* is unreadable .*converting again"):
        model = ours("V1", weights=path)
    assert_logits_close(model, hugging_face_logits(reference, images), images, "after a damaged cache entry")
    assert kc.weights.load_weights(ours("V1"), path) == "keras_convnext"  # the entry was replaced whole
