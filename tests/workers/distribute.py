"""One training run, single-device or data parallel, in its own process (devices are fixed at backend start).

Usage: python -m workers.distribute single|parallel|multi_host|model_parallel|uneven INITIAL.weights.h5 OUT_DIR
JAX gets 4 CPU devices from XLA_FLAGS (set by the test); TensorFlow splits its CPU into 2 logical devices here.
multi_host (JAX): one of several processes that KERAS_DISTRIBUTION_* variables join into one job.
"""

import json
import os
import sys
from pathlib import Path

if os.environ.get("KERAS_BACKEND") == "tensorflow":
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_convnext as kc  # noqa: E402
from helpers import TINY_ARCH as ARCH  # noqa: E402


def data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (32, 32, 32, 3)).astype("float32"), rng.integers(0, 4, 32)


def uneven_validation(initial, out_dir):
    """Validation metrics of 13 images (a prime) in batches of 4: Keras on one device vs ``validation_metrics``
    on all devices, with the same weights."""
    import tensorflow as tf

    from keras_convnext.training.recipe import recipe_loss
    from keras_convnext.training.sharded_validation import validation_metrics

    x, y = data(seed=1)
    dataset = tf.data.Dataset.from_tensor_slices((x[:13], np.eye(4, dtype="float32")[y[:13]])).batch(4)
    loss = recipe_loss(0.1)

    def build():
        model = kc.ConvNeXt(**ARCH, input_shape=(32, 32, 3), classes=4)
        model.load_weights(initial)
        model.compile(loss=loss, metrics=["accuracy", keras.metrics.TopKCategoricalAccuracy(2, name="top2")])
        return model

    single = build().evaluate(dataset, return_dict=True, verbose=0)
    setup = kc.distribute.data_parallel("all")
    with setup.scope():
        model = build()
    parallel = validation_metrics(model, dataset, loss, top_k=2, batch_size=4)
    report = {"description": setup.description, "single": single, "parallel": parallel}
    (Path(out_dir) / "uneven.json").write_text(json.dumps(report))


def main(mode, initial, out_dir):
    if mode == "uneven":
        return uneven_validation(initial, out_dir)
    out_dir = Path(out_dir)
    report = {"backend": keras.backend.backend()}
    if mode in ("parallel", "multi_host"):
        setup = kc.distribute.data_parallel("all")
        report["description"] = setup.description
        scope = setup.scope()
    elif mode == "model_parallel":
        mesh = keras.distribution.DeviceMesh((2, 2), ("batch", "model"), keras.distribution.list_devices())
        layout = kc.distribute.pointwise_layout_map(mesh)
        keras.distribution.set_distribution(keras.distribution.ModelParallel(layout_map=layout, batch_dim_name="batch"))
        scope = keras.distribution.distribution().scope()
    else:
        import contextlib

        scope = contextlib.nullcontext()
    with scope:
        model = kc.ConvNeXt(**ARCH, input_shape=(32, 32, 3), classes=4)
        model.load_weights(initial)
        model.compile(
            optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
            loss="sparse_categorical_crossentropy",
            metrics=[keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2"), "accuracy"],
        )
    x, y = data()
    if mode == "model_parallel":
        kernel = model.get_layer("stage_2_block_0").pointwise_1.kernel
        report["kernel_shape"] = list(kernel.shape)
        report["kernel_spec"] = [str(axis) for axis in kernel.value.sharding.spec]
        report["kernel_shard_shapes"] = sorted({tuple(s.data.shape) for s in kernel.value.addressable_shards})
        report["loss"] = float(model.train_on_batch(x[:8], y[:8], return_dict=True)["loss"])
    elif mode == "multi_host":  # Keras gives each process its share of every global batch of 8 (auto-sharding)
        import tensorflow as tf

        report["processes"] = setup.process_count
        model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), epochs=2, verbose=0)
        weights = [np.asarray(keras.ops.convert_to_numpy(v)) for v in model.trainable_variables]
        if setup.is_chief:
            np.savez(out_dir / f"{mode}.npz", *weights)
    else:
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        held_x, held_y = data(seed=1)  # unseen images: the metrics are not trivially 1
        report["metrics"] = model.evaluate(held_x, held_y, batch_size=8, return_dict=True, verbose=0)
        report["probabilities"] = model.predict(held_x, batch_size=8, verbose=0).tolist()
        report["labels"] = held_y.tolist()
        if mode == "parallel" and report["backend"] == "jax":
            layout = keras.distribution.distribution().get_data_layout((8, 32, 32, 3))
            report["data_axes"] = [str(axis) for axis in layout.axes]
            report["mesh_devices"] = int(np.prod(layout.device_mesh.shape))
        np.savez(out_dir / f"{mode}.npz", *[keras.ops.convert_to_numpy(v) for v in model.trainable_variables])
    if mode != "multi_host" or setup.is_chief:
        (out_dir / f"{mode}.json").write_text(json.dumps(report, default=list))


if __name__ == "__main__":
    main(*sys.argv[1:4])
