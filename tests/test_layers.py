"""Each layer against the NumPy reference, on the active backend."""

import keras
import numpy as np
import pytest

import keras_convnext as kc
from helpers import numpy_reference as ref
from helpers import loss_and_gradients, perturb

ATOL = 1e-5


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_layer_norm_matches_numpy(rng, data_format):
    x = rng.normal(3.0, 2.0, (2, 5, 6, 16)).astype("float32")
    layer = kc.LayerNorm(epsilon=1e-6, data_format=data_format)
    fed = x if data_format == "channels_last" else x.transpose(0, 3, 1, 2)
    layer.build(fed.shape)
    gamma, beta = rng.normal(1, 0.5, 16), rng.normal(0, 0.5, 16)
    layer.set_weights([gamma.astype("float32"), beta.astype("float32")])
    out = _np(layer(fed))
    if data_format == "channels_first":
        out = out.transpose(0, 2, 3, 1)
    np.testing.assert_allclose(out, ref.layer_norm(x.astype("float64"), gamma, beta, 1e-6), atol=ATOL)


def test_layer_norm_default_epsilon_is_convnext_not_keras():
    assert kc.LayerNorm().epsilon == 1e-6


def test_layer_norm_computes_in_float32_under_mixed_precision(rng):
    layer = kc.LayerNorm(dtype="mixed_float16")
    # Channel statistics that float16 arithmetic cannot resolve: a large offset, a tiny spread.
    x = (1000.0 + rng.normal(0, 1.0, (2, 3, 3, 64))).astype("float16")
    out = layer(x)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    assert layer.gamma.dtype == "float32"
    expected = ref.layer_norm(x.astype("float64"), 1.0, 0.0, 1e-6)
    np.testing.assert_allclose(_np(out).astype("float64"), expected, atol=1e-2)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_layer_scale_multiplies_channels(rng, data_format):
    x = rng.normal(size=(2, 4, 4, 8)).astype("float32")
    fed = x if data_format == "channels_last" else x.transpose(0, 3, 1, 2)
    layer = kc.LayerScale(init_value=0.25, data_format=data_format)
    np.testing.assert_allclose(_np(layer(fed)), fed * 0.25, atol=1e-7)
    gamma = rng.normal(size=8).astype("float32")
    layer.set_weights([gamma])
    out = _np(layer(fed))
    if data_format == "channels_first":
        out = out.transpose(0, 2, 3, 1)
    np.testing.assert_allclose(out, x * gamma, atol=1e-6)


def test_stochastic_depth_is_identity_at_inference_and_at_rate_zero(rng):
    x = rng.normal(size=(16, 3, 3, 4)).astype("float32")
    np.testing.assert_array_equal(_np(kc.StochasticDepth(0.5)(x, training=False)), x)
    np.testing.assert_array_equal(_np(kc.StochasticDepth(0.0)(x, training=True)), x)


def test_stochastic_depth_drops_whole_samples_at_the_rate(rng):
    rate, batch = 0.3, 4000
    x = rng.uniform(1.0, 2.0, size=(batch, 2, 2, 3)).astype("float32")
    out = _np(kc.StochasticDepth(rate, seed=7)(x, training=True))
    dropped = np.all(out == 0.0, axis=(1, 2, 3))
    kept = ~dropped
    # Every sample is either dropped whole or kept whole and rescaled by 1 / (1 - rate).
    np.testing.assert_allclose(out[kept], x[kept] / (1 - rate), rtol=1e-6)
    keep_rate = kept.mean()
    sigma = np.sqrt(rate * (1 - rate) / batch)
    assert abs(keep_rate - (1 - rate)) < 4 * sigma, keep_rate


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_stochastic_depth_rejects_bad_rates(rate):
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
        kc.StochasticDepth(rate)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_grn_matches_numpy(rng, data_format):
    x = rng.normal(size=(2, 5, 4, 12)).astype("float32")
    fed = x if data_format == "channels_last" else x.transpose(0, 3, 1, 2)
    layer = kc.GlobalResponseNorm(data_format=data_format)
    np.testing.assert_allclose(_np(layer(fed)), fed, atol=1e-7)  # zero-initialised: the identity
    gamma, beta = rng.normal(size=12), rng.normal(size=12)
    layer.set_weights([gamma.astype("float32"), beta.astype("float32")])
    out = _np(layer(fed))
    if data_format == "channels_first":
        out = out.transpose(0, 2, 3, 1)
    np.testing.assert_allclose(out, ref.grn(x.astype("float64"), gamma, beta), atol=ATOL)


