"""SavedModel export for TF Serving from the active backend; once per suite, a process that imports TensorFlow only
serves it, as TF Serving does."""

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import keras_convnext as kc
from helpers import TINY_ARCH, perturb, run_worker
from keras_convnext.cli import main
from keras_convnext.export import SIGNATURES, check_standard_ops, export_saved_model

CLASS_NAMES = ["cat", "dog", "fox", "owl"]
SIZE = 32


def _png(pixels):
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, "uint8")).save(buffer, format="PNG")
    return np.frombuffer(buffer.getvalue(), "uint8")


def _request_inputs(rng):
    """Float batches of 1, 3 and 17 images, each image also PNG-encoded; a larger JPEG; a 1x1 PNG."""
    inputs = {}
    for batch in (1, 3, 17):
        inputs[f"float_{batch}"] = rng.integers(0, 256, (batch, SIZE, SIZE, 3)).astype("float32")
        for i in range(batch):
            inputs[f"png_{batch}_{i}"] = _png(inputs[f"float_{batch}"][i])
    large = np.kron(inputs["float_1"][0], np.ones((3, 4, 1))).astype("uint8")  # 96 x 128, resized in the graph
    buffer = io.BytesIO()
    Image.fromarray(large).save(buffer, format="JPEG", quality=95)
    inputs["large_jpeg"] = np.frombuffer(buffer.getvalue(), "uint8")
    inputs["tiny_png"] = _png(np.zeros((1, 1, 3)))
    buffer = io.BytesIO()
    Image.fromarray(np.full((40, 40, 3), (220, 40, 40), "uint8")).convert("P").save(buffer, format="BMP")
    inputs["palette_bmp"] = np.frombuffer(buffer.getvalue(), "uint8")
    # A 40x40 PNG whose header says 60000x60000 (3.6 gigapixels): refused before decoding.
    bomb = bytearray(_png(np.zeros((40, 40, 3))).tobytes())
    bomb[16:24] = (60000).to_bytes(4, "big") * 2
    inputs["bomb_png"] = np.frombuffer(bytes(bomb), "uint8")
    return inputs


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A model trained a few steps on the active backend and exported (under JAX and PyTorch, through a
    TensorFlow subprocess, as users' exports go)."""
    root = tmp_path_factory.mktemp("export")
    keras.utils.set_random_seed(0)
    model = perturb(kc.ConvNeXt(**TINY_ARCH, input_shape=(SIZE, SIZE, 3), classes=4), scale=0.2)
    rng = np.random.default_rng(0)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(rng.uniform(0, 255, (8, SIZE, SIZE, 3)), np.arange(8) % 4, epochs=1, verbose=0)
    version = export_saved_model(
        model, root / "convnext", version=3, class_names=CLASS_NAMES, top_k=3, crop_pct=1.0, interpolation="bilinear"
    )
    return {"model": model, "version": version, "root": root, "inputs": _request_inputs(rng)}


@pytest.fixture(scope="module")
def served(exported):
    """The exported model called by a process that imports TensorFlow only, as TF Serving does."""
    root = exported["root"]
    np.savez(root / "inputs.npz", **exported["inputs"])
    client = run_worker("serving_client", exported["version"], root / "inputs.npz", root / "outputs.npz",
                        root / "report.json", backend=None, timeout=600)
    assert client.returncode == 0, client.stderr[-4000:]
    return {**exported, "outputs": dict(np.load(root / "outputs.npz")),
            "report": json.loads((root / "report.json").read_text())}


def _assert_served_like_keras(outputs, expected, label):
    np.testing.assert_allclose(outputs["probabilities"], expected, atol=1e-5, err_msg=label)
    top = np.argsort(-expected, axis=-1)[:, :3]
    np.testing.assert_array_equal(outputs["top_k_indices"], top)
    np.testing.assert_allclose(outputs["top_k_scores"], np.take_along_axis(expected, top, -1), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(outputs["top_k_class_names"]).astype(str), np.array(CLASS_NAMES)[top])


def test_the_version_folder_and_serving_files_are_written(exported):
    version = exported["version"]
    assert version.name == "3" and (version / "saved_model.pb").exists() and (version / "variables").is_dir()
    config = (version.parent / "models.config").read_text()
    assert 'name: "convnext"' in config and 'base_path: "/models/convnext"' in config
    assert "max_batch_size" in (version.parent / "batching_parameters.txt").read_text()
    assert not [p for p in version.parent.iterdir() if "partial" in p.name]


def test_every_signature_answers_like_the_keras_model(exported):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(exported["version"]))
    assert set(SIGNATURES) <= set(loaded.signatures.keys())
    images = exported["inputs"]["float_3"]
    expected = exported["model"].predict(images, verbose=0)
    requests = {
        "serving_default": {"images": tf.constant(images)},
        "serving_uint8": {"images": tf.constant(images.astype("uint8"))},
        "serving_image_bytes": {"image_bytes": tf.constant([bytes(exported["inputs"][f"png_3_{i}"]) for i in range(3)])},
    }
    for name, request in requests.items():
        outputs = {key: value.numpy() for key, value in loaded.signatures[name](**request).items()}
        _assert_served_like_keras(outputs, expected, name)


