"""What quantization costs in answers: the README demo's digits model exported to LiteRT at every quantization,
scored on the held-out digits in the LiteRT interpreter against the Keras model it came from.

The model is the one ``keras-convnext demo`` trains (scikit-learn's digits, upsampled to 32x32, 20% of every class
held out). The int8 file is calibrated on 200 training-split images written as PNGs (never the held-out ones). Each
file reports its size, its held-out accuracy, its top-1 agreement with the float32 Keras model and the largest
output difference, and one-image latency (XNNPack, 2 threads, median of the held-out split).

Run: ``python -m keras_convnext.benchmarks.quantized_accuracy --json FILE`` (a few minutes; any backend: the
conversion runs under TensorFlow).
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from keras_convnext.atomic_files import write_text_atomically

CALIBRATION_IMAGES = 200


def score_litert_file(path, images, labels, reference_logits):
    """Held-out accuracy, top-1 agreement with ``reference_logits``, the largest output difference relative to the
    reference's scale, and the median one-image latency of the LiteRT file at ``path``.

    Example:
        >>> score_litert_file("model_int8.tflite", images, labels, logits)["agreement"]  # doctest: +SKIP
        0.997
    """
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=2)  # ai-edge-litert's has the same API
    interpreter.allocate_tensors()
    (given,), (taken,) = interpreter.get_input_details(), interpreter.get_output_details()
    outputs, seconds = [], []
    for image in images:
        interpreter.set_tensor(given["index"], image[None].astype("float32"))
        start = time.perf_counter()
        interpreter.invoke()
        seconds.append(time.perf_counter() - start)
        outputs.append(interpreter.get_tensor(taken["index"])[0])
    outputs = np.stack(outputs)
    return {
        "bytes": Path(path).stat().st_size,
        "accuracy": float(np.mean(outputs.argmax(1) == labels)),
        "agreement": float(np.mean(outputs.argmax(1) == reference_logits.argmax(1))),
        "max_difference_over_scale": float(np.abs(outputs - reference_logits).max() / np.abs(reference_logits).max()),
        "median_latency_ms": 1e3 * statistics.median(seconds),
    }


def run_quantized_accuracy(variant="convnext_atto", epochs=10, image_size=32, seed=0, log=print):
    """Trains the demo's digits model, exports every LiteRT quantization and scores each on the held-out split.

    Example:
        >>> result = run_quantized_accuracy(epochs=1)  # a few minutes  # doctest: +SKIP
        >>> sorted(result["files"])  # doctest: +SKIP
        ['dynamic_int8', 'float16', 'float32', 'int8']
    """
    import keras
    from PIL import Image

    from keras_convnext import create_model
    from keras_convnext.demo import held_out_split, load_digits_images, run_demo
    from keras_convnext.export.litert import QUANTIZATIONS, export_litert

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
        for quantization in QUANTIZATIONS:
            path = export_litert(demo["weights"], scratch / "litert", variant=variant, classes=10,
                                 image_size=image_size, quantization=quantization,
                                 calibration_images=calibration if quantization == "int8" else None)
            files[quantization] = score_litert_file(path, images[held_out], labels[held_out], reference)
            log(f"{quantization:>12}: {files[quantization]}")
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
