"""The ``keras-convnext`` command (also ``python -m keras_convnext``)."""

import argparse
import os
import sys

from keras_convnext.cli_flags import (
    add_batch_size,
    add_config_arguments,
    add_data_dir,
    add_image_size,
    add_output,
    add_variant,
    config_values,
    positive_int,
)
from keras_convnext.pretraining.runner import PretrainConfig
from keras_convnext.training.trainer import TrainConfig


def _info(args):
    from keras_convnext.info import format_info

    print(format_info())
    return 0


def _demo(args):
    from keras_convnext.demo import run_demo

    result = run_demo(variant=args.variant, epochs=args.epochs, image_size=args.image_size, output=args.output)
    return 0 if result["accuracy"] >= 0.95 else 1


def _launched_processes(args, config):
    """Readies ``--devices`` before the backend starts: simulated CPU devices on a host without accelerators (JAX,
    TensorFlow), or on torch one process per device started here as torchrun would; True if those processes ran
    the command (this process is done)."""
    import keras

    if config.devices not in (None, "all") and keras.backend.backend() != "torch":
        from keras_convnext.distribute import simulate_cpu_devices

        simulate_cpu_devices(int(config.devices))  # a CPU-only host: as many CPU devices as asked for
    if keras.backend.backend() == "torch" and config.devices is not None and "WORLD_SIZE" not in os.environ:
        from keras_convnext.torch_launcher import launch_processes, processes_to_start
        from keras_convnext.training.trainer import check_global_batch

        count = processes_to_start(config.devices)
        if count > 1:
            check_global_batch(config.batch_size, count)
            _, error = launch_processes(args.arguments, count)
            if error:
                raise ChildProcessError(error)
            return True
    return False


def _train(args):
    from keras_convnext.training.trainer import train

    config = TrainConfig(**config_values(args, TrainConfig))
    config.check()
    if _launched_processes(args, config):
        return 0
    train(config, args.output, resume=args.resume, verbose=args.verbose, timeout_seconds=args.join_timeout)
    return 0


def _pretrain(args):
    from keras_convnext.pretraining.runner import pretrain

    config = PretrainConfig(**config_values(args, PretrainConfig))
    config.check()
    if _launched_processes(args, config):
        return 0
    pretrain(config, args.output, resume=args.resume, verbose=args.verbose, timeout_seconds=args.join_timeout)
    return 0


def _pretrain_demo(args):
    import json

    from keras_convnext.atomic_files import write_text_atomically
    from keras_convnext.pretraining.digits_experiment import run_pretraining_experiment

    result = run_pretraining_experiment(
        variant=args.variant, image_size=args.image_size, label_fraction=args.label_fraction,
        pretrain_epochs=args.pretrain_epochs, fine_tune_epochs=args.fine_tune_epochs, seed=args.seed,
    )
    if args.json:
        write_text_atomically(args.json, json.dumps(result, indent=2))
    return 0


def _evaluate(args):
    from keras_convnext.training.evaluate import evaluate_folder

    evaluate_folder(
        args.data_dir, args.weights, variant=args.variant, image_size=args.image_size,
        batch_size=args.batch_size, output=args.output,
    )
    return 0


def _predict(args):
    import json

    from keras_convnext.prediction import predict_images

    records = predict_images(args.image_or_dir, args.weights, variant=args.variant, image_size=args.image_size, top_k=args.top_k)
    failed = [record for record in records if "error" in record]
    if len(failed) == len(records):
        raise ValueError(f"none of the {len(records)} image(s) could be read; first: {failed[0]['image']}: {failed[0]['error']}")
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        for record in records:
            if "top_k" in record:
                ranked = ", ".join(f"{entry['class']} ({entry['score']:.3f})" for entry in record["top_k"])
                print(f"{record['image']}: {ranked}")
    for record in failed:
        print(f"keras-convnext predict: skipped {record['image']}: {record['error']}", file=sys.stderr)
    return 1 if failed else 0


def _convert(args):
    from keras_convnext.conversion import convert_weights

    output = convert_weights(args.source, args.variant, args.output)
    print(f"wrote {output}")
    return 0


def _export(args):
    if args.format == "saved_model" and (args.quantize != "float32" or args.calibration_images is not None):
        raise ValueError("--quantize and --calibration-images are for --format onnx, litert or openvino; "
                         "--format saved_model writes float32.")
    if args.format in ("litert", "openvino", "onnx"):
        from keras_convnext.export import export_litert, export_onnx, export_openvino

        exporter = {"litert": export_litert, "openvino": export_openvino, "onnx": export_onnx}[args.format]
        path = exporter(args.model, args.out_dir, variant=args.variant, classes=args.classes,
                        image_size=args.image_size, quantization=args.quantize,
                        calibration_images=args.calibration_images)
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
    from keras_convnext.atomic_files import write_text_atomically

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


