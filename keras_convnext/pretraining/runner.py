"""``keras-convnext pretrain``: FCMAE pretraining on a folder of unlabelled images, resumable after a kill."""

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np

from keras_convnext.atomic_files import write_text_atomically
from keras_convnext.training.backup import AtomicBackupAndRestore
from keras_convnext.training.history import HistoryCSV, read_history
from keras_convnext.training.run_lock import exclusive_run
from keras_convnext.training.trainer import (
    MIXED_PRECISION,
    _field,
    check_positive_integers,
    check_run_folder,
    devices_field,
    mixed_precision_field,
)

CONFIG_FILE = "pretrain_config.json"
ENCODER_WEIGHTS = "encoder.weights.h5"
FIGURE_IMAGES = 4


@dataclasses.dataclass
class PretrainConfig:
    """Everything that defines a pretraining run; saved as ``pretrain_config.json`` so that ``--resume`` can check it.

    The official recipe (``main_pretrain.py``): AdamW, lr 1.5e-4 per 256 images of batch, weight decay 0.05, cosine
    decay after a linear warm-up (40 of 800 epochs: ``warmup_epochs`` ``None`` keeps that share), masks of 32-pixel
    patches with ratio 0.6, a 512-wide decoder of one block, per-patch normalised targets. Each field's metadata is
    its ``keras-convnext pretrain`` flag.

    Example:
        >>> PretrainConfig(data_dir="photos/", variant="convnextv2_atto", epochs=800).resolved()["warmup_epochs"]
        40
    """

    data_dir: str = dataclasses.field(
        metadata={"help": "a folder of unlabelled images (sub-folders allowed)", "metavar": "DATA_DIR"}
    )
    variant: str = _field("convnextv2_atto", "the encoder: a name from `keras-convnext info` (a ConvNeXt-V2 usually)")
    epochs: int = _field(10, "epochs to pretrain (the official recipe: 800 or 1600)", positive=True)
    batch_size: int = _field(64, "images per step", positive=True)
    image_size: int = _field(224, "image side in pixels (a multiple of 32)", positive=True)
    learning_rate: float | None = _field(None, "peak learning rate (default 1.5e-4 per 256 images of batch)", flag="--lr")
    warmup_epochs: int | None = _field(None, "epochs of linear warm-up (default: 5%% of the epochs, the official 40/800)")
    weight_decay: float = _field(0.05, "AdamW weight decay")
    mask_ratio: float = _field(0.6, "share of the 32-pixel patches removed from each image")
    decoder_dim: int = _field(512, "decoder width", positive=True)
    decoder_depth: int = _field(1, "decoder blocks", positive=True)
    norm_pix_loss: bool = _field(True, "predict raw pixels instead of per-patch normalised ones", flag="--no-norm-pix-loss")
    mixed_precision: str | None = mixed_precision_field()
    seed: int = _field(0, "random seed of the order, crops, masks and initialisation")
    devices: str | None = devices_field()

    def check(self):
        """Raises ``ValueError`` naming the first bad field.

        Example:
            >>> PretrainConfig(data_dir="d", image_size=100).check()
            Traceback (most recent call last):
            ValueError: image_size must be a multiple of 32 (one mask bit per 32-pixel patch); got 100.
        """
        from keras_convnext.applications import get_variant

        get_variant(self.variant)
        check_positive_integers(self, ("epochs", "batch_size", "image_size", "decoder_dim", "decoder_depth"))
        if self.image_size % 32:
            raise ValueError(
                f"image_size must be a multiple of 32 (one mask bit per 32-pixel patch); got {self.image_size}."
            )
        if not 0.0 < self.mask_ratio < 1.0 or int((self.image_size // 32) ** 2 * (1 - self.mask_ratio)) < 1:
            raise ValueError(
                f"mask_ratio must be in (0, 1) and keep at least one of the {(self.image_size // 32) ** 2} patches; "
                f"got {self.mask_ratio!r}."
            )
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0; got {self.learning_rate!r}.")
        if self.warmup_epochs is not None and not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs={self.epochs}); got {self.warmup_epochs!r}.")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}; got {self.mixed_precision!r}.")
        if self.devices is not None and self.devices != "all" and not str(self.devices).isdigit():
            raise ValueError(f"devices must be 'all' or a number of devices; got {self.devices!r}.")

    def resolved(self):
        """The learning rate and warm-up this run uses once the defaults are filled in.

        Example:
            >>> PretrainConfig(data_dir="d", batch_size=4096, epochs=20).resolved()
            {'learning_rate': 0.0024, 'warmup_epochs': 1}
        """
        return {
            "learning_rate": self.learning_rate or 1.5e-4 * self.batch_size / 256,
            "warmup_epochs": self.warmup_epochs if self.warmup_epochs is not None else round(self.epochs * 40 / 800),
        }


