# The closures below are timed inside the loop that defines them.
# ruff: noqa: B023
"""GPU benchmark of softcore-cupy: ratios to the memory-bandwidth floor and to peers.

    python backends/cupy/tools/bench_gpu.py [--quick] [--json FILE]

Every time is the median of CUDA-event timings (after warm-up) on one stream, and is
reported as a ratio to its floor, measured side by side in the same process:

* softmax / log_softmax / CE loss+grad: ``cupy.copyto`` of the same (N, C) array
  (one read + one write, the floor of a fused row kernel); logsumexp and the CE
  loss alone (one read: about half a copy), logsumexp with factors (two reads:
  a copy) and the backward ops (two reads and a write: 1.5 copies) are reported
  against the same copy;
* Jacobian: writing the (N, C, C) output once (``out.fill``);
* linear cross-entropy with grad: the three GEMMs it needs (logits, dX, dW) on the
  same shapes, through CuPy (cuBLAS);
* torch (when installed with CUDA): the same ops, to compare.

Both the kernel call with preallocated outputs (what the floor measures) and the
public, allocating API call are timed. ``--sweep`` also times the row kernels at every
threads-per-row choice (the launch parameter to tune), and the run ends with the
design's targets beside the worst ratio measured for each.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _timer(cupy, fn, *, warmup=3, reps=20):
    for _ in range(warmup):
        fn()
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    times = []
    for _ in range(reps):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop) * 1e-3)
    return statistics.median(times)


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _row_case(cupy, K, n, c, dtype):
    """Logits, targets, the copy floor and the row kernels on preallocated outputs."""
    rng = cupy.random.default_rng(0)
    x = (rng.standard_normal((n, c), dtype=cupy.float32) * 4).astype(dtype)
    out = cupy.empty_like(x)
    floor = _timer(cupy, lambda: cupy.copyto(out, x))
    t = rng.integers(0, c, n).astype(cupy.int64)
    a, b = cupy.ones(n), cupy.zeros(n)
    cw, loss = cupy.ones(c), cupy.empty(n)
    # the backward ops' saved outputs, as a forward pass leaves them, and a gradient
    lp, p = cupy.empty_like(x), cupy.empty_like(x)
    K.log_softmax_rows(x, lp)
    K.softmax_rows(x, p)
    g = rng.standard_normal((n, c), dtype=cupy.float32).astype(dtype)
    lse, sign = cupy.empty(n, dtype), cupy.empty(n, dtype)
    w = (rng.random((n, c), dtype=cupy.float32) * 2).astype(dtype)  # SciPy's b
    kernels = {
        "softmax": lambda: K.softmax_rows(x, out),
        "log_softmax": lambda: K.log_softmax_rows(x, out),
        "logsumexp": lambda: K.logsumexp_rows(x, lse),
        "logsumexp_weighted": lambda: K.logsumexp_weighted_rows(x, w, lse, sign),
        # one row of factors for every row (per-class factors): a row stride of 0
        "logsumexp_class_weighted": lambda: K.logsumexp_weighted_rows(
            x, w[:1], lse, sign
        ),
        "softmax_backward": lambda: K.softmax_backward_rows(g, p, out),
        "log_softmax_backward": lambda: K.log_softmax_backward_rows(g, lp, out),
        "ce_loss": lambda: K.cross_entropy_rows(x, t, a, b, cw, loss),
        "ce_loss_grad": lambda: K.cross_entropy_grad_rows(
            x, t, a, b, cw, 1 / n, loss, out
        ),
    }
    return x, t, floor, kernels, (g, p, w)


_STAGED_OPS = (
    "softmax",
    "log_softmax",
    "ce_loss_grad",
    "softmax_backward",
    "log_softmax_backward",
)


def _stages(K, x) -> bool:
    """Whether softmax of x stages part of its rows under the shipped launch."""
    c = x.shape[1]
    t = K.threads_per_row(c, x.dtype.itemsize, "softmax")
    variant = K._row_variant(c, x.dtype.itemsize, x)
    return K.stage_bytes("softmax", c, x.dtype.itemsize, t, variant) > 0


@contextlib.contextmanager
def _staging(K, on: bool):
    saved, K.STAGE = K.STAGE, on
    try:
        yield
    finally:
        K.STAGE = saved


@contextlib.contextmanager
def _without_hook(name: str):
    """The cupy backend without its optional hook ``name``: the core's own path."""
    import softcore_cupy

    cls = type(softcore_cupy.backend)
    hook = cls.__dict__[name]
    setattr(cls, name, None)
    try:
        yield
    finally:
        setattr(cls, name, hook)


