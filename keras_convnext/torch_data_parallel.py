"""Data parallel training on the torch backend with ``torch.distributed``: one process per device, started by
``torchrun`` (or ``keras-convnext train --devices N``), each training on its own shard of every global batch with
``model.fit``, the gradients averaged over the processes while backward runs.

Keras 3.15 has no ``keras.distribution`` for torch, and ``DistributedDataParallel`` only averages gradients for a
forward pass that goes through its own wrapper, which ``model.fit`` never calls. ``GradientAverager`` does what
DDP's reducer does with torch's public hook for it (``Tensor.register_post_accumulate_grad_hook``): gradients are
packed into buckets of about 25 MB in a fixed order, each bucket all-reduced asynchronously as soon as backward has
produced it, and all of them averaged before the optimizer runs.

Example (``my_training.py``, started by ``torchrun --standalone --nproc-per-node 2 my_training.py``):
    >>> setup = kc.distribute.data_parallel()  # doctest: +SKIP
    >>> model = kc.ConvNeXtTiny(classes=10); model.compile(...)  # doctest: +SKIP
    >>> setup.prepare(model)  # same weights everywhere, gradients averaged  # doctest: +SKIP
    >>> model.fit(dataset.shard(setup.process_count, setup.process_index))  # doctest: +SKIP
"""

import datetime
import functools
import os

import keras
import numpy as np
import torch
import torch.distributed as dist

# The variables torchrun sets in each process it starts (and ``keras-convnext train --devices N`` sets alike).
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
BUCKET_BYTES = 25 * 2**20  # DDP's default bucket_cap_mb


def launched_by_torchrun():
    """Whether this process was started by torchrun (or a launcher that sets the same variables).

    Example:
        >>> launched_by_torchrun()  # in a plain python process
        False
    """
    return all(os.environ.get(name) for name in LAUNCH_VARIABLES)


def device_type():
    """``"gpu"`` where torch sees CUDA, else ``"cpu"``.

    Example:
        >>> device_type() in ("cpu", "gpu")
        True
    """
    return "gpu" if torch.cuda.is_available() else "cpu"


def local_device_count():
    """The devices this host gives torch: its CUDA GPUs, else one CPU.

    Example:
        >>> local_device_count() >= 1
        True
    """
    return torch.cuda.device_count() if torch.cuda.is_available() else 1


def launchable_processes():
    """How many processes may train on this host: one per GPU, or on a CPU-only host one per core (gloo processes
    sharing the CPU, which tests data parallelism but does not speed training up).

    Example:
        >>> launchable_processes() >= 1
        True
    """
    return torch.cuda.device_count() if torch.cuda.is_available() else os.cpu_count() or 1


def join_process_group(timeout_seconds):
    """Joins the process group torchrun's variables describe (NCCL on GPUs, gloo on CPUs); returns
    ``(rank, world_size, device_type)``. Raises ``ConnectionError`` when the master is not reached in time.

    Example:
        >>> rank, world_size, device_type = join_process_group(300)  # under torchrun  # doctest: +SKIP
    """
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    kind = device_type()
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), kind
    master = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    try:
        dist.init_process_group(
            "nccl" if kind == "gpu" else "gloo", init_method="env://",
            timeout=datetime.timedelta(seconds=timeout_seconds),
        )
    except (RuntimeError, ValueError) as error:  # DistStoreError and DistNetworkError are RuntimeErrors
        reason = " ".join(str(error).split())[:300]
        raise ConnectionError(
            f"rank {rank} of {world_size} could not join the process group at {master} within {timeout_seconds:g} s "
            f"({reason}); start rank 0 on MASTER_ADDR first and check MASTER_ADDR, MASTER_PORT and the firewall. "
            "Nothing was written."
        ) from error
    return rank, world_size, kind


def broadcast_weights(model, source=0):
    """Copies every weight of ``model`` from the process ``source`` to all the others, as DDP does on wrapping.

    Example:
        >>> broadcast_weights(model)  # under torchrun, after building the model  # doctest: +SKIP
    """
    with torch.no_grad():
        for variable in model.weights:
            dist.broadcast(variable.value.data, src=source)


def all_reduce_sum(values):
    """The sum over the processes of ``values`` (a NumPy array of float64 totals), the same on every process.

    Example:
        >>> all_reduce_sum(np.array([correct, count], "float64"))  # under torchrun  # doctest: +SKIP
    """
    tensor = torch.as_tensor(np.asarray(values, "float64"))
    if torch.cuda.is_available() and dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return tensor.cpu().numpy()


