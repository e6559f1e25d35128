"""One writer per run folder: ``keras-convnext train`` holds a lock on its ``--output`` while it writes there."""

import contextlib
import os
import socket
from pathlib import Path

LOCK_FILE = ".train.lock"


@contextlib.contextmanager
def exclusive_run(output):
    """Holds the lock of run folder ``output`` (made if missing) for the ``with`` block; ``ValueError`` naming the
    process that holds it when another one does.

    The lock is the operating system's (``flock``): it goes with its process, so a run that was killed leaves no
    lock behind. Where ``fcntl`` is missing (Windows) the block runs unlocked.

    Example:
        >>> import tempfile
        >>> with exclusive_run(tempfile.mkdtemp()):
        ...     pass  # write the run here
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    with open(output / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ValueError(
                f"{str(output)!r} is being written by another keras-convnext train ({holder}); wait for it to end, or "
                "choose another --output."
            ) from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"process {os.getpid()} on {socket.gethostname()}")
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