def _core_plan():
    """The cupy backend without its cross_entropy_index_rows: the core's own plan."""
    return _without_hook("cross_entropy_index_rows")


def bench_rows(cupy, sc, K, shapes, dtypes, torch, results):
    for dtype in dtypes:
        for n, c in shapes:
            x, t, floor, kernels, (g, p, w) = _row_case(cupy, K, n, c, dtype)
            row = {
                "shape": [n, c],
                "dtype": str(x.dtype),
                "copy_s": floor,
                "copy_GBps": 2 * x.nbytes / floor / 1e9,
            }
            for op, call in kernels.items():
                row[op] = _timer(cupy, call) / floor
            # rows past the register cache: their tails kept in shared memory (as
            # shipped) against read again, side by side
            if _stages(K, x):
                with _staging(K, False):
                    for op in _STAGED_OPS:
                        row[f"{op}_reread"] = _timer(cupy, kernels[op]) / floor
            row["softmax_api"] = _timer(cupy, lambda: sc.softmax(x)) / floor
            # logsumexp with factors: the kernel's public call, and the core's
            # formula in CuPy operations (the backend without its hook) beside it
            row["logsumexp_weighted_api"] = (
                _timer(cupy, lambda: sc.logsumexp(x, b=w)) / floor
            )
            with _without_hook("logsumexp_weighted_rows"):
                row["logsumexp_weighted_formula_api"] = (
                    _timer(cupy, lambda: sc.logsumexp(x, b=w)) / floor
                )
            # the public call through the backend's cross_entropy_index_rows and
            # through the core's own plan, with every target kept and with one row
            # in eight ignored (a padded batch), side by side
            t_pad = t.copy()
            t_pad[::8] = -100
            for key, tt in (("ce_loss_grad_api", t), ("ce_padded_api", t_pad)):

                def public_ce():
                    sc.cross_entropy_with_grad(x, tt)

                row[key] = _timer(cupy, public_ce) / floor
                with _core_plan():
                    plan = _timer(cupy, public_ce)
                row[key.replace("_api", "_plan_api")] = plan / floor
            if torch is not None:
                tx = torch.as_tensor(x, device="cuda")
                tt = torch.as_tensor(t, device="cuda")

                def torch_ce():
                    xx = tx.detach().requires_grad_()
                    torch.nn.functional.cross_entropy(xx, tt).backward()

                tg = torch.as_tensor(g, device="cuda")
                tp = torch.as_tensor(p, device="cuda")
                row["torch_softmax"] = (
                    _timer(cupy, lambda: torch.softmax(tx, -1)) / floor
                )
                row["torch_logsumexp"] = (
                    _timer(cupy, lambda: torch.logsumexp(tx, -1)) / floor
                )
                tw = torch.as_tensor(w, device="cuda")
                row["torch_logsumexp_weighted"] = (
                    _timer(cupy, lambda: torch.logsumexp(tx + torch.log(tw), -1))
                    / floor
                )
                row["torch_softmax_backward"] = (
                    _timer(
                        cupy,
                        lambda: torch._softmax_backward_data(tg, tp, -1, tp.dtype),
                    )
                    / floor
                )
                row["torch_ce_fwd_bwd"] = _timer(cupy, torch_ce) / floor
            results.append(("rows", row))
            print(json.dumps(row), flush=True)


_TAIL_OPS = (
    "softmax",
    "log_softmax",
    "logsumexp",
    "ce_loss_grad",
    "softmax_backward",
    "log_softmax_backward",
)
TAIL_BATCHES = (1, 2, 4)


@contextlib.contextmanager
def _tail_batch(K, itemsize: int, b: int):
    saved = dict(K.TAIL_BATCH)
    K.TAIL_BATCH[itemsize] = b
    try:
        yield
    finally:
        K.TAIL_BATCH.clear()
        K.TAIL_BATCH.update(saved)


