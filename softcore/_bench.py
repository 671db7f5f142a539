"""``python -m softcore bench``: a quick benchmark matrix, reported as ratios.

Every op is timed on every selected backend, shape, dtype and thread count, next to
its *floor* measured in the same process, interleaved repeat by repeat:

* row-wise ops (softmax, log-softmax, logsumexp, the VJPs, cross-entropy):
  ``np.copyto(out, x)`` of the same array into a preallocated output, one thread;
* Jacobians: allocating and filling the ``(N, C, C)`` output once (``np.full``);
* linear cross-entropy: the three NumPy GEMMs it needs (logits, input gradient,
  weight gradient) into preallocated outputs.

Ratios (median time / median floor time) stay comparable across noisy machines, so
they are what the table, the JSON, the plot and the regression guard use.  Peers are
timed where installed: PyTorch in this process, JAX in a subprocess (its thread pool
fights NumPy's BLAS), and a naive NumPy softmax.  They are imported here only, never
by the library.

Peak extra memory of linear cross-entropy is measured in a fresh subprocess per
case: the kernel is warmed up, the peak resident set is reset by writing ``5`` to
``/proc/self/clear_refs`` (Linux), and ``VmHWM - VmRSS`` around one call is the
extra.  Where that reset is not available the subprocess falls back to the
``ru_maxrss`` delta of ``resource.getrusage``.  ``tracemalloc`` is not used: it
misses memory that Numba, BLAS and PyTorch allocate outside Python.

This module is also the case table of the asv suite in ``asv_bench/``, so both
measure exactly the same calls.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["main"]

# --------------------------------------------------------------------------- cases

ROW_SHAPES: list[tuple[int, ...]] = [
    (65536, 10),  # short rows: the numba backend's tiled path
    (65536, 128),
    (512, 64),  # narrow rows, a small call in cache
    (8192, 1000),
    (1024, 32000),
    (64, 262144),
    (4096, 32768),
    (32, 10),
]
JACOBIAN_SHAPES: list[tuple[int, ...]] = [(4096, 128), (64, 1000), (32, 10)]
LINEAR_SHAPES: list[tuple[int, ...]] = [(4096, 512, 32000), (2048, 1024, 50257)]

QUICK_ROW_SHAPES: list[tuple[int, ...]] = [(2048, 128), (32, 10)]
QUICK_JACOBIAN_SHAPES: list[tuple[int, ...]] = [(256, 64), (32, 10)]
QUICK_LINEAR_SHAPES: list[tuple[int, ...]] = [(256, 64, 1000)]

#: The Jacobian output is ``N * C * C`` elements; larger requests are skipped.
JACOBIAN_MAX_BYTES = 1 << 30

#: ``masked`` (here and for the row and backward ops): logits under a causal
#: attention mask, row ``i`` keeping its first ``i % C + 1`` classes and ``-inf``
#: in the rest (half of them on average; a class-index target among the kept
#: ones), as softmax over attention scores, or over a vocabulary padded to a
#: round size, sees them. The backward ops take the masked softmax's
#: probabilities (zeros) or log-probabilities (``-inf``). Otherwise the plain
#: call.
#: ``confident`` (here and for the row ops): every logit of a row 20-45 below
#: its maximum (at a random class, the class-index target), the rows shifted
#: by N(0, 9): what a trained model's confident rows look like. Their float32
#: sums fall within ``C 2^-26`` of 1, where the numba backend takes them a
#: second time for ``log S`` (softmax does not).
#: ``weights`` and ``signed`` (logsumexp only): SciPy's and JAX's factors ``b``,
#: drawn uniform in ``[0, 2)`` or standard normal (then with ``return_sign``).
#: ``class_weights``: uniform in ``[0, 2)`` too, one factor a class (``b`` of
#: shape ``(C,)``, broadcast over the rows: a mixture's weights).
#: PyTorch has no such argument: its peer for ``weights`` and
#: ``class_weights`` is ``logsumexp(x + log(b))``, and it has none for
#: ``signed``.
CE_VARIANTS = (
    "plain", "weight", "smoothing", "ignore", "prob", "all", "masked", "confident"
)  # fmt: skip
#: The gradient ops also take ``out``: plain inputs, the gradient written into a
#: preallocated array (no fresh pages to fault in). The peers have no ``out=``;
#: their plain call stands beside it.
CE_GRAD_VARIANTS = (*CE_VARIANTS, "out")


@dataclass(frozen=True)
class Op:
    """One public op as the benchmark sees it."""

    name: str
    family: str  # "rows", "backward", "jacobian", "ce", "linear_ce"
    variants: tuple[str, ...]
    floor: str  # "copy", "fill", "gemm3"


OPS: dict[str, Op] = {
    op.name: op
    for op in [
        Op("softmax", "rows", ("out", "alloc", "masked", "confident"), "copy"),
        Op("log_softmax", "rows", ("out", "alloc", "masked", "confident"), "copy"),
        Op(
            "logsumexp",
            "rows",
            ("alloc", "masked", "confident", "weights", "class_weights", "signed"),
            "copy",
        ),
        Op("softmax_backward", "backward", ("alloc", "masked"), "copy"),
        Op("log_softmax_backward", "backward", ("alloc", "masked"), "copy"),
        Op("softmax_jacobian", "jacobian", ("alloc",), "fill"),
        Op("log_softmax_jacobian", "jacobian", ("alloc",), "fill"),
        Op("cross_entropy", "ce", CE_VARIANTS, "copy"),
        Op("cross_entropy_grad", "ce", CE_GRAD_VARIANTS, "copy"),
        Op("cross_entropy_with_grad", "ce", CE_GRAD_VARIANTS, "copy"),
        Op("linear_cross_entropy", "linear_ce", ("plain",), "gemm3"),
        Op("linear_cross_entropy_with_grad", "linear_ce", ("plain", "out"), "gemm3"),
    ]
}

#: Peers: labels that appear in the backend column next to softcore's backends.
PEERS = ("torch", "torch-chunked", "jax", "numpy-naive")


def default_shapes(op: Op, quick: bool) -> list[tuple[int, ...]]:
    if op.family == "jacobian":
        return QUICK_JACOBIAN_SHAPES if quick else JACOBIAN_SHAPES
    if op.family == "linear_ce":
        return QUICK_LINEAR_SHAPES if quick else LINEAR_SHAPES
    return QUICK_ROW_SHAPES if quick else ROW_SHAPES


def shape_str(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"shape must look like 8192x1000 (or NxDxC for linear CE), got {text!r}"
        ) from None
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise argparse.ArgumentTypeError(
            f"shape must have 2 (N x C) or 3 (N x D x C) positive sizes, got {text!r}"
        )
    return shape


def shape_fits(op: Op, shape: tuple[int, ...], dtype: str) -> str | None:
    """``None`` if the op takes this shape, else the reason it is skipped."""
    want = 3 if op.family == "linear_ce" else 2
    if len(shape) != want:
        return f"{op.name} takes {'NxDxC' if want == 3 else 'NxC'} shapes"
    if op.family == "jacobian":
        n, c = shape
        nbytes = n * c * c * bench_dtype(dtype).itemsize
        if nbytes > JACOBIAN_MAX_BYTES:
            return f"(N, C, C) output would be {nbytes / 2**30:.1f} GiB"
    return None


def bench_dtype(dtype: str) -> np.dtype:
    """The NumPy dtype of a bench dtype name; bfloat16 is ml_dtypes'."""
    if dtype == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(dtype)