class GradientAverager:
    """Averages the gradient of every trainable weight of ``model`` over the process group during backward.

    Buckets of about ``bucket_bytes`` are made in the reverse order of the weights (backward produces the head's
    gradients first) and all-reduced in that order on every process, whatever order the hooks fire in; the last
    hook waits for them, divides by the world size and writes the averages back into ``.grad``, so the optimizer
    that ``model.fit`` runs next sees the averaged gradients.

    Example:
        >>> averager = GradientAverager(model)  # under torchrun  # doctest: +SKIP
        >>> model.fit(shard_of_the_data)  # doctest: +SKIP
        >>> averager.check_step_complete()  # doctest: +SKIP
    """

    def __init__(self, model, bucket_bytes=BUCKET_BYTES):
        self.world_size = dist.get_world_size()
        variables = [variable for variable in model.trainable_variables if variable.value.requires_grad]
        self.names = [variable.path for variable in variables]
        self.parameters = [variable.value for variable in variables]
        self.buckets, size = [[]], 0
        for index in reversed(range(len(self.parameters))):
            parameter = self.parameters[index]
            if self.buckets[-1] and (size + parameter.numel() * parameter.element_size() > bucket_bytes
                                     or parameter.dtype != self.parameters[self.buckets[-1][0]].dtype):
                self.buckets.append([])
                size = 0
            self.buckets[-1].append(index)
            size += parameter.numel() * parameter.element_size()
        self.bucket_of = {index: number for number, bucket in enumerate(self.buckets) for index in bucket}
        self._reset()
        self.handles = [
            parameter.register_post_accumulate_grad_hook(functools.partial(self._gradient_ready, index))
            for index, parameter in enumerate(self.parameters)
        ]

    def _reset(self):
        self.waiting = [len(bucket) for bucket in self.buckets]
        self.next_bucket = 0
        self.in_flight = []
        self.started = False

    def _gradient_ready(self, index, parameter):
        self.started = True
        self.waiting[self.bucket_of[index]] -= 1
        while self.next_bucket < len(self.buckets) and self.waiting[self.next_bucket] == 0:
            bucket = self.buckets[self.next_bucket]
            flat = torch.cat([self.parameters[i].grad.reshape(-1) for i in bucket])
            self.in_flight.append((bucket, flat, dist.all_reduce(flat, async_op=True)))
            self.next_bucket += 1
        if self.next_bucket == len(self.buckets):
            self._write_averages()

    @torch.no_grad()
    def _write_averages(self):
        for bucket, flat, work in self.in_flight:
            work.wait()
            flat.div_(self.world_size)
            offset = 0
            for i in bucket:
                gradient = self.parameters[i].grad
                gradient.copy_(flat[offset:offset + gradient.numel()].view_as(gradient))
                offset += gradient.numel()
        self._reset()

    def check_step_complete(self):
        """Raises ``RuntimeError`` naming the weights whose gradient backward never produced in the last step (their
        buckets were not averaged, so the processes would drift apart); call it after each training step.

        Example:
            >>> averager.check_step_complete()  # doctest: +SKIP
        """
        if self.started:
            missing = [self.names[i] for number, bucket in enumerate(self.buckets) if self.waiting[number]
                       for i in bucket if self.parameters[i].grad is None]
            raise RuntimeError(
                f"Backward produced no gradient for {missing or 'some weights'}, so their gradients could not be "
                "averaged over the processes; make every trainable weight take part in the loss, or freeze it."
            )

    def remove(self):
        """Removes the hooks: the model trains on its own again.

        Example:
            >>> averager.remove()  # doctest: +SKIP
        """
        for handle in self.handles:
            handle.remove()


class DataParallelCallback(keras.callbacks.Callback):
    """Checks after every step that ``averager`` averaged every gradient, and at the end of every epoch replaces
    the training figures in the logs (loss, metrics: this process's shard) with their mean over the processes, so
    the history and the progress bar show the whole global batch's figures. Put it before the callbacks that
    record the logs.

    Example:
        >>> model.fit(shard, callbacks=[DataParallelCallback(GradientAverager(model)), history])  # doctest: +SKIP
    """

    def __init__(self, averager):
        super().__init__()
        self.averager = averager

    def on_train_batch_end(self, batch, logs=None):
        self.averager.check_step_complete()

    def on_epoch_end(self, epoch, logs=None):
        if not logs:
            return
        names = sorted(name for name in logs if not name.startswith("val_"))
        means = all_reduce_sum(np.array([float(logs[name]) for name in names])) / dist.get_world_size()
        logs.update({name: float(value) for name, value in zip(names, means)})