def _in_turn(cupy, kernels, ops, settings, floor, rounds):
    """Each op's time over ``floor`` under each of ``settings`` (a name and a
    function giving a context manager that sets it), the settings taken in turn
    ``rounds`` times and the median kept, so that a drift of the device's clock
    falls on all of them alike: ``{op: {setting: ratio}}``."""
    times: dict = {op: {k: [] for k in settings} for op in ops}
    for _ in range(rounds):
        for key, setting in settings.items():
            with setting():
                for op in ops:
                    t = _timer(cupy, kernels[op], reps=10)
                    times[op][key].append(t / floor)
    return {
        op: {k: statistics.median(v) for k, v in by.items()} for op, by in times.items()
    }


def bench_tail_batch(cupy, K, shapes, dtypes, results, rounds=5):
    """Rows past the register cache with their tail slots loaded one at a time (as
    shipped) and a batch at a time (``K.TAIL_BATCH``, a module of its own for each
    batch; the same bits): each op's ratio to the copy at every batch, the batches
    taken in turn ``rounds`` times and the median kept, so that a drift of the
    device's clock falls on all of them alike."""
    for dtype in dtypes:
        for n, c in shapes:
            x, _, floor, kernels, _ = _row_case(cupy, K, n, c, dtype)
            size = x.dtype.itemsize
            settings = {b: lambda b=b: _tail_batch(K, size, b) for b in TAIL_BATCHES}
            ratios = _in_turn(cupy, kernels, _TAIL_OPS, settings, floor, rounds)
            row = {"shape": [n, c], "dtype": str(x.dtype), "ratio_by_batch": ratios}
            results.append(("tail_batch", row))
            print(json.dumps(row), flush=True)


_SPLIT_OPS = _TAIL_OPS  # the row ops with a tail are the ones that split
SPLIT_BLOCKS = (1024, 512)  # threads a block of a split row, timed beside each other
_SPLIT_KERNEL = {"ce_loss_grad": "ce_grad"}  # the row kernel's op where it differs


@contextlib.contextmanager
def _split(K, on: bool, threads: int):
    saved = K.SPLIT, K.SPLIT_THREADS
    K.SPLIT, K.SPLIT_THREADS = on, threads
    try:
        yield
    finally:
        K.SPLIT, K.SPLIT_THREADS = saved


def bench_split(cupy, K, shapes, dtypes, results, rounds=5):
    """Rows past one block's registers, one block a row (as shipped) and split over a
    thread-block cluster (``K.SPLIT``; blocks of each of ``SPLIT_BLOCKS`` threads,
    the cluster as wide as the row needs): each op's ratio to the copy, the launches
    taken in turn ``rounds`` times and the median kept. ``split_by_launch`` says
    what each op ran under each setting: ``"<blocks>x<threads>"``, or ``"one
    block"`` where the split does not apply (the backward passes take blocks of at
    most 512 threads, so 8 of them cover half the row; a device without clusters;
    a row not a multiple of the vector). Settings under which no op splits are
    left out."""
    cc = int(cupy.cuda.Device().compute_capability)
    for dtype in dtypes:
        for n, c in shapes:
            x, _, floor, kernels, _ = _row_case(cupy, K, n, c, dtype)
            size = x.dtype.itemsize
            launches = {"one block": lambda: _split(K, False, K.SPLIT_THREADS)}
            how: dict = {}
            for t in SPLIT_BLOCKS:
                with _split(K, True, t):
                    ran = {}
                    for op in _SPLIT_OPS:
                        kop = _SPLIT_KERNEL.get(op, op)
                        cl = K.split_launch(kop, c, size)
                        if cl and cc >= 90 and c % K._VEC[size] == 0:
                            ran[op] = f"{cl}x{K.split_threads(kop)}"
                        else:
                            ran[op] = "one block"
                if set(ran.values()) != {"one block"}:
                    launches[f"split {t}"] = lambda t=t: _split(K, True, t)
                    how[f"split {t}"] = ran
            ratios = _in_turn(cupy, kernels, _SPLIT_OPS, launches, floor, rounds)
            row = {
                "shape": [n, c],
                "dtype": str(x.dtype),
                "ratio_by_launch": ratios,
                "split_by_launch": how,
            }
            results.append(("split", row))
            print(json.dumps(row), flush=True)


