"""Training on several devices with each backend's own engine: ``keras.distribution`` on JAX, ``tf.distribute``
on TensorFlow, ``torch.distributed`` on PyTorch (one process per device, started by torchrun). Nothing here moves
data or gradients itself except on torch, where ``torch_data_parallel`` averages the gradients.

Example:
    >>> import keras_convnext as kc
    >>> setup = kc.distribute.data_parallel()  # sets the process-wide distribution  # doctest: +SKIP
    >>> print(setup.description)  # doctest: +SKIP
    data parallel over 4 devices (gpu)
    >>> with setup.scope():  # doctest: +SKIP
    ...     model = kc.ConvNeXtTiny(classes=10)
    ...     model.compile(optimizer="adamw", loss="sparse_categorical_crossentropy")
    >>> callbacks = setup.prepare(model)  # torch: the same weights in every process, gradients averaged  # doctest: +SKIP
    >>> model.fit(dataset, callbacks=callbacks)  # the global batch is split over the devices  # doctest: +SKIP
"""

import contextlib
import dataclasses
import json
import os

import keras
import numpy as np

# Environment variables that keras.distribution.initialize reads for a multi-host JAX job.
JAX_MULTI_HOST_VARIABLES = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES")


# How long a process waits for the others to join (torch) before it gives up.
DEFAULT_TIMEOUT_SECONDS = 300


@dataclasses.dataclass
class DataParallelSetup:
    """What ``data_parallel`` set up: the devices, this process's place among the processes, and what the model needs.

    ``process_index`` / ``process_count``: this process among those training together (torch: the rank and the
    world size; JAX: ``jax.process_index()`` / ``jax.process_count()``; 0 and 1 on one host). Only the chief
    (process 0) writes files.

    Example:
        >>> setup = DataParallelSetup("jax", ["cpu:0", "cpu:1", "cpu:2", "cpu:3"], "cpu")
        >>> setup.devices, setup.device_type, setup.is_chief
        (['cpu:0', 'cpu:1', 'cpu:2', 'cpu:3'], 'cpu', True)
    """

    backend: str
    devices: list
    device_type: str
    strategy: object = None  # the tf.distribute strategy on TensorFlow
    process_index: int = 0
    process_count: int = 1

    @property
    def description(self):
        """``"data parallel over 4 devices (cpu)"``.

        Example:
            >>> DataParallelSetup("jax", ["cpu:0", "cpu:1"], "cpu").description
            'data parallel over 2 devices (cpu)'
        """
        count = len(self.devices)
        return f"data parallel over {count} device{'s' if count != 1 else ''} ({self.device_type})"

    @property
    def is_chief(self):
        """Whether this process writes the run's files (weights, logs, backups): process 0.

        Example:
            >>> DataParallelSetup("torch", ["cpu:0", "cpu:1"], "cpu", process_index=1, process_count=2).is_chief
            False
        """
        return self.process_index == 0

    @property
    def feeds_own_shard(self):
        """Whether each process runs ``model.fit`` on its own shard of every global batch (torch.distributed, one
        process per device; true for a single torch process too, so that it sees the same batches).

        Example:
            >>> DataParallelSetup("torch", ["cpu:0", "cpu:1"], "cpu", process_index=0, process_count=2).feeds_own_shard
            True
        """
        return self.backend == "torch"

    @property
    def _torch_group(self):
        return self.backend == "torch" and self.process_count > 1

    def scope(self):
        """The context to build and compile the model in (the strategy's scope on TensorFlow).

        Example:
            >>> import keras_convnext as kc
            >>> with DataParallelSetup("jax", ["cpu:0"], "cpu").scope():
            ...     model = kc.ConvNeXtAtto(input_shape=(32, 32, 3), classes=2)
        """
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def prepare(self, model):
        """Readies a built, compiled ``model`` for training and returns the callbacks ``fit`` needs.

        torch with several processes: copies process 0's weights to the others and averages every gradient over
        the processes during backward (``torch_data_parallel.GradientAverager``); the callback checks that each step
        averaged them all and reports each epoch's training figures averaged over the processes (pass it before
        callbacks that record the logs). Each process must ``fit`` on its own shard of the data. Elsewhere: ``[]``.

        Example:
            >>> DataParallelSetup("jax", ["cpu:0"], "cpu").prepare(model=None)
            []
        """
        if not self._torch_group:
            return []
        from keras_convnext import torch_data_parallel

        torch_data_parallel.broadcast_weights(model)
        return [torch_data_parallel.DataParallelCallback(torch_data_parallel.GradientAverager(model))]

    def sum_over_processes(self, values):
        """The sum of ``values`` (a NumPy array) over the processes (torch with several processes); elsewhere
        ``values`` itself, as every process already sees the whole data set.

        Example:
            >>> DataParallelSetup("jax", ["cpu:0"], "cpu").sum_over_processes(np.array([3.0, 4.0])).tolist()
            [3.0, 4.0]
        """
        if not self._torch_group:
            return np.asarray(values)
        from keras_convnext import torch_data_parallel

        return torch_data_parallel.all_reduce_sum(values)

    def close(self):
        """Leaves the process group (torch); a no-op elsewhere.

        Example:
            >>> DataParallelSetup("jax", ["cpu:0"], "cpu").close()
        """
        if self._torch_group:
            import torch.distributed

            if torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()


