"""Self-supervised pretraining: ConvNeXt-V2's FCMAE on every backend, with no sparse-convolution library.

Example:
    >>> import keras_convnext as kc
    >>> model = kc.pretraining.FCMAE("convnextv2_atto", decoder_dim=64, image_size=64)
    >>> model.mask_ratio
    0.6
"""

from keras_convnext.pretraining.fcmae import FCMAE, masked_patch_loss
from keras_convnext.pretraining.official_checkpoint import load_fcmae_checkpoint
from keras_convnext.pretraining.patches import mask_map, patchify, random_patch_mask, unpatchify

__all__ = ["FCMAE", "load_fcmae_checkpoint", "mask_map", "masked_patch_loss", "patchify", "random_patch_mask", "unpatchify"]