def test_grn_gradients_stay_finite_when_a_channel_is_all_zeros(rng):
    # sqrt'(0) is infinite; an all-zero channel (a bfloat16 underflow, a 1x1 map after GELU) once made the
    # gradients of every layer before GRN NaN in training.
    dense, grn = keras.layers.Dense(6), kc.GlobalResponseNorm()
    model = keras.Sequential([keras.Input((1, 1, 4)), dense, grn])
    kernel = rng.normal(size=(4, 6)).astype("float32")
    kernel[:, 2] = 0.0  # channel 2 is zero for every input
    dense.set_weights([kernel, np.zeros(6, "float32")])
    grn.set_weights([rng.normal(size=6).astype("float32"), rng.normal(size=6).astype("float32")])
    x = rng.normal(size=(2, 1, 1, 4)).astype("float32")
    loss, grads = loss_and_gradients(model, x, lambda y: keras.ops.sum(keras.ops.square(y)))
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads), grads
    hidden = x @ kernel
    expected = ref.grn(hidden.astype("float64"), *[w.astype("float64") for w in grn.get_weights()])
    np.testing.assert_allclose(_np(model(x)), expected, atol=ATOL)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_shift_and_add_fast_path_matches_the_portable_depthwise_conv(rng, data_format):
    from keras_convnext.layers.depthwise_conv import shift_and_add_depthwise

    x = rng.normal(size=(2, 9, 8, 6)).astype("float32")
    fed = x if data_format == "channels_last" else x.transpose(0, 3, 1, 2)
    kernel = rng.normal(size=(7, 7, 6, 1)).astype("float32")
    fast = _np(shift_and_add_depthwise(keras.ops.convert_to_tensor(fed), keras.ops.convert_to_tensor(kernel), data_format))
    portable = _np(keras.ops.depthwise_conv(fed, kernel, strides=1, padding="same", data_format=data_format))
    np.testing.assert_allclose(fast, portable, atol=1e-5)


def test_depthwise_conv_fast_path_per_backend():
    from keras_convnext.layers.fast_paths import fast_path

    if keras.backend.backend() == "jax":
        import jax

        assert fast_path("depthwise") == ("shift_and_add" if jax.default_backend() == "cpu" else "portable")
    else:
        assert fast_path("depthwise") == {"torch": "torch_conv2d"}.get(keras.backend.backend(), "portable")


def _backend_paths():
    from keras_convnext.layers.fast_paths import BACKEND_PATHS

    return [(kind, path) for kind, paths in BACKEND_PATHS.get(keras.backend.backend(), {}).items() for path in paths]


def _outputs_and_gradients(model, x, paths):
    from keras_convnext.layers.fast_paths import use_fast_paths

    cube = lambda y: keras.ops.sum(y * y * y)  # noqa: E731  (a gradient that depends on the outputs)
    with use_fast_paths(**paths):
        return _np(model(x)), loss_and_gradients(model, x, cube)


@pytest.mark.parametrize("kind, path", _backend_paths(), ids=lambda value: str(value))
def test_every_fast_path_of_the_backend_gives_the_portable_outputs_and_gradients(rng, kind, path):
    # A V1 block with LayerScale runs every kind (depthwise conv, LayerNorm, both pointwise layers, GELU); the
    # depthwise conv alone adds channels-first, and a kernel and image size that are not the block's.
    if kind == "fused_mlp":
        pytest.skip("the oneDNN fused block has no gradient: it runs in no-grad inference only (test_inference)")
    block = kc.ConvNeXtBlock(layer_scale_init_value=0.5, name="b")
    cases = [(keras.Sequential([keras.Input((9, 8, 6)), block]), rng.normal(size=(2, 9, 8, 6)))]
    perturb(block, scale=0.3)
    if kind == "dense":  # the stem's and the downsamplings' convs, whose stride is their kernel, are products too
        stem_and_downsample = keras.Sequential([keras.Input((18, 17, 3)), kc.ConvNeXtStem(8, name="stem"),
                                                kc.ConvNeXtDownsample(12, name="down")])
        cases.append((perturb(stem_and_downsample, scale=0.3), rng.normal(size=(2, 18, 17, 3))))
    if kind == "depthwise":
        for data_format, shape in (("channels_last", (2, 9, 8, 6)), ("channels_first", (2, 6, 9, 8))):
            layer = kc.DepthwiseConv(5, data_format=data_format)
            cases.append((keras.Sequential([keras.Input(shape[1:]), layer]), rng.normal(size=shape)))
            layer.set_weights([rng.normal(size=(5, 5, 6, 1)).astype("float32"), rng.normal(size=6).astype("float32")])
    for model, x in cases:
        x = x.astype("float32")
        fast_outputs, (fast_loss, fast_gradients) = _outputs_and_gradients(model, x, {kind: path})
        outputs, (loss, gradients) = _outputs_and_gradients(model, x, {kind: "portable"})
        np.testing.assert_allclose(fast_outputs, outputs, atol=1e-4)
        assert fast_loss == pytest.approx(loss, rel=1e-5)
        for fast, portable in zip(fast_gradients, gradients):
            np.testing.assert_allclose(fast, portable, rtol=1e-4, atol=1e-3 * np.abs(portable).max())


