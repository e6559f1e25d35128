"""Reading a checkpoint file into ``{key: numpy array}``, recognising the container from its bytes.

Torch files are read with ``torch.load(weights_only=True)`` (no arbitrary unpickling); safetensors with
``safetensors.numpy``; Keras ``.h5`` files with ``h5py``.
"""

import zipfile
from pathlib import Path

import h5py
import numpy as np

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_MAGIC = b"\x80"
# Wrappers in which training scripts nest the state dict (FB: "model", Lightning: "state_dict").
STATE_DICT_WRAPPERS = ("model", "state_dict", "model_state_dict", "module")


class CheckpointFormatError(ValueError):
    """The file is not a checkpoint in any container this package reads, or cannot be read whole."""


KERAS_ARCHIVE_WEIGHTS = "model.weights.h5"  # what a .keras file (a zip) holds the weights in


def open_hdf5(path):
    """``h5py.File(path, "r")``, with an error naming the file when it cannot be read (truncated, damaged).

    Example:
        >>> open_hdf5("notes.txt")  # doctest: +SKIP
        Traceback (most recent call last):
        CheckpointFormatError: notes.txt could not be read as an HDF5 file (...); it may be truncated or damaged.
    """
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise CheckpointFormatError(
            f"{path} could not be read as an HDF5 file ({' '.join(str(error).split())}); it may be truncated or "
            "damaged: download or save it again."
        ) from error


def sniff_container(path):
    """The container of ``path`` from its content: ``keras`` (a ``.weights.h5``), ``keras_archive`` (a ``.keras``
    file), ``keras_legacy_h5``, ``safetensors`` or ``torch``.

    Example:
        >>> sniff_container("convnext_tiny.safetensors")  # doctest: +SKIP
        'safetensors'
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointFormatError(f"{path} is a directory; pass the checkpoint file inside it.")
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(HDF5_MAGIC):
        with open_hdf5(path) as f:
            if "layer_names" in f.attrs or "model_weights" in f:
                return "keras_legacy_h5"
            if "layers" in f or "vars" in f:
                return "keras"
        raise CheckpointFormatError(f"{path} is an HDF5 file but neither a Keras 3 .weights.h5 nor a Keras 2 .h5 weight file.")
    if head.startswith(ZIP_MAGIC) and KERAS_ARCHIVE_WEIGHTS in _zip_names(path):
        return "keras_archive"
    if head.startswith(ZIP_MAGIC) or head.startswith(PICKLE_MAGIC):
        return "torch"
    if len(head) >= 9 and head[8:9] == b"{":
        header_length = int.from_bytes(head[:8], "little")
        if 0 < header_length < 100_000_000:
            return "safetensors"
    raise CheckpointFormatError(
        f"{path} is not a checkpoint this package reads: expected a Keras .weights.h5 or .h5, a .safetensors "
        "file, or a PyTorch .pth/.bin/.pt file (recognised by content, not by name)."
    )


def read_state_dict(path, container=None):
    """Reads a safetensors, torch or Keras 2 ``.h5`` checkpoint into ``{key: float32 numpy array}``.

    ``container`` is ``sniff_container(path)``, passed by a caller that has already looked.

    Example:
        >>> state = read_state_dict("pytorch_model.bin")  # a checkpoint of yours  # doctest: +SKIP
        >>> state["classifier.weight"].shape  # doctest: +SKIP
        (1000, 768)
    """
    container = container or sniff_container(path)
    readers = {"safetensors": _read_safetensors, "torch": _read_torch, "keras_legacy_h5": _read_keras_legacy_h5}
    if container not in readers:
        raise CheckpointFormatError(
            f"{path} is a Keras 3 {'.keras' if container == 'keras_archive' else '.weights.h5'} file; load it with "
            "weights=... or model.load_weights()."
        )
    try:
        state = readers[container](path)
    except CheckpointFormatError:
        raise
    except Exception as error:  # noqa: BLE001 - each reader's own error type; the file is named in ours
        raise CheckpointFormatError(
            f"{path} could not be read as a {container} checkpoint ({type(error).__name__}: "
            f"{' '.join(str(error).split())[:300]}); it may be truncated or damaged: download or save it again."
        ) from error
    return {key: np.asarray(value, dtype=np.float32) for key, value in state.items()}


def _zip_names(path):
    try:
        with zipfile.ZipFile(path) as archive:
            return set(archive.namelist())
    except zipfile.BadZipFile:
        return set()


def _read_safetensors(path):
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (TypeError, ValueError):  # bfloat16 has no NumPy dtype: read through torch when it is installed
        from safetensors.torch import load_file as load_torch

        return {key: value.float().numpy() for key, value in load_torch(str(path)).items()}


def _read_torch(path):
    try:
        import torch
    except ImportError as error:
        raise CheckpointFormatError(
            f"{path} is a PyTorch checkpoint; reading it needs torch (pip install torch), or convert it to "
            "safetensors first."
        ) from error
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    for wrapper in STATE_DICT_WRAPPERS:
        if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
            break
    if not isinstance(state, dict):
        raise CheckpointFormatError(f"{path} holds a {type(state).__name__}, not a state dict of tensors.")
    return {key: value.detach().float().numpy() for key, value in state.items() if hasattr(value, "detach")}


def _read_keras_legacy_h5(path):
    """Keras 2 / ``keras.applications`` weight files: one group per layer, weights listed in ``weight_names``."""
    state = {}
    with open_hdf5(path) as f:
        root = f["model_weights"] if "model_weights" in f else f
        for layer_name in _names(root.attrs.get("layer_names", [])):
            group = root[layer_name]
            for weight_name in _names(group.attrs.get("weight_names", [])):
                parts = weight_name.split(":")[0].split("/")
                key = "/".join(parts[-2:]) if len(parts) >= 2 else f"{layer_name}/{parts[-1]}"
                state[key] = group[weight_name][()]
    return state


def _names(values):
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]
