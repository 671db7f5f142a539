"""float16 and bfloat16 calls through the numba backend's ``cast`` hook against the
same calls with the hook declined (NumPy's and ml_dtypes' casts), as ratios to the
float32 call of the same values: medians of 9 rounds, interleaved in one process.

    python backends/numba/scripts/casts.py
"""

from __future__ import annotations

import statistics
import time

import ml_dtypes
import numpy as np

import softcore as sc
from softcore_numba import _ops
from softcore_numba._backend import backend

BF16 = np.dtype(ml_dtypes.bfloat16)


def calls_per_sample(f, target=0.02):
    f()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        if time.perf_counter() - t0 > target:
            return n
        n *= 2


def declined(op, x):
    def call():
        backend.cast = lambda src, dst: False
        try:
            return op(x)
        finally:
            backend.cast = _ops.cast

    return call


def main():
    rng = np.random.default_rng(0)
    for shape in [(8192, 1000), (64, 32000), (512, 64)]:
        x32 = (rng.standard_normal(shape) * 3).astype(np.float32)
        t = rng.integers(0, shape[1], shape[0])
        ops = {
            "softmax": lambda x: sc.softmax(x, backend="numba"),
            "log_softmax": lambda x: sc.log_softmax(x, backend="numba"),
            "ce_with_grad": lambda x, t=t: sc.cross_entropy_with_grad(
                x, t, backend="numba"
            ),
        }
        for name, op in ops.items():
            fns = {"float32": lambda op=op, x=x32: op(x)}
            for low, dt in (("float16", np.float16), ("bfloat16", BF16)):
                xl = x32.astype(dt)
                fns[f"{low} hook"] = lambda op=op, xl=xl: op(xl)
                fns[f"{low} declined"] = declined(op, xl)
            numbers = {k: calls_per_sample(f) for k, f in fns.items()}
            samples = {k: [] for k in fns}
            for _ in range(9):
                for k, f in fns.items():
                    t0 = time.perf_counter()
                    for _ in range(numbers[k]):
                        f()
                    samples[k].append((time.perf_counter() - t0) / numbers[k])
            med = {k: statistics.median(v) for k, v in samples.items()}
            ratios = "  ".join(
                f"{k} {med[k] / med['float32']:.2f}" for k in fns if k != "float32"
            )
            print(f"{name:13s} {shape[0]}x{shape[1]:<6d} {ratios}", flush=True)


if __name__ == "__main__":
    main()
