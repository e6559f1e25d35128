"""On a CUDA machine (torch backend): compile_for_inference equals eager, and ConvNeXt-T traces in one graph.

Run: ``KERAS_BACKEND=torch python -m keras_convnext.benchmarks.gpu_compile_check RESULT.json``; prints and writes
the max |compiled - eager| of a tiny model and the graph and graph-break counts of ``torch._dynamo.explain``.
"""

import json
import sys
import time

import keras
import numpy as np
import torch

import keras_convnext as kc


def main(result_path):
    """Runs the checks on the GPU and writes them to ``result_path``.

    Example:
        >>> main("gpu_compile_check.json")  # needs a CUDA GPU and the torch backend  # doctest: +SKIP
    """
    out = {}
    t = time.time()
    m = kc.ConvNeXt(depths=(1, 1, 2, 1), dims=(8, 16, 24, 32), use_grn=True, layer_scale_init_value=0.5, input_shape=(32, 32, 3), classes=5)
    rng = np.random.default_rng(0)
    for v in m.weights:
        v.assign(keras.ops.convert_to_numpy(v) + rng.normal(0, 0.1, v.shape).astype("float32"))
    x = rng.uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    eager = m.predict(x, verbose=0)
    compiled = keras.ops.convert_to_numpy(kc.compile_for_inference(m)(x))
    out["tiny_max_abs_diff_compiled_vs_eager"] = float(np.abs(compiled - eager).max())
    big = kc.create_model("convnext_tiny", input_shape=(224, 224, 3))
    xb = torch.rand(8, 224, 224, 3, device="cuda") * 255
    for training in (False, True):
        torch._dynamo.reset()
        r = torch._dynamo.explain(lambda z: big(z, training=training))(xb)
        out[f"convnext_tiny_training_{training}"] = {"graphs": r.graph_count, "breaks": r.graph_break_count}
    out["device"] = torch.cuda.get_device_name(0)
    out["seconds"] = time.time() - t
    print(json.dumps(out))
    with open(result_path, "w") as file:
        json.dump(out, file, indent=2)


if __name__ == "__main__":
    main(sys.argv[1])
