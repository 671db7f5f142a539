"""The CUDA kernels, executed on the host, against the NumPy reference backend.

``host_cuda.h`` compiles ``kernels.cu`` as C++ with one fiber per CUDA thread
(taking turns first to last, and last to first), so these tests run the kernels'
real code (warp and block reductions, register caches, vector and unaligned slots,
special values, aliasing) on machines without a GPU. They also drive the real
launch code of ``softcore_cupy._kernels``. What they cannot show: GPU timing, the
NVRTC/PTX code generation itself (see test_cupy_compile.py), -ftz (see
test_float_conversions_keep_subnormals) and races between threads that run at once
(the fibers take turns). The tests on a real device are in test_cupy_gpu.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import cupy_emulation as _emu
import float32_rows
import float64_rows
import numpy as np
import pytest
import split_rows

from softcore_cupy import _kernels as K

_ref_module = pytest.importorskip("softcore._reference")
weighted_logsumexp_row = pytest.importorskip(
    "softcore.testing._oracle"
).weighted_logsumexp_row
reference, index_plan = _ref_module.backend, _ref_module.index_plan

DTYPES = [np.float32, np.float64]
# warp mode, vector slots or not, block mode (600 and 1001 under the shipped rule), and
# rows longer than the register cache (1001 under the few-threads launch)
WIDTHS = [1, 3, 10, 64, 600, 1001]
WIDE = {np.float32: 17000, np.float64: 9000}
TOL = {np.float32: (2e-6, 1e-7), np.float64: (1e-13, 1e-15)}
NO_CXX = "no C++ compiler: the host emulation of the kernels is not built"


LAUNCHES = ["rule", "few-threads", "rows-share-warps"]


@pytest.fixture(
    scope="module",
    params=[f"{launch}{order}" for order in ("", "-reverse") for launch in LAUNCHES],
)
def emu(tmp_path_factory, request):
    """The emulation, launched by the shipped threads-per-row rule, by one with fewer
    threads (any count of K.THREADS_PER_ROW up to the bound is a valid launch), and by
    one that gives narrow rows 8 or 16 lanes of a warp (group mode); each with a
    block's threads taking turns first to last and last to first (a value read before
    the barrier that makes it ready is stale in one of the two orders)."""
    if _emu.compiler() is None:
        pytest.skip(NO_CXX)
    dll = _emu.build(tmp_path_factory.getbasetemp())
    per_thread, least = K._PER_THREAD, K._MIN_THREADS
    launch = request.param.removesuffix("-reverse")
    if launch == "few-threads":  # about 256 elements a thread
        K._PER_THREAD = {4: 256, 8: 256}
    elif launch == "rows-share-warps":  # 8 threads up to 32 classes, 16 to 64
        K._PER_THREAD, K._MIN_THREADS = {4: 4, 8: 4}, 8
    order = (
        _emu.reverse_order(dll)
        if request.param.endswith("-reverse")
        else contextlib.nullcontext()
    )
    try:
        with _emu.emulated(dll), order:
            yield
    finally:
        K._PER_THREAD, K._MIN_THREADS = per_thread, least


def _close(got, ref, dtype, what):
    rtol, atol = TOL[dtype]
    got = np.asarray(got)
    scale = np.nanmax(np.abs(np.where(np.isfinite(ref), ref, 0)), initial=1.0)
    np.testing.assert_allclose(
        got, ref, rtol=rtol, atol=atol * max(1.0, scale), equal_nan=True, err_msg=what
    )


def _logits(rng, rows, c, dtype, special=True):
    x = (rng.standard_normal((rows, c)) * 4).astype(dtype)
    if special and rows >= 5:
        x[1, c // 2] = np.nan
        x[2, c - 1] = np.inf
        x[3, :] = -np.inf
        if c > 1:
            x[4, 0] = -np.inf
    return x


def _row_op(op, x, *extra):
    got = _emu.dev(np.empty_like(x))
    getattr(K, op)(_emu.dev(x), *map(_emu.dev, extra), got)
    ref = np.empty_like(x)
    getattr(reference, op)(x, *extra, ref)
    return got, ref


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("c", WIDTHS)
@pytest.mark.parametrize("op", ["softmax_rows", "log_softmax_rows"])
def test_softmax_family(emu, op, c, dtype):
    x = _logits(np.random.default_rng(c), 6, c, dtype)
    got, ref = _row_op(op, x)
    _close(got, ref, dtype, f"{op} C={c}")
    assert np.isnan(np.asarray(got)[1:4]).all()  # NaN, +inf and all -inf rows


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_rows_longer_than_the_register_cache(emu, dtype):
    c = WIDE[dtype]
    x = _logits(np.random.default_rng(1), 2, c, dtype, special=False)
    x[1, -1] = 50.0  # the maximum in the part read twice
    for op in ("softmax_rows", "log_softmax_rows"):
        got, ref = _row_op(op, x)
        _close(got, ref, dtype, f"{op} C={c}")
    got = _emu.dev(np.empty(2, dtype))
    K.logsumexp_rows(_emu.dev(x), got)
    ref = np.empty(2, dtype)
    reference.logsumexp_rows(x, ref)
    _close(got, ref, dtype, "logsumexp")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("c", WIDTHS)
def test_logsumexp(emu, c, dtype):
    x = _logits(np.random.default_rng(c), 6, c, dtype)
    got = _emu.dev(np.empty(6, dtype))
    K.logsumexp_rows(_emu.dev(x), got)
    ref = np.empty(6, dtype)
    reference.logsumexp_rows(x, ref)
    _close(got, ref, dtype, f"logsumexp C={c}")


def _weighted_rows(rng, c, dtype):
    """Rows of logits and factors for ``sc_logsumexp_weighted``: signed and
    non-negative factors, zeros that remove NaN and +inf logits, a row with no
    term, NaN and infinite factors, a -inf logit with a factor, terms that cancel
    exactly, and (float64) factors near the dtype's largest."""
    x = (rng.standard_normal((10, c)) * 4).astype(dtype)
    b = rng.standard_normal((10, c)).astype(dtype)
    b[1] = np.abs(b[1])
    x[2, 0], x[2, -1], b[2, 0], b[2, -1] = np.nan, np.inf, 0, 0  # masked by b = 0
    b[3] = 0  # no term: NaN
    b[4, c // 2] = np.nan
    b[5, 0] = np.inf
    x[6, 0] = -np.inf  # a zero term
    x[7], b[7] = 0.5, 0  # 3 - 3: exactly 0, -inf with sign 0
    b[7, 0], b[7, c - 1] = 3, (-3 if c > 1 else 3)
    b[8] = np.abs(b[8]) * (1e300 if dtype == np.float64 else 1e37)
    b[9] = np.abs(b[9]) * (1e-300 if dtype == np.float64 else 1e-37)
    return x, b


def _near_mpmath(x, b, res, sign, rows):
    """``res`` and ``sign`` of ``rows`` against mpmath: the sign exactly, the value
    within the kit's bound (4 ULPs of the sum's conditioning)."""
    eps = float(np.finfo(x.dtype).eps)
    for i in rows:
        want, want_sign, spread, spread_x = weighted_logsumexp_row(x[i], b[i])
        assert sign[i] == want_sign, f"row {i}: sign {sign[i]}, want {want_sign}"
        bound = 4 * eps * (spread + spread_x + abs(want))
        assert abs(float(res[i]) - want) <= bound, f"row {i}: {res[i]!r}, want {want!r}"


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("c", WIDTHS)
def test_logsumexp_weighted(emu, c, dtype):
    """``sc_logsumexp_weighted`` against mpmath (the kit's bound: 4 ULPs of the
    sum's conditioning), and its special rows as the contract has them."""
    x, b = _weighted_rows(np.random.default_rng(c), c, dtype)
    res, sign = _emu.dev(np.empty(10, dtype)), _emu.dev(np.empty(10, dtype))
    K.logsumexp_weighted_rows(_emu.dev(x), _emu.dev(b), res, sign)
    res, sign = np.asarray(res), np.asarray(sign)
    special = {2, 3, 4, 5} | ({7} if c > 1 else {6})
    _near_mpmath(x, b, res, sign, [i for i in range(10) if i not in special])
    # row 2: the masked NaN and +inf are not terms; 3: no term; 4, 5: NaN and inf
    # factors; 7: two terms that cancel exactly (with more than one class)
    if c > 2:
        assert np.isfinite(res[2])
        assert sign[2] != 0
    else:  # both masked classes were the row's only ones
        assert np.isnan(res[2])
    assert np.isnan(res[3:6]).all()
    assert np.isnan(sign[3:6]).all()
    if c == 1:  # the only term's x is -inf: no term, NaN as for a row of -inf
        assert np.isnan(res[6])
        assert np.isnan(sign[6])
    else:
        assert res[7] == -np.inf
        assert sign[7] == 0


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("c", [3, 64, 600])
def test_logsumexp_weighted_one_row_of_factors_for_every_row(emu, c, dtype):
    """``b`` of shape ``(1, C)`` (row stride 0 in the kernel): the same bits as
    that row copied to every row."""
    x, b = _weighted_rows(np.random.default_rng(c + 7), c, dtype)
    out = []
    for bs in (b[1:2], np.repeat(b[1:2], 10, axis=0)):
        res, sign = _emu.dev(np.empty(10, dtype)), _emu.dev(np.empty(10, dtype))
        K.logsumexp_weighted_rows(_emu.dev(x), _emu.dev(bs), res, sign)
        out.append((np.asarray(res), np.asarray(sign)))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])
    assert np.isfinite(out[0][0][[0, 1, 6, 8, 9]]).all()  # rows of finite x


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_logsumexp_weighted_unaligned_and_wide(emu, dtype):
    """Operands off the vector alignment take the unaligned kernel with the same
    bits; rows of 17000 (float32) and 9000 (float64) classes against mpmath."""
    c = 600
    x, b = _weighted_rows(np.random.default_rng(5), c, dtype)
    bufs = [np.empty(x.size + 1, dtype) for _ in range(2)]
    xu, bu = (buf[1:].reshape(x.shape) for buf in bufs)
    xu[...], bu[...] = x, b
    assert K._row_variant(c, x.itemsize, _emu.dev(xu), _emu.dev(bu)).endswith("u")
    out = []
    for xs, bs in ((x, b), (xu, bu)):
        res, sign = _emu.dev(np.empty(10, dtype)), _emu.dev(np.empty(10, dtype))
        K.logsumexp_weighted_rows(_emu.dev(xs), _emu.dev(bs), res, sign)
        out.append((np.asarray(res), np.asarray(sign)))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])
    wide = WIDE[dtype]
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((2, wide)) * 4).astype(dtype)
    b = rng.standard_normal((2, wide)).astype(dtype)
    res, sign = _emu.dev(np.empty(2, dtype)), _emu.dev(np.empty(2, dtype))
    K.logsumexp_weighted_rows(_emu.dev(x), _emu.dev(b), res, sign)
    _near_mpmath(x, b, np.asarray(res), np.asarray(sign), range(2))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("c", [1, 3, 10, 64, 600])