def make_inputs(
    op: Op, variant: str, shape: tuple[int, ...], dtype: str, seed: int = 0
) -> dict[str, Any]:
    """Seeded NumPy inputs for one case: positional ``args`` and keyword ``kwargs``.
    float16 and bfloat16 inputs are the float32 ones rounded (NumPy draws
    float32 and float64 only)."""
    rng = np.random.default_rng(seed)
    out_dt = bench_dtype(dtype)
    dt = out_dt if out_dt.itemsize >= 4 else np.dtype(np.float32)

    def low(a: np.ndarray) -> np.ndarray:
        return a if a.dtype == out_dt else a.astype(out_dt)

    if op.family == "linear_ce":
        n, d, c = shape
        x = rng.standard_normal((n, d), dtype=dt)
        w = rng.standard_normal((c, d), dtype=dt)
        w *= dt.type(1.0 / math.sqrt(d))
        labels = rng.integers(0, c, size=n, dtype=np.int64)
        return {"args": (low(x), low(w), labels), "kwargs": {}, "n": n, "c": c, "d": d}
    n, c = shape
    x = rng.standard_normal((n, c), dtype=dt)
    x *= dt.type(3.0)
    kept = np.arange(n) % c  # the last class row i keeps under "masked"
    if variant == "masked":
        x[np.arange(c) > kept[:, None]] = -np.inf
    top = kept  # "confident": each row's maximum (drawn there, not for the others)
    if variant == "confident":
        top = rng.integers(0, c, size=n, dtype=np.int64)
        x = rng.uniform(-45.0, -20.0, size=(n, c)).astype(dt)
        x[np.arange(n), top] = 0.0
        x += (rng.standard_normal((n, 1)) * 3.0).astype(dt)
    x_low = low(x)
    case: dict[str, Any] = {"args": (x_low,), "kwargs": {}, "n": n, "c": c}
    if variant == "weights":
        case["kwargs"] = {"b": low(rng.uniform(0.0, 2.0, size=(n, c)).astype(dt))}
    elif variant == "class_weights":
        case["kwargs"] = {"b": low(rng.uniform(0.0, 2.0, size=c).astype(dt))}
    elif variant == "signed":
        b = low(rng.standard_normal((n, c), dtype=dt))
        case["kwargs"] = {"b": b, "return_sign": True}
    if op.family == "backward":
        g = rng.standard_normal((n, c), dtype=dt)
        p = _np_softmax(x)
        if op.name == "log_softmax_backward":
            with np.errstate(divide="ignore"):  # a masked class's log is -inf
                p = np.log(p)
        case["args"] = (low(g), low(p))
    elif op.family == "ce":
        kwargs: dict[str, Any] = {}
        if variant == "prob":
            t: Any = low(_np_softmax(rng.standard_normal((n, c), dtype=dt)))
        elif variant == "confident":
            t = top
        else:
            high = kept + 1 if variant == "masked" else c
            t = rng.integers(0, high, size=n, dtype=np.int64)
        if variant in ("ignore", "all"):
            t[rng.random(n) < 0.1] = -100
            kwargs["ignore_index"] = -100
        if variant in ("weight", "all"):
            kwargs["weight"] = low(rng.uniform(0.5, 1.5, size=c).astype(dt))
        if variant in ("smoothing", "all"):
            kwargs["label_smoothing"] = 0.1
        case["args"] = (x_low, t)
        case["kwargs"] = kwargs
    return case


def _np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e


# --------------------------------------------------------------------------- callables


def softcore_call(
    op: Op, variant: str, case: dict[str, Any], backend: str
) -> Callable[[], Any]:
    """A zero-argument callable running the op through softcore on ``backend``."""
    import softcore as sc

    be = sc.get_backend(backend)
    xp = getattr(be, "xp", np)
    args = tuple(xp.asarray(a) for a in case["args"])
    kwargs = {
        k: xp.asarray(v) if isinstance(v, np.ndarray) else v
        for k, v in case["kwargs"].items()
    }
    fn = getattr(sc, op.name)
    sync = _sync_for(xp)
    if variant == "out":
        out: Any = xp.empty_like(args[0])
        if op.family == "linear_ce":  # the gradients' arrays, kept across calls
            out = (out, xp.empty_like(args[1]), None)

        def call() -> Any:
            r = fn(*args, out=out, backend=backend, **kwargs)
            sync()
            return r

    else:

        def call() -> Any:
            r = fn(*args, backend=backend, **kwargs)
            sync()
            return r

    return call


def _sync_for(xp: Any) -> Callable[[], None]:
    if xp is np:
        return lambda: None
    cuda = getattr(xp, "cuda", None)
    if cuda is not None:
        return lambda: cuda.Device().synchronize()
    return lambda: None


