"""float16 and bfloat16 calls through the numba backend, as ratios to the float32
call of the same values: as they run (``low_precision_rows`` for softmax,
log_softmax and their backward passes, the ``cast`` hook otherwise), with
``low_precision_rows`` declined (the cast hook: widen, the float32 kernel,
round), with both declined (NumPy's and ml_dtypes' casts), and PyTorch's 16-bit
call where PyTorch is installed. Medians of 9 rounds, interleaved in one
process.

    python backends/numba/scripts/casts.py [--shapes 8192x1000,64x32000,512x64]
"""

from __future__ import annotations

import argparse
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


def declining(op, x, *hooks):
    def call():
        for h in hooks:
            setattr(backend, h, lambda *args: False)
        try:
            return op(x)
        finally:
            backend.cast = _ops.cast
            backend.low_precision_rows = _ops.low_precision_rows

    return call


def torch_calls(name, x, t):
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    if x.dtype == BF16:
        tx = torch.from_numpy(x.view(np.uint16)).view(torch.bfloat16)
    else:
        tx = torch.from_numpy(x)
    if name == "softmax":
        return lambda: torch.softmax(tx, -1)
    if name == "log_softmax":
        return lambda: torch.log_softmax(tx, -1)
    if name in ("softmax_backward", "log_softmax_backward"):
        tp = torch.softmax(tx.float(), -1)
        if name == "softmax_backward":
            tp = tp.to(tx.dtype)
            return lambda: torch._softmax_backward_data(tx, tp, -1, tx.dtype)
        tp = torch.log(tp).to(tx.dtype)
        return lambda: torch._log_softmax_backward_data(tx, tp, -1, tx.dtype)
    tt = torch.from_numpy(t)
    xg = tx.clone().requires_grad_(True)

    def ce():
        xg.grad = None
        loss = F.cross_entropy(xg, tt)
        loss.backward()
        return loss, xg.grad

    return ce


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shapes", default="8192x1000,64x32000,512x64")
    shapes = [tuple(map(int, s.split("x"))) for s in p.parse_args().shapes.split(",")]
    rng = np.random.default_rng(0)
    for shape in shapes:
        x32 = (rng.standard_normal(shape) * 3).astype(np.float32)
        t = rng.integers(0, shape[1], shape[0])
        # backward passes: the incoming gradient is x, the saved output x's
        # softmax (log_softmax), in x's dtype
        p32 = sc.softmax(x32, backend="numba")
        sp = {np.dtype(d): p32.astype(d) for d in (np.float32, np.float16, BF16)}
        slp = {d: np.log(p32).astype(d) for d in sp}
        ops = {
            "softmax": lambda x: sc.softmax(x, backend="numba"),
            "log_softmax": lambda x: sc.log_softmax(x, backend="numba"),
            "softmax_backward": lambda x, sp=sp: sc.softmax_backward(
                x, sp[x.dtype], backend="numba"
            ),
            "log_softmax_backward": lambda x, slp=slp: sc.log_softmax_backward(
                x, slp[x.dtype], backend="numba"
            ),
            "ce_with_grad": lambda x, t=t: sc.cross_entropy_with_grad(
                x, t, backend="numba"
            ),
        }
        for name, op in ops.items():
            fns = {"float32": lambda op=op, x=x32: op(x)}
            for low, dt in (("f16", np.float16), ("bf16", BF16)):
                xl = x32.astype(dt)
                fns[low] = lambda op=op, xl=xl: op(xl)
                if name != "ce_with_grad":
                    fns[f"{low} cast-hook"] = declining(op, xl, "low_precision_rows")
                fns[f"{low} numpy-casts"] = declining(
                    op, xl, "low_precision_rows", "cast"
                )
                peer = torch_calls(name, xl, t)
                if peer is not None:
                    fns[f"{low} torch"] = peer
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
