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
    reason="on torch each device is its own process (torch.distributed, one model.fit per process), not devices of "
    "one process as here; tests/test_torch_data_parallel.py trains two gloo processes against one",
)


def _run(mode, tmp_path):
    done = run_worker("distribute", mode, tmp_path / "initial.weights.h5", tmp_path, env=SIMULATED_DEVICES)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads((tmp_path / f"{mode}.json").read_text())


@pytest.fixture(scope="module")
def initial_weights(tmp_path_factory):
    # The worker builds the same TINY_ARCH; importing the worker here would reconfigure TensorFlow's devices.
    tmp_path = tmp_path_factory.mktemp("distribute")
    model = perturb(kc.ConvNeXt(**TINY_ARCH, input_shape=(32, 32, 3), classes=4), scale=0.05)
    kc.weights.save_weights(model, tmp_path / "initial.weights.h5")
    return tmp_path


@pytest.fixture(scope="module")
def single_device_run(initial_weights):
    """The one-device run the data-parallel runs are compared with (one per module: it takes a process)."""
    return _run("single", initial_weights)


@pytest.mark.large
@no_torch_engine
def test_data_parallel_all_on_a_one_device_process_is_plain_training(rng):
    """``data_parallel("all")`` where the process has one device (the test process: the simulated devices exist only
    in the workers) trains exactly like no distribution; several devices are the worker tests below."""
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
    assert len(setup.devices) == 1 and setup.description == "data parallel over 1 device (cpu)"
    for a, b in zip(plain.get_weights(), distributed.get_weights()):
        np.testing.assert_allclose(b, a, atol=1e-5)


@pytest.mark.large
@no_torch_engine
def test_data_parallel_fit_equals_one_device_on_the_same_global_batch(initial_weights, single_device_run):
    tmp_path = initial_weights
    single, parallel = single_device_run, _run("parallel", tmp_path)
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


def test_data_parallel_rejects_a_bad_device_count():
    with pytest.raises(ValueError, match="devices must be 'all' or an integer"):
        kc.distribute.data_parallel(0)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TF_CONFIG is TensorFlow's multi-worker description")
def test_a_multi_worker_tf_config_is_refused_with_the_keras_issue(monkeypatch):
    cluster = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    with pytest.raises(NotImplementedError, match=r"2 workers.*keras-team/keras#20585.*KERAS_BACKEND=jax"):
        kc.distribute.data_parallel()


@pytest.mark.large
@no_torch_engine
def test_validation_on_all_devices_counts_each_of_a_prime_number_of_images_once(initial_weights):
    report = _run("uneven", initial_weights)
    assert report["description"] == f"data parallel over {4 if BACKEND == 'jax' else 2} devices (cpu)"
    for name in ("loss", "accuracy", "top2"):
        assert report["parallel"][name] == pytest.approx(report["single"][name], abs=1e-5), name


# What `--devices` means on this CPU: JAX's 4 host devices (XLA_FLAGS), 2 TensorFlow logical CPUs, 2 gloo processes.
CLI_DEVICES = {"jax": ("all", 4), "tensorflow": ("2", 2), "torch": ("2", 2)}


def _validation_folder(data, destination):
    """The files train's 20 % validation split holds (seed 0), copied into a folder of their own."""
    import shutil

    _, validation = keras.utils.image_dataset_from_directory(
        data, validation_split=0.2, subset="both", seed=0, image_size=(32, 32), verbose=False
    )
    for path in validation.file_paths:
        target = destination / os.path.relpath(path, data)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    return destination, len(validation.file_paths)


