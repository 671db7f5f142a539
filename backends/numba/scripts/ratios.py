"""Speed of the numba backend as ratios to ``np.copyto`` of the same array.

Usage: ``python scripts/ratios.py [--threads 1 2] [--ops softmax ...] [--repeat 15]``

For each op, shape, dtype and thread count: the median time of the call through
the public API divided by the median time of ``np.copyto(out, x)`` into a
preallocated ``out`` (same process, interleaved). ``out=`` and allocating calls
are measured separately. No wall-clock number is asserted anywhere.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import softcore as sc

SHAPES = [(65536, 128), (8192, 1000), (1024, 32000), (64, 262144), (4096, 32768)]


def median_time(fn, repeat):
    fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument(
        "--ops", nargs="+", default=["softmax", "log_softmax", "logsumexp", "ce"]
    )
    ap.add_argument("--shapes", nargs="+", default=None)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    ap.add_argument("--repeat", type=int, default=11)
    args = ap.parse_args()
    shapes = SHAPES
    if args.shapes:
        shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes]
    be = sc.get_backend("numba")
    rng = np.random.default_rng(0)
    print(f"{'op':<14}{'shape':>14}{'dtype':>9}{'thr':>4}{'out=':>8}{'alloc':>8}")
    for shape in shapes:
        for dt in args.dtypes:
            x = (rng.standard_normal(shape) * 3).astype(dt)
            y = np.empty_like(x)
            t = rng.integers(0, shape[1], shape[0])
            for nt in args.threads:
                be.set_num_threads(nt)
                for op in args.ops:
                    if op == "ce":
                        f_out = None
                        f_alloc = lambda: sc.cross_entropy_with_grad(
                            x, t, backend="numba"
                        )
                    elif op == "logsumexp":
                        f_out = None
                        f_alloc = lambda: sc.logsumexp(x, backend="numba")
                    else:
                        fn = getattr(sc, op)
                        f_out = lambda fn=fn: fn(x, out=y, backend="numba")
                        f_alloc = lambda fn=fn: fn(x, backend="numba")
                    tc = median_time(lambda: np.copyto(y, x), args.repeat)
                    r_out = (
                        median_time(f_out, args.repeat) / tc if f_out else float("nan")
                    )
                    tc2 = median_time(lambda: np.copyto(y, x), args.repeat)
                    r_al = median_time(f_alloc, args.repeat) / ((tc + tc2) / 2)
                    print(
                        f"{op:<14}{'x'.join(map(str, shape)):>14}{dt:>9}{nt:>4}"
                        f"{r_out:>8.2f}{r_al:>8.2f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