def test_fast_path_overrides_are_checked_against_the_backend(monkeypatch):
    from keras_convnext.layers import fast_paths

    backend = keras.backend.backend()
    assert fast_paths.parse_overrides(" portable ") == dict.fromkeys(fast_paths.KINDS, "portable")
    with pytest.raises(ValueError, match="KERAS_CONVNEXT_FAST_PATHS='depthwise' is not understood"):
        fast_paths.parse_overrides("depthwise")
    foreign = "torch_conv2d" if backend != "torch" else "shift_and_add"
    with pytest.raises(ValueError, match=f"'{foreign}' is not a depthwise path on the {backend} backend; expected one of portable"):
        fast_paths.parse_overrides(f"depthwise={foreign}")
    with pytest.raises(ValueError, match="Unknown fast-path kind 'softmax'"):
        fast_paths.use_fast_paths(softmax="portable").__enter__()
    # The process-wide choice reads the variable (it is made once; here it is recomputed without being stored).
    monkeypatch.setenv(fast_paths.OVERRIDE_VARIABLE, "gelu=portable")
    assert fast_paths._choose_for_this_process()["gelu"] == "portable"
    monkeypatch.setenv(fast_paths.OVERRIDE_VARIABLE, "gelu=erf")
    with pytest.raises(ValueError, match="'erf' is not a gelu path"):
        fast_paths._choose_for_this_process()


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_depthwise_conv_matches_numpy(rng, data_format):
    x = rng.normal(size=(2, 9, 8, 6)).astype("float32")
    fed = x if data_format == "channels_last" else x.transpose(0, 3, 1, 2)
    layer = kc.DepthwiseConv(7, data_format=data_format)
    layer.build(fed.shape)
    kernel, bias = rng.normal(size=(7, 7, 6, 1)), rng.normal(size=6)
    layer.set_weights([kernel.astype("float32"), bias.astype("float32")])
    out = _np(layer(fed))
    if data_format == "channels_first":
        out = out.transpose(0, 2, 3, 1)
    np.testing.assert_allclose(out, ref.depthwise_conv(x.astype("float64"), kernel, bias), atol=1e-4)


@pytest.mark.parametrize("kernel_size", [0, 4, "7"])
def test_depthwise_conv_rejects_even_or_non_integer_kernels(kernel_size):
    with pytest.raises(ValueError, match="positive odd integer"):
        kc.DepthwiseConv(kernel_size)


@pytest.mark.parametrize(
    "options",
    [
        {"use_grn": False, "layer_scale_init_value": 1e-6},  # V1
        {"use_grn": True, "layer_scale_init_value": None},  # V2
        {"use_grn": True, "layer_scale_init_value": 0.5, "kernel_size": 3, "mlp_ratio": 2},
    ],
    ids=["v1", "v2", "custom"],
)
def test_block_matches_numpy_forward(rng, options):
    x = rng.normal(size=(2, 7, 6, 16)).astype("float32")
    layer = kc.ConvNeXtBlock(name="stage_0_block_0", **options)
    layer.build(x.shape)
    perturb(layer, scale=0.3)
    np.testing.assert_allclose(_np(layer(x)), ref.block(x.astype("float64"), layer), atol=1e-4)
    assert (layer.grn is not None) == options["use_grn"]
    assert (layer.layer_scale is not None) == (options["layer_scale_init_value"] is not None)


