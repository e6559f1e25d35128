"""What quantization costs in answers: the README demo's digits model exported at every quantization each format
has (LiteRT float16, dynamic-range int8, int8; ONNX Runtime dynamic-range int8 and int8; OpenVINO int8) and
quantized by Keras itself (``model.quantize("int8")``), scored on the held-out digits in each runtime against the
Keras model it came from.

The model is the one ``keras-convnext demo`` trains (scikit-learn's digits, upsampled to 32x32, 20% of every class
held out). The int8 files are calibrated on 200 training-split images written as PNGs (never the held-out ones).
Each reports its size, its held-out accuracy, its top-1 agreement with the float32 Keras model and the largest
output difference, and one-image latency (2 threads where the runtime takes a number, median of the held-out split).

Run: ``python -m keras_convnext.benchmarks.quantized_accuracy --json FILE`` (a few minutes; any backend: the
conversion runs under TensorFlow).
"""

import argparse
import importlib.util
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from keras_convnext.atomic_files import write_text_atomically

CALIBRATION_IMAGES = 200


def score(run_one, images, labels, reference_logits, size_bytes=None):
    """Held-out accuracy, top-1 agreement with ``reference_logits``, the largest output difference relative to the
    reference's scale, and the median latency of ``run_one(image)`` (one image in, its outputs out).

    Example:
        >>> score(lambda image: np.eye(2)[0], np.zeros((2, 4)), np.array([0, 1]), np.eye(2))["accuracy"]
        0.5
    """
    outputs, seconds = [], []
    for image in images:
        start = time.perf_counter()
        outputs.append(np.asarray(run_one(image)).reshape(-1))
        seconds.append(time.perf_counter() - start)
    outputs = np.stack(outputs)
    return {
        "bytes": size_bytes,
        "accuracy": float(np.mean(outputs.argmax(1) == labels)),
        "agreement": float(np.mean(outputs.argmax(1) == reference_logits.argmax(1))),
        "max_difference_over_scale": float(np.abs(outputs - reference_logits).max() / np.abs(reference_logits).max()),
        "median_latency_ms": 1e3 * statistics.median(seconds),
    }


def litert_runner(path):
    """``run_one(image)`` for the LiteRT file at ``path`` (XNNPack, 2 threads).

    Example:
        >>> litert_runner("model_int8.tflite")(np.zeros((32, 32, 3), "float32")).shape  # doctest: +SKIP
        (1, 10)
    """
    from keras_convnext.export.litert import litert_interpreter

    interpreter = litert_interpreter(path, num_threads=2)
    (given,), (taken,) = interpreter.get_input_details(), interpreter.get_output_details()

    def run_one(image):
        interpreter.set_tensor(given["index"], image[None].astype("float32"))
        interpreter.invoke()
        return interpreter.get_tensor(taken["index"])

    return run_one


def onnxruntime_runner(path):
    """``run_one(image)`` for the ONNX file at ``path`` in ONNX Runtime (CPU, 2 threads).

    Example:
        >>> onnxruntime_runner("model_int8.onnx")(np.zeros((32, 32, 3), "float32")).shape  # doctest: +SKIP
        (1, 10)
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 2
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda image: session.run(None, {name: image[None].astype("float32")})[0]


def openvino_runner(path):
    """``run_one(image)`` for the OpenVINO IR at ``path`` (CPU, f32 where not int8).

    Example:
        >>> openvino_runner("model_int8.xml")(np.zeros((32, 32, 3), "float32")).shape  # doctest: +SKIP
        (1, 10)
    """
    import openvino

    compiled = openvino.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    return lambda image: request.infer({0: image[None].astype("float32")})[compiled.output(0)]


def _file_bytes(path):
    return Path(path).stat().st_size


def _ir_bytes(xml):
    return Path(xml).stat().st_size + Path(xml).with_suffix(".bin").stat().st_size


def run_quantized_accuracy(variant="convnext_atto", epochs=10, image_size=32, seed=0, log=print):
    """Trains the demo's digits model, exports every quantization of every format, quantizes it with Keras, and
    scores each on the held-out split.

    Example:
        >>> result = run_quantized_accuracy(epochs=1)  # a few minutes  # doctest: +SKIP
        >>> sorted(result["files"])[:3]  # doctest: +SKIP
        ['keras_int8', 'litert_dynamic_int8', 'litert_float16']
    """
    import keras
    from PIL import Image

    from keras_convnext import create_model
    from keras_convnext.demo import held_out_split, load_digits_images, run_demo
    from keras_convnext.export import export_litert, export_onnx, export_openvino
    from keras_convnext.export.litert import QUANTIZATIONS as LITERT_QUANTIZATIONS
    from keras_convnext.export.onnx import QUANTIZATIONS as ONNX_QUANTIZATIONS
    from keras_convnext.export.openvino import QUANTIZATIONS as OPENVINO_QUANTIZATIONS

    images, labels, _ = load_digits_images(image_size)
    train, held_out = held_out_split(labels, seed=seed)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        demo = run_demo(variant, epochs=epochs, image_size=image_size, output=str(scratch / "demo"), seed=seed,
                        log=lambda line: None)
        model = create_model(variant, input_shape=(image_size, image_size, 3), classes=10)
        model.load_weights(demo["weights"])
        # The float outputs the files are compared with (the demo model's softmax probabilities, as the files return).
        reference = keras.ops.convert_to_numpy(model.predict(images[held_out], verbose=0))
        calibration = scratch / "calibration"
        calibration.mkdir()
        for index in np.random.default_rng(seed).permutation(train)[:CALIBRATION_IMAGES]:
            Image.fromarray(np.clip(images[index], 0, 255).astype("uint8")).save(calibration / f"{index}.png")
        files = {}

        def record(name, result):
            files[name] = result
            log(f"{name:>22}: {result}")

        held_out_images, held_out_labels = images[held_out], labels[held_out]
        formats = [("litert", export_litert, LITERT_QUANTIZATIONS, litert_runner, _file_bytes),
                   ("onnxruntime", export_onnx, ONNX_QUANTIZATIONS, onnxruntime_runner, _file_bytes)]
        if importlib.util.find_spec("openvino"):
            formats.append(("openvino", export_openvino, OPENVINO_QUANTIZATIONS, openvino_runner, _ir_bytes))
        for runtime, export, quantizations, runner, size in formats:
            for quantization in quantizations:
                path = export(demo["weights"], scratch / runtime, variant=variant, classes=10, image_size=image_size,
                              quantization=quantization,
                              calibration_images=calibration if quantization == "int8" else None)
                record(f"{runtime}_{quantization}", score(runner(path), held_out_images, held_out_labels, reference,
                                                          size(path)))
        # Keras' own int8: the pointwise and head Dense layers, weights per channel, activations on the fly.
        model.quantize("int8")
        record("keras_int8", score(lambda image: model.predict_on_batch(image[None]), held_out_images,
                                   held_out_labels, reference))
    return {"variant": variant, "image_size": image_size, "epochs": epochs, "backend": keras.backend.backend(),
            "held_out_images": int(len(held_out)), "calibration_images": min(CALIBRATION_IMAGES, len(train)),
            "keras_accuracy": demo["accuracy"], "files": files}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="convnext_atto")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--json", default=None, metavar="FILE")
    args = parser.parse_args(argv)
    result = run_quantized_accuracy(args.variant, args.epochs)
    print(json.dumps(result, indent=2))
    if args.json:
        write_text_atomically(args.json, json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
