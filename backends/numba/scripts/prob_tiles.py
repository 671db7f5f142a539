"""Probability-target cross-entropy on narrow rows: the transposed tiles
(``cross_entropy_prob_short_*``, ``cross_entropy_prob_grad_short_*``) against
the kernels those rows took before them (the grouped statistics or a row at a
time for the loss alone, a row at a time with the gradient), called directly,
interleaved in one process, medians of the rounds. Each pair is checked
first: the losses agree to a few ULPs, and the tiles' loss alone is the bits
of their loss with gradient.

With ``--api`` it times public calls instead (``softcore.cross_entropy`` and
``cross_entropy_with_grad``, ``backend="numba"``), interleaving the tiles on,
the tiles off (``_ops.NARROW_PROB_C`` set to 0) and PyTorch's
``torch.nn.functional.cross_entropy`` (with ``backward`` for the gradient).

Usage::

    python scripts/prob_tiles.py                      # the default widths
    python scripts/prob_tiles.py --rows 4096 --classes 10,16,24 --rounds 21
    python scripts/prob_tiles.py --api --rows 65536,512 --classes 10,16,20

The drivers are picked as ``_ops`` picks them (serial or threaded by size; the
old loss alone grouped or a row at a time). Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np

from softcore_numba import _ops


def _drivers(x, grad):
    """(old, new) drivers for ``x``, picked as ``_ops`` picks them: serial or
    threaded by size, and for the old loss alone the grouped statistics or a
    row at a time by ``_ops._prob_loss_grouped``."""
    if grad:
        old, new = _ops._CE_PROB_GRAD, _ops._CE_PROB_GRAD_SHORT
    else:
        old = _ops._CE_PROB_GROUPED if _ops._prob_loss_grouped(x) else _ops._CE_PROB
        new = _ops._CE_PROB_SHORT
    return _ops._pick(old, x), _ops._pick(new, x)


def _time(f, calls):
    t0 = time.perf_counter()
    for _ in range(calls):
        f()
    return (time.perf_counter() - t0) / calls


def _api(n, c, dt, rounds, rng):
    """Public calls, tiles on / off / PyTorch, interleaved: the medians of
    new / old and new / PyTorch, the loss alone and with its gradient."""
    import torch

    import softcore as sc

    x = (rng.standard_normal((n, c)) * 3).astype(dt)
    t = rng.random((n, c)).astype(dt)
    t /= t.sum(1, keepdims=True)
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)

    def torch_grad():
        xr = xt.clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(xr, tt).backward()

    calls = max(1, 3_000_000 // (n * c))
    narrow = _ops.NARROW_PROB_C
    out = []
    for ours, theirs in [
        (lambda: sc.cross_entropy(x, t, backend="numba"),
         lambda: torch.nn.functional.cross_entropy(xt, tt)),
        (lambda: sc.cross_entropy_with_grad(x, t, backend="numba"), torch_grad),
    ]:  # fmt: skip
        ours()
        theirs()
        old, peer = [], []
        try:
            for _ in range(rounds):
                _ops.NARROW_PROB_C = 0
                to = _time(ours, calls)
                _ops.NARROW_PROB_C = narrow
                tn = _time(ours, calls)
                tp = _time(theirs, calls)
                old.append(tn / to)
                peer.append(tn / tp)
        finally:
            _ops.NARROW_PROB_C = narrow
        out += [float(np.median(old)), float(np.median(peer))]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default="65536,4096,512")
    p.add_argument("--classes", default="4,8,10,12,16,20,24,32")
    p.add_argument("--dtype", default="float32,float64")
    p.add_argument("--rounds", type=int, default=11)
    p.add_argument("--api", action="store_true", help="public calls and PyTorch")
    a = p.parse_args()
    rng = np.random.default_rng(0)
    if a.api:
        head = "loss: new/old new/torch  grad: new/old new/torch"
        print(f"{'shape':>10} {'dtype':>8}  {head}")
        for dt in a.dtype.split(","):
            for n in (int(v) for v in a.rows.split(",")):
                for c in (int(v) for v in a.classes.split(",")):
                    r = _api(n, c, dt, a.rounds, rng)
                    print(
                        f"{f'{n}x{c}':>10} {dt:>8}  {r[0]:13.2f} {r[1]:9.2f}"
                        f"  {r[2]:13.2f} {r[3]:9.2f}",
                        flush=True,
                    )
        return
    print(f"{'shape':>10} {'dtype':>8} {'loss new/old':>13} {'grad new/old':>13}")
    for dt in a.dtype.split(","):
        for n in (int(v) for v in a.rows.split(",")):
            for c in (int(v) for v in a.classes.split(",")):
                x = (rng.standard_normal((n, c)) * 3).astype(dt)
                t = rng.random((n, c)).astype(dt)
                t /= t.sum(1, keepdims=True)
                cw = np.ones(c)
                lo = np.empty(n)
                g = np.empty_like(x)
                calls = max(1, 2_000_000 // (n * c))
                ratios = []
                for grad in (False, True):
                    old, new = _drivers(x, grad)
                    args = (x, t, 0.1, cw, 0.5, lo, g) if grad else (x, t, 0.1, cw, lo)
                    run_old = functools.partial(old, *args)
                    run_new = functools.partial(new, *args)
                    run_old()
                    ref = lo.copy()
                    run_new()
                    tol = 1e-12 if dt == "float64" else 1e-5
                    np.testing.assert_allclose(lo, ref, rtol=tol, atol=tol)
                    if grad:
                        loss_alone = np.empty(n)
                        _drivers(x, False)[1](x, t, 0.1, cw, loss_alone)
                        assert np.array_equal(loss_alone, lo), "loss bits differ"
                    rs = []
                    for _ in range(a.rounds):
                        to = _time(run_old, calls)
                        tn = _time(run_new, calls)
                        rs.append(tn / to)
                    ratios.append(float(np.median(rs)))
                shape = f"{n}x{c}"
                print(f"{shape:>10} {dt:>8} {ratios[0]:13.2f} {ratios[1]:13.2f}")


if __name__ == "__main__":
    main()
