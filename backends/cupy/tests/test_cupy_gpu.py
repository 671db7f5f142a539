"""On a CUDA device: the conformance kit, kernels against the reference, determinism.

Skipped, with the reason, where CuPy or a device is missing (python -m pytest -rs
shows it). On a machine with a GPU:

    pip install -e . -e "backends/cupy[cuda12]"
    python -m pytest backends/cupy/tests -rs
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import float32_rows
import float64_rows
import numpy as np
import pytest
import split_rows

import softcore_cupy
from softcore_cupy import _kernels as K

_avail = softcore_cupy.backend.available()
if _avail is not True:
    print(f"\nsoftcore-cupy GPU tests skipped: {_avail}")
    pytest.skip(f"cupy backend unavailable: {_avail}", allow_module_level=True)

import cupy  # noqa: E402
import cupyx  # noqa: E402

sc = pytest.importorskip("softcore")
reference = pytest.importorskip("softcore._reference").backend

DTYPES = [np.float32, np.float64]
# test_cupy_emulated.py runs this file on a stand-in for CuPy (kernels on the host),
# where the statistics' blocks are made smaller: the same plan at a size that runs
# in seconds there
STANDIN = cupy.__version__.endswith("-emulated")
STATS_ROWS = 16 if STANDIN else K.STATS_ROWS
TOL = {np.float32: (2e-6, 1e-7), np.float64: (1e-13, 1e-15)}


def _close(got, ref, dtype, what):
    rtol, atol = TOL[dtype]
    got = cupy.asnumpy(got)
    scale = np.nanmax(np.abs(np.where(np.isfinite(ref), ref, 0)), initial=1.0)
    np.testing.assert_allclose(
        got, ref, rtol=rtol, atol=atol * max(1.0, scale), equal_nan=True, err_msg=what
    )


def _logits(rng, rows, c, dtype):
    x = (rng.standard_normal((rows, c)) * 4).astype(dtype)
    if rows >= 5:
        x[1, c // 2] = np.nan
        x[2, c - 1] = np.inf
        x[3, :] = -np.inf
        if c > 1:
            x[4, 0] = -np.inf
    return x


def test_conformance_kit():
    """The kit's verdict, exactly as a third party would get it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "softcore", "check", "cupy"],
        capture_output=True,
        text=True,
        env=env,
    )
    print(res.stdout[-20000:])
    print(res.stderr[-5000:])
    assert res.returncode == 0


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("c", [1, 3, 10, 64, 600, 1001, 4096, 17000, 50000])
@pytest.mark.parametrize("op", ["softmax_rows", "log_softmax_rows", "logsumexp_rows"])
def test_row_kernels(op, c, dtype):
    x = _logits(np.random.default_rng(c), 7, c, dtype)
    shape = (7,) if op == "logsumexp_rows" else x.shape
    got = cupy.empty(shape, dtype)
    xd = cupy.asarray(x)
    getattr(K, op)(xd, got)  # compiles on first use
    with cupyx.allow_synchronize(False):  # nothing goes through the host
        getattr(K, op)(xd, got)
    ref = np.empty(shape, dtype)
    getattr(reference, op)(x, ref)
    _close(got, ref, dtype, f"{op} C={c}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("c", [1, 10, 600, 9000])
def test_cross_entropy_kernels(c, dtype):
    rng = np.random.default_rng(c)
    rows = 8
    x = _logits(rng, rows, c, dtype)
    target = rng.integers(0, c, rows).astype(np.int64)
    cw = rng.uniform(0.5, 2.0, c)
    alpha = 0.9 * cw[target]
    beta = np.full(rows, 0.1 / c)
    beta[1::2] = 0.0  # unsmoothed rows keep their exps in registers
    alpha[0] = beta[0] = 0.0
    d = [cupy.asarray(a) for a in (x, target, alpha, beta, cw)]
    loss, grad = cupy.empty(rows), cupy.empty(x.shape, dtype)
    with cupyx.allow_synchronize(False):
        K.cross_entropy_grad_rows(*d, 0.25, loss, grad)
    rloss, rgrad = np.empty(rows), np.empty_like(x)
    reference.cross_entropy_grad_rows(x, target, alpha, beta, cw, 0.25, rloss, rgrad)
    _close(loss, rloss, dtype, "loss")
    _close(grad, rgrad, dtype, "grad")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize(("rows", "c"), [(700, 3), (60, 40), (5, 1024), (3, 1100)])
@pytest.mark.parametrize("kernel", ["rows", "wide"])
def test_jacobian_kernels(kernel, rows, c, dtype, monkeypatch):
    """Both Jacobian kernels (probabilities in shared memory to 1024 classes, and the
    one wider rows take, forced here at every width) against the reference."""
    if kernel == "wide":
        monkeypatch.setattr(K, "JAC_ROWS_MAX", 0)
    x = _logits(np.random.default_rng(c), rows, c, dtype)
    xd = cupy.asarray(x)
    for op in ("softmax_jacobian_rows", "log_softmax_jacobian_rows"):
        got = cupy.empty((rows, c, c), dtype)
        with cupyx.allow_synchronize(False):
            getattr(K, op)(xd, got)
        ref = np.empty((rows, c, c), dtype)
        getattr(reference, op)(x, ref)
        _close(got, ref, dtype, f"{op} {kernel} {rows}x{c}")


@pytest.mark.parametrize("c", [7, 600, 9000])
def test_float64_tiny_probabilities(c, monkeypatch):
    """float64 softmax and the Jacobians' off-diagonal entries against mpmath in rows
    whose logits span about 150, where a rounded exp argument costs up to 110 ulps:
    kept exps (7 and 600 classes), slots past the registers (9000), both Jacobian
    kernels. Bounds: the emulation's largest errors (2.3 ulps of 2^-52 for either)
    plus about one for each CUDA exp in an entry (1 ulp each)."""
    pytest.importorskip("mpmath")
    x = float64_rows.wide_span_rows(c)
    got = cupy.empty_like(cupy.asarray(x))
    K.softmax_rows(cupy.asarray(x), got)
    assert float64_rows.softmax_ulps(x, cupy.asnumpy(got)) <= 4
    if c != 7:
        return
    for kernel in ("rows", "wide"):
        if kernel == "wide":
            monkeypatch.setattr(K, "JAC_ROWS_MAX", 0)
        for op in ("softmax_jacobian_rows", "log_softmax_jacobian_rows"):
            jac = cupy.empty((4, 7, 7))
            getattr(K, op)(cupy.asarray(x), jac)
            worst = float64_rows.jacobian_offdiag_ulps(
                x, cupy.asnumpy(jac), op.startswith("log")
            )
            assert worst <= 5, f"{op} ({kernel} kernel): {worst:.2f} ulps"


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("c", [3, 64, 1001])
def test_every_threads_per_row_launch(c, dtype, monkeypatch):
    """Each launch the sweep may pick, rows sharing a warp (8, 16) included, gives the
    reference's values; 37 rows leave a partly filled last block in every layout."""
    rng = np.random.default_rng(c)
    rows = 37
    x = _logits(rng, rows, c, dtype)
    target = rng.integers(0, c, rows).astype(np.int64)
    alpha, beta, cw = np.full(rows, 0.9), np.full(rows, 0.1 / c), np.ones(c)
    beta[1::2] = 0.0  # unsmoothed rows: the kept exps
    d = [cupy.asarray(a) for a in (x, target, alpha, beta, cw)]
    ref, rloss, rgrad = np.empty_like(x), np.empty(rows), np.empty_like(x)
    reference.softmax_rows(x, ref)
    reference.cross_entropy_grad_rows(x, target, alpha, beta, cw, 0.5, rloss, rgrad)
    for t in K.THREADS_PER_ROW:
        monkeypatch.setattr(K, "threads_per_row", lambda *a, _t=t: _t)
        got = cupy.empty_like(d[0])
        K.softmax_rows(d[0], got)
        _close(got, ref, dtype, f"softmax at {t} threads")
        loss, grad = cupy.empty(rows), cupy.empty_like(d[0])
        K.cross_entropy_grad_rows(*d, 0.5, loss, grad)
        _close(loss, rloss, dtype, f"CE loss at {t} threads")
        _close(grad, rgrad, dtype, f"CE grad at {t} threads")


@pytest.mark.parametrize(
    ("dtype", "c", "limit"),
    [
        (np.float32, 40000, None),  # the tail wholly in shared memory
        (np.float32, 128256, None),  # more than a block may hold: in part
        (np.float64, 20002, None),
        (np.float32, 40000, 4096),  # a few slots a thread staged, the rest read again
    ],
)
def test_staged_tails_on_the_device(dtype, c, limit, monkeypatch):
    """Rows past the register cache under the shipped launch, their tails kept in
    shared memory (past the 48 KiB default: the opt-in) or read again: the same bits
    for every op that stages (the backward ops too), the reference's values, and a
    block at 1024 threads may opt in past the default."""
    monkeypatch.setattr(K, "STAGE_LIMIT", limit)
    rng = np.random.default_rng(c)
    rows = 6
    x = _logits(rng, rows, c, dtype)
    x[5, -3] = 60.0  # a row's maximum in its tail
    target = rng.integers(0, c, rows).astype(np.int64)
    alpha, beta, cw = np.full(rows, 0.9), np.full(rows, 0.1 / c), np.ones(c)
    beta[1::2] = 0.0
    d = [cupy.asarray(a) for a in (x, target, alpha, beta, cw)]
    g = cupy.asarray(rng.standard_normal((rows, c)).astype(dtype))
    variant = f"f{x.itemsize * 8}_v{K._VEC[x.itemsize]}"  # C a multiple of the vector
    t = K.threads_per_row(c, x.itemsize, "softmax")
    assert K.stage_bytes("softmax", c, x.itemsize, t, variant) > 0
    runs = {}
    for stage in (False, True):
        monkeypatch.setattr(K, "STAGE", stage)
        out = {}
        for op in ("softmax_rows", "log_softmax_rows"):
            got = cupy.empty_like(d[0])
            getattr(K, op)(d[0], got)
            out[op] = (cupy.asnumpy(got),)
        loss, grad = cupy.empty(rows), cupy.empty_like(d[0])
        K.cross_entropy_grad_rows(*d, 0.5, loss, grad)
        out["ce"] = cupy.asnumpy(loss), cupy.asnumpy(grad)
        for op, saved in (
            ("softmax_backward_rows", "softmax_rows"),
            ("log_softmax_backward_rows", "log_softmax_rows"),
        ):
            got = cupy.empty_like(d[0])
            getattr(K, op)(g, cupy.asarray(out[saved][0]), got)
            out[op] = (cupy.asnumpy(got),)
        runs[stage] = out
    cap = K._stage_caps[(d[0].device.id, f"sc_softmax_{variant}", t, K.tail_batch())]
    assert cap > 48 * 1024, f"the device let a block opt in to {cap} bytes only"
    for key, parts in runs[False].items():
        for u, v in zip(parts, runs[True][key], strict=True):
            np.testing.assert_array_equal(u, v, err_msg=key)
    ref = np.empty_like(x)
    reference.softmax_rows(x, ref)
    _close(runs[True]["softmax_rows"][0], ref, dtype, "softmax")
    rloss, rgrad = np.empty(rows), np.empty_like(x)
    reference.cross_entropy_grad_rows(x, target, alpha, beta, cw, 0.5, rloss, rgrad)
    _close(runs[True]["ce"][1], rgrad, dtype, "CE grad")


def _branch_logits():
    rng = np.random.default_rng(5)
    mixed = (rng.standard_normal((8, 64)) * 30).astype(np.float32)
    mixed[::2] += np.float32(3e3)  # x - m inexact as one float
    return np.concatenate([float32_rows.branch_rows(), mixed])


def test_float32_exp_branches_under_ftz():
    """The float32 exps where -ftz is in force (the host emulation cannot show it):
    subnormal probabilities come out, not zeros, both where e^(x - m) is subnormal
    (row 0) and where a thread's factor exp(mc - lse) is (row 4). Bounds: softmax
    3 ULPs of p (CUDA's expf is within 2 ULPs, then one rounded product),
    log_softmax 0.6 ULP of max(|x - lse|, 1) (no float exp in it)."""
    x = _branch_logits()
    want_p, want_l = float32_rows.softmax64(x)
    got_p, got_l = cupy.empty(x.shape, np.float32), cupy.empty(x.shape, np.float32)
    K.softmax_rows(cupy.asarray(x), got_p)
    K.log_softmax_rows(cupy.asarray(x), got_l)
    got_p, got_l = cupy.asnumpy(got_p), cupy.asnumpy(got_l)
    assert ((got_p[0] > 0) & (got_p[0] < 2**-126)).any()
    assert ((got_p[4] > 0) & (got_p[4] < 2**-126)).sum() == 63
    assert got_p[0, 5] == 0
    assert (got_p[0, -4:] == 0).all()
    assert float32_rows.ulps32(got_p, want_p).max() <= 3.0
    with np.errstate(over="ignore"):  # -3e38 - 3e38 is beyond float32: -inf
        finite = np.isfinite(want_l.astype(np.float32))
    assert float32_rows.ulps32(got_l[finite], want_l[finite], floor=1.0).max() <= 0.6


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_float32_gradient_branches_under_ftz(smoothing):
    """The float32 cross-entropy gradient on the same rows, unsmoothed (kept exps)
    and smoothed (the literal formula): within 3 ULPs of scale (p coef + alpha onehot
    + beta w), with its subnormal entries."""
    x = _branch_logits()
    rows, c = x.shape
    target = np.random.default_rng(3).integers(0, c, rows).astype(np.int64)
    target[0] = 5  # a -inf logit at the target
    alpha, beta = np.full(rows, 1 - smoothing), np.full(rows, smoothing / c)
    cw = np.ones(c)
    scale = 1.0 / rows
    d = [cupy.asarray(a) for a in (x, target, alpha, beta, cw)]
    loss, grad = cupy.empty(rows), cupy.empty(x.shape, np.float32)
    K.cross_entropy_grad_rows(*d, scale, loss, grad)
    grad = cupy.asnumpy(grad).astype(np.float64)
    p, _ = float32_rows.softmax64(x)
    onehot = np.zeros_like(p)
    onehot[np.arange(rows), target] = 1.0
    coef = (alpha + beta * c)[:, None]
    want = scale * (p * coef - alpha[:, None] * onehot - beta[:, None])
    metric = scale * (p * coef + alpha[:, None] * onehot + beta[:, None])
    ok = np.isfinite(want)  # row 2's -3e38 logit: the reference's own overflow aside
    ulp = np.spacing(metric.astype(np.float32)).astype(np.float64)
    assert (np.abs(grad - want)[ok] / ulp[ok]).max() <= 3.0
    if smoothing == 0.0:
        assert ((grad[4] > 0) & (grad[4] < 2**-126)).sum() >= 62
        assert grad[0, 5] == np.float32(-scale * alpha[0])


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_public_api_on_cupy_arrays(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 50, 3)).astype(dtype)
    xd = cupy.asarray(x)
    assert sc.get_backend(None).name in {"numpy", "numba", "cupy"}
    for fn in (sc.softmax, sc.log_softmax):
        got = fn(xd, axis=1)
        assert isinstance(got, cupy.ndarray)
        assert got.device == xd.device
        _close(got, fn(x, axis=1, backend="numpy"), dtype, fn.__name__)
    # non-contiguous and negatively strided CuPy inputs
    view = xd[:, ::-2, :]
    _close(
        sc.softmax(view, axis=1),
        sc.softmax(x[:, ::-2, :], axis=1, backend="numpy"),
        dtype,
        "strided",
    )
    target = rng.integers(0, 50, (6, 3))
    loss, grad = sc.cross_entropy_with_grad(
        xd, cupy.asarray(target), axis=1, label_smoothing=0.1
    )
    rl, rg = sc.cross_entropy_with_grad(
        x, target, axis=1, label_smoothing=0.1, backend="numpy"
    )
    _close(loss, np.asarray(rl), dtype, "ce loss")
    _close(grad, rg, dtype, "ce grad")


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("rows", [50, 3 * STATS_ROWS + 5])
def test_cross_entropy_index_rows_against_the_core_plan(rows, dtype, monkeypatch):
    """Class-index cross-entropy through the backend's cross_entropy_index_rows
    (targets checked and summed on the device, one read at the end) against the
    core's own device plan: the same gradient and row-loss bits without class
    weights (the kept count is exact either way; the scalar loss is summed in
    another order), within rounding of the kept weight's sum with them; a bad
    target raises the same error and leaves out= as it was."""
    monkeypatch.setattr(K, "STATS_ROWS", STATS_ROWS)
    rng = np.random.default_rng(rows)
    c = 37
    x = cupy.asarray(rng.standard_normal((rows, c)).astype(dtype))
    t = rng.integers(0, c, rows)
    t[::7] = -100
    td = cupy.asarray(t)
    w = cupy.asarray(rng.uniform(0.5, 2.0, c))
    cases = [{}, {"label_smoothing": 0.1}, {"reduction": "sum"}, {"reduction": "none"}]
    hooked = [sc.cross_entropy_with_grad(x, td, **kw) for kw in cases]
    weighted = sc.cross_entropy_with_grad(x, td, weight=w)
    with monkeypatch.context() as m:
        m.setattr(type(softcore_cupy.backend), "cross_entropy_index_rows", None)
        plain = [sc.cross_entropy_with_grad(x, td, **kw) for kw in cases]
        weighted_plan = sc.cross_entropy_with_grad(x, td, weight=w)
    tol = {np.float16: 1e-3, np.float32: 1e-6, np.float64: 1e-14}[dtype]
    for kw, (l1, g1), (l2, g2) in zip(cases, hooked, plain, strict=True):
        np.testing.assert_array_equal(cupy.asnumpy(g1), cupy.asnumpy(g2), str(kw))
        if kw.get("reduction") == "none":  # the row losses: the same bits
            np.testing.assert_array_equal(cupy.asnumpy(l1), cupy.asnumpy(l2), str(kw))
        else:  # their sum, in another order
            np.testing.assert_allclose(float(l1), float(l2), rtol=tol, err_msg=str(kw))
    for a, b in zip(weighted, weighted_plan, strict=True):
        np.testing.assert_allclose(
            cupy.asnumpy(a).astype(np.float64), cupy.asnumpy(b).astype(np.float64),
            rtol=tol, atol=tol,
        )  # fmt: skip
    bad = t.copy()
    bad[rows - 2] = c
    out = cupy.full(x.shape, 7.0, dtype=dtype)
    with pytest.raises(ValueError, match=str(c)):
        sc.cross_entropy_with_grad(x, cupy.asarray(bad), out=out)
    assert bool((out == 7.0).all())


