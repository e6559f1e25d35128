"""The flags that ``keras-convnext``'s commands and the benchmark scripts share, each defined once.

``add_config_arguments`` derives a command's flags from a dataclass's fields (name, type, default and the help in
each field's ``metadata``), so a new field of ``TrainConfig`` is one edit.

Example:
    >>> parser = argparse.ArgumentParser()
    >>> add_variant(parser, default="convnext_tiny")
    >>> add_image_size(parser, default=224)
    >>> vars(parser.parse_args(["--image-size", "64"]))
    {'variant': 'convnext_tiny', 'image_size': 64}
"""

import argparse
import dataclasses
import types
import typing

VARIANT_HELP = "a name from `keras-convnext info`, e.g. convnext_tiny"


def positive_int(text):
    """An ``argparse`` type: a positive integer, else an error that quotes the text.

    Example:
        >>> positive_int("3")
        3
    """
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_variant(parser, default=None, *, required=False, help=VARIANT_HELP):
    """``--variant``: a name from the variant table.

    Example:
        >>> add_variant(argparse.ArgumentParser(), required=True)
    """
    parser.add_argument("--variant", default=default, required=required, help=help)


def add_image_size(parser, default=None, *, help=None):
    """``--image-size``: the side of the square images, in pixels.

    Example:
        >>> add_image_size(argparse.ArgumentParser(), default=224)
    """
    parser.add_argument("--image-size", type=positive_int, default=default, help=help or "image side in pixels")


def add_batch_size(parser, default, *, help=None):
    """``--batch-size``: images per step.

    Example:
        >>> add_batch_size(argparse.ArgumentParser(), default=32)
    """
    parser.add_argument("--batch-size", type=positive_int, default=default, help=help or "images per step")


def add_output(parser, default=None, *, help, required=False, short=False):
    """``--output`` (and ``-o`` with ``short``): where a command writes what it makes.

    Example:
        >>> add_output(argparse.ArgumentParser(), "demo-output", help="folder for the saved weights")
    """
    flags = ("-o", "--output") if short else ("--output",)
    parser.add_argument(*flags, default=default, required=required, help=help)


def add_data_dir(parser):
    """``DATA_DIR``: an image folder, one sub-folder per class.

    Example:
        >>> add_data_dir(argparse.ArgumentParser())
    """
    parser.add_argument("data_dir", metavar="DATA_DIR", help="a folder with one sub-folder of images per class")


def add_config_arguments(parser, config_class):
    """Adds one flag per field of dataclass ``config_class``, derived from the field.

    The flag is ``--field-name`` unless ``metadata["flag"]`` names another; ``metadata["help"]`` is its help. A
    field without a default is positional (``metadata["metavar"]``). A ``bool`` defaulting to False is a switch;
    one defaulting to True is turned off by its ``--no-...`` flag. ``metadata["positive"]`` makes an ``int``
    positive; ``metadata["choices"]`` and ``metadata["const"]`` pass through to ``argparse``. Each value lands
    under the field's own name, so ``config_class(**config_values(args, config_class))`` rebuilds it.

    Example:
        >>> @dataclasses.dataclass
        ... class Config:
        ...     steps: int = dataclasses.field(default=3, metadata={"help": "steps", "positive": True})
        >>> parser = argparse.ArgumentParser()
        >>> add_config_arguments(parser, Config)
        >>> Config(**config_values(parser.parse_args(["--steps", "5"]), Config))
        Config(steps=5)
    """
    for field in dataclasses.fields(config_class):
        meta = field.metadata
        kind = _value_type(field.type)
        options = {"help": meta.get("help")}
        if field.default is dataclasses.MISSING:
            parser.add_argument(field.name, metavar=meta.get("metavar", field.name.upper()), **options)
            continue
        flag = meta.get("flag", "--" + field.name.replace("_", "-"))
        options["dest"] = field.name
        if kind is bool:
            options["action"] = "store_false" if field.default else "store_true"
        else:
            options["default"] = field.default
            options["type"] = positive_int if meta.get("positive") else kind
            for key in ("choices", "const"):
                if key in meta:
                    options[key] = meta[key]
            if "const" in meta:
                options["nargs"] = "?"
        parser.add_argument(flag, **options)


def config_values(args, config_class):
    """The values of ``config_class``'s fields in parsed ``args``, as keyword arguments.

    Example:
        >>> config_values(argparse.Namespace(data_dir="d", extra=1), TrainConfig)  # doctest: +SKIP
    """
    return {field.name: getattr(args, field.name) for field in dataclasses.fields(config_class)}


def _value_type(annotation):
    """``int`` of ``int``, ``float`` of ``float | None``: the type a flag's text converts to."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        (annotation,) = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    return annotation
