"""``keras-convnext train`` and ``evaluate`` on image folders the tests write; resuming after SIGKILL."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from PIL import Image

import keras_convnext as kc
from helpers import BACKEND
from helpers.image_folders import write_image_folder
from keras_convnext.cli import main
from keras_convnext.training import read_history
from keras_convnext.training.datasets import evaluation_dataset

ENV = {**os.environ, "KERAS_BACKEND": BACKEND, "PYTHONUNBUFFERED": "1"}
SMALL = ["--variant", "convnext_atto", "--image-size", "32", "--batch-size", "4", "--verbose", "2"]


def _train_command(data, output, *extra):
    return [sys.executable, "-m", "keras_convnext", "train", str(data), *SMALL, "--output", str(output), *extra]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One short run with every option that changes what is written: EMA, mixed precision, MixUp and CutMix."""
    root = tmp_path_factory.mktemp("train")
    data = write_image_folder(root / "data")
    output = root / "run"
    status = main(["train", str(data), *SMALL, "--epochs", "2", "--ema", "--mixed-precision",
                   "--mixup", "0.8", "--cutmix", "1.0", "--output", str(output)])
    keras.config.set_dtype_policy("float32")
    assert status == 0
    return data, output


@pytest.mark.fast_tier_backend("torch")  # trained_run: two epochs with EMA, mixed precision, MixUp, CutMix
def test_train_writes_every_output(trained_run):
    _, output = trained_run
    names = {p.name for p in output.iterdir()}
    assert {"model.weights.h5", "model.keras", "history.csv", "training_curves.png", "train_config.json"} <= names
    assert "backup" not in names and not [n for n in names if "partial" in n]
    rows = read_history(output / "history.csv")
    assert [row["epoch"] for row in rows] == [0, 1]
    assert {"loss", "accuracy", "top2", "val_loss", "val_accuracy", "val_top2"} <= set(rows[0])
    assert "top3" not in rows[0]  # the top-3 of three classes is 1.0 whatever the model
    run = json.loads((output / "train_config.json").read_text())
    assert run["class_names"] == ["blue", "green", "red"] and run["summary"]["epochs"] == 2
    assert Image.open(output / "training_curves.png").size[0] > 100

    model = kc.create_model("convnext_atto", input_shape=(32, 32, 3), classes=3)
    model.load_weights(output / "model.weights.h5")
    restored = keras.saving.load_model(output / "model.keras")
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    # model.keras keeps the run's mixed_bfloat16 policy; the float32 rebuild agrees to bfloat16's precision.
    assert restored.get_layer("stage_0_block_0").compute_dtype == "bfloat16"
    np.testing.assert_allclose(model.predict(x, verbose=0), restored.predict(x, verbose=0), atol=2e-2)


@pytest.mark.fast_tier_backend("torch")  # trained_run: two epochs with EMA, mixed precision, MixUp, CutMix
def test_evaluate_writes_metrics_and_a_confusion_matrix_for_every_kind_of_run(trained_run, tmp_path):
    data, output = trained_run
    evaluation = tmp_path / "eval"
    assert main(["evaluate", str(data), "--weights", str(output), "--output", str(evaluation)]) == 0
    metrics = json.loads((evaluation / "metrics.json").read_text())
    matrix = np.array(metrics["confusion_matrix"])
    assert metrics["images"] == 24 and matrix.sum() == 24 and matrix.shape == (3, 3)
    assert metrics["accuracy"] == pytest.approx(np.trace(matrix) / 24)
    # What evaluate reports equals what the run's model ranks, image by image (top-3 of 3 classes is left out).
    images, labels, _ = evaluation_dataset(data, image_size=32, batch_size=32, class_names=["blue", "green", "red"])
    ranked = np.argsort(-keras.saving.load_model(output / "model.keras").predict(images, verbose=0), axis=-1)
    assert "top3_accuracy" not in metrics
    assert metrics["accuracy"] == pytest.approx(np.mean(ranked[:, 0] == labels))
    assert metrics["top2_accuracy"] == pytest.approx(np.mean(np.any(ranked[:, :2] == labels[:, None], axis=-1)))
    assert Image.open(evaluation / "confusion_matrix.png").size[0] > 100
    # The .weights.h5 is rebuilt in float32, so a bfloat16-trained model's near-ties may flip: its accuracy
    # agrees to 2 images in 24.
    again = tmp_path / "eval-weights"
    assert main(["evaluate", str(data), "--weights", str(output / "model.weights.h5"), "--output", str(again)]) == 0
    assert json.loads((again / "metrics.json").read_text())["accuracy"] == pytest.approx(metrics["accuracy"], abs=2 / 24)


