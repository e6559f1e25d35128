"""This machine's practical float32 peak: the best GFLOP/s of a square matmul in PyTorch, TensorFlow and JAX.

Speed figures are stated as a share of it, since the same code runs at other speeds on other machines.
Run: ``python -m keras_convnext.benchmarks.matmul_peak [--size 2048] [--json FILE]``.
"""

import argparse
import json
import time


def _best_seconds(step, repeats):
    step()  # warm-up (and compilation)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_gflops(size=2048, repeats=10):
    """``{library: GFLOP/s}`` of a ``size`` x ``size`` float32 matmul, the best of ``repeats``, per library found.

    Example:
        >>> sorted(matmul_gflops(256, repeats=2))  # doctest: +SKIP
        ['jax', 'tensorflow', 'torch']
    """
    import numpy as np

    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    steps = {}
    try:
        import torch

        ta = torch.from_numpy(a)
        steps["torch"] = lambda: torch.mm(ta, ta)
    except ImportError:
        pass
    try:
        import tensorflow as tf

        fa = tf.constant(a)
        steps["tensorflow"] = lambda: tf.linalg.matmul(fa, fa).numpy()
    except ImportError:
        pass
    try:
        import jax

        ja = jax.device_put(a)
        product = jax.jit(lambda x: x @ x)
        steps["jax"] = lambda: product(ja).block_until_ready()
    except ImportError:
        pass
    flops = 2.0 * size**3
    return {name: flops / _best_seconds(step, repeats) / 1e9 for name, step in steps.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--json", default=None, metavar="FILE")
    args = parser.parse_args(argv)
    result = {"size": args.size, "gflops": matmul_gflops(args.size)}
    result["peak_gflops"] = max(result["gflops"].values())
    print(json.dumps(result, indent=2))
    if args.json:
        from keras_convnext.atomic_files import write_text_atomically

        write_text_atomically(args.json, json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