def test_float16_is_computed_in_float32():
    x = np.random.default_rng(1).standard_normal((4, 300)).astype(np.float16)
    got = sc.softmax(cupy.asarray(x))
    assert got.dtype == cupy.float16
    ref = sc.softmax(x, backend="numpy")
    np.testing.assert_array_equal(cupy.asnumpy(got), ref)


def test_linear_cross_entropy_matches_the_reference():
    rng = np.random.default_rng(2)
    n, d, c = 1000, 64, 3000
    x = rng.standard_normal((n, d)).astype(np.float32)
    w = (rng.standard_normal((c, d)) / 8).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    t = rng.integers(0, c, n)
    t[::7] = -100
    args = dict(linear_bias=cupy.asarray(b), label_smoothing=0.05, chunk_size=256)
    loss, (dx, dw, db) = sc.linear_cross_entropy_with_grad(
        cupy.asarray(x), cupy.asarray(w), cupy.asarray(t), **args
    )
    rl, (rx, rw, rb) = sc.linear_cross_entropy_with_grad(
        x.astype(np.float64),
        w.astype(np.float64),
        t,
        linear_bias=b.astype(np.float64),
        label_smoothing=0.05,
        backend="numpy",
    )
    np.testing.assert_allclose(float(loss), float(rl), rtol=1e-5)
    for got, ref in ((dx, rx), (dw, rw), (db, rb)):
        np.testing.assert_allclose(cupy.asnumpy(got), ref, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("chunk_size", [1, 2, None])
def test_linear_cross_entropy_keeps_float32_subnormal_gradients(chunk_size):
    """CuPy's own kernels flush float32 subnormals (-ftz=true); dW and db accumulate
    in cuBLAS instead, so gradients between 2^-149 and 2^-126 survive every chunk."""
    n = 4
    x = np.ones((n, 1), np.float32)
    # logits 0, -90, -95, -100, 0: probabilities e^-90 ... e^-100 are subnormal
    w = np.array([[0.0], [-90.0], [-95.0], [-100.0], [0.0]], np.float32)
    b = np.zeros(5, np.float32)
    t = np.zeros(n, np.int64)
    _, (_, dw, db) = sc.linear_cross_entropy_with_grad(
        cupy.asarray(x),
        cupy.asarray(w),
        cupy.asarray(t),
        linear_bias=cupy.asarray(b),
        chunk_size=chunk_size,
    )
    z = w[:, 0].astype(np.float64)
    p = np.exp(z - np.log(np.exp(z).sum()))
    want = p - (np.arange(5) == 0)  # d/dz of the mean over 4 identical rows
    for got in (cupy.asnumpy(dw)[:, 0], cupy.asnumpy(db)):
        assert (got[1:4] != 0).all(), got
        # n subnormal terms, each within half a spacing (2^-150) of its value
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=n * 2.0**-150)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_deterministic(dtype):
    """No atomics: repeated calls and rows in other batches give the same bits."""
    rng = np.random.default_rng(3)
    n, repeats = (64, 2) if STANDIN else (2048, 20)  # the stand-in: the code path
    x = cupy.asarray(rng.standard_normal((n, 5000)).astype(dtype) * 6)
    first = cupy.empty_like(x)
    K.log_softmax_rows(x, first)
    for _ in range(repeats):
        again = cupy.empty_like(x)
        K.log_softmax_rows(x, again)
        assert bool((again == first).all())
    part = cupy.empty((3, 5000), dtype)
    K.log_softmax_rows(cupy.ascontiguousarray(x[10:13]), part)
    assert bool((part == first[10:13]).all())
    t = cupy.asarray(rng.integers(0, 5000, n))
    a, bb = cupy.full(n, 0.9), cupy.full(n, 0.1 / 5000)
    cw = cupy.ones(5000)
    loss0, g0 = cupy.empty(n), cupy.empty_like(x)
    K.cross_entropy_grad_rows(x, t, a, bb, cw, 1 / n, loss0, g0)
    for _ in range(repeats // 2):
        loss1, g1 = cupy.empty(n), cupy.empty_like(x)
        K.cross_entropy_grad_rows(x, t, a, bb, cw, 1 / n, loss1, g1)
        assert bool((loss1 == loss0).all())
        assert bool((g1 == g0).all())


# The split-row launch at its shipped block (1024 threads) on a GPU; on the stand-in
# at 64 threads a block, rows of the same shape in blocks a sixteenth the size.
SPLIT_THREADS = 64 if STANDIN else K.SPLIT_THREADS


@pytest.mark.parametrize(("dtype", "cl"), split_rows.CASES, ids=split_rows.IDS)
def test_split_rows_on_the_device(dtype, cl, monkeypatch):
    """Rows split over a thread-block cluster (off as shipped; on here): softmax,
    log_softmax, logsumexp, their backward passes and the CE gradient (kept exps;
    smoothed and weighted)
    give the reference's values, NaN rows NaN, the maximum in the first or the last
    block's segment, the same bits on every call and written over the input, close
    to the one-block kernels; the device runs clusters (compute capability 9.0
    on)."""
    monkeypatch.setattr(K, "SPLIT_THREADS", SPLIT_THREADS)
    itemsize = np.dtype(dtype).itemsize
    c = split_rows.width(cl, itemsize, SPLIT_THREADS)
    assert K.split_launch("softmax", c, itemsize) == cl
    device = cupy.cuda.Device().id
    if not K._device_splits(device):
        pytest.skip("the device has no thread-block clusters (sm_90 and later)")
    x = _logits(np.random.default_rng(cl), 7, c, dtype)
    x[5, -3] = 60.0
    x[6, 2] = 60.0
    xd = cupy.asarray(x)
    for op in ("softmax_rows", "log_softmax_rows", "logsumexp_rows"):
        shape = (7,) if op == "logsumexp_rows" else x.shape
        runs = []
        for split in (True, True, False):
            monkeypatch.setattr(K, "SPLIT", split)
            got = cupy.empty(shape, dtype)
            getattr(K, op)(xd, got)
            runs.append(cupy.asnumpy(got))
        np.testing.assert_array_equal(runs[0], runs[1], err_msg=op)
        ref = np.empty(shape, dtype)
        getattr(reference, op)(x, ref)
        _close(runs[0], ref, dtype, f"split {op} C={c}")
        _close(runs[0], runs[2], dtype, f"split {op} against one block")
        assert np.isnan(runs[0][1:4]).all(), op
        if op != "logsumexp_rows":
            monkeypatch.setattr(K, "SPLIT", True)
            y = xd.copy()
            getattr(K, op)(y, y)
            np.testing.assert_array_equal(cupy.asnumpy(y), runs[0], err_msg=op)
    g = np.random.default_rng(13).standard_normal(x.shape).astype(dtype)
    for op, saved in (
        ("softmax_backward_rows", "softmax_rows"),
        ("log_softmax_backward_rows", "log_softmax_rows"),
    ):  # at 512 threads a block: twice the blocks, or one block where 8 are short
        y = np.empty_like(x)
        getattr(reference, saved)(x, y)
        gd, yd = cupy.asarray(g), cupy.asarray(y)
        runs = []
        for split in (True, True, False):
            monkeypatch.setattr(K, "SPLIT", split)
            got = cupy.empty_like(xd)
            getattr(K, op)(gd, yd, got)
            runs.append(cupy.asnumpy(got))
        monkeypatch.setattr(K, "SPLIT", True)
        buf = gd.copy()
        getattr(K, op)(buf, yd, buf)
        ref = np.empty_like(x)
        getattr(reference, op)(g, y, ref)
        np.testing.assert_array_equal(runs[0], runs[1], err_msg=op)
        np.testing.assert_array_equal(cupy.asnumpy(buf), runs[0], err_msg=op)
        _close(runs[0], ref, dtype, f"split {op} C={c}")
        _close(runs[0], runs[2], dtype, f"split {op} against one block")
    rng = np.random.default_rng(cl)
    for eps, weighted in ((0.0, False), (0.1, True)):  # kept exps; the folded sums
        target = rng.integers(0, c, 7).astype(np.int64)
        target[5] = c - 3  # on the row's maximum, in the last segment
        cw = rng.uniform(0.5, 2.0, c) if weighted else np.ones(c)
        alpha, beta = (1 - eps) * cw[target], np.full(7, eps / c)
        d = [cupy.asarray(a) for a in (target, alpha, beta, cw)]
        runs = []
        for split in (True, True, False):
            monkeypatch.setattr(K, "SPLIT", split)
            loss, grad = cupy.empty(7), cupy.empty_like(xd)
            K.cross_entropy_grad_rows(xd, *d, 0.5, loss, grad)
            runs.append((cupy.asnumpy(loss), cupy.asnumpy(grad)))
        monkeypatch.setattr(K, "SPLIT", True)
        buf, loss = xd.copy(), cupy.empty(7)
        K.cross_entropy_grad_rows(buf, *d, 0.5, loss, buf)
        runs.append((cupy.asnumpy(loss), cupy.asnumpy(buf)))
        rloss, rgrad = np.empty(7), np.empty_like(x)
        reference.cross_entropy_grad_rows(x, target, alpha, beta, cw, 0.5, rloss, rgrad)
        for i, (ref, what) in enumerate(((rloss, "loss"), (rgrad, "grad"))):
            np.testing.assert_array_equal(runs[0][i], runs[1][i], err_msg=what)
            np.testing.assert_array_equal(runs[0][i], runs[3][i], err_msg=what)
            _close(runs[0][i], ref, dtype, f"split CE {what} eps={eps}")
            _close(runs[0][i], runs[2][i], dtype, f"split CE {what} against one block")


def test_runs_on_the_current_stream():
    x = cupy.asarray(np.random.default_rng(4).standard_normal((512, 1000)))
    ref = cupy.empty_like(x)
    K.softmax_rows(x, ref)
    s = cupy.cuda.Stream(non_blocking=True)
    with s:
        out = cupy.empty_like(x)
        K.softmax_rows(x, out)
    s.synchronize()
    assert bool((out == ref).all())


def test_second_device():
    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("one CUDA device: the same-device rule is checked on device 0 only")
    with cupy.cuda.Device(1):
        x = cupy.asarray(np.random.default_rng(5).standard_normal((64, 100)))
    out = sc.softmax(x)
    assert out.device.id == 1


def test_describe_names_the_device():
    """``python -m softcore info``'s lines for this backend: CuPy's version, the
    current device by CUDA's own name for it, the runtime, the kernel cache."""
    facts = softcore_cupy.backend.describe()
    device = cupy.cuda.Device().id
    name = cupy.cuda.runtime.getDeviceProperties(device)["name"]
    assert facts["cupy"] == cupy.__version__
    assert facts["device"].startswith(f"{device}: {name.decode()}, compute capability")
    assert facts["device"].endswith(" GiB")
    assert re.fullmatch(r"\d+\.\d", facts["CUDA runtime"])
    assert facts["kernel cache"]


def test_precompile_builds_the_module_for_the_current_device():
    """``python -m softcore warmup cupy``: kernels.cu compiled for this device, the
    module kept for the launches that follow."""
    line = softcore_cupy.backend.precompile()
    device = cupy.cuda.Device().id
    assert line == f"{len(K.KERNEL_NAMES)} kernels compiled for device {device}"
    assert (device, K.tail_batch()) in K._modules
    fn = K._function("sc_softmax_f32_v1", device)
    assert fn is K._function("sc_softmax_f32_v1", device)
