"""The TF Serving signatures of a ConvNeXt, built under the TensorFlow backend with plain TF ops.

``serving_default`` takes float32 pixels (0..255), ``serving_uint8`` uint8 pixels, ``serving_image_bytes`` a batch
of encoded JPEG/PNG/BMP/GIF strings, decoded, resized and centre-cropped in the graph. All three return, for a
classifier, ``probabilities``, ``top_k_indices``, ``top_k_scores`` and, when the class names are known,
``top_k_class_names``; for a CLIP image tower (``head_output="embedding"``), ``embedding``; for a backbone built
with ``include_top=False, pooling="avg"`` (DINOv3), ``embedding`` and ``patch_tokens`` (``dense_features``).
"""

import keras

from keras_convnext.image_headers import DEFAULT_MAX_PIXELS
from keras_convnext.layer_names import EMBEDDING, HEAD_DENSE, PREDICTIONS

SIGNATURES = ("serving_default", "serving_uint8", "serving_image_bytes")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "area")


def served_outputs(model):
    """``(kind, module, images -> dict of float32 outputs)``: what the signatures of ``model`` return, and the
    Keras model holding the weights they use. ``kind`` is ``"classes"``, ``"embedding"`` or ``"dense_features"``.

    Example:
        >>> import keras_convnext as kc
        >>> tower = kc.ConvNeXt((1, 1), (8, 16), input_shape=(32, 32, 3), classes=4, head_output="embedding",
        ...                     classifier_activation=None)
        >>> served_outputs(tower)[0]
        'embedding'
    """
    import tensorflow as tf

    from keras_convnext.applications import dense_features

    names = {layer.name for layer in model.layers}
    if EMBEDDING in names:
        return "embedding", model, lambda images: {"embedding": tf.cast(model(images, training=False), "float32")}
    if HEAD_DENSE in names:
        return "classes", model, _probabilities(model)
    try:
        features = dense_features(model)
    except ValueError as error:
        raise ValueError(
            "Export expects a classifier, a CLIP image tower (head_output='embedding') or a feature backbone built "
            f"with include_top=False, pooling='avg'. {error}"
        ) from None

    def embedding_and_patch_tokens(images):
        outputs = features(images, training=False)
        return {name: tf.cast(outputs[name], "float32") for name in ("embedding", "patch_tokens")}

    return "dense_features", features, embedding_and_patch_tokens


def _probabilities(model):
    """A function images -> probabilities: the model's softmax head as is, a linear head through a softmax."""
    import tensorflow as tf

    activation = model.get_layer(PREDICTIONS).activation if PREDICTIONS in {l.name for l in model.layers} else None
    if activation is keras.activations.softmax:
        return lambda images: model(images, training=False)
    if activation in (None, keras.activations.linear):
        return lambda images: tf.nn.softmax(tf.cast(model(images, training=False), "float32"), axis=-1)
    raise ValueError(f"Expected a classifier ending in softmax or logits; its 'predictions' activation is {activation}.")


