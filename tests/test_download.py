"""``weights=URL``: a server on 127.0.0.1 that the test starts and stops; good hash, bad hash, cut-off download."""

import errno

import keras
import numpy as np
import pytest

import keras_convnext as kc
from helpers import TINY_ARCH, perturb
from keras_convnext.weights import sha256_of
from keras_convnext.weights.download import cached_path, download


@pytest.fixture
def server(weights_server, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_CONVNEXT_CACHE", str(tmp_path / "cache"))  # a name of its own, to list its files
    return weights_server


def _model(**kwargs):
    return kc.ConvNeXt(**TINY_ARCH, input_shape=(64, 64, 3), classes=5, **kwargs)


def _publish(server, tmp_path, name):
    source = perturb(_model())
    source.save_weights(tmp_path / "source.weights.h5")
    server.publish(f"/{name}", (tmp_path / "source.weights.h5").read_bytes())
    return source, sha256_of(tmp_path / "source.weights.h5")


def _cached_files(tmp_path):
    root = tmp_path / "cache" / "downloads"
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_download_with_the_right_hash_loads_and_is_cached(server, tmp_path, rng):
    source, digest = _publish(server, tmp_path, "tiny.weights.h5")
    model = _model(weights=f"{server.url}/tiny.weights.h5#sha256={digest}")
    x = rng.uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x)), keras.ops.convert_to_numpy(source(x)))
    cached = cached_path(f"{server.url}/tiny.weights.h5")
    assert _cached_files(tmp_path) == [cached.name, f"{cached.name}.sha256"]
    assert cached.with_name(f"{cached.name}.sha256").read_text().strip() == digest
    server.files.clear()  # the second load comes from the cache
    _model(weights=f"{server.url}/tiny.weights.h5#sha256={digest}")


def test_a_wrong_hash_is_refused_and_nothing_is_cached(server, tmp_path):
    _publish(server, tmp_path, "tiny.weights.h5")
    with pytest.raises(ValueError, match="its SHA-256 is [0-9a-f]{64}, not the expected 0000.*nothing was cached"):
        _model(weights=f"{server.url}/tiny.weights.h5#sha256={'0' * 64}")
    assert _cached_files(tmp_path) == []


def test_a_download_cut_off_midway_leaves_no_file(server, tmp_path):
    _publish(server, tmp_path, "cut.weights.h5")
    with pytest.raises(ConnectionError, match="Could not download .*pass its local path instead"):
        _model(weights=f"{server.url}/cut.weights.h5")
    assert _cached_files(tmp_path) == []


def test_an_unreachable_url_says_how_to_load_a_local_file(server, tmp_path):
    with pytest.raises(ConnectionError, match=r"weights='/path/to/checkpoint.safetensors'"):
        _model(weights=f"{server.url}/missing.weights.h5")


def test_two_urls_ending_in_the_same_file_name_are_cached_apart(server, tmp_path, rng):
    first, second = perturb(_model(), seed=1), perturb(_model(), seed=2)
    for folder, source in (("a", first), ("b", second)):
        source.save_weights(tmp_path / f"{folder}.weights.h5")
        server.publish(f"/{folder}/model.weights.h5", (tmp_path / f"{folder}.weights.h5").read_bytes())
    x = rng.uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    for folder, source in (("a", first), ("b", second)):
        model = _model(weights=f"{server.url}/{folder}/model.weights.h5")
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x)), keras.ops.convert_to_numpy(source(x)))
    assert len(_cached_files(tmp_path)) == 4  # two files, each with its recorded SHA-256


def test_a_cached_file_that_changed_since_its_download_is_refused_with_how_to_clear_it(server, tmp_path):
    _publish(server, tmp_path, "tiny.weights.h5")
    url = f"{server.url}/tiny.weights.h5"
    _model(weights=url)
    cached = cached_path(url)
    cached.write_bytes(cached.read_bytes()[:-1] + b"x")
    with pytest.raises(ValueError, match=rf"changed after it was cached\. Delete {cached} and {cached}\.sha256"):
        _model(weights=url)


def _failing_fetch(error):
    def get_file(**kwargs):
        raise error

    return get_file


@pytest.mark.parametrize("error, kind, message", [
    (OSError(errno.ENOSPC, "No space left on device"), OSError, r"Could not save the download of .* \(No space left on device\); nothing was cached\. Free some space"),
    (PermissionError(errno.EACCES, "Permission denied"), OSError, r"Could not save the download of .* \(Permission denied\)"),
    (ValueError("unknown url type: 'htp'"), ConnectionError, r"Could not download .* \(ValueError: unknown url type: 'htp'\)"),
    (Exception("URL fetch failure on x: 404 -- Not Found"), ConnectionError, r"\(Exception: URL fetch failure on x: 404 -- Not Found\)"),
])
def test_a_failed_download_says_what_happened_and_leaves_nothing(server, tmp_path, monkeypatch, error, kind, message):
    monkeypatch.setattr(keras.utils, "get_file", _failing_fetch(error))
    with pytest.raises(kind, match=message) as raised:
        download(f"{server.url}/any.weights.h5")  # no hash given: nothing may speak of one
    assert "SHA-256" not in str(raised.value)
    assert kind is ConnectionError or not isinstance(raised.value, ConnectionError)
    assert _cached_files(tmp_path) == []


def test_a_preset_falls_back_to_its_next_copy_and_names_every_failure(server, tmp_path, monkeypatch):
    from keras_convnext.weights import resolve

    source, digest = _publish(server, tmp_path, "mirror/tiny.weights.h5")
    record = {"urls": [f"{server.url}/gone/tiny.weights.h5", f"{server.url}/mirror/tiny.weights.h5"], "sha256": digest}
    monkeypatch.setattr(resolve, "presets", lambda: {"tiny.mirrored": record})
    path = resolve.resolve_weights("tiny.mirrored")
    assert path == cached_path(record["urls"][1]) and sha256_of(path) == digest
    record["urls"] = [f"{server.url}/gone/a.weights.h5", f"{server.url}/gone/b.weights.h5"]
    with pytest.raises(ConnectionError, match=r"None of the 2 copies .*\n  - .*gone/a\.weights\.h5.*\n  - .*gone/b"):
        resolve.resolve_weights("tiny.mirrored")
