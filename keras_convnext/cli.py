"""The ``keras-convnext`` command (also ``python -m keras_convnext``)."""

import argparse
import sys


def _info(args):
    from keras_convnext.info import format_info

    print(format_info())
    return 0


def _demo(args):
    from keras_convnext.demo import run_demo

    result = run_demo(variant=args.variant, epochs=args.epochs, image_size=args.image_size, output=args.output)
    return 0 if result["accuracy"] >= 0.95 else 1


def _train(args):
    from keras_convnext.training.trainer import TrainConfig, train

    config = TrainConfig(
        data_dir=args.data_dir, variant=args.variant, weights=args.weights, epochs=args.epochs,
        batch_size=args.batch_size, image_size=args.image_size, learning_rate=args.lr, layer_decay=args.layer_decay,
        weight_decay=args.weight_decay, ema=args.ema, mixed_precision=args.mixed_precision,
        drop_path_rate=args.drop_path, label_smoothing=args.label_smoothing, mixup=args.mixup, cutmix=args.cutmix,
        rand_augment=not args.no_rand_augment, random_erasing=args.random_erasing,
        validation_split=args.validation_split, seed=args.seed, devices=args.devices,
    )
    train(config, args.output, resume=args.resume, verbose=args.verbose)
    return 0


def _evaluate(args):
    from keras_convnext.training.evaluate import evaluate_folder

    evaluate_folder(
        args.data_dir, args.weights, variant=args.variant, image_size=args.image_size,
        batch_size=args.batch_size, output=args.output,
    )
    return 0


def _convert(args):
    from keras_convnext.conversion import convert_weights

    output = convert_weights(args.source, args.variant, args.output)
    print(f"wrote {output}")
    return 0


def _export(args):
    if args.format == "onnx":
        from keras_convnext.export.onnx import export_onnx

        path = export_onnx(args.model, args.out_dir, variant=args.variant, classes=args.classes, image_size=args.image_size)
    else:
        from keras_convnext.export import export_saved_model

        path = export_saved_model(
            args.model, args.out_dir, version=args.version, variant=args.variant, classes=args.classes,
            image_size=args.image_size, top_k=args.top_k, overwrite=args.overwrite,
        )
    print(f"wrote {path}")
    return 0