def _add_run_flags(parser):
    """``--resume``, ``--verbose`` and ``--join-timeout``: what ``train`` and ``pretrain`` runs share."""
    parser.add_argument("--resume", action="store_true", help="continue the run in --output from its last completed epoch")
    parser.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1, help="Keras fit verbosity (1: progress bar)")
    parser.add_argument("--join-timeout", type=positive_int, default=300, metavar="SECONDS",
                        help="torch with --devices: how long each process waits for the others to join")


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
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a sub-command's default must not overwrite a --debug given before the sub-command.
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the Python traceback of an error")

    def add_command(name, **kwargs):
        return subcommands.add_parser(name, parents=[common], **kwargs)

    info = add_command("info", help="list the variants with parameter counts, the backend and versions")
    info.set_defaults(run=_info)

    demo = add_command(
        "demo", help="train a small ConvNeXt on scikit-learn's handwritten digits, save and reload it (no network)"
    )
    add_variant(demo, default="convnext_atto")
    demo.add_argument("--epochs", type=positive_int, default=10)
    add_image_size(demo, default=32)
    add_output(demo, "demo-output", help="directory for the saved weights")
    demo.set_defaults(run=_demo)

    train = add_command(
        "train", help="train or fine-tune on DATA_DIR (one sub-folder of images per class); resumable"
    )
    add_config_arguments(train, TrainConfig)
    add_output(train, "train-output", help="folder for weights, model, history and plots")
    _add_run_flags(train)
    train.set_defaults(run=_train)

    pretrain = add_command(
        "pretrain", help="FCMAE-pretrain a ConvNeXt(-V2) encoder on DATA_DIR (unlabelled images, any nesting); resumable"
    )
    add_config_arguments(pretrain, PretrainConfig)
    add_output(pretrain, "pretrain-output", help="folder for the encoder, the whole FCMAE, history and figures")
    _add_run_flags(pretrain)
    pretrain.set_defaults(run=_pretrain)

    pretrain_demo = add_command(
        "pretrain-demo", help="does FCMAE pay? scikit-learn's digits with 10%% of the labels: pretrained vs from scratch"
    )
    add_variant(pretrain_demo, default="convnextv2_atto")
    add_image_size(pretrain_demo, default=96, help="image side: 96 gives 3x3 patches of 32, of which 3 are kept")
    pretrain_demo.add_argument("--label-fraction", type=float, default=0.1, help="share of the training labels used")
    pretrain_demo.add_argument("--pretrain-epochs", type=positive_int, default=30)
    pretrain_demo.add_argument("--fine-tune-epochs", type=positive_int, default=30)
    pretrain_demo.add_argument("--seed", type=int, default=0)
    pretrain_demo.add_argument("--json", help="also write the figures to this JSON file")
    pretrain_demo.set_defaults(run=_pretrain_demo)

    evaluate = add_command("evaluate", help="accuracy, top-5 and a confusion matrix on DATA_DIR")
    add_data_dir(evaluate)
    evaluate.add_argument("--weights", required=True, help="a training run folder, its model.keras, or a .weights.h5")
    add_variant(evaluate, help="needed for a .weights.h5 that has no train_config.json beside it")
    add_image_size(evaluate)
    add_batch_size(evaluate, default=32)
    add_output(evaluate, "evaluation", help="folder for confusion_matrix.png and metrics.json")
    evaluate.set_defaults(run=_evaluate)

    predict = add_command(
        "predict", help="the top-k classes of an image, or of every image in a folder (text or --json)"
    )
    predict.add_argument("image_or_dir", metavar="IMAGE_OR_DIR", help="an image file, or a folder searched recursively")
    predict.add_argument("--weights", required=True,
                         help="a preset name (see info), a training run folder, a .keras file, or a .weights.h5")
    add_variant(predict, help="needed for a .weights.h5 that has no train_config.json beside it")
    add_image_size(predict, help="input size of a .weights.h5 without train_config.json beside it (default 224)")
    predict.add_argument("--top-k", type=positive_int, default=5, help="how many classes to show per image")
    predict.add_argument("--json", action="store_true", help="print one JSON list of records instead of text")
    predict.set_defaults(run=_predict)

    export = add_command(
        "export", help="export MODEL for serving: a TF Serving SavedModel or a LiteRT file (from any backend), or ONNX"
    )
    export.add_argument("model", metavar="MODEL", help="a .keras file, a .weights.h5 (with --variant) or a train --output folder")
    export.add_argument("out_dir", metavar="OUT_DIR", help="saved_model: writes OUT_DIR/<version>/; onnx: OUT_DIR/model.onnx; "
                        "litert: OUT_DIR/model.tflite (model_<quantization>.tflite); openvino: OUT_DIR/model.xml + .bin")
    export.add_argument("--format", choices=["saved_model", "onnx", "litert", "openvino"], default="saved_model")
    export.add_argument("--quantize", choices=["float32", "float16", "dynamic_int8", "int8"], default="float32",
                        help="litert: float16 or dynamic-range int8 weights; onnx: dynamic-range int8; litert, onnx, "
                             "openvino: int8 weights and activations (with --calibration-images); the file is "
                             "model_<quantization>.<ext>")
    export.add_argument("--calibration-images", metavar="DIR", default=None,
                        help="--quantize int8: a folder of images like the model's inputs, to calibrate on")
    add_variant(export, help="the variant of a .weights.h5 without train_config.json beside it")
    export.add_argument("--classes", type=positive_int, default=None, help="classes of a .weights.h5: by default the file's own; another number is refused")
    add_image_size(export, help="input size of a .weights.h5 (default 224)")
    export.add_argument("--version", type=positive_int, default=1, help="TF Serving model version (default 1)")
    export.add_argument("--top-k", type=positive_int, default=5)
    export.add_argument("--overwrite", action="store_true", help="replace an existing version folder")
    export.set_defaults(run=_export)

    bench = add_command(
        "bench", help="images/s against keras.applications and native PyTorch, alternating runs in one process"
    )
    add_variant(bench, default="convnext_tiny")
    add_batch_size(bench, default=8)
    add_image_size(bench, default=224)
    bench.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                       help="float32, or mixed precision computing in bfloat16/float16 (torch: autocast)")
    bench.add_argument("--mode", nargs="+", choices=["inference", "training", "pretraining"],
                       default=["inference", "training"], help="pretraining: an FCMAE step (a ConvNeXt-V2 --variant)")
    bench.add_argument("--rounds", type=positive_int, default=10, help="timed rounds, each running every candidate once")
    bench.add_argument("--warmup", type=int, default=2, help="untimed rounds first (compilation happens there)")
    bench.add_argument("--baselines", nargs="*", default=["keras_applications", "torch_eager"],
                       choices=["keras_applications", "torch_eager", "torch_compile", "onnxruntime", "openvino",
                                "openvino_bf16", "litert", "onnxruntime_int8", "openvino_int8"],
                       help="inference may also run this model exported into a deployment runtime (on the CPU; "
                            "the _int8 ones calibrated on noise, for speed only)")
    bench.add_argument("--no-optimize", action="store_true", help="skip optimize_for_inference for inference")
    bench.add_argument("--jit-compile", choices=["auto", "on", "off"], default="auto",
                       help="the Keras models' jit_compile (auto: Keras' choice per backend)")
    bench.add_argument("--json", default=None, metavar="FILE", help="also write the figures and every timing as JSON")
    bench.set_defaults(run=_bench)

    convert = add_command(
        "convert", help="convert a checkpoint (HF, timm, torchvision, FB, keras.applications) into one .weights.h5"
    )
    convert.add_argument("source", help="checkpoint file; its layout is recognised from its content")
    add_variant(convert, required=True)
    add_output(convert, help="the .weights.h5 file to write", required=True, short=True)
    convert.set_defaults(run=_convert)
    return parser