def _choose(devices, available):
    if devices == "all":
        return list(available)
    if isinstance(devices, bool) or not isinstance(devices, int) or not 1 <= devices <= len(available):
        raise ValueError(f"devices must be 'all' or an integer in [1, {len(available)}] here; got {devices!r}.")
    return list(available[:devices])


def torchrun_command(processes, script="my_training.py"):
    """The command that starts ``processes`` torch processes on this host, one per device.

    Example:
        >>> torchrun_command(4)
        'torchrun --standalone --nproc-per-node 4 my_training.py'
    """
    return f"torchrun --standalone --nproc-per-node {processes} {script}"


def _torch_data_parallel(devices, timeout_seconds):
    from keras_convnext import torch_data_parallel

    if not torch_data_parallel.launched_by_torchrun():
        if devices == "all":
            count = torch_data_parallel.local_device_count()
        else:
            count = len(_choose(devices, range(torch_data_parallel.launchable_processes())))
        if count > 1:
            raise ValueError(
                f"On the torch backend each device is its own process: start {count} of them with "
                f"`{torchrun_command(count)}` (`keras-convnext train --devices {count}` starts them itself)."
            )
        kind = torch_data_parallel.device_type()
        return DataParallelSetup("torch", [f"{kind}:0"], kind)
    rank, world_size, kind = torch_data_parallel.join_process_group(timeout_seconds)
    if devices not in ("all", world_size):
        raise ValueError(
            f"devices={devices!r}, but torchrun started {world_size} processes (one per device); pass 'all' or "
            f"{world_size}, or start {devices} processes with --nproc-per-node."
        )
    return DataParallelSetup(
        "torch", [f"{kind}:{index}" for index in range(world_size)], kind, process_index=rank, process_count=world_size
    )


def data_parallel(devices="all", *, timeout_seconds=DEFAULT_TIMEOUT_SECONDS):
    """Sets up data parallelism over ``devices`` ("all" or a count) for the active backend and returns it.

    JAX: ``keras.distribution.DataParallel``, set as the global distribution, after
    ``keras.distribution.initialize()`` when ``KERAS_DISTRIBUTION_*`` variables describe a multi-host job.
    TensorFlow: ``MirroredStrategy`` over the local GPUs (else the logical CPUs); a multi-worker ``TF_CONFIG`` is
    refused, as Keras 3.15's ``fit`` fails under ``MultiWorkerMirroredStrategy``. PyTorch: in a process started by
    torchrun, joins its process group (NCCL on GPUs, gloo on CPUs; ``timeout_seconds`` to reach the master) and
    ``prepare`` averages the gradients; without torchrun, one device, or an error naming the torchrun command.

    Example:
        >>> setup = data_parallel("all")  # sets the process-wide distribution  # doctest: +SKIP
    """
    backend = keras.backend.backend()
    if backend == "torch":
        return _torch_data_parallel(devices, timeout_seconds)
    if backend == "jax":
        if any(os.environ.get(name) for name in JAX_MULTI_HOST_VARIABLES):
            keras.distribution.initialize()
        import jax

        available = keras.distribution.list_devices()
        chosen = _choose(devices, available)
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=chosen))
        return DataParallelSetup(
            backend, chosen, chosen[0].split(":")[0].lower(), process_index=jax.process_index(),
            process_count=jax.process_count(),
        )
    if backend == "tensorflow":
        workers = _tf_config_workers()
        if workers > 1:
            raise NotImplementedError(
                f"TF_CONFIG describes {workers} workers, but Keras {keras.__version__}'s fit fails under "
                "tf.distribute.MultiWorkerMirroredStrategy (it reduces a per-replica batch eagerly; "
                "keras-team/keras#20585). Train on several hosts with KERAS_BACKEND=jax (keras.distribution) or "
                "torch (torchrun --nnodes)."
            )
        import tensorflow as tf

        kind = "gpu" if tf.config.list_logical_devices("GPU") else "cpu"
        available = [device.name for device in tf.config.list_logical_devices(kind.upper())]
        chosen = _choose(devices, available)
        return DataParallelSetup(backend, chosen, kind, tf.distribute.MirroredStrategy(devices=chosen))
    raise NotImplementedError(f"Data parallelism is not available on the {backend} backend.")


def simulate_cpu_devices(count):
    """Lets a host without accelerators try data parallelism over ``count`` devices: TensorFlow splits its CPU into
    ``count`` logical devices, JAX gets ``count`` host-platform devices (``XLA_FLAGS``), torch needs nothing (its
    devices are processes). Must run before the backend starts (before any tensor is made); returns whether it
    changed anything. The devices share the same cores, so this tests, it does not speed up.

    Example:
        >>> simulate_cpu_devices(2)  # first thing in a fresh process  # doctest: +SKIP
        True
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            return False
        try:
            tf.config.set_logical_device_configuration(
                tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * count
            )
        except RuntimeError:  # the runtime has started: its devices are fixed
            return False
        return True
    if backend == "jax" and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}".strip()
        return True
    return False


def _tf_config_workers():
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}).") from error
    return sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))


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