@pytest.mark.parametrize("op", ["softmax_backward_rows", "log_softmax_backward_rows"])
def test_backward(emu, op, c, dtype):
    rng = np.random.default_rng(c)
    x = _logits(rng, 4, c, dtype, special=False)
    probs = np.empty_like(x)
    if op == "softmax_backward_rows":
        reference.softmax_rows(x, probs)
    else:
        reference.log_softmax_rows(x, probs)
    g = rng.standard_normal((4, c)).astype(dtype)
    got, ref = _row_op(op, g, probs)
    _close(got, ref, dtype, f"{op} C={c}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("c", [1, 3, 10, 40])
@pytest.mark.parametrize("kernel", ["rows", "wide"])
@pytest.mark.parametrize("op", ["softmax_jacobian_rows", "log_softmax_jacobian_rows"])
def test_jacobian(emu, op, kernel, c, dtype, monkeypatch):
    """Both Jacobian kernels: probabilities staged in shared memory (rows to
    JAC_ROWS_MAX classes), and the one wider rows take, forced here."""
    if kernel == "wide":
        monkeypatch.setattr(K, "JAC_ROWS_MAX", 0)
    x = _logits(np.random.default_rng(c), 5, c, dtype)
    got = _emu.dev(np.empty((5, c, c), dtype))
    getattr(K, op)(_emu.dev(x), got)
    ref = np.empty((5, c, c), dtype)
    getattr(reference, op)(x, ref)
    _close(got, ref, dtype, f"{op} C={c}")


@pytest.mark.parametrize("kernel", ["rows", "wide"])
@pytest.mark.parametrize("op", ["softmax_jacobian_rows", "log_softmax_jacobian_rows"])
def test_jacobian_float64_tiny_probabilities(emu, op, kernel, monkeypatch):
    """float64 off-diagonal entries (-p_i p_j, -p_j) within 3 ulps of mpmath in rows
    whose logits span about 150 (110 ulps when the exp's argument was rounded)."""
    pytest.importorskip("mpmath")
    if kernel == "wide":
        monkeypatch.setattr(K, "JAC_ROWS_MAX", 0)
    x = float64_rows.wide_span_rows(7)
    got = _emu.dev(np.empty((4, 7, 7)))
    getattr(K, op)(_emu.dev(x), got)
    worst = float64_rows.jacobian_offdiag_ulps(x, np.asarray(got), op.startswith("log"))
    assert worst <= 3, f"{op} ({kernel} kernel): {worst:.2f} ulps"


@pytest.mark.parametrize("c", [7, 600])
def test_softmax_float64_tiny_probabilities(emu, c):
    """float64 softmax within 3 ulps of mpmath on the same rows: kept exps (every
    layout of 7 classes, 600 under the rule) and, under the few-threads launch, the
    slots of 600 past the registers (exp_shift)."""
    pytest.importorskip("mpmath")
    x = float64_rows.wide_span_rows(c)
    got = _emu.dev(np.empty_like(x))
    K.softmax_rows(_emu.dev(x), got)
    worst = float64_rows.softmax_ulps(x, np.asarray(got))
    assert worst <= 3, f"softmax C={c}: {worst:.2f} ulps"


def _dominated_rows(c, tops, seed, at=None, below=(20.0, 31.0), dtype=np.float64):
    """Rows of c logits, one per entry of tops: the row's maximum tops[r] (near 0) at
    at[r] (or a random place), the others 20 to 31 (or `below`) below it. Below 32,
    x - m rounds (in the row's type) by at most half an ULP of 16, which moves each
    term by at most 2^-49 of itself in float64, 2^-20 in float32; x - m is exact where
    the maximum is 0."""
    rng = np.random.default_rng(seed)
    x = np.empty((len(tops), c))
    for r, top in enumerate(tops):
        x[r] = top - rng.uniform(*below, c)
        x[r, rng.integers(c) if at is None else at[r]] = top
    return x.astype(dtype)


def _log_sum_parts(x):
    """Each row's argmax, maximum m and log S = log1p(t), t the sum of exp(x - m)
    over every other class, in long double (the kernels' log S is float64)."""
    rows = np.arange(x.shape[0])
    top = x.argmax(axis=1)
    xl = x.astype(np.longdouble)
    m = xl[rows, top]
    e = np.exp(xl - m[:, None])
    e[rows, top] = 0
    return top, m, np.log1p(e.sum(axis=1))


def _dominated_errors(x):
    """logsumexp's error in ulps of max(|lse|, |m|) (float64) or of the kit's metric
    max(|lse|, sum p |x|) (float32, whose kernels form x - m in float32: a rounding
    the metric allows for), and the log-sum-exp's own log S (the maximum's
    log_softmax entry -log S, the unsmoothed class-index and probability-target
    losses log S with the target on the maximum) in ulps of log S in x's type, the
    worst over x's rows: {what: ulps}."""
    rows, c = x.shape
    top, m, ls = _log_sum_parts(x)
    lse = m + ls
    if x.dtype == np.float32:
        xl = x.astype(np.longdouble)
        scale = np.maximum(np.abs(lse), (np.exp(xl - lse[:, None]) * np.abs(xl)).sum(1))
    else:
        scale = np.maximum(np.abs(lse), np.abs(m))
    got = {}
    out = _emu.dev(np.empty(rows, x.dtype))
    K.logsumexp_rows(_emu.dev(x), out)
    got["logsumexp"] = np.abs(np.asarray(out) - lse) / np.spacing(scale.astype(x.dtype))
    out = _emu.dev(np.empty_like(x))
    K.log_softmax_rows(_emu.dev(x), out)
    got["log_softmax"] = np.abs(np.asarray(out)[np.arange(rows), top] + ls)
    ones = np.ones(rows)
    loss, grad = _emu.dev(np.empty(rows)), _emu.dev(np.empty_like(x))
    K.cross_entropy_grad_rows(
        _emu.dev(x),
        *map(_emu.dev, (top.astype(np.int64), ones, 0 * ones, np.ones(c))),
        1.0,
        loss,
        grad,
    )
    got["ce"] = np.abs(np.asarray(loss) - ls)
    onehot = np.zeros_like(x)
    onehot[np.arange(rows), top] = 1.0
    loss = _emu.dev(np.empty(rows))
    K.cross_entropy_prob_rows(
        _emu.dev(x), _emu.dev(onehot), 0.0, _emu.dev(np.ones(c)), loss
    )
    got["ce_prob"] = np.abs(np.asarray(loss) - ls)
    for what in ("log_softmax", "ce", "ce_prob"):
        got[what] = got[what] / np.spacing(ls.astype(x.dtype))
    return {what: float(np.max(v.astype(np.float64))) for what, v in got.items()}


def _assert_near_1(worst, what):
    """logsumexp within 4 ulps of its scale, log S (log_softmax's entry at the
    maximum, the losses with the target there) within 32 of itself."""
    assert worst["logsumexp"] <= 4, (what, worst)
    for op in ("log_softmax", "ce", "ce_prob"):
        assert worst[op] <= 32, (what, op, worst)


def _split_dominated_errors(tmp_path_factory, monkeypatch, cl, per_thread, rows):
    """:func:`_dominated_errors` of ``rows(c)``, rows split over a cluster of ``cl``
    blocks of 64 threads (``c`` as ``split_rows.width`` gives it)."""
    if _emu.compiler() is None:
        pytest.skip(NO_CXX)
    c = split_rows.width(cl, per_thread, 64)
    monkeypatch.setattr(K, "SPLIT_THREADS", 64)
    monkeypatch.setattr(K, "SPLIT", True)
    x = rows(c)
    with _emu.emulated(_emu.build(tmp_path_factory.getbasetemp())):
        return _dominated_errors(x)


# rows whose maximum dominates: a few classes, several warps' worth (block mode; group
# mode with a tail under the few-threads launch), and past the register cache of 1024
# threads (the tail loop; the maximum there in the second row)
DOMINATED = [
    (np.array([[0.0, -40.0], [0.0, -20.0], [-40.0, 0.0]]), "two classes"),
    (
        np.array(
            [
                [1e-4, -20.0, -25.0, -30.0, -22.0],
                [-1e-4, -25.0, -20.0, -1e-4 - 21, -30.0],
            ]
        ),
        "five classes",
    ),
    (_dominated_rows(3000, [0.0, 1e-4, -3e-4, 2.0**-20], 3), "3000 classes"),
    (_dominated_rows(9000, [0.0, 1e-4], 4, at=[5, 8990]), "9000 classes"),
]


@pytest.mark.parametrize(("x", "what"), DOMINATED, ids=[w for _, w in DOMINATED])
def test_float64_log_sum_near_1(emu, x, what):
    """float64 rows whose maximum (near 0) dominates: S = 1 + t rounds to a unit of 1,
    which was all of log S below t = 2^-53 (logsumexp of [0, -40] was 0 for 4.2e-18,
    that of [0, -20] 3e-8 of itself off; 3000 classes 20 to 31 below 0: log S 2e-10 of
    itself off, 8e5 ulps). The kernels take log S as log(S) + E / S, E the sum's
    rounding error: logsumexp within 4 ulps of max(|lse|, |m|) against long double,
    and log S itself (log_softmax's entry at the maximum, the losses with the target
    there) within 32 ulps of itself (x - m rounds: each term up to 2^-49 of itself
    off). Under every launch: group mode (a few classes; 3000 under the few-threads
    launch, with a tail), block mode, rows past the register cache."""
    _assert_near_1(_dominated_errors(x), what)


@pytest.mark.parametrize("cl", [2, 8])
def test_float64_log_sum_near_1_split_rows(tmp_path_factory, monkeypatch, cl):
    """The same on rows split over a cluster's blocks (their sums folded across the
    blocks; the maximum in the first, a middle or the last block's segment)."""

    def rows(c):
        return _dominated_rows(c, [0.0, 1e-4, 0.0], cl, at=[3, c // 2, c - 3])

    worst = _split_dominated_errors(tmp_path_factory, monkeypatch, cl, 8, rows)
    _assert_near_1(worst, f"split over {cl}")


def _dominated_f32(c, seed, at=None):
    """float32 rows of c logits whose maximum dominates: two with the maximum exactly
    0 and the rest 33 to 45 below (x - m exact; S - 1 about c 4e-16, below the plain
    sum's rounding to 2^-53 as the maximum's 1 is added), two with the maximum
    +-1e-6 and the rest 24 to 31.5 below (x - m rounds, by at most 2^-20 of each
    term)."""
    at0, at1 = (None, None) if at is None else (at[:2], at[2:])
    zero = _dominated_rows(c, [0.0, 0.0], seed, at0, (33.0, 45.0), np.float32)
    tiny = _dominated_rows(c, [1e-6, -1e-6], seed + 1, at1, (24.0, 31.5), np.float32)
    return np.concatenate([zero, tiny])


DOMINATED_F32 = [
    (np.array([[0.0, -40.0], [0.0, -20.0], [-40.0, 0.0]], np.float32), "two classes"),
    (
        np.array(
            [[0.0, -25.0, -30.0], [1e-6, -20.0, -25.0], [-30.0, -1e-6, -21.0]],
            np.float32,
        ),
        "three classes",
    ),
    (_dominated_f32(3000, 3), "3000 classes"),
    (_dominated_f32(17000, 4, at=[5, 16990, 9000, 16999]), "17000 classes"),
]


@pytest.mark.parametrize(
    ("x", "what"), DOMINATED_F32, ids=[w for _, w in DOMINATED_F32]
)
def test_float32_log_sum_near_1(emu, x, what):
    """float32 rows whose maximum (0 or +-1e-6) dominates. Their exps are summed in
    double, where the maximum's 1 rounds the rest to 2^-53: logsumexp of [0, -40] was
    0 for 4.2e-18, and rows of 3000 classes 33 to 45 below 0 had log S off by 1e4 of
    its float32 ulps. A row whose sum is below 1 + C 2^-26 is summed again, its exact
    ones apart from the rest: logsumexp within 4 ulps of the kit's metric
    max(|lse|, sum p |x|), log S itself (log_softmax's entry at the maximum, the
    losses with the target there) within 32 float32 ulps of itself (half an ulp
    where the maximum is 0; elsewhere x - m rounds in float32, 8 to 13 ulps). Under
    every launch: group mode, block mode, rows past the register cache (17000
    classes, and 3000 under the few-threads launch)."""
    _assert_near_1(_dominated_errors(x), what)


@pytest.mark.parametrize("cl", [2, 8])
def test_float32_log_sum_near_1_split_rows(tmp_path_factory, monkeypatch, cl):
    """The same on float32 rows split over a cluster's blocks (the sum taken again
    is folded across the blocks; the maximum in the first, a middle or the last
    block's segment)."""

    def rows(c):
        return _dominated_f32(c, cl, at=[3, c // 2, c - 3, c // 3])

    worst = _split_dominated_errors(tmp_path_factory, monkeypatch, cl, 4, rows)
    _assert_near_1(worst, f"split over {cl}")


@pytest.mark.parametrize(("rows", "c"), [(60, 40), (700, 3), (2, 1024), (3, 513)])
def test_jacobian_row_groups(emu, rows, c, monkeypatch):
    """The shared-memory kernel's groups of JAC_ROWS_MAX // C rows: several per block
    (two blocks for all of them), a partial last one, one row of 1024 classes."""
    monkeypatch.setattr(K, "_JAC_GRID", 2)
    x = _logits(np.random.default_rng(rows), rows, c, np.float32)
    for op in ("softmax_jacobian_rows", "log_softmax_jacobian_rows"):
        got = _emu.dev(np.empty((rows, c, c), np.float32))
        getattr(K, op)(_emu.dev(x), got)
        ref = np.empty((rows, c, c), np.float32)
        getattr(reference, op)(x, ref)
        _close(got, ref, np.float32, f"{op} {rows}x{c}")


def _ce_args(rng, rows, c, smoothing, weighted):
    target = rng.integers(0, c, rows).astype(np.int64)
    cw = rng.uniform(0.5, 2.0, c) if weighted else np.ones(c)
    eps = smoothing
    alpha = (1 - eps) * cw[target]
    beta = np.full(rows, eps / c)
    alpha[0] = beta[0] = 0.0  # an ignored row
    target[0] = 0
    return target, alpha, beta, cw


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("c", [1, 3, 10, 64, 1001])
@pytest.mark.parametrize(("smoothing", "weighted"), [(0.0, False), (0.1, True)])
def test_cross_entropy_index(emu, c, dtype, smoothing, weighted):
    rng = np.random.default_rng(c)
    rows = 6
    x = _logits(rng, rows, c, dtype)
    x[0, :] = np.nan  # ignored rows give 0 whatever their logits
    target, alpha, beta, cw = _ce_args(rng, rows, c, smoothing, weighted)
    scale = 1.0 / max(1e-300, alpha.sum())
    loss = _emu.dev(np.empty(rows))
    grad = _emu.dev(np.empty_like(x))
    K.cross_entropy_grad_rows(
        _emu.dev(x), *map(_emu.dev, (target, alpha, beta, cw)), scale, loss, grad
    )
    rloss, rgrad = np.empty(rows), np.empty_like(x)
    reference.cross_entropy_grad_rows(x, target, alpha, beta, cw, scale, rloss, rgrad)
    _close(loss, rloss, np.float64 if dtype == np.float64 else np.float32, "loss")
    _close(grad, rgrad, dtype, "grad")
    assert np.asarray(loss)[0] == 0.0
    assert (np.asarray(grad)[0] == 0.0).all()
    only = _emu.dev(np.empty(rows))
    K.cross_entropy_rows(_emu.dev(x), *map(_emu.dev, (target, alpha, beta, cw)), only)
    np.testing.assert_array_equal(np.asarray(only), np.asarray(loss))


def _index_rows(x, target, cw, ignore, eps, mean, grad=True, loss_out=True):
    """cross_entropy_index_rows on the emulation: (stats, row losses, loss, grad),
    outputs that start as all-ones bits so that a write that should not happen shows."""
    rows = x.shape[0]
    loss_rows = _emu.dev(np.full(rows, 7.0))
    total = _emu.dev(np.full(1, 7.0, dtype=x.dtype)) if loss_out else None
    g = _emu.dev(np.full_like(x, 7.0)) if grad else None
    stats = K.cross_entropy_index_rows(
        _emu.dev(x),
        _emu.dev(np.ascontiguousarray(target, dtype=np.int64)),
        None if cw is None else _emu.dev(cw),
        ignore,
        eps,
        mean,
        loss_rows,
        total,
        g,
    )
    return np.asarray(stats)[:4].copy(), np.asarray(loss_rows), total, g


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("c", [1, 64, 1001])
@pytest.mark.parametrize(("ignore", "stats_rows"), [(-100, K.STATS_ROWS), (2, 3)])
@pytest.mark.parametrize(("eps", "weighted"), [(0.0, False), (0.1, False), (0.1, True)])
def test_cross_entropy_index_rows_is_the_plan_on_the_device(
    emu, c, dtype, ignore, eps, weighted, stats_rows, monkeypatch
):
    """The targets checked, weighed and counted on the device (one block of
    statistics, or several of 3 rows and the finish kernel; ignore_index 2 is a
    class), then the row kernel reading
    them: the same row losses and gradient bits as the contract's kernels given
    the core's host plan and the statistics' scale, which for a mean is 1 / the
    kept weight (exactly the host's without weights); the loss is the rows' sum
    (in one block, or in blocks of 3 rows and then their parts) divided by it."""
    monkeypatch.setattr(K, "STATS_ROWS", stats_rows)
    rng = np.random.default_rng(c)
    rows = 11
    x = _logits(rng, rows, c, dtype)
    target = rng.integers(0, c, rows)
    target[[0, 7]] = ignore  # ignored rows (a class of its own where ignore = 2)
    x[0, :] = np.nan  # an ignored row gives 0 whatever its logits
    cw = rng.uniform(0.5, 2.0, c) if weighted else None
    for mean in (True, False):
        stats, loss_rows, total, g = _index_rows(x, target, cw, ignore, eps, mean)
        t0, alpha, beta, w, norm, keep = index_plan(target, c, cw, ignore, eps)
        assert stats[0] == -1.0
        assert stats[2] == keep.sum()
        if weighted:
            np.testing.assert_allclose(stats[1], norm, rtol=1e-15)
        else:
            assert stats[1] == norm
        assert stats[3] == (1.0 / stats[1] if mean else 1.0)
        if not weighted and mean:
            assert stats[3] == 1.0 / norm
        rloss, rgrad = np.empty(rows), np.empty_like(x)
        K.cross_entropy_grad_rows(
            _emu.dev(x),
            *map(_emu.dev, (t0, alpha, beta, w)),
            float(stats[3]),
            _emu.dev(rloss),
            _emu.dev(rgrad),
        )
        np.testing.assert_array_equal(loss_rows, rloss)
        np.testing.assert_array_equal(np.asarray(g), rgrad)
        want = loss_rows.sum() / stats[1] if mean else loss_rows.sum()
        # summed in another order than NumPy's: within the last bits
        rtol = 3e-7 if dtype == np.float32 else 1e-14
        np.testing.assert_allclose(np.asarray(total)[0], want, rtol=rtol)
        only_stats, only_rows, _, _ = _index_rows(
            x, target, cw, ignore, eps, mean, grad=False, loss_out=False
        )
        np.testing.assert_array_equal(only_stats, stats)
        np.testing.assert_array_equal(only_rows, loss_rows)


@pytest.mark.parametrize("stats_rows", [K.STATS_ROWS, 4])
@pytest.mark.parametrize("bad", [-1, 5, 10**12, -(2**63)])
def test_cross_entropy_index_rows_writes_nothing_for_a_bad_target(
    emu, bad, stats_rows, monkeypatch
):
    """A target neither in [0, C) nor ignore_index: the statistics name the first
    such row, across blocks too, and no kernel writes a row loss, a gradient or
    the loss (the core then raises; out= stays as it was)."""
    monkeypatch.setattr(K, "STATS_ROWS", stats_rows)
    rng = np.random.default_rng(5)
    x = _logits(rng, 13, 5, np.float32, special=False)
    target = rng.integers(0, 5, 13)
    target[[6, 11]] = bad
    target[2] = -100
    for grad in (True, False):
        stats, loss_rows, total, g = _index_rows(x, target, None, -100, 0.1, True, grad)
        assert stats[0] == 6.0
        assert (loss_rows == 7.0).all()
        assert np.asarray(total)[0] == 7.0
        if grad:
            assert (np.asarray(g) == 7.0).all()


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_cross_entropy_index_rows_mean_over_zero_weight(emu, eps):
    """Kept rows whose class weights are all 0, one row ignored: the mean is 0/0,
    NaN, every kept row's gradient is NaN and the ignored row's is 0, as the core's
    host path (and PyTorch) give; without a kept row the scale is 0."""
    rng = np.random.default_rng(3)
    x = _logits(rng, 4, 6, np.float64, special=False)
    target = np.array([1, -100, 1, 4])
    cw = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    stats, _, total, g = _index_rows(x, target, cw, -100, eps, True)
    assert stats[1] == 0.0
    assert stats[2] == 3.0
    assert np.isnan(stats[3])
    assert np.isnan(np.asarray(total)[0])
    g = np.asarray(g)
    assert np.isnan(g[[0, 2, 3]]).all()
    assert (g[1] == 0.0).all()
    stats, _, total, g = _index_rows(x, np.full(4, -100), cw, -100, eps, True)
    assert stats[1] == 0.0
    assert stats[2] == 0.0
    assert stats[3] == 0.0
    assert np.isnan(np.asarray(total)[0])
    assert (np.asarray(g) == 0.0).all()


def test_float32_exp_and_log_branches(emu):
    """softmax within 1.5 ULP and log_softmax within 0.6 ULP (of max(|x - lse|, 1):
    rounded once) of float64 math, on every branch (normal, subnormal, zero, -inf,
    extreme and subnormal logits), and on rows where x - m is not exact in float."""
    rng = np.random.default_rng(5)
    mixed = (rng.standard_normal((8, 64)) * 30).astype(np.float32)
    mixed[::2] += np.float32(3e3)  # x - m inexact as one float: the pair must carry it
    x = np.concatenate([float32_rows.branch_rows(), mixed])
    want_p, want_l = float32_rows.softmax64(x)
    with np.errstate(over="ignore"):  # the reference's own -6e38, not checked here
        got_p, _ = _row_op("softmax_rows", x)
        got_l, _ = _row_op("log_softmax_rows", x)
    got_p, got_l = np.asarray(got_p), np.asarray(got_l)
    assert ((got_p[0] > 0) & (got_p[0] < 2**-126)).any()  # the subnormal window
    assert (got_p[0, -4:] == 0).all()
    assert got_p[0, 5] == 0
    assert got_l[0, 5] == -np.inf
    assert ((got_p[4] > 0) & (got_p[4] < 2**-126)).sum() == 63  # subnormal factors
    assert float32_rows.ulps32(got_p, want_p).max() <= 1.5
    with np.errstate(over="ignore"):  # -3e38 - 3e38 is beyond float32: -inf
        finite = np.isfinite(want_l.astype(np.float32))
    assert float32_rows.ulps32(got_l[finite], want_l[finite], floor=1.0).max() <= 0.6
    assert np.isneginf(got_l[~finite]).all()
    assert (~finite).sum() == 2  # the -inf entry and -3e38


def test_float32_fast_gradient_matches_the_literal_formula(emu):
    """Unsmoothed float32 rows scale the exps kept from the statistics pass (past the
    register cache, exp(x - lse + log(scale coef))); smoothed rows take the literal
    formula. Both are held to 2 ULPs of the metric scale * (p coef + alpha)."""
    rng = np.random.default_rng(11)
    rows, c = 8, 600
    x = (rng.standard_normal((rows, c)) * 6).astype(np.float32)
    x[1, :] = np.linspace(-120.0, 0.0, c, dtype=np.float32)  # subnormal and zero p
    x[2, 7] = -np.inf
    target = rng.integers(0, c, rows).astype(np.int64)
    target[2] = 7  # a -inf logit at the target: gradient -scale alpha there
    cw = rng.uniform(0.5, 2.0, c)
    alpha = 0.8 * cw[target]
    beta = np.zeros(rows)
    beta[4:] = 0.05 / c  # the second half smoothed: the literal formula
    scale = 1.0 / 3.7
    loss, grad = _emu.dev(np.empty(rows)), _emu.dev(np.empty_like(x))
    K.cross_entropy_grad_rows(
        _emu.dev(x), *map(_emu.dev, (target, alpha, beta, cw)), scale, loss, grad
    )
    x64 = x.astype(np.float64)
    m = x64.max(axis=1, keepdims=True)
    p = np.exp((x64 - m) - np.log(np.exp(x64 - m).sum(axis=1, keepdims=True)))
    coef = alpha + beta * cw.sum()
    onehot = np.zeros_like(p)
    onehot[np.arange(rows), target] = 1.0
    want = scale * (p * coef[:, None] - alpha[:, None] * onehot - beta[:, None] * cw)
    metric = scale * (p * coef[:, None] + alpha[:, None] * onehot + beta[:, None] * cw)
    err = np.abs(np.asarray(grad, dtype=np.float64) - want)
    ulp = np.spacing(metric.astype(np.float32)).astype(np.float64)
    assert (err / ulp).max() <= 2.0
    assert np.asarray(grad)[2, 7] == np.float32(-scale * alpha[2])


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("c", [1, 3, 10, 64, 1001])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_prob(emu, c, dtype, smoothing):
    rng = np.random.default_rng(c)
    rows = 6
    x = _logits(rng, rows, c, dtype)
    t = rng.uniform(0, 1, (rows, c))
    if c > 1:
        t[:, 0] = 0.0
        x[5, 0] = -np.inf  # a_c == 0 where x == -inf contributes 0 (without smoothing)
    t = (t / t.sum(axis=1, keepdims=True)).astype(dtype)
    cw = rng.uniform(0.5, 2.0, c)
    loss = _emu.dev(np.empty(rows))
    grad = _emu.dev(np.empty_like(x))
    K.cross_entropy_prob_grad_rows(
        _emu.dev(x), _emu.dev(t), smoothing, _emu.dev(cw), 0.25, loss, grad
    )
    rloss, rgrad = np.empty(rows), np.empty_like(x)
    reference.cross_entropy_prob_grad_rows(x, t, smoothing, cw, 0.25, rloss, rgrad)
    _close(loss, rloss, np.float32 if dtype == np.float32 else np.float64, "loss")
    _close(grad, rgrad, dtype, "grad")
    only = _emu.dev(np.empty(rows))
    K.cross_entropy_prob_rows(_emu.dev(x), _emu.dev(t), smoothing, _emu.dev(cw), only)
    np.testing.assert_array_equal(np.asarray(only), np.asarray(loss))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("c", [10, 64, 600])
def test_outputs_may_alias_inputs(emu, c, dtype):
    rng = np.random.default_rng(c)
    x = _logits(rng, 4, c, dtype, special=False)
    for op in ("softmax_rows", "log_softmax_rows"):
        expect = _emu.dev(np.empty_like(x))
        getattr(K, op)(_emu.dev(x), expect)
        y = _emu.dev(x.copy())
        getattr(K, op)(y, y)
        np.testing.assert_array_equal(np.asarray(y), np.asarray(expect), err_msg=op)
    target, alpha, beta, cw = _ce_args(rng, 4, c, 0.1, True)
    args = [_emu.dev(a) for a in (target, alpha, beta, cw)]
    loss = _emu.dev(np.empty(4))
    grad = _emu.dev(np.empty_like(x))
    K.cross_entropy_grad_rows(_emu.dev(x), *args, 0.5, loss, grad)
    buf = _emu.dev(x.copy())
    loss2 = _emu.dev(np.empty(4))
    K.cross_entropy_grad_rows(buf, *args, 0.5, loss2, buf)  # linear CE does this
    np.testing.assert_array_equal(np.asarray(buf), np.asarray(grad))
    np.testing.assert_array_equal(np.asarray(loss2), np.asarray(loss))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("c", [64, 600])
def test_unaligned_rows_give_the_same_bits(emu, c, dtype):
    x = _logits(np.random.default_rng(c), 3, c, dtype, special=False)
    buf = np.empty(x.size + 1, dtype)
    xu = buf[1:].reshape(x.shape)  # off the vector alignment by one element
    xu[...] = x
    assert K._row_variant(c, x.itemsize, _emu.dev(xu)).endswith("u")
    assert not K._row_variant(c, x.itemsize, _emu.dev(x)).endswith("u")
    a = _emu.dev(np.empty_like(x))
    K.softmax_rows(_emu.dev(x), a)
    obuf = np.empty(x.size + 1, dtype)
    b = _emu.dev(obuf[1:].reshape(x.shape))
    K.softmax_rows(_emu.dev(xu), b)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("c", [10, 600])
def test_a_row_does_not_depend_on_its_batch(emu, c, dtype):
    x = _logits(np.random.default_rng(c), 9, c, dtype, special=False)
    full = _emu.dev(np.empty_like(x))
    K.log_softmax_rows(_emu.dev(x), full)
    for r in (0, 5, 8):
        one = _emu.dev(np.empty((1, c), dtype))
        K.log_softmax_rows(_emu.dev(x[r : r + 1].copy()), one)
        np.testing.assert_array_equal(np.asarray(one)[0], np.asarray(full)[r])
    again = _emu.dev(np.empty_like(x))
    K.log_softmax_rows(_emu.dev(x), again)
    np.testing.assert_array_equal(np.asarray(again), np.asarray(full))


@pytest.mark.parametrize("threads", [8, 16])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_rows_sharing_a_warp(tmp_path_factory, monkeypatch, threads, dtype):
    """8 or 16 lanes per row, rows longer than those lanes' register cache, special
    rows, and a last block whose groups past the last row leave before the shuffles
    (the emulation aborts on a shuffle whose lanes are not all present)."""
    if _emu.compiler() is None:
        pytest.skip(NO_CXX)
    monkeypatch.setattr(K, "threads_per_row", lambda *a: threads)
    rng = np.random.default_rng(threads)
    c, rows = 1001, 11  # 11 of a block's 128 / threads rows
    x = _logits(rng, rows, c, dtype)
    with _emu.emulated(_emu.build(tmp_path_factory.getbasetemp())):
        for op in ("softmax_rows", "log_softmax_rows"):
            got, ref = _row_op(op, x)
            _close(got, ref, dtype, f"{op} at {threads} threads")
        target, alpha, beta, cw = _ce_args(rng, rows, c, 0.1, True)
        args = [_emu.dev(a) for a in (target, alpha, beta, cw)]
        loss = _emu.dev(np.empty(rows))
        grad = _emu.dev(np.empty_like(x))
        K.cross_entropy_grad_rows(_emu.dev(x), *args, 0.5, loss, grad)
    rloss, rgrad = np.empty(rows), np.empty_like(x)
    reference.cross_entropy_grad_rows(x, target, alpha, beta, cw, 0.5, rloss, rgrad)
    _close(loss, rloss, dtype, "loss")  # from float32 logits: float32's tolerance
    _close(grad, rgrad, dtype, "grad")


def _staged_calls(x, rng):
    """Every op that stages a tail, on x: {name: output arrays}."""
    rows, c = x.shape
    out = {}
    for op in ("softmax_rows", "log_softmax_rows"):
        got = _emu.dev(np.empty_like(x))
        getattr(K, op)(_emu.dev(x), got)
        out[op] = [np.asarray(got)]
    g = _emu.dev(rng.standard_normal(x.shape).astype(x.dtype))
    for op, saved in (
        ("softmax_backward_rows", "softmax_rows"),
        ("log_softmax_backward_rows", "log_softmax_rows"),
    ):
        got = _emu.dev(np.empty_like(x))
        getattr(K, op)(g, _emu.dev(out[saved][0]), got)
        out[op] = [np.asarray(got)]
    for eps in (0.0, 0.1):  # the kept-exp gradient, and the literal one
        target, alpha, beta, cw = _ce_args(rng, rows, c, eps, eps > 0)
        args = [_emu.dev(a) for a in (target, alpha, beta, cw)]
        loss, grad = _emu.dev(np.empty(rows)), _emu.dev(np.empty_like(x))
        K.cross_entropy_grad_rows(_emu.dev(x), *args, 0.5, loss, grad)
        out[f"ce_grad eps={eps}"] = [np.asarray(loss), np.asarray(grad)]
        tg = rng.integers(0, c, rows)
        tg[2] = -100
        for grad_too in (True, False):
            _, rl, total, g = _index_rows(x, tg, None, -100, eps, True, grad_too)
            parts = [rl, np.asarray(total)] + ([np.asarray(g)] if grad_too else [])
            out[f"index_rows eps={eps} grad={grad_too}"] = parts
    t = rng.uniform(0, 1, (rows, c))
    t = (t / t.sum(axis=1, keepdims=True)).astype(x.dtype)
    cw = _emu.dev(rng.uniform(0.5, 2.0, c))
    loss, grad = _emu.dev(np.empty(rows)), _emu.dev(np.empty_like(x))
    K.cross_entropy_prob_grad_rows(_emu.dev(x), _emu.dev(t), 0.2, cw, 0.25, loss, grad)
    only = _emu.dev(np.empty(rows))
    K.cross_entropy_prob_rows(_emu.dev(x), _emu.dev(t), 0.2, cw, only)
    out["ce_prob"] = [np.asarray(loss), np.asarray(grad), np.asarray(only)]
    return out


def _in_place_calls(x, rng):
    """softmax, log_softmax and the cross-entropy gradient written over the logits
    (a batch of tail slots is loaded before any of it is written)."""
    rows, c = x.shape
    out = {}
    for op in ("softmax_rows", "log_softmax_rows"):
        y = _emu.dev(x.copy())
        getattr(K, op)(y, y)
        out[op + " in place"] = [np.asarray(y)]
    target, alpha, beta, cw = _ce_args(rng, rows, c, 0.1, True)
    args = [_emu.dev(a) for a in (target, alpha, beta, cw)]
    buf, loss = _emu.dev(x.copy()), _emu.dev(np.empty(rows))
    K.cross_entropy_grad_rows(buf, *args, 0.5, loss, buf)
    out["ce_grad in place"] = [np.asarray(buf), np.asarray(loss)]
    return out


def _stagings(monkeypatch):
    """Each way a tail may be kept, set on ``_kernels`` in turn: ``(how, limit)``
    for read again, staged whole and staged in part (1000 bytes); every block may
    stage 200000 bytes."""
    monkeypatch.setattr(K, "_stage_capacity", lambda fn, name, dev, t: 200_000)
    for how, stage, limit in (
        ("re-read", False, None),
        ("whole", True, None),
        ("part", True, 1000),
    ):
        monkeypatch.setattr(K, "STAGE", stage)
        monkeypatch.setattr(K, "STAGE_LIMIT", limit)
        yield how, limit


def _row_op_of(name):
    """The row op of a row kernel's entry point (sc_<op>_<variant>), else None."""
    for v in K._ROW_VARIANTS:
        if name.endswith("_" + v):
            return name[3 : -len(v) - 1]
    return None


@pytest.mark.parametrize(
    ("dtype", "c"),
    [(np.float32, 3000), (np.float32, 3001), (np.float64, 1500), (np.float64, 1501)],
    ids=["f32-v4", "f32-v1", "f64-v2", "f64-v1"],
)
def test_staged_tails_give_the_same_bits(tmp_path_factory, monkeypatch, dtype, c):
    """Block mode (64 threads a row) with rows past the register cache: the tails
    kept in shared memory whole, in part (the rest read again) or not at all give
    the same bits for every op that stages, special rows and a maximum in the tail
    included; each launch asks for the shared memory its tail needs (the loss alone
    of class-index targets only with smoothing, which reads the row again;
    softmax_backward for both of its operands), and every op that stages does."""
    if _emu.compiler() is None:
        pytest.skip(NO_CXX)
    monkeypatch.setattr(K, "threads_per_row", lambda *a: 64)
    x = _logits(np.random.default_rng(c), 6, c, dtype)
    x[5, -2] = 60.0  # the row's maximum in its tail
    vec = K._VEC[x.itemsize]
    n = vec if c % vec == 0 else 1  # elements a slot
    variant = f"f{x.itemsize * 8}_v{n}"
    pack = n * x.itemsize
    tail = (c // n - K._CACHE[x.itemsize] // n * 64) * pack
    assert tail > 1000
    asked: list[tuple[str | None, int]] = []
    runs = {}
    with _emu.emulated(_emu.build(tmp_path_factory.getbasetemp())):
        real = K._function

        def spy(name, device_id):
            fn = real(name, device_id)

            def call(grid, block, args, shared_mem=0):
                asked.append((_row_op_of(name), shared_mem))
                return fn(grid, block, args, shared_mem=shared_mem)

            call.shared_size_bytes = fn.shared_size_bytes
            return call

        monkeypatch.setattr(K, "_function", spy)
        for how, limit in _stagings(monkeypatch):
            stage = K.STAGE
            asked.clear()
            runs[how] = _staged_calls(x, np.random.default_rng(7))
            staged = set()
            for op, b in asked:
                # the whole tail (softmax_backward: of both operands, in float32 only)
                whole = K.stage_bytes(op, c, x.itemsize, 64, variant) if op else 0
                unit = pack * K._STAGED_OPERANDS.get(op, 1)
                want = whole if limit is None else min(whole, limit // unit * unit)
                if op == "ce_idx":  # once without smoothing, once with
                    assert b in (0, want), (how, op, b)
                else:
                    assert b == want, (how, op, b, want)
                if b:
                    staged.add(op)
            idx = sorted(b for op, b in asked if op == "ce_idx")
            assert idx == [0, (tail if limit is None else limit // pack * pack) * stage]
            expect = set(K._STAGED) if stage else set()
            if x.itemsize == 8:
                expect.discard("softmax_backward")
            assert staged == expect, how
    for how in ("whole", "part"):
        for key, parts in runs["re-read"].items():
            for a, b in zip(parts, runs[how][key], strict=True):
                np.testing.assert_array_equal(a, b, err_msg=f"{how}: {key}")
    ref = np.empty_like(x)
    reference.softmax_rows(x, ref)
    _close(runs["whole"]["softmax_rows"][0], ref, dtype, "softmax")


@pytest.mark.parametrize("batch", [(2, 2), (4, 3)], ids=["b2", "b4-b3"])
@pytest.mark.parametrize(
    ("dtype", "c"),
    [(np.float32, 3000), (np.float32, 3001), (np.float64, 1500), (np.float64, 1501)],
    ids=["f32-v4", "f32-v1", "f64-v2", "f64-v1"],
)
def test_tail_batches_give_the_same_bits(
    tmp_path_factory, monkeypatch, batch, dtype, c
):
    """Tail slots loaded a batch at a time ("Tail loops" in kernels.cu, built with
    ``_kernels.compile_options`` for ``TAIL_BATCH``): the same bits as one at a time
    for every op with a tail loop, its tail staged whole, in part or not at all, and
    for softmax, log_softmax and the cross-entropy gradient written over their
    logits. At 64 threads a row a thread has 7 or 8 tail slots: whole batches and a
    remainder (a batch of 3 leaves one or two, of 4 three or none)."""
    if _emu.compiler() is None:
        pytest.skip(NO_CXX)
    monkeypatch.setattr(K, "threads_per_row", lambda *a: 64)
    x = _logits(np.random.default_rng(c), 6, c, dtype)
    x[5, -2] = 60.0  # the row's maximum in its tail
    x[4, -5] = np.nan
    n = K._VEC[x.itemsize] if c % K._VEC[x.itemsize] == 0 else 1
    assert c // n - K._CACHE[x.itemsize] // n * 64 >= 7 * 64  # the tail slots
    runs = {}
    for b in ((1, 1), batch):
        monkeypatch.setattr(K, "TAIL_BATCH", {4: b[0], 8: b[1]})
        defines = K.compile_options()[len(K.NVRTC_OPTIONS) :]
        assert len(defines) == (b != (1, 1)) * 2
        with _emu.emulated(_emu.build(tmp_path_factory.getbasetemp(), defines)):
            for how, _ in _stagings(monkeypatch):
                runs[b, how] = _staged_calls(x, np.random.default_rng(7))
                runs[b, how].update(_in_place_calls(x, np.random.default_rng(8)))
    for how in ("re-read", "whole", "part"):
        for key, parts in runs[(1, 1), how].items():
            for u, v in zip(parts, runs[batch, how][key], strict=True):
                np.testing.assert_array_equal(u, v, err_msg=f"{batch} {how}: {key}")
        for op in ("softmax_rows", "log_softmax_rows"):  # over x: what into another
            np.testing.assert_array_equal(
                runs[batch, how][op + " in place"][0], runs[(1, 1), how][op][0]
            )


SPLIT_OPS = ("softmax_rows", "log_softmax_rows", "logsumexp_rows")
SPLIT_CE = ((0.0, False), (0.1, True))  # (smoothing, weighted): kept exps, or not


def _split_ce_args(x, eps, weighted):
    """The class-index arguments of the split-row CE runs: per-row arrays (row 0
    ignored), and the targets of cross_entropy_index_rows (row 2 ignored)."""
    rng = np.random.default_rng(11)
    rows, c = x.shape
    target, alpha, beta, cw = _ce_args(rng, rows, c, eps, weighted)
    target[5] = c - 3  # the target on the row's maximum, in the last segment
    alpha[5] = (1 - eps) * cw[c - 3]
    tg = rng.integers(0, c, rows)
    tg[2] = -100
    return (target, alpha, beta, cw), tg


SPLIT_BACKWARD = (
    ("softmax_backward_rows", "softmax_rows"),
    ("log_softmax_backward_rows", "log_softmax_rows"),
)


def _split_backward_args(x, saved):
    """A gradient, and the reference's softmax or log_softmax of x (the same input
    for every run)."""
    g = np.random.default_rng(13).standard_normal(x.shape).astype(x.dtype)
    y = np.empty_like(x)
    getattr(reference, saved)(x, y)
    return g, y


def _split_runs(x):
    """softmax, log_softmax and logsumexp of x, the CE gradient (SPLIT_CE, each
    also written over a copy of x) and cross_entropy_index_rows; softmax and
    log_softmax written over a copy of x."""
    out = {}
    for op in SPLIT_OPS:
        shape = x.shape[:1] if op == "logsumexp_rows" else x.shape
        got = _emu.dev(np.empty(shape, x.dtype))
        getattr(K, op)(_emu.dev(x), got)
        out[op] = [np.asarray(got).copy()]
    for op in SPLIT_OPS[:2]:
        y = _emu.dev(x.copy())
        getattr(K, op)(y, y)
        out[op + " in place"] = [np.asarray(y).copy()]
    for op, saved in SPLIT_BACKWARD:
        g, y = _split_backward_args(x, saved)
        got = _emu.dev(np.empty_like(x))
        getattr(K, op)(_emu.dev(g), _emu.dev(y), got)
        out[op] = [np.asarray(got).copy()]
        buf = _emu.dev(g.copy())
        getattr(K, op)(buf, _emu.dev(y), buf)
        out[op + " in place"] = [np.asarray(buf).copy()]
    rows = x.shape[0]
    for eps, weighted in SPLIT_CE:
        ce, tg = _split_ce_args(x, eps, weighted)
        args = [_emu.dev(a) for a in ce]
        loss, grad = _emu.dev(np.empty(rows)), _emu.dev(np.empty_like(x))
        K.cross_entropy_grad_rows(_emu.dev(x), *args, 0.5, loss, grad)
        out[f"ce_grad {eps}"] = [np.asarray(loss).copy(), np.asarray(grad).copy()]
        buf, loss = _emu.dev(x.copy()), _emu.dev(np.empty(rows))
        K.cross_entropy_grad_rows(buf, *args, 0.5, loss, buf)
        out[f"ce_grad {eps} in place"] = [np.asarray(loss), np.asarray(buf)]
        _, rl, total, g = _index_rows(
            x, tg, ce[3] if weighted else None, -100, eps, True
        )
        out[f"index_rows {eps}"] = [rl.copy(), np.asarray(total), np.asarray(g)]
    return out


@pytest.mark.parametrize(("dtype", "cl"), split_rows.CASES, ids=split_rows.IDS)
def test_split_rows(tmp_path_factory, monkeypatch, dtype, cl):
    """Rows split over the blocks of a cluster ("Split rows" in kernels.cu; 64
    threads a block here): softmax, log_softmax, logsumexp, their backward passes
    and the CE gradient (kept exps; smoothed and weighted: the weights' and the
    smoothing sums folded too) give the reference's values, NaN rows NaN, with the
    row's maximum in the first or the last block's segment (the target on it); the
    class-index rows of the core's public calls too, close to the one-block
    kernels'; the same bits with the blocks' threads taking turns first to last,
    last to first, and the cluster's last block first (a block that runs ahead of
    another), and written over the input; close to (not the bits of) the one-block
    kernels, whose sums run in another order; and every row kernel launched is the
    split one."""
    if _emu.compiler() is None:
        pytest.skip(NO_CXX)
    itemsize = np.dtype(dtype).itemsize
    c = split_rows.width(cl, itemsize, 64)
    monkeypatch.setattr(K, "SPLIT_THREADS", 64)
    assert K.split_launch("softmax", c, itemsize) == cl
    x = _logits(np.random.default_rng(cl), 8, c, dtype)
    x[5, -3] = 60.0  # the maximum in the last segment
    x[6, 2] = 60.0  # in the first
    x[7, :] = 1.0  # every term equal
    names: list[str] = []
    runs = {}
    dll = _emu.build(tmp_path_factory.getbasetemp())
    variant = f"f{itemsize * 8}_v{K._VEC[itemsize]}"
    with _emu.emulated(dll):
        real = K._function

        def spy(name, device_id):
            names.append(name)
            return real(name, device_id)

        monkeypatch.setattr(K, "_function", spy)
        monkeypatch.setattr(K, "SPLIT", True)
        runs["forward"] = _split_runs(x)
        assert {n for n in names if n.startswith("sc_split_")} == {
            f"sc_split_{op}_{variant}_c{cl}" for op in K._SPLIT_OPS
        }
        assert not [n for n in names if _row_op_of(n)], names  # no one-block kernel
        with _emu.reverse_order(dll):
            runs["reverse"] = _split_runs(x)
        with _emu.reverse_order(dll, 2):
            runs["blocks reversed"] = _split_runs(x)
        monkeypatch.setattr(K, "SPLIT", False)
        names.clear()
        runs["one block"] = _split_runs(x)
        assert not any(n.startswith("sc_split_") for n in names)
    got = runs["forward"]
    for key, parts in got.items():
        for order in ("reverse", "blocks reversed"):
            for a, b in zip(parts, runs[order][key], strict=True):
                np.testing.assert_array_equal(a, b, err_msg=f"{order}: {key}")
    in_place = [*SPLIT_OPS[:2], *(op for op, _ in SPLIT_BACKWARD)]
    for op in in_place + [f"ce_grad {eps}" for eps, _ in SPLIT_CE]:
        for a, b in zip(got[op + " in place"], got[op], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=op)
    for op in SPLIT_OPS:
        shape = x.shape[:1] if op == "logsumexp_rows" else x.shape
        ref = np.empty(shape, dtype)
        getattr(reference, op)(x, ref)
        (mine,) = got[op]
        _close(mine, ref, dtype, f"{op} C={c}")
        _close(mine, runs["one block"][op][0], dtype, f"{op} against one block")
        assert np.isnan(mine[1:4]).all(), op  # NaN, +inf and all -inf rows
        assert not np.isnan(mine[[0, 4, 5, 6, 7]]).any(), op  # -inf at x = -inf
    np.testing.assert_array_equal(
        got["softmax_rows"][0][7], np.float64(1 / c).astype(dtype)
    )
    for op, saved in SPLIT_BACKWARD:
        g, y = _split_backward_args(x, saved)
        ref = np.empty_like(x)
        getattr(reference, op)(g, y, ref)
        (mine,) = got[op]
        _close(mine, ref, dtype, f"{op} C={c}")
        _close(mine, runs["one block"][op][0], dtype, f"{op} against one block")
        assert np.isnan(mine[1:4]).all(), op
    for eps, weighted in SPLIT_CE:
        (target, alpha, beta, cw), _ = _split_ce_args(x, eps, weighted)
        rloss, rgrad = np.empty(8), np.empty_like(x)
        reference.cross_entropy_grad_rows(x, target, alpha, beta, cw, 0.5, rloss, rgrad)
        loss, grad = got[f"ce_grad {eps}"]
        _close(loss, rloss, dtype, f"CE loss {eps}")
        _close(grad, rgrad, dtype, f"CE grad {eps}")
        assert np.isnan(grad[1:4]).all()
        assert not np.isnan(grad[[0, 4, 5, 6, 7]]).any()
        for mine, one in zip(
            got[f"index_rows {eps}"],
            runs["one block"][f"index_rows {eps}"],
            strict=True,
        ):
            _close(mine, one, dtype, f"index rows {eps} against one block")


@pytest.mark.parametrize(
    ("why", "c", "dtype", "offset"),
    [
        (
            "a width not a multiple of the vector",
            split_rows.width(2, 4, 64) + 1,
            np.float32,
            0,
        ),
        ("an unaligned row", split_rows.width(2, 4, 64), np.float32, 1),
        ("a row one block holds", 64 * 16, np.float32, 0),
        ("a row past the largest cluster", 8 * 64 * 8 + 2, np.float64, 0),
    ],
    ids=["odd", "unaligned", "one-block", "too-wide"],
)
def test_split_rows_only_where_they_apply(
    tmp_path_factory, monkeypatch, why, c, dtype, offset
):
    """Where a split launch does not apply the one-block kernels run (and give the
    reference's values): rows not of the aligned vector variants, rows one block
    caches, rows wider than 8 blocks cache; and with SPLIT off, as shipped."""
    if _emu.compiler() is None:
        pytest.skip(NO_CXX)
    monkeypatch.setattr(K, "SPLIT_THREADS", 64)
    rng = np.random.default_rng(c)
    base = (rng.standard_normal(2 * c + offset) * 4).astype(dtype)
    x = base[offset:].reshape(2, c)  # offset by an element: unaligned
    names: list[str] = []
    with _emu.emulated(_emu.build(tmp_path_factory.getbasetemp())):
        real = K._function

        def spy(name, device_id):
            names.append(name)
            return real(name, device_id)

        monkeypatch.setattr(K, "_function", spy)
        for split in (True, False):
            monkeypatch.setattr(K, "SPLIT", split)
            got = _emu.dev(np.empty((2, c), dtype))
            K.softmax_rows(_emu.dev(x), got)
            ref = np.empty((2, c), dtype)
            reference.softmax_rows(np.ascontiguousarray(x), ref)
            _close(np.asarray(got), ref, dtype, why)
    assert names, why
    assert not any(n.startswith("sc_split_") for n in names), (why, names)


def test_a_cluster_barrier_not_every_block_reaches_aborts(tmp_path):
    """A cluster whose blocks do not all reach the cluster barrier (a hang on a GPU)
    ends the emulation at once, naming the cluster."""
    res = _host_program(
        tmp_path,
        "__global__ void stuck() { if (blockIdx.x % 2 == 0) emu_cluster_sync(); }\n"
        "int main() {\n"
        "    emu_launch(stuck, dim3{4, 1, 1}, dim3{32, 1, 1}, nullptr, 0, 2);\n"
        "}\n",
    )
    assert res.returncode != 0
    assert (
        "the cluster of 2 blocks from (0, 0), 32 threads each: 32 finished"
        in res.stderr
    )


def test_the_emulation_is_safe_across_threads(tmp_path_factory):
    """Threads that launch through the emulation at once (as the kit's
    concurrent-calls property does) each see it patched until the last leaves.
    Here A enters, B enters, A leaves, then B launches cross_entropy_index_rows
    (which imports cupy between launches): an unguarded patch had restored the
    real module for A's exit, under B (a flaky kit failure)."""
    if _emu.compiler() is None:
        pytest.skip(NO_CXX)
    dll = _emu.build(tmp_path_factory.getbasetemp())
    rng = np.random.default_rng(9)
    x = rng.standard_normal((40, 33)).astype(np.float32)
    target = rng.integers(0, 33, 40)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    errors = []

    def a():
        with _emu.emulated(dll):
            a_in.set()
            b_in.wait(30)
        a_out.set()

    def b():
        a_in.wait(30)
        try:
            with _emu.emulated(dll):
                b_in.set()
                a_out.wait(30)
                stats, *_ = _index_rows(x, target, None, -100, 0.0, True)
                assert stats[0] == -1.0
        except Exception as exc:  # reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors


def _host_program(tmp_path, body, *defines):
    """Build a program of host_cuda.h and body; return what running it gives."""
    cxx = _emu.compiler()
    if cxx is None:
        pytest.skip(NO_CXX)
    (tmp_path / "host_cuda.h").write_text(
        Path(__file__).with_name("host_cuda.h").read_text()
    )
    (tmp_path / "main.cpp").write_text('#include "host_cuda.h"\n' + body)
    exe = tmp_path / "main"
    build = subprocess.run(
        [cxx, "-std=c++20", "-pthread", *defines, "-o", str(exe),
         str(tmp_path / "main.cpp")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    return subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)


def test_a_deadlocked_block_aborts(tmp_path):
    """A block whose threads do not all reach a barrier (a kernel bug that hangs a GPU)
    ends the emulation at once, with the block's place, rather than hang the test
    run."""
    res = _host_program(
        tmp_path,
        "__global__ void stuck() { if (threadIdx.x != 0) __syncthreads(); }\n"
        "int main() { emu_launch(stuck, dim3{2, 1, 1}, dim3{4, 1, 1}, nullptr); }\n",
    )
    assert res.returncode != 0
    assert "block (0, 0) of 4 threads: 1 finished, the others wait" in res.stderr


def test_a_block_that_never_ends_aborts(tmp_path):
    """A block that loops on (no barrier to wait at) is stopped after
    EMU_BLOCK_SECONDS, here 1, naming the block."""
    res = _host_program(
        tmp_path,
        "__global__ void spin(int* flag) { while (*(volatile int*)flag == 0) {} }\n"
        "int main() { int f = 0, *p = &f; void* a[] = {&p};\n"
        "             emu_launch(spin, dim3{1, 1, 1}, dim3{2, 1, 1}, a); }\n",
        "-DEMU_BLOCK_SECONDS=1",
    )
    assert res.returncode != 0
    assert "block (0, 0) of 2 threads ran for more than 1 s" in res.stderr


@pytest.mark.parametrize("reverse", [False, True])
def test_a_missing_barrier_shows_in_one_order(tmp_path, reverse):
    """The two orders the tests run blocks in: thread 0 stores a value that the
    others read without waiting at a barrier. Taking turns first to last they read
    it; last to first they read what was there before (the kind of bug the reverse
    launches of every kernel test are for)."""
    res = _host_program(
        tmp_path,
        "__global__ void racy(float* out) {\n"
        "    __shared__ float s;\n"
        "    if (threadIdx.x == 0) s = 1.0f;\n"
        "    out[threadIdx.x] = s;  // no __syncthreads() before the read\n"
        "}\n"
        "int main() { float o[4] = {}, *p = o; void* a[] = {&p};\n"
        f"             g_reverse = {str(reverse).lower()};\n"
        "             emu_launch(racy, dim3{1, 1, 1}, dim3{4, 1, 1}, a);\n"
        '             std::printf("%g %g %g %g", o[0], o[1], o[2], o[3]); }\n',
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == ("1 0 0 0" if reverse else "1 1 1 1")


# Left out on the stand-in: the kit (test_conformance_kit_on_the_emulation runs it on
# the same kernels), and the Jacobian kernels' cases of 1024 and 1100 classes (5.1-7.3
# s each emulated, 35 s of the run; their Python is the small cases', and
# test_jacobian_row_groups emulates 2 x 1024 and 3 x 513). The -ftz tests run, though
# only a GPU has -ftz to show.
ON_HARDWARE_ONLY = (
    "test_conformance_kit",
    "(test_jacobian_kernels and 1024)",
    "(test_jacobian_kernels and 1100)",
)


def test_the_device_tests_on_a_stand_in_for_cupy():
    """test_cupy_gpu.py, run against ``standin/cupy`` (NumPy arrays dressed as
    CuPy's, its RawModule this emulation): a device test whose own Python is wrong
    (a stale name, a wrong key, a bad shape) fails here, on every machine, rather
    than on the rare run with a GPU."""
    if _emu.compiler() is None:
        pytest.skip(NO_CXX)
    here = Path(__file__).parent
    path = os.pathsep.join(
        [str(here / "standin"), str(here), os.environ.get("PYTHONPATH", "")]
    )
    deselect = " and ".join(f"not {name}" for name in ON_HARDWARE_ONLY)
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
         str(here / "test_cupy_gpu.py"), "-k", deselect],
        capture_output=True, text=True, timeout=1200,
        env={**os.environ, "PYTHONPATH": path},
    )  # fmt: skip
    print(res.stdout[-20000:], res.stderr[-5000:])
    assert res.returncode == 0
    assert " passed" in res.stdout.splitlines()[-1]


def _bench_on_the_stand_in(code):
    """Run ``code`` (a script driving tools/bench_gpu.py) against the stand-in for
    CuPy; what its last line prints, as JSON."""
    if _emu.compiler() is None:
        pytest.skip(NO_CXX)
    here = Path(__file__).parent
    path = os.pathsep.join(
        [str(here / "standin"), str(here), str(here.parent / "tools"),
         os.environ.get("PYTHONPATH", "")]
    )  # fmt: skip
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": path},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-5000:]
    return json.loads(res.stdout.splitlines()[-1])


_BENCH_ROWS = """
import json
import bench_gpu, cupy
import softcore as sc
from softcore_cupy import _kernels as K
results = []
bench_gpu.bench_rows(cupy, sc, K, [(8, 100)], [cupy.float32], None, results)
hook = type(sc.get_backend("cupy")).__dict__["logsumexp_weighted_rows"]
print(json.dumps([results, bench_gpu.summary(results), hook is not None]))
"""


def test_the_row_bench_on_a_stand_in_for_cupy():
    """tools/bench_gpu.py's row timings, run on the stand-in: every kernel and
    public call timed (logsumexp with factors through the kernel and through the
    core's formula), its summary line, and the hook put back after."""
    results, summary, hook_back = _bench_on_the_stand_in(_BENCH_ROWS)
    ((kind, row),) = results
    assert kind == "rows"
    for key in (
        "logsumexp_weighted",
        "logsumexp_class_weighted",
        "logsumexp_weighted_api",
        "logsumexp_weighted_formula_api",
        "ce_loss_grad_plan_api",
    ):
        assert key in row, key
    assert any(line.startswith("sc.logsumexp(b=) [8, 100] float32") for line in summary)
    assert hook_back


_BENCH_TAIL = """
import json, sys
import bench_gpu, cupy
from softcore_cupy import _kernels as K
K.threads_per_row = lambda *a: 64  # tails at 3000 floats, and a quick emulation
results = []
bench_gpu.bench_tail_batch(cupy, K, [(6, 3000)], [cupy.float32], results, rounds=1)
modules = sorted(map(str, K._modules))
ops = bench_gpu._TAIL_OPS
print(json.dumps([results, bench_gpu.summary(results), modules, K.TAIL_BATCH, ops]))
"""


def test_the_tail_batch_bench_on_a_stand_in_for_cupy():
    """tools/bench_gpu.py's tail-batch timings, run on the stand-in: a module for
    each batch (the shipped one first, and restored after), every op at each, and
    its summary line (the stand-in's clock gives every ratio 1)."""
    results, lines, modules, batch, ops = _bench_on_the_stand_in(_BENCH_TAIL)
    assert batch == {"4": 1, "8": 1}  # the shipped batches, restored
    ((kind, row),) = results
    assert kind == "tail_batch"
    assert row["shape"] == [6, 3000]
    assert {"softmax", "logsumexp", "softmax_backward"} <= set(ops)
    assert set(row["ratio_by_batch"]) == set(ops)
    for by in row["ratio_by_batch"].values():
        assert by == {"1": 1.0, "2": 1.0, "4": 1.0}
    assert modules == ["(0, (1, 1))", "(0, (2, 1))", "(0, (4, 1))"]
    assert [ln for ln in lines if ln.startswith("tail batch [6, 3000] float32: ")]


_BENCH_SPLIT = """
import json, sys
import bench_gpu, cupy
from softcore_cupy import _kernels as K
bench_gpu.SPLIT_BLOCKS = (64, 128)  # split rows at 3000 floats, a quick emulation
results = []
shapes = [(6, 3000), (6, 3001)]
bench_gpu.bench_split(cupy, K, shapes, [cupy.float32], results, rounds=1)
print(json.dumps([results, bench_gpu.summary(results), K.SPLIT, K.SPLIT_THREADS]))
"""


def test_the_split_row_bench_on_a_stand_in_for_cupy():
    """tools/bench_gpu.py's split-row timings, run on the stand-in: the one-block
    launch and a split one for each block size, every op at each; a width the split
    kernels do not take (not a multiple of the vector) times the one-block launch
    alone; SPLIT restored after; and the summary lines."""
    results, lines, split, threads = _bench_on_the_stand_in(_BENCH_SPLIT)
    assert (split, threads) == (K.SPLIT, K.SPLIT_THREADS)  # as shipped, restored
    (k1, even), (k2, odd) = results
    assert k1 == k2 == "split"
    ops = {"softmax", "log_softmax", "logsumexp", "ce_loss_grad"}
    ops |= {"softmax_backward", "log_softmax_backward"}
    assert set(even["ratio_by_launch"]) == ops
    for by in even["ratio_by_launch"].values():
        assert by == {"one block": 1.0, "split 64": 1.0, "split 128": 1.0}
    assert even["split_by_launch"] == {
        "split 64": dict.fromkeys(ops, "4x64"),
        "split 128": dict.fromkeys(ops, "2x128"),
    }
    for by in odd["ratio_by_launch"].values():
        assert by == {"one block": 1.0}
    assert odd["split_by_launch"] == {}
    assert [ln for ln in lines if ln.startswith("split rows [6, 3000] float32: ")]
    assert [ln for ln in lines if "[6, 3001]" in ln and "not split" in ln]


@pytest.mark.skipif(
    not os.environ.get("SOFTCORE_CUPY_EMULATED_KIT"),
    reason="the conformance kit on the host emulation takes minutes: "
    "set SOFTCORE_CUPY_EMULATED_KIT=1 (or =N examples) to run it",
)
@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_conformance_kit_on_the_emulation(order):
    """The kit's verdict on the kernels, with a block's threads taking turns first
    to last, and last to first."""
    if _emu.compiler() is None:
        pytest.skip(NO_CXX)
    n = os.environ["SOFTCORE_CUPY_EMULATED_KIT"]
    examples = n if n.isdigit() and int(n) > 1 else "3"
    script = Path(__file__).with_name("cupy_emulated_backend.py")
    reverse = ["--reverse"] if order == "reverse" else []
    res = subprocess.run(
        [sys.executable, str(script), *reverse, "--max-examples", examples],
        capture_output=True,
        text=True,
    )
    print(res.stdout[-20000:], res.stderr[-5000:])
    assert res.returncode == 0