@pytest.mark.large
def test_evaluating_the_run_folder_means_its_model_keras(trained_run, tmp_path):
    data, output = trained_run
    for name, weights in (("folder", output), ("keras", output / "model.keras")):
        assert main(["evaluate", str(data), "--weights", str(weights), "--output", str(tmp_path / name)]) == 0
    folder, keras_file = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("folder", "keras"))
    assert keras_file["accuracy"] == pytest.approx(folder["accuracy"])
    assert keras_file["confusion_matrix"] == folder["confusion_matrix"]


@pytest.mark.large
@pytest.mark.once  # the CLI's defaults learning; fit on every backend is test_training's
def test_training_learns_a_simple_folder(tmp_path):
    data = write_image_folder(tmp_path / "data", per_class=12)
    assert main(["train", str(data), *SMALL, "--epochs", "6", "--no-rand-augment", "--random-erasing", "0",
                 "--validation-split", "0", "--lr", "3e-3", "--output", str(tmp_path / "run")]) == 0
    rows = read_history(tmp_path / "run" / "history.csv")
    assert rows[-1]["loss"] < rows[0]["loss"], rows
    assert main(["evaluate", str(data), "--weights", str(tmp_path / "run"), "--output", str(tmp_path / "eval")]) == 0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["accuracy"] >= 0.9


def _wait_for_backup(output, process, epoch, timeout=400):
    state = output / "backup" / "state.json"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            pytest.fail(f"training ended before epoch {epoch}: {process.stdout.read()[-2000:]}")
        if state.exists() and json.loads(state.read_text())["epoch"] >= epoch:
            return
        time.sleep(0.05)
    pytest.fail(f"no backup of epoch {epoch} within {timeout} s")


