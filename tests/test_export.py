"""SavedModel export for TF Serving from the active backend, checked in a process that imports TensorFlow only."""

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import keras_convnext as kc
from conftest import BACKEND, TINY_ARCH, perturb
from keras_convnext.cli import main
from keras_convnext.export import SIGNATURES, check_standard_ops, export_saved_model

CLASS_NAMES = ["cat", "dog", "fox", "owl"]
SIZE = 32
HERE = Path(__file__).parent


def _png(pixels):
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, "uint8")).save(buffer, format="PNG")
    return np.frombuffer(buffer.getvalue(), "uint8")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A model trained a few steps on the active backend, exported, and called by a TensorFlow-only process."""
    root = tmp_path_factory.mktemp("export")
    keras.utils.set_random_seed(0)
    model = perturb(kc.ConvNeXt(**TINY_ARCH, input_shape=(SIZE, SIZE, 3), classes=4), scale=0.2)
    rng = np.random.default_rng(0)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(rng.uniform(0, 255, (8, SIZE, SIZE, 3)), np.arange(8) % 4, epochs=1, verbose=0)
    version = export_saved_model(
        model, root / "convnext", version=3, class_names=CLASS_NAMES, top_k=3, crop_pct=1.0, interpolation="bilinear"
    )
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
    np.savez(root / "inputs.npz", **inputs)
    client = subprocess.run(
        [sys.executable, str(HERE / "serving_client.py"), str(version), str(root / "inputs.npz"),
         str(root / "outputs.npz"), str(root / "report.json")],
        capture_output=True, text=True, timeout=600,
        env={key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"},
    )
    assert client.returncode == 0, client.stderr[-4000:]
    return {
        "model": model, "version": version, "inputs": inputs,
        "outputs": dict(np.load(root / "outputs.npz")), "report": json.loads((root / "report.json").read_text()),
    }


def test_the_version_folder_and_serving_files_are_written(exported):
    version = exported["version"]
    assert version.name == "3" and (version / "saved_model.pb").exists() and (version / "variables").is_dir()
    config = (version.parent / "models.config").read_text()
    assert 'name: "convnext"' in config and 'base_path: "/models/convnext"' in config
    assert "max_batch_size" in (version.parent / "batching_parameters.txt").read_text()
    assert not [p for p in version.parent.iterdir() if "partial" in p.name]


def test_a_tensorflow_only_process_serves_every_signature_like_the_keras_model(exported):
    report, outputs, inputs, model = exported["report"], exported["outputs"], exported["inputs"], exported["model"]
    assert set(SIGNATURES) <= set(report["signatures"])
    assert report["modules"] == [], "the serving process imported keras or keras_convnext"
    for batch in (1, 3, 17):
        expected = model.predict(inputs[f"float_{batch}"], verbose=0)
        for name in ("serving_default", "serving_uint8", "serving_image_bytes"):
            probs = outputs[f"{name}/{batch}/probabilities"]
            assert probs.shape == (batch, 4)
            np.testing.assert_allclose(probs, expected, atol=1e-5, err_msg=f"{name} batch {batch}")
            top = np.argsort(-expected, axis=-1)[:, :3]
            np.testing.assert_array_equal(outputs[f"{name}/{batch}/top_k_indices"], top)
            np.testing.assert_allclose(outputs[f"{name}/{batch}/top_k_scores"], np.take_along_axis(expected, top, -1), atol=1e-5)
            names = outputs[f"{name}/{batch}/top_k_class_names"].astype(str)
            np.testing.assert_array_equal(names, np.array(CLASS_NAMES)[top])


def test_encoded_images_of_another_size_are_resized_in_the_graph_like_preprocess_image(exported):
    from keras_convnext.evaluation import preprocess_image

    large = Image.open(io.BytesIO(exported["inputs"]["large_jpeg"].tobytes()))
    pixels = preprocess_image(np.asarray(large), {"input_size": SIZE, "crop_pct": 1.0, "interpolation": "bilinear"})
    expected = exported["model"].predict(pixels[None], verbose=0)
    served = exported["outputs"]["large_jpeg/probabilities"]
    assert np.argmax(served) == np.argmax(expected)
    np.testing.assert_allclose(served, expected, atol=0.05)


@pytest.mark.parametrize("request_name", ["garbage_bytes", "empty_string", "one_pixel_image", "wrong_dtype", "wrong_rank", "wrong_size"])
def test_bad_requests_fail_and_the_next_good_one_is_served(exported, request_name):
    error = exported["report"]["errors"][request_name]
    assert error is not None, f"{request_name} was served"
    if request_name == "empty_string":
        assert "image string is empty" in error
    if request_name == "one_pixel_image":
        assert "smaller than 16x16 pixels" in error
    assert exported["report"]["served_after"][request_name]


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


def test_cli_exports_a_weights_file_of_a_named_variant(tmp_path):
    model = kc.create_model("convnext_atto", input_shape=(SIZE, SIZE, 3), classes=3)
    weights = kc.weights.save_weights(perturb(model), tmp_path / "atto.weights.h5")
    out = tmp_path / "serving"
    assert main(["export", str(weights), str(out), "--variant", "convnext_atto", "--classes", "3",
                 "--image-size", str(SIZE), "--version", "2"]) == 0
    check_standard_ops(out / "2")
    script = (
        "import json, numpy as np, tensorflow as tf\n"
        f"m = tf.saved_model.load({str(out / '2')!r})\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        "print(json.dumps(m.signatures['serving_default'](images=tf.constant(x))['probabilities'].numpy().tolist()))\n"
    )
    x = np.random.default_rng(1).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    served = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert served.returncode == 0, served.stderr[-2000:]
    np.testing.assert_allclose(np.array(json.loads(served.stdout.strip().splitlines()[-1])), model.predict(x, verbose=0), atol=1e-5)
