"""What XLA costs on TensorFlow: ConvNeXt-T, 224, batch 8, inference and a training step, ``jit_compile=True``
against TensorFlow's default graph, alternating rounds in one process.

Run: ``KERAS_BACKEND=tensorflow python -m keras_convnext.benchmarks.tensorflow_xla_cost``
"""

import statistics
import time

import keras
import numpy as np


def main(rounds=5, warmup=2):
    """Prints images/s with and without XLA, and the per-round speed ratio, for inference and training.

    Example:
        >>> main()  # minutes on a CPU, under KERAS_BACKEND=tensorflow  # doctest: +SKIP
        inference xla img/s 3.00 default img/s 20.92  xla/default speed 0.14x (0.13-0.17)
    """
    import keras_convnext as kc

    rng = np.random.default_rng(0)
    images, labels = rng.uniform(0, 255, (8, 224, 224, 3)).astype("float32"), rng.integers(0, 1000, 8)

    def make(jit_compile):
        model = kc.create_model("convnext_tiny", classifier_activation=None)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.compile(optimizer=keras.optimizers.AdamW(1e-4), loss=loss, jit_compile=jit_compile)
        return model

    xla, default = make(True), make(False)
    xla_predict = kc.compile_for_inference(xla, tensorflow_xla=True)
    default_folded = kc.optimize_for_inference(default)
    steps = {
        "inference xla": lambda: np.asarray(xla_predict(images)),
        "inference default": lambda: default_folded.predict_on_batch(images),
        "training xla": lambda: xla.train_on_batch(images, labels),
        "training default": lambda: default.train_on_batch(images, labels),
    }
    for _ in range(warmup):
        for step in steps.values():
            step()
    seconds = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            seconds[name].append(time.perf_counter() - start)
    for mode in ("inference", "training"):
        with_xla, without = seconds[f"{mode} xla"], seconds[f"{mode} default"]
        ratios = [theirs / mine for mine, theirs in zip(with_xla, without)]
        print(f"{mode} xla img/s {8 / statistics.median(with_xla):.2f} default img/s "
              f"{8 / statistics.median(without):.2f}  xla/default speed {statistics.median(ratios):.2f}x "
              f"({min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main()
