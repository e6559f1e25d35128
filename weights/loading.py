"""Putting a checkpoint's arrays into a model by structure: canonical keys, checks first, then assignment."""

import collections
import contextlib
import re
import tempfile
import warnings
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np

from keras_convnext.layer_names import HEAD_DENSE, HEAD_HIDDEN, HEAD_LAYERNORM
from keras_convnext.weights.checkpoint_readers import (
    KERAS_ARCHIVE_WEIGHTS,
    CheckpointFormatError,
    open_hdf5,
    read_state_dict,
    sniff_container,
)
from keras_convnext.weights.download import cache_dir, sha256_of
from keras_convnext.weights.layouts import detect_layout
from keras_convnext.weights.saving import save_weights

HEAD_KERNEL = f"{HEAD_DENSE}/kernel"
HEAD_PREFIXES = (f"{HEAD_DENSE}/",)
# Absent from a model without its top or pooling.
OPTIONAL_PREFIXES = (f"{HEAD_DENSE}/", f"{HEAD_HIDDEN}/", f"{HEAD_LAYERNORM}/")
# What Keras' load_weights(skip_mismatch=True) warns for each layer it skipped; Keras has no public report of them
# (tests/test_internals.py fails, naming it, if a Keras release words it otherwise).
KERAS_SKIPPED_WARNING = "could not be loaded"


def canonical_key(path):
    """A variable path with the repeated layer prefix dropped: ``stage_2_block_5/pointwise_1/kernel``.

    Example:
        >>> canonical_key("stage_2_block_5/stage_2_block_5_pointwise_1/kernel")
        'stage_2_block_5/pointwise_1/kernel'
    """
    parts = path.split("/")
    if len(parts) == 3 and parts[1].startswith(parts[0] + "_"):
        parts[1] = parts[1][len(parts[0]) + 1 :]
    return "/".join(parts[-3:]) if len(parts) > 3 else "/".join(parts)


def model_slots(model):
    """``{canonical key: variable}`` for every weight of a keras_convnext model.

    Example:
        >>> import keras_convnext as kc
        >>> sorted(model_slots(kc.ConvNeXtAtto(input_shape=(32, 32, 3))))[:2]
        ['head_dense/bias', 'head_dense/kernel']
    """
    return {canonical_key(v.path): v for v in model.weights}


def convert_state_dict(state, layout=None):
    """Maps a source state dict to ``{canonical key: Keras-layout array}``: ``(arrays, unmatched keys, layout)``.

    Example:
        >>> import numpy as np
        >>> arrays, unmatched, layout = convert_state_dict({"stem.0.weight": np.zeros((96, 3, 4, 4))})
        >>> arrays["stem/conv/kernel"].shape, unmatched, layout.name
        ((4, 4, 3, 96), [], 'timm')
    """
    state = {key.removeprefix("module."): value for key, value in state.items()}
    layout = layout or detect_layout(state)
    state = layout.renamed(state)
    arrays, unmatched = {}, []
    for key, value in state.items():
        target = layout.target(key)
        if target is None:
            if not _ignored(layout, key):
                unmatched.append(key)
            continue
        arrays[target] = layout.to_keras(target, value)
    for dense in layout.zero_biases:
        kernel = arrays.get(f"{dense}/kernel")
        if kernel is not None and f"{dense}/bias" not in arrays:
            arrays[f"{dense}/bias"] = np.zeros(kernel.shape[-1], dtype=kernel.dtype)
    return arrays, unmatched, layout


def _ignored(layout, key):
    return re.fullmatch(layout.ignored, key) is not None


