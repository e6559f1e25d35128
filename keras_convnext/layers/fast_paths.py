"""Which backend-specific kernel each layer runs, and one switch that turns them all off.

A fast path computes the same function as the portable ``keras.ops`` code, with the same weights and config,
and is tested against it; it exists because the portable code is slow on that backend:

- ``depthwise``: JAX on CPU runs a grouped convolution one group at a time (``"shift_and_add"`` instead, image by
  image, with a gradient written for the CPU); torch gets its bias fused into ``F.conv2d`` (``"torch_conv2d"``).
  ``"shift_and_add_autodiff"`` (JAX, never chosen by default) is the same forward with JAX's own gradient, for
  accelerators, where the CPU gradient's loop over image rows would serialise. ``"pallas"`` (JAX, never chosen by
  default, channels-last only) is the conv and its bias as one Pallas kernel for a GPU (``pallas_depthwise``), run
  by Pallas' interpreter elsewhere.
- ``layer_norm``: torch's fused ``F.layer_norm`` (``"torch_layer_norm"``) instead of ten elementwise passes; on JAX
  on CPU the portable forward with a hand-written gradient (``"jax_cpu_gradient"``, see ``jax_cpu_gradients``).
- ``dense``: torch's ``F.linear`` (``"torch_linear"``), one ``addmm`` with the bias fused; on JAX on CPU the
  block's pointwise layers and LayerScale with hand-written gradients, and the stem's and downsamplings' convs as
  matrix products over patches (``"jax_cpu_gradient"``).
- ``fused_mlp``: in torch inference on CPU, the block's MLP as two oneDNN kernels with GELU, LayerScale and the
  residual add fused in (``"torch_onednn"``; see ``torch_onednn_block``).
- ``gelu``: torch's own exact GELU (``"backend_gelu"``); on JAX on CPU the erf form with its derivative written out
  (``"jax_cpu_gradient"``). The portable one is ``x/2 * (1 + erf(x/√2))``, which TensorFlow keeps (its own exact
  GELU uses Erfc, which ONNX lacks, so tf2onnx exports would not load) and JAX on a GPU takes: ``jax.nn.gelu``'s
  ``erfc`` form (``"backend_gelu"``, never chosen on JAX) made XLA's GELU fusions 2.6x timm's, and ConvNeXt-T
  inference 0.71x timm ``torch.compile`` on an H200 against 0.98x with the erf form.

The choice is made once per process (on torch at import, elsewhere the first time a layer asks), and read
from a dict after that: no imports, probes or backend queries run inside a layer's ``call``, so ``torch.compile``
traces it without a graph break. ``KERAS_CONVNEXT_FAST_PATHS`` overrides it for a process (``"portable"``, or
``"depthwise=shift_and_add_autodiff,gelu=portable"``), ``use_fast_paths(...)`` for a block of code; both refuse a
path this backend does not have. A compiler setting that speeds JAX on CPU is made once per process in
``keras_convnext.process_setup``.
"""

import contextlib
import os

import keras

if keras.backend.backend() == "torch":
    # Imported here, not in ``call``: an import inside traced code breaks torch.compile's graph.
    import torch
    import torch.nn.functional as torch_functional
else:
    torch = torch_functional = None

KINDS = ("depthwise", "layer_norm", "dense", "fused_mlp", "gelu")
OVERRIDE_VARIABLE = "KERAS_CONVNEXT_FAST_PATHS"
# Every path a layer can take, per backend; "portable" is every kind's on every backend.
BACKEND_PATHS = {
    "torch": {"depthwise": ("torch_conv2d",), "layer_norm": ("torch_layer_norm",), "dense": ("torch_linear",),
              "fused_mlp": ("torch_onednn",), "gelu": ("backend_gelu",)},
    "jax": {"depthwise": ("shift_and_add", "shift_and_add_autodiff", "pallas"), "dense": ("jax_cpu_gradient",),
            "layer_norm": ("jax_cpu_gradient",),
            "gelu": ("backend_gelu", "jax_cpu_gradient")},
}
_OVERRIDES = []
_CHOSEN = {}


def check_paths(paths, backend=None):
    """``paths`` (kind -> path) if this backend has every one of them, else ``ValueError`` naming what it has.

    Example:
        >>> check_paths({"depthwise": "portable"})
        {'depthwise': 'portable'}
    """
    backend = backend or keras.backend.backend()
    for kind, path in paths.items():
        _check_kind(kind)
        available = ("portable", *BACKEND_PATHS.get(backend, {}).get(kind, ()))
        if path not in available:
            raise ValueError(
                f"{path!r} is not a {kind} path on the {backend} backend; expected one of {', '.join(available)}."
            )
    return dict(paths)


