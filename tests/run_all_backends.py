"""Runs the test suite once per Keras backend, each in its own process, and fails if any run fails.

Usage: python tests/run_all_backends.py [BACKEND ...] [-- PYTEST_ARGS ...]

The tests marked ``once`` (they start every backend themselves, or check what no backend changes) run in the
last backend's session only; the others get ``--skip-once-tests``. The fast tier (no ``--run-large``) compiles JAX
programs at XLA's lowest optimisation level (``FAST_TIER_XLA_FLAGS``, unless ``XLA_FLAGS`` is set): its small models
are compile-bound, and it took the JAX session from 457 s to 380 s; the full tier (CI) keeps XLA's defaults, as
users run. Each session runs its test files over
``worker_count()`` processes (pytest-xdist): the JAX session is bound by XLA's single-threaded compiles, so two
processes on two cores halve it; ``-n 0`` among the pytest arguments runs in one process.
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

BACKENDS = ("tensorflow", "jax", "torch")
FAST_TIER_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
SUMMARY = re.compile(r"=+ (.*(passed|failed|error|skipped|no tests ran).*) in ([\d.]+)s")
COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?)")


def worker_count():
    """Processes per session: one per core, at most one per 8 GiB of memory (a JAX worker holds up to 6), at most 4.

    Example:
        >>> 1 <= worker_count() <= 4
        True
    """
    try:
        memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory_gib = 8
    return max(1, min(os.cpu_count() or 1, int(memory_gib // 8), 4))


def run(backend, pytest_args):
    """Runs pytest under ``backend``, echoing its output; returns (exit code, summary text, counts, seconds)."""
    print(f"\n######## KERAS_BACKEND={backend} ########", flush=True)
    start = time.perf_counter()
    parallel = [] if any(arg.startswith(("-n", "--numprocesses")) for arg in pytest_args) else [
        "-n", str(worker_count()), "--dist", "loadfile"]
    command = [sys.executable, "-m", "pytest", *parallel, *pytest_args]
    env = {**os.environ, "KERAS_BACKEND": backend}
    full_tier = any(arg in ("--run-large", "--run_large") for arg in pytest_args)
    if backend == "jax" and not full_tier and "XLA_FLAGS" not in env:
        env["XLA_FLAGS"] = FAST_TIER_XLA_FLAGS
    process = subprocess.Popen(
        command,
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    summary = "no pytest summary"
    for line in process.stdout:
        print(line, end="", flush=True)
        match = SUMMARY.search(line)
        if match:
            summary = match.group(1)
    code = process.wait()
    counts = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
    for number, kind in COUNT.findall(summary):
        counts["error" if kind.startswith("error") else kind] += int(number)
    return code, summary, counts, time.perf_counter() - start


def main(argv):
    if "--" in argv:
        split = argv.index("--")
        backends, pytest_args = argv[:split], argv[split + 1 :]
    else:
        backends, pytest_args = argv, []
    backends = backends or list(BACKENDS)
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        print(f"unknown backend(s) {unknown}; expected some of {BACKENDS}", file=sys.stderr)
        return 2
    results = {}
    for backend in backends:
        once = [] if backend == backends[-1] else ["--skip-once-tests"]
        results[backend] = run(backend, [*pytest_args, *once])
    print("\n######## summary ########")
    total = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
    for backend, (code, summary, counts, seconds) in results.items():
        print(f"{backend:<11} exit {code}  {seconds:6.0f} s  {summary}")
        for key in total:
            total[key] += counts[key]
    failed = total["failed"] + total["error"]
    print(f"total: {total['passed']} passed, {failed} failed, {total['skipped']} skipped")
    return 0 if all(code == 0 for code, *_ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
