"""The ``keras-convnext`` command: ``info``, ``demo``, and the one-liner of the README."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_convnext as kc
from conftest import BACKEND
from keras_convnext.cli import build_parser
from keras_convnext.demo import CLASS_NAMES, make_pattern_images, run_demo

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


def test_python_dash_m_runs_the_same_command():
    assert "convnextv2_huge" in _run([sys.executable, "-m", "keras_convnext", "info"])


def test_readme_one_liner_prints_the_tiny_count():
    code = "import keras_convnext as kc; print(kc.create_model('convnext_tiny').count_params())"
    assert _run([sys.executable, "-c", code]).strip().splitlines()[-1] == "28589128"


def test_cli_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--epochs", "0"])
    assert "expected a positive integer, got '0'" in capsys.readouterr().err


def test_pattern_images_are_balanced_rgb_in_range():
    images, labels = make_pattern_images(40, size=32, seed=3)
    assert images.shape == (40, 32, 32, 3) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 255
    assert np.bincount(labels).tolist() == [10] * len(CLASS_NAMES)


def test_demo_learns_saves_and_reloads(tmp_path):
    lines = []
    result = run_demo(epochs=3, samples=600, output=tmp_path, log=lines.append)
    assert result["backend"] == BACKEND
    assert result["accuracy"] >= 0.8, lines
    weights = Path(result["weights"])
    assert weights.exists() and weights.parent == tmp_path
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]  # no temporary file left behind
    assert any("held-out accuracy" in line for line in lines)
    assert sum("true" in line for line in lines) == 6
