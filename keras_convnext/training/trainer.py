"""``keras-convnext train``: fine-tune or train a ConvNeXt on an image folder, resumable after a kill."""

import contextlib
import dataclasses
import json
import math
import shutil
import tempfile
from pathlib import Path

import keras

from keras_convnext.training.augment import batch_mixing, image_augmentation
from keras_convnext.training.backup import AtomicBackupAndRestore
from keras_convnext.atomic_files import write_text_atomically
from keras_convnext.training.datasets import image_folder_datasets, scan_image_folder
from keras_convnext.training.sharded_validation import ShardedValidation, validation_metrics
from keras_convnext.training.history import HistoryCSV, read_history
from keras_convnext.training.plots import plot_history
from keras_convnext.training.recipe import recipe_loss, recipe_optimizer
from keras_convnext.training.run_lock import exclusive_run
from keras_convnext.training.top_k import informative_top_k

CONFIG_FILE = "train_config.json"
MIXED_PRECISION = (None, "mixed_float16", "mixed_bfloat16")


def _field(default, help, **flag):
    """A ``TrainConfig`` field: its default, and its command-line flag's help and options (see ``cli_flags``)."""
    return dataclasses.field(default=default, metadata={"help": help, **flag})


def mixed_precision_field():
    """The ``--mixed-precision`` field that ``TrainConfig`` and ``PretrainConfig`` share."""
    return _field(None, "mixed precision (default when given: mixed_bfloat16)",
                  choices=["mixed_bfloat16", "mixed_float16"], const="mixed_bfloat16")


def devices_field():
    """The ``--devices`` field that ``TrainConfig`` and ``PretrainConfig`` share."""
    return _field(
        None, "data parallel over 'all' local devices or a number of them; --batch-size is then the global batch "
        "(torch: one process per device, started here or by torchrun)"
    )


