"""Training on several devices with each backend's own engine: ``keras.distribution`` on JAX, ``tf.distribute``
on TensorFlow. Nothing here moves data or gradients itself.

Example:
    >>> import keras_convnext as kc
    >>> setup = kc.distribute.data_parallel()  # sets the process-wide distribution  # doctest: +SKIP
    >>> print(setup.description)  # doctest: +SKIP
    data parallel over 4 devices (gpu)
    >>> with setup.scope():  # doctest: +SKIP
    ...     model = kc.ConvNeXtTiny(classes=10)
    ...     model.compile(optimizer="adamw", loss="sparse_categorical_crossentropy")
    >>> model.fit(dataset)  # the global batch is split over the devices  # doctest: +SKIP
"""

import contextlib
import dataclasses
import os

import keras

# Environment variables that keras.distribution.initialize reads for a multi-host JAX job.
JAX_MULTI_HOST_VARIABLES = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES")


@dataclasses.dataclass
class DataParallelSetup:
    """What ``data_parallel`` set up: the devices, and the scope to build and compile the model in.

    Example:
        >>> setup = DataParallelSetup("jax", ["cpu:0", "cpu:1", "cpu:2", "cpu:3"], "cpu")
        >>> setup.devices, setup.device_type
        (['cpu:0', 'cpu:1', 'cpu:2', 'cpu:3'], 'cpu')
    """

    backend: str
    devices: list
    device_type: str
    strategy: object = None  # the tf.distribute strategy on TensorFlow

    @property
    def description(self):
        """``"data parallel over 4 devices (cpu)"``.

        Example:
            >>> DataParallelSetup("jax", ["cpu:0", "cpu:1"], "cpu").description
            'data parallel over 2 devices (cpu)'
        """
        count = len(self.devices)
        return f"data parallel over {count} device{'s' if count != 1 else ''} ({self.device_type})"

    def scope(self):
        """The context to build and compile the model in (the strategy's scope on TensorFlow).

        Example:
            >>> import keras_convnext as kc
            >>> with DataParallelSetup("jax", ["cpu:0"], "cpu").scope():
            ...     model = kc.ConvNeXtAtto(input_shape=(32, 32, 3), classes=2)
        """
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()


def _choose(devices, available):
    if devices == "all":
        return list(available)
    if isinstance(devices, bool) or not isinstance(devices, int) or not 1 <= devices <= len(available):
        raise ValueError(f"devices must be 'all' or an integer in [1, {len(available)}] here; got {devices!r}.")
    return list(available[:devices])


def data_parallel(devices="all"):
    """Sets up data parallelism over ``devices`` ("all" or a count) for the active backend and returns it.

    JAX: ``keras.distribution.DataParallel``, set as the global distribution, after
    ``keras.distribution.initialize()`` when ``KERAS_DISTRIBUTION_*`` variables describe a multi-host job.
    TensorFlow: ``MirroredStrategy`` over the local GPUs (else the logical CPUs), or
    ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` describes several workers. PyTorch: Keras 3.15 has no
    distribution support for the torch backend, so this raises.

    Example:
        >>> setup = data_parallel("all")  # sets the process-wide distribution  # doctest: +SKIP
    """
    backend = keras.backend.backend()
    if backend == "jax":
        if any(os.environ.get(name) for name in JAX_MULTI_HOST_VARIABLES):
            keras.distribution.initialize()
        available = keras.distribution.list_devices()
        chosen = _choose(devices, available)
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=chosen))
        return DataParallelSetup(backend, chosen, chosen[0].split(":")[0].lower())
    if backend == "tensorflow":
        import tensorflow as tf

        if "TF_CONFIG" in os.environ:
            # Created before anything else touches the TF runtime (listing devices would start it), as
            # MultiWorkerMirroredStrategy needs to configure the collectives first.
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
            kind = "gpu" if tf.config.list_logical_devices("GPU") else "cpu"
            return DataParallelSetup(backend, [f"replica:{i}" for i in range(strategy.num_replicas_in_sync)], kind, strategy)
        kind = "gpu" if tf.config.list_logical_devices("GPU") else "cpu"
        available = [device.name for device in tf.config.list_logical_devices(kind.upper())]
        chosen = _choose(devices, available)
        return DataParallelSetup(backend, chosen, kind, tf.distribute.MirroredStrategy(devices=chosen))
    raise NotImplementedError(
        f"Data parallelism is not available on the {backend} backend: Keras {keras.__version__} implements "
        "keras.distribution for JAX (and tf.distribute works for TensorFlow) but not for torch. "
        "Use KERAS_BACKEND=jax or tensorflow for multi-device training."
    )


def pointwise_layout_map(device_mesh, model_axis="model"):
    """A ``keras.distribution.LayoutMap`` that shards every block's MLP over ``model_axis``: the first pointwise
    kernel by output columns, its bias alike, the second by input rows (Megatron-style), everything else replicated.

    Example:
        >>> mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"))  # 8 devices  # doctest: +SKIP
        >>> keras.distribution.set_distribution(  # doctest: +SKIP
        ...     keras.distribution.ModelParallel(layout_map=pointwise_layout_map(mesh), batch_dim_name="batch"))
        >>> model = kc.ConvNeXtXXLarge()  # doctest: +SKIP
    """
    if model_axis not in device_mesh.axis_names:
        raise ValueError(f"The device mesh has axes {device_mesh.axis_names}; expected one named {model_axis!r}.")
    layout_map = keras.distribution.LayoutMap(device_mesh)
    layout_map[r".*_pointwise_1/kernel"] = (None, model_axis)
    layout_map[r".*_pointwise_1/bias"] = (model_axis,)
    layout_map[r".*_grn/(gamma|beta)"] = (model_axis,)
    layout_map[r".*_pointwise_2/kernel"] = (model_axis, None)
    return layout_map
