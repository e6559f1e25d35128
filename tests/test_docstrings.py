"""Every docstring example in the package runs, offline, with only the names its own module defines.

An example that cannot run here (a download, a file the reader has, minutes of training) says why and carries
``# doctest: +SKIP``.
"""

import doctest
import importlib
import pkgutil

import keras
import pytest

import keras_convnext

# Packages whose modules hold examples; applications and weights live in other folders (pyproject's package-dir).
PACKAGES = (keras_convnext, keras_convnext.applications, keras_convnext.weights)


def _module_names():
    names = set()
    for package in PACKAGES:
        names.add(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if not info.name.endswith("__main__"):  # importing it would run the command line
                names.add(info.name)
    return sorted(names)


MODULES = _module_names()


def test_every_folder_of_the_package_is_searched():
    assert {"keras_convnext.applications.variants", "keras_convnext.weights.layouts", "keras_convnext.cli",
            "keras_convnext.layers.convnext_block", "keras_convnext.training.trainer"} <= set(MODULES)


@pytest.mark.fast_tier_backend("tensorflow")  # documentation: the full tier runs every example on every backend
@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_run(module_name):
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = []
    for test in finder.find(module, module_name):
        if test.filename and not test.filename.endswith(".py"):
            continue
        keras.config.set_dtype_policy("float32")
        result = runner.run(test, out=report.append, clear_globs=True)
        assert result.failed == 0, f"{test.name}:\n" + "".join(report)[-4000:]
