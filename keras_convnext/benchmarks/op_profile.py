"""Where the time goes: per-op tables behind the benchmark's ratios.

- torch backend: ``torch.profiler`` self-CPU time per op for this package's model and for the native PyTorch model
  (timm, else Hugging Face), side by side, inference or one training step.
- JAX backend: XLA fuses a whole step into one program, so the table times the parts of a ConvNeXt block at each
  stage's shape instead, forward and gradient: the depthwise conv, and the rest of the block.

Run: ``KERAS_BACKEND=torch python -m keras_convnext.benchmarks.op_profile --mode training``.
"""

import argparse
import statistics
import time

from keras_convnext.cli_flags import add_batch_size, add_image_size, add_variant
from keras_convnext.layer_names import block_name


def _self_cpu_ms(run, steps):
    from torch.profiler import ProfilerActivity, profile

    run()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(steps):
            run()
    return {event.key: event.self_cpu_time_total / 1000 / steps for event in profiler.key_averages()}


def torch_op_table(variant="convnext_tiny", mode="inference", batch_size=8, image_size=224, steps=2, rows=12):
    """Self-CPU milliseconds per step of the busiest ops, ours next to native PyTorch's.

    Example:
        >>> print(torch_op_table("convnext_atto", batch_size=2, image_size=64, steps=1))  # doctest: +SKIP
    """
    from keras_convnext.benchmarks.throughput import keras_convnext_candidate, native_torch_candidate

    ours = _self_cpu_ms(keras_convnext_candidate(variant, mode, batch_size, image_size).step, steps)
    native = _self_cpu_ms(native_torch_candidate(variant, mode, batch_size, image_size).step, steps)
    busiest = sorted(set(ours) | set(native), key=lambda op: -max(ours.get(op, 0), native.get(op, 0)))[:rows]
    lines = [f"{variant} {mode} batch {batch_size} {image_size}x{image_size}: self-CPU ms per step",
             f"  {'op':<40} {'keras_convnext':>15} {'native torch':>13}"]
    lines += [f"  {op:<40} {ours.get(op, 0):>15.1f} {native.get(op, 0):>13.1f}" for op in busiest]
    lines.append(f"  {'total':<40} {sum(ours.values()):>15.1f} {sum(native.values()):>13.1f}")
    return "\n".join(lines)


def _median_ms(function, repeats=8):
    import jax

    for _ in range(2):
        jax.block_until_ready(function())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(function())
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def jax_block_table(batch_size=8, image_size=224, dims=(96, 192, 384, 768)):
    """Milliseconds of one ConvNeXt block per stage under ``jax.jit``: whole block and depthwise conv alone,
    forward and gradient.

    Example:
        >>> print(jax_block_table(batch_size=2, image_size=64))  # doctest: +SKIP
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from keras_convnext.layers import ConvNeXtBlock
    from keras_convnext.layers.depthwise_conv import shift_and_add_with_fast_gradient

    lines = [f"ConvNeXt block per stage, batch {batch_size}, {image_size}x{image_size} input: ms under jax.jit",
             f"  {'stage shape':<22} {'block fwd':>10} {'block grad':>11} {'dwconv fwd':>11} {'dwconv grad':>12}"]
    rng = np.random.default_rng(0)
    for stage, width in enumerate(dims):
        side = image_size // 4 // 2**stage
        x = jnp.asarray(rng.normal(size=(batch_size, side, side, width)).astype("float32"))
        block = ConvNeXtBlock(name=block_name(stage, 0))
        block(x)
        weights = [v.value for v in block.trainable_variables]

        def loss(weights, x, block=block):
            return jnp.sum(block.stateless_call(weights, [], x, training=True)[0] ** 2)

        kernel = jnp.asarray(rng.normal(size=(7, 7, width, 1)).astype("float32"))
        bias = jnp.zeros((width,), "float32")
        dw_loss = lambda k, x: jnp.sum(shift_and_add_with_fast_gradient(x, k, bias) ** 2)  # noqa: E731
        block_forward, block_grad = jax.jit(loss), jax.jit(jax.grad(loss, argnums=(0, 1)))
        dw_forward, dw_grad = jax.jit(dw_loss), jax.jit(jax.grad(dw_loss, argnums=(0, 1)))
        cells = [_median_ms(lambda f=f: f(weights, x)) for f in (block_forward, block_grad)]
        cells += [_median_ms(lambda f=f: f(kernel, x)) for f in (dw_forward, dw_grad)]
        shape = "x".join(str(d) for d in x.shape)
        lines.append(f"  {shape:<22} {cells[0]:>10.1f} {cells[1]:>11.1f} {cells[2]:>11.1f} {cells[3]:>12.1f}")
    return "\n".join(lines)


def main(argv=None):
    """Prints the table for the active backend.

    Example:
        >>> main(["--mode", "training"])  # doctest: +SKIP
    """
    import keras

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_variant(parser, default="convnext_tiny")
    parser.add_argument("--mode", choices=["inference", "training"], default="inference")
    add_batch_size(parser, default=8)
    add_image_size(parser, default=224)
    args = parser.parse_args(argv)
    if keras.backend.backend() == "torch":
        print(torch_op_table(args.variant, args.mode, args.batch_size, args.image_size))
    elif keras.backend.backend() == "jax":
        print(jax_block_table(args.batch_size, args.image_size))
    else:
        raise SystemExit("op_profile covers the torch and JAX backends, the two whose targets are missed here.")


if __name__ == "__main__":
    main()
