"""Data parallel training on the torch backend: one process per device on torch.distributed (gloo on this CPU),
each training on its own shard of every global batch with ``model.fit``, the gradients averaged in backward."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import keras_convnext as kc
from helpers import BACKEND
from helpers.image_folders import write_image_folder
from keras_convnext.training.rank_shards import class_labels, load_image, rank_indices

torch_only = pytest.mark.skipif(BACKEND != "torch", reason="torch.distributed is the torch backend's engine")
two_cores = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="two gloo processes need two CPU cores here")
TRAIN = ["--variant", "convnext_atto", "--image-size", "32", "--batch-size", "8", "--no-rand-augment",
         "--random-erasing", "0", "--drop-path", "0", "--verbose", "2"]


def _train(data, output, *extra, env=None, timeout=900):
    return subprocess.run(
        [sys.executable, "-m", "keras_convnext", "train", str(data), *TRAIN, "--output", str(output), *extra],
        env={**os.environ, "KERAS_BACKEND": "torch", "PYTHONUNBUFFERED": "1", **(env or {})},
        capture_output=True, text=True, timeout=timeout,
    )


def _weights(path):
    import h5py

    with h5py.File(path) as file:
        arrays = {}
        file.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if hasattr(item, "shape") else None)
    return arrays


# Two processes sum the gradients in another order than one: 2.9e-6 measured on this CPU after 3 epochs; about 10x
# that, so that a regression of 100x fails. A resumed run is the uninterrupted one bit for bit (0 measured).
TWO_PROCESSES_TOLERANCE = 3e-5


def _assert_same_weights(a, b, atol):
    first, second = _weights(a), _weights(b)
    assert first.keys() == second.keys() and len(first) > 100
    print(f"{a.parent.name} vs {b.parent.name}: max |delta| {max(float(np.abs(second[n] - first[n]).max()) for n in first):.2e}")
    for name in first:
        np.testing.assert_allclose(second[name], first[name], atol=atol, rtol=0, err_msg=name)


@pytest.mark.once
def test_the_processes_shares_make_up_the_global_batches_of_one_process():
    count, batch, world = 29, 8, 4
    for epoch in range(3):
        alone = rank_indices(count, global_batch=batch, rank=0, world_size=1, seed=5, epoch=epoch).reshape(-1, batch)
        shares = [rank_indices(count, global_batch=batch, rank=r, world_size=world, seed=5, epoch=epoch).reshape(-1, 2)
                  for r in range(world)]
        assert alone.shape == (3, 8)  # 29 images: 3 whole batches, the last 5 dropped this epoch
        for step in range(3):
            np.testing.assert_array_equal(np.concatenate([share[step] for share in shares]), alone[step])
    orders = [tuple(rank_indices(count, global_batch=batch, rank=0, world_size=1, seed=5, epoch=e)) for e in range(3)]
    assert len(set(orders)) == 3  # reshuffled every epoch
    assert orders[0] == tuple(rank_indices(count, global_batch=batch, rank=0, world_size=1, seed=5, epoch=0))


@pytest.mark.once
def test_shards_read_images_and_labels_as_image_dataset_from_directory(tmp_path):
    import tensorflow as tf

    data = write_image_folder(tmp_path / "data", per_class=2, size=30)  # 30x36: the centre crop matters
    reference = keras.utils.image_dataset_from_directory(
        data, label_mode="int", image_size=(24, 24), crop_to_aspect_ratio=True, shuffle=False, batch_size=64,
        verbose=False,
    )
    images, labels = next(iter(reference))
    paths = reference.file_paths
    assert class_labels(paths, data, reference.class_names).tolist() == np.asarray(labels).tolist()
    ours = np.stack([load_image(tf.constant(path), 24).numpy() for path in paths])
    np.testing.assert_allclose(ours, np.asarray(images), atol=1e-4)


@torch_only
@two_cores
def test_without_torchrun_several_devices_name_the_torchrun_command():
    with pytest.raises(ValueError, match=r"torchrun --standalone --nproc-per-node 2"):
        kc.distribute.data_parallel(2)
    setup = kc.distribute.data_parallel("all")  # one CPU: this process alone
    assert setup.description == "data parallel over 1 device (cpu)" and setup.prepare(None) == []


@torch_only
def test_a_weight_left_out_of_backward_stops_training_instead_of_drifting(monkeypatch):
    import torch.distributed as dist

    from keras_convnext.torch_data_parallel import DataParallelCallback, GradientAverager
    from keras_convnext.torch_launcher import free_port

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    dist.init_process_group("gloo", init_method="env://", rank=0, world_size=1)
    try:
        class Unused(keras.layers.Layer):
            def build(self, shape):
                self.ignored = self.add_weight(shape=(3,), name="ignored")

            def call(self, x):
                return x

        inputs = keras.Input((4,))
        model = keras.Model(inputs, keras.layers.Dense(2)(Unused()(inputs)))
        model.compile(optimizer="sgd", loss="mse")
        callback = DataParallelCallback(GradientAverager(model))
        with pytest.raises(RuntimeError, match=r"no gradient for \['unused/ignored'\]"):
            model.fit(np.ones((4, 4)), np.ones((4, 2)), epochs=1, verbose=0, callbacks=[callback])
    finally:
        dist.destroy_process_group()


@pytest.mark.large
@torch_only
@two_cores
def test_train_refuses_a_batch_that_does_not_split_over_the_processes_before_starting_them(tmp_path):
    data = write_image_folder(tmp_path / "data")
    done = _train(data, tmp_path / "run", "--devices", "2", "--batch-size", "7")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "keras-convnext train: error: --batch-size 7 does not split evenly over 2 devices; use a multiple of 2."
    )
    assert not (tmp_path / "run").exists()
    too_many = _train(data, tmp_path / "run", "--devices", str((os.cpu_count() or 1) + 1))
    assert too_many.returncode == 2 and "this host has" in too_many.stderr.strip().splitlines()[-1]


@pytest.mark.large
@torch_only
def test_a_process_that_cannot_reach_the_master_says_so_and_writes_nothing(tmp_path):
    from keras_convnext.torch_launcher import free_port

    data = write_image_folder(tmp_path / "data")
    port = free_port()  # nothing listens there
    env = {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    done = _train(data, tmp_path / "run", "--devices", "all", "--join-timeout", "2", env=env, timeout=300)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"keras-convnext train: error: rank 1 of 2 could not join the process group at "
                           f"127.0.0.1:{port} within 2 s"), last
    assert not (tmp_path / "run").exists()


def _wait_for_backup(output, process, epoch, timeout=600):
    state = output / "backup" / "state.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state.exists() and json.loads(state.read_text())["epoch"] >= epoch:
            return
        if process.poll() is not None:
            pytest.fail(f"the run ended before backing up epoch {epoch}: {process.stdout.read()[-3000:]}")
        time.sleep(0.05)
    pytest.fail(f"no backup of epoch {epoch} within {timeout} s")


@pytest.mark.large
@torch_only
@two_cores
def test_two_gloo_processes_train_like_one_and_resume_after_a_kill(tmp_path):
    data = write_image_folder(tmp_path / "data", per_class=13, classes={"a": (128, 128, 128), "b": (128, 128, 128)})
    one = _train(data, tmp_path / "one", "--epochs", "3", "--devices", "1")
    two = _train(data, tmp_path / "two", "--epochs", "3", "--devices", "2")
    for done in (one, two):
        assert done.returncode == 0, done.stderr[-4000:]
    assert "data parallel over 2 devices (cpu)" in two.stdout and two.stdout.count("wrote ") == 1
    # 26 images, 21 for training: 2 whole global batches of 8 per epoch, 4 images per process and step.
    assert "(2 steps per epoch)" in two.stdout
    _assert_same_weights(tmp_path / "one" / "model.weights.h5", tmp_path / "two" / "model.weights.h5", TWO_PROCESSES_TOLERANCE)
    summary = {name: json.loads((tmp_path / name / "train_config.json").read_text())["summary"] for name in ("one", "two")}
    for key in ("val_loss", "val_accuracy"):
        assert summary["two"][key] == pytest.approx(summary["one"][key], abs=1e-5), key
    one_rows = (tmp_path / "one" / "history.csv").read_text().splitlines()
    two_rows = (tmp_path / "two" / "history.csv").read_text().splitlines()
    for a, b in zip(one_rows[1:], two_rows[1:]):  # training loss averaged over the processes, as on one
        np.testing.assert_allclose(np.array(b.split(","), float), np.array(a.split(","), float), atol=1e-5)

    killed = subprocess.Popen(
        [sys.executable, "-m", "keras_convnext", "train", str(data), *TRAIN, "--output", str(tmp_path / "resumed"),
         "--epochs", "3", "--devices", "2"],
        env={**os.environ, "KERAS_BACKEND": "torch"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    _wait_for_backup(tmp_path / "resumed", killed, epoch=1)
    os.killpg(killed.pid, signal.SIGKILL)  # the launcher and both processes at once
    killed.wait()
    resumed = _train(data, tmp_path / "resumed", "--epochs", "3", "--devices", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resuming after epoch" in resumed.stdout
    # The data order of the remaining epochs is the uninterrupted run's: the same weights.
    _assert_same_weights(tmp_path / "two" / "model.weights.h5", tmp_path / "resumed" / "model.weights.h5", 0.0)
