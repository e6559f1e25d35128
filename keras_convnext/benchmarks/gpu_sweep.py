"""The GPU sweep: every candidate way to run this package's ConvNeXt on the active backend, timed against timm in one
process, then a profile of the top kernels. Made for one short call on a lent GPU (``gpu.sh DIR PYTHON sweep``).

Under ``KERAS_BACKEND=jax`` the candidates are, in inference:

- ``keras_predict``: ``model.predict_on_batch`` with ``jit_compile=True`` (Keras' own jitted predict step);
- ``compiled`` / ``compiled_unfolded``: ``kc.compile_for_inference`` with and without ``optimize_for_inference``;
- ``compiled+<option>``: the folded model jitted with one XLA option changed (``compiler_options`` of
  ``jax.jit(...).lower(...).compile``, so every option is timed in the same process, alternating);
- ``compiled+gelu=backend_gelu``: ``jax.nn.gelu``'s ``erfc`` form instead of the default ``x/2 * (1 + erf(x/√2))``
  (it was the default until the H200 sweep measured it at 0.71x timm ``torch.compile`` against the erf form's 0.98x);
- ``compiled+depthwise=pallas``: the depthwise conv and its bias as one Pallas kernel (``pallas_depthwise``);
- ``compiled+shift_and_add``: the depthwise conv as 49 shifted multiply-adds (``shift_and_add_autodiff``);

and in training (AdamW, cross-entropy):

- ``keras_train``: ``model.train_on_batch`` with ``jit_compile=True``;
- ``step`` / ``step+<option>`` / ``step+shift_and_add``: one jitted ``stateless_call`` + ``value_and_grad`` +
  ``AdamW.stateless_apply`` step with its buffers donated, as Keras' trainer does, with the same options;
- ``step+gelu=backend_gelu``: the step with ``jax.nn.gelu``'s ``erfc`` form;
- ``step+depthwise=pallas``: the step with the Pallas depthwise kernel (XLA's gradient);
- ``step+hand_written_gradients``: the step with the CPU's hand-written GELU, pointwise and LayerNorm gradients.

Candidates never measured come before those an earlier lease measured, so a short budget buys new figures.

Under ``KERAS_BACKEND=torch`` the candidates are this package through ``compile_for_inference`` (inference) and
``model.compile(jit_compile=True)`` + ``train_on_batch`` (training). Baselines on both: timm eager and timm
``torch.compile``. Every candidate is compiled first, one at a time, until ``--budget-seconds`` is spent (the
default candidate and the baselines always; the ones left are recorded with the reason), then all run alternately
(``throughput.alternate``); each ratio is the median of per-round ratios against timm ``torch.compile``. Then a
profile of a few steps of the default candidates (and of timm ``torch.compile`` on torch, where ``torch.profiler``
sees them): the top kernels by GPU time, inference and training (the training step's extra kernels are the
backward pass and the optimizer).

Run: ``KERAS_BACKEND=jax python -m keras_convnext.benchmarks.gpu_sweep OUT.json``; ``--variant convnext_atto
--image-size 64 --batch-size 4`` runs the same steps in a minute on a CPU (what the test does).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

from keras_convnext.atomic_files import write_text_atomically
from keras_convnext.benchmarks import throughput

BASELINE = "torch_compile"
# XLA's GPU options the sweep tries, one at a time (a value different from XLA's default for each).
JAX_XLA_OPTIONS = (
    ("xla_gpu_autotune_level", 0),
    ("xla_gpu_enable_cudnn_layer_norm", True),
    ("xla_gpu_use_runtime_fusion", True),
    ("xla_gpu_experimental_enable_conv_fusion", True),
    ("xla_gpu_enable_triton_gemm", False),
)
TOP_KERNELS = 15
# Supervised inference and training; FCMAE pretraining has its own benchmark mode, not swept here.
SWEPT_MODES = ("inference", "training")
# The CPU's hand-written gradients (``jax_cpu_gradients``), tried on the GPU as one more training candidate.
HAND_WRITTEN_GRADIENTS = dict.fromkeys(("dense", "gelu", "layer_norm"), "jax_cpu_gradient")
# ``jax.nn.gelu``'s exact form, ``x/2 * erfc(-x/√2)``: the GPU default before the H200 sweep (see fast_paths).
ERFC_GELU = {"gelu": "backend_gelu"}


def _options_label(options):
    return "+".join(f"{name.removeprefix('xla_gpu_')}={value}" for name, value in options.items())


class Deadline:
    """Seconds left of a budget; ``expired`` once it is spent.

    Example:
        >>> Deadline(60).expired
        False
    """

    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    @property
    def expired(self):
        return time.monotonic() > self.end


def compile_then_alternate(candidates, rounds, deadline, warmup=2, always=0):
    """Warms each ``(name, description, make_step)`` up in turn until ``deadline`` (``make_step()`` builds and
    returns a ``step``; a failure is recorded), then times the ready ones alternately. The first ``always`` are
    compiled whatever the deadline.

    Returns ``(seconds per step by name, {name: why it was left out}, the ready candidates)``.

    Example:
        >>> compile_then_alternate([("a", "a", lambda: (lambda: None))], 2, Deadline(60))[0]["a"].__len__()
          a: ready in 0.0 s
        2
    """
    ready, left_out = [], {}
    for index, (name, description, make_step) in enumerate(candidates):
        if deadline.expired and index >= always:
            left_out[name] = "not compiled: the sweep's time budget was spent"
            continue
        start = time.monotonic()
        try:
            step = make_step()
            for _ in range(warmup):
                step()
        except Exception as error:  # noqa: BLE001 - one option XLA rejects must not stop the sweep
            left_out[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}"
            print(f"  {name}: left out ({left_out[name]})", flush=True)
            continue
        print(f"  {name}: ready in {time.monotonic() - start:.1f} s", flush=True)
        ready.append(throughput.Candidate(name, description, step))
    # One untimed alternating round first: a step may recompile once after another candidate's ran (torch.compile
    # guards on global state that the others change).
    seconds = throughput.alternate(ready, rounds, warmup=1) if ready else {}
    return seconds, left_out, ready


def summarize_sweep(seconds, batch_size, baseline=BASELINE):
    """Images/s per candidate and each one's median (min-max) per-round ratio against ``baseline`` (>1: faster).

    Example:
        >>> summarize_sweep({"a": [0.5, 0.5], "torch_compile": [1.0, 1.0]}, 8)["a"]["vs_" + BASELINE]["median"]
        2.0
    """
    rows = {}
    for name, times in seconds.items():
        row = {"images_per_second": batch_size / statistics.median(times)}
        if baseline in seconds and name != baseline:
            row[f"vs_{baseline}"] = throughput.summarize({name: times, baseline: seconds[baseline]}, batch_size,
                                                         ours=name)["ratios"][baseline]
        rows[name] = row
    return rows


def _block(value):
    import keras

    return keras.ops.convert_to_numpy(value)


def _jax_inference_candidates(model, images, options_list):
    import jax
    import keras

    from keras_convnext.compiled_inference import compile_for_inference
    from keras_convnext.layers.fast_paths import use_fast_paths
    from keras_convnext.weight_folding import optimize_for_inference

    images = keras.ops.convert_to_tensor(images)

    def keras_predict():
        model.compile(jit_compile=True)
        return lambda: model.predict_on_batch(images)

    def compiled(fold=True):
        forward = compile_for_inference(model, fold_weights=fold)
        return lambda: _block(forward(images))

    folded = optimize_for_inference(model)
    trainable = [variable.value for variable in folded.trainable_variables]
    non_trainable = [variable.value for variable in folded.non_trainable_variables]

    def with_options(options, paths=None):
        def forward(trainable, non_trainable, images):
            return folded.stateless_call(trainable, non_trainable, images, training=False)[0]

        def make():
            with use_fast_paths(**(paths or {})):
                executable = jax.jit(forward).lower(trainable, non_trainable, images).compile(options or None)
            return lambda: _block(executable(trainable, non_trainable, images))

        return make

    candidates = [
        ("compiled", "kc.compile_for_inference (folded)", compiled),
        ("compiled+depthwise=pallas", "folded, jax.jit, depthwise=pallas", with_options({}, {"depthwise": "pallas"})),
        ("compiled+gelu=backend_gelu", "folded, jax.jit, gelu=backend_gelu (jax.nn.gelu, the erfc form)",
         with_options({}, ERFC_GELU)),
    ]
    for options in options_list:
        label = _options_label(options)
        candidates.append((f"compiled+{label}", f"folded, jax.jit, compiler_options {options}", with_options(options)))
    # Measured on the H100 (0.69x, 0.70x and 0.59x timm torch.compile, against 0.73x for ``compiled``).
    candidates += [
        ("keras_predict", "model.predict_on_batch, jit_compile=True", keras_predict),
        ("compiled_unfolded", "kc.compile_for_inference(fold_weights=False)", lambda: compiled(False)),
        ("compiled+shift_and_add", "folded, jax.jit, depthwise=shift_and_add_autodiff",
         with_options({}, {"depthwise": "shift_and_add_autodiff"})),
    ]
    return candidates


def _jax_training_step(model, images, labels, options=None, paths=None):
    """One jitted AdamW step on ``model``'s own state copy, buffers donated; returns ``step()``."""
    import jax
    import keras

    from keras_convnext.layers.fast_paths import use_fast_paths

    optimizer = keras.optimizers.AdamW(1e-4)
    optimizer.build(model.trainable_variables)

    def loss_and_updates(trainable, non_trainable, images, labels):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, images, training=True)
        loss = keras.losses.sparse_categorical_crossentropy(labels, keras.ops.cast(logits, "float32"), from_logits=True)
        return keras.ops.mean(loss), non_trainable

    def train_step(state, images, labels):
        trainable, non_trainable, optimizer_state = state
        (loss, non_trainable), grads = jax.value_and_grad(loss_and_updates, has_aux=True)(
            trainable, non_trainable, images, labels)
        trainable, optimizer_state = optimizer.stateless_apply(optimizer_state, grads, trainable)
        return loss, (trainable, non_trainable, optimizer_state)

    state = [(
        [jax.numpy.array(variable.value) for variable in model.trainable_variables],
        [jax.numpy.array(variable.value) for variable in model.non_trainable_variables],
        [jax.numpy.array(variable.value) for variable in optimizer.variables],
    )]
    images, labels = jax.numpy.asarray(images), jax.numpy.asarray(labels)
    with use_fast_paths(**(paths or {})):
        executable = jax.jit(train_step, donate_argnums=0).lower(state[0], images, labels).compile(options or None)

    def step():
        loss, state[0] = executable(state[0], images, labels)
        _block(loss)

    return step