@pytest.mark.once
def test_a_tensorflow_only_process_serves_every_signature_like_the_keras_model(served):
    report, outputs, inputs, model = served["report"], served["outputs"], served["inputs"], served["model"]
    assert set(SIGNATURES) <= set(report["signatures"])
    assert report["modules"] == [], "the serving process imported keras or keras_convnext"
    for batch in (1, 3, 17):
        expected = model.predict(inputs[f"float_{batch}"], verbose=0)
        for name in ("serving_default", "serving_uint8", "serving_image_bytes"):
            prefix = f"{name}/{batch}/"
            found = {key[len(prefix):]: value for key, value in outputs.items() if key.startswith(prefix)}
            assert found["probabilities"].shape == (batch, 4)
            _assert_served_like_keras(found, expected, f"{name} batch {batch}")


@pytest.mark.once
def test_encoded_images_of_another_size_are_resized_in_the_graph_like_preprocess_image(served):
    from keras_convnext.imagenet import preprocess_image

    large = Image.open(io.BytesIO(served["inputs"]["large_jpeg"].tobytes()))
    pixels = preprocess_image(np.asarray(large), {"input_size": SIZE, "crop_pct": 1.0, "interpolation": "bilinear"})
    expected = served["model"].predict(pixels[None], verbose=0)
    probabilities = served["outputs"]["large_jpeg/probabilities"]
    assert np.argmax(probabilities) == np.argmax(expected)
    np.testing.assert_allclose(probabilities, expected, atol=0.05)


# What the graph says to each bad request (TensorFlow's own words for the first four).
BAD_REQUEST_MESSAGES = {
    "garbage_bytes": r"Unknown image file format",
    "empty_string": r"image string is empty",
    "one_pixel_image": r"smaller than 16x16 pixels",
    "wrong_dtype": r"expected to be a float tensor but is a double tensor",
    "wrong_rank": r"Shape of tensor images \[32,32,3\] is not compatible with expected shape \[\?,32,32,3\]",
    "wrong_size": r"Shape of tensor images \[1,8,8,3\] is not compatible with expected shape \[\?,32,32,3\]",
    "nan_pixels": r"NaN or Inf pixels",
    "inf_pixels": r"NaN or Inf pixels",
    "palette_bmp": r"8-bit palette BMP",
    "bomb_png": r"declares more than the 40000000 pixels",
}


@pytest.mark.once
@pytest.mark.parametrize("request_name", list(BAD_REQUEST_MESSAGES))
def test_bad_requests_fail_and_the_next_good_one_is_served(served, request_name):
    error = served["report"]["errors"][request_name]
    assert error is not None, f"{request_name} was served"
    # A missing signature (KeyError), a Python bug (TypeError) or a crash would not be the graph's own refusal.
    assert error["kind"] == "InvalidArgumentError", error
    assert re.search(BAD_REQUEST_MESSAGES[request_name], error["message"]), error
    assert served["report"]["served_after"][request_name]