def assign_arrays(model, arrays, *, source="checkpoint", unmatched=(), allow_new_classifier=True):
    """Checks ``arrays`` against ``model``, then assigns them; nothing changes unless every check passes.

    The classifier is skipped (with a warning) when its shape differs from the model's (fine-tuning to other
    classes) and silently when the model has no top; with ``allow_new_classifier=False`` (the caller wants the
    checkpoint's own model) either case raises ``ValueError`` instead. Anything else missing, unexpected or
    misshapen raises ``ValueError`` naming the tensor and both shapes. Returns the list of skipped canonical keys.

    Example:
        >>> skipped = assign_arrays(model, {"stem/conv/kernel": kernel, ...})  # every key of the model  # doctest: +SKIP
    """
    slots = model_slots(model)
    _check_head_kind(slots, arrays, source)
    skipped = []
    head_kernel = arrays.get(HEAD_KERNEL)
    if head_kernel is not None and HEAD_KERNEL in slots:
        model_shape = tuple(slots[HEAD_KERNEL].shape)
        if head_kernel.shape[0] == model_shape[0] and head_kernel.shape != model_shape:
            if not allow_new_classifier:
                raise ValueError(_other_classes_message(source, head_kernel.shape[1], model_shape[1]))
            skipped += [key for key in arrays if key.startswith(HEAD_PREFIXES)]
            warnings.warn(
                f"The {source} has a {head_kernel.shape[1]}-class head and the model {model_shape[1]} classes: "
                "loaded every weight but the classifier (head_dense), which keeps its initialisation.",
                stacklevel=3,
            )
    skipped += [key for key in arrays if key.startswith(OPTIONAL_PREFIXES) and key not in slots]
    if HEAD_KERNEL in slots and HEAD_KERNEL not in arrays:
        if not allow_new_classifier:
            raise ValueError(_no_classifier_message(source))
        skipped += [key for key in slots if key.startswith(HEAD_PREFIXES)]
        warnings.warn(
            f"The {source} has no classifier: loaded every other weight; head_dense keeps its initialisation.",
            stacklevel=3,
        )

    for key, variable in slots.items():
        if key in arrays and key not in skipped and tuple(arrays[key].shape) != tuple(variable.shape):
            raise ValueError(
                f"The {source} does not fit this model: {key} has shape {tuple(arrays[key].shape)} in the "
                f"{source} and {tuple(variable.shape)} in the model. Is it a checkpoint of another variant?"
            )
    missing = [key for key in slots if key not in arrays and key not in skipped]
    unexpected = list(unmatched) + [key for key in arrays if key not in slots and key not in skipped]
    if missing or unexpected:
        raise ValueError(
            f"The {source} does not fit this model. Missing from it ({len(missing)}): {_first(missing)}. "
            f"Unexpected in it ({len(unexpected)}): {_first(unexpected)}."
        )
    for key, variable in slots.items():
        if key in arrays and key not in skipped:
            variable.assign(arrays[key].astype(variable.dtype))
    return skipped


def _other_classes_message(source, file_classes, model_classes):
    return (
        f"The {source} holds a {file_classes}-class classifier and the model has {model_classes} classes; expected the "
        f"same number: build the model with classes={file_classes} (--classes {file_classes}) to use the file's "
        "classifier. Only fine-tuning starts a new classifier."
    )


def _no_classifier_message(source):
    return (
        f"The {source} holds no classifier (head_dense): it is a backbone, and the model's classifier would be "
        "random. Build the model with include_top=False, or fine-tune it (keras-convnext train --weights) first."
    )


def _check_head_kind(slots, arrays, source):
    """A model with its top and a checkpoint must agree on an MLP head (``head_hidden``) or a linear one."""
    hidden = f"{HEAD_HIDDEN}/kernel"
    if HEAD_KERNEL not in slots or HEAD_KERNEL not in arrays or (hidden in arrays) == (hidden in slots):
        return
    if hidden in arrays:
        raise ValueError(
            f"The {source} has an MLP head ({HEAD_HIDDEN}, {arrays[hidden].shape[1]} units, as convnext_large_mlp's "
            f"CLIP towers) and the model a linear one: build it with head_hidden_size={arrays[hidden].shape[1]}."
        )
    raise ValueError(
        f"The {source} has a linear head and the model an MLP head ({HEAD_HIDDEN}): build it with head_hidden_size=None."
    )


