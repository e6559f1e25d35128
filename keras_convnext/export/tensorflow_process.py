"""Running an export under the TensorFlow backend from a JAX or PyTorch process: ``python -m keras_convnext.export``
in a subprocess with ``KERAS_BACKEND=tensorflow``, its one ``ERROR <type>: <message>`` line raised again here."""

import json
import os
import subprocess
import sys

TASKS = ("saved_model", "litert", "openvino")


def run_in_tensorflow_process(task, spec, target, options):
    """Runs export ``task`` (one of ``TASKS``) of model ``spec`` to ``target`` in a TensorFlow-backend subprocess.

    A failure the user caused (``ValueError``) is raised as ``ValueError`` with its message; any other as
    ``RuntimeError``.

    Example:
        >>> run_in_tensorflow_process("litert", spec, "out/model.tflite", {"quantization": "float16"})  # doctest: +SKIP
    """
    if task not in TASKS:
        raise ValueError(f"Unknown export task {task!r}; expected one of {TASKS}.")
    request = json.dumps({"task": task, "spec": spec, "target": str(target), "options": options})
    done = subprocess.run(
        [sys.executable, "-m", "keras_convnext.export", request],
        env={**os.environ, "KERAS_BACKEND": "tensorflow"},
        capture_output=True,
        text=True,
    )
    if done.returncode:
        reported = [line[len("ERROR "):] for line in done.stderr.splitlines() if line.startswith("ERROR ")]
        if reported:
            kind, _, message = reported[-1].partition(": ")
            if kind in ("ValueError", "CheckpointFormatError"):  # the user's input: its message is written for them
                raise ValueError(f"Export under the TensorFlow backend failed: {message}")
            raise RuntimeError(f"Export under the TensorFlow backend failed: {reported[-1]}")
        raise RuntimeError(f"Export under the TensorFlow backend failed:\n{done.stderr[-4000:]}")