def floor_call(op: Op, case: dict[str, Any], xp: Any = np) -> Callable[[], Any]:
    """The floor of the op: a copy, a Jacobian fill, or the three GEMMs (in
    float32 for 16-bit inputs, which softcore computes in float32: NumPy's
    float16 GEMM runs a scalar loop)."""
    sync = _sync_for(xp)
    if op.floor == "gemm3":
        x, w, _ = (xp.asarray(a) for a in case["args"])
        if x.dtype.itemsize == 2:  # 16-bit: computed in float32, so are its GEMMs
            x, w = x.astype(np.float32), w.astype(np.float32)
        n, c, d = case["n"], case["c"], case["d"]
        logits = xp.empty((n, c), dtype=x.dtype)
        dx = xp.empty((n, d), dtype=x.dtype)
        dw = xp.empty((c, d), dtype=x.dtype)

        def gemm3() -> None:
            xp.matmul(x, w.T, out=logits)
            xp.matmul(logits, w, out=dx)
            xp.matmul(logits.T, x, out=dw)
            sync()

        return gemm3
    x = xp.asarray(case["args"][0])
    if op.floor == "fill":
        n, c = x.shape
        one = x.dtype.type(0.5)

        def fill() -> Any:
            r = xp.full((n, c, c), one, dtype=x.dtype)
            sync()
            return r

        return fill
    buf = xp.empty_like(x)
    buf.fill(0)

    def copy() -> None:
        xp.copyto(buf, x)
        sync()

    return copy


def naive_call(op: Op, variant: str, case: dict[str, Any]) -> Callable[[], Any] | None:
    """The textbook NumPy expression, for the rows family only."""
    if op.family != "rows":
        return None
    x = case["args"][0]
    if op.name == "logsumexp":
        b = case["kwargs"].get("b")
        if b is not None:  # SciPy's formula

            def lse_b() -> Any:
                m = x.max(axis=-1, keepdims=True)
                s = (b * np.exp(x - m)).sum(axis=-1)
                return np.log(np.abs(s)) + m[..., 0], np.sign(s)

            return lse_b

        def lse() -> Any:
            m = x.max(axis=-1, keepdims=True)
            return np.log(np.exp(x - m).sum(axis=-1)) + m[..., 0]

        return lse
    log = op.name == "log_softmax"
    if variant == "out":
        out = np.empty_like(x)

        def into() -> Any:
            np.subtract(x, x.max(axis=-1, keepdims=True), out=out)
            if log:
                np.subtract(
                    out, np.log(np.exp(out).sum(axis=-1, keepdims=True)), out=out
                )
            else:
                np.exp(out, out=out)
                np.divide(out, out.sum(axis=-1, keepdims=True), out=out)
            return out

        return into

    def alloc() -> Any:
        z = x - x.max(axis=-1, keepdims=True)
        if log:
            return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        e = np.exp(z)
        e /= e.sum(axis=-1, keepdims=True)
        return e

    return alloc


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except Exception:
        return False
    return True


def torch_call(
    op: Op, variant: str, case: dict[str, Any], chunked: bool = False
) -> Callable[[], Any] | None:
    """The PyTorch CPU equivalent, or ``None`` where PyTorch has none."""
    import torch
    import torch.nn.functional as F

    def tensor(a: np.ndarray) -> Any:
        a = np.ascontiguousarray(a)
        if a.dtype.kind == "V":  # ml_dtypes' bfloat16: torch takes its bits
            return torch.from_numpy(a.view(np.uint16)).view(torch.bfloat16)
        return torch.from_numpy(a)

    args = [tensor(a) for a in case["args"]]
    kwargs: dict[str, Any] = {
        k: tensor(v) if isinstance(v, np.ndarray) else v
        for k, v in case["kwargs"].items()
    }
    name = op.name
    if chunked and op.family != "linear_ce":
        return None
    if op.family == "rows":
        (x,) = args
        if name == "logsumexp":
            if variant == "signed":
                return None  # no signed logsumexp in PyTorch
            if variant in ("weights", "class_weights"):
                b = kwargs["b"]
                return lambda: torch.logsumexp(x + torch.log(b), -1)
            return lambda: torch.logsumexp(x, -1)
        f = torch.softmax if name == "softmax" else torch.log_softmax
        if variant == "out":
            out = torch.empty_like(x)
            return lambda: f(x, -1, out=out)
        return lambda: f(x, -1)
    if op.family == "backward":
        g, p = args
        if name == "softmax_backward":
            return lambda: torch._softmax_backward_data(g, p, -1, p.dtype)
        return lambda: torch._log_softmax_backward_data(g, p, -1, p.dtype)
    if op.family == "jacobian":
        (x,) = args
        c = x.shape[-1]
        if name == "softmax_jacobian":

            def jac() -> Any:
                s = torch.softmax(x, -1)
                return torch.diag_embed(s) - s[:, :, None] * s[:, None, :]

            return jac
        eye = torch.eye(c, dtype=x.dtype)

        def logjac() -> Any:
            return eye - torch.softmax(x, -1)[:, None, :]

        return logjac
    if op.family == "ce":
        x, t = args
        if name == "cross_entropy":

            def fwd() -> Any:
                with torch.no_grad():
                    return F.cross_entropy(x, t, **kwargs)

            return fwd
        xg = x.clone().requires_grad_(True)

        def fwd_bwd() -> Any:
            xg.grad = None
            loss = F.cross_entropy(xg, t, **kwargs)
            loss.backward()
            return loss, xg.grad

        return fwd_bwd
    if op.family == "linear_ce":
        x, w, t = args
        lce = getattr(F, "linear_cross_entropy", None)
        if lce is None:
            if chunked:
                return None

            def lce(inp: Any, lw: Any, tgt: Any, options: Any = None) -> Any:
                return F.cross_entropy(F.linear(inp, lw), tgt)

        options = torch.nn.LinearCrossEntropyOptions() if chunked else None
        if name == "linear_cross_entropy":

            def lfwd() -> Any:
                with torch.no_grad():
                    return lce(x, w, t, options=options)

            return lfwd
        xg = x.clone().requires_grad_(True)
        wg = w.clone().requires_grad_(True)

        def lfwd_bwd() -> Any:
            xg.grad = None
            wg.grad = None
            loss = lce(xg, wg, t, options=options)
            loss.backward()
            return loss, xg.grad, wg.grad

        return lfwd_bwd
    return None


_FACTOR_VARIANTS = ("weights", "class_weights", "signed")