def _first(keys, limit=6):
    if not keys:
        return "none"
    return ", ".join(keys[:limit]) + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_checkpoint(model, path, *, allow_new_classifier=True):
    """Loads a checkpoint file in any supported layout into ``model``; returns the detected layout's name.

    Our own ``.weights.h5`` goes through ``model.load_weights``; the others are read, converted by
    structure and checked before any variable changes. ``allow_new_classifier=False`` refuses a checkpoint whose
    classifier the model cannot take whole (another number of classes, or none), instead of loading the rest.

    Example:
        >>> load_checkpoint(model, "convnext_tiny.fb_in1k.safetensors")  # a checkpoint of yours  # doctest: +SKIP
        'timm'
    """
    container = sniff_container(path)
    if container == "keras":
        _load_keras_weights(model, path, allow_new_classifier=allow_new_classifier)
        return "keras_convnext"
    if container == "keras_archive":
        with _archive_weights(path) as weights:
            _load_keras_weights(model, weights, source=path, allow_new_classifier=allow_new_classifier)
        return "keras_convnext"
    converted = converted_cache_path(path)
    if converted.exists():
        try:
            _load_keras_weights(model, converted, source=path, allow_new_classifier=allow_new_classifier)
            return "keras_convnext"
        except CheckpointFormatError as error:
            warnings.warn(f"The cached conversion of {path} is unreadable ({error}); converting again.", stacklevel=2)
        except ValueError:
            pass  # cached for another architecture: convert again, which names what does not fit
    arrays, unmatched, layout = convert_state_dict(read_state_dict(path, container))
    skipped = assign_arrays(model, arrays, source=f"{layout.name} checkpoint {path}", unmatched=unmatched,
                            allow_new_classifier=allow_new_classifier)
    if not skipped:  # the model holds the whole checkpoint: keep it as a plain Keras weight file
        try:
            save_weights(model, converted)
        except OSError as error:
            warnings.warn(f"Could not cache the converted weights at {converted} ({error}); loading goes on.", stacklevel=2)
    return layout.name


def checkpoint_classes(path):
    """The number of classes of checkpoint ``path``'s classifier, or ``None`` for a checkpoint without one.

    Read before a model is built, so that what wants the file's own model (export, predict, evaluate) builds it
    with the file's classes instead of loading all but a classifier that would stay random.

    Example:
        >>> checkpoint_classes("runs/flowers/model.weights.h5")  # a file of yours  # doctest: +SKIP
        5
    """
    container = sniff_container(path)
    if container == "keras_archive":
        with _archive_weights(path) as weights:
            return _keras_file_classes(weights)
    if container == "keras":
        return _keras_file_classes(path)
    arrays, _, _ = convert_state_dict(read_state_dict(path, container))
    kernel = arrays.get(HEAD_KERNEL)
    return None if kernel is None else int(kernel.shape[-1])


# Keras names a .weights.h5's top-level groups by layer class and order (dense, dense_1, ...), not by layer name.
_KERAS_DENSE_GROUP = re.compile(r"dense(?:_(\d+))?")


def _keras_file_classes(path):
    """The classifier of one of our ``.weights.h5`` files is its last Dense (after ``head_hidden``, if any)."""
    with open_hdf5(path) as f:
        layers = f["layers"] if "layers" in f else {}
        denses = sorted((int(match.group(1) or 0), name) for name in layers if (match := _KERAS_DENSE_GROUP.fullmatch(name)))
        if not denses:
            return None
        return int(layers[denses[-1][1]]["vars"]["0"].shape[-1])


@contextlib.contextmanager
def _archive_weights(path):
    """The ``model.weights.h5`` inside a ``.keras`` archive, extracted to a temporary folder for the ``with`` block."""
    with tempfile.TemporaryDirectory() as scratch:
        with zipfile.ZipFile(path) as archive:
            yield Path(archive.extract(KERAS_ARCHIVE_WEIGHTS, scratch))


