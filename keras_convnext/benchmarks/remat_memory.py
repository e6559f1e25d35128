"""Memory and time of a training step with and without gradient checkpointing, per backend.

Each (backend, setting) runs in its own process. Memory is the peak resident memory sampled every 2 ms during
the timed steps, above the memory just before them (the first step, which compiles, is excluded); under JAX,
whose first step leaves XLA's compiler memory in the process, it is also the size of the temporary buffers XLA
allocates for the gradient computation (``compiled.memory_analysis()``), the figure that checkpointing lowers.
Run: ``python -m keras_convnext.benchmarks.remat_memory [--variant convnext_tiny ...]``.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

from keras_convnext.cli_flags import add_batch_size, add_image_size, add_variant, positive_int

SETTINGS = {"off": None, "all stages": (0, 1, 2, 3), "stages 0-1": (0, 1)}


def _current_rss_mb():
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(variant, image_size, batch_size, steps, stages):
    """Builds ``variant`` (blocks of ``stages`` checkpointed), trains ``steps`` steps; returns memory and time.

    Example:
        >>> measure("convnext_atto", 64, 4, 3, (0, 1, 2, 3))["step_seconds"]  # doctest: +SKIP
        0.21
    """
    import contextlib

    import keras
    import numpy as np

    from keras_convnext.applications import create_model
    from keras_convnext.training import checkpoint_stages

    scope = checkpoint_stages(stages) if stages else contextlib.nullcontext()
    with scope:
        model = create_model(variant, input_shape=(image_size, image_size, 3), classes=10)
    model.compile(optimizer=keras.optimizers.AdamW(1e-4), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype("float32")
    labels = rng.integers(0, 10, batch_size)
    model.train_on_batch(images, labels)  # compiles; not measured
    before = _current_rss_mb()
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _current_rss_mb())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(images, labels)
        times.append(time.perf_counter() - start)
    done.set()
    sampler.join()
    result = {"peak_increase_mb": peak[0] - before, "step_seconds": statistics.median(times)}
    if keras.backend.backend() == "jax":
        result["xla_temp_mb"] = _xla_gradient_temp_mb(model, images, labels)
    return result


def _xla_gradient_temp_mb(model, images, labels):
    import jax
    import keras

    loss = keras.losses.SparseCategoricalCrossentropy()
    non_trainable = [v.value for v in model.non_trainable_variables]

    def loss_of(trainable):
        outputs, _ = model.stateless_call(trainable, non_trainable, images, training=True)
        return loss(labels, outputs)

    compiled = jax.jit(jax.grad(loss_of)).lower([v.value for v in model.trainable_variables]).compile()
    return compiled.memory_analysis().temp_size_in_bytes / 2**20


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_variant(parser, default="convnext_tiny")
    add_image_size(parser, default=128)
    add_batch_size(parser, default=16)
    parser.add_argument("--steps", type=positive_int, default=3)
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--worker", nargs=1, metavar="SETTING", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = measure(args.variant, args.image_size, args.batch_size, args.steps, SETTINGS[args.worker[0]])
        print("RESULT " + json.dumps(result))
        return 0
    print(f"{args.variant}, {args.image_size}x{args.image_size}, batch {args.batch_size}, float32, "
          f"median of {args.steps} training steps after the first")
    print("| backend | checkpointed blocks | peak RSS increase (MB) | XLA temp buffers (MB) | step (s) |")
    print("|---|---|---:|---:|---:|")
    for backend in args.backends:
        for setting in SETTINGS:
            command = [sys.executable, "-m", "keras_convnext.benchmarks.remat_memory", "--worker", setting,
                       "--variant", args.variant, "--image-size", str(args.image_size),
                       "--batch-size", str(args.batch_size), "--steps", str(args.steps)]
            done = subprocess.run(command, env={**os.environ, "KERAS_BACKEND": backend}, capture_output=True, text=True)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode or not lines:
                print(f"| {backend} | {setting} | failed: {done.stderr.strip().splitlines()[-1:]} | | |")
                continue
            result = json.loads(lines[-1][len("RESULT "):])
            xla = f"{result['xla_temp_mb']:.0f}" if "xla_temp_mb" in result else "-"
            print(f"| {backend} | {setting} | {result['peak_increase_mb']:.0f} | {xla} | {result['step_seconds']:.2f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
