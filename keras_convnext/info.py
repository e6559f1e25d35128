"""What ``keras-convnext info`` reports: the variants with their sizes, the active backend and versions."""

import platform

import keras

from keras_convnext.applications import VARIANTS, count_parameters
from keras_convnext.version import __version__


def backend_versions():
    """The active Keras backend and the versions of the libraries in play, as an ordered dict.

    Example:
        >>> backend_versions()["backend"] in {"tensorflow", "jax", "torch", "numpy", "openvino"}
        True
    """
    backend = keras.backend.backend()
    versions = {
        "keras_convnext": __version__,
        "keras": keras.__version__,
        "backend": backend,
        "python": platform.python_version(),
    }
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(backend)
    if module:
        versions[module] = __import__(module).__version__
    return versions


def variant_table():
    """One row per variant: name, builder, family, depths, dims and exact parameter count (1000 classes).

    Example:
        >>> next(row for row in variant_table() if row["name"] == "convnext_tiny")["params"]
        28589128
    """
    return [
        {
            "name": v.name,
            "builder": v.builder_name,
            "family": v.family,
            "depths": v.depths,
            "dims": v.dims,
            "params": count_parameters(v.name),
        }
        for v in VARIANTS.values()
    ]


def format_info():
    """The text ``keras-convnext info`` prints.

    Example:
        >>> print(format_info())  # doctest: +SKIP
    """
    lines = [f"{key}: {value}" for key, value in backend_versions().items()]
    lines.append("")
    header = f"{'variant':<26}{'builder':<24}{'family':<11}{'depths':<15}{'dims':<24}{'params':>13}"
    lines += [header, "-" * len(header)]
    for row in variant_table():
        depths = ",".join(map(str, row["depths"]))
        dims = ",".join(map(str, row["dims"]))
        lines.append(
            f"{row['name']:<26}{row['builder']:<24}{row['family']:<11}{depths:<15}{dims:<24}{row['params']:>13,}"
        )
    return "\n".join(lines)