def _jax_training_candidates(model, images, labels, options_list):
    import keras

    def keras_train():
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.compile(optimizer=keras.optimizers.AdamW(1e-4), loss=loss, jit_compile=True)
        # On the device beforehand, as every other candidate's: NumPy arrays would add a host-to-device copy of
        # the batch to each timed step (on the H100 that made this step 25% slower).
        x, y = keras.ops.convert_to_tensor(images), keras.ops.convert_to_tensor(labels)
        return lambda: model.train_on_batch(x, y)

    def step(options=None, paths=None):
        return lambda: _jax_training_step(model, images, labels, options, paths)

    candidates = [
        ("keras_train", "model.train_on_batch, jit_compile=True", keras_train),
        ("step", "jax.jit(value_and_grad + AdamW.stateless_apply), donated", step()),
        ("step+depthwise=pallas", "the step with depthwise=pallas", step(paths={"depthwise": "pallas"})),
        ("step+gelu=backend_gelu", "the step with gelu=backend_gelu (jax.nn.gelu, the erfc form)",
         step(paths=ERFC_GELU)),
        ("step+hand_written_gradients", f"the step with {HAND_WRITTEN_GRADIENTS}", step(paths=HAND_WRITTEN_GRADIENTS)),
    ]
    for options in options_list:
        candidates.append((f"step+{_options_label(options)}", f"the step with compiler_options {options}",
                           step(options)))
    candidates.append(("step+shift_and_add", "the step with depthwise=shift_and_add_autodiff",
                       step(paths={"depthwise": "shift_and_add_autodiff"})))
    return candidates


