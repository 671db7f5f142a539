"""``python -m softcore info``: what is installed and how it would run."""

from __future__ import annotations

import os
import platform
import sys

import numpy as np

import softcore
from softcore import _registry

_THREAD_VARS = (
    "SOFTCORE_BACKEND",
    "NUMBA_NUM_THREADS",
    "NUMBA_THREADING_LAYER",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
)


def main(argv: list[str]) -> int:
    if argv:
        print("usage: python -m softcore info", file=sys.stderr)
        return 2
    print(
        f"softcore {softcore.__version__}  (Python {platform.python_version()}, "
        f"NumPy {np.__version__}, {platform.machine()}, {os.cpu_count()} CPUs)"
    )
    print("\nbackends (highest priority first):")
    rows = softcore.list_backends()
    width = max([len(r.name) for r in rows] + [4])
    for r in rows:
        state = "available" if r.available is True else f"unavailable: {r.available}"
        threads = ""
        if r.available is True and r.threaded:
            obj = softcore.get_backend(r.name)
            getter = getattr(obj, "get_num_threads", None)
            if getter is not None:
                threads = f", {getter()} threads"
        print(
            f"  {r.name:<{width}}  {r.version:<10} priority {r.priority:>4}  "
            f"{state}{threads}  [{r.source}]"
        )
        if r.available is True:
            for line in _details(softcore.get_backend(r.name)):
                print(f"  {'':<{width}}  {line}")
    try:
        default = _registry.get_backend().name
    except Exception as exc:  # report, do not crash the report
        default = f"none ({exc})"
    print(f"\ndefault for NumPy arrays: {default}")
    print("\nenvironment:")
    for var in _THREAD_VARS:
        print(f"  {var}={os.environ.get(var, '')}")
    return 0


def _details(backend: object) -> list[str]:
    """The lines of a backend's optional ``describe()``: ``key: value`` each
    (how it will run: threading layer, kernel cache, device), or why it failed."""
    describe = getattr(backend, "describe", None)
    if describe is None:
        return []
    try:
        facts = describe()
    except Exception as exc:  # report, do not crash the report
        return [f"(describe failed: {type(exc).__name__}: {exc})"]
    return [f"{key}: {value}" for key, value in dict(facts).items()]
