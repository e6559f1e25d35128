"""optimize_for_inference folds, and the backend fast paths against the portable keras.ops code."""

import os

import keras
import numpy as np
import pytest

import keras_convnext as kc
from helpers import BACKEND, TINY_ARCH, loss_and_gradients, perturb
from keras_convnext.layers.fast_paths import KINDS, fast_path, portable_only

INPUT = (32, 32, 3)


def _images(batch=3, seed=1):
    return np.random.default_rng(seed).uniform(0, 255, (batch, *INPUT)).astype("float32")


def _model(**overrides):
    arguments = {**TINY_ARCH, "input_shape": INPUT, "classes": 7, "classifier_activation": None, **overrides}
    return perturb(kc.ConvNeXt(**arguments))


@pytest.mark.parametrize(
    "overrides",
    [{}, {"use_grn": False}, {"layer_scale_init_value": None}, {"include_top": False, "pooling": "avg"},
     {"include_top": False}, {"dropout_rate": 0.3, "drop_path_rate": 0.2}],
    ids=["v1_and_grn", "v1", "v2", "features_avg", "feature_map", "dropout_and_drop_path"],
)
def test_optimized_model_matches_the_original(overrides):
    model = _model(**overrides)
    before = [keras.ops.convert_to_numpy(w) for w in model.weights]
    optimized = kc.optimize_for_inference(model)
    images = _images()
    np.testing.assert_allclose(optimized.predict_on_batch(images), model.predict_on_batch(images), atol=1e-5)
    for old, new in zip(before, model.weights):
        np.testing.assert_array_equal(old, keras.ops.convert_to_numpy(new))


def test_optimized_model_has_no_layer_scale_norm_affine_or_drop_path_in_its_blocks():
    model = _model(drop_path_rate=0.2)
    optimized = kc.optimize_for_inference(model)
    blocks = [layer for layer in optimized.layers if isinstance(layer, kc.ConvNeXtBlock)]
    assert blocks and all(b.layer_scale is None and not b.layernorm.weights and b.drop_path_rate == 0 for b in blocks)
    assert not optimized.get_layer("head_layernorm").weights
    # Each block loses its LayerScale (1 weight) and its norm's affine (2); the head norm its affine (2).
    assert len(model.weights) - len(optimized.weights) == 3 * len(blocks) + 2


def test_optimized_model_saves_and_reloads(tmp_path):
    optimized = kc.optimize_for_inference(_model())
    path = tmp_path / "optimized.keras"
    optimized.save(path)
    reloaded = keras.models.load_model(path)
    images = _images()
    np.testing.assert_allclose(reloaded.predict_on_batch(images), optimized.predict_on_batch(images), atol=1e-6)


