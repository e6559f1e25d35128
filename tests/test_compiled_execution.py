"""Compiled execution: ``jit_compile=True`` trains, evaluates and predicts on every backend; ``torch.compile``
traces this package's layers with no graph break and recompiles only for a new batch size; ``compile_for_inference``
equals the eager model."""

import contextlib
import functools

import keras
import numpy as np
import pytest

import keras_convnext as kc
from helpers import BACKEND, TINY_ARCH, perturb

torch_only = pytest.mark.skipif(
    BACKEND != "torch",
    reason="graph breaks and recompiles are torch.compile's notions; TensorFlow (XLA) and JAX (jax.jit) compile the "
    "whole step or raise",
)


@contextlib.contextmanager
def dtype_policy(name):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def tiny_model(data_format="channels_last", policy="float32", **kwargs):
    shape = (32, 32, 3) if data_format == "channels_last" else (3, 32, 32)
    with dtype_policy(policy):
        model = kc.ConvNeXt(**{**TINY_ARCH, "input_shape": shape, "classes": 5, "data_format": data_format, **kwargs})
    return perturb(model)


def images_for(model, count, seed=0):
    shape = (count,) + tuple(model.input_shape[1:])
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


# (V1 or V2, data format, dtype policy, training); the first two run in the fast tier, the others in the large one.
TRACE_CASES = [
    pytest.param("V2", "channels_last", "float32", True, id="v2-channels_last-float32-training"),
    pytest.param("V1", "channels_first", "mixed_bfloat16", False, id="v1-channels_first-bf16-inference"),
    pytest.param("V1", "channels_last", "mixed_bfloat16", True, id="v1-channels_last-bf16-training",
                 marks=pytest.mark.large),
    pytest.param("V2", "channels_first", "float32", False, id="v2-channels_first-float32-inference",
                 marks=pytest.mark.large),
]


@torch_only
@pytest.mark.parametrize("family, data_format, policy, training", TRACE_CASES)
def test_torch_compile_traces_the_model_in_one_graph(family, data_format, policy, training):
    import torch

    architecture = {"use_grn": True, "layer_scale_init_value": None} if family == "V2" else {"use_grn": False}
    # drop_path_rate > 0: the random mask is drawn inside the trace too.
    model = tiny_model(data_format, policy, drop_path_rate=0.2, **architecture)
    images = torch.as_tensor(images_for(model, 2))
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(lambda x: model(x, training=training))(images)
    reasons = [str(reason.reason).splitlines()[0] for reason in explanation.break_reasons]
    assert explanation.graph_break_count == 0, reasons
    assert explanation.graph_count == 1


@torch_only
@pytest.mark.large
def test_torch_fit_with_jit_compile_recompiles_only_for_a_new_batch_size(monkeypatch):
    import torch
    from torch._dynamo.utils import counters

    # aot_eager runs dynamo and AOT autograd as inductor would, without generating C++ kernels (minutes on 2
    # cores); graph breaks and recompiles are decided before the backend sees the graph.
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    torch._dynamo.reset()
    counters.clear()
    model = tiny_model(drop_path_rate=0.1)
    model.compile(optimizer="adamw", loss="sparse_categorical_crossentropy", jit_compile=True)
    images = images_for(model, 20)
    labels = np.arange(20) % 5
    graphs_after_step = []

    class CountGraphs(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            graphs_after_step.append(counters["stats"]["unique_graphs"])

    history = model.fit(images, labels, epochs=3, batch_size=8, verbose=0, callbacks=[CountGraphs()])
    # Steps of each epoch: 8, 8, then the last 4 images. Keras' own trainer recompiles its step once at step 2
    # (gradients exist from then on); the batch of 4 costs one more compile of the same graphs; then nothing.
    first_compile = graphs_after_step[0]
    assert graphs_after_step[2] - graphs_after_step[1] <= first_compile, graphs_after_step
    assert graphs_after_step[2:] == [graphs_after_step[2]] * 7, graphs_after_step
    # The only graph breaks are Keras' trainer's loss.backward() between the forward and the optimizer graphs.
    breaks = [reason for reason in counters["graph_break"] if "backward" not in reason]
    assert breaks == []
    assert np.all(np.isfinite(history.history["loss"]))
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=True)
    compiled_probabilities = model.predict(images, batch_size=8, verbose=0)
    with torch.no_grad():
        eager = keras.ops.convert_to_numpy(model(images, training=False))
    np.testing.assert_allclose(compiled_probabilities, eager, atol=1e-5)
    loss, _ = model.evaluate(images, labels, batch_size=8, verbose=0)
    assert np.isfinite(loss)