@pytest.mark.once
def test_one_loaded_model_serves_good_and_bad_requests_from_eight_threads_at_once(served):
    concurrent = served["report"]["concurrent"]
    assert concurrent["threads"] == 8 and concurrent["good"] == 36 and concurrent["bad"] == 60
    assert concurrent["differed"] == [], concurrent["differed"][:3]


@pytest.mark.large
@pytest.mark.once
def test_saved_model_cli_lists_the_three_signatures_with_names_dtypes_and_shapes(exported):
    cli = Path(sys.executable).with_name("saved_model_cli")
    shown = subprocess.run([str(cli), "show", "--dir", str(exported["version"]), "--all"],
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    text = shown.stdout
    blocks = {name: text.split(f"signature_def['{name}']:")[1].split("signature_def[")[0] for name in SIGNATURES}
    assert re.search(r"inputs\['images'\].*?dtype: DT_FLOAT.*?shape: \(-1, 32, 32, 3\)", blocks["serving_default"], re.S)
    assert re.search(r"inputs\['images'\].*?dtype: DT_UINT8.*?shape: \(-1, 32, 32, 3\)", blocks["serving_uint8"], re.S)
    assert re.search(r"inputs\['image_bytes'\].*?dtype: DT_STRING.*?shape: \(-1\)", blocks["serving_image_bytes"], re.S)
    for block in blocks.values():
        assert re.search(r"outputs\['probabilities'\].*?DT_FLOAT.*?shape: \(-1, 4\)", block, re.S)
        assert re.search(r"outputs\['top_k_indices'\].*?DT_INT32.*?shape: \(-1, 3\)", block, re.S)
        assert re.search(r"outputs\['top_k_scores'\].*?DT_FLOAT", block, re.S)
        assert re.search(r"outputs\['top_k_class_names'\].*?DT_STRING", block, re.S)


def test_the_graph_holds_standard_tensorflow_ops_only(exported):
    ops = check_standard_ops(exported["version"])
    assert "DecodeImage" in ops or "DecodePng" in ops
    assert "DepthwiseConv2dNative" in ops and "Conv2D" in ops
    assert not [op for op in ops if op.startswith("Xla") or "PyFunc" in op]


@pytest.mark.large
@pytest.mark.once
def test_the_op_check_refuses_a_python_callback(tmp_path):
    pytest.importorskip("tensorflow")
    script = (
        "import tensorflow as tf\n"
        "m = tf.Module()\n"
        "m.f = tf.function(lambda x: tf.py_function(lambda v: v * 2, [x], tf.float32), input_signature=[tf.TensorSpec([None], tf.float32)])\n"
        f"tf.saved_model.save(m, {str(tmp_path / 'py')!r}, signatures=m.f)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=300)
    with pytest.raises(ValueError, match="forbidden .*PyFunc"):
        check_standard_ops(tmp_path / "py")


def test_export_refuses_an_existing_version_and_bad_arguments(exported, tmp_path):
    with pytest.raises(ValueError, match="exists; choose another version"):
        export_saved_model(exported["model"], exported["version"].parent, version=3)
    with pytest.raises(ValueError, match="version must be a positive integer"):
        export_saved_model(exported["model"], tmp_path / "x", version=0)
    weights = tmp_path / "w.weights.h5"
    kc.weights.save_weights(exported["model"], weights)
    with pytest.raises(ValueError, match="pass the variant"):
        export_saved_model(weights, tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.once
def test_cli_exports_a_weights_file_of_a_named_variant(tmp_path):
    model = kc.create_model("convnext_atto", input_shape=(SIZE, SIZE, 3), classes=3)
    weights = kc.weights.save_weights(perturb(model), tmp_path / "atto.weights.h5")
    out = tmp_path / "serving"
    assert main(["export", str(weights), str(out), "--variant", "convnext_atto", "--classes", "3",
                 "--image-size", str(SIZE), "--version", "2"]) == 0
    check_standard_ops(out / "2")
    import tensorflow as tf

    x = np.random.default_rng(1).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    served = tf.saved_model.load(str(out / "2")).signatures["serving_default"](images=tf.constant(x))
    np.testing.assert_allclose(served["probabilities"].numpy(), model.predict(x, verbose=0), atol=1e-5)


@pytest.mark.once
def test_weights_of_another_variant_are_refused_with_the_reason(tmp_path):
    femto = kc.weights.save_weights(kc.create_model("convnext_femto", input_shape=(SIZE, SIZE, 3), classes=3),
                                    tmp_path / "femto.weights.h5")
    # Under JAX and PyTorch the export runs in a TensorFlow process, whose error comes back whole.
    with pytest.raises(ValueError, match=r"femto.weights.h5 does not fit this model"):
        export_saved_model(femto, tmp_path / "out", variant="convnext_atto", classes=3, image_size=SIZE)
    assert not (tmp_path / "out" / "1").exists()


@pytest.mark.once
@pytest.mark.parametrize("image_format", ["PNG", "GIF", "BMP", "JPEG", "WEBP", "WEBP-lossless"])
def test_the_serving_graph_reads_the_declared_size_of_each_format_before_decoding(image_format):
    import tensorflow as tf

    from keras_convnext.export.serving_graph import decode_and_crop

    buffer = io.BytesIO()
    pil_format, options = (image_format.split("-")[0], {"lossless": True} if "lossless" in image_format else {})
    Image.fromarray(np.full((40, 50, 3), 90, "uint8")).save(buffer, format=pil_format, **options)
    encoded = tf.constant(buffer.getvalue())
    common = {"image_size": 32, "crop_pct": 1.0, "interpolation": "bilinear", "min_image_side": 16}
    assert tuple(decode_and_crop(encoded, **common).shape) == (32, 32, 3)  # 2,000 pixels: under the default limit
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)declares more than the 1999 pixels.*2000"):
        decode_and_crop(encoded, max_image_pixels=1999, **common)


@pytest.mark.once
@pytest.mark.parametrize("kind", ["clip_tower", pytest.param("dinov3_backbone", marks=pytest.mark.large)])
def test_a_clip_tower_serves_its_embedding_and_a_dinov3_backbone_its_embedding_and_patch_tokens(tmp_path, rng, kind):
    import tensorflow as tf

    images = rng.integers(0, 256, (3, SIZE, SIZE, 3)).astype("float32")
    if kind == "clip_tower":
        model = perturb(kc.ConvNeXt(**TINY_ARCH, input_shape=(SIZE, SIZE, 3), classes=6, head_hidden_size=10,
                                    head_output="embedding", classifier_activation=None), scale=0.2)
        expected = {"embedding": model.predict(images, verbose=0)}
    else:
        model = perturb(kc.ConvNeXt(**TINY_ARCH, input_shape=(SIZE, SIZE, 3), include_top=False, pooling="avg"), scale=0.2)
        dense = kc.dense_features(model).predict(images, verbose=0)
        expected = {name: dense[name] for name in ("embedding", "patch_tokens")}
    version = export_saved_model(model, tmp_path / kind, crop_pct=1.0, interpolation="bilinear")
    loaded = tf.saved_model.load(str(version))
    requests = {"serving_default": {"images": tf.constant(images)},
                "serving_image_bytes": {"image_bytes": tf.constant([bytes(_png(image)) for image in images])}}
    for signature, request in requests.items():
        outputs = {key: value.numpy() for key, value in loaded.signatures[signature](**request).items()}
        assert sorted(outputs) == sorted(expected), signature
        for key, value in expected.items():
            np.testing.assert_allclose(outputs[key], value, atol=1e-4, err_msg=f"{kind} {signature} {key}")
    if kind == "clip_tower":
        with pytest.raises(ValueError, match="class_names apply to classifiers; this model's signatures return its embedding"):
            export_saved_model(model, tmp_path / "named", class_names=[str(i) for i in range(6)])
