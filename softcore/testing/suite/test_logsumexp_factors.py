"""``logsumexp(x, b=..., return_sign=...)``: SciPy's factors, on every backend.

A backend's optional ``logsumexp_weighted_rows`` kernel computes it where the
backend has one; otherwise the core's own formula runs on the backend's array
module. Either way the values are held against mpmath (60 digits, from the
exact inputs) under logsumexp's tolerance, at the problem's own scale: the
kit's logsumexp metric ``max(|lse|, sum p |x|)`` with ``p`` each term's share
``|b e^x| / |sum b e^x|``, which grows where positive and negative terms cancel
(a result known only to that absolute error from any float inputs).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from softcore.testing import _oracle
from softcore.testing._assert import assert_identical, assert_ulp
from softcore.testing._cases import flatten
from softcore.testing._runtime import to_backend
from softcore.testing._tolerances import tolerance

KINDS = ("positive", "signed", "cancelling", "sparse")


def _inputs(kind: str, c: int, dtype: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((24, c)) * 4).astype(dtype)
    if kind == "positive":
        b = rng.uniform(0, 3, x.shape)
    elif kind == "signed":
        b = rng.standard_normal(x.shape)
    elif kind == "sparse":  # most factors zero, where x may hold anything
        b = rng.standard_normal(x.shape) * (rng.random(x.shape) < 0.2)
        b[:, 0] = 1.0  # a term in every row
        x[b == 0] = rng.choice(np.array([np.nan, np.inf, -np.inf, 1e4]), (b == 0).sum())
    else:  # two nearly equal terms of opposite signs lead every row
        x[:, 1] = x[:, 0] = x.max(axis=1) + 1
        b = rng.standard_normal(x.shape) * 1e-3
        b[:, 0] = 1.0
        b[:, 1] = -1.0 + rng.uniform(-1e-3, 1e-3, x.shape[0])
    return x, b.astype(dtype)


def _exact(x: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(log|S|, sign S, scale)`` of each row from mpmath (scale 1 where ``S``
    is 0)."""
    rows = [_oracle.weighted_logsumexp_row(xr, br) for xr, br in zip(x, b, strict=True)]
    out = np.array([r[0] for r in rows])
    sign = np.array([r[1] for r in rows])
    scale = np.array([max(abs(v), sx) if sg != 0 else 1.0 for v, sg, _, sx in rows])
    return out, sign, scale


def _call(sc: Any, backend: Any, x: np.ndarray, b: Any, **kw: Any) -> tuple:
    res = sc.logsumexp(
        to_backend(backend, x), b=to_backend(backend, b), backend=backend.name, **kw
    )
    return flatten(res)


@pytest.mark.parametrize("c", [1, 7, 300])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_logsumexp_factors_against_mpmath(
    sc: Any, backend: Any, dtype: str, kind: str, c: int
) -> None:
    """Values and signs within logsumexp's tolerance of mpmath; without
    ``return_sign``, a negative sum is NaN."""
    if kind == "cancelling" and c < 3:
        pytest.skip("a cancelling pair and a rest need 3 classes")
    x, b = _inputs(kind, c, dtype, seed=c)
    exact, exact_sign, scale = _exact(x, b)
    res, sign = _call(sc, backend, x, b, return_sign=True)
    assert res.dtype == sign.dtype == np.dtype(dtype)
    assert_ulp(
        res,
        exact,
        scale,
        tol=tolerance("logsumexp", dtype),
        op="logsumexp",
        output="lse with b",
        backend=backend.name,
        dtype=dtype,
        kind=kind,
        C=c,
    )
    assert_identical(
        sign, exact_sign.astype(dtype), what=f"logsumexp(b=)[{backend.name}] sign"
    )
    (plain,) = _call(sc, backend, x, b)
    want = np.where(exact_sign < 0, np.nan, res).astype(dtype)
    assert_identical(plain, want, what=f"logsumexp(b=)[{backend.name}] no sign")


