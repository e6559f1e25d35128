"""ConvNeXt-V2's fully convolutional masked autoencoder (FCMAE), trained by ``model.fit`` on images alone.

The official encoder is sparse (MinkowskiEngine). As the ConvNeXt-V2 paper notes, zeroing the removed positions
before and after every convolution gives the same numbers with dense layers, so the encoder here is the package's
own ConvNeXt, run layer by layer with a visibility map (``visible=`` of ``ConvNeXtBlock``, ``ConvNeXtDownsample``
and ``GlobalResponseNorm``).
"""

import keras
from keras import ops

from keras_convnext.layer_names import STEM, parse_stage_layer
from keras_convnext.layers import ConvNeXtBlock
from keras_convnext.layers.data_format import halve_mask
from keras_convnext.layers.initializers import kernel_initializer
from keras_convnext.pretraining.patches import mask_map, patch_grid, patchify, random_patch_mask

PREPROCESSING = "preprocessing"
NORM_PIX_EPSILON = 1e-6


def masked_patch_loss(targets, predictions, mask, norm_pix_loss=True):
    """The FCMAE loss: the mean squared error of each patch, averaged over the removed patches (``mask`` 1).

    With ``norm_pix_loss`` each target patch is first normalised by its own mean and (unbiased) variance, as the
    official ``forward_loss``. ``targets`` and ``predictions``: ``(B, L, D)``; ``mask``: ``(B, L)``.

    Example:
        >>> import numpy as np
        >>> float(masked_patch_loss(np.ones((1, 2, 4)), np.zeros((1, 2, 4)), np.array([[1.0, 0.0]]), False))
        1.0
    """
    targets = ops.cast(targets, "float32")
    if norm_pix_loss:
        size = targets.shape[-1]
        mean = ops.mean(targets, axis=-1, keepdims=True)
        variance = ops.sum(ops.square(targets - mean), axis=-1, keepdims=True) / (size - 1)
        targets = (targets - mean) / ops.sqrt(variance + NORM_PIX_EPSILON)
    per_patch = ops.mean(ops.square(ops.cast(predictions, "float32") - targets), axis=-1)
    mask = ops.cast(mask, "float32")
    return ops.sum(per_patch * mask) / ops.sum(mask)


def encoder_layers(encoder, patch_size):
    """``(preprocessing layer or None, stem, [stage layers in order])`` of a ConvNeXt that FCMAE can mask; a
    ``ValueError`` naming what does not fit otherwise.

    Example:
        >>> import keras_convnext as kc
        >>> encoder = kc.create_model("convnextv2_atto", include_top=False, input_shape=(64, 64, 3))
        >>> _, stem, stage_layers = encoder_layers(encoder, 32)
        >>> stem.name, stage_layers[0].name, len(stage_layers)
        ('stem', 'stage_0_block_0', 15)
    """
    if len(encoder.outputs) != 1 or len(encoder.outputs[0].shape) != 4:
        raise ValueError(
            "FCMAE needs an encoder that ends in its last feature map; build it with include_top=False, pooling=None "
            f"(this one's output has shape {encoder.outputs[0].shape if len(encoder.outputs) == 1 else 'several'})."
        )
    preprocessing, stem, stage_layers, others = None, None, [], []
    for layer in encoder.layers:
        place = parse_stage_layer(layer.name)
        if place is not None:
            stage_layers.append((place[0], -1 if place[1] is None else place[1], layer))
        elif layer.name == STEM:
            stem = layer
        elif layer.name == PREPROCESSING:
            preprocessing = layer
        elif not isinstance(layer, keras.layers.InputLayer):
            others.append(layer.name)
    if stem is None or others:
        raise ValueError(
            "FCMAE masks the package's own ConvNeXt layers (stem, stage_*_downsample, stage_*_block_*); this encoder "
            f"{'has no stem' if stem is None else 'also has ' + ', '.join(others)}."
        )
    if stem.stem_type != "patch":
        raise ValueError(
            f"FCMAE needs a patchify stem (non-overlapping); this encoder's stem is {stem.stem_type!r}, which would let "
            "the pixels of removed patches reach kept ones."
        )
    stage_layers = [layer for *_, layer in sorted(stage_layers, key=lambda item: item[:2])]
    stride = stem.patch_size * 2 ** sum(1 for layer in stage_layers if parse_stage_layer(layer.name)[1] is None)
    if stride != patch_size:
        raise ValueError(
            f"patch_size must be the encoder's total stride, {stride} (one decoder position per patch); got {patch_size}."
        )
    return preprocessing, stem, stage_layers