def decode_and_crop(image_bytes, *, image_size, crop_pct, interpolation, min_image_side,
                    max_image_pixels=DEFAULT_MAX_PIXELS):
    """One encoded image -> float32 ``(image_size, image_size, 3)`` pixels in 0..255: decode, resize the short
    side to ``image_size / crop_pct``, take the central square (timm's and this package's eval transform).

    Empty strings, undecodable bytes, images under ``min_image_side`` pixels on a side, palette BMPs (TensorFlow's
    decoder would read them as grey) and headers declaring more than ``max_image_pixels`` pixels (checked before
    decoding, so that one request cannot take the server's memory) raise an error.

    Example:
        >>> import tensorflow as tf
        >>> png = tf.io.encode_png(tf.zeros((40, 60, 3), "uint8"))
        >>> pixels = decode_and_crop(png, image_size=32, crop_pct=1.0, interpolation="bicubic", min_image_side=16)
        >>> tuple(pixels.shape)
        (32, 32, 3)
    """
    import tensorflow as tf

    # The checks are stateful ops and decoding is not, so graph mode may run them in either order; the
    # control dependencies make each check fail before the op whose own error would be less clear.
    not_empty = tf.debugging.assert_greater(
        tf.strings.length(image_bytes), 0, message="serving_image_bytes: an image string is empty")
    with tf.control_dependencies([not_empty]):
        header_checks = _header_checks(image_bytes, max_image_pixels)
    with tf.control_dependencies(header_checks):
        image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    large_enough = tf.debugging.assert_greater_equal(
        tf.minimum(height, width), min_image_side,
        message=f"serving_image_bytes: an image is smaller than {min_image_side}x{min_image_side} pixels",
    )
    with tf.control_dependencies([large_enough]):
        height = tf.identity(height)
    scale_size = tf.constant(int(image_size / crop_pct), "float32")
    short = tf.cast(tf.minimum(height, width), "float32")
    new_height = tf.maximum(tf.cast(tf.round(tf.cast(height, "float32") * scale_size / short), "int32"), image_size)
    new_width = tf.maximum(tf.cast(tf.round(tf.cast(width, "float32") * scale_size / short), "int32"), image_size)
    resized = tf.image.resize(tf.cast(image, "float32"), [new_height, new_width], method=interpolation, antialias=True)
    top, left = (new_height - image_size) // 2, (new_width - image_size) // 2
    cropped = tf.slice(resized, [top, left, 0], [image_size, image_size, 3])
    return tf.clip_by_value(tf.ensure_shape(cropped, (image_size, image_size, 3)), 0.0, 255.0)


def _header_checks(image_bytes, max_image_pixels):
    """Assertions on the first bytes of an encoded image, as ``keras_convnext.image_headers`` makes them in Python."""
    import tensorflow as tf

    head = tf.strings.substr(tf.strings.substr(image_bytes, 0, 32) + b"\0" * 32, 0, 32)
    b = tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int64)

    def starts_with(signature):
        return tf.reduce_all(tf.equal(b[: len(signature)], tf.constant(list(signature), tf.int64)))

    def little(at, count):
        return tf.reduce_sum(b[at: at + count] * tf.constant([256**i for i in range(count)], tf.int64))

    def big(at, count):
        return tf.reduce_sum(b[at: at + count] * tf.constant([256**i for i in reversed(range(count))], tf.int64))

    def signed32(value):
        return tf.abs(tf.where(value >= 2**31, value - 2**32, value))

    def webp_pixels():
        chunk = b[12:16]
        is_chunk = lambda name: tf.reduce_all(tf.equal(chunk, tf.constant(list(name), tf.int64)))  # noqa: E731
        bits = little(21, 4)
        lossless = ((tf.bitwise.bitwise_and(bits, 0x3FFF) + 1)
                    * (tf.bitwise.bitwise_and(tf.bitwise.right_shift(bits, 14), 0x3FFF) + 1))
        lossy = tf.bitwise.bitwise_and(little(26, 2), 0x3FFF) * tf.bitwise.bitwise_and(little(28, 2), 0x3FFF)
        extended = (little(24, 3) + 1) * (little(27, 3) + 1)
        return tf.where(is_chunk(b"VP8X"), extended, tf.where(is_chunk(b"VP8L"), lossless,
                                                               tf.where(is_chunk(b"VP8 "), lossy, 0)))

    is_webp = tf.logical_and(starts_with(b"RIFF"), tf.reduce_all(tf.equal(b[8:12], tf.constant(list(b"WEBP"), tf.int64))))
    is_bmp = starts_with(b"BM")
    jpeg_size = lambda: tf.cast(tf.reduce_prod(tf.image.extract_jpeg_shape(image_bytes)[:2]), tf.int64)  # noqa: E731
    pixels = tf.case(
        [
            (starts_with(b"\x89PNG\r\n\x1a\n"), lambda: big(16, 4) * big(20, 4)),
            (starts_with(b"GIF8"), lambda: little(6, 2) * little(8, 2)),
            (is_bmp, lambda: signed32(little(18, 4)) * signed32(little(22, 4))),
            (starts_with(b"\xff\xd8"), jpeg_size),
            (is_webp, webp_pixels),
        ],
        default=lambda: tf.constant(0, tf.int64),
    )
    return [
        tf.debugging.Assert(
            tf.logical_not(tf.logical_and(is_bmp, little(28, 2) <= 8)),
            ["serving_image_bytes: an image is an 8-bit palette BMP, whose colours TensorFlow's decoder reads as "
             "grey; send it as PNG, JPEG or 24-bit BMP"],
        ),
        tf.debugging.Assert(
            pixels <= max_image_pixels,
            [f"serving_image_bytes: an image's header declares more than the {max_image_pixels} pixels this model "
             "was exported to decode (max_image_pixels); pixels declared:", pixels],
        ),
    ]