def _bench(args):
    import json

    from keras_convnext.benchmarks.throughput import format_report, run_benchmark
    from keras_convnext.weights.atomic_save import write_text_atomically

    jit_compile = {"auto": "auto", "on": True, "off": False}[args.jit_compile]
    result = run_benchmark(
        args.variant, modes=args.mode, batch_size=args.batch_size, image_size=args.image_size, dtype=args.dtype,
        rounds=args.rounds, warmup=args.warmup, baselines=args.baselines, optimized=not args.no_optimize,
        jit_compile=jit_compile,
    )
    print(format_report(result))
    if args.json:
        write_text_atomically(args.json, json.dumps(result, indent=2))
        print(f"wrote {args.json}")
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

    demo = commands.add_parser(
        "demo", help="train a small ConvNeXt on scikit-learn's handwritten digits, save and reload it (no network)"
    )
    demo.add_argument("--variant", default="convnext_atto", help="a name from `keras-convnext info` (default: convnext_atto)")
    demo.add_argument("--epochs", type=_positive_int, default=10)
    demo.add_argument("--image-size", type=_positive_int, default=32)
    demo.add_argument("--output", default="demo-output", help="directory for the saved weights")
    demo.set_defaults(run=_demo)

    train = commands.add_parser(
        "train", help="train or fine-tune on DATA_DIR (one sub-folder of images per class); resumable"
    )
    train.add_argument("data_dir", metavar="DATA_DIR", help="a folder with one sub-folder of images per class")
    train.add_argument("--variant", default="convnext_atto", help="a name from `keras-convnext info`")
    train.add_argument("--weights", default=None, help="start from: a preset, 'imagenet', a checkpoint file or URL")
    train.add_argument("--epochs", type=_positive_int, default=10)
    train.add_argument("--batch-size", type=_positive_int, default=32)
    train.add_argument("--image-size", type=_positive_int, default=224)
    train.add_argument("--lr", type=float, default=None, help="peak learning rate (default 2e-3 from scratch, 1e-4 with --weights)")
    train.add_argument("--layer-decay", type=float, default=None,
                       help="layer-wise lr decay (default: off from scratch; 0.8 V1 / 0.9 V2 with --weights; 1 = off)")
    train.add_argument("--weight-decay", type=float, default=0.05)
    train.add_argument("--ema", action="store_true", help="keep an EMA of the weights; validate and save it")
    train.add_argument("--mixed-precision", nargs="?", const="mixed_bfloat16", default=None,
                       choices=["mixed_bfloat16", "mixed_float16"], help="mixed precision (default when given: mixed_bfloat16)")
    train.add_argument("--drop-path", type=float, default=None, help="stochastic depth (default: the variant's recipe value)")
    train.add_argument("--label-smoothing", type=float, default=0.1)
    train.add_argument("--mixup", type=float, default=0.0, help="MixUp alpha (0 = off; the recipe uses 0.8 from scratch)")
    train.add_argument("--cutmix", type=float, default=0.0, help="CutMix alpha (0 = off; the recipe uses 1.0 from scratch)")
    train.add_argument("--no-rand-augment", action="store_true", help="turn RandAugment off")
    train.add_argument("--random-erasing", type=float, default=0.25, help="RandomErasing probability (0 = off)")
    train.add_argument("--validation-split", type=float, default=0.2)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--devices", default=None,
                       help="data parallel over 'all' local devices or a number of them (JAX, TensorFlow); "
                       "--batch-size is then the global batch")
    train.add_argument("--output", default="train-output", help="folder for weights, model, history and plots")
    train.add_argument("--resume", action="store_true", help="continue the run in --output from its last completed epoch")
    train.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1, help="Keras fit verbosity (1: progress bar)")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="accuracy, top-5 and a confusion matrix on DATA_DIR")
    evaluate.add_argument("data_dir", metavar="DATA_DIR", help="a folder with one sub-folder of images per class")
    evaluate.add_argument("--weights", required=True, help="a training run folder, its model.keras, or a .weights.h5")
    evaluate.add_argument("--variant", default=None, help="needed for a .weights.h5 that has no train_config.json beside it")
    evaluate.add_argument("--image-size", type=_positive_int, default=None)
    evaluate.add_argument("--batch-size", type=_positive_int, default=32)
    evaluate.add_argument("--output", default="evaluation", help="folder for confusion_matrix.png and metrics.json")
    evaluate.set_defaults(run=_evaluate)

    export = commands.add_parser(
        "export", help="export MODEL for serving: a TF Serving SavedModel (from any backend) or ONNX"
    )
    export.add_argument("model", metavar="MODEL", help="a .keras file, a .weights.h5 (with --variant) or a train --output folder")
    export.add_argument("out_dir", metavar="OUT_DIR", help="saved_model: writes OUT_DIR/<version>/; onnx: OUT_DIR/model.onnx")
    export.add_argument("--format", choices=["saved_model", "onnx"], default="saved_model")
    export.add_argument("--variant", default=None, help="the variant of a .weights.h5 without train_config.json beside it")
    export.add_argument("--classes", type=_positive_int, default=None, help="classes of a .weights.h5 (default 1000)")
    export.add_argument("--image-size", type=_positive_int, default=None, help="input size of a .weights.h5 (default 224)")
    export.add_argument("--version", type=_positive_int, default=1, help="TF Serving model version (default 1)")
    export.add_argument("--top-k", type=_positive_int, default=5)
    export.add_argument("--overwrite", action="store_true", help="replace an existing version folder")
    export.set_defaults(run=_export)

    bench = commands.add_parser(
        "bench", help="images/s against keras.applications and native PyTorch, alternating runs in one process"
    )
    bench.add_argument("--variant", default="convnext_tiny")
    bench.add_argument("--batch-size", type=_positive_int, default=8)
    bench.add_argument("--image-size", type=_positive_int, default=224)
    bench.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                       help="float32, or mixed precision computing in bfloat16/float16 (torch: autocast)")
    bench.add_argument("--mode", nargs="+", choices=["inference", "training"], default=["inference", "training"])
    bench.add_argument("--rounds", type=_positive_int, default=10, help="timed rounds, each running every candidate once")
    bench.add_argument("--warmup", type=int, default=2, help="untimed rounds first (compilation happens there)")
    bench.add_argument("--baselines", nargs="*", default=["keras_applications", "torch_eager"],
                       choices=["keras_applications", "torch_eager", "torch_compile"])
    bench.add_argument("--no-optimize", action="store_true", help="skip optimize_for_inference for inference")
    bench.add_argument("--jit-compile", choices=["auto", "on", "off"], default="auto",
                       help="the Keras models' jit_compile (auto: Keras' choice per backend)")
    bench.add_argument("--json", default=None, metavar="FILE", help="also write the figures and every timing as JSON")
    bench.set_defaults(run=_bench)

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
    try:
        return args.run(args)
    except ValueError as error:
        print(f"keras-convnext {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
