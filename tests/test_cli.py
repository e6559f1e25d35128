"""The ``keras-convnext`` command: ``info``, ``demo``, and the one-liner of the README."""

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_convnext as kc
from helpers import BACKEND
from keras_convnext.cli import build_parser, main
from keras_convnext.demo import ascii_digit, held_out_split, load_digits_images, run_demo

ENV = {**os.environ, "KERAS_BACKEND": BACKEND}


def _run(args):
    result = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_info_lists_every_variant_with_its_parameter_count_and_the_backend():
    console_script = Path(sys.executable).with_name("keras-convnext")
    command = [str(console_script)] if console_script.exists() else [shutil.which("keras-convnext")]
    out = _run(command + ["info"])
    assert f"backend: {BACKEND}" in out
    assert f"keras: {keras.__version__}" in out
    for name in kc.list_models():
        assert name in out
    assert "28,589,128" in out and "660,289,640" in out


@pytest.mark.once
def test_python_dash_m_runs_the_same_command():
    assert "convnextv2_huge" in _run([sys.executable, "-m", "keras_convnext", "info"])


@pytest.mark.once
def test_readme_one_liner_prints_the_tiny_count():
    code = "import keras_convnext as kc; print(kc.create_model('convnext_tiny').count_params())"
    assert _run([sys.executable, "-c", code]).strip().splitlines()[-1] == "28589128"


def test_cli_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--epochs", "0"])
    assert "expected a positive integer, got '0'" in capsys.readouterr().err


def test_digits_are_upsampled_rgb_with_a_stratified_held_out_fifth():
    images, labels, originals = load_digits_images(32)
    assert images.shape == (1797, 32, 32, 3) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 255 and images.max() > 200
    np.testing.assert_array_equal(images[..., 0], images[..., 2])  # greyscale copied to RGB
    assert originals.shape == (1797, 8, 8) and originals.max() == 16
    train, held_out = held_out_split(labels)
    assert len(np.intersect1d(train, held_out)) == 0 and len(train) + len(held_out) == 1797
    assert np.all(np.abs(np.bincount(labels[held_out]) - 0.2 * np.bincount(labels)) <= 0.5)
    assert ascii_digit(originals[0])[0] == "".join(" .:-=+*#%@"[round(v / 16 * 9)] * 2 for v in originals[0][0])


@pytest.mark.large
def test_demo_learns_saves_and_reloads(tmp_path):
    # The full demo (10 epochs) is the README's first command; two epochs show it learns and round-trips here.
    lines = []
    result = run_demo(epochs=2, output=tmp_path, log=lines.append)
    assert result["backend"] == BACKEND
    assert result["accuracy"] >= 0.6, lines
    weights = Path(result["weights"])
    assert weights.exists() and weights.parent == tmp_path
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]  # no temporary file left behind
    assert any("held-out accuracy" in line for line in lines)
    assert sum(line.count("true") for line in lines) == 4


def test_train_flags_come_from_the_config_and_keep_their_names():
    from keras_convnext.training.trainer import TrainConfig

    parser = build_parser()
    defaults = parser.parse_args(["train", "data"])
    assert TrainConfig(**{f.name: getattr(defaults, f.name) for f in dataclasses.fields(TrainConfig)}) == TrainConfig("data")
    args = parser.parse_args(["train", "data", "--lr", "0.01", "--drop-path", "0.2", "--no-rand-augment", "--ema",
                              "--mixed-precision", "--layer-decay", "0.8", "--epochs", "3", "--devices", "all",
                              "--warmup-fraction", "0.05", "--ema-momentum", "0.99"])
    assert (args.learning_rate, args.drop_path_rate, args.rand_augment, args.ema, args.mixed_precision) == (
        0.01, 0.2, False, True, "mixed_bfloat16")
    assert (args.layer_decay, args.epochs, args.devices, args.warmup_fraction, args.ema_momentum) == (0.8, 3, "all", 0.05, 0.99)
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "data", "--batch-size", "0"])
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "data", "--mixed-precision", "float64"])


def test_every_command_that_takes_a_variant_shares_one_flag(capsys):
    parser = build_parser()
    for command in (["demo"], ["train", "d"], ["evaluate", "d", "--weights", "w"], ["export", "m", "o"], ["bench"],
                    ["convert", "s", "-o", "x"]):
        args = parser.parse_args([*command, "--variant", "convnextv2_nano"])
        assert args.variant == "convnextv2_nano", command


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    import keras_convnext.info

    def broken():
        raise RuntimeError("the version table is gone")

    monkeypatch.setattr(keras_convnext.info, "format_info", broken)
    monkeypatch.delenv("KERAS_CONVNEXT_DEBUG", raising=False)
    assert main(["info"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["keras-convnext info: error: RuntimeError: the version table is gone (run with --debug or "
                   "KERAS_CONVNEXT_DEBUG=1 for the traceback)"]
    for argv in (["--debug", "info"], ["info", "--debug"]):
        with pytest.raises(RuntimeError, match="the version table is gone"):
            main(argv)
    monkeypatch.setenv("KERAS_CONVNEXT_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["info"])