def pretrained_encoder_weights(weights, variant):
    """``weights`` itself, or the encoder file of a ``pretrain`` run folder (checked to be of ``variant``): what
    ``train --weights RUN_DIR`` fine-tunes from.

    Example:
        >>> pretrained_encoder_weights("imagenet", "convnext_tiny")
        'imagenet'
    """
    if weights is None or not (Path(weights) / CONFIG_FILE).is_file():
        return weights
    run = json.loads((Path(weights) / CONFIG_FILE).read_text())
    encoder = Path(weights) / ENCODER_WEIGHTS
    if run["config"]["variant"] != variant:
        raise ValueError(
            f"{weights} pretrained a {run['config']['variant']} encoder; fine-tune it with --variant "
            f"{run['config']['variant']}, not {variant}."
        )
    if not encoder.is_file():
        raise ValueError(f"{weights} holds no {ENCODER_WEIGHTS}: the pretraining run has not finished; resume it first.")
    return str(encoder)


def figure_batch(files, image_size, seed):
    """The first ``FIGURE_IMAGES`` images, resized, and a fixed mask for them: what each epoch's figure shows."""
    from keras_convnext.pretraining.patches import random_patch_mask
    from keras_convnext.pretraining.unlabelled_images import pretraining_dataset

    count = min(FIGURE_IMAGES, len(files))
    images = next(iter(pretraining_dataset(files[:count], image_size=image_size, batch_size=count, augment=False)))
    mask = random_patch_mask(count, (image_size // 32) ** 2, 0.6, seed=seed)
    return np.asarray(images), keras.ops.convert_to_numpy(mask)


def pretrain(config, output="pretrain-output", *, resume=False, verbose="auto", log=print, timeout_seconds=None):
    """Pretrains ``config.variant`` as an FCMAE on the images under ``config.data_dir`` and writes the run to
    ``output``: ``encoder.weights.h5`` (what ``train --weights OUTPUT`` fine-tunes), ``fcmae.weights.h5`` (encoder
    and decoder), ``history.csv``, ``training_curves.png``, ``reconstruction_epoch_N.png`` and
    ``pretrain_config.json``. A run killed at any moment continues from its last completed epoch with
    ``resume=True`` and the same config. With ``config.devices`` it runs data parallel as ``train`` does (only
    process 0 writes); each device's GRN statistics are over its own share of the batch on TensorFlow and torch
    (as the official code on each GPU), over the whole batch on JAX (one program over all devices).

    Example:
        >>> summary = pretrain(PretrainConfig(data_dir="photos/", epochs=100), output="runs/fcmae")  # doctest: +SKIP
        >>> summary["loss"]  # doctest: +SKIP
        0.41
    """
    from keras_convnext.pretraining.unlabelled_images import scan_unlabelled_folder

    config.check()
    files = scan_unlabelled_folder(config.data_dir)
    if len(files) < config.batch_size:
        raise ValueError(f"The {len(files)} images make no whole batch of {config.batch_size}; lower --batch-size.")
    output = Path(output)
    done = check_run_folder(output, config, resume, CONFIG_FILE)
    if resume and done == 0 and len(read_history(output / "history.csv")) >= config.epochs and (output / ENCODER_WEIGHTS).exists():
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
        if setup is None or setup.is_chief:
            with exclusive_run(output):
                done = check_run_folder(output, config, resume, CONFIG_FILE)
                return _pretrain_and_write(config, files, output, output, done, setup, verbose, log)
        # The other processes make the same saves into a folder thrown away, and say nothing.
        scratch = Path(tempfile.mkdtemp(prefix="keras-convnext-process-"))
        try:
            return _pretrain_and_write(config, files, output, scratch, done, setup, 0, lambda *_: None)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    finally:
        if setup is not None:
            setup.close()


def _process_files(files, batch_size, setup):
    """This process's images, batch size and steps per epoch: all the images; on torch with several processes every
    ``process_count``-th one from its rank on, cut to the same number of whole batches in every process."""
    from keras_convnext.training.trainer import check_global_batch

    steps = len(files) // batch_size  # at least 1: pretrain() refused fewer images than a batch
    if setup is None:
        return files, batch_size, steps
    check_global_batch(batch_size, len(setup.devices) if not setup.feeds_own_shard else setup.process_count)
    if not setup.feeds_own_shard or setup.process_count == 1:
        return files, batch_size, steps
    per_process = batch_size // setup.process_count
    return files[setup.process_index :: setup.process_count][: steps * per_process], per_process, steps


def _pretrain_and_write(config, files, output, write_to, done, setup, verbose, log):
    import contextlib

    from keras_convnext.pretraining.fcmae import FCMAE
    from keras_convnext.pretraining.reconstruction_figure import ReconstructionFigures
    from keras_convnext.pretraining.unlabelled_images import pretraining_dataset
    from keras_convnext.training.recipe import recipe_optimizer

    resolved = config.resolved()
    if config.mixed_precision:
        keras.config.set_dtype_policy(config.mixed_precision)
    # torch processes each draw their own crops and masks; process 0's weights are copied to all.
    process_seed = config.seed + (setup.process_index if setup is not None and setup.feeds_own_shard else 0)
    keras.utils.set_random_seed(process_seed)
    process_files, batch_size, steps_per_epoch = _process_files(files, config.batch_size, setup)
    data = pretraining_dataset(process_files, image_size=config.image_size, batch_size=batch_size, seed=process_seed)
    if setup is not None:
        log(f"{setup.description}; the last partial batch of each epoch is dropped")
    total_steps = steps_per_epoch * config.epochs
    with setup.scope() if setup is not None else contextlib.nullcontext():
        model = FCMAE(
            config.variant, decoder_dim=config.decoder_dim, decoder_depth=config.decoder_depth,
            mask_ratio=config.mask_ratio, norm_pix_loss=config.norm_pix_loss, image_size=config.image_size,
            seed=process_seed,
        )
        model.compile(optimizer=recipe_optimizer(
            model, learning_rate=resolved["learning_rate"], total_steps=total_steps, min_learning_rate=0.0,
            warmup_steps=min(resolved["warmup_epochs"] * steps_per_epoch, total_steps - 1),
            weight_decay=config.weight_decay,
        ))
    if not done or write_to != output:
        write_text_atomically(write_to / CONFIG_FILE, json.dumps(
            {"config": dataclasses.asdict(config), "resolved": resolved, "images": len(files)}, indent=2))
    images, mask = figure_batch(files, config.image_size, config.seed)
    callbacks = [
        HistoryCSV(write_to / "history.csv"),
        AtomicBackupAndRestore(output / "backup", delete_checkpoint=False, write_dir=write_to / "backup"),
        ReconstructionFigures(images, mask, write_to),
    ]
    if setup is not None:
        callbacks = setup.prepare(model) + callbacks  # its epoch figures go into the logs the others record
    log(
        f"backend {keras.backend.backend()}: FCMAE pretraining of {config.variant} on {len(files)} images "
        f"({steps_per_epoch} steps per epoch), lr {resolved['learning_rate']:g}, {resolved['warmup_epochs']} warm-up "
        f"epochs, mask ratio {config.mask_ratio:g}" + (f"; resuming after epoch {done}" if done else "")
    )
    model.fit(data, epochs=config.epochs, initial_epoch=done, callbacks=callbacks, verbose=verbose, shuffle=False,
              steps_per_epoch=steps_per_epoch)
    return _finish(model, config.variant, write_to, log)


def encoder_for_fine_tuning(model, variant):
    """The pretrained encoder as a pooled ``variant`` (no classifier): its weights, and a new final LayerNorm, which
    the FCMAE encoder lacks and the official fine-tuning also starts fresh. Its weight file loads into any
    classifier of ``variant`` (the classifier keeps its initialisation).

    Example:
        >>> backbone = encoder_for_fine_tuning(fcmae, "convnextv2_atto")  # doctest: +SKIP
    """
    from keras_convnext.applications import create_model
    from keras_convnext.weights.loading import canonical_key, model_slots

    pooled = create_model(variant, include_top=False, pooling="avg", input_shape=model.encoder.input_shape[1:])
    slots = model_slots(pooled)
    for variable in model.encoder.weights:
        slots[canonical_key(variable.path)].assign(keras.ops.convert_to_numpy(variable))  # a copy, not a shared array
    return pooled


def _finish(model, variant, output, log):
    from keras_convnext.training.plots import plot_history
    from keras_convnext.weights import save_weights

    save_weights(encoder_for_fine_tuning(model, variant), output / ENCODER_WEIGHTS)
    save_weights(model, output / "fcmae.weights.h5")
    rows = read_history(output / "history.csv")
    plot_history(rows, output / "training_curves.png")
    summary = {"epochs": len(rows), "loss": float(rows[-1]["loss"]), "first_epoch_loss": float(rows[0]["loss"])}
    saved = json.loads((output / CONFIG_FILE).read_text())
    write_text_atomically(output / CONFIG_FILE, json.dumps({**saved, "summary": summary}, indent=2))
    shutil.rmtree(output / "backup", ignore_errors=True)
    log(f"wrote {output}/{ENCODER_WEIGHTS}, fcmae.weights.h5, history.csv, training_curves.png; {summary}")
    return summary