def bench_jacobian(cupy, sc, K, shapes, dtypes, results):
    for dtype in dtypes:
        for n, c in shapes:
            rng = cupy.random.default_rng(0)
            x = rng.standard_normal((n, c), dtype=cupy.float32).astype(dtype)
            jac = cupy.empty((n, c, c), dtype)
            floor = _timer(cupy, lambda: jac.fill(0))
            row = {"shape": [n, c], "dtype": str(x.dtype), "fill_s": floor}
            row["softmax_jacobian"] = (
                _timer(cupy, lambda: K.softmax_jacobian_rows(x, jac)) / floor
            )
            row["log_softmax_jacobian"] = (
                _timer(cupy, lambda: K.log_softmax_jacobian_rows(x, jac)) / floor
            )
            if c <= K.JAC_ROWS_MAX:  # the kernel wider rows take, at the same shape
                saved, K.JAC_ROWS_MAX = K.JAC_ROWS_MAX, 0
                try:
                    row["softmax_jacobian_wide_kernel"] = (
                        _timer(cupy, lambda: K.softmax_jacobian_rows(x, jac)) / floor
                    )
                finally:
                    K.JAC_ROWS_MAX = saved
            results.append(("jacobian", row))
            print(json.dumps(row), flush=True)


def bench_linear(cupy, sc, shapes, torch, results):
    for n, d, c in shapes:
        rng = cupy.random.default_rng(0)
        x = rng.standard_normal((n, d), dtype=cupy.float32)
        w = rng.standard_normal((c, d), dtype=cupy.float32) / d**0.5
        t = rng.integers(0, c, n)
        chunk = sc.get_backend("cupy").linear_chunk_rows(c, d, 4)

        def gemms():
            g = x @ w.T  # logits (N, C)
            _ = g @ w  # dX
            _ = g.T @ x  # dW

        floor = _timer(cupy, gemms, reps=10)
        pool = cupy.get_default_memory_pool()
        pool.free_all_blocks()
        before = pool.used_bytes()
        ours = _timer(cupy, lambda: sc.linear_cross_entropy_with_grad(x, w, t), reps=10)
        row = {
            "shape": [n, d, c],
            "gemms_s": floor,
            "chunk_rows": chunk,
            "linear_ce_with_grad": ours / floor,
            "pool_total_after_MiB": (pool.total_bytes() - before) / 2**20,
        }
        if torch is not None:
            tx = torch.as_tensor(x, device="cuda")
            tw = torch.as_tensor(w, device="cuda")
            tt = torch.as_tensor(t, device="cuda")

            def torch_lce():
                xx = tx.detach().requires_grad_()
                ww = tw.detach().requires_grad_()
                torch.nn.functional.cross_entropy(xx @ ww.T, tt).backward()

            row["torch_linear_ce"] = _timer(cupy, torch_lce, reps=10) / floor
        results.append(("linear", row))
        print(json.dumps(row), flush=True)


# The design's targets, as the largest ratio allowed (small shapes excluded: a
# 32x10 copy is launch-bound, so its ratio says nothing about bandwidth).
TARGETS = (
    ("rows", "softmax", 1.1, "softmax kernel <= 1.1x a device copy"),
    ("rows", "log_softmax", 1.1, "log_softmax kernel <= 1.1x a device copy"),
    ("rows", "ce_loss_grad", 1.3, "CE loss + grad kernel <= 1.3x a device copy"),
    ("linear", "linear_ce_with_grad", 1.1, "linear CE + grads <= 1.1x its 3 GEMMs"),
)
_SMALL_BYTES = 1 << 22