def jax_call(op: Op, variant: str, case: dict[str, Any]) -> Callable[[], Any] | None:
    """The jitted JAX equivalent (run only in the JAX subprocess)."""
    import jax
    import jax.numpy as jnp

    if variant not in ("plain", "alloc", "out", "masked", "confident"):
        if variant not in _FACTOR_VARIANTS:
            return None  # CE options: no JAX equivalent in jax.nn
    args = [jax.device_put(a) for a in case["args"]]
    name = op.name
    if variant in _FACTOR_VARIANTS:
        args.append(jax.device_put(case["kwargs"]["b"]))
        sign = variant == "signed"
        jf = jax.jit(lambda x, b: jax.nn.logsumexp(x, axis=-1, b=b, return_sign=sign))
        return lambda: jax.block_until_ready(jf(*args))

    def timed(f: Callable[..., Any]) -> Callable[[], Any]:
        jf = jax.jit(f)
        return lambda: jax.block_until_ready(jf(*args))

    if op.family == "rows":
        if name == "logsumexp":
            return timed(lambda x: jax.nn.logsumexp(x, axis=-1))
        if name == "softmax":
            return timed(lambda x: jax.nn.softmax(x, axis=-1))
        return timed(lambda x: jax.nn.log_softmax(x, axis=-1))
    if op.family == "backward":
        if name == "softmax_backward":
            return timed(lambda g, p: p * (g - (g * p).sum(-1, keepdims=True)))
        return timed(lambda g, lp: g - jnp.exp(lp) * g.sum(-1, keepdims=True))
    if op.family == "jacobian":
        if name == "softmax_jacobian":

            def jac(x: Any) -> Any:
                s = jax.nn.softmax(x, axis=-1)
                eye = jnp.eye(x.shape[-1], dtype=x.dtype)
                return s[:, :, None] * eye - s[:, :, None] * s[:, None, :]

            return timed(jac)
        return timed(
            lambda x: (
                jnp.eye(x.shape[-1], dtype=x.dtype)
                - jax.nn.softmax(x, axis=-1)[:, None, :]
            )
        )

    def ce(x: Any, t: Any) -> Any:
        lp = jax.nn.log_softmax(x, axis=-1)
        return -jnp.take_along_axis(lp, t[:, None], axis=-1).mean()

    if op.family == "ce":
        if name == "cross_entropy":
            return timed(ce)
        return timed(jax.value_and_grad(ce))
    if op.family == "linear_ce":

        def lce(x: Any, w: Any, t: Any) -> Any:
            return ce(x @ w.T, t)

        if name == "linear_cross_entropy":
            return timed(lce)
        return timed(jax.value_and_grad(lce, argnums=(0, 1)))
    return None


# --------------------------------------------------------------------------- timing


def autorange(fn: Callable[[], Any], target: float) -> int:
    """Number of calls per sample so one sample lasts at least ``target`` seconds."""
    number = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        dt = time.perf_counter() - t0
        if dt >= target or number >= 1 << 20:
            return number
        grow = target / max(dt, 1e-9)
        number = int(number * min(max(grow * 1.2, 2.0), 100.0))


def time_interleaved(
    fns: dict[str, Callable[[], Any]], repeat: int, target: float
) -> dict[str, float]:
    """Median seconds per call of each callable, sampled round-robin.

    Round-robin sampling puts every label under the same background load, which is
    what makes the ratios stable on a shared machine.
    """
    for f in fns.values():
        f()  # warm-up: a JIT compile or first-touch must not set the call count
    numbers = {k: autorange(f, target) for k, f in fns.items()}
    samples: dict[str, list[float]] = {k: [] for k in fns}
    labels = list(fns)
    for r in range(repeat):
        order = labels[r % len(labels) :] + labels[: r % len(labels)]
        for k in order:
            f, n = fns[k], numbers[k]
            t0 = time.perf_counter()
            for _ in range(n):
                f()
            samples[k].append((time.perf_counter() - t0) / n)
    return {k: statistics.median(v) for k, v in samples.items()}


def _undo(setter: Callable[[int], Any], old: int) -> Callable[[], None]:
    return lambda: setter(old)


@contextlib.contextmanager
def thread_limit(n: int | None, backends: Sequence[str]) -> Iterator[None]:
    """Run with ``n`` threads in softcore's threaded backends, BLAS and PyTorch."""
    if not n:
        yield
        return
    import softcore as sc

    restore: list[Callable[[], None]] = []
    for name in backends:
        try:
            be = sc.get_backend(name)
        except Exception:
            continue
        if getattr(be, "threaded", False) and hasattr(be, "set_num_threads"):
            old = be.get_num_threads()
            be.set_num_threads(n)
            restore.append(_undo(be.set_num_threads, old))
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        old_t = torch.get_num_threads()
        torch.set_num_threads(n)
        restore.append(lambda: torch.set_num_threads(old_t))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limiter: Any = contextlib.nullcontext()
    else:
        limiter = threadpool_limits(limits=n, user_api="blas")
    try:
        with limiter:
            yield
    finally:
        for undo in restore:
            undo()


# --------------------------------------------------------------------------- memory


def _proc_status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _mem_child(spec_json: str) -> int:
    """Subprocess body: print the peak extra memory of one call as JSON."""
    from softcore import release_scratch

    spec = json.loads(spec_json)
    op = OPS[spec["op"]]
    case = make_inputs(op, spec["variant"], tuple(spec["shape"]), spec["dtype"])
    who = spec["who"]
    threads = spec["threads"]
    if who in ("torch", "torch-chunked"):
        import torch

        if threads:
            torch.set_num_threads(threads)
        fn = torch_call(op, spec["variant"], case, chunked=who == "torch-chunked")
    elif who == "floor":
        fn = floor_call(op, case)
    else:
        fn = softcore_call(op, spec["variant"], case, who)
    assert fn is not None
    with thread_limit(threads, [] if who in PEERS or who == "floor" else [who]):
        if _reset_peak():
            method = "VmHWM after clear_refs reset"
            fn()  # warm-up: JIT, thread pools, BLAS buffers
            # free the kept chunk buffer: the measured call pays for it, as a first does
            release_scratch()
            gc.collect()
            _reset_peak()
            base = _proc_status_kib("VmRSS") or 0
            fn()
            peak = _proc_status_kib("VmHWM") or 0
        else:
            import resource

            method = "ru_maxrss delta"
            release_scratch()
            base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            fn()
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"extra_mib": max(peak - base, 0) / 1024, "method": method}))
    return 0