def converted_cache_path(path):
    """Where the ``.weights.h5`` converted from checkpoint ``path`` is cached, keyed by the file's SHA-256.

    Example:
        >>> converted_cache_path("convnext_tiny_1k_224_ema.pth")  # a checkpoint of yours  # doctest: +SKIP
        PosixPath('~/.keras/keras_convnext/converted/9c9b3a0e1f2d4c5b.weights.h5')
    """
    return cache_dir() / "converted" / f"{sha256_of(path)[:16]}.weights.h5"


def read_checkpoint(path):
    """Reads a foreign checkpoint file and converts it: ``(arrays by canonical key, unmatched keys, layout)``.

    Example:
        >>> arrays, unmatched, layout = read_checkpoint("convnext_tiny_1k_224_ema.pth")  # yours  # doctest: +SKIP
        >>> layout.name, arrays["head_dense/kernel"].shape  # doctest: +SKIP
        ('fb', (768, 1000))
    """
    return convert_state_dict(read_state_dict(path))


def _load_keras_weights(model, path, source=None, allow_new_classifier=True):
    """``model.load_weights`` that restores every variable if it fails, and tolerates only a new classifier
    (unless ``allow_new_classifier`` is False).

    ``source`` is the file the user named, where ``path`` was extracted from it (a ``.keras`` archive) or
    converted from it (the cache).
    """
    shown = source or path
    _check_keras_file_fits(model, path, shown)
    path = str(path)
    snapshot = [keras.ops.convert_to_numpy(v) for v in model.weights]
    try:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model.load_weights(path)
        except ValueError as error:
            if HEAD_DENSE not in str(error):
                raise
        else:
            for warning in caught:  # a load that went through: its warnings are the caller's to see
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
            return
        # Keras' own warnings of the failed attempt ("Skipping nested container ...") are dropped: ours says it.
        file_classes = _keras_file_classes(path)
        if not allow_new_classifier:
            model_classes = tuple(model.get_layer(HEAD_DENSE).kernel.shape)[-1]
            raise ValueError(
                _other_classes_message(shown, file_classes, model_classes) if file_classes else _no_classifier_message(shown)
            )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.load_weights(path, skip_mismatch=True)
        failures = [str(w.message) for w in caught if KERAS_SKIPPED_WARNING in str(w.message)]
        if len(failures) != 1 or "A total of 1 objects" not in failures[0] or HEAD_DENSE not in failures[0]:
            raise ValueError(f"{shown} does not fit this model: {' '.join(failures) or 'weights did not match'}")
        held = f"another number of classes ({file_classes}) than the model" if file_classes else "no classifier"
        warnings.warn(
            f"{shown} has {held}: loaded every weight but the classifier (head_dense), which keeps its initialisation.",
            stacklevel=3,
        )
    except BaseException:
        for variable, value in zip(model.weights, snapshot):
            variable.assign(value)
        raise


def _check_keras_file_fits(model, path, shown):
    """Keras loads a file with extra layers without a word; refuse one that holds more than our head."""
    in_file = []
    with open_hdf5(path) as f:
        f["layers"].visititems(lambda name, obj: in_file.append(obj.shape) if isinstance(obj, h5py.Dataset) else None)
    in_model = [tuple(v.shape) for v in model.weights if not canonical_key(v.path).startswith(OPTIONAL_PREFIXES)]
    not_found = collections.Counter(in_model) - collections.Counter(in_file)
    head_tensors = 6  # head_layernorm gamma/beta, head_hidden and head_dense kernel/bias
    if not_found or len(in_file) > len(in_model) + head_tensors:
        raise ValueError(
            f"{shown} does not fit this model: it holds {len(in_file)} tensors and the model {len(in_model)} "
            f"besides its head{'; no tensor of shape ' + str(next(iter(not_found))) + ' in the file' if not_found else ''}. "
            "Was it saved from another variant?"
        )


__all__ = ["assign_arrays", "checkpoint_classes", "converted_cache_path", "canonical_key", "convert_state_dict", "load_checkpoint", "model_slots", "read_checkpoint"]
