"""Does FCMAE pretraining pay? scikit-learn's digits with a tenth of the labels: pretrained-then-fine-tuned against
the same model trained from scratch on the same labelled images, scored on a held-out split.

The pretraining sees the training split's images without labels (never the held-out ones); the classifiers then
get the same labelled tenth, optimizer (AdamW, lr 1e-3, warm-up and cosine), epochs and seed; the pretrained one
the fine-tuning recipe's layer decay (0.9), and a control from scratch gets that layer decay too. The digits are 8x8 scans upsampled to 96x96: 3x3 patches of 32
pixels, of which FCMAE keeps 3 (mask ratio 0.6).
"""

import time

import keras
import numpy as np

from keras_convnext.demo import CLASS_NAMES, held_out_split, load_digits_images


def labelled_subset(indices, labels, fraction, seed=0):
    """``fraction`` of ``indices``, the same share of every class (at least one image each).

    Example:
        >>> labelled_subset(np.arange(100), np.arange(100) % 10, 0.1).size
        10
    """
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels[indices]):
        members = rng.permutation(indices[labels[indices] == label])
        chosen.extend(members[: max(1, round(len(members) * fraction))])
    return np.sort(np.asarray(chosen))


def _classifier_accuracy(variant, image_size, weights_model, layer_decay, images, one_hot, train, held_out, epochs,
                         seed):
    """Held-out accuracy of a classifier trained on ``train``, from scratch or from ``weights_model``'s weights."""
    from keras_convnext.applications import create_model
    from keras_convnext.training.recipe import recipe_loss, recipe_optimizer
    from keras_convnext.weights.loading import model_slots

    keras.utils.set_random_seed(seed)
    model = create_model(variant, input_shape=(image_size, image_size, 3), classes=len(CLASS_NAMES))
    if weights_model is not None:
        slots = model_slots(model)
        for key, variable in model_slots(weights_model).items():
            slots[key].assign(keras.ops.convert_to_numpy(variable))  # a copy: JAX fits donate their arrays
    batch_size = 32
    total_steps = epochs * -(-len(train) // batch_size)
    model.compile(
        optimizer=recipe_optimizer(model, learning_rate=1e-3, total_steps=total_steps,
                                   warmup_steps=total_steps // 10, weight_decay=0.05,
                                   layer_decay=layer_decay),
        loss=recipe_loss(label_smoothing=0.1), metrics=["accuracy"],
    )
    model.fit(images[train], one_hot[train], batch_size=batch_size, epochs=epochs, verbose=0)
    return float(model.evaluate(images[held_out], one_hot[held_out], verbose=0)[1])


def run_pretraining_experiment(variant="convnextv2_atto", image_size=96, label_fraction=0.1, pretrain_epochs=30,
                               fine_tune_epochs=30, decoder_dim=128, seed=0, fine_tune_seeds=(0, 1, 2), log=print):
    """Pretrains ``variant`` as an FCMAE on the digits' training images, then fine-tunes it and a from-scratch twin
    on ``label_fraction`` of their labels, once per seed of ``fine_tune_seeds`` (the classifier's initialisation and
    batch order; the same for both); returns the held-out accuracies and the pretraining losses.

    Example:
        >>> result = run_pretraining_experiment(pretrain_epochs=1, fine_tune_epochs=1)  # doctest: +SKIP
        >>> sorted(result)  # doctest: +SKIP
        ['backend', 'fine_tune_epochs', 'fine_tune_seeds', 'held_out', 'image_size', 'labelled', ...]
    """
    from keras_convnext.pretraining.fcmae import FCMAE
    from keras_convnext.pretraining.runner import encoder_for_fine_tuning
    from keras_convnext.training.recipe import recipe_optimizer

    start = time.perf_counter()
    images, labels, _ = load_digits_images(image_size)
    train, held_out = held_out_split(labels, seed=seed)
    labelled = labelled_subset(train, labels, label_fraction, seed=seed)
    one_hot = np.eye(len(CLASS_NAMES), dtype="float32")[labels]
    log(f"backend {keras.backend.backend()}: {variant} at {image_size}x{image_size}; FCMAE on {len(train)} unlabelled "
        f"images for {pretrain_epochs} epochs, then {len(labelled)} labelled ones ({label_fraction:.0%}) for "
        f"{fine_tune_epochs} epochs, from scratch and pretrained; {len(held_out)} held-out images")

    keras.utils.set_random_seed(seed)
    fcmae = FCMAE(variant, decoder_dim=decoder_dim, image_size=image_size, seed=seed)
    batch_size = 64
    total_steps = pretrain_epochs * -(-len(train) // batch_size)
    fcmae.compile(optimizer=recipe_optimizer(fcmae, learning_rate=1.5e-3, total_steps=total_steps,
                                             warmup_steps=total_steps // 20, weight_decay=0.05, min_learning_rate=0.0))
    flipped = np.concatenate([images[train], images[train][:, :, ::-1]])  # the recipe's flip, as more data
    losses = fcmae.fit(flipped, batch_size=batch_size, epochs=pretrain_epochs, verbose=0).history["loss"]
    log(f"pretraining loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    pretrained = encoder_for_fine_tuning(fcmae, variant)

    # Three arms per seed: from scratch as `train` does it, the same with the fine-tuning recipe's layer decay (the
    # control: does layer decay alone help?), and from the pretrained encoder with that layer decay.
    arms = {"scratch": (None, None), "scratch_layer_decay": (None, 0.9), "pretrained": (pretrained, 0.9)}
    accuracy = {arm: [] for arm in arms}
    for run_seed in fine_tune_seeds:
        for arm, (weights_model, layer_decay) in arms.items():
            accuracy[arm].append(_classifier_accuracy(variant, image_size, weights_model, layer_decay, images, one_hot,
                                                      labelled, held_out, fine_tune_epochs, run_seed))
        log(f"seed {run_seed}: held-out accuracy " + ", ".join(f"{arm} {values[-1]:.4f}" for arm, values in accuracy.items()))
    log(f"mean held-out accuracy with {len(labelled)} labels: "
        + ", ".join(f"{arm} {np.mean(values):.4f}" for arm, values in accuracy.items()))
    return {
        "backend": keras.backend.backend(), "variant": variant, "image_size": image_size,
        "labelled": int(len(labelled)), "held_out": int(len(held_out)), "pretrain_epochs": pretrain_epochs,
        "fine_tune_epochs": fine_tune_epochs, "pretraining_loss": [float(v) for v in losses],
        "fine_tune_seeds": list(fine_tune_seeds),
        **{f"{arm}_accuracy": values for arm, values in accuracy.items()},
        **{f"{arm}_mean": float(np.mean(values)) for arm, values in accuracy.items()},
        "seconds": time.perf_counter() - start,
    }