@keras.saving.register_keras_serializable(package="keras_convnext")
class FCMAE(keras.Model):
    """ConvNeXt-V2 masked-autoencoder pretraining: ``model.fit(images)`` trains the encoder to fill in removed patches.

    Each call draws a random mask per image (``mask_ratio`` of the ``patch_size`` squares removed, from the model's
    seed generator), runs the encoder on the kept patches only (the sparse encoder of the official code, computed
    dense), projects its last feature map to ``decoder_dim`` channels, puts the learned ``mask_token`` at the
    removed positions, runs ``decoder_depth`` ConvNeXt-V2 blocks and predicts each patch's pixels. The loss
    (``compute_loss``, so ``compile`` needs only an optimizer) is the mean squared error over the removed patches,
    against the encoder's own normalised pixels (each patch normalised with ``norm_pix_loss``).

    ``call`` returns ``{"predictions": (B, L, patch_size**2 * 3), "mask": (B, L)}``, ``L`` the number of patches,
    mask 1 = removed (the official convention). As in the official sparse code, each encoder GRN takes its statistics
    over the kept positions of the whole batch. A variant name builds an encoder that takes 0..255 RGB and normalises
    it inside (the targets are the normalised pixels); the official code takes normalised images, as does an encoder
    built with ``include_preprocessing=False`` (and NCHW ones with ``data_format="channels_first"``).

    Args:
        encoder: a variant name (built without top, ``image_size`` square, drop path 0) or a ConvNeXt model with
            ``include_top=False, pooling=None`` and a patchify stem (e.g. ``create_model("convnextv2_atto.fcmae")``).
        decoder_dim, decoder_depth: width and number of blocks of the decoder (512 and 1 officially).
        patch_size: the side of a masked patch; must be the encoder's total stride (32).
        mask_ratio: the share of patches removed from each image, in (0, 1).
        norm_pix_loss: normalise each target patch by its mean and variance.
        image_size: the square side when ``encoder`` is a name.
        seed: seed of the masks (``None``: Keras' global seed state).

    Example:
        >>> import numpy as np
        >>> model = FCMAE("convnextv2_atto", decoder_dim=64, image_size=64, seed=0)
        >>> model.compile(optimizer="adamw")
        >>> outputs = model(np.zeros((2, 64, 64, 3), "float32"))
        >>> tuple(outputs["predictions"].shape), tuple(outputs["mask"].shape)
        ((2, 4, 3072), (2, 4))
    """

    def __init__(
        self,
        encoder="convnextv2_atto",
        decoder_dim=512,
        decoder_depth=1,
        patch_size=32,
        mask_ratio=0.6,
        norm_pix_loss=True,
        image_size=224,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for argument, value in (("decoder_dim", decoder_dim), ("decoder_depth", decoder_depth), ("patch_size", patch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"FCMAE {argument} must be a positive integer; got {value!r}.")
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"FCMAE mask_ratio must be in (0, 1); got {mask_ratio!r}.")
        if isinstance(encoder, str):
            from keras_convnext.applications import create_model

            encoder = create_model(
                encoder, include_top=False, pooling=None, input_shape=(image_size, image_size, 3), drop_path_rate=0.0
            )
        elif isinstance(encoder, dict):
            encoder = keras.saving.deserialize_keras_object(encoder)
        self.preprocessing, self.stem, self.stage_layers = encoder_layers(encoder, patch_size)
        self.encoder = encoder
        self.decoder_dim = decoder_dim
        self.decoder_depth = decoder_depth
        self.patch_size = patch_size
        self.mask_ratio = float(mask_ratio)
        self.norm_pix_loss = bool(norm_pix_loss)
        self.image_size = image_size
        self.seed = seed
        self.data_format = self.stem.data_format
        self.seed_generator = keras.random.SeedGenerator(seed)

        width = encoder.outputs[0].shape[-1 if self.data_format == "channels_last" else 1]
        self.projection = keras.layers.Dense(decoder_dim, kernel_initializer=kernel_initializer(), name="decoder_projection")
        self.projection.build((None, None, None, width))
        self.mask_token = self.add_weight(
            shape=(decoder_dim,), initializer=keras.initializers.RandomNormal(stddev=0.02), name="mask_token"
        )
        self.decoder_blocks = []
        for index in range(decoder_depth):
            block = ConvNeXtBlock(use_grn=True, layer_scale_init_value=None, data_format="channels_last",
                                  name=f"decoder_block_{index}")
            block.build((None, None, None, decoder_dim))
            self.decoder_blocks.append(block)
        self.prediction = keras.layers.Dense(
            patch_size * patch_size * 3, kernel_initializer=kernel_initializer(), name="decoder_prediction"
        )
        self.prediction.build((None, None, None, decoder_dim))
        self.built = True

    def call(self, images, training=False, patch_mask=None):
        grid = patch_grid(images.shape, self.patch_size, self.data_format)
        patch_count = grid[0] * grid[1]
        if patch_mask is None:
            if int(patch_count * (1 - self.mask_ratio)) < 1:
                raise ValueError(
                    f"mask_ratio {self.mask_ratio} removes all {patch_count} patches of a {images.shape[1:]} image; "
                    "use larger images or a lower mask_ratio."
                )
            patch_mask = random_patch_mask(ops.shape(images)[0], patch_count, self.mask_ratio, seed=self.seed_generator)
        features = self.encode(images, patch_mask, grid, training=training)
        predictions = self.decode(features, patch_mask, grid, training=training)
        return {"predictions": predictions, "mask": patch_mask}

    def encode(self, images, patch_mask, grid, training=False):
        """The encoder's last feature map of the kept patches, zeros at the removed ones (the sparse encoder's)."""
        x = images if self.preprocessing is None else self.preprocessing(images)
        x = self.stem(x)
        visible = 1.0 - mask_map(patch_mask, grid, self.patch_size // self.stem.patch_size, self.data_format)
        x = x * ops.cast(visible, x.dtype)
        for layer in self.stage_layers:
            if parse_stage_layer(layer.name)[1] is None:
                x = layer(x, visible=visible)
                visible = halve_mask(visible, self.data_format)
            else:
                x = layer(x, training=training, visible=visible)
        return x

    def decode(self, features, patch_mask, grid, training=False):
        """The per-patch pixel predictions ``(B, L, patch_size**2 * 3)`` from the encoder's feature map."""
        if self.data_format != "channels_last":
            features = ops.transpose(features, (0, 2, 3, 1))
        x = self.projection(features)
        removed = ops.cast(mask_map(patch_mask, grid, 1), x.dtype)
        x = x * (1.0 - removed) + ops.cast(self.mask_token, x.dtype) * removed
        for block in self.decoder_blocks:
            x = block(x, training=training)
        x = self.prediction(x)
        return ops.reshape(x, (-1, grid[0] * grid[1], self.patch_size * self.patch_size * 3))

    def patch_targets(self, images):
        """The images as the encoder sees them (after its preprocessing), cut into patches: the loss's targets.

        Example:
            >>> tuple(model.patch_targets(images).shape)  # 224x224 images  # doctest: +SKIP
            (8, 49, 3072)
        """
        x = images if self.preprocessing is None else self.preprocessing(images)
        return patchify(ops.cast(x, "float32"), self.patch_size, self.data_format)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        images = x[0] if isinstance(x, (tuple, list)) else x
        loss = masked_patch_loss(
            self.patch_targets(images), y_pred["predictions"], y_pred["mask"], self.norm_pix_loss
        )
        if self.losses:
            loss = loss + ops.sum(self.losses)
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            # Under a tf.distribute strategy Keras sums the replicas' gradients; its own losses divide by the replica
            # count for that (and its loss tracker multiplies back), so this one does too.
            loss = loss / tf.distribute.get_strategy().num_replicas_in_sync
        return loss

    def reconstruct(self, images, mask):
        """The per-patch predictions ``(B, L, patch_size**2 * 3)`` for a given ``mask`` ``(B, L)`` (1 = removed):
        what the model fills in. Pixels of removed patches have no influence on any prediction.

        Example:
            >>> mask = np.array([[1, 0, 0, 1]], "float32")  # 4 patches of a 64x64 image  # doctest: +SKIP
            >>> tuple(model.reconstruct(np.zeros((1, 64, 64, 3), "float32"), mask).shape)  # doctest: +SKIP
            (1, 4, 3072)
        """
        images = ops.convert_to_tensor(images)
        grid = patch_grid(images.shape, self.patch_size, self.data_format)
        mask = ops.convert_to_tensor(mask, "float32")
        if tuple(mask.shape) != (images.shape[0], grid[0] * grid[1]):
            raise ValueError(
                f"mask must have shape (images, patches) = ({images.shape[0]}, {grid[0] * grid[1]}) for these images "
                f"({grid[0]}x{grid[1]} patches of {self.patch_size} pixels); got {tuple(mask.shape)}."
            )
        return self(images, training=False, patch_mask=mask)["predictions"]

    def reconstruction_loss(self, images, mask):
        """The FCMAE loss of ``images`` under a given ``mask`` ``(B, L)`` (1 = removed): the official
        ``forward_loss`` for the same weights, images and mask.

        Example:
            >>> float(model.reconstruction_loss(images, mask))  # doctest: +SKIP
            0.93
        """
        images = ops.convert_to_tensor(images)
        return masked_patch_loss(self.patch_targets(images), self.reconstruct(images, mask), mask, self.norm_pix_loss)

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder_dim": self.decoder_dim,
            "decoder_depth": self.decoder_depth,
            "patch_size": self.patch_size,
            "mask_ratio": self.mask_ratio,
            "norm_pix_loss": self.norm_pix_loss,
            "image_size": self.image_size,
            "seed": self.seed,
        }
