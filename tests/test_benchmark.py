"""keras-convnext bench: alternation, the ratio arithmetic, every candidate on a small input, the CLI and JSON."""

import json
import os
import subprocess
import sys

import pytest

from conftest import BACKEND
from keras_convnext.benchmarks.throughput import Candidate, alternate, run_benchmark, summarize


def test_candidates_alternate_after_untimed_warmup():
    order = []
    candidates = [Candidate(name, name, lambda name=name: order.append(name)) for name in "ab"]
    seconds = alternate(candidates, rounds=3, warmup=1)
    assert order == list("ab" * 4)
    assert {name: len(times) for name, times in seconds.items()} == {"a": 3, "b": 3}


def test_ratios_are_per_round_and_above_one_when_ours_is_faster():
    seconds = {"keras_convnext": [1.0, 2.0, 1.0], "torch_eager": [2.0, 2.0, 4.0]}
    summary = summarize(seconds, batch_size=8)
    assert summary["images_per_second"] == {"keras_convnext": 8.0, "torch_eager": 4.0}
    assert summary["ratios"]["torch_eager"] == {"median": 2.0, "min": 1.0, "max": 4.0}


@pytest.mark.parametrize(
    "arguments, message",
    [({"modes": ("serving",)}, "Unknown benchmark mode"), ({"dtype": "int8"}, "Unknown benchmark dtype"),
     ({"baselines": ("timm_jit",)}, "Unknown baselines"), ({"image_size": 16}, "image_size >= 32")],
)
def test_bad_benchmark_arguments_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        run_benchmark("convnext_atto", **arguments)


def test_every_candidate_runs_both_modes_on_a_small_input():
    result = run_benchmark("convnext_tiny", batch_size=1, image_size=32, rounds=2, warmup=1)
    assert result["backend"] == BACKEND and result["machine"]["cpu_count"] >= 1
    for mode in ("inference", "training"):
        summary = result["modes"][mode]
        assert set(summary["candidates"]) == {"keras_convnext", "keras_applications", "torch_eager"}
        assert "folded" in summary["candidates"]["keras_convnext"] or mode == "training"
        assert all(speed > 0 for speed in summary["images_per_second"].values())
        assert set(summary["ratios"]) == {"keras_applications", "torch_eager"}
        assert all(len(times) == 2 for times in summary["seconds_per_step"].values())


def test_cli_prints_the_table_and_writes_json(tmp_path):
    output = tmp_path / "bench.json"
    command = [sys.executable, "-m", "keras_convnext", "bench", "--variant", "convnext_atto", "--image-size", "32",
               "--batch-size", "2", "--rounds", "2", "--warmup", "1", "--mode", "inference",
               "--baselines", "torch_eager", "--json", str(output)]
    result = subprocess.run(command, env={**os.environ, "KERAS_BACKEND": BACKEND}, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "torch_eager" in result.stdout and "img/s" in result.stdout
    written = json.loads(output.read_text())
    assert written["variant"] == "convnext_atto" and written["backend"] == BACKEND
    assert written["modes"]["inference"]["ratios"]["torch_eager"]["median"] > 0
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.skipif(BACKEND == "tensorflow", reason="op_profile covers torch (torch.profiler) and JAX (block parts); "
                    "TensorFlow meets its targets and has no table")
def test_op_profile_prints_a_table_for_the_backend():
    from keras_convnext.benchmarks import op_profile

    if BACKEND == "torch":
        table = op_profile.torch_op_table("convnext_atto", batch_size=1, image_size=32, steps=1, rows=5)
        assert "keras_convnext" in table and "native torch" in table and len(table.splitlines()) == 2 + 5 + 1
    else:
        table = op_profile.jax_block_table(batch_size=1, image_size=32, dims=(8, 16))
        rows = table.splitlines()[2:]
        assert [row.split()[0] for row in rows] == ["1x8x8x8", "1x4x4x16"]
        # Four timings per row; on inputs this small they may round to 0.0 ms, so only their form is checked.
        assert all(len(row.split()) == 5 and all(float(cell) >= 0 for cell in row.split()[1:]) for row in rows)
