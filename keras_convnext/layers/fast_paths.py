"""Which backend-specific kernel each layer runs, and one switch that turns them all off.

A fast path computes the same function as the portable ``keras.ops`` code, with the same weights and config,
and is tested against it; it exists because the portable code is slow on that backend:

- ``depthwise``: JAX on CPU runs a grouped convolution one group at a time (``"shift_and_add"`` instead);
  torch gets its bias fused into ``F.conv2d`` (``"torch_conv2d"``).
- ``layer_norm``: torch's fused ``F.layer_norm`` (``"torch_layer_norm"``) instead of ten elementwise passes.
- ``dense``: torch's ``F.linear`` (``"torch_linear"``), one ``addmm`` with the bias fused.
- ``fused_mlp``: in torch inference on CPU, the block's MLP as two oneDNN kernels with GELU, LayerScale and the
  residual add fused in (``"torch_onednn"``; see ``torch_inference``).

One fast path is a compiler setting rather than a kernel: ``disable_ynn_fusion_on_jax_cpu``.
"""

import contextlib
import functools
import os

import keras

KINDS = ("depthwise", "layer_norm", "dense", "fused_mlp")
_PORTABLE_ONLY = []


@contextlib.contextmanager
def portable_only():
    """Inside this block every layer traces its portable ``keras.ops`` code, never a fast path.

    For exporters (an ONNX graph then holds one grouped ``Conv`` per block instead of 49 multiply-adds) and
    for tests that compare a fast path with the portable one.

    Example:
        >>> with portable_only():
        ...     model.export("model.onnx", format="onnx")
    """
    _PORTABLE_ONLY.append(True)
    try:
        yield
    finally:
        _PORTABLE_ONLY.pop()


def is_plain_dense(dense):
    """Whether a fast path may compute ``dense`` from its kernel and bias directly, bypassing ``Dense.__call__``:
    only a Dense with neither LoRA nor quantization, whose ``__call__`` would add nothing else.

    Example:
        >>> is_plain_dense(keras.layers.Dense(4))
        True
    """
    return not dense.lora_enabled and getattr(dense, "quantization_mode", None) is None


def fast_path(kind):
    """The fast path a layer of ``kind`` takes in this process, or ``"portable"``.

    Example:
        >>> fast_path("layer_norm")  # under KERAS_BACKEND=torch
        'torch_layer_norm'
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown fast-path kind {kind!r}; expected one of {KINDS}.")
    if _PORTABLE_ONLY:
        return "portable"
    backend = keras.backend.backend()
    if backend == "torch":
        if kind == "fused_mlp":
            return "torch_onednn" if _onednn_available() else "portable"
        return {"depthwise": "torch_conv2d", "layer_norm": "torch_layer_norm", "dense": "torch_linear"}[kind]
    if backend == "jax" and kind == "depthwise":
        import jax

        return "shift_and_add" if jax.default_backend() == "cpu" else "portable"
    return "portable"


@functools.cache
def _onednn_available():
    # Asked on every block call; the torch build does not change within a process.
    from keras_convnext.layers.torch_inference import onednn_available

    return onednn_available()


YNN_FUSION_OFF = "--xla_cpu_experimental_ynn_fusion_type="
KEEP_XLA_FLAGS = "KERAS_CONVNEXT_KEEP_XLA_FLAGS"


def disable_ynn_fusion_on_jax_cpu():
    """Turns off XLA:CPU's experimental YNN fusion for this process, where that is still possible; True if done.

    That fusion pulls a dozen of the depthwise conv's shifted slices into the following LayerNorm and dot,
    materialising each as a full tensor: a stage-1 ConvNeXt block took 120 ms with it and 71 ms without, and
    ConvNeXt-T ran ~30% faster end to end. ``import keras_convnext`` calls this. It appends the flag to
    ``XLA_FLAGS`` only when the backend is JAX, JAX has not started its CPU client yet (XLA reads the flags then),
    the flag is not set already, and ``KERAS_CONVNEXT_KEEP_XLA_FLAGS`` is unset (set it to opt out).

    Example:
        >>> disable_ynn_fusion_on_jax_cpu()  # before any JAX computation, under KERAS_BACKEND=jax
        True
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if keras.backend.backend() != "jax" or os.environ.get(KEEP_XLA_FLAGS) or "ynn_fusion_type" in flags:
        return False
    from jax._src import xla_bridge

    if getattr(xla_bridge, "_backends", True):  # already started, or a JAX without this attribute: leave it
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {YNN_FUSION_OFF}".strip()
    return True