DEBUG_VARIABLE = "KERAS_CONVNEXT_DEBUG"


def error_line(command, error):
    """The one line a command ends with when it fails: what went wrong, from the error's own message.

    Errors a user causes (a bad argument, file or folder) carry a message written for them; any other error is
    named by its type, with how to see the traceback.

    Example:
        >>> error_line("convert", ValueError("model.pth is not a checkpoint"))
        'keras-convnext convert: error: model.pth is not a checkpoint'
    """
    if isinstance(error, (ValueError, OSError, NotImplementedError)):
        message = str(error) or type(error).__name__
    else:
        message = f"{type(error).__name__}: {error} (run with --debug or {DEBUG_VARIABLE}=1 for the traceback)"
    return f"keras-convnext {command}: error: {' '.join(message.split())}"


def main(argv=None):
    """Entry point of the ``keras-convnext`` console script; returns the exit status.

    Any error ends the command with one ``keras-convnext <command>: error: ...`` line and status 2; ``--debug``
    (or ``KERAS_CONVNEXT_DEBUG=1``) shows the Python traceback instead.

    Example:
        >>> main(["info"])  # doctest: +SKIP
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(arguments)
    args.arguments = arguments  # what a launcher passes on to the processes it starts
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print(f"keras-convnext {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - every failure ends in one line unless the traceback is asked for
        if getattr(args, "debug", False) or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
            raise
        print(error_line(args.command, error), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