def test_logsumexp_factors_special_rows(sc: Any, backend: Any) -> None:
    """A zero factor removes its term whatever ``x`` holds; a row with no term
    is NaN (as a row of -inf is); terms that cancel exactly give ``-inf`` and
    sign 0; a NaN or +inf ``x`` of a term, or a NaN or infinite factor, makes
    the row NaN (sign NaN), and only that row."""
    inf, nan = np.inf, np.nan
    x = np.array(
        [[0, 0], [nan, 1], [inf, 1], [1, 2], [-inf, -inf], [nan, 1], [inf, 1],
         [1, 2], [1, 2], [3, 3]]
    )  # fmt: skip
    b = np.array(
        [[1, -1], [0, 2], [0, 2], [0, 0], [1, -1], [1, 2], [-1, 2],
         [nan, 1], [inf, 1], [2, 3]]
    )  # fmt: skip
    want = np.array(
        [-inf, 1 + math.log(2), 1 + math.log(2), nan, nan, nan, nan, nan, nan,
         3 + math.log(5)]
    )  # fmt: skip
    want_sign = np.array([0, 1, 1, nan, nan, nan, nan, nan, nan, 1])
    res, sign = _call(sc, backend, x, b, return_sign=True)
    assert_ulp(
        res,
        want,
        np.abs(want),
        tol=tolerance("logsumexp", "float64"),
        op="logsumexp",
        output="lse with b",
        backend=backend.name,
        dtype="float64",
        record=False,
        case="special rows",
    )
    assert_identical(sign, want_sign, what=f"logsumexp(b=)[{backend.name}] sign")


def test_logsumexp_factors_broadcast_axes_and_low_precision(
    sc: Any, backend: Any
) -> None:
    """``b`` broadcasts to ``x`` (a row of factors, a scalar), over any axes,
    with ``keepdims``: the same values as the full factors over the last
    axis; float16 results are the float32 results rounded once."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 5))
    row = rng.standard_normal(5)
    full = np.broadcast_to(row, x.shape).copy()
    got = _call(sc, backend, x, row, return_sign=True)
    want = _call(sc, backend, x, full, return_sign=True)
    for g, w in zip(got, want, strict=True):
        assert_identical(g, w, what=f"logsumexp(b=)[{backend.name}] broadcast")
    moved = np.moveaxis(x, 1, -1)
    fm = np.moveaxis(full, 1, -1)
    got = _call(sc, backend, x, full, axis=1, keepdims=True, return_sign=True)
    want = _call(sc, backend, moved, fm, return_sign=True)
    for g, w in zip(got, want, strict=True):
        assert_identical(
            g, np.expand_dims(w, 1), what=f"logsumexp(b=)[{backend.name}] axis=1"
        )
    x16, b16 = x.astype(np.float16), full.astype(np.float16)
    got = _call(sc, backend, x16, b16, return_sign=True)
    want = _call(
        sc, backend, x16.astype(np.float32), b16.astype(np.float32), return_sign=True
    )
    for g, w in zip(got, want, strict=True):
        assert_identical(
            g, w.astype(np.float16), what=f"logsumexp(b=)[{backend.name}] float16"
        )


@pytest.mark.parametrize("c", [9, 33])
def test_logsumexp_factors_independent_of_threads(
    sc: Any, backend: Any, c: int
) -> None:
    """Bitwise the same results with one thread and with all of them, for
    factors of ``x``'s shape and for one row of them broadcast to every row
    (which equals the same row copied to every row); short and longer rows."""
    if not getattr(backend, "threaded", False):
        pytest.skip(f"backend {backend.name!r} is not threaded (threaded=False)")
    x, b = _inputs("signed", c, "float32", seed=9)
    x = np.tile(x, (200, 1))
    shared = b[7]
    for what, factors in (("full", np.tile(b, (200, 1))), ("one row", shared)):
        n = backend.get_num_threads()
        try:
            backend.set_num_threads(1)
            one = _call(sc, backend, x, factors, return_sign=True)
        finally:
            backend.set_num_threads(n)
        every = _call(sc, backend, x, factors, return_sign=True)
        for g, w in zip(every, one, strict=True):
            assert_identical(
                g, w, what=f"logsumexp(b=)[{backend.name}] {what}, {n} threads"
            )
    copied = _call(sc, backend, x, np.broadcast_to(shared, x.shape).copy())
    assert_identical(
        _call(sc, backend, x, shared),
        copied,
        what=f"logsumexp(b=)[{backend.name}] one row of factors, broadcast",
    )
