"""The private internals the package leans on where no public API does the job, one test each.

Each fails naming the internal, the package part that uses it and the installed version, so that an upgrade that
moves one breaks here, loudly, instead of quietly turning a fix or a fast path off. The versions tested are listed in
the README ("Tested versions").
"""

import warnings

import keras
import numpy as np
import pytest

import keras_convnext as kc
from helpers import BACKEND


def _moved(internal, user, library, version):
    return (f"{library} {version}: {internal} is gone or no longer used by {library}; {user} relies on it. "
            "Find its replacement (or a public API) and update that code.")


@pytest.mark.once
def test_keras_randaugment_keeps_its_equalization_layer_and_calls_its_histogram_method(monkeypatch):
    from keras_convnext.training.augment import BincountEqualization

    layer = keras.layers.RandAugment(value_range=(0, 255))
    assert type(getattr(layer, "equalization", None)) is keras.layers.Equalization, _moved(
        "keras.layers.RandAugment().equalization", "training.augment.image_augmentation", "keras", keras.__version__)
    calls = []
    original = BincountEqualization._custom_histogram_fixed_width

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(BincountEqualization, "_custom_histogram_fixed_width", counted)
    BincountEqualization(value_range=(0, 255))(np.random.default_rng(0).uniform(0, 255, (1, 8, 8, 3)).astype("float32"))
    assert calls, _moved("keras.layers.Equalization._custom_histogram_fixed_width",
                         "training.augment.BincountEqualization", "keras", keras.__version__)


def test_keras_names_each_layer_load_weights_skipped_in_the_warning_the_loader_reads(tmp_path):
    from keras_convnext.weights.loading import KERAS_SKIPPED_WARNING

    kc.weights.save_weights(kc.ConvNeXt((1, 1), (8, 16), input_shape=(32, 32, 3), classes=2), tmp_path / "two.weights.h5")
    model = kc.ConvNeXt((1, 1), (8, 16), input_shape=(32, 32, 3), classes=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_weights(tmp_path / "two.weights.h5", skip_mismatch=True)
    skipped = [str(w.message) for w in caught if KERAS_SKIPPED_WARNING in str(w.message)]
    assert len(skipped) == 1 and "A total of 1 objects" in skipped[0] and "head_dense" in skipped[0], _moved(
        f"the wording of load_weights(skip_mismatch=True)'s warning ({KERAS_SKIPPED_WARNING!r}, 'A total of 1 objects')",
        "weights.loading._load_keras_weights (fine-tuning to other classes)", "keras", keras.__version__)


@pytest.mark.skipif(BACKEND != "jax", reason="the JAX trainer's variable values: TensorFlow and PyTorch take none out")
def test_a_keras_variable_keeps_its_value_in_the_attribute_the_jax_guard_reads():
    variable = keras.Variable(np.ones(2, "float32"))
    assert getattr(variable, "_value", None) is not None, _moved(
        "keras.Variable._value", "applications.convnext_model.weights_kept_on_error", "keras", keras.__version__)


@pytest.mark.once
def test_jax_still_records_whether_its_backends_started_where_process_setup_looks():
    import jax
    from jax._src import xla_bridge

    jax.devices()  # started now, if not before
    assert getattr(xla_bridge, "_backends", None), _moved(
        "jax._src.xla_bridge._backends", "process_setup.disable_ynn_fusion_on_jax_cpu", "jax", jax.__version__)


@pytest.mark.skipif(BACKEND != "torch", reason="the torch fast path's oneDNN kernels; TensorFlow and JAX use none")
def test_torch_still_has_the_onednn_linear_kernels_of_the_fused_block():
    import torch

    if not torch.backends.mkldnn.is_available():
        pytest.skip("this torch build has no oneDNN: the fused block steps aside, as it should")
    linear = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    assert linear is not None and hasattr(linear, "binary"), _moved(
        "torch.ops.mkldnn._linear_pointwise(.binary)", "layers.torch_onednn_block", "torch", torch.__version__)


@pytest.mark.once
def test_keras_optimizers_still_index_their_variables_the_way_layerwise_adamw_reads():
    from keras_convnext.training import LayerwiseAdamW

    variables = [keras.Variable(np.ones(2, "float32"), name="a"), keras.Variable(np.ones(3, "float32"), name="b")]
    optimizer = LayerwiseAdamW(1e-3)
    optimizer.build(variables)
    index = getattr(optimizer, "_get_variable_index", None)
    assert index is not None and [index(v) for v in variables] == [0, 1], _moved(
        "keras.optimizers.Optimizer._get_variable_index (what Keras' own optimizers call in update_step)",
        "training.optimizer.LayerwiseAdamW (per-variable learning-rate multipliers)", "keras", keras.__version__)
