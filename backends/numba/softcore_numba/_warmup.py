"""Compile every kernel ahead of its first call, into the on-disk cache.

A kernel is otherwise compiled on its first call: a second or more per op, dtype
and driver, ten or more for a first ``cross_entropy_with_grad``. ``precompile``
compiles each driver ``_ops`` may pick, for float32 and float64, with the argument
types ``_ops`` passes (what the core hands over), by ``Dispatcher.compile``: nothing
runs, and the code lands in the same cache a first call would read. So are the
float16/bfloat16 conversions of ``_casts`` and the 16-bit rows of ``_rows16``.
A read-only array is its own type to numba, but the core hands every input over
writeable (a read-only one as a writeable view of its memory, no copy:
``softcore._validate._writable``), so each driver has one variant per dtype.

``jobs`` processes (numba compiles on one core) take the drivers one at a time
from a counter file they share, the dearest families first (a job that drew a
long driver last kept the others waiting), each driver's variants in one
process. numba's cache index is read, extended and written back without a lock
(numba issue 10128): two processes saving overloads of one function at once can
lose an entry, or give two overloads one data file (and load the wrong code
later). The drivers' helpers are shared, so each job takes a lock file in the
cache directory around every save; without ``fcntl`` (Windows) the jobs run one
at a time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

# Driver suffixes, in the order _ops names them, and each family's argument types:
# "X2" an array of the logits' dtype in 2-D (an input or an output: the core
# hands both over writeable), "X1" in 1-D, "X3" in 3-D; "F1" float64 1-D, "I1"
# int64 1-D; "f" float64, "i" int64, "b" bool.
_ROWS = ("ser", "par", "split", "short_ser", "short_par", "grouped_ser", "grouped_par")
_FUSED = ("rows", "grouped", "short")  # the fused small cross-entropy's entry points
_FAMILIES = {  # the dearest to compile first
    "cross_entropy_grad": (_ROWS, ("X2", "I1", "F1", "F1", "F1", "f", "F1", "X2")),
    "cross_entropy_prob_grad": (_ROWS, ("X2", "X2", "f", "F1", "f", "F1", "X2")),
    "cross_entropy_prob": (_ROWS, ("X2", "X2", "f", "F1", "F1")),
    "softmax": (_ROWS, ("X2", "X2")),
    "log_softmax": (_ROWS, ("X2", "X2")),
    "cross_entropy": (_ROWS, ("X2", "I1", "F1", "F1", "F1", "F1")),
    "jacobian": (("ser", "par"), ("X2", "X3", "b")),
    "logsumexp": (_ROWS, ("X2", "X1")),
    "logsumexp_weighted": (("ser", "par"), ("X2", "X2", "X1", "X1")),
    "logsumexp_weighted_short": (("ser", "par"), ("X2", "X2", "X1", "X1")),
    "softmax_backward": (("ser", "par"), ("X2", "X2", "X2")),
    "log_softmax_backward": (("ser", "par"), ("X2", "X2", "X2")),
    "cross_entropy_index_sum": (_FUSED, ("X2", "I1", "F1", "i", "f")),
    "cross_entropy_index_grad_sum": (
        _FUSED,
        ("X2", "I1", "F1", "i", "f", "b", "X2"),
    ),
}
DTYPES = ("float32", "float64")
# Drivers _ops never picks in float64: the class-index loss alone groups float64
# rows only in a serial call (probability targets group short float64 rows in
# calls to CE_GROUP_MAX_BYTES, threaded too).
_NOT_FLOAT64 = {"cross_entropy_grouped_par"}


def _signature(codes: tuple[str, ...], dtype: str) -> tuple:
    """The argument types of ``codes`` (arrays writeable and C-contiguous)."""
    from numba import types

    x = getattr(types, dtype)

    def one(code):
        if code[0] == "X":
            return types.Array(x, int(code[1]), "C")
        return {
            "F1": types.Array(types.float64, 1, "C"),
            "I1": types.Array(types.int64, 1, "C"),
            "f": types.float64,
            "i": types.int64,
            "b": types.boolean,
        }[code]

    return tuple(one(c) for c in codes)


def _sixteen_bit_entries() -> list[tuple[str, str, tuple]]:
    """The float16/bfloat16 drivers, on uint16 patterns, listed under float32:
    the conversions of ``_casts`` (``_ops.cast``: 16-bit patterns to float32,
    float32 to 16-bit patterns) and the 16-bit rows of ``_rows16``
    (``_ops.low_precision_rows``)."""
    from numba import types

    f32 = types.Array(types.float32, 1, "C")
    u16 = types.Array(types.uint16, 1, "C")
    u2d = types.Array(types.uint16, 2, "C")
    i1, f1 = types.Array(types.int64, 1, "C"), types.Array(types.float64, 1, "C")
    b, i, f = types.boolean, types.int64, types.float64
    out = []
    for suffix in ("ser", "par"):
        out.append((f"widen_{suffix}", "float32", (u16, f32, b)))
        out.append((f"narrow_{suffix}", "float32", (f32, u16, b)))
        # 16-bit rows in, 16-bit rows out (softmax, log_softmax)
        out.append((f"rows16_{suffix}", "float32", (u2d, u2d, b, i, b)))
        # logsumexp: 16-bit rows in, 16-bit values out
        out.append((f"lse16_{suffix}", "float32", (u2d, u16, b, i)))
        # class-index cross-entropy: 16-bit logits and gradient
        rest = (f, f1, u2d, b, i, b)
        out.append((f"ce16_{suffix}", "float32", (u2d, i1, f1, f1, f1, *rest)))
        # probability targets: 16-bit or float32
        for t in (u2d, types.Array(types.float32, 2, "C")):
            sig = (u2d, t, f, f1, f, f1, u2d, b, i, b)
            out.append((f"cep16_{suffix}", "float32", sig))
        # backward: incoming gradient, saved output, result
        out.append((f"back16_{suffix}", "float32", (u2d, u2d, u2d, b, b)))
    return out


def driver(name: str):
    """The jitted driver ``name`` of ``_kernels``, ``_casts`` or ``_rows16``."""
    from . import _ops

    for module in (_ops.K, _ops.C, _ops.R):
        found = getattr(module, name, None)
        if found is not None:
            return found
    raise AttributeError(name)


def entries() -> list[tuple[str, str, tuple]]:
    """``(driver name, dtype, argument types)`` for every driver and dtype _ops
    may call it with: the row kernels' families, then the 16-bit drivers
    (:func:`_sixteen_bit_entries`)."""
    from . import _ops

    K = _ops.K
    out = []
    for family, (suffixes, codes) in _FAMILIES.items():
        for suffix in suffixes:
            name = f"{family}_{suffix}"
            if not hasattr(K, name):
                continue  # this op has no such mode
            for dtype in DTYPES:
                if dtype == "float64" and name in _NOT_FLOAT64:
                    continue
                out.append((name, dtype, _signature(codes, dtype)))
    return out + _sixteen_bit_entries()


def by_driver() -> dict[str, list[tuple]]:
    """Each driver's argument types (:func:`entries` grouped), in the order the
    jobs take the drivers: the families in ``_FAMILIES``' order, the dearest to
    compile first (so no job is left with a long one at the end)."""
    out: dict[str, list[tuple]] = {}
    for name, _dtype, sig in entries():
        out.setdefault(name, []).append(sig)
    return out


def _lock_cache_saves() -> None:
    """Make this process's numba cache saves take an exclusive lock file in the
    cache directory, so jobs running at once extend an index one at a time."""
    import fcntl

    from numba.core import caching

    from . import _runtime

    lock_path = os.path.join(_runtime.cache_dir(), ".softcore-warmup.lock")
    try:
        os.makedirs(_runtime.cache_dir(), exist_ok=True)
        open(lock_path, "a").close()
    except OSError:  # numba's own locators then: one lock for this user's jobs
        lock_path = os.path.join(
            tempfile.gettempdir(), f"softcore-warmup-{os.getuid()}.lock"
        )
    save = caching.IndexDataCacheFile.save

    def locked_save(self, key, data):
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                save(self, key, data)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    caching.IndexDataCacheFile.save = locked_save


def _take(queue: str) -> int:
    """The next driver's index from the counter file ``queue`` that the jobs share
    (read and advanced under its lock)."""
    import fcntl

    with open(queue, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            i = int(f.read() or 0)
            f.seek(0)
            f.write(str(i + 1))
            f.truncate()
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
    return i


def compile_drivers(queue: str | None = None, job: int = 0, jobs: int = 1) -> int:
    """Compile drivers with every entry of each, one at a time: all of them, or,
    as job ``job`` of ``jobs``, whichever the shared counter file ``queue`` hands
    out next; the number of entries compiled. A line on stderr for each driver
    done (the whole takes minutes)."""
    import time

    from . import _runtime

    _runtime._notice_due = False  # the lines below say what is compiled
    if queue is not None:
        _lock_cache_saves()
    by_name = by_driver()
    names = list(by_name)
    who = f"job {job + 1} of {jobs}, " if jobs > 1 else ""
    done = 0
    k = -1
    while True:
        k = _take(queue) if queue is not None else k + 1
        if k >= len(names):
            return done
        name = names[k]
        t0 = time.perf_counter()
        for sig in by_name[name]:
            driver(name).compile(sig)
        done += len(by_name[name])
        print(
            f"  numba {name}: {len(by_name[name])} kernels, "
            f"{time.perf_counter() - t0:.1f} s ({who}driver {k + 1} of {len(names)})",
            file=sys.stderr,
            flush=True,
        )


def precompile(jobs: int | None = None) -> str:
    """Compile every driver for both dtypes into the cache, in ``jobs``
    processes (default: one per CPU, at most 4); a line saying what was done."""
    jobs = max(1, jobs or min(4, os.cpu_count() or 1))
    try:
        import fcntl  # noqa: F401
    except ImportError:  # no lock file for the jobs' cache saves: one at a time
        jobs = 1
    from . import _runtime

    _runtime.ensure()  # stale kernels go now, before any job saves a new one
    pruned = _runtime.prune_folders()
    n = len(entries())
    if jobs == 1:
        compile_drivers()
    else:
        fd, queue = tempfile.mkstemp(prefix="softcore-warmup-", suffix=".next")
        os.close(fd)  # empty: the first driver is number 0
        try:
            procs = [
                subprocess.Popen(
                    [sys.executable, "-m", "softcore_numba._warmup", queue]
                    + [str(i), str(jobs)]
                )
                for i in range(jobs)
            ]
            failed = [p.args for p in procs if p.wait() != 0]
        finally:
            os.unlink(queue)
        if failed:
            raise RuntimeError(f"precompiling failed in {len(failed)} of {jobs} jobs")
    line = (
        f"{n} kernels (drivers x float32, float64) "
        f"compiled or loaded, cache "
        f"{_runtime.cache_dir()}, {jobs} job{'s' if jobs > 1 else ''}"
    )
    if pruned:
        line += f"; removed {len(pruned)} folders of installs that are gone"
    return line


if __name__ == "__main__":  # one job of precompile: QUEUE JOB JOBS
    compile_drivers(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
