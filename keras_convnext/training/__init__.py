"""Training ConvNeXt with ``model.fit`` on any backend: the official recipe, fine-tuning helpers, resumable runs.

Example:
    >>> import keras_convnext as kc
    >>> from keras_convnext import training
    >>> model = kc.ConvNeXtAtto(input_shape=(32, 32, 3), classes=4)
    >>> optimizer = training.recipe_optimizer(model, learning_rate=1e-4, total_steps=1000, warmup_steps=100,
    ...                                       layer_decay=0.8, use_ema=True)
    >>> model.compile(optimizer=optimizer, loss=training.recipe_loss(0.1), metrics=["accuracy"])
"""

from keras_convnext.training.augment import batch_mixing, image_augmentation
from keras_convnext.training.backup import AtomicBackupAndRestore
from keras_convnext.training.ema import ema_weights, save_ema_weights
from keras_convnext.training.fine_tune import freeze_stages, replace_head, unfreeze
from keras_convnext.training.history import HistoryCSV, read_history
from keras_convnext.training.layer_decay import layer_decay_multipliers, layer_groups
from keras_convnext.training.optimizer import NO_WEIGHT_DECAY, LayerwiseAdamW
from keras_convnext.training.rank_shards import rank_evaluation_dataset, rank_training_dataset
from keras_convnext.training.recipe import recipe_loss, recipe_optimizer
from keras_convnext.training.gradient_checkpointing import checkpoint_stages
from keras_convnext.training.schedule import warmup_cosine
