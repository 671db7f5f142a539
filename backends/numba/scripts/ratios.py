"""Speed of the numba backend as ratios to a same-size floor, medians.

Usage::

    python scripts/ratios.py                       # everything, 1 and 2 threads
    python scripts/ratios.py --only rowwise --threads 2 --repeat 21
    python scripts/ratios.py --torch               # also torch CPU, same process

Floors (timed interleaved with the op, in the same process):

* row-wise ops and cross-entropy: ``np.copyto(out, x)`` into a preallocated ``out``;
* Jacobian: ``np.empty((N, C, C))`` plus ``fill`` (allocating and writing J once);
* small call ``32 x 10``: naive NumPy softmax (``e = exp(x - max); e / sum``);
* linear cross-entropy: the three NumPy GEMMs (``X W^T``, ``G W``, ``G^T X``).

Calls go through the public API (``backend="numba"``), so the core's validation
and dispatch are included. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import softcore as sc

SHAPES = [
    (65536, 10),
    (65536, 128),
    (8192, 1000),
    (1024, 32000),
    (64, 262144),
    (4096, 32768),
]
JAC_SHAPES = [(4096, 64), (256, 512), (16, 2048)]


def _ratio(op, floor, repeat):
    """median(op) / median(floor), interleaved so both see the same load."""
    op()
    floor()
    t_op, t_floor = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        floor()
        t_floor.append(time.perf_counter() - t)
        t = time.perf_counter()
        op()
        t_op.append(time.perf_counter() - t)
    return float(np.median(t_op) / np.median(t_floor)), float(np.median(t_op))


def _row(name, shape, dtype, nt, value, extra=""):
    shape_s = "x".join(map(str, shape))
    print(f"{name:<26}{shape_s:>16}{dtype:>9}{nt:>4}{value:>8.2f}  {extra}", flush=True)


def rowwise(args, nt, torch):
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        for dt in args.dtypes:
            x = (rng.standard_normal(shape) * 3).astype(dt)
            y = np.empty_like(x)
            t = rng.integers(0, shape[1], shape[0])

            def copy(x=x, y=y):
                np.copyto(y, x)

            for op in ("softmax", "log_softmax"):
                fn = getattr(sc, op)
                r, _ = _ratio(lambda fn=fn, x=x, y=y: fn(x, out=y), copy, args.repeat)
                _row(f"{op} out=", shape, dt, nt, r)
                r, _ = _ratio(lambda fn=fn, x=x: fn(x), copy, args.repeat)
                _row(f"{op} alloc", shape, dt, nt, r)
            r, _ = _ratio(lambda x=x: sc.logsumexp(x), copy, args.repeat)
            _row("logsumexp", shape, dt, nt, r)
            r, _ = _ratio(
                lambda x=x, t=t: sc.cross_entropy_with_grad(x, t), copy, args.repeat
            )
            _row("cross_entropy_with_grad", shape, dt, nt, r)
            if torch is not None:
                tx = torch.from_numpy(x)
                ty = torch.empty_like(tx)
                tt = torch.from_numpy(t)
                r, _ = _ratio(
                    lambda tx=tx, ty=ty: torch.softmax(tx, -1, out=ty),
                    copy,
                    args.repeat,
                )
                _row("torch softmax out=", shape, dt, nt, r)
                r, _ = _ratio(lambda tx=tx: torch.softmax(tx, -1), copy, args.repeat)
                _row("torch softmax alloc", shape, dt, nt, r)

                def torch_ce(tx=tx, tt=tt):
                    z = tx.detach().requires_grad_()
                    loss = torch.nn.functional.cross_entropy(z, tt)
                    loss.backward()

                r, _ = _ratio(torch_ce, copy, args.repeat)
                _row("torch CE fwd+bwd", shape, dt, nt, r)


def jacobian(args, nt, torch):
    rng = np.random.default_rng(1)
    for n, c in JAC_SHAPES:
        for dt in args.dtypes:
            x = rng.standard_normal((n, c)).astype(dt)

            def fill(n=n, c=c, dt=dt):
                np.empty((n, c, c), dt).fill(1.0)

            r, _ = _ratio(lambda x=x: sc.softmax_jacobian(x), fill, args.repeat)
            _row("softmax_jacobian", (n, c, c), dt, nt, r)


def small(args, nt, torch):
    rng = np.random.default_rng(2)
    for dt in args.dtypes:
        x = rng.standard_normal((32, 10)).astype(dt)

        def naive(x=x):
            e = np.exp(x - x.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)

        r, t_op = _ratio(lambda x=x: sc.softmax(x), naive, args.repeat * 50)
        _row("softmax small", x.shape, dt, nt, r, f"{t_op * 1e6:.1f} us")
        t = rng.integers(0, 10, 32)
        r, t_op = _ratio(
            lambda x=x, t=t: sc.cross_entropy_with_grad(x, t), naive, args.repeat * 50
        )
        _row("CE with grad small", x.shape, dt, nt, r, f"{t_op * 1e6:.1f} us")


def linear(args, nt, torch):
    rng = np.random.default_rng(3)
    n, d, c = 4096, 512, 32000
    dt = "float32"
    x = rng.standard_normal((n, d)).astype(dt)
    w = (rng.standard_normal((c, d)) * 0.05).astype(dt)
    t = rng.integers(0, c, n)
    z = np.empty((n, c), dt)
    dx = np.empty((n, d), dt)
    dw = np.empty((c, d), dt)

    def gemms():
        np.matmul(x, w.T, out=z)
        np.matmul(z, w, out=dx)
        np.matmul(z.T, x, out=dw)

    r, _ = _ratio(
        lambda: sc.linear_cross_entropy_with_grad(x, w, t),
        gemms,
        max(5, args.repeat // 2),
    )
    _row("linear_ce_with_grad", (n, d, c), dt, nt, r, "vs 3 GEMMs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    ap.add_argument("--repeat", type=int, default=11)
    ap.add_argument(
        "--only", nargs="+", default=["rowwise", "jacobian", "small", "linear"]
    )
    ap.add_argument("--torch", action="store_true", help="also time torch CPU")
    args = ap.parse_args()
    torch = None
    if args.torch:
        import torch
    sc.set_backend("numba")
    be = sc.get_backend()
    print(f"{'op':<26}{'shape':>16}{'dtype':>9}{'thr':>4}{'ratio':>8}")
    for nt in args.threads:
        be.set_num_threads(nt)
        if torch is not None:
            torch.set_num_threads(nt)
        for part in args.only:
            globals()[part](args, nt, torch)


if __name__ == "__main__":
    main()
