"""Throughput of this package's ConvNeXt against keras.applications and native PyTorch, in one process.

Each candidate is one way to run a batch: this package's model on the active Keras backend, the
``keras.applications`` model of the same size on the same backend, and native PyTorch (timm where it imports, else
Hugging Face's ``ConvNext``), eager and optionally ``torch.compile``; for ``pretraining``, this package's FCMAE
step against the official FCMAE made dense-masked in PyTorch (``torch_fcmae``). Candidates run alternately, A B C A B C …, so
that a noisy neighbour slows all of them alike; warm-up rounds (compilation included) are not timed; the device
is synchronised before each clock reading. Each round gives one ratio per baseline, and the summary reports the
median images per second and the median (min–max) of those per-round ratios.

Run: ``keras-convnext bench --variant convnext_tiny --batch-size 8 --image-size 224 --json bench.json``.
"""

import dataclasses
import statistics
import tempfile
import time

MODES = ("inference", "training", "pretraining")
DTYPES = ("float32", "bfloat16", "float16")
KERAS_APPLICATIONS = {
    "convnext_tiny": "ConvNeXtTiny",
    "convnext_small": "ConvNeXtSmall",
    "convnext_base": "ConvNeXtBase",
    "convnext_large": "ConvNeXtLarge",
    "convnext_xlarge": "ConvNeXtXLarge",
}


@dataclasses.dataclass
class Candidate:
    """One timed way of running a batch: ``step()`` runs it and returns once the device is done.

    Example:
        >>> Candidate("noop", "does nothing", lambda: None).step()
    """

    name: str
    description: str
    step: callable


