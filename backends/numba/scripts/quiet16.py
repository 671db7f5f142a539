"""The 16-bit forward blocks with quiet conversions (``_casts._widen_quiet``,
``_narrow_quiet``: one F16C instruction an element) against the exact ones
(``_widen``, ``_narrow``: a signalling NaN's bits repaired), in one process,
interleaved, medians of 11 rounds. The exact drivers are ``_rows16``'s own
source with the exact conversions imported in place of the quiet ones
(compiled here, not cached); the script checks both give the same bits first.

    python backends/numba/scripts/quiet16.py [--shapes 64x100,4096x64,8192x1000]
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import statistics
import sys
import time

import ml_dtypes
import numpy as np

from softcore_numba import _ops
from softcore_numba import _rows16 as quiet

QUIET_IMPORT = "from ._casts import _narrow_quiet, _widen_quiet"


def exact_module():
    """``_rows16`` recompiled with ``_widen`` and ``_narrow``."""
    source = open(quiet.__file__).read()
    assert QUIET_IMPORT in source
    assert '"cache": True' in source
    source = source.replace(
        QUIET_IMPORT,
        "from ._casts import _narrow as _narrow_quiet, _widen as _widen_quiet",
    ).replace('"cache": True', '"cache": False')
    name = "softcore_numba._rows16_exact"
    spec = importlib.util.spec_from_loader(name, loader=None)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "softcore_numba"
    sys.modules[name] = mod
    exec(compile(source, name, "exec"), mod.__dict__)
    return mod


def interleaved(exact, fast, size):
    reps = max(3, int(2e6 // size))
    te, tq = [], []
    for _ in range(11):
        for f, ts in ((exact, te), (fast, tq)):
            t0 = time.perf_counter()
            for _ in range(reps):
                f()
            ts.append((time.perf_counter() - t0) / reps)
    return statistics.median(te) * 1e6, statistics.median(tq) * 1e6


def cases(x, rng):
    """``(name, driver, arguments after the input, result)`` for softmax,
    log_softmax and the class-index loss with its gradient, as ``_ops``
    would run them."""
    n, c = x.shape
    ser = n * c <= _ops.SERIAL_MAX
    half = x.dtype == np.float16
    for log in (False, True):
        yield (
            "log_softmax" if log else "softmax",
            "rows16_ser" if ser else "rows16_par",
            lambda out, log=log: (out, half, _ops._mode16(c, log), log),
        )
    t = rng.integers(0, c, n)
    ab = (np.ones(n), np.zeros(n), np.ones(c), 1.0)
    yield (
        "CE with grad",
        "ce16_ser" if ser else "ce16_par",
        lambda out: (t, *ab, np.empty(n), out, half, _ops._ce_mode16(c), True),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default="64x100,512x64,4096x64,8192x1000,65536x128")
    shapes = [tuple(map(int, s.split("x"))) for s in ap.parse_args().shapes.split(",")]
    exact = exact_module()
    rng = np.random.default_rng(0)
    for low in (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)):
        for n, c in shapes:
            x = (rng.standard_normal((n, c)) * 3).astype(low)
            xs = x.view(np.uint16)
            for name, driver, rest in cases(x, rng):
                a, b = np.empty_like(xs), np.empty_like(xs)
                fe = functools.partial(getattr(exact, driver), xs, *rest(a))
                fq = functools.partial(getattr(quiet, driver), xs, *rest(b))
                fe()
                fq()
                assert a.tobytes() == b.tobytes(), name
                me, mq = interleaved(fe, fq, n * c)
                print(
                    f"{low.name:9s} {n}x{c:<7d} {name:13s} exact {me:9.1f} us"
                    f"  quiet {mq:9.1f} us  {mq / me:.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
