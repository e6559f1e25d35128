"""Process-wide set-up that must happen before a backend starts, done once when ``keras_convnext`` is imported."""

import os

import keras

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
        >>> disable_ynn_fusion_on_jax_cpu()  # JAX has started here, so XLA's flags are read already
        False
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if keras.backend.backend() != "jax" or os.environ.get(KEEP_XLA_FLAGS) or "ynn_fusion_type" in flags:
        return False
    from jax._src import xla_bridge

    if getattr(xla_bridge, "_backends", True):  # already started, or a JAX without this attribute: leave it
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {YNN_FUSION_OFF}".strip()
    return True
