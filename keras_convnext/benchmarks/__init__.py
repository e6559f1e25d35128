"""Benchmarks that print figures (never timed tests): ``python -m keras_convnext.benchmarks.<name>``."""
