"""Downloading checkpoints into the cache with ``keras.utils.get_file``: hash-checked, never half-written."""

import errno
import hashlib
import os
import uuid
from pathlib import Path
from urllib.parse import urlparse

import keras

from keras_convnext.atomic_files import write_text_atomically


CACHE_VARIABLE = "KERAS_CONVNEXT_CACHE"


def cache_dir():
    """Where downloads are kept: ``$KERAS_CONVNEXT_CACHE``, else ``$KERAS_HOME/keras_convnext`` (``~/.keras``).

    Example:
        >>> cache_dir().is_absolute()
        True
    """
    explicit = os.environ.get(CACHE_VARIABLE)
    if explicit:
        return Path(explicit).expanduser()
    return Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser() / "keras_convnext"


def sha256_of(path):
    """The hex SHA-256 of a file.

    Example:
        >>> len(sha256_of(__file__))
        64
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_path(url):
    """Where ``download(url)`` keeps its file: keyed by the whole URL, so two URLs ending in the same file name
    (every Hugging Face ``.../model.safetensors``) never share a cache entry.

    Example:
        >>> cached_path("https://a.example/x/model.safetensors") != cached_path("https://a.example/y/model.safetensors")
        True
    """
    name = Path(urlparse(url).path).name or "checkpoint"
    return cache_dir() / "downloads" / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{name}"


def download(url, sha256=None):
    """Downloads ``url`` into the cache (once) and returns its path; refuses a file whose SHA-256 differs.

    The file arrives under a temporary name and is renamed only once complete and verified, so an interrupted
    download or a wrong hash leaves nothing in the cache. The SHA-256 of the first download is recorded beside it
    (``<file>.sha256``); a cached file that no longer has that hash (or the expected ``sha256``) is refused, with
    the files to delete to download it again.

    Example:
        >>> path = download("https://example.com/convnext_tiny.safetensors", sha256="...")  # doctest: +SKIP
    """
    final = cached_path(url)
    record = final.with_name(final.name + ".sha256")
    if final.exists():
        return _checked_cache_hit(url, final, record, sha256)
    directory = final.parent
    partial = directory / f".{final.name}.{uuid.uuid4().hex}.partial"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        try:
            keras.utils.get_file(
                fname=partial.name, origin=url, cache_dir=str(directory.parent), cache_subdir=directory.name,
            )
        except Exception as error:  # noqa: BLE001 - Keras reports a failed fetch as a plain Exception
            if _is_local_write_error(error):
                raise
            raise ConnectionError(
                f"Could not download {url} ({type(error).__name__}: {error}). Without network access, fetch the file "
                "another way and pass its local path instead, e.g. weights='/path/to/checkpoint.safetensors'."
            ) from error
        actual = sha256_of(partial)
        if sha256 and actual != sha256.lower():
            raise ValueError(f"Refused {url}: its SHA-256 is {actual}, not the expected {sha256}; nothing was cached.")
        write_text_atomically(record, actual + "\n")
        os.replace(partial, final)
    except OSError as error:
        if not _is_local_write_error(error):
            raise
        raise OSError(
            error.errno, f"Could not save the download of {url} in {directory} ({error.strerror or error}); nothing "
            f"was cached. Free some space or choose a writable cache folder ({CACHE_VARIABLE}=/path/to/folder)."
        ) from error
    finally:
        partial.unlink(missing_ok=True)
    return final


# What a full or read-only disk, or a folder the user may not write, raise: the cache's fault, not the network's.
_LOCAL_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}


def _is_local_write_error(error):
    return isinstance(error, OSError) and not isinstance(error, ConnectionError) and error.errno in _LOCAL_WRITE_ERRNOS


def _checked_cache_hit(url, final, record, sha256):
    actual = sha256_of(final)
    recorded = record.read_text().strip() if record.exists() else None
    expected, source = (sha256, "the expected") if sha256 else (recorded, "its first download's")
    if expected is None:
        write_text_atomically(record, actual + "\n")  # cached before hashes were recorded: record it now
        return final
    if actual != expected:
        raise ValueError(
            f"The cached download of {url} ({final}) has SHA-256 {actual}, not {source} {expected}: the file "
            f"changed after it was cached. Delete {final} and {record} to download it again."
        )
    return final
