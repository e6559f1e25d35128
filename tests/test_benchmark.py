"""keras-convnext bench: alternation, the ratio arithmetic, every candidate on a small input, the CLI and JSON."""

import json

import pytest

from helpers import BACKEND
from keras_convnext.cli import main
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


def _check_result(result, candidates, modes=("inference", "training")):
    assert result["backend"] == BACKEND and result["machine"]["cpu_count"] >= 1
    assert set(result["modes"]) == set(modes)
    for mode in modes:
        summary = result["modes"][mode]
        assert set(summary["candidates"]) == {"keras_convnext", *candidates}
        assert "folded" in summary["candidates"]["keras_convnext"] or mode == "training"
        assert all(speed > 0 for speed in summary["images_per_second"].values())
        assert set(summary["ratios"]) == set(candidates)
        assert all(len(times) == 2 for times in summary["seconds_per_step"].values())


@pytest.mark.large
def test_ours_and_native_torch_train_on_a_small_input():
    # keras.applications has no convnext_atto, so only the native PyTorch baseline runs beside ours here; the CLI
    # test below runs the inference mode.
    result = run_benchmark("convnext_atto", modes=("training",), batch_size=1, image_size=32, rounds=2, warmup=1,
                           baselines=("keras_applications", "torch_eager"))
    _check_result(result, {"torch_eager"}, modes=("training",))


@pytest.mark.large  # ConvNeXt-T and keras.applications' own, both modes (100 s per backend)
@pytest.mark.once  # the candidates' backend-specific steps are test_ours_and_native_torch_* on every backend
def test_every_candidate_runs_both_modes_on_convnext_tiny():
    result = run_benchmark("convnext_tiny", batch_size=1, image_size=32, rounds=2, warmup=1)
    _check_result(result, {"keras_applications", "torch_eager"})