def _torch_candidates(model, mode, images, labels):
    import keras

    if mode == "inference":
        from keras_convnext.compiled_inference import compile_for_inference

        def compiled():
            forward = compile_for_inference(model)
            tensor = keras.ops.convert_to_tensor(images)
            return lambda: _block(forward(tensor))

        return [("compiled", "kc.compile_for_inference (folded, torch.compile)", compiled)]

    def keras_train():
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.compile(optimizer=keras.optimizers.AdamW(1e-4), loss=loss, jit_compile=True)
        x, y = keras.ops.convert_to_tensor(images), keras.ops.convert_to_tensor(labels)
        return lambda: model.train_on_batch(x, y)

    return [("keras_train", "model.train_on_batch, jit_compile=True (torch.compile)", keras_train)]


def _timm_candidates(variant, mode, batch_size, image_size, dtype, baselines):
    def make(compiled):
        return lambda: throughput.native_torch_candidate(variant, mode, batch_size, image_size, dtype, compiled).step

    candidates = [("torch_eager", f"timm {variant} eager", make(False)),
                  ("torch_compile", f"timm {variant} torch.compile", make(True))]
    return [candidate for candidate in candidates if candidate[0] in baselines]


def top_jax_kernels(step, steps=3, top=TOP_KERNELS):
    """``step()`` run ``steps`` times under ``jax.profiler``: per device-plane line (GPU streams, XLA ops; the CPU's
    threads on a CPU), the ``top`` event names by total time, as ``{line: [[name, ms per step, count], ...]}``.

    Example:
        >>> top_jax_kernels(lambda: None)  # nothing ran on a device  # doctest: +SKIP
        {}
    """
    import glob

    import jax
    from jax.profiler import ProfileData

    with tempfile.TemporaryDirectory() as folder:
        with jax.profiler.trace(folder):
            for _ in range(steps):
                step()
        path = glob.glob(f"{folder}/**/*.xplane.pb", recursive=True)[0]
        data = ProfileData.from_file(path)
        device_planes = [plane for plane in data.planes if plane.name.startswith("/device:")]
        planes = device_planes or [plane for plane in data.planes if plane.name.startswith("/host:CPU")]
        tables = {}
        for plane in planes:
            for line in plane.lines:
                totals = {}
                for event in line.events:
                    total, count = totals.get(event.name, (0.0, 0))
                    totals[event.name] = (total + event.duration_ns, count + 1)
                if totals:
                    ranked = sorted(totals.items(), key=lambda item: -item[1][0])[:top]
                    tables[f"{plane.name} {line.name}"] = [
                        [name, round(total / steps / 1e6, 4), count // steps] for name, (total, count) in ranked]
    return tables


def top_torch_kernels(step, steps=3, top=TOP_KERNELS):
    """``step()`` run ``steps`` times under ``torch.profiler``: the ``top`` kernels by self device time (CPU ops by
    self CPU time without a GPU), as ``[[name, ms per step, calls per step], ...]``.

    Example:
        >>> top_torch_kernels(lambda: None)
        []
    """
    import torch

    cuda = torch.cuda.is_available()
    activities = [torch.profiler.ProfilerActivity.CUDA if cuda else torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities) as profile:
        for _ in range(steps):
            step()

    def self_time(event):
        if not cuda:
            return event.self_cpu_time_total
        return getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0)

    events = sorted((event for event in profile.key_averages() if self_time(event) > 0), key=lambda e: -self_time(e))
    return [[event.key[:160], round(self_time(event) / steps / 1e3, 4), event.count // steps] for event in events[:top]]


def print_kernels(title, table):
    """Prints a kernel table (a list of rows, or a dict of them by line) under ``title``.

    Example:
        >>> print_kernels("t", [["k", 1.0, 2]])
        t
               1.000 ms     2x  k
    """
    print(title)
    lines = table.items() if isinstance(table, dict) else [("", table)]
    for line, rows in lines:
        if line:
            print(f"  [{line}]")
        for name, milliseconds, count in rows:
            print(f"    {milliseconds:8.3f} ms {count:5d}x  {name[:120]}")


# Profiled after timing, by name: the default candidates (and timm torch.compile, where torch.profiler sees it).
PROFILED = {"jax": ("compiled", "compiled+depthwise=pallas", "step", "step+depthwise=pallas"),
            "torch": ("compiled", "keras_train", BASELINE)}


def run_sweep(variant, batch_size, image_size, dtype, rounds, budget_seconds, profile=True, modes=SWEPT_MODES,
              baselines=("torch_eager", BASELINE), output=None):
    """The sweep on the active backend (see the module docstring); returns a JSON-ready dict, also written to
    ``output`` after each mode (a run stopped from outside keeps what it measured).

    Example:
        >>> run_sweep("convnext_atto", 2, 64, "float32", 2, 120)["backend"]  # a few minutes  # doctest: +SKIP
        'jax'
    """
    import keras

    from keras_convnext.applications import create_model

    backend = keras.backend.backend()
    if backend not in ("jax", "torch"):
        raise ValueError(f"The GPU sweep runs on the jax or torch backend; KERAS_BACKEND is {backend!r}.")
    end = time.monotonic() + budget_seconds
    result = {"variant": variant, "backend": backend, "batch_size": batch_size, "image_size": image_size,
              "dtype": dtype, "rounds": rounds, "budget_seconds": budget_seconds,
              "machine": throughput.machine_description(), "modes": {}}
    if backend == "jax":
        import jax

        result["machine"]["jax"] = jax.__version__
        result["machine"]["jax_devices"] = [str(device) for device in jax.devices()]
    for index, mode in enumerate(modes):
        print(f"{mode}:", flush=True)
        model = throughput._build_under_policy(dtype, lambda: create_model(
            variant, input_shape=(image_size, image_size, 3), classifier_activation=None))
        images, labels = throughput._inputs(batch_size, image_size, model.output_shape[-1])
        options_list = [dict([option]) for option in JAX_XLA_OPTIONS]
        if backend == "jax" and mode == "inference":
            candidates = _jax_inference_candidates(model, images, options_list)
        elif backend == "jax":
            candidates = _jax_training_candidates(model, images, labels, options_list)
        else:
            candidates = _torch_candidates(model, mode, images, labels)
        # The default candidate and the baselines come first and always run: the budget never costs the headline
        # ratio. What a mode leaves of its share of the budget carries over to the next.
        timm = _timm_candidates(variant, mode, batch_size, image_size, dtype, baselines)
        candidates = candidates[:1] + timm + candidates[1:]
        seconds, left_out, ready = compile_then_alternate(
            candidates, rounds, Deadline((end - time.monotonic()) / (len(modes) - index)), always=1 + len(timm))
        rows = summarize_sweep(seconds, batch_size, BASELINE if BASELINE in seconds else "torch_eager")
        for name, row in rows.items():
            ratio = next((value for key, value in row.items() if key.startswith("vs_")), None)
            cell = "" if ratio is None else f"{ratio['median']:.2f}x ({ratio['min']:.2f}-{ratio['max']:.2f})"
            print(f"  {name:<48} {row['images_per_second']:>9.1f} img/s  {cell}", flush=True)
        entry = result["modes"][mode] = {"candidates": {name: description for name, description, _ in candidates},
                                         "seconds_per_step": seconds, "rows": rows, "left_out": left_out}
        if output:
            write_text_atomically(output, json.dumps(result, indent=1))
        if profile:
            entry["profiles"] = {}
            for candidate in ready:
                if candidate.name not in PROFILED[backend]:
                    continue
                top_kernels = top_jax_kernels if backend == "jax" and candidate.name != BASELINE else top_torch_kernels
                try:
                    table = top_kernels(candidate.step)
                except Exception as error:  # noqa: BLE001 - a profiler that cannot start must not lose the figures
                    table = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
                    print(f"  profile of {candidate.name} failed: {table['error']}", flush=True)
                else:
                    print_kernels(f"\n{candidate.name} ({backend}) {mode}: top kernels per step", table)
                entry["profiles"][candidate.name] = table
            if output:
                write_text_atomically(output, json.dumps(result, indent=1))
        del candidates, ready
    return result


def main(argv=None):
    """``python -m keras_convnext.benchmarks.gpu_sweep OUT.json [--budget-seconds S]``: runs the sweep on the active
    backend, prints its table and kernel profiles, writes the JSON.

    Example:
        >>> main(["sweep.json", "--variant", "convnext_atto", "--image-size", "64"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(prog="gpu_sweep", description=__doc__.splitlines()[0])
    parser.add_argument("output", help="the JSON file to write")
    parser.add_argument("--variant", default="convnext_tiny")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--dtype", default="bfloat16", choices=throughput.DTYPES)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--budget-seconds", type=float, default=240,
                        help="compiling stops after this many seconds; the candidates left are recorded as skipped")
    parser.add_argument("--baselines", nargs="*", default=["torch_eager", BASELINE],
                        choices=["torch_eager", BASELINE], help="timm eager and/or torch.compile (none: no baseline)")
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args(argv)
    run_sweep(args.variant, args.batch_size, args.image_size, args.dtype, args.rounds, args.budget_seconds,
              profile=not args.no_profile, baselines=args.baselines, output=args.output)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    sys.exit(main())
