"""Calls every signature of a SavedModel from a process that cannot import keras or keras_convnext, like TF Serving.

Usage: python -m workers.serving_client VERSION_DIR INPUTS.npz OUTPUTS.npz REPORT.json
"""

import json
import sys
from concurrent.futures import ThreadPoolExecutor

# Neither keras nor keras_convnext may be imported (TensorFlow itself would import keras for tf.keras).
sys.modules["keras"] = sys.modules["keras_convnext"] = sys.modules["tf_keras"] = None

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def _numpy(tensor):
    value = tensor.numpy()
    return value.astype(bytes) if value.dtype == object else value  # strings: fixed-width bytes, no pickling


def _with(images, value):
    images = images.copy()
    images[0, 3, 5, 1] = value
    return images


def _refusal(request):
    """``None`` if ``request()`` was served, else ``{"kind", "message"}`` of the error it raised."""
    try:
        request()
    except Exception as error:  # noqa: BLE001 - the test checks the kind and message of each
        return {"kind": type(error).__name__, "message": " ".join(str(error).split())[:600]}
    return None


def _serve_concurrently(loaded, inputs, single_answers, bad_requests, threads=8, rounds=6):
    """One loaded model answering good and bad requests from ``threads`` threads at once, as a server does.

    Every good request must get exactly its single-request answer (``single_answers``) and every bad one the
    refusal it got alone; returns what differed, by request.
    """
    good = {}
    for batch in (1, 3):
        floats = inputs[f"float_{batch}"]
        good[f"serving_default/{batch}"] = lambda f=floats: loaded.signatures["serving_default"](images=tf.constant(f))
        good[f"serving_uint8/{batch}"] = lambda f=floats: loaded.signatures["serving_uint8"](images=tf.constant(f.astype("uint8")))
        encoded = [bytes(inputs[f"png_{batch}_{i}"]) for i in range(batch)]
        good[f"serving_image_bytes/{batch}"] = lambda e=encoded: loaded.signatures["serving_image_bytes"](image_bytes=tf.constant(e))
    work = [("good", name) for name in good] + [("bad", name) for name in bad_requests]
    work = [work[i] for i in np.random.default_rng(0).permutation(len(work) * rounds) % len(work)]

    def serve(item):
        kind, name = item
        if kind == "bad":
            return item, _refusal(bad_requests[name])
        try:
            return item, {key: _numpy(tensor) for key, tensor in good[name]().items()}
        except Exception as error:  # noqa: BLE001 - a good request that fails is reported, never raised here
            return item, {"error": f"{type(error).__name__}: {error}"}

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(serve, work))
    alone = {name: _refusal(request) for name, request in bad_requests.items()}
    report = {"requests": len(results), "threads": threads, "good": 0, "bad": 0, "differed": []}
    for (kind, name), result in results:
        report[kind] += 1
        if kind == "bad":
            same = result is not None and alone[name] is not None and result["kind"] == alone[name]["kind"]
        else:
            same = "error" not in result and all(
                np.array_equal(value, single_answers[f"{name}/{key}"]) for key, value in result.items())
        if not same:
            report["differed"].append({"request": name, "got": str(result)[:300]})
    return report


def main(version_dir, inputs_path, outputs_path, report_path):
    loaded = tf.saved_model.load(version_dir)
    inputs = np.load(inputs_path, allow_pickle=False)
    outputs, report = {}, {"signatures": sorted(loaded.signatures.keys())}
    for batch in (1, 3, 17):
        floats = inputs[f"float_{batch}"]
        for name, value in (("serving_default", floats), ("serving_uint8", floats.astype("uint8"))):
            result = loaded.signatures[name](images=tf.constant(value))
            for key, tensor in result.items():
                outputs[f"{name}/{batch}/{key}"] = _numpy(tensor)
        encoded = [bytes(inputs[f"png_{batch}_{i}"]) for i in range(batch)]
        result = loaded.signatures["serving_image_bytes"](image_bytes=tf.constant(encoded))
        for key, tensor in result.items():
            outputs[f"serving_image_bytes/{batch}/{key}"] = _numpy(tensor)
    result = loaded.signatures["serving_image_bytes"](image_bytes=tf.constant([bytes(inputs["large_jpeg"])]))
    outputs["large_jpeg/probabilities"] = result["probabilities"].numpy()

    good = tf.constant([bytes(inputs["png_1_0"])])
    bad_requests = {
        "garbage_bytes": lambda: loaded.signatures["serving_image_bytes"](image_bytes=tf.constant([b"not an image"])),
        "empty_string": lambda: loaded.signatures["serving_image_bytes"](image_bytes=tf.constant([b""])),
        "one_pixel_image": lambda: loaded.signatures["serving_image_bytes"](image_bytes=tf.constant([bytes(inputs["tiny_png"])])),
        "wrong_dtype": lambda: loaded.signatures["serving_default"](images=tf.constant(inputs["float_1"].astype("float64"))),
        "wrong_rank": lambda: loaded.signatures["serving_default"](images=tf.constant(inputs["float_1"][0])),
        "wrong_size": lambda: loaded.signatures["serving_default"](images=tf.zeros((1, 8, 8, 3))),
        "nan_pixels": lambda: loaded.signatures["serving_default"](images=tf.constant(_with(inputs["float_1"], np.nan))),
        "inf_pixels": lambda: loaded.signatures["serving_default"](images=tf.constant(_with(inputs["float_1"], np.inf))),
        "palette_bmp": lambda: loaded.signatures["serving_image_bytes"](image_bytes=tf.constant([bytes(inputs["palette_bmp"])])),
        "bomb_png": lambda: loaded.signatures["serving_image_bytes"](image_bytes=tf.constant([bytes(inputs["bomb_png"])])),
    }
    report["errors"], report["served_after"] = {}, {}
    for name, request in bad_requests.items():
        report["errors"][name] = _refusal(request)
        after = loaded.signatures["serving_image_bytes"](image_bytes=good)["probabilities"].numpy()
        report["served_after"][name] = bool(np.all(np.isfinite(after)))
    report["concurrent"] = _serve_concurrently(loaded, inputs, outputs, bad_requests)
    report["modules"] = sorted(m for m, module in sys.modules.items() if m.startswith("keras") and module is not None)
    np.savez(outputs_path, **outputs)
    with open(report_path, "w") as file:
        json.dump(report, file)


if __name__ == "__main__":
    main(*sys.argv[1:5])
