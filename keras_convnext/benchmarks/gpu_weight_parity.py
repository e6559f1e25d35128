"""One ``.weights.h5`` on the GPU: its logits under torch and JAX on a CUDA GPU against the CPU's float32 logits.

Run: ``python -m keras_convnext.benchmarks.gpu_weight_parity RESULT.json`` (``make bench-gpu`` runs it first).

1. Writes one weights file (the variant with seeded, perturbed weights, so that its logits spread like a trained
   model's rather than sitting near zero) and one batch of seeded 0..255 images, in a temporary folder.
2. For each backend (torch, JAX) and each device (the CPU, then the GPU) a fresh process loads that file and
   writes its logits: float32 eager (``model.predict``), float32 compiled (``kc.compile_for_inference``), and the
   same two under ``mixed_bfloat16``. The CPU process sees no GPU (``CUDA_VISIBLE_DEVICES=""``,
   ``JAX_PLATFORMS=cpu``); a process meant for the GPU refuses to run without one.
3. Compares them: float32 on the GPU (eager and compiled) against float32 on the CPU, to ``FLOAT32_TOLERANCE``;
   the top-1 class under ``mixed_bfloat16`` (eager and compiled) against float32's on the CPU; and the two
   backends' CPU logits against each other.

TF32 is off in every float32 run, by each backend's own switch: torch ``torch.backends.cuda.matmul.allow_tf32 =
False`` and ``torch.backends.cudnn.allow_tf32 = False`` (cuDNN's convolutions allow TF32 by default), JAX
``jax.config.update("jax_default_matmul_precision", "highest")`` (XLA's dots and convolutions on GPU use TF32 at
the default precision).

A bfloat16 top-1 that differs from float32's is a failure unless float32's own margin between its first two
classes is under ``NEAR_TIE`` (2%) of the largest |logit|: a near-tie, which bfloat16's 8-bit mantissa (0.4%
rounding per operation) may flip.

``--accelerator cpu`` lets the CPU's processes stand for the GPU's: the same steps end to end on a machine without
a GPU (what the test suite does, on a small variant), where the comparisons left with meaning are compiled against
eager and bfloat16 against float32.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from keras_convnext.atomic_files import write_text_atomically

FLOAT32_TOLERANCE = 1e-4
NEAR_TIE = 0.02
BACKENDS = ("torch", "jax")
RUNS = ("float32_eager", "float32_compiled", "bfloat16_eager", "bfloat16_compiled")
TF32_SWITCHES = {
    "torch": "torch.backends.cuda.matmul.allow_tf32 = False; torch.backends.cudnn.allow_tf32 = False",
    "jax": 'jax.config.update("jax_default_matmul_precision", "highest")',
}


def write_inputs(folder, variant, image_size, batch_size, seed=0):
    """Writes ``weights.weights.h5`` (seeded and perturbed) and ``images.npy`` into ``folder``; returns both paths.

    Example:
        >>> write_inputs("parity", "convnext_atto", 32, 2)  # builds the model  # doctest: +SKIP
        (PosixPath('parity/weights.weights.h5'), PosixPath('parity/images.npy'))
    """
    import keras
    import numpy as np

    from keras_convnext.applications import create_model

    folder = Path(folder)
    rng = np.random.default_rng(seed)
    model = create_model(variant, input_shape=(image_size, image_size, 3), classifier_activation=None)
    for variable in model.weights:
        value = keras.ops.convert_to_numpy(variable)
        variable.assign(value + rng.normal(0, 0.05, value.shape).astype(value.dtype))
    weights, images = folder / "weights.weights.h5", folder / "images.npy"
    model.save_weights(weights)  # a scratch folder of this script's: nothing a user owns
    np.save(images, rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype("float32"))
    return weights, images


def worker(device, variant, weights, images, output):
    """In a process of its own (backend from ``KERAS_BACKEND``): the four runs' logits of ``weights`` into ``output``.

    Example:
        >>> worker("cpu", "convnext_atto", "w.weights.h5", "images.npy", "cpu.npz")  # doctest: +SKIP
    """
    import keras
    import numpy as np

    import keras_convnext as kc

    backend = keras.backend.backend()
    _turn_tf32_off(backend)
    actual, device_name = _device(backend)
    if actual != device:
        raise RuntimeError(f"this process was meant to run on the {device} but {backend} runs on the {actual}")
    batch = np.load(images)
    logits = {}
    for dtype in ("float32", "bfloat16"):
        keras.config.set_dtype_policy("float32" if dtype == "float32" else "mixed_bfloat16")
        model = kc.create_model(variant, input_shape=batch.shape[1:], classifier_activation=None)
        model.load_weights(weights)
        logits[f"{dtype}_eager"] = np.asarray(model.predict(batch, batch_size=len(batch), verbose=0), "float32")
        compiled = kc.compile_for_inference(model)
        logits[f"{dtype}_compiled"] = np.asarray(keras.ops.convert_to_numpy(compiled(batch)), "float32")
    np.savez(output, device_name=device_name, **logits)


def _turn_tf32_off(backend):
    if backend == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    elif backend == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")


def _device(backend):
    """("gpu" or "cpu", the device's name) of what ``backend`` computes on in this process."""
    if backend == "torch":
        import torch

        return ("gpu", torch.cuda.get_device_name(0)) if torch.cuda.is_available() else ("cpu", "cpu")
    import jax

    return "gpu" if jax.default_backend() == "gpu" else "cpu", str(jax.devices()[0].device_kind)


def compare(reference, candidate):
    """Max |Δ| of the float32 runs and the bfloat16 top-1 agreement of ``candidate`` against ``reference``'s
    float32 eager logits (both dicts of run name -> logits).

    Example:
        >>> import numpy as np
        >>> same = {run: np.eye(3, dtype="float32") for run in RUNS}
        >>> compare(same, same)["passed"]
        True
    """
    import numpy as np

    truth = reference["float32_eager"]
    top = np.sort(truth, axis=-1)
    margins = top[:, -1] - top[:, -2]
    scale = float(np.abs(truth).max())
    result = {"passed": True, "logit_scale": scale}
    for run in RUNS:
        error = float(np.abs(candidate[run] - truth).max())
        entry = {"max_abs_diff": error}
        if run.startswith("float32"):
            entry["within_tolerance"] = error <= FLOAT32_TOLERANCE
            result["passed"] &= entry["within_tolerance"]
        else:
            differ = np.flatnonzero(candidate[run].argmax(-1) != truth.argmax(-1))
            near_ties = [int(i) for i in differ if margins[i] <= NEAR_TIE * scale]
            entry.update(
                top1_agreement=f"{len(truth) - len(differ)}/{len(truth)}",
                top1_differs_at=[int(i) for i in differ],
                of_which_near_ties=near_ties,
            )
            result["passed"] &= len(near_ties) == len(differ)
        result[run] = entry
    return result


def main(argv=None):
    """Runs the whole check and writes its JSON report; returns 0 if every figure is within its bound, else 1.

    Example:
        >>> main(["parity.json", "--variant", "convnext_atto", "--image-size", "32", "--accelerator", "cpu"])  # doctest: +SKIP
        0
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", help="JSON file to write (the weights, images and logits stay in a temporary folder)")
    parser.add_argument("--variant", default="convnext_tiny")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--accelerator", choices=["gpu", "cpu"], default="gpu")
    parser.add_argument("--worker", nargs=4, metavar=("DEVICE", "WEIGHTS", "IMAGES", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker[0], args.variant, *args.worker[1:])
        return 0
    with tempfile.TemporaryDirectory() as folder:
        report = _run_everywhere(args, Path(folder))
    text = json.dumps(report, indent=2)
    print(text)
    write_text_atomically(args.result, text)
    return 0 if report["passed"] else 1


def _run_everywhere(args, folder):
    weights, images = write_inputs(folder, args.variant, args.image_size, args.batch_size)

    def run_worker(backend, device):
        output = folder / f"{backend}-{device}.npz"
        env = {**os.environ, "KERAS_BACKEND": backend, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
        if device == "cpu":
            env.update(CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
        command = [sys.executable, "-m", "keras_convnext.benchmarks.gpu_weight_parity", args.result,
                   "--variant", args.variant, "--worker", device, str(weights), str(images), str(output)]
        subprocess.run(command, env=env, check=True)
        return _load(output)

    logits = {}
    for backend in BACKENDS:
        logits[backend, "cpu"] = run_worker(backend, "cpu")
        # With --accelerator cpu the CPU's logits stand for the accelerator's.
        logits[backend, "accelerator"] = logits[backend, "cpu"] if args.accelerator == "cpu" else run_worker(backend, "gpu")
    report = {
        "variant": args.variant,
        "images": f"{args.batch_size}x{args.image_size}x{args.image_size}",
        "tf32_off_by": TF32_SWITCHES,
        "float32_tolerance": FLOAT32_TOLERANCE,
        "cross_backend_cpu_float32_max_abs_diff": float(
            abs(logits["torch", "cpu"]["float32_eager"] - logits["jax", "cpu"]["float32_eager"]).max()
        ),
    }
    for backend in BACKENDS:
        accelerator = logits[backend, "accelerator"]
        report[backend] = {"device": str(accelerator["device_name"]), **compare(logits[backend, "cpu"], accelerator)}
    report["passed"] = all(report[backend]["passed"] for backend in BACKENDS)
    return report


def _load(path):
    import numpy as np

    with np.load(path) as data:
        return {key: data[key] for key in data.files}


if __name__ == "__main__":
    sys.exit(main())
