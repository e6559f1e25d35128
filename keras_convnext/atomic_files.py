"""Files a user owns are never left half-written: each is written under a temporary name, then renamed.

Standard library only, so that every part of the package (``weights`` included) may use it.
"""

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_write_path(path, suffix=".partial"):
    """Yields a temporary path beside ``path`` to write to; renames it to ``path`` when the block succeeds and
    removes it when the block raises, so ``path`` holds either its old content or the complete new one.

    ``suffix`` ends the temporary name, for writers that choose the format from it (``.weights.h5``, ``.png``).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> with atomic_write_path(folder / "notes.txt") as temporary:
        ...     _ = temporary.write_text("done")
        >>> (folder / "notes.txt").read_text(), sorted(p.name for p in folder.iterdir())
        ('done', ['notes.txt'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomically(path, text):
    """Writes ``text`` to ``path`` through a temporary file in the same folder, synced, then renamed.

    Example:
        >>> import json, tempfile
        >>> path = write_text_atomically(Path(tempfile.mkdtemp()) / "config.json", json.dumps({"epochs": 3}))
        >>> json.loads(path.read_text())
        {'epochs': 3}
    """
    with atomic_write_path(path) as temporary:
        with open(temporary, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
    return Path(path)