def _measures_memory(op: Op, dtype: str) -> bool:
    """Whether ``--memory`` measures ``op`` in ``dtype``: linear CE, and
    cross-entropy of float16 or bfloat16 logits."""
    return op.family == "linear_ce" or (
        op.family == "ce" and dtype in ("float16", "bfloat16")
    )


def peak_extra_mib(
    op: Op, variant: str, shape: tuple[int, ...], dtype: str, who: str, threads: int
) -> tuple[float | None, str]:
    """Peak extra resident memory of one call, measured in a fresh subprocess."""
    spec = json.dumps(
        {
            "op": op.name,
            "variant": variant,
            "shape": list(shape),
            "dtype": dtype,
            "who": who,
            "threads": threads,
        }
    )
    code = "import sys, softcore._bench as b; sys.exit(b._mem_child(sys.argv[1]))"
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, spec],
            capture_output=True,
            text=True,
            timeout=900,
        )
    except subprocess.TimeoutExpired:
        return None, "timed out"
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        return None, tail
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(out["extra_mib"]), str(out["method"])


# --------------------------------------------------------------------------- JAX


def jax_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("jax") is not None


def _jax_child(spec_json: str) -> int:
    """Subprocess body: time JAX and ``np.copyto`` side by side for each case."""
    spec = json.loads(spec_json)
    threads = spec["threads"]
    if threads and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[:threads]
        os.sched_setaffinity(0, cpus)
    import jax

    jax.config.update("jax_enable_x64", True)
    results: list[dict[str, float] | None] = []
    for c in spec["cases"]:
        op = OPS[c["op"]]
        case = make_inputs(op, c["variant"], tuple(c["shape"]), c["dtype"])
        try:
            fn = jax_call(op, c["variant"], case)
        except Exception as exc:  # a JAX version without the API
            fn = None
            print(f"jax: {op.name}: {exc}", file=sys.stderr)
        if fn is None:
            results.append(None)
            continue
        t = time_interleaved(
            {"jax": fn, "floor": floor_call(op, case)}, spec["repeat"], spec["target"]
        )
        results.append({"time_s": t["jax"], "floor_s": t["floor"]})
    print(json.dumps(results))
    return 0


def run_jax(
    cases: list[dict[str, Any]], threads: int, repeat: int, target: float
) -> list[dict[str, float] | None]:
    """Time JAX in a subprocess; each result carries its own floor time."""
    if not cases:
        return []
    spec = json.dumps(
        {"cases": cases, "threads": threads, "repeat": repeat, "target": target}
    )
    code = "import sys, softcore._bench as b; sys.exit(b._jax_child(sys.argv[1]))"
    env = dict(os.environ)
    if threads == 1:
        env["XLA_FLAGS"] = (
            env.get("XLA_FLAGS", "")
            + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        ).strip()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, spec],
            capture_output=True,
            text=True,
            env=env,
            timeout=3600,
        )
    except subprocess.TimeoutExpired:
        return [None] * len(cases)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        print(f"\njax subprocess failed: {tail}", file=sys.stderr)
        return [None] * len(cases)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- matrix


@dataclass
class Result:
    op: str
    variant: str
    backend: str
    shape: list[int]
    dtype: str
    threads: int | None
    time_s: float | None
    floor: str
    floor_s: float | None
    ratio_floor: float | None = None
    ratio_ref: float | None = None
    ratio_torch: float | None = None
    ratio_jax: float | None = None
    ratio_naive: float | None = None
    peak_extra_mib: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def key(self) -> tuple[Any, ...]:
        return (
            self.op,
            self.variant,
            self.backend,
            shape_str(self.shape),
            self.dtype,
            self.threads,
        )


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        row["op"],
        row["variant"],
        row["backend"],
        shape_str(row["shape"]),
        row["dtype"],
        row.get("threads"),
    )


