"""``keras-convnext train --devices N`` on the torch backend: starts N processes of the same command on this host,
each with the variables torchrun gives its processes (as ``torchrun --standalone --nproc-per-node N -m
keras_convnext train ...`` would), and waits for them.

The processes' standard output goes straight through; their standard error is relayed line by line, except the
``keras-convnext ...: error:`` lines, which are kept. When one process fails the others get a moment to end by
themselves (they often hit the same error) and are then stopped, and the launch reports one error: process 0's if
it has one, else the first.

Example:
    >>> result = launch_processes(["train", "flowers/", "--devices", "2"], 2)  # doctest: +SKIP
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

GRACE_SECONDS = 20  # how long the other processes get to end by themselves once one has failed


def processes_to_start(devices):
    """How many processes ``--devices`` asks this host to start (1: train in this one), under no torchrun.

    "all": one per GPU (one on a CPU-only host); a number: that many, at most one per GPU, or per core on a
    CPU-only host. Raises ``ValueError`` for more than that.

    Example:
        >>> processes_to_start("1")
        1
    """
    from keras_convnext import torch_data_parallel

    if devices == "all":
        return torch_data_parallel.local_device_count()
    count, limit = int(devices), torch_data_parallel.launchable_processes()
    if not 1 <= count <= limit:
        what = "GPUs" if torch_data_parallel.device_type() == "gpu" else "CPU cores (one gloo process per core)"
        raise ValueError(f"--devices {devices}: this host has {limit} {what}; pass 'all' or a number from 1 to {limit}.")
    return count


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now.

    Example:
        >>> 1024 <= free_port() <= 65535
        True
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_environment(rank, world_size, port, cpu_threads=None):
    """The environment of process ``rank``: this one's, plus torchrun's variables for a single-host job.

    Example:
        >>> env = process_environment(1, 2, 29500)
        >>> env["RANK"], env["WORLD_SIZE"], env["MASTER_ADDR"], env["MASTER_PORT"]
        ('1', '2', '127.0.0.1', '29500')
    """
    env = {
        **os.environ,
        "RANK": str(rank), "LOCAL_RANK": str(rank), "GROUP_RANK": "0",
        "WORLD_SIZE": str(world_size), "LOCAL_WORLD_SIZE": str(world_size),
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
    }
    if cpu_threads is not None and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(cpu_threads)  # torchrun sets it too: the processes share the cores
    return env


def launch_processes(arguments, count):
    """Runs ``python -m keras_convnext ARGUMENTS`` in ``count`` processes as one torch.distributed job on this host.

    Returns ``(statuses, error)``: each process's exit status, and the error line to end with (``None`` when all
    succeeded).

    Example:
        >>> launch_processes(["train", "flowers/", "--devices", "2"], 2)  # doctest: +SKIP
        ([0, 0], None)
    """
    port = free_port()
    threads = max(1, (os.cpu_count() or 1) // count)
    processes, relays, errors = [], [], {}
    previous_handler = signal.signal(signal.SIGTERM, _interrupt)  # so that the processes are stopped with this one
    try:
        _start_and_wait(arguments, count, port, threads, processes, relays, errors)
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    statuses = [process.returncode for process in processes]
    if all(status == 0 for status in statuses):
        return statuses, None
    failed = next(rank for rank, status in enumerate(statuses) if status != 0)
    error = errors.get(0) or next(iter(errors.values()), None)
    return statuses, error or f"process {failed} of {count} ended with status {statuses[failed]} (its output is above)"


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _start_and_wait(arguments, count, port, threads, processes, relays, errors):
    for rank in range(count):
        process = subprocess.Popen(
            [sys.executable, "-m", "keras_convnext", *arguments], env=process_environment(rank, count, port, threads),
            stderr=subprocess.PIPE, text=True, errors="replace",
        )
        relay = threading.Thread(target=_relay_errors, args=(process.stderr, rank, errors), daemon=True)
        relay.start()
        processes.append(process)
        relays.append(relay)
    try:
        if _wait_for_first_failure(processes) is not None:
            deadline = time.monotonic() + GRACE_SECONDS
            while time.monotonic() < deadline and any(process.poll() is None for process in processes):
                time.sleep(0.2)
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for relay in relays:
            relay.join(timeout=5)


def _relay_errors(stream, rank, errors):
    """Copies a process's standard error to ours, keeping (not copying) its first ``error:`` line."""
    for line in stream:
        if line.startswith("keras-convnext ") and ": error: " in line:
            errors.setdefault(rank, line.split(": error: ", 1)[1].strip())
        else:
            sys.stderr.write(line)
            sys.stderr.flush()


def _wait_for_first_failure(processes):
    while True:
        statuses = [process.poll() for process in processes]
        for rank, status in enumerate(statuses):
            if status not in (None, 0):
                return rank
        if all(status == 0 for status in statuses):
            return None
        time.sleep(0.2)