@pytest.mark.skipif(BACKEND == "torch", reason="the torch fit with jit_compile=True is the large-tier test above "
                    "(two minutes of dynamo tracing on a 2-core CPU)")
@pytest.mark.parametrize("policy", [
    # On JAX jit_compile=True is Keras' default, which every other fit test of the fast tier already runs.
    pytest.param("float32", marks=[pytest.mark.large] if BACKEND == "jax" else []),
    pytest.param("mixed_bfloat16", marks=pytest.mark.large),
])
def test_fit_evaluate_predict_with_jit_compile(policy):
    model = tiny_model(policy=policy, drop_path_rate=0.1)
    model.compile(optimizer="adamw", loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=True)
    images = images_for(model, 12)
    labels = np.arange(12) % 5
    history = model.fit(images, labels, epochs=2, batch_size=8, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    loss, accuracy = model.evaluate(images, labels, batch_size=8, verbose=0)
    assert np.isfinite(loss) and 0.0 <= accuracy <= 1.0
    probabilities = model.predict(images, batch_size=8, verbose=0)
    eager = keras.ops.convert_to_numpy(model(images, training=False)).astype("float32")
    np.testing.assert_allclose(probabilities, eager, atol=1e-5 if policy == "float32" else 2e-2)


@pytest.mark.parametrize("data_format", ["channels_last", pytest.param("channels_first", marks=pytest.mark.large)])
def test_compile_for_inference_equals_the_eager_model(data_format):
    model = tiny_model(data_format)
    images = images_for(model, 3)
    # On TensorFlow, XLA is forced: it is off by default on CPU, where it is slower than TensorFlow's own graph.
    predict = kc.compile_for_inference(model, tensorflow_xla=True)
    compiled = keras.ops.convert_to_numpy(predict(images))
    np.testing.assert_allclose(compiled, model.predict(images, verbose=0), atol=1e-5)
    # The same shape again runs the compiled program; a new batch size compiles once more and still agrees.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(predict(images)), compiled, atol=0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(predict(images[:1])), compiled[:1], atol=1e-5)


def test_unfolded_compiled_inference_follows_the_model_through_predict_and_training():
    # Keras' JAX trainer donates the weights' arrays to its jitted steps: a compiled forward that kept them failed
    # after the model's first predict ("Buffer has been deleted or donated").
    model = tiny_model()
    images = images_for(model, 2)
    predict = kc.compile_for_inference(model, fold_weights=False, tensorflow_xla=True)
    before = keras.ops.convert_to_numpy(predict(images))
    model.predict(images, verbose=0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(predict(images)), before, atol=0)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    model.fit(images, np.array([0, 1]), epochs=1, verbose=0)
    after = keras.ops.convert_to_numpy(predict(images))
    assert np.abs(after - before).max() > 1e-4, "training changed the weights; the compiled forward must see it"
    np.testing.assert_allclose(after, model.predict(images, verbose=0), atol=1e-5)


def test_compile_for_inference_refuses_what_is_not_a_model():
    with pytest.raises(TypeError, match="needs a keras.Model; got Dense"):
        kc.compile_for_inference(keras.layers.Dense(3))