class Progress:
    """A one-line progress bar on stderr (a line per 10% when not a terminal)."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.t0 = time.perf_counter()
        self._last_decile = -1

    def step(self, label: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        frac = self.done / self.total
        width = 30
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        elapsed = time.perf_counter() - self.t0
        msg = f"[{bar}] {self.done}/{self.total} {elapsed:6.1f}s {label}"
        if self.tty:
            sys.stderr.write("\r\x1b[K" + msg[:120])
            sys.stderr.flush()
        elif int(frac * 10) != self._last_decile or self.done == self.total:
            self._last_decile = int(frac * 10)
            sys.stderr.write(msg + "\n")

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def run_matrix(args: argparse.Namespace) -> list[Result]:
    import softcore as sc

    infos = {b.name: b for b in sc.list_backends()}
    reference = "numpy" if "numpy" in infos else min(infos, default="numpy")
    if args.backend:
        unknown = [b for b in args.backend if b not in infos and b not in PEERS]
        if unknown:
            raise SystemExit(
                f"unknown backend {', '.join(unknown)}; installed: "
                f"{', '.join(infos)}; peers: {', '.join(PEERS)}"
            )
        wanted = [b for b in args.backend if b in infos]
    else:
        wanted = list(infos)
    backends = []
    for name in wanted:
        ok = infos[name].available
        if ok is True:
            backends.append(name)
        elif args.backend:
            print(f"skipping backend {name}: {ok}", file=sys.stderr)
    peer_filter = [p for p in (args.backend or []) if p in PEERS]
    peers_on = args.peers
    use_torch = (
        peers_on
        and torch_available()
        and (not args.backend or any(p.startswith("torch") for p in peer_filter))
    )
    use_jax = (
        peers_on and jax_installed() and (not args.backend or "jax" in peer_filter)
    )
    use_naive = peers_on and (not args.backend or "numpy-naive" in peer_filter)

    ops = [OPS[o] for o in (args.op or list(OPS))]
    dtypes = args.dtype or ["float32", "float64"]
    threads_list: list[int | None] = list(args.threads) if args.threads else [None]
    repeat = args.repeat or (3 if args.quick else 7)
    target = args.min_time if args.min_time else (0.002 if args.quick else 0.05)

    plan = []
    for op in ops:
        variants = [v for v in op.variants if not args.variant or v in args.variant]
        shapes = args.shape or default_shapes(op, args.quick)
        for variant in variants:
            for shape in shapes:
                for dtype in dtypes:
                    if shape_fits(op, shape, dtype) is not None:
                        continue
                    for th in threads_list:
                        plan.append((op, variant, shape, dtype, th))
    if not plan:
        raise SystemExit("no case matches the filters")

    # Memory is measured for linear CE (peakmem is its performance target) and
    # for 16-bit cross-entropy, where a float32 copy of the logits would show.
    results: list[Result] = []
    progress = Progress(len(plan), enabled=not args.no_progress)
    jax_pending: list[tuple[int, int | None, dict[str, Any]]] = []
    for op, variant, shape, dtype, th in plan:
        progress.step(f"{op.name}/{variant} {shape_str(shape)} {dtype} t={th}")
        case = make_inputs(op, variant, shape, dtype)
        fns: dict[str, Callable[[], Any]] = {"floor": floor_call(op, case)}
        for name in backends:
            be = sc.get_backend(name)
            if getattr(be, "xp", np) is not np:
                continue  # device backends get their own floor below
            fns[name] = softcore_call(op, variant, case, name)
        if use_naive:
            naive = naive_call(op, variant, case)
            if naive is not None:
                fns["numpy-naive"] = naive
        if use_torch:
            for label, chunked in (("torch", False), ("torch-chunked", True)):
                if peer_filter and label not in peer_filter:
                    continue
                tfn = torch_call(op, variant, case, chunked=chunked)
                if tfn is not None:
                    fns[label] = tfn
        with thread_limit(th, backends):
            times = time_interleaved(fns, repeat, target)
            device_rows = _time_device_backends(
                sc, backends, op, variant, case, repeat, target
            )
        floor_s = times.pop("floor")
        group: list[Result] = []
        for label, t in times.items():
            group.append(
                Result(
                    op.name,
                    variant,
                    label,
                    list(shape),
                    dtype,
                    th,
                    t,
                    op.floor,
                    floor_s,
                    ratio_floor=_ratio(t, floor_s),
                )
            )
        group.extend(
            Result(
                op.name,
                variant,
                label,
                list(shape),
                dtype,
                th,
                t,
                op.floor + "@device",
                f,
                ratio_floor=_ratio(t, f),
                note="own device floor",
            )
            for label, (t, f) in device_rows.items()
        )
        if args.memory and _measures_memory(op, dtype):
            for r in group:
                who = r.backend if r.backend != "numpy-naive" else None
                if who is None or who == "jax":
                    continue
                mib, method = peak_extra_mib(op, variant, shape, dtype, who, th or 0)
                r.peak_extra_mib = mib
                r.extra["memory_method"] = method
        if use_jax and (not peer_filter or "jax" in peer_filter):
            jax_pending.append(
                (
                    len(results) + len(group),
                    th,
                    {
                        "op": op.name,
                        "variant": variant,
                        "shape": list(shape),
                        "dtype": dtype,
                    },
                )
            )
            group.append(
                Result(
                    op.name,
                    variant,
                    "jax",
                    list(shape),
                    dtype,
                    th,
                    None,
                    op.floor,
                    None,
                    note="pending",
                )
            )
        results.extend(group)
    progress.close()

    if jax_pending:
        print("timing jax in a subprocess ...", file=sys.stderr)
        for th in threads_list:
            mine = [(i, c) for i, t, c in jax_pending if t == th]
            got = run_jax([c for _, c in mine], th or 0, repeat, target)
            for (i, _), g in zip(mine, got, strict=False):
                r = results[i]
                if g is None:
                    r.note = "no JAX equivalent"
                    continue
                # The JAX time comes from another process: only its ratio to that
                # process's own floor is meaningful here.
                r.time_s = g["time_s"]
                r.floor_s = g["floor_s"]
                r.ratio_floor = _ratio(g["time_s"], g["floor_s"])
                r.note = "own process floor"
        results = [r for r in results if r.note != "no JAX equivalent"]

    _fill_cross_ratios(results, reference)
    return results


def _time_device_backends(
    sc: Any,
    backends: list[str],
    op: Op,
    variant: str,
    case: dict[str, Any],
    repeat: int,
    target: float,
) -> dict[str, tuple[float, float]]:
    """Backends on another device (cupy): each timed against its own device copy."""
    out: dict[str, tuple[float, float]] = {}
    for name in backends:
        xp = getattr(sc.get_backend(name), "xp", np)
        if xp is np:
            continue
        t = time_interleaved(
            {
                "op": softcore_call(op, variant, case, name),
                "floor": floor_call(op, case, xp),
            },
            repeat,
            target,
        )
        out[name] = (t["op"], t["floor"])
    return out


def _fill_cross_ratios(results: list[Result], reference: str) -> None:
    by_case: dict[tuple[Any, ...], dict[str, Result]] = {}
    for r in results:
        by_case.setdefault(r.key()[:2] + r.key()[3:], {})[r.backend] = r
    for group in by_case.values():
        ref = group.get(reference)
        torch_r = group.get("torch")
        jax_r = group.get("jax")
        naive = group.get("numpy-naive")
        for r in group.values():
            r.ratio_ref = _ratio(r.ratio_floor, ref.ratio_floor if ref else None)
            r.ratio_torch = _ratio(
                r.ratio_floor, torch_r.ratio_floor if torch_r else None
            )
            r.ratio_jax = _ratio(r.ratio_floor, jax_r.ratio_floor if jax_r else None)
            r.ratio_naive = _ratio(r.ratio_floor, naive.ratio_floor if naive else None)


# --------------------------------------------------------------------------- output


def _fmt_time(t: float | None) -> str:
    if t is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if t >= scale:
            return f"{t / scale:.3g} {unit}"
    return f"{t * 1e9:.3g} ns"


def _fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}"


def format_table(rows: list[dict[str, Any]]) -> str:
    header = [
        "op",
        "variant",
        "backend",
        "shape",
        "dtype",
        "thr",
        "median",
        "/floor",
        "/ref",
        "/torch",
        "/jax",
        "/naive",
        "peak MiB",
    ]
    lines = [header]
    for r in rows:
        mib = r.get("peak_extra_mib")
        lines.append(
            [
                r["op"],
                r["variant"],
                r["backend"],
                shape_str(r["shape"]),
                r["dtype"],
                "-" if r.get("threads") is None else str(r["threads"]),
                _fmt_time(r.get("time_s")),
                _fmt_ratio(r.get("ratio_floor")),
                _fmt_ratio(r.get("ratio_ref")),
                _fmt_ratio(r.get("ratio_torch")),
                _fmt_ratio(r.get("ratio_jax")),
                _fmt_ratio(r.get("ratio_naive")),
                "-" if mib is None else f"{mib:.0f}",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    numeric = set(range(5, len(header)))
    out = []
    for j, line in enumerate(lines):
        cells = [
            c.rjust(widths[i]) if i in numeric else c.ljust(widths[i])
            for i, c in enumerate(line)
        ]
        out.append("  ".join(cells).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def format_markdown(rows: list[dict[str, Any]]) -> str:
    """Ratios to the floor as a Markdown table: one line per op, variant, shape and
    dtype; one column per backend or peer and thread count."""
    cols: list[tuple[str, Any]] = sorted(
        {(r["backend"], r.get("threads")) for r in rows},
        key=lambda c: (
            c[0] in PEERS,
            PEERS.index(c[0]) if c[0] in PEERS else 0,
            c[0],
            c[1] or 0,
        ),
    )
    lines: dict[tuple[Any, ...], dict[tuple[str, Any], dict[str, Any]]] = {}
    for r in rows:
        k = (r["op"], r["variant"], shape_str(r["shape"]), r["dtype"])
        lines.setdefault(k, {})[(r["backend"], r.get("threads"))] = r
    head = ["op", "variant", "shape", "dtype"] + [
        b if t is None else f"{b} {t}t" for b, t in cols
    ]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k, cells in lines.items():
        vals = [
            _fmt_ratio(cells[c].get("ratio_floor")) if c in cells else "" for c in cols
        ]
        out.append("| " + " | ".join([*k, *vals]) + " |")
    return "\n".join(out)


def environment_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
    }
    try:
        import softcore as sc

        info["softcore"] = getattr(sc, "__version__", "?")
        info["backends"] = {
            b.name: {"version": b.version, "available": b.available}
            for b in sc.list_backends()
        }
    except Exception as exc:  # pragma: no cover - reported, not fatal
        info["softcore"] = f"import failed: {exc}"
    for mod in ("torch", "jax"):
        if mod in sys.modules:
            info[mod] = getattr(sys.modules[mod], "__version__", "?")
    return info


def plot(rows: list[dict[str, Any]], path: str) -> None:
    """Ratio-to-floor bars per op (one panel each), grouped by case, one colour per
    backend; the largest thread count measured is drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit(
            "--plot needs matplotlib (pip install 'softcore[bench]' or matplotlib)"
        ) from None
    rows = [r for r in rows if r.get("ratio_floor") is not None]
    top = max((r.get("threads") or 0 for r in rows), default=0)
    rows = [r for r in rows if (r.get("threads") or 0) == top]
    panels: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        variant = {"out": "out=", "alloc": "allocating", "plain": ""}.get(
            r["variant"], r["variant"]
        )
        label = f"{r['op']}, {variant}" if variant else r["op"]
        if r["op"] in ("logsumexp", "softmax_backward", "log_softmax_backward"):
            label = r["op"]
        if OPS[r["op"]].family == "jacobian":
            label = r["op"]
        panels.setdefault(label, []).append(r)
    if not panels:
        raise SystemExit("nothing to plot")
    who = sorted({r["backend"] for r in rows}, key=lambda b: (b in PEERS, b))
    colours = {b: plt.get_cmap("tab10")(i % 10) for i, b in enumerate(who)}
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(6.0 * ncols, 3.2 * nrows), squeeze=False
    )
    for ax, (label, prs) in zip(axes.flat, panels.items(), strict=False):
        cases = sorted(
            {(shape_str(r["shape"]), r["dtype"]) for r in prs},
            key=lambda c: (c[1], math.prod(parse_shape(c[0])), c[0]),
        )
        present = [b for b in who if any(r["backend"] == b for r in prs)]
        width = 0.8 / max(len(present), 1)
        for i, b in enumerate(present):
            xs, ys = [], []
            for j, c in enumerate(cases):
                for r in prs:
                    if r["backend"] == b and (shape_str(r["shape"]), r["dtype"]) == c:
                        xs.append(j + (i - (len(present) - 1) / 2) * width)
                        ys.append(r["ratio_floor"])
            ax.bar(xs, ys, width=width, color=colours[b], label=b)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_title(label, fontsize=10)
        ax.set_xticks(range(len(cases)))
        ax.set_xticklabels(
            [f"{s} {d.replace('float', 'f')}" for s, d in cases],
            fontsize=7,
            rotation=35,
            ha="right",
        )
        floor = prs[0]["floor"]
        ax.set_ylabel(
            {
                "copy": "time / copy",
                "fill": "time / fill J",
                "gemm3": "time / 3 GEMMs",
            }.get(floor, "ratio"),
            fontsize=8,
        )
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[b]) for b in who]
    fig.legend(
        handles,
        who,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.975),
        ncol=min(len(who), 8),
        frameon=False,
    )
    thr = f", {top} thread{'s' if top > 1 else ''}" if top else ""
    fig.suptitle(
        f"softcore: median time / floor (lower is better{thr})", y=0.998, fontsize=12
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.75 / fig.get_figheight()))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def compare(
    baseline: list[dict[str, Any]], current: list[dict[str, Any]], threshold: float
) -> tuple[list[str], int]:
    """Rows whose ratio to the floor got more than ``threshold`` worse.

    Returns the report lines and the number of regressions.  Only softcore's own
    backends are judged; peers are context.
    """
    old = {_key(r): r for r in baseline}
    lines: list[str] = []
    bad = 0
    matched = 0
    for r in current:
        if r["backend"] in PEERS or r.get("ratio_floor") is None:
            continue
        b = old.get(_key(r))
        if b is None or b.get("ratio_floor") is None:
            continue
        matched += 1
        change = r["ratio_floor"] / b["ratio_floor"] - 1.0
        if change > threshold:
            bad += 1
            k = _key(r)
            lines.append(
                f"REGRESSION {k[0]}/{k[1]} {k[2]} {k[3]} {k[4]} threads={k[5]}: "
                f"ratio {b['ratio_floor']:.3f} -> {r['ratio_floor']:.3f} "
                f"(+{change:.0%}, limit +{threshold:.0%})"
            )
    lines.append(
        f"compared {matched} op/backend cases with the baseline: "
        f"{bad} worse by more than {threshold:.0%}"
    )
    return lines, bad