def test_optimize_for_inference_refuses_what_it_cannot_fold():
    with pytest.raises(ValueError, match="functional keras.Model"):
        kc.optimize_for_inference(keras.layers.Dense(3))
    with pytest.raises(ValueError, match="got Sequential"):
        kc.optimize_for_inference(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
    inputs = keras.Input((4,))
    plain = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    with pytest.raises(ValueError, match="no ConvNeXtBlock"):
        kc.optimize_for_inference(plain)


def test_fast_paths_match_the_portable_path_in_inference():
    model = _model()
    images = _images()
    fast = model.predict_on_batch(images)
    with portable_only():
        assert {fast_path(kind) for kind in KINDS} == {"portable"}
        portable = kc.ConvNeXt(**TINY_ARCH, input_shape=INPUT, classes=7, classifier_activation=None)
        portable.set_weights(model.get_weights())
        expected = portable.predict_on_batch(images)
    np.testing.assert_allclose(fast, expected, atol=1e-5)


def test_fast_paths_match_the_portable_path_in_training_gradients():
    model = _model()
    images = _images(batch=2)
    squared = lambda y: keras.ops.mean(keras.ops.square(y))  # noqa: E731
    fast_loss, fast_gradients = loss_and_gradients(model, images, squared)
    with portable_only():
        loss, gradients = loss_and_gradients(model, images, squared)
    assert fast_loss == pytest.approx(loss, rel=1e-5)
    for fast, portable in zip(fast_gradients, gradients):
        np.testing.assert_allclose(fast, portable, rtol=1e-4, atol=1e-6)


def test_fast_path_names_per_backend():
    expected = {
        "torch": {"depthwise": "torch_conv2d", "layer_norm": "torch_layer_norm", "dense": "torch_linear",
                  "fused_mlp": "torch_onednn", "gelu": "backend_gelu"},
        # TensorFlow keeps the erf formula: its own exact GELU uses Erfc, which ONNX lacks.
        "tensorflow": dict.fromkeys(KINDS, "portable"),
        # On a CPU; on an accelerator JAX keeps autodiff's gradients and the portable depthwise conv.
        "jax": {"depthwise": "shift_and_add", "layer_norm": "jax_cpu_gradient", "dense": "jax_cpu_gradient",
                "fused_mlp": "portable", "gelu": "jax_cpu_gradient"},
    }[BACKEND]
    assert {kind: fast_path(kind) for kind in KINDS} == expected
    with pytest.raises(ValueError, match="Unknown fast-path kind"):
        fast_path("softmax")


@pytest.mark.skipif(BACKEND != "jax", reason="the accelerator's choice is JAX's; torch and TensorFlow choose the "
                    "same paths on any device")
def test_jax_on_an_accelerator_takes_the_erf_gelu_and_autodiff_everywhere(monkeypatch):
    import jax

    from keras_convnext.layers import fast_paths

    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    # jax.nn.gelu's erfc form ran ConvNeXt-T at 0.71x timm torch.compile on an H200, the erf form at 0.98x.
    assert fast_paths._choose_for_this_process() == dict.fromkeys(KINDS, "portable")


@pytest.mark.skipif(BACKEND != "torch", reason="the oneDNN fused block is a torch-backend kernel")
def test_torch_predict_runs_the_fused_onednn_block_and_training_does_not(monkeypatch):
    from keras_convnext.layers import torch_onednn_block

    calls = []
    original = torch_onednn_block.fused_block_call
    monkeypatch.setattr(torch_onednn_block, "fused_block_call", lambda *a: calls.append(1) or original(*a))
    model = _model()
    model.predict_on_batch(_images())
    blocks = sum(isinstance(layer, kc.ConvNeXtBlock) for layer in model.layers)
    assert len(calls) == blocks
    loss_and_gradients(model, _images(), lambda y: keras.ops.mean(y))
    assert len(calls) == blocks, "the fused kernels have no gradient and must not run under autograd"


@pytest.mark.parametrize(
    "environment, expected",
    [({}, "--xla_cpu_experimental_ynn_fusion_type="),
     ({"KERAS_CONVNEXT_KEEP_XLA_FLAGS": "1"}, ""),
     ({"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=dot"}, "--xla_cpu_experimental_ynn_fusion_type=dot")],
    ids=["added", "opted_out", "user_setting_kept"],
)
def test_ynn_fusion_is_turned_off_only_under_jax_before_it_starts(monkeypatch, environment, expected):
    from keras_convnext.process_setup import disable_ynn_fusion_on_jax_cpu

    for name in ("XLA_FLAGS", "KERAS_CONVNEXT_KEEP_XLA_FLAGS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    if BACKEND == "jax":
        from jax._src import xla_bridge

        monkeypatch.setattr(xla_bridge, "_backends", {})  # as before JAX starts its CPU client
    changed = disable_ynn_fusion_on_jax_cpu()
    if BACKEND != "jax":
        expected = environment.get("XLA_FLAGS", "")
    assert os.environ.get("XLA_FLAGS", "") == expected
    assert changed == (expected != environment.get("XLA_FLAGS", ""))


def test_ynn_fusion_is_left_alone_once_jax_has_started(monkeypatch):
    from keras_convnext.process_setup import disable_ynn_fusion_on_jax_cpu

    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv("KERAS_CONVNEXT_KEEP_XLA_FLAGS", raising=False)
    keras.ops.convert_to_numpy(keras.ops.ones(1))  # the backend has started
    assert disable_ynn_fusion_on_jax_cpu() is False and "XLA_FLAGS" not in os.environ


@pytest.mark.once
def test_importing_the_package_under_jax_turns_ynn_fusion_off_in_a_fresh_process():
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items() if key not in ("XLA_FLAGS", "KERAS_CONVNEXT_KEEP_XLA_FLAGS")}
    script = "import os, keras_convnext; print(os.environ.get('XLA_FLAGS', ''))"
    result = subprocess.run([sys.executable, "-c", script], env={**env, "KERAS_BACKEND": "jax"}, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "--xla_cpu_experimental_ynn_fusion_type="


@pytest.mark.fast_tier_backend("tensorflow")
def test_keras_int8_quantization_keeps_the_answers_and_compiles_unfolded(recwarn):
    # model.quantize("int8") quantizes the pointwise and head Dense layers; the fast paths step aside for them, and
    # compile_for_inference runs such a model as it is (folding needs float kernels: refused with a clear error).
    model = _model()
    images = _images(batch=8)
    expected = model.predict_on_batch(images)
    folded_first = kc.optimize_for_inference(model)  # the order that folds: fold, then quantize
    model.quantize("int8")
    assert model.get_layer("stage_0_block_0").pointwise_1.quantization_mode == "int8"
    quantized = keras.ops.convert_to_numpy(model.predict_on_batch(images))
    # A random model's logits are close together, so a near tie may flip; most answers must not.
    assert np.mean(quantized.argmax(1) == expected.argmax(1)) >= 0.75
    assert 0 < np.abs(quantized - expected).max() < 0.05 * np.abs(expected).max()
    with pytest.raises(ValueError, match="optimize_for_inference folds float weights; .* are quantized or carry LoRA"):
        kc.optimize_for_inference(model)
    if BACKEND != "torch":  # torch.compile takes minutes on 2 cores; the fold-or-not choice is made before it
        compiled = keras.ops.convert_to_numpy(kc.compile_for_inference(model)(images))
        np.testing.assert_allclose(compiled, quantized, atol=1e-5 * np.abs(quantized).max())
    folded_first.quantize("int8")
    folded_quantized = keras.ops.convert_to_numpy(folded_first.predict_on_batch(images))
    assert np.mean(folded_quantized.argmax(1) == expected.argmax(1)) >= 0.75