def test_block_channels_first_equals_channels_last_with_the_same_weights(rng):
    x = rng.normal(size=(2, 6, 6, 8)).astype("float32")
    last = kc.ConvNeXtBlock(use_grn=True, name="b", data_format="channels_last")
    first = kc.ConvNeXtBlock(use_grn=True, name="b", data_format="channels_first")
    last.build(x.shape)
    first.build((2, 8, 6, 6))
    perturb(last, scale=0.3)
    first.set_weights(last.get_weights())
    out_first = _np(first(x.transpose(0, 3, 1, 2))).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(out_first, _np(last(x)), atol=1e-5)


def test_block_sublayers_are_named_from_the_block():
    layer = kc.ConvNeXtBlock(use_grn=True, name="stage_2_block_5")
    layer.build((1, 8, 8, 16))
    paths = sorted(v.path for v in layer.weights)
    assert "stage_2_block_5/stage_2_block_5_pointwise_1/kernel" in paths
    assert "stage_2_block_5/stage_2_block_5_grn/gamma" in paths
    assert "stage_2_block_5/stage_2_block_5_depthwise_conv/kernel" in paths


def test_block_drop_path_is_active_only_in_training(rng):
    x = rng.normal(size=(64, 4, 4, 8)).astype("float32")
    layer = kc.ConvNeXtBlock(drop_path_rate=0.5, layer_scale_init_value=1.0, name="b")
    layer.build(x.shape)
    perturb(layer, scale=0.3)
    inference = _np(layer(x, training=False))
    training = _np(layer(x, training=True))
    residual_dropped = np.all(np.isclose(training, x, atol=1e-6), axis=(1, 2, 3))
    assert 5 < residual_dropped.sum() < 59  # some, not all, samples lose their branch
    assert not np.any(np.all(np.isclose(inference, x, atol=1e-6), axis=(1, 2, 3)))


@pytest.mark.parametrize(
    "make",
    [
        lambda: kc.ConvNeXtStem(16, name="stem"),
        lambda: kc.ConvNeXtStem(16, patch_size=16, use_norm=False, name="stem"),
        lambda: kc.ConvNeXtDownsample(24, name="stage_1_downsample"),
    ],
    ids=["stem", "isotropic-stem", "downsample"],
)
def test_stem_and_downsample_match_numpy(rng, make):
    layer = make()
    channels = 3 if isinstance(layer, kc.ConvNeXtStem) else 16
    x = rng.normal(size=(2, 34, 35, channels)).astype("float32")
    layer.build(x.shape)
    perturb(layer, scale=0.3)
    conv_k, conv_b = ref.to_numpy(layer.conv.kernel), ref.to_numpy(layer.conv.bias)
    expected = x.astype("float64")
    if isinstance(layer, kc.ConvNeXtDownsample):
        expected = ref.layer_norm(expected, ref.to_numpy(layer.layernorm.gamma), ref.to_numpy(layer.layernorm.beta), 1e-6)
    expected = ref.patch_conv(expected, conv_k, conv_b)
    if isinstance(layer, kc.ConvNeXtStem) and layer.layernorm is not None:
        expected = ref.layer_norm(expected, ref.to_numpy(layer.layernorm.gamma), ref.to_numpy(layer.layernorm.beta), 1e-6)
    np.testing.assert_allclose(_np(layer(x)), expected, atol=1e-4)


@pytest.mark.parametrize(
    "layer",
    [
        kc.LayerNorm(epsilon=1e-5, data_format="channels_first"),
        kc.LayerScale(init_value=0.1),
        kc.StochasticDepth(0.2, seed=3),
        kc.GlobalResponseNorm(epsilon=1e-5),
        kc.DepthwiseConv(5),
        kc.ConvNeXtBlock(kernel_size=5, mlp_ratio=3, layer_scale_init_value=None, drop_path_rate=0.1, use_grn=True),
        kc.ConvNeXtStem(32, patch_size=16, use_norm=False),
        kc.ConvNeXtDownsample(64, norm_epsilon=1e-5),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_get_config_round_trips_through_keras_serialization(layer):
    config = keras.saving.serialize_keras_object(layer)
    assert config["module"] is None or "keras_convnext" in config.get("registered_name", "")
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is type(layer)
    assert clone.get_config() == layer.get_config()