def _load_rows(path: str) -> list[dict[str, Any]]:
    with open(path) as f:
        data = json.load(f)
    rows = data["results"] if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise SystemExit(f"{path}: no 'results' list")
    return rows


# --------------------------------------------------------------------------- CLI


def _csv(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        return [kind(t) for t in text.split(",") if t.strip()]

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m softcore bench",
        description=(
            "Time every op on every backend, shape, dtype and thread count, next to "
            "its floor (np.copyto of the same array, filling the Jacobian, or the "
            "three GEMMs of linear CE) and the peers that are installed. Filters "
            "take comma-separated lists and may be repeated."
        ),
    )
    p.add_argument(
        "--op",
        action="extend",
        type=_csv(_op_name),
        metavar="OPS",
        help=f"ops to run (default all): {', '.join(OPS)}",
    )
    p.add_argument(
        "--variant",
        action="extend",
        type=_csv(str),
        metavar="VARIANTS",
        help="out/alloc for softmax and log_softmax; plain, weight, "
        "smoothing, ignore, prob, all for cross-entropy, and out for its "
        "gradient ops (peers run their plain call there); masked (logits "
        "under a causal mask, -inf in half) for the row, backward and "
        "cross-entropy ops; confident (the rest 20-45 below each row's "
        "maximum, the target) for the row and cross-entropy ops; weights, "
        "class_weights (one factor a class) and signed (SciPy's factors b, "
        "signed with return_sign) for logsumexp",
    )
    p.add_argument(
        "--backend",
        action="extend",
        type=_csv(str),
        metavar="NAMES",
        help="softcore backends and/or peers (torch, torch-chunked, jax, "
        "numpy-naive); default: every available backend and every peer",
    )
    p.add_argument(
        "--shape",
        action="extend",
        type=_csv(parse_shape),
        metavar="SHAPES",
        help="NxC for row ops, NxDxC for linear CE, e.g. 8192x1000",
    )
    p.add_argument(
        "--dtype",
        action="extend",
        type=_csv(_dtype_name),
        metavar="DTYPES",
        help="float32,float64 (default both); float16, bfloat16 (ml_dtypes')",
    )
    p.add_argument(
        "--threads",
        action="extend",
        type=_csv(int),
        metavar="NS",
        help="thread counts, e.g. 1,2 (default: leave as configured)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="samples per timing; the median is reported (default 7, 3 with --quick)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small shapes and short samples: a smoke run, not a measurement",
    )
    p.add_argument(
        "--peers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time torch / jax / naive NumPy where installed (default on)",
    )
    p.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="peak extra memory of linear CE and of 16-bit cross-entropy, one "
        "subprocess per case",
    )
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="draw ratio bars (matplotlib)")
    p.add_argument(
        "--markdown",
        metavar="FILE.md",
        help="write the ratios to the floor as a Markdown table (backend x threads)",
    )
    p.add_argument("--baseline", metavar="FILE", help="JSON of an earlier run")
    p.add_argument(
        "--compare",
        nargs="?",
        const="",
        metavar="FILE",
        help="regression guard against --baseline: exit 1 if any "
        "softcore ratio is more than --threshold worse. With FILE, "
        "compare that JSON without measuring",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.10,
        help="allowed relative worsening of a ratio (default 0.10)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-table", action="store_true", help="do not print the table")
    p.add_argument(
        "--min-time",
        type=float,
        default=None,
        help="seconds one timing sample lasts at least (default 0.05, 0.002 quick)",
    )
    p.add_argument(
        "--load",
        action="append",
        metavar="FILE",
        help="measure nothing: print/plot/merge the results of earlier --json runs "
        "(repeatable)",
    )
    return p


