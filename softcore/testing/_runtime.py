"""Run-time state of the kit: which backend is under test and how to move arrays.

The pytest plugin fills :data:`CONFIG` at configure time, before the suite's modules
are imported, so that decorators read the right ``max_examples``.  Results that the
kit measures (maximum errors per op and dtype) are collected in :data:`ACCURACY` and
printed in the terminal summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_MAX_EXAMPLES = 25


@dataclass
class Config:
    backend: str | None = None
    max_examples: int = DEFAULT_MAX_EXAMPLES
    report_accuracy: bool = False


CONFIG = Config()


@dataclass
class AccuracyRecord:
    """Largest normalised error seen, per (op, output, dtype), and SciPy's."""

    worst: dict[tuple[str, str, str], float] = field(default_factory=dict)
    scipy: dict[tuple[str, str, str], float] = field(default_factory=dict)

    def note(self, op: str, output: str, dtype: str, err: float) -> None:
        key = (op, output, dtype)
        if not err <= self.worst.get(key, -1.0):
            self.worst[key] = err

    def note_scipy(self, op: str, output: str, dtype: str, err: float) -> None:
        key = (op, output, dtype)
        if not err <= self.scipy.get(key, -1.0):
            self.scipy[key] = err


ACCURACY = AccuracyRecord()


def to_backend(backend: Any, a: Any) -> Any:
    """``a`` (a NumPy array or None) as an array of the backend's array module.

    For NumPy backends this keeps the very object, so layouts survive. Object and
    string arrays, which device array libraries do not hold (``cupy.asarray``
    raises ``ValueError`` for them), stay on the host: a call given one must reject
    it with a ``TypeError`` like any other input it cannot take.
    """
    if a is None or not isinstance(a, np.ndarray):
        return a
    xp = backend.xp
    if xp is np or a.dtype.kind not in "biufc":
        return a
    return xp.asarray(a)


def to_host(r: Any) -> Any:
    """A result brought back to a NumPy array (0-d for scalars)."""
    if r is None:
        return None
    get = getattr(r, "get", None)
    if get is not None and not isinstance(r, np.generic | np.ndarray):
        r = get()
    return np.asarray(r)
