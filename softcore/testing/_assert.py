"""Comparisons whose failure messages say what, where, expected and received."""

from __future__ import annotations

from typing import Any

import numpy as np

from softcore._validate import is_floating
from softcore.testing._runtime import ACCURACY

LD = np.longdouble


def _fmt_index(idx: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(int(i)) for i in idx) + "]"


def ulp_errors(got: Any, exact: Any, scale: Any, dtype: Any) -> np.ndarray:
    """``|got - exact|`` in ULPs of ``dtype`` at magnitude ``scale`` (elementwise).

    NaN where both are NaN, equal infinities, and an exact value beyond the dtype's
    range met by the matching infinity (or the largest finite value) count as 0;
    a NaN or infinity on one side only counts as ``inf``.
    """
    dtype = np.dtype(dtype)
    fi = np.finfo(dtype)
    with np.errstate(all="ignore"):
        g = np.asarray(got).astype(LD)
        e = np.asarray(exact).astype(LD)
        s = np.abs(np.asarray(scale).astype(LD))
        s = np.where(np.isnan(s), np.abs(e), s)
        unit = np.spacing(np.minimum(s, LD(fi.max)).astype(dtype)).astype(LD)
        err = np.abs(g - e) / unit
        e_rounded = e.astype(dtype).astype(LD)
        overflow = np.isinf(e_rounded) & ~np.isinf(e)
        ok = (
            (np.isnan(g) & np.isnan(e))
            | (np.isinf(e) & (g == e))
            | (
                overflow
                & (
                    (g == e_rounded)
                    | ((np.abs(g) == LD(fi.max)) & (np.sign(g) == np.sign(e)))
                )
            )
        )
        err = np.where(ok, LD(0), err)
        err = np.where(np.isnan(err), LD(np.inf), err)
    return np.asarray(err, dtype=np.float64)


def describe(**ctx: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in ctx.items() if v is not None)


def assert_ulp(
    got: Any,
    exact: Any,
    scale: Any,
    *,
    tol: float,
    op: str,
    output: str,
    backend: str,
    dtype: Any,
    record: bool = True,
    **ctx: Any,
) -> float:
    """Assert ``got`` is within ``tol`` ULPs of ``exact`` at ``scale``; return max."""
    got = np.asarray(got)
    exact = np.asarray(exact)
    where = f"{op}[{backend}] {output}, dtype {np.dtype(dtype).name}, " + describe(
        **ctx
    )
    if got.shape != exact.shape:
        raise AssertionError(
            f"{where}: wrong shape: expected {exact.shape}, received {got.shape}"
        )
    if got.size == 0:
        return 0.0
    err = ulp_errors(got, exact, scale, dtype)
    worst = float(err.max())
    if record and np.isfinite(worst):
        ACCURACY.note(op, output, np.dtype(dtype).name, worst)
    if not worst <= tol:
        idx = np.unravel_index(int(np.argmax(err)), err.shape)
        n_bad = int((err > tol).sum())
        raise AssertionError(
            f"{where}: max error {worst:.4g} ULP > tolerance {tol:g} ULP "
            f"at index {_fmt_index(idx)} ({n_bad} of {err.size} elements over): "
            f"expected {float(exact[idx])!r}, received {float(got[idx])!r}"
        )
    return worst


def assert_identical(got: Any, want: Any, *, what: str, **ctx: Any) -> None:
    """Bitwise equality (NaNs equal when their bits are), same shape and dtype."""
    got = np.asarray(got)
    want = np.asarray(want)
    head = f"{what} ({describe(**ctx)})"
    if got.shape != want.shape:
        raise AssertionError(f"{head}: shape {got.shape} != {want.shape}")
    if got.dtype != want.dtype:
        raise AssertionError(f"{head}: dtype {got.dtype} != {want.dtype}")
    a = np.ascontiguousarray(got)
    b = np.ascontiguousarray(want)
    if a.dtype.byteorder not in "=|":
        a = a.astype(a.dtype.newbyteorder("="))
    if b.dtype.byteorder not in "=|":
        b = b.astype(b.dtype.newbyteorder("="))
    if a.itemsize in (1, 2, 4, 8):
        bits = np.dtype(f"u{a.itemsize}")
        same = a.view(bits) == b.view(bits)
    else:
        same = a == b
    # NaN payloads may differ: any NaN matches any NaN
    if is_floating(a.dtype):
        same = same | (np.isnan(a) & np.isnan(b))
    if not np.all(same):
        idx = np.unravel_index(int(np.argmin(same)), same.shape) if same.ndim else ()
        n_bad = int((~np.asarray(same)).sum())
        raise AssertionError(
            f"{head}: not bitwise equal at index {_fmt_index(idx)} "
            f"({n_bad} of {max(a.size, 1)} elements differ): "
            f"expected {b[idx]!r}, received {a[idx]!r}"
        )