@pytest.mark.large
@pytest.mark.once  # the kill and resume are the run's bookkeeping; the backup itself is test_training's, on every backend
def test_a_run_killed_after_an_epoch_resumes_and_runs_only_the_remaining_epochs(tmp_path):
    data = write_image_folder(tmp_path / "data")
    output = tmp_path / "run"
    epochs = 8
    first = subprocess.Popen(_train_command(data, output, "--epochs", str(epochs)), env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for_backup(output, first, epoch=2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not (output / "model.weights.h5").exists()

    second = subprocess.run(_train_command(data, output, "--epochs", str(epochs), "--resume"), env=ENV,
                            capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    log = second.stdout + second.stderr
    resumed_after = int(re.search(r"resuming after epoch (\d+)", log).group(1))
    assert 2 <= resumed_after < epochs
    ran = sorted(int(n) for n in re.findall(rf"Epoch (\d+)/{epochs}", log))
    assert ran == list(range(resumed_after + 1, epochs + 1)), ran
    assert [row["epoch"] for row in read_history(output / "history.csv")] == list(range(epochs))
    assert json.loads((output / "train_config.json").read_text())["summary"]["epochs"] == epochs
    model = kc.create_model("convnext_atto", input_shape=(32, 32, 3), classes=3)
    model.load_weights(output / "model.weights.h5")
    keras.saving.load_model(output / "model.keras")
    Image.open(output / "training_curves.png").verify()
    assert not (output / "backup").exists()

    again = subprocess.run(_train_command(data, output, "--epochs", str(epochs), "--resume"), env=ENV,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "nothing to resume" in again.stdout, again.stdout + again.stderr


def _save_pil(path, image_format, cut=False, palette=False):
    image = Image.fromarray(np.full((40, 40, 3), (220, 40, 40), "uint8"))
    image = image.convert("P") if palette else image
    image.save(path, image_format)
    if cut:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: root.mkdir(), "No images"),
        (lambda root: write_image_folder(root, classes={"red": (200, 0, 0)}), "expected at least 2 sub-folders"),
        (lambda root: (write_image_folder(root), (root / "red" / "broken.png").write_bytes(b"not a png")),
         r"cannot be trained on: .*broken\.png \(not a decodable image"),
        (lambda root: (write_image_folder(root), _save_pil(root / "red" / "half.jpg", "JPEG", cut=True)),
         r"half\.jpg \(not a decodable image, or cut short"),
        (lambda root: (write_image_folder(root), _save_pil(root / "red" / "tiff.png", "TIFF")),
         r"tiff\.png \(not a decodable image"),
        (lambda root: (write_image_folder(root), _save_pil(root / "red" / "palette.bmp", "BMP", palette=True)),
         r"palette\.bmp \(an 8-bit palette BMP, whose colours TensorFlow's decoder would read as grey"),
        (lambda root: (write_image_folder(root), (root / "red" / "bomb.gif").write_bytes(
            b"GIF89a" + (60000).to_bytes(2, "little") * 2 + bytes(20))),
         r"bomb\.gif \(its header declares 60000x60000 = 3600\.0 megapixels"),
        (lambda root: None, "is not a folder"),
    ],
    ids=["empty", "one-class", "unreadable-file", "cut-jpeg", "tiff-named-png", "palette-bmp", "bomb", "missing"],
)
def test_train_refuses_bad_folders_with_a_clear_error(tmp_path, capsys, make, message):
    root = tmp_path / "data"
    make(root)
    assert main(["train", str(root), *SMALL, "--output", str(tmp_path / "run")]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "run").exists()  # refused before writing anything


@pytest.mark.fast_tier_backend("torch")  # trained_run: two epochs with EMA, mixed precision, MixUp, CutMix
def test_train_refuses_to_mix_runs_in_one_folder(trained_run, capsys):
    data, output = trained_run
    before = (output / "model.weights.h5").read_bytes()
    assert main(["train", str(data), *SMALL, "--epochs", "2", "--output", str(output)]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main(["train", str(data), *SMALL, "--epochs", "3", "--ema", "--mixed-precision", "--mixup", "0.8",
                 "--cutmix", "1.0", "--resume", "--output", str(output)]) == 2
    assert capsys.readouterr().err.strip().endswith("differ from " + str(output / "train_config.json") + ": epochs: was 2, now 3.")
    assert (output / "model.weights.h5").read_bytes() == before


@pytest.mark.fast_tier_backend("torch")  # trained_run: two epochs with EMA, mixed precision, MixUp, CutMix
def test_evaluate_refuses_a_folder_with_other_classes(trained_run, tmp_path, capsys):
    _, output = trained_run
    other = write_image_folder(tmp_path / "other", per_class=2, classes={"cat": (0, 0, 0), "dog": (255, 255, 255)})
    assert main(["evaluate", str(other), "--weights", str(output), "--output", str(tmp_path / "e")]) == 2
    assert "trained on classes ['blue', 'green', 'red']" in capsys.readouterr().err


@pytest.mark.once  # the refusal comes before any backend work
def test_a_second_train_on_a_folder_another_process_writes_is_refused_naming_it(tmp_path, capsys):
    from keras_convnext.training.run_lock import exclusive_run

    data = write_image_folder(tmp_path / "data", per_class=2)
    output = tmp_path / "run"
    hold = "import sys, time\nfrom keras_convnext.training.run_lock import exclusive_run\n" \
           "with exclusive_run(sys.argv[1]):\n    print('holding', flush=True)\n    time.sleep(300)\n"
    first = subprocess.Popen([sys.executable, "-c", hold, str(output)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "holding"
        assert main(["train", str(data), *SMALL, "--epochs", "1", "--output", str(output)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("keras-convnext train: error: "), err
        assert f"is being written by another keras-convnext train (process {first.pid} on " in err[0]
        assert sorted(p.name for p in output.iterdir()) == [".train.lock"]  # nothing of the second run written
    finally:
        first.kill()
        first.wait()
    with exclusive_run(output):  # a killed holder leaves no lock behind
        assert (output / ".train.lock").read_text().startswith(f"process {os.getpid()} on ")


def test_the_run_lock_leaves_a_folder_as_it_found_it(tmp_path):
    from keras_convnext.training.run_lock import exclusive_run

    with pytest.raises(RuntimeError, match="refused before writing"), exclusive_run(tmp_path / "new"):
        raise RuntimeError("refused before writing")
    assert not (tmp_path / "new").exists()
    with exclusive_run(tmp_path / "run"):
        (tmp_path / "run" / "history.csv").write_text("epoch\n")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["history.csv"]