def _inputs(batch_size, image_size, classes, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype("float32")
    labels = rng.integers(0, classes, batch_size)
    return images, labels


def _noise_images(folder, count, image_size):
    """``count`` PNGs of uniform noise in ``folder`` (made once), for an int8 file whose speed alone is measured."""
    from pathlib import Path

    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images, _ = _inputs(count, image_size, 1, seed=1)
    for index, image in enumerate(images):
        Image.fromarray(image.astype("uint8")).save(folder / f"{index}.png")
    return folder


def _build_under_policy(dtype, build):
    """``build()`` under the Keras policy for ``dtype`` (``mixed_<dtype>`` unless float32), then the previous one."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32" if dtype == "float32" else f"mixed_{dtype}")
    try:
        return build()
    finally:
        keras.config.set_dtype_policy(previous)


def _compiled_keras_step(model, mode, images, labels, jit_compile):
    import keras

    # Fed as tensors on the backend's device, as the native candidates are: a host-to-device copy per step
    # would be timed for Keras alone.
    images, labels = keras.ops.convert_to_tensor(images), keras.ops.convert_to_tensor(labels)

    if mode == "inference":
        model.compile(jit_compile=jit_compile)
        return lambda: model.predict_on_batch(images)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.AdamW(1e-4), loss=loss, jit_compile=jit_compile)
    return lambda: model.train_on_batch(images, labels)


def keras_convnext_candidate(variant, mode, batch_size, image_size, dtype="float32", optimized=True, jit_compile="auto"):
    """This package's model, built with the backend's fast paths; ``optimized`` applies ``optimize_for_inference``.

    With ``jit_compile=True``, inference runs through ``compile_for_inference`` and training through
    ``model.compile(jit_compile=True)`` (``torch.compile`` on torch, XLA on TensorFlow and JAX).

    Example:
        >>> candidate = keras_convnext_candidate("convnext_atto", "inference", 2, 64)  # builds, folds  # doctest: +SKIP
        >>> candidate.step()  # doctest: +SKIP
    """
    import keras

    from keras_convnext.applications import create_model

    model = _build_under_policy(
        dtype, lambda: create_model(variant, input_shape=(image_size, image_size, 3), classifier_activation=None)
    )
    images, labels = _inputs(batch_size, image_size, model.output_shape[-1])
    backend = keras.backend.backend()
    if mode == "inference" and jit_compile is True:
        from keras_convnext.compiled_inference import compile_for_inference

        forward = compile_for_inference(model, fold_weights=optimized)
        images = keras.ops.convert_to_tensor(images)
        description = f"keras_convnext {variant} ({backend}, compile_for_inference{', folded' if optimized else ''})"
        return Candidate("keras_convnext", description, lambda: keras.ops.convert_to_numpy(forward(images)))
    folded = optimized and mode == "inference"
    if folded:
        from keras_convnext.weight_folding import optimize_for_inference

        model = optimize_for_inference(model)
    description = f"keras_convnext {variant} ({backend}{', folded' if folded else ''}, jit_compile={jit_compile})"
    step = _compiled_keras_step(model, mode, images, labels, jit_compile)
    return Candidate("keras_convnext", description, step)


def keras_applications_candidate(variant, mode, batch_size, image_size, dtype="float32", jit_compile="auto"):
    """``keras.applications`` ConvNeXt of the same size on the same backend, or ``None`` if it has no such size.

    Example:
        >>> keras_applications_candidate("convnext_atto", "inference", 2, 64) is None
        True
    """
    import keras

    builder_name = KERAS_APPLICATIONS.get(variant)
    if builder_name is None:
        return None
    builder = getattr(keras.applications, builder_name)
    model = _build_under_policy(
        dtype, lambda: builder(weights=None, input_shape=(image_size, image_size, 3), classifier_activation=None)
    )
    images, labels = _inputs(batch_size, image_size, 1000)
    step = _compiled_keras_step(model, mode, images, labels, jit_compile)
    return Candidate("keras_applications", f"keras.applications.{builder_name} ({keras.backend.backend()})", step)


def fcmae_candidate(variant, batch_size, image_size, dtype="float32", jit_compile="auto"):
    """One FCMAE pretraining step of this package (``kc.pretraining.FCMAE``, official decoder, ``train_on_batch``
    with AdamW; masks drawn inside the step).

    Example:
        >>> fcmae_candidate("convnextv2_atto", 2, 64).step()  # doctest: +SKIP
    """
    import keras

    from keras_convnext.pretraining import FCMAE

    model = _build_under_policy(dtype, lambda: FCMAE(variant, image_size=image_size, seed=0))
    model.compile(optimizer=keras.optimizers.AdamW(1.5e-4), jit_compile=jit_compile)
    images, _ = _inputs(batch_size, image_size, 1)
    description = f"kc.pretraining.FCMAE {variant} ({keras.backend.backend()}, train_on_batch)"
    return Candidate("keras_convnext", description, lambda: model.train_on_batch(images))


def torch_fcmae_candidate(variant, batch_size, image_size, dtype="float32", compiled=False):
    """One step of the official FCMAE with its sparse layers made dense and masked (``torch_fcmae``), in native
    PyTorch, eager or ``torch.compile``d, AdamW; the mask is drawn each step as the official code does.

    Example:
        >>> torch_fcmae_candidate("convnextv2_atto", 2, 64).step()  # doctest: +SKIP
    """
    import torch

    from keras_convnext.applications import get_variant
    from keras_convnext.benchmarks.torch_fcmae import DenseMaskedFCMAE, random_mask

    row = get_variant(variant)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = DenseMaskedFCMAE(row.depths, row.dims).to(device).train()
    images, _ = _inputs(batch_size, image_size, 1)
    images = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).to(device)
    patches = (image_size // 32) ** 2
    optimizer = torch.optim.AdamW(model.parameters(), lr=1.5e-4)
    autocast = torch.autocast(device, dtype=getattr(torch, dtype), enabled=dtype != "float32")
    forward = torch.compile(model) if compiled else model

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = forward(images, random_mask(batch_size, patches, 0.6, device))[0]
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    name = f"torch_{'compile' if compiled else 'eager'}"
    return Candidate(name, f"official FCMAE, dense-masked, {variant} (torch {name[6:]}, {device})", step)


RUNTIMES = ("onnxruntime", "openvino", "openvino_bf16", "litert", "onnxruntime_int8", "openvino_int8")
# The int8 files' activation ranges come from these many noise images: enough for a file that runs as a calibrated
# one does (speed only; what int8 costs in answers is ``quantized_accuracy``'s).
SPEED_CALIBRATION_IMAGES = 8


def runtime_candidate(runtime, variant, batch_size, image_size, folder):
    """Inference of ``variant`` exported by this package into a deployment runtime, on the CPU: ``onnxruntime``
    (``export --format onnx``), ``openvino`` (the IR at f32) and ``openvino_bf16`` (OpenVINO's own default on a CPU
    with native bf16), ``litert`` (the float32 ``.tflite`` with XNNPack, one image per invoke as on a device), and
    ``onnxruntime_int8`` / ``openvino_int8`` (``export --quantize int8``: the calibrated QDQ ONNX file, and the IR
    OpenVINO makes of it). The exports go to ``folder``; ``None`` where the runtime is not installed.

    Example:
        >>> runtime_candidate("onnxruntime", "convnext_atto", 2, 64, "/tmp/bench").step()  # doctest: +SKIP
    """
    import importlib.util

    from keras_convnext.applications import create_model

    module = "tensorflow" if runtime == "litert" else runtime.split("_")[0]
    if importlib.util.find_spec(module) is None:
        return None
    model = create_model(variant, input_shape=(image_size, image_size, 3), classifier_activation=None)
    images, _ = _inputs(batch_size, image_size, 1)
    folder = f"{folder}/{runtime}"
    quantization = {}
    if runtime.endswith("_int8"):
        quantization = {"quantization": "int8", "calibration_images": _noise_images(
            f"{folder}/calibration", SPEED_CALIBRATION_IMAGES, image_size)}
    if runtime.startswith("onnxruntime"):
        import onnxruntime

        from keras_convnext.export.onnx import export_onnx

        session = onnxruntime.InferenceSession(str(export_onnx(model, folder, **quantization)),
                                               providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return Candidate(runtime, f"ONNX Runtime {onnxruntime.__version__} (CPU), export --format onnx"
                         f"{' --quantize int8' if quantization else ''}", lambda: session.run(None, {name: images}))
    if runtime.startswith("openvino"):
        import openvino

        from keras_convnext.export.openvino import export_openvino

        precision = "bf16" if runtime == "openvino_bf16" else "f32"
        compiled = openvino.Core().compile_model(str(export_openvino(model, folder, **quantization)), "CPU",
                                                  {"INFERENCE_PRECISION_HINT": precision})
        request = compiled.create_infer_request()
        kind = "int8" if quantization else precision
        return Candidate(runtime, f"OpenVINO {openvino.__version__} (CPU, {kind}), export --format openvino"
                         f"{' --quantize int8' if quantization else ''}", lambda: request.infer({0: images}))
    from keras_convnext.export.litert import export_litert, litert_interpreter

    interpreter = litert_interpreter(export_litert(model, folder))
    (given,), (taken,) = interpreter.get_input_details(), interpreter.get_output_details()

    def step():
        for image in images:
            interpreter.set_tensor(given["index"], image[None])
            interpreter.invoke()
            interpreter.get_tensor(taken["index"])

    kind = "ai-edge-litert" if type(interpreter).__module__.startswith("ai_edge_litert") else "tf.lite"
    return Candidate(runtime, f"LiteRT ({kind}, XNNPack), export --format litert, one image per invoke", step)


def _native_torch_model(variant):
    """timm's model where timm imports; otherwise Hugging Face's ConvNext/ConvNextV2 with the same architecture."""
    from keras_convnext.applications import get_variant

    try:
        import timm

        return timm.create_model(variant, pretrained=False), "timm"
    except Exception:  # noqa: BLE001 - timm missing or not importable beside this torch build
        pass
    import transformers

    row = get_variant(variant)
    if row.family == "isotropic":
        return None, None
    common = {"depths": list(row.depths), "hidden_sizes": list(row.dims), "num_labels": 1000,
              "layer_norm_eps": row.norm_epsilon}
    if row.family == "V2":
        return transformers.ConvNextV2ForImageClassification(transformers.ConvNextV2Config(**common)), "transformers"
    config = transformers.ConvNextConfig(layer_scale_init_value=row.layer_scale_init_value, **common)
    return transformers.ConvNextForImageClassification(config), "transformers"


def native_torch_candidate(variant, mode, batch_size, image_size, dtype="float32", compiled=False):
    """Native PyTorch (timm, else Hugging Face), eager or ``torch.compile``d; ``None`` where neither has the variant.

    Inference runs under ``torch.inference_mode``, training is AdamW on cross-entropy; a non-float32 ``dtype`` runs
    under ``torch.autocast``. Inputs are NCHW, PyTorch's native layout.

    Example:
        >>> native_torch_candidate("convnext_atto", "inference", 2, 64).step()  # needs torch  # doctest: +SKIP
    """
    import torch

    model, library = _native_torch_model(variant)
    if model is None:
        return None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device)
    images, labels = _inputs(batch_size, image_size, 1000)
    images = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).to(device)
    labels = torch.from_numpy(labels).to(device)
    autocast = torch.autocast(device, dtype=getattr(torch, dtype), enabled=dtype != "float32")
    forward = torch.compile(model) if compiled else model

    def logits():
        output = forward(images)
        return output if isinstance(output, torch.Tensor) else output.logits

    def synchronize():
        if device == "cuda":
            torch.cuda.synchronize()

    if mode == "inference":
        model.eval()

        def step():
            with torch.inference_mode(), autocast:
                logits()
            synchronize()
    else:
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = torch.nn.functional.cross_entropy(logits(), labels)
            loss.backward()
            optimizer.step()
            synchronize()

    name = f"torch_{'compile' if compiled else 'eager'}"
    return Candidate(name, f"{library} {variant} (torch {'compile' if compiled else 'eager'}, {device})", step)


def alternate(candidates, rounds, warmup=2):
    """Runs the candidates in turn, ``warmup`` untimed rounds then ``rounds`` timed ones; seconds per step each.

    Example:
        >>> alternate([Candidate("a", "a", lambda: None)], rounds=3)["a"].__len__()
        3
    """
    if rounds < 1 or warmup < 0:
        raise ValueError(f"alternate needs rounds >= 1 and warmup >= 0; got rounds={rounds}, warmup={warmup}.")
    for _ in range(warmup):
        for candidate in candidates:
            candidate.step()
    seconds = {candidate.name: [] for candidate in candidates}
    for _ in range(rounds):
        for candidate in candidates:
            start = time.perf_counter()
            candidate.step()
            seconds[candidate.name].append(time.perf_counter() - start)
    return seconds


def summarize(seconds, batch_size, ours="keras_convnext"):
    """Median images/s per candidate and, per baseline, the median (min, max) of the per-round speed ratios.

    A ratio above 1 means this package is faster in that round.

    Example:
        >>> summarize({"keras_convnext": [0.5, 0.5], "b": [1.0, 1.0]}, 8)["ratios"]["b"]["median"]
        2.0
    """
    images_per_second = {name: batch_size / statistics.median(times) for name, times in seconds.items()}
    ratios = {}
    for name, times in seconds.items():
        if name == ours:
            continue
        per_round = [theirs / mine for mine, theirs in zip(seconds[ours], times)]
        ratios[name] = {"median": statistics.median(per_round), "min": min(per_round), "max": max(per_round)}
    return {"images_per_second": images_per_second, "ratios": ratios}


def run_benchmark(variant="convnext_tiny", modes=("inference", "training"), batch_size=8, image_size=224,
                  dtype="float32", rounds=10, warmup=2, baselines=("keras_applications", "torch_eager"), optimized=True,
                  jit_compile="auto"):
    """Benchmarks ``variant`` in each mode (of ``MODES``; ``pretraining`` needs a ConvNeXt-V2 and images of at least
    64 pixels) against the baselines; returns a JSON-ready dict.

    Example:
        >>> result = run_benchmark("convnext_atto", ("inference",), 2, 64, rounds=3)  # a minute  # doctest: +SKIP
        >>> result["modes"]["inference"]["ratios"]["torch_eager"]["median"]  # doctest: +SKIP
        1.4
    """
    import keras

    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"Unknown benchmark mode {mode!r}; expected one of {MODES}.")
    if dtype not in DTYPES:
        raise ValueError(f"Unknown benchmark dtype {dtype!r}; expected one of {DTYPES}.")
    known = {"keras_applications", "torch_eager", "torch_compile", *RUNTIMES}
    if set(baselines) - known:
        raise ValueError(f"Unknown baselines {sorted(set(baselines) - known)}; expected some of {sorted(known)}.")
    if batch_size < 1 or image_size < 32:
        raise ValueError(f"Benchmark needs batch_size >= 1 and image_size >= 32; got {batch_size}, {image_size}.")

    from keras_convnext.layers.fast_paths import KINDS, fast_path

    result = {"variant": variant, "backend": keras.backend.backend(), "batch_size": batch_size,
              "image_size": image_size, "dtype": dtype, "rounds": rounds, "warmup": warmup,
              "fast_paths": {kind: fast_path(kind) for kind in KINDS}, "machine": machine_description(), "modes": {}}
    for mode in modes:
        with tempfile.TemporaryDirectory() as exports:  # the deployment runtimes' files, for this mode's run
            candidates = _mode_candidates(mode, variant, batch_size, image_size, dtype, baselines, optimized,
                                          jit_compile, exports)
            seconds = alternate(candidates, rounds, warmup)
        result["modes"][mode] = {
            "candidates": {candidate.name: candidate.description for candidate in candidates},
            "seconds_per_step": seconds,
            **summarize(seconds, batch_size),
        }
    return result


def _mode_candidates(mode, variant, batch_size, image_size, dtype, baselines, optimized, jit_compile, exports):
    """This package's candidate for ``mode`` first, then the baselines that exist here."""
    if mode == "pretraining":  # keras.applications has no pretraining
        candidates = [fcmae_candidate(variant, batch_size, image_size, dtype, jit_compile)]
        for compiled in (False, True):
            if f"torch_{'compile' if compiled else 'eager'}" in baselines:
                candidates.append(torch_fcmae_candidate(variant, batch_size, image_size, dtype, compiled))
        return [candidate for candidate in candidates if candidate is not None]
    candidates = [keras_convnext_candidate(variant, mode, batch_size, image_size, dtype, optimized, jit_compile)]
    if "keras_applications" in baselines:
        candidates.append(keras_applications_candidate(variant, mode, batch_size, image_size, dtype, jit_compile))
    for compiled in (False, True):
        if f"torch_{'compile' if compiled else 'eager'}" in baselines:
            candidates.append(native_torch_candidate(variant, mode, batch_size, image_size, dtype, compiled))
    if mode == "inference":
        candidates += [runtime_candidate(runtime, variant, batch_size, image_size, exports)
                       for runtime in RUNTIMES if runtime in baselines]
    return [candidate for candidate in candidates if candidate is not None]


def machine_description():
    """CPU model, core count and accelerators of this machine, for the record.

    Example:
        >>> machine_description()["cpu_count"] > 0
        True
    """
    import os
    import platform

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as file:
            cpu = next(line.split(":", 1)[1].strip() for line in file if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    description = {"cpu": cpu, "cpu_count": len(os.sched_getaffinity(0)), "python": platform.python_version(),
                   "keras_convnext_commit": source_commit()}
    try:
        import torch

        description["torch"] = torch.__version__
        if torch.cuda.is_available():
            description["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    import importlib.metadata

    for package in ("keras", "jax", "tensorflow-cpu", "tensorflow", "timm", "onnxruntime", "openvino"):
        try:
            description[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return description


def source_commit():
    """The git commit this package's source is at (``+dirty`` with uncommitted changes to the package itself, not
    counting the benchmark JSON a run writes), or ``None`` outside git.

    Example:
        >>> source_commit() is None or len(source_commit().split("+")[0]) == 40
        True
    """
    import os
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        status = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no", "--",
                                 "keras_convnext", "applications", "weights", "pyproject.toml", "constraints.txt"],
                                capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def format_report(result):
    """The benchmark result as a plain-text table.

    Example:
        >>> print(format_report(result))  # the result of run_benchmark above  # doctest: +SKIP
    """
    lines = [f"{result['variant']}  {result['image_size']}x{result['image_size']}  batch {result['batch_size']}  "
             f"{result['dtype']}  backend {result['backend']}  {result['rounds']} alternating rounds "
             f"after {result['warmup']} warm-up"]
    for mode, summary in result["modes"].items():
        lines.append(f"\n{mode}")
        lines.append(f"  {'candidate':<20} {'img/s':>8}   {'ours / it (median, min-max)':<28} what")
        for name, description in summary["candidates"].items():
            speed = summary["images_per_second"][name]
            ratio = summary["ratios"].get(name)
            cell = "" if ratio is None else f"{ratio['median']:.2f}x ({ratio['min']:.2f}-{ratio['max']:.2f})"
            lines.append(f"  {name:<20} {speed:>8.2f}   {cell:<28} {description}")
    return "\n".join(lines)
