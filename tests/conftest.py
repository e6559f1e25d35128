"""Fixtures and the two tiers. The suite runs unchanged under KERAS_BACKEND=tensorflow, jax and torch.

- The fast tier (``pytest``, ``make test``) covers every module on every backend in minutes, on small shapes.
- ``@pytest.mark.large`` marks what needs full-size models, other processes or minutes of training; those
  tests are deselected unless ``--run-large`` is given (``make test-all``; keras-hub's ``--run_large``).
- ``@pytest.mark.fast_tier_backend("torch")`` marks a long test whose backend-specific parts other fast tests cover
  (fit, the optimizer and the forward on every backend; what is left is tf.data, NumPy or documentation): the fast
  tier runs it under that backend only, the full tier under all three.
- ``@pytest.mark.once`` marks tests that start every backend themselves, or whose outcome no backend changes
  (a TensorFlow-only serving process); ``run_all_backends.py`` passes ``--skip-once-tests`` to all runs but the
  last, so they run once per suite, not once per backend.
"""

import os
import tempfile

# JAX compiles every fit, predict and gradient of the suite's small models, ~10 s each on this CPU, and most of them
# are the same program again (the same tiny model, optimizer and batch shape in another test). JAX's persistent
# compilation cache answers those from disk; a folder of its own per run, so a run never reads an older run's
# entries. Set before JAX starts; worker processes inherit it through the environment.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="keras-convnext-jax-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from helpers.weights_server import WeightsServer  # noqa: E402

if keras.backend.backend() == "jax":
    import jax

    # A plugin may have imported JAX before this file; the cache is only read at the first compilation.
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


def pytest_addoption(parser):
    parser.addoption("--run-large", "--run_large", action="store_true", dest="run_large",
                     help="also run the tests marked large")
    parser.addoption("--skip-once-tests", action="store_true", dest="skip_once",
                     help="deselect the tests marked once (another backend's run of the suite covers them)")


def pytest_collection_modifyitems(config, items):
    def deselected(item):
        if "large" in item.keywords and not config.getoption("run_large"):
            return True
        only = item.get_closest_marker("fast_tier_backend")
        if only is not None and not config.getoption("run_large") and only.args[0] != keras.backend.backend():
            return True
        return "once" in item.keywords and config.getoption("skip_once")

    dropped = [item for item in items if deselected(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not deselected(item)]
    # The longest files first (measured under JAX, the slowest backend), so that the processes of
    # run_all_backends.py (pytest-xdist, one file at a time) finish together instead of one waiting on the last.
    items.sort(key=lambda item: LONGEST_FILES.index(item.path.name) if item.path.name in LONGEST_FILES else len(LONGEST_FILES))


LONGEST_FILES = ["test_training.py", "test_train_cli.py", "test_builders.py", "test_recipe.py", "test_export.py",
                 "test_inference.py", "test_distribute.py", "test_weights.py", "test_layers.py", "test_docstrings.py"]


@pytest.fixture(autouse=True)
def _float32_policy():
    """Every test starts and ends under float32, even one that sets a mixed-precision policy and fails."""
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture(autouse=True)
def _private_weights_cache(tmp_path, monkeypatch):
    """Downloads and converted checkpoints go to the test's own folder, never to the user's ~/.keras."""
    monkeypatch.setenv("KERAS_CONVNEXT_CACHE", str(tmp_path / "weights-cache"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def weights_server():
    """A local HTTP server for download tests: ``weights_server.publish(path, bytes)`` returns the file's URL."""
    with WeightsServer() as server:
        yield server
