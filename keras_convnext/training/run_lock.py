"""One writer per run folder: ``keras-convnext train`` holds a lock on its ``--output`` while it writes there."""

import contextlib
import os
import socket
from pathlib import Path

LOCK_FILE = ".train.lock"


@contextlib.contextmanager
def exclusive_run(output):
    """Holds the lock of run folder ``output`` for the ``with`` block; ``ValueError`` naming the process that holds it
    when another one does.

    The lock is the operating system's (``flock``): it goes with its process, so a run that was killed leaves no
    lock behind. The folder is made if missing; the block leaves it as it found it but for what the block wrote (the
    lock file, and a folder made here and left empty, are removed). Where ``fcntl`` is missing (Windows) the block
    runs unlocked.

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
    made_folder = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    path = output / LOCK_FILE
    while True:
        made_file = not path.exists()
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ValueError(
                f"{str(output)!r} is being written by another keras-convnext train ({holder}); wait for it to end, or "
                "choose another --output."
            ) from None
        if path.exists() and os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
            break
        handle.close()  # its last holder removed the file we opened: lock the one at the path now
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        yield
    finally:
        if made_file:
            path.unlink(missing_ok=True)  # still locked: whoever opened it retries on the new file
        handle.close()
        if made_folder and not any(output.iterdir()):
            output.rmdir()
