"""Data parallel (and model parallel) training on each backend's own engine, on simulated CPU devices."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_convnext as kc
from helpers import BACKEND, TINY_ARCH, perturb, run_worker

SIMULATED_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}

no_torch_engine = pytest.mark.skipif(
    BACKEND == "torch",
    reason="Keras 3.15's torch backend implements no keras.distribution (keras/src/backend/torch has no "
    "distribution_lib), so there is no engine to run data parallel on; kc.distribute.data_parallel raises there",
)


def _run(mode, tmp_path):
    done = run_worker("distribute", mode, tmp_path / "initial.weights.h5", tmp_path, env=SIMULATED_DEVICES)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads((tmp_path / f"{mode}.json").read_text())


@pytest.fixture
def initial_weights(tmp_path):
    # The worker builds the same TINY_ARCH; importing the worker here would reconfigure TensorFlow's devices.
    model = perturb(kc.ConvNeXt(**TINY_ARCH, input_shape=(32, 32, 3), classes=4), scale=0.05)
    kc.weights.save_weights(model, tmp_path / "initial.weights.h5")
    return tmp_path


@no_torch_engine
def test_data_parallel_over_this_process_s_devices_trains_like_no_distribution(rng):
    images, labels = rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32"), np.arange(8) % 4
    initial = perturb(kc.ConvNeXt(**TINY_ARCH, input_shape=(32, 32, 3), classes=4), scale=0.05).get_weights()

    def fit():
        model = kc.ConvNeXt(**TINY_ARCH, input_shape=(32, 32, 3), classes=4)
        model.set_weights(initial)
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
        return model

    plain = fit()
    plain.fit(images, labels, batch_size=4, epochs=1, shuffle=False, verbose=0)
    setup = kc.distribute.data_parallel("all")
    try:
        with setup.scope():
            distributed = fit()
        distributed.fit(images, labels, batch_size=4, epochs=1, shuffle=False, verbose=0)
    finally:
        if BACKEND == "jax":
            keras.distribution.set_distribution(None)
    count = len(setup.devices)
    assert setup.description == f"data parallel over {count} device{'s' if count > 1 else ''} (cpu)"
    for a, b in zip(plain.get_weights(), distributed.get_weights()):
        np.testing.assert_allclose(b, a, atol=1e-5)


@pytest.mark.large
@no_torch_engine
def test_data_parallel_fit_equals_one_device_on_the_same_global_batch(initial_weights):
    tmp_path = initial_weights
    single, parallel = _run("single", tmp_path), _run("parallel", tmp_path)
    devices = 4 if BACKEND == "jax" else 2
    assert parallel["description"] == f"data parallel over {devices} devices (cpu)"
    if BACKEND == "jax":
        assert parallel["data_axes"][0] == "batch" and parallel["mesh_devices"] == 4
    a, b = np.load(tmp_path / "single.npz"), np.load(tmp_path / "parallel.npz")
    assert len(a.files) == len(b.files) > 0
    for key in a.files:
        np.testing.assert_allclose(b[key], a[key], atol=1e-4, err_msg=key)
    # Top-k metrics under sharding: what the metric reports equals top-2 computed from the predictions.
    probs, labels = np.array(parallel["probabilities"]), np.array(parallel["labels"])
    expected_top2 = np.mean(np.any(np.argsort(-probs, -1)[:, :2] == labels[:, None], -1))
    assert 0 < expected_top2 < 1  # held-out images: a metric that could be wrong
    assert parallel["metrics"]["accuracy"] == pytest.approx(np.mean(np.argmax(probs, -1) == labels), abs=1e-6)
    assert parallel["metrics"]["top2"] == pytest.approx(expected_top2, abs=1e-6)
    assert parallel["metrics"]["top2"] == pytest.approx(single["metrics"]["top2"], abs=1e-6)


@pytest.mark.large
@pytest.mark.skipif(BACKEND != "jax", reason="the LayoutMap is keras.distribution's model parallelism, which Keras 3.15 implements on JAX only")
def test_model_parallel_layout_shards_pointwise_kernels(initial_weights):
    report = _run("model_parallel", initial_weights)
    assert report["kernel_spec"] == ["None", "model"]
    rows, columns = report["kernel_shape"]
    assert report["kernel_shard_shapes"] == [[rows, columns // 2]]
    assert np.isfinite(report["loss"])


@no_torch_engine
def test_data_parallel_rejects_a_bad_device_count():
    with pytest.raises(ValueError, match="devices must be 'all' or an integer"):
        kc.distribute.data_parallel(0)


@pytest.mark.skipif(BACKEND != "torch", reason="checks the torch backend's refusal")
def test_torch_says_why_it_has_no_data_parallel():
    with pytest.raises(NotImplementedError, match="not for torch"):
        kc.distribute.data_parallel()


@pytest.mark.large
@no_torch_engine
def test_validation_on_all_devices_counts_each_of_a_prime_number_of_images_once(initial_weights):
    report = _run("uneven", initial_weights)
    assert report["description"] == f"data parallel over {4 if BACKEND == 'jax' else 2} devices (cpu)"
    for name in ("loss", "accuracy", "top2"):
        assert report["parallel"][name] == pytest.approx(report["single"][name], abs=1e-5), name


@pytest.mark.large
@no_torch_engine
def test_train_cli_with_devices_all_trains_on_a_prime_number_of_images(tmp_path):
    from helpers.image_folders import COLOURS, write_image_folder

    data = write_image_folder(tmp_path / "data")
    write_image_folder(data, per_class=15, classes={"red": COLOURS["red"]}, seed=1)  # 15 + 8 + 8 = 31 images
    done = subprocess.run(
        [sys.executable, "-m", "keras_convnext", "train", str(data), "--variant", "convnext_atto", "--image-size", "32",
         "--batch-size", "4", "--epochs", "2", "--devices", "all", "--verbose", "0", "--output", str(tmp_path / "run")],
        env={**os.environ, **SIMULATED_DEVICES, "KERAS_BACKEND": BACKEND}, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    # JAX sees the 4 simulated devices; TensorFlow has one CPU device unless it is split before it starts.
    expected = "data parallel over 4 devices (cpu)" if BACKEND == "jax" else "data parallel over 1 device (cpu)"
    assert expected in done.stdout and "the last partial batch of each epoch is dropped" in done.stdout
    # 25 training images: 6 whole batches of 4 per epoch; the 6 validation images, in batches of 4 and 2, all count.
    assert "(6 steps per epoch)" in done.stdout
    summary = json.loads((tmp_path / "run" / "train_config.json").read_text())["summary"]
    assert 0.0 <= summary["val_accuracy"] <= 1.0 and np.isfinite(summary["val_loss"])
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert "val_loss" in history[0] and len(history) == 3


@pytest.mark.skipif(BACKEND != "jax", reason="TensorFlow's CPU is one device here, and torch has no keras engine")
def test_train_refuses_a_batch_that_does_not_split_over_the_devices(tmp_path):
    from helpers.image_folders import write_image_folder

    data = write_image_folder(tmp_path / "data")
    done = subprocess.run(
        [sys.executable, "-m", "keras_convnext", "train", str(data), "--variant", "convnext_atto", "--image-size", "32",
         "--batch-size", "6", "--epochs", "1", "--devices", "all", "--output", str(tmp_path / "run")],
        env={**os.environ, **SIMULATED_DEVICES, "KERAS_BACKEND": BACKEND}, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "keras-convnext train: error: --batch-size 6 does not split evenly over 4 devices; use a multiple of 4."
    )
    assert not (tmp_path / "run").exists()