@pytest.mark.large
@pytest.mark.skipif((os.cpu_count() or 1) < 2 and BACKEND == "torch", reason="two gloo processes need two cores")
def test_train_cli_on_several_devices_writes_once_and_evaluate_agrees_with_its_log(tmp_path):
    from helpers.image_folders import write_image_folder

    # 2 classes x 13 images of the same grey: held-out accuracy is anything but certain.
    data = write_image_folder(tmp_path / "data", per_class=13, classes={"a": (128, 128, 128), "b": (128, 128, 128)})
    devices, count = CLI_DEVICES[BACKEND]
    done = subprocess.run(
        [sys.executable, "-m", "keras_convnext", "train", str(data), "--variant", "convnext_atto", "--image-size", "32",
         "--batch-size", "4", "--epochs", "2", "--devices", devices, "--verbose", "0", "--output", str(tmp_path / "run")],
        env={**os.environ, **SIMULATED_DEVICES, "KERAS_BACKEND": BACKEND}, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"data parallel over {count} devices (cpu)" in done.stdout
    assert "the last partial batch of each epoch is dropped" in done.stdout
    assert done.stdout.count("wrote ") == 1  # one process writes and reports
    # 21 training images: 5 whole batches of 4 per epoch; the 5 validation images all count.
    assert "(5 steps per epoch)" in done.stdout
    summary = json.loads((tmp_path / "run" / "train_config.json").read_text())["summary"]
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert "val_loss" in history[0] and len(history) == 3 and summary["epochs"] == 2

    validation, images = _validation_folder(data, tmp_path / "validation")
    evaluated = subprocess.run(
        [sys.executable, "-m", "keras_convnext", "evaluate", str(validation), "--weights", str(tmp_path / "run"),
         "--output", str(tmp_path / "evaluation")],
        env={**os.environ, "KERAS_BACKEND": BACKEND}, capture_output=True, text=True, timeout=600,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    metrics = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    assert metrics["images"] == images == 5
    assert metrics["accuracy"] == pytest.approx(summary["val_accuracy"], abs=1e-6)


@pytest.mark.skipif(BACKEND != "jax", reason="one check (trainer.check_global_batch) serves every backend; JAX's 4 "
                    "simulated devices exercise it here, torch's launcher refusal is in test_torch_data_parallel.py")
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


@pytest.mark.large
@pytest.mark.skipif(BACKEND != "jax", reason="several hosts on one machine: JAX's processes over 127.0.0.1 "
                    "(keras.distribution.initialize); TensorFlow's MultiWorkerMirroredStrategy fails in Keras 3.15's fit "
                    "(keras-team/keras#20585) and is refused; torch's processes are in test_torch_data_parallel.py")
def test_two_jax_processes_on_127_0_0_1_train_like_one_device(initial_weights, single_device_run):
    from keras_convnext.torch_launcher import free_port

    tmp_path, single = initial_weights, single_device_run
    addresses = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    environment = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": os.pathsep.join(
        filter(None, [os.path.dirname(__file__), os.environ.get("PYTHONPATH")])),
        "KERAS_DISTRIBUTION_JOB_ADDRESSES": addresses, "KERAS_DISTRIBUTION_NUM_PROCESSES": "2"}
    processes = [
        subprocess.Popen([sys.executable, "-m", "workers.distribute", "multi_host", str(tmp_path / "initial.weights.h5"),
                          str(tmp_path)], env={**environment, "KERAS_DISTRIBUTION_PROCESS_ID": str(index)},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for index in range(2)
    ]
    outputs = [process.communicate(timeout=600)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    report = json.loads((tmp_path / "multi_host.json").read_text())
    assert report["processes"] == 2 and report["description"] == "data parallel over 2 devices (cpu)"
    a, b = np.load(tmp_path / "single.npz"), np.load(tmp_path / "multi_host.npz")
    assert len(a.files) == len(b.files) > 0 and single["backend"] == "jax"
    for key in a.files:
        np.testing.assert_allclose(b[key], a[key], atol=1e-4, err_msg=key)


@pytest.mark.large
@pytest.mark.once  # each backend's engine runs the train CLI's test above; pretrain's own part is writing once
@pytest.mark.skipif((os.cpu_count() or 1) < 2 and BACKEND == "torch", reason="two gloo processes need two cores")
def test_pretrain_cli_on_several_devices_writes_once(tmp_path):
    from helpers.image_folders import write_image_folder
    from keras_convnext.training import read_history

    data = write_image_folder(tmp_path / "data" / "any" / "nesting", per_class=3, size=72)
    devices, count = CLI_DEVICES[BACKEND]
    done = subprocess.run(
        [sys.executable, "-m", "keras_convnext", "pretrain", str(tmp_path / "data"), "--variant", "convnextv2_atto",
         "--image-size", "64", "--batch-size", "4", "--decoder-dim", "32", "--epochs", "2", "--devices", devices,
         "--verbose", "0", "--output", str(tmp_path / "run")],
        env={**os.environ, **SIMULATED_DEVICES, "KERAS_BACKEND": BACKEND}, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"data parallel over {count} devices (cpu)" in done.stdout
    assert done.stdout.count("wrote ") == 1  # one process writes and reports
    assert "(2 steps per epoch)" in done.stdout  # 9 images: 2 whole global batches of 4
    history = read_history(tmp_path / "run" / "history.csv")
    assert len(history) == 2 and np.isfinite([row["loss"] for row in history]).all()
    assert (tmp_path / "run" / "encoder.weights.h5").exists() and data.exists()
