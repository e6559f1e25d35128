"""The ``keras-convnext`` command (also ``python -m keras_convnext``)."""

import argparse
import sys


def _info(args):
    from keras_convnext.info import format_info

    print(format_info())
    return 0


def _demo(args):
    from keras_convnext.demo import run_demo

    result = run_demo(
        variant=args.variant, epochs=args.epochs, samples=args.samples, image_size=args.image_size, output=args.output
    )
    return 0 if result["accuracy"] > 0.5 else 1


def _convert(args):
    from keras_convnext.conversion import convert_weights

    output = convert_weights(args.source, args.variant, args.output)
    print(f"wrote {output}")
    return 0


def build_parser():
    """The argument parser of ``keras-convnext``, one sub-command per task.

    Example:
        >>> build_parser().parse_args(["demo", "--epochs", "2"]).epochs
        2
    """
    parser = argparse.ArgumentParser(
        prog="keras-convnext",
        description="ConvNeXt for Keras 3; the backend is chosen by KERAS_BACKEND (tensorflow, jax or torch).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser("info", help="list the variants with parameter counts, the backend and versions")
    info.set_defaults(run=_info)

    demo = commands.add_parser("demo", help="train a small ConvNeXt on generated images, save and reload it")
    demo.add_argument("--variant", default="convnext_atto", help="a name from `keras-convnext info` (default: convnext_atto)")
    demo.add_argument("--epochs", type=_positive_int, default=4)
    demo.add_argument("--samples", type=_positive_int, default=1200, help="images generated, a fifth held out")
    demo.add_argument("--image-size", type=_positive_int, default=32)
    demo.add_argument("--output", default="demo-output", help="directory for the saved weights")
    demo.set_defaults(run=_demo)

    convert = commands.add_parser(
        "convert", help="convert a checkpoint (HF, timm, torchvision, FB, keras.applications) into one .weights.h5"
    )
    convert.add_argument("source", help="checkpoint file; its layout is recognised from its content")
    convert.add_argument("--variant", required=True, help="a name from `keras-convnext info`, e.g. convnext_tiny")
    convert.add_argument("-o", "--output", required=True, help="the .weights.h5 file to write")
    convert.set_defaults(run=_convert)
    return parser


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def main(argv=None):
    """Entry point of the ``keras-convnext`` console script; returns the exit status.

    Example:
        >>> main(["info"])  # doctest: +SKIP
    """
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