def check_positive_integers(config, names):
    """Raises ``ValueError`` naming the first of ``config``'s fields ``names`` that is not a positive integer.

    Example:
        >>> check_positive_integers(TrainConfig(data_dir="d", epochs=0), ("epochs",))
        Traceback (most recent call last):
        ValueError: epochs must be a positive integer; got 0.
    """
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a run; saved as ``train_config.json`` so that ``--resume`` can check it.

    ``batch_size`` is the global batch, split over ``devices`` ("all", a count, or ``None`` for one device).
    ``learning_rate`` ``None``: 2e-3 from scratch, 1e-4 with ``weights``, per 32 images of global batch (the
    linear scaling rule). ``layer_decay`` ``None``: off from scratch; with ``weights`` 0.8 for V1 and 0.9 for
    V2 (the official fine-tuning values). ``drop_path_rate`` ``None``: the variant's recipe value. Each field's
    metadata is its ``keras-convnext train`` flag (``cli_flags.add_config_arguments``).

    Example:
        >>> TrainConfig(data_dir="flowers/", variant="convnext_tiny", weights="imagenet", epochs=30).check()
    """

    data_dir: str = dataclasses.field(
        metadata={"help": "a folder with one sub-folder of images per class", "metavar": "DATA_DIR"}
    )
    variant: str = _field("convnext_atto", "a name from `keras-convnext info`")
    weights: str | None = _field(None, "start from: a preset, 'imagenet', a checkpoint file or URL, or a pretrain run folder")
    epochs: int = _field(10, "epochs to train", positive=True)
    batch_size: int = _field(32, "the global batch (split over --devices)", positive=True)
    image_size: int = _field(224, "image side in pixels", positive=True)
    learning_rate: float | None = _field(
        None, "peak learning rate (default 2e-3 from scratch, 1e-4 with --weights)", flag="--lr"
    )
    layer_decay: float | None = _field(
        None, "layer-wise lr decay (default: off from scratch; 0.8 V1 / 0.9 V2 with --weights; 1 = off)"
    )
    weight_decay: float = _field(0.05, "AdamW weight decay")
    warmup_fraction: float = _field(0.1, "fraction of the steps spent warming the learning rate up")
    ema: bool = _field(False, "keep an EMA of the weights; validate and save it")
    ema_momentum: float = _field(0.999, "the EMA's momentum")
    mixed_precision: str | None = mixed_precision_field()
    drop_path_rate: float | None = _field(None, "stochastic depth (default: the variant's recipe value)", flag="--drop-path")
    label_smoothing: float = _field(0.1, "label smoothing of the cross-entropy")
    mixup: float = _field(0.0, "MixUp alpha (0 = off; the recipe uses 0.8 from scratch)")
    cutmix: float = _field(0.0, "CutMix alpha (0 = off; the recipe uses 1.0 from scratch)")
    rand_augment: bool = _field(True, "turn RandAugment off", flag="--no-rand-augment")
    random_erasing: float = _field(0.25, "RandomErasing probability (0 = off)")
    validation_split: float = _field(0.2, "fraction of the images held out for validation")
    seed: int = _field(0, "random seed of the split, the augmentation and the initialisation")
    devices: str | None = devices_field()

    def check(self):
        """Raises ``ValueError`` naming the first bad field.

        Example:
            >>> TrainConfig(data_dir="d", epochs=0).check()
            Traceback (most recent call last):
            ValueError: epochs must be a positive integer; got 0.
        """
        from keras_convnext.applications import get_variant

        get_variant(self.variant)
        check_positive_integers(self, ("epochs", "batch_size", "image_size"))
        if self.image_size < 32:
            raise ValueError(f"image_size must be at least 32 (ConvNeXt downsamples by 32); got {self.image_size}.")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}; got {self.mixed_precision!r}.")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0; got {self.learning_rate!r}.")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1); got {self.warmup_fraction!r}.")
        if not 0.0 < self.ema_momentum < 1.0:
            raise ValueError(f"ema_momentum must be in (0, 1); got {self.ema_momentum!r}.")
        if self.devices is not None and self.devices != "all" and not str(self.devices).isdigit():
            raise ValueError(f"devices must be 'all' or a number of devices; got {self.devices!r}.")

    def resolved(self):
        """The learning rate, layer decay and drop-path rate this run uses once the defaults are filled in.

        Example:
            >>> TrainConfig(data_dir="d", variant="convnext_tiny", weights="imagenet").resolved()
            {'learning_rate': 0.0001, 'layer_decay': 0.8, 'drop_path_rate': 0.1}
        """
        from keras_convnext.applications import get_variant

        variant = get_variant(self.variant)
        fine_tuning = self.weights is not None
        layer_decay = self.layer_decay
        if layer_decay is None and fine_tuning:
            layer_decay = 0.9 if variant.family == "V2" else 0.8
        drop_path = self.drop_path_rate if self.drop_path_rate is not None else (variant.recipe_drop_path_rate or 0.0)
        return {
            "learning_rate": self.learning_rate or (1e-4 if fine_tuning else 2e-3) * self.batch_size / 32,
            "layer_decay": None if layer_decay in (None, 1.0) else layer_decay,
            "drop_path_rate": drop_path,
        }


def check_run_folder(output, config, resume, config_file=CONFIG_FILE):
    """Refuses to mix two runs in one folder; returns how far the run in ``output`` got (0 if fresh).

    Example:
        >>> check_run_folder("a-new-run-folder", TrainConfig(data_dir="d"), resume=False)
        0
    """
    saved_path = Path(output) / config_file
    if not saved_path.exists():
        return 0
    if not resume:
        raise ValueError(
            f"{str(output)!r} already holds a training run; pass --resume to continue it, or another --output."
        )
    saved = json.loads(saved_path.read_text())["config"]
    current = dataclasses.asdict(config)
    changed = {key: (saved.get(key), value) for key, value in current.items() if saved.get(key) != value}
    if changed:
        details = ", ".join(f"{key}: was {old!r}, now {new!r}" for key, (old, new) in changed.items())
        raise ValueError(f"--resume must repeat the run's settings; these differ from {saved_path}: {details}.")
    return AtomicBackupAndRestore(Path(output) / "backup").completed_epochs()


def _build_model(config, classes, resolved):
    from keras_convnext.applications import create_model
    from keras_convnext.pretraining.runner import pretrained_encoder_weights

    return create_model(
        config.variant,
        weights=pretrained_encoder_weights(config.weights, config.variant),
        input_shape=(config.image_size, config.image_size, 3),
        classes=classes,
        drop_path_rate=resolved["drop_path_rate"],
        head_init_scale=0.001 if config.weights else 1.0,
    )


def _training_pipeline(train, config, seed):
    import tensorflow as tf

    if config.rand_augment or config.random_erasing:
        augment = image_augmentation(
            flip=True, rand_augment=config.rand_augment, random_erasing=config.random_erasing, seed=seed
        )
        train = train.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    mix = batch_mixing(mixup_alpha=config.mixup, cutmix_alpha=config.cutmix, seed=seed)
    if mix is not None:
        train = train.map(mix, num_parallel_calls=tf.data.AUTOTUNE)
    return train.prefetch(tf.data.AUTOTUNE)


def _save_keras_atomically(model, path):
    temporary = path.with_name(f".{path.stem}.partial.keras")
    model.save(temporary)
    temporary.replace(path)


def train(config, output="train-output", *, resume=False, verbose="auto", log=print, timeout_seconds=None):
    """Trains ``config.variant`` on the image folder ``config.data_dir`` and writes the run to ``output``.

    Writes ``model.weights.h5`` (the EMA weights with ``config.ema``), ``model.keras``, ``history.csv``,
    ``training_curves.png`` and
    ``train_config.json`` (with the class names). A run killed at any moment continues from its last completed
    epoch when started again with ``resume=True`` and the same config. With ``config.devices`` on several
    processes (torch under torchrun, JAX on several hosts) only process 0 writes or logs; ``timeout_seconds`` is
    how long a torch process waits for the others to join.

    Example:
        >>> summary = train(TrainConfig(data_dir="flowers/", variant="convnext_tiny", weights="imagenet",  # doctest: +SKIP
        ...                             epochs=10, image_size=224), output="runs/flowers")
        >>> summary["val_accuracy"]  # doctest: +SKIP
        0.93
    """
    config.check()
    class_names, image_count = scan_image_folder(config.data_dir)
    output = Path(output)
    done = check_run_folder(output, config, resume)
    history_path = output / "history.csv"
    if resume and done == 0 and len(read_history(history_path)) >= config.epochs and (output / "model.weights.h5").exists():
        log(f"{output} holds a completed run of {config.epochs} epochs; nothing to resume.")
        return json.loads((output / CONFIG_FILE).read_text())["summary"]

    setup = None
    if config.devices is not None:  # after every check, so a refused run never joins (or waits for) the others
        from keras_convnext.distribute import DEFAULT_TIMEOUT_SECONDS, data_parallel

        setup = data_parallel(
            "all" if config.devices == "all" else int(config.devices),
            timeout_seconds=timeout_seconds or DEFAULT_TIMEOUT_SECONDS,
        )
    try:
        return _train(config, output, class_names, image_count, done, resume, setup, verbose, log)
    finally:
        if setup is not None:
            setup.close()


def _train(config, output, class_names, image_count, done, resume, setup, verbose, log):
    if setup is None or setup.is_chief:
        with exclusive_run(output):  # a second train on this folder is refused, naming this process
            done = check_run_folder(output, config, resume)  # again: another run may have written it since
            return _train_and_write(config, output, output, class_names, image_count, done, setup, verbose, log)
    # Only process 0 writes the run; the others make the same saves into a folder thrown away (on JAX across hosts
    # saving is collective, so every process must take part), and say nothing.
    scratch = Path(tempfile.mkdtemp(prefix="keras-convnext-process-"))
    try:
        return _train_and_write(config, output, scratch, class_names, image_count, done, setup, 0, lambda *_: None)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _train_and_write(config, output, write_to, class_names, image_count, done, setup, verbose, log):
    resolved = config.resolved()
    if config.mixed_precision:
        keras.config.set_dtype_policy(config.mixed_precision)
    # torch processes each draw their own augmentation and drop-path masks; process 0's weights are copied to all.
    process_seed = config.seed + (setup.process_index if setup is not None and setup.feeds_own_shard else 0)
    keras.utils.set_random_seed(process_seed)
    train_data, validation, _ = image_folder_datasets(
        config.data_dir, image_size=config.image_size, batch_size=config.batch_size,
        validation_split=config.validation_split, seed=config.seed, class_names=class_names,
    )
    steps_per_epoch = int(train_data.cardinality())
    validation_batch = config.batch_size
    if setup is not None:
        steps_per_epoch = _whole_global_batch_count(len(train_data.file_paths), config.batch_size, len(setup.devices))
        if setup.feeds_own_shard:
            validation_batch = config.batch_size // setup.process_count
            train_data, validation = _process_shards(train_data, validation, config, class_names, setup, done)
        else:
            train_data = _whole_global_batches(train_data, config.batch_size, steps_per_epoch)
        log(f"{setup.description}; the last partial batch of each epoch is dropped (the order is reshuffled each epoch)")
    total_steps = steps_per_epoch * config.epochs
    top_k = informative_top_k(len(class_names))
    with setup.scope() if setup else contextlib.nullcontext():
        model = _build_model(config, len(class_names), resolved)
        optimizer = recipe_optimizer(
            model,
            learning_rate=resolved["learning_rate"],
            total_steps=total_steps,
            warmup_steps=math.floor(total_steps * config.warmup_fraction),
            weight_decay=config.weight_decay,
            layer_decay=resolved["layer_decay"],
            use_ema=config.ema,
            ema_momentum=config.ema_momentum,
        )
        model.compile(
            optimizer=optimizer,
            loss=recipe_loss(config.label_smoothing),
            metrics=["accuracy"] + ([keras.metrics.TopKCategoricalAccuracy(top_k, name=f"top{top_k}")] if top_k else []),
        )
    if not done or write_to != output:
        write_text_atomically(
            write_to / CONFIG_FILE,
            json.dumps({"config": dataclasses.asdict(config), "class_names": class_names, "resolved": resolved}, indent=2),
        )
    callbacks = [
        HistoryCSV(write_to / "history.csv"),
        AtomicBackupAndRestore(output / "backup", delete_checkpoint=False, write_dir=write_to / "backup"),
    ]
    if setup is not None:
        callbacks = setup.prepare(model) + callbacks  # its epoch figures go into the logs the others record
    sharded = setup is not None and validation is not None
    validation_options = dict(
        top_k=top_k, batch_size=validation_batch, sum_over_processes=setup.sum_over_processes if sharded else None
    )
    if sharded:  # before the history and the backup, which record its figures
        callbacks.insert(0, ShardedValidation(validation, model.loss, **validation_options))

    def validate():
        if validation is None:
            return {}
        if sharded:
            return validation_metrics(model, validation, model.loss, **validation_options)
        return model.evaluate(validation, verbose=0, return_dict=True)

    if config.ema:
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=False))
    log(
        f"backend {keras.backend.backend()}: {config.variant} on {image_count} images of {len(class_names)} classes "
        f"({steps_per_epoch} steps per epoch), lr {resolved['learning_rate']:g}, layer decay {resolved['layer_decay']}, "
        f"drop path {resolved['drop_path_rate']:g}" + (f"; resuming after epoch {done}" if done else "")
    )
    model.fit(
        _training_pipeline(train_data, config, seed=process_seed), validation_data=None if sharded else validation,
        epochs=config.epochs, initial_epoch=done, callbacks=callbacks, verbose=verbose,
        # A torch process's shard streams every remaining epoch in one go; image_dataset_from_directory reshuffles
        # each epoch by itself.
        steps_per_epoch=steps_per_epoch if setup is not None and setup.feeds_own_shard else None, shuffle=False,
    )
    return _finish(model, write_to, validate, log)


def check_global_batch(batch_size, device_count):
    """Raises ``ValueError`` unless the global batch splits evenly over the devices.

    Example:
        >>> check_global_batch(6, 4)
        Traceback (most recent call last):
        ValueError: --batch-size 6 does not split evenly over 4 devices; use a multiple of 4.
    """
    if batch_size % device_count:
        raise ValueError(
            f"--batch-size {batch_size} does not split evenly over {device_count} devices; use a multiple of "
            f"{device_count}."
        )


def _whole_global_batch_count(image_count, batch_size, device_count):
    """The steps of an epoch in whole global batches, each split evenly over the devices; raises if there are none."""
    check_global_batch(batch_size, device_count)
    steps = image_count // batch_size
    if steps == 0:
        raise ValueError(f"The {image_count} training images make no whole batch of {batch_size}; lower --batch-size.")
    return steps


def _whole_global_batches(train_data, batch_size, steps):
    """Rebatches the training set into ``steps`` whole global batches (the last partial one dropped)."""
    import tensorflow as tf

    rebatched = train_data.unbatch().batch(batch_size, drop_remainder=True)
    return rebatched.apply(tf.data.experimental.assert_cardinality(steps))


def _process_shards(train_data, validation, config, class_names, setup, first_epoch):
    """This torch process's share of the training batches and of the validation images (``rank_shards``)."""
    from keras_convnext.training.rank_shards import class_labels, rank_evaluation_dataset, rank_training_dataset

    shard = dict(classes=len(class_names), image_size=config.image_size, rank=setup.process_index,
                 world_size=setup.process_count)
    paths = train_data.file_paths
    train = rank_training_dataset(
        paths, class_labels(paths, config.data_dir, class_names), global_batch=config.batch_size, seed=config.seed,
        epochs=config.epochs, first_epoch=first_epoch, **shard,
    )
    if validation is not None:
        paths = validation.file_paths
        validation = rank_evaluation_dataset(
            paths, class_labels(paths, config.data_dir, class_names),
            batch_size=config.batch_size // setup.process_count, **shard,
        )
    return train, validation


def _finish(model, output, validate, log):
    from keras_convnext.weights import save_weights

    # With EMA, fit() has ended by copying the EMA into the model: what is saved and evaluated is the EMA.
    save_weights(model, output / "model.weights.h5")
    _save_keras_atomically(model, output / "model.keras")
    metrics = validate()
    rows = read_history(output / "history.csv")
    plot_history(rows, output / "training_curves.png")
    summary = {"epochs": len(rows), **{f"val_{key}": float(value) for key, value in metrics.items()}}
    saved = json.loads((output / CONFIG_FILE).read_text())
    write_text_atomically(output / CONFIG_FILE, json.dumps({**saved, "summary": summary}, indent=2))
    shutil.rmtree(output / "backup", ignore_errors=True)
    log(f"wrote {output}/model.weights.h5, model.keras, history.csv, training_curves.png; {summary}")
    return summary
