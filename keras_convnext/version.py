"""The package version, kept apart so that ``pyproject.toml`` can read it without importing Keras."""

__version__ = "0.1.0"
