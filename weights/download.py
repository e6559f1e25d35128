"""Downloading checkpoints into the cache with ``keras.utils.get_file``: hash-checked, never half-written."""

import hashlib
import os
import uuid
from pathlib import Path
from urllib.parse import urlparse

import keras


def cache_dir():
    """Where downloads are kept: ``$KERAS_CONVNEXT_CACHE``, else ``$KERAS_HOME/keras_convnext`` (``~/.keras``).

    Example:
        >>> cache_dir().is_absolute()
        True
    """
    explicit = os.environ.get("KERAS_CONVNEXT_CACHE")
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


def download(url, sha256=None):
    """Downloads ``url`` into the cache (once) and returns its path; refuses a file whose SHA-256 differs.

    The file arrives under a temporary name and is renamed only once complete and verified, so an interrupted
    download or a wrong hash leaves nothing in the cache.

    Example:
        >>> path = download("https://example.com/convnext_tiny.safetensors", sha256="...")  # doctest: +SKIP
    """
    name = Path(urlparse(url).path).name or "checkpoint"
    directory = cache_dir() / "downloads"
    final = directory / (f"{sha256[:16]}-{name}" if sha256 else name)
    if final.exists() and (sha256 is None or sha256_of(final) == sha256):
        return final
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / f".{name}.{uuid.uuid4().hex}.partial"
    try:
        keras.utils.get_file(
            fname=partial.name, origin=url, file_hash=sha256, hash_algorithm="sha256",
            cache_dir=str(directory.parent), cache_subdir=directory.name,
        )
        os.replace(partial, final)
    except ValueError as error:
        raise ValueError(f"Refused {url}: its SHA-256 is not the expected {sha256}; nothing was cached.") from error
    except Exception as error:
        raise ConnectionError(
            f"Could not download {url} ({error}). Without network access, fetch the file another way and pass "
            "its local path instead, e.g. weights='/path/to/checkpoint.safetensors'."
        ) from error
    finally:
        partial.unlink(missing_ok=True)
    return final