def build_export_archive(model, *, class_names=None, top_k=5, crop_pct=0.875, interpolation="bicubic", min_image_side=16,
                         max_image_pixels=DEFAULT_MAX_PIXELS):
    """A ``keras.export.ExportArchive`` with the three serving signatures of ``model`` (TensorFlow backend).

    Example:
        >>> build_export_archive(model, class_names=["cat", "dog"]).write_out("export/1")  # doctest: +SKIP
    """
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("build_export_archive runs under the TensorFlow backend; export_saved_model handles the others.")
    if "preprocessing" not in {layer.name for layer in model.layers}:
        raise ValueError("Export expects a model that takes 0..255 pixels: build it with include_preprocessing=True.")
    height, width, channels = model.input_shape[1:]
    if height is None or width is None or height != width or channels != 3:
        raise ValueError(f"Export needs a fixed square RGB input; the model takes {model.input_shape}. Rebuild it with input_shape=(S, S, 3).")
    kind, module, model_outputs = served_outputs(model)
    classes = model.output_shape[-1]
    if class_names is not None and kind != "classes":
        raise ValueError(f"class_names apply to classifiers; this model's signatures return its {kind.replace('_', ' ')}.")
    if class_names is not None and len(class_names) != classes:
        raise ValueError(f"class_names has {len(class_names)} names for a model of {classes} classes.")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}; got {interpolation!r}.")
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct must be in (0, 1]; got {crop_pct!r}.")
    k = min(top_k, classes)
    names = None if class_names is None else tf.constant(list(class_names))

    def outputs(pixels):
        # A request of another rank or size must fail here: TF Serving does not check shapes against the
        # signature, and oneDNN's convolution aborts the whole process on a rank-3 input. ensure_shape feeds the
        # model, so it runs (and raises) before any convolution.
        pixels = tf.ensure_shape(pixels, (None, height, width, 3))
        finite = tf.debugging.Assert(
            tf.reduce_all(tf.math.is_finite(tf.cast(pixels, "float32"))),
            ["serving: the images hold NaN or Inf pixels; expected finite values in 0..255"],
        )
        with tf.control_dependencies([finite]):
            pixels = tf.identity(pixels)
        if kind != "classes":
            return model_outputs(tf.cast(pixels, "float32"))
        probs = tf.cast(model_outputs(tf.cast(pixels, "float32")), "float32")
        scores, indices = tf.math.top_k(probs, k=k)
        result = {"probabilities": probs, "top_k_indices": indices, "top_k_scores": scores}
        if names is not None:
            result["top_k_class_names"] = tf.gather(names, indices)
        return result

    def from_bytes(image_bytes):
        decode = lambda one: decode_and_crop(  # noqa: E731
            one, image_size=height, crop_pct=crop_pct, interpolation=interpolation, min_image_side=min_image_side,
            max_image_pixels=max_image_pixels,
        )
        pixels = tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec((height, height, 3), "float32"))
        return outputs(pixels)

    archive = keras.export.ExportArchive()
    archive.track(module)
    image_spec = lambda dtype: [tf.TensorSpec((None, height, width, 3), dtype, name="images")]  # noqa: E731
    archive.add_endpoint("serving_default", outputs, input_signature=image_spec("float32"))
    archive.add_endpoint("serving_uint8", outputs, input_signature=image_spec("uint8"))
    archive.add_endpoint("serving_image_bytes", from_bytes, input_signature=[tf.TensorSpec((None,), "string", name="image_bytes")])
    return archive