def _check_kind(kind):
    if kind not in KINDS:
        raise ValueError(f"Unknown fast-path kind {kind!r}; expected one of {KINDS}.")


def parse_overrides(text, backend=None):
    """The paths a ``KERAS_CONVNEXT_FAST_PATHS`` value names: ``"portable"`` for every kind, or ``kind=path`` pairs
    separated by commas.

    Example:
        >>> parse_overrides("portable") == dict.fromkeys(KINDS, "portable")
        True
        >>> parse_overrides("gelu=portable, depthwise=portable")
        {'gelu': 'portable', 'depthwise': 'portable'}
    """
    text = text.strip()
    if text == "portable":
        return dict.fromkeys(KINDS, "portable")
    pairs = [item.strip() for item in text.split(",") if item.strip()]
    malformed = [pair for pair in pairs if pair.count("=") != 1]
    if malformed or not pairs:
        raise ValueError(
            f"{OVERRIDE_VARIABLE}={text!r} is not understood; expected 'portable' or kind=path pairs separated by "
            f"commas (kinds: {', '.join(KINDS)})."
        )
    try:
        return check_paths(dict(pair.replace(" ", "").split("=") for pair in pairs), backend)
    except ValueError as error:
        raise ValueError(f"{OVERRIDE_VARIABLE}={text!r}: {error}") from None


@contextlib.contextmanager
def use_fast_paths(**paths):
    """Inside this block the layers of the named kinds take the given paths (checked against this backend's).

    Layers read their path when they run or are traced, so compile or call the model inside the block.

    Example:
        >>> with use_fast_paths(depthwise="portable"):
        ...     fast_path("depthwise")
        'portable'
    """
    _OVERRIDES.append(check_paths(paths))
    try:
        yield
    finally:
        _OVERRIDES.pop()


@contextlib.contextmanager
def portable_only():
    """Inside this block every layer traces its portable ``keras.ops`` code, never a fast path.

    For exporters (an ONNX graph then holds one grouped ``Conv`` per block instead of 49 multiply-adds) and
    for tests that compare a fast path with the portable one.

    Example:
        >>> with portable_only():
        ...     fast_path("depthwise")
        'portable'
    """
    with use_fast_paths(**dict.fromkeys(KINDS, "portable")):
        yield


def is_plain_kernel_layer(layer):
    """Whether a fast path may compute ``layer`` (a ``Dense`` or a ``Conv2D``) from its kernel and bias directly,
    bypassing its ``__call__``: only a layer with neither LoRA nor quantization, whose ``__call__`` would add
    nothing else.

    Example:
        >>> is_plain_kernel_layer(keras.layers.Dense(4)), is_plain_kernel_layer(keras.layers.Conv2D(4, 2))
        (True, True)
    """
    return not layer.lora_enabled and getattr(layer, "quantization_mode", None) is None


def fast_path(kind):
    """The fast path a layer of ``kind`` takes in this process, or ``"portable"``.

    Example:
        >>> fast_path("fused_mlp") in ("torch_onednn", "portable")  # the first under KERAS_BACKEND=torch on CPU
        True
    """
    _check_kind(kind)
    for overrides in reversed(_OVERRIDES):
        if kind in overrides:
            return overrides[kind]
    if not _CHOSEN:
        _CHOSEN.update(_choose_for_this_process())
    return _CHOSEN[kind]


def _choose_for_this_process():
    backend = keras.backend.backend()
    chosen = dict.fromkeys(KINDS, "portable")
    onednn = False
    if backend == "torch":
        onednn = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
        chosen.update(
            depthwise="torch_conv2d",
            layer_norm="torch_layer_norm",
            dense="torch_linear",
            gelu="backend_gelu",
            fused_mlp="torch_onednn" if onednn else "portable",
        )
    elif backend == "jax":
        import jax

        if jax.default_backend() == "cpu":
            chosen.update(depthwise="shift_and_add", dense="jax_cpu_gradient", gelu="jax_cpu_gradient",
                          layer_norm="jax_cpu_gradient")
    if os.environ.get(OVERRIDE_VARIABLE):
        overrides = parse_overrides(os.environ[OVERRIDE_VARIABLE], backend)
        if overrides.get("fused_mlp") == "torch_onednn" and not onednn:
            raise ValueError(f"{OVERRIDE_VARIABLE} asks for torch_onednn, but this torch build has no oneDNN kernels.")
        chosen.update(overrides)
    return chosen


if torch is not None:
    # torch.compile must not trace the choice (its oneDNN probe is a graph break), so on torch it is made at import.
    try:
        _CHOSEN.update(_choose_for_this_process())
    except ValueError:
        pass  # a bad KERAS_CONVNEXT_FAST_PATHS: raised again, with its message, where a layer first asks