def test_cli_prints_the_table_and_writes_json(tmp_path, capsys):
    output = tmp_path / "bench.json"
    assert main(["bench", "--variant", "convnext_atto", "--image-size", "32", "--batch-size", "2", "--rounds", "2",
                 "--warmup", "1", "--mode", "inference", "--baselines", "torch_eager", "--json", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "torch_eager" in printed and "img/s" in printed
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
        table = op_profile.jax_block_table(batch_size=1, image_size=32, dims=(8,))
        rows = table.splitlines()[2:]
        assert [row.split()[0] for row in rows] == ["1x8x8x8"]
        # Four timings per row; on inputs this small they may round to 0.0 ms, so only their form is checked.
        assert all(len(row.split()) == 5 and all(float(cell) >= 0 for cell in row.split()[1:]) for row in rows)


@pytest.mark.once
def test_gpu_weight_parity_fails_on_float32_drift_and_on_top1_flips_that_are_not_near_ties():
    import numpy as np

    from keras_convnext.benchmarks.gpu_weight_parity import FLOAT32_TOLERANCE, RUNS, compare

    # Image 0 has a clear winner (margin 2.0), image 1 a near-tie (margin 1e-3).
    truth = np.array([[3.0, 1.0, 0.0], [1.0, 1.001, 0.0]], "float32")
    reference = {run: truth for run in RUNS}
    near_tie_flipped = {**reference, "bfloat16_eager": truth + np.array([[0, 0, 0], [2e-3, 0, 0]], "float32")}
    assert compare(reference, near_tie_flipped)["passed"]
    assert compare(reference, near_tie_flipped)["bfloat16_eager"]["of_which_near_ties"] == [1]
    clear_winner_flipped = {**reference, "bfloat16_compiled": truth[:, [1, 0, 2]]}
    assert not compare(reference, clear_winner_flipped)["passed"]
    drifted = {**reference, "float32_compiled": truth + 2 * FLOAT32_TOLERANCE}
    result = compare(reference, drifted)
    assert not result["passed"] and not result["float32_compiled"]["within_tolerance"]


@pytest.mark.large
@pytest.mark.once
def test_gpu_weight_parity_runs_end_to_end_on_a_machine_without_a_gpu(tmp_path):
    from keras_convnext.benchmarks.gpu_weight_parity import main as parity

    result = tmp_path / "parity.json"
    assert parity([str(result), "--variant", "convnext_atto", "--image-size", "32", "--batch-size", "4",
                   "--accelerator", "cpu"]) == 0
    report = json.loads(result.read_text())
    assert report["passed"] and report["cross_backend_cpu_float32_max_abs_diff"] < 1e-4
    for backend in ("torch", "jax"):
        assert "cpu" in report[backend]["device"].lower()
        # The CPU stands for the GPU here: what is compared is compiled against eager, bfloat16 against float32.
        assert 0 < report[backend]["float32_compiled"]["max_abs_diff"] < 1e-5
        assert 0 < report[backend]["bfloat16_eager"]["max_abs_diff"] < 0.1 * report[backend]["logit_scale"]
        assert report[backend]["bfloat16_eager"]["top1_agreement"].endswith("/4")
    assert not list(tmp_path.glob("*.h5"))  # the weights stay in a temporary folder


@pytest.mark.once
def test_gpu_sweep_times_what_compiled_and_records_why_the_rest_was_left_out():
    from keras_convnext.benchmarks.gpu_sweep import Deadline, compile_then_alternate, summarize_sweep

    def rejected():
        raise ValueError("No such option: xla_gpu_made_up\nsecond line")

    calls = []
    candidates = [("fast", "", lambda: (lambda: calls.append("fast"))), ("rejected", "", rejected),
                  ("torch_compile", "", lambda: (lambda: calls.append("baseline")))]
    seconds, left_out, ready = compile_then_alternate(candidates, rounds=3, deadline=Deadline(60), warmup=1)
    assert [candidate.name for candidate in ready] == ["fast", "torch_compile"]
    assert left_out == {"rejected": "ValueError: No such option: xla_gpu_made_up"}
    # One warm-up each while compiling, one untimed alternating round, three timed ones.
    assert calls == ["fast", "baseline"] + ["fast", "baseline"] * 4 and len(seconds["fast"]) == 3
    _, left_out, ready = compile_then_alternate(candidates, rounds=1, deadline=Deadline(-1), always=1)
    assert [candidate.name for candidate in ready] == ["fast"] and set(left_out) == {"rejected", "torch_compile"}
    assert left_out["torch_compile"] == "not compiled: the sweep's time budget was spent"
    rows = summarize_sweep({"fast": [0.5, 0.25], "torch_compile": [1.0, 1.0]}, 8)
    assert rows["fast"]["images_per_second"] == pytest.approx(8 / 0.375)
    assert rows["fast"]["vs_torch_compile"] == {"median": 3.0, "min": 2.0, "max": 4.0}
    assert "vs_torch_compile" not in rows["torch_compile"]


@pytest.mark.once
def test_gpu_sweep_kernel_tables_name_what_ran_on_this_machine():
    import jax
    import jax.numpy as jnp
    import torch

    from keras_convnext.benchmarks.gpu_sweep import top_jax_kernels, top_torch_kernels

    matmul = jax.jit(lambda x: jnp.tanh(x @ x))
    x = jnp.ones((128, 128))
    matmul(x).block_until_ready()
    tables = top_jax_kernels(lambda: matmul(x).block_until_ready(), steps=2)
    rows = [row for table in tables.values() for row in table]
    assert rows and all(milliseconds >= 0 for _, milliseconds, _ in rows)
    assert any("dot" in name or "tanh" in name or "fusion" in name for name, _, _ in rows)
    a = torch.ones(256, 256)
    torch_rows = top_torch_kernels(lambda: a @ a, steps=2)
    assert any(name == "aten::mm" and calls == 1 for name, _, calls in torch_rows)


@pytest.mark.large
@pytest.mark.skipif(BACKEND != "jax", reason="the sweep's own candidates are JAX's (Keras steps, compiler options); "
                    "the torch sweep times the throughput benchmark's candidates, tested above")
def test_gpu_sweep_runs_end_to_end_on_a_cpu(tmp_path, capsys):
    from keras_convnext.benchmarks.gpu_sweep import main as sweep

    output = tmp_path / "sweep.json"
    assert sweep([str(output), "--variant", "convnext_atto", "--image-size", "32", "--batch-size", "2",
                  "--rounds", "2", "--budget-seconds", "20", "--baselines", "torch_eager"]) == 0
    result = json.loads(output.read_text())
    for mode in ("inference", "training"):
        entry = result["modes"][mode]
        timed, left_out = set(entry["rows"]), set(entry["left_out"])
        assert timed | left_out == set(entry["candidates"]) and not timed & left_out
        # The default and the baseline always run, so a short budget still measures the headline ratio.
        assert {"torch_eager", "compiled" if mode == "inference" else "keras_train"} <= timed
        assert all(row["images_per_second"] > 0 for row in entry["rows"].values())
        assert all("vs_torch_eager" in row for name, row in entry["rows"].items() if name != "torch_eager")
        assert all(reason for reason in entry["left_out"].values())
    assert result["modes"]["inference"]["profiles"]["compiled"]
    assert "top kernels per step" in capsys.readouterr().out


@pytest.mark.large  # six exports of a model and six runtimes (110 s)
@pytest.mark.once  # the exports from each backend are tested in test_onnx, test_export_*; the runtimes are the same
def test_the_deployment_runtimes_run_this_package_s_exports_beside_it():
    from keras_convnext.benchmarks.throughput import RUNTIMES

    result = run_benchmark("convnext_atto", modes=("inference",), batch_size=2, image_size=32, rounds=2, warmup=1,
                           baselines=RUNTIMES)
    _check_result(result, set(RUNTIMES), modes=("inference",))
    described = result["modes"]["inference"]["candidates"]
    assert "(CPU, f32)" in described["openvino"] and "(CPU, bf16)" in described["openvino_bf16"]
    assert "(CPU, int8)" in described["openvino_int8"] and "--quantize int8" in described["onnxruntime_int8"]


@pytest.mark.large  # pretraining's two candidates on a tiny input: the Keras FCMAE step and the PyTorch baseline
@pytest.mark.once  # the benchmark's wiring; FCMAE's step on every backend is test_fcmae's
def test_the_pretraining_mode_runs_fcmae_beside_the_pytorch_baseline():
    result = run_benchmark("convnextv2_atto", modes=("pretraining",), batch_size=2, image_size=64, rounds=2, warmup=1,
                           baselines=("torch_eager",))
    summary = result["modes"]["pretraining"]
    assert set(summary["candidates"]) == {"keras_convnext", "torch_eager"}
    assert "kc.pretraining.FCMAE" in summary["candidates"]["keras_convnext"]
    assert all(len(times) == 2 for times in summary["seconds_per_step"].values())


@pytest.mark.once  # PyTorch, TensorFlow and JAX in one process, whatever the Keras backend
def test_the_matmul_peak_measures_each_library(tmp_path, capsys):
    from keras_convnext.benchmarks import matmul_peak

    matmul_peak.main(["--size", "128", "--json", str(tmp_path / "peak.json")])
    written = json.loads((tmp_path / "peak.json").read_text())
    assert set(written["gflops"]) == {"torch", "tensorflow", "jax"}
    assert written["peak_gflops"] == max(written["gflops"].values()) > 0
    assert json.loads(capsys.readouterr().out) == written