def _op_name(text: str) -> str:
    text = text.strip()
    if text not in OPS:
        raise argparse.ArgumentTypeError(
            f"unknown op {text!r}; expected one of {', '.join(OPS)}"
        )
    return text


def _dtype_name(text: str) -> str:
    text = text.strip()
    aliases = {
        "f16": "float16",
        "f32": "float32",
        "f64": "float64",
        "bf16": "bfloat16",
        "float16": "float16",
        "float32": "float32",
        "float64": "float64",
        "bfloat16": "bfloat16",
    }
    if text not in aliases:
        raise argparse.ArgumentTypeError(
            f"dtype must be float16, bfloat16, float32 or float64, got {text!r}"
        )
    if aliases[text] == "bfloat16":
        try:
            import ml_dtypes  # noqa: F401
        except ImportError:
            raise argparse.ArgumentTypeError(
                "bfloat16 needs ml_dtypes, its NumPy dtype (pip install ml_dtypes)"
            ) from None
    return aliases[text]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m softcore bench``; returns the exit status."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    if args.compare is not None and not args.baseline:
        raise SystemExit("--compare needs --baseline FILE")

    if args.compare:  # compare two stored runs, measure nothing
        rows = _load_rows(args.compare)
    else:
        if args.load:  # tables and plots of stored runs, measure nothing
            rows = [r for path in args.load for r in _load_rows(path)]
            env: dict[str, Any] = {"loaded_from": len(args.load)}
        else:
            rows = [r.__dict__ for r in run_matrix(args)]
            env = environment_info()
        payload = {
            "softcore_bench": 1,
            "environment": env,
            "settings": {
                "argv": list(argv) if argv is not None else sys.argv[1:],
                "repeat": args.repeat or (3 if args.quick else 7),
                "quick": args.quick,
                "threads": args.threads,
                "memory_method": "peak RSS in a subprocess (VmHWM reset, "
                "else ru_maxrss delta)",
            },
            "results": rows,
        }
        if args.json:
            with open(args.json, "w") as f:
                json.dump(payload, f, indent=1)
                f.write("\n")
        if not args.no_table:
            print(format_table(rows))
        if args.markdown:
            with open(args.markdown, "w") as f:
                f.write(format_markdown(rows) + "\n")
        if args.plot:
            plot(rows, args.plot)

    if args.compare is not None:
        lines, bad = compare(_load_rows(args.baseline), rows, args.threshold)
        print("\n".join(lines))
        return 1 if bad else 0
    return 0