def summary(results) -> list[str]:
    """One line per target: the worst ratio measured, and whether it is met."""
    lines = []
    for kind, key, goal, text in TARGETS:
        got = [
            (r[key], r["shape"], r.get("dtype", "float32"))
            for k, r in results
            if k == kind
            and key in r
            and (kind != "rows" or r["shape"][0] * r["shape"][1] * 4 >= _SMALL_BYTES)
        ]
        if not got:
            lines.append(f"{text}: not measured")
            continue
        worst = max(got, key=lambda g: g[0])
        best = min(got, key=lambda g: g[0])
        verdict = "met" if worst[0] <= goal else "MISSED"
        lines.append(
            f"{text}: {verdict}; worst {worst[0]:.2f} at {worst[1]} {worst[2]}, "
            f"best {best[0]:.2f} at {best[1]} {best[2]}"
        )
    for kind, r in results:  # the Jacobian kernels side by side, one line a case
        if kind == "jacobian" and "softmax_jacobian_wide_kernel" in r:
            a, w = r["softmax_jacobian"], r["softmax_jacobian_wide_kernel"]
            lines.append(
                f"softmax_jacobian {r['shape']} {r['dtype']}: {a:.2f} a fill, "
                f"the wide-row kernel {w:.2f} ({a / w:.2f}x)"
            )
    for kind, r in results:  # staged tails against tails read again
        if kind == "rows" and "softmax_reread" in r:
            parts = ", ".join(
                f"{op} {r[op]:.2f} ({r[op + '_reread']:.2f}, "
                f"{r[op] / r[op + '_reread']:.2f}x)"
                for op in _STAGED_OPS
            )
            lines.append(
                f"staged tails {r['shape']} {r['dtype']}: {parts} a copy "
                "(read again; staged / read again)"
            )
    for kind, r in results:  # tail slots a batch at a time against one at a time
        if kind == "tail_batch":
            parts = []
            for op, by_key in r["ratio_by_batch"].items():
                by = {int(b): q for b, q in by_key.items()}  # str keys from JSON
                one = by[1]
                rest = ", ".join(
                    f"b{b} {q:.2f} ({q / one:.2f}x)" for b, q in by.items() if b != 1
                )
                parts.append(f"{op} {one:.2f} ({rest})")
            lines.append(
                f"tail batch {r['shape']} {r['dtype']}: " + "; ".join(parts) + " a copy"
            )
    for kind, r in results:  # split rows against one block a row
        if kind == "split":
            parts = []
            for op, by in r["ratio_by_launch"].items():
                one = by["one block"]
                how = r["split_by_launch"]
                rest = ", ".join(
                    f"{how[k][op]} {q:.2f} ({q / one:.2f}x)"
                    for k, q in by.items()
                    if k != "one block" and how[k][op] != "one block"
                )
                parts.append(f"{op} {one:.2f} ({rest or 'not split'})")
            lines.append(
                f"split rows {r['shape']} {r['dtype']}: "
                + "; ".join(parts)
                + " a copy (one block a row; split: blocks x threads)"
            )
    for kind, r in results:  # the public cross-entropy, hook against core plan
        if kind == "rows" and "ce_loss_grad_plan_api" in r:
            lines.append(
                f"sc.cross_entropy_with_grad {r['shape']} {r['dtype']}: "
                f"{r['ce_loss_grad_api']:.2f} a copy "
                f"({r['ce_loss_grad_plan_api']:.2f} through the core's plan), "
                f"one row in 8 ignored {r['ce_padded_api']:.2f} "
                f"({r['ce_padded_plan_api']:.2f})"
            )
    for kind, r in results:  # logsumexp with factors: kernel, formula, torch
        if kind == "rows" and "logsumexp_weighted_api" in r:
            peer = r.get("torch_logsumexp_weighted")
            lines.append(
                f"sc.logsumexp(b=) {r['shape']} {r['dtype']}: "
                f"{r['logsumexp_weighted_api']:.2f} a copy (kernel "
                f"{r['logsumexp_weighted']:.2f}, one row of factors for every row "
                f"{r['logsumexp_class_weighted']:.2f}; the core's formula "
                f"{r['logsumexp_weighted_formula_api']:.2f}"
                + (f"; torch logsumexp(x + log b) {peer:.2f}" if peer else "")
                + ")"
            )
    for kind, r in results:  # the data for the launch rule, one line a case
        if kind != "sweep":
            continue
        by = {int(t): q for t, q in r["ratio_by_threads"].items()}
        rule = r["rule_threads"]
        best = min(by, key=by.get)
        lines.append(
            f"threads per row, {r['op']} {r['shape']} {r['dtype']}: rule {rule} "
            f"{by[rule]:.2f}, best {best} {by[best]:.2f} ({by[best] / by[rule]:.2f}x)"
        )
    return lines


def bench_sweep(cupy, K, shapes, dtypes, results):
    """Every threads-per-row choice for the row kernels, by monkeypatching the rule.

    Results of a row kernel do not depend on the launch being fast, and any count of
    ``K.THREADS_PER_ROW`` up to the kernel's launch bound is a valid launch (8 and 16:
    rows share a warp), so this only measures.
    """
    rule = K.threads_per_row
    try:
        for dtype in dtypes:
            for n, c in shapes:
                x, _, floor, kernels, _ = _row_case(cupy, K, n, c, dtype)
                calls = {op: kernels[op] for op in ("softmax", "ce_loss_grad")}
                for op, call in calls.items():
                    row = {
                        "shape": [n, c],
                        "dtype": str(x.dtype),
                        "op": op,
                        "rule_threads": rule(c, x.dtype.itemsize, op),
                        "ratio_by_threads": {},
                    }
                    for threads in K.THREADS_PER_ROW:
                        K.threads_per_row = lambda *_a, _t=threads: _t
                        row["ratio_by_threads"][threads] = _timer(cupy, call) / floor
                    results.append(("sweep", row))
                    print(json.dumps(row), flush=True)
    finally:
        K.threads_per_row = rule


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a few small shapes only")
    p.add_argument("--json", help="write all results to this file")
    p.add_argument(
        "--sweep",
        action="store_true",
        help="also time the row kernels at every threads-per-row choice",
    )
    parts = ("rows", "jacobian", "linear", "tail", "split", "sweep")
    p.add_argument(
        "--only",
        help=f"comma-separated parts to run, of {','.join(parts)} (default: all "
        "but sweep, which --sweep adds)",
    )
    args = p.parse_args(argv)
    run = set(parts[:5]) | ({"sweep"} if args.sweep else set())
    if args.only:
        run = set(args.only.split(","))
        if not run <= set(parts):
            p.error(f"--only takes {', '.join(parts)}")
    import softcore as sc
    from softcore_cupy import _kernels as K
    from softcore_cupy import backend

    avail = backend.available()
    if avail is not True:
        print(f"cupy backend unavailable: {avail}", file=sys.stderr)
        return 2
    import cupy

    dev = cupy.cuda.Device()
    print(f"device {dev.id}: {cupy.cuda.runtime.getDeviceProperties(dev.id)['name']}")
    torch = _torch()
    print(f"torch: {torch.__version__ if torch else 'not installed (or no CUDA)'}")
    if args.quick:
        rows = [(8192, 1000), (1024, 32000)]
        jac = [(1024, 64)]
        lin = [(2048, 512, 8000)]
    else:
        rows = [
            (65536, 128),
            (32768, 1000),
            (8192, 4096),
            (4096, 32768),
            (1024, 128256),
            (32, 10),
        ]
        jac = [(4096, 64), (512, 512), (16, 4096)]
        lin = [(8192, 4096, 32000), (8192, 4096, 128256)]
    results: list = []
    both = [cupy.float32, cupy.float64]
    if "rows" in run:
        bench_rows(cupy, sc, K, rows, both, torch, results)
    if "jacobian" in run:
        bench_jacobian(cupy, sc, K, jac, both, results)
    if "linear" in run:
        bench_linear(cupy, sc, lin, torch, results)
    if "tail" in run and not args.quick:
        tails = [(1024, 32000), (4096, 32768), (1024, 128256)]
        bench_tail_batch(cupy, K, tails, both, results)
    if "split" in run and not args.quick:
        split = [(1024, 32000), (4096, 32768), (2048, 65536), (1024, 128256)]
        bench_split(cupy, K, split, both, results)
    if "sweep" in run:
        sweep = [(262144, 32), (65536, 128), (32768, 256), (8192, 1000)]
        sweep += [(8192, 4096), (1024, 32000), (256, 128256)]
        # rows past the register cache, where 512 threads beat the rule's 1024 at
        # 1024 x 32000 float32 on an H100 (0.90-0.92x): more than one shape for it
        sweep += [(2048, 50257), (4096, 32768), (1024, 128256)]
        bench_sweep(cupy, K, sweep, [cupy.float32, cupy.float64], results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"kind": k, **r} for k, r in results], f, indent=1)
    print("\ntargets (ratios, lower is better):")
    for line in summary(results):
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
