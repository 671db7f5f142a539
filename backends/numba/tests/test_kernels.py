"""Every kernel against the NumPy reference backend, in every mode.

The reference computes in float64; tolerances: float64 rtol 1e-13 (abs 1e-15 for
values near 0), float32 rtol 2e-6 (abs 1e-7). Special rows (NaN, +inf, all -inf)
must be NaN exactly where the reference is NaN. The serial, row-parallel and
split drivers must give the same bits.
"""

import math
from fractions import Fraction
from unittest import mock

import numpy as np
import pytest

from softcore._reference import backend as ref
from softcore._validate import _writable
from softcore_numba import _kernels as K
from softcore_numba import _ops
from softcore_numba import backend as nb

DTYPES = [np.float32, np.float64]
TOL = {np.float32: (2e-6, 1e-7), np.float64: (1e-13, 1e-15)}
SHAPES = [(1, 1), (3, 1), (5, 7), (33, 130), (6, 40000)]
# short rows (C < SHORT_C) through the parallel tile driver, a partial last tile
SHORT_PAR = (9000, 10)


def _x(rng, shape, dtype, special=True):
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    n, c = shape
    if special and n >= 5 and c >= 3:
        x[0, 1] = np.nan
        x[1, :] = -np.inf
        x[2, 2] = np.inf
        x[3, : c // 2] = -np.inf  # -inf entries in a finite row
    return x


def _close(got, want, dtype, what):
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=what)
    ok = ~np.isnan(want)
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(got[ok], want[ok], rtol=rtol, atol=atol, err_msg=what)


def _ce_args(rng, x):
    n, c = x.shape
    y = rng.integers(0, c, n)
    alpha = rng.uniform(0.2, 2.0, n)
    beta = np.where(rng.uniform(size=n) < 0.5, 0.05, 0.0)
    alpha[-1] = beta[-1] = 0.0  # an ignored row
    cw = rng.uniform(0.5, 2.0, c)
    return y, alpha, beta, cw


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [*SHAPES, SHORT_PAR], ids=str)
@pytest.mark.parametrize("op", ["softmax_rows", "log_softmax_rows", "logsumexp_rows"])
def test_rowwise(op, shape, dtype, rng):
    x = _x(rng, shape, dtype)
    shape_out = shape[:1] if op == "logsumexp_rows" else shape
    got, want = np.empty(shape_out, dtype), np.empty(shape_out, dtype)
    getattr(nb, op)(x, got)
    getattr(ref, op)(x, want)
    _close(got, want, dtype, op)
    if op != "logsumexp_rows":  # out aliasing x
        xc = x.copy()
        getattr(nb, op)(xc, xc)
        np.testing.assert_array_equal(xc, got)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (9, 70)], ids=str)
@pytest.mark.parametrize("op", ["softmax_jacobian_rows", "log_softmax_jacobian_rows"])
def test_jacobian(op, shape, dtype, rng):
    x = _x(rng, shape, dtype)
    n, c = shape
    got, want = np.empty((n, c, c), dtype), np.empty((n, c, c), dtype)
    getattr(nb, op)(x, got)
    getattr(ref, op)(x, want)
    _close(got, want, dtype, op)
    ser = np.empty_like(got)
    K.jacobian_ser(x, ser, op.startswith("log"))
    par = np.empty_like(got)
    K.jacobian_par(x, par, op.startswith("log"))
    np.testing.assert_array_equal(ser, par)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_backward(shape, dtype, rng):
    x = _x(rng, shape, dtype, special=False)
    g = rng.standard_normal(shape).astype(dtype)
    p = np.empty_like(x)
    ref.softmax_rows(x, p)
    lp = np.empty_like(x)
    ref.log_softmax_rows(x, lp)
    for op, arg in [("softmax_backward_rows", p), ("log_softmax_backward_rows", lp)]:
        got, want = np.empty_like(x), np.empty_like(x)
        getattr(nb, op)(g, arg, got)
        getattr(ref, op)(g, arg, want)
        _close(got, want, dtype, op)
        gc = g.copy()
        getattr(nb, op)(gc, arg, gc)  # out aliasing grad
        np.testing.assert_array_equal(gc, got)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("smoothing", [True, False], ids=["smoothing", "plain"])
@pytest.mark.parametrize(
    "shape", [*SHAPES, SHORT_PAR, (1000, 16), (1000, 17), (1000, 2)], ids=str
)
def test_cross_entropy_index(shape, smoothing, dtype, rng):
    x = _x(rng, shape, dtype)
    y, alpha, beta, cw = _ce_args(rng, x)
    if not smoothing:  # every beta 0: the unsmoothed paths only
        beta[:] = 0.0
    n = shape[0]
    got_l, want_l = np.empty(n), np.empty(n)
    nb.cross_entropy_rows(x, y, alpha, beta, cw, got_l)
    ref.cross_entropy_rows(x, y, alpha, beta, cw, want_l)
    _close(got_l, want_l, np.float64 if dtype == np.float64 else dtype, "loss")
    got_g, want_g = np.empty_like(x), np.empty_like(x)
    nb.cross_entropy_grad_rows(x, y, alpha, beta, cw, 0.25, got_l, got_g)
    ref.cross_entropy_grad_rows(x, y, alpha, beta, cw, 0.25, want_l, want_g)
    _close(got_l, want_l, dtype, "loss of grad kernel")
    _close(got_g, want_g, dtype, "grad")
    assert got_l[-1] == 0.0  # ignored row
    assert not got_g[-1].any()
    xc = x.copy()  # grad_out is x: the linear cross-entropy call
    loss = np.empty(n)
    nb.cross_entropy_grad_rows(xc, y, alpha, beta, cw, 0.25, loss, xc)
    np.testing.assert_array_equal(xc, got_g)
    np.testing.assert_array_equal(loss, got_l)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_cross_entropy_prob(shape, dtype, rng):
    x = _x(rng, shape, dtype)
    t = rng.uniform(0, 1, shape).astype(dtype)
    t /= t.sum(axis=1, keepdims=True)
    cw = rng.uniform(0.5, 2.0, shape[1])
    n = shape[0]
    got_l, want_l = np.empty(n), np.empty(n)
    nb.cross_entropy_prob_rows(x, t, 0.1, cw, got_l)
    ref.cross_entropy_prob_rows(x, t, 0.1, cw, want_l)
    _close(got_l, want_l, dtype, "loss")
    got_g, want_g = np.empty_like(x), np.empty_like(x)
    nb.cross_entropy_prob_grad_rows(x, t, 0.1, cw, 0.5, got_l, got_g)
    ref.cross_entropy_prob_grad_rows(x, t, 0.1, cw, 0.5, want_l, want_g)
    _close(got_l, want_l, dtype, "loss of grad kernel")
    _close(got_g, want_g, dtype, "grad")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(700, 8), (200, 130), (80, 1000), (9, K.BLOCK)])
def test_prob_grad_stored_exps_same_bits(shape, dtype, rng):
    """The probability-target gradient of one-block rows into another array
    stores each row's exps as it sums them (one exp an element); over the
    logits it takes the statistics first. Both give the same bits, NaNs'
    signs included (compared as bytes), and the same losses as the loss
    alone: rows of NaN, of only ``-inf`` (with a NaN too), the format's
    largest, far from zero, of a range past the unclamped exp's, targets
    with zeros and a NaN; smoothed or not, serial and threaded."""
    n, c = shape
    x = _x(rng, shape, dtype)
    x[4, :] = np.nan
    x[5, :] = -np.inf
    x[5, 3] = np.nan
    x[6, :2] = np.finfo(dtype).max
    x[7] = 100.0 + rng.standard_normal(c)
    x[8] *= 40.0
    t = rng.uniform(0, 1, shape).astype(dtype)
    t[:, ::3] = 0.0
    t /= t.sum(axis=1, keepdims=True)
    t[2, 1] = np.nan
    cw = rng.uniform(0.5, 2.0, c)
    for eps in (0.0, 0.1):
        for driver in (K.cross_entropy_prob_grad_ser, K.cross_entropy_prob_grad_par):
            with np.errstate(all="ignore"):
                la, ga = np.empty(n), np.empty_like(x)
                driver(x, t, eps, cw, 0.3, la, ga)
                lb, gb = np.empty(n), x.copy()
                driver(gb, t, eps, cw, 0.3, lb, gb)
                lc = np.empty(n)
                K.cross_entropy_prob_ser(x, t, eps, cw, lc)
            assert ga.tobytes() == gb.tobytes()
            assert la.tobytes() == lb.tobytes() == lc.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 40000), (2, 3 * K.BLOCK + 5)], ids=str)
def test_modes_same_bits(shape, dtype, rng):
    """Serial, parallel-over-rows and split-over-blocks drivers agree bit for bit."""
    x = _x(rng, shape, dtype, special=False)
    x[1, K.BLOCK :] = -np.inf  # one all -inf block in a finite row
    for op in ("softmax", "log_softmax"):
        outs = []
        for mode in ("ser", "par", "split"):
            out = np.empty_like(x)
            getattr(K, f"{op}_{mode}")(x, out)
            outs.append(out)
        np.testing.assert_array_equal(outs[0], outs[1], err_msg=op)
        np.testing.assert_array_equal(outs[0], outs[2], err_msg=op)
    lses = []
    for mode in ("ser", "par", "split"):
        out = np.empty(shape[0], dtype)
        getattr(K, f"logsumexp_{mode}")(x, out)
        lses.append(out)
    np.testing.assert_array_equal(lses[0], lses[1])
    np.testing.assert_array_equal(lses[0], lses[2])
    y, alpha, beta, cw = _ce_args(rng, x)
    beta[:] = 0.05
    res = []
    for mode in ("ser", "par", "split"):
        loss, grad = np.empty(shape[0]), np.empty_like(x)
        getattr(K, f"cross_entropy_grad_{mode}")(x, y, alpha, beta, cw, 0.5, loss, grad)
        res.append((loss, grad))
    for loss, grad in res[1:]:
        np.testing.assert_array_equal(loss, res[0][0])
        np.testing.assert_array_equal(grad, res[0][1])


def _rows_modes_agree(x, ser, par, reference, per_row=False):
    """A row kernel's serial and parallel drivers give the same bits, match the
    reference, and (unless ``per_row``: one output per row) give them again
    with the output over the input. Returns the serial result."""
    dtype = x.dtype.type
    shape = x.shape[:1] if per_row else x.shape
    a, b, want = (np.empty(shape, dtype) for _ in range(3))
    ser(x, a)
    par(x, b)
    np.testing.assert_array_equal(a, b)
    reference(x, want)
    _close(a, want, dtype, ser.__name__)
    if not per_row:
        xc = x.copy()
        par(xc, xc)
        np.testing.assert_array_equal(xc, a)
    return a


def _ce_index_modes_agree(x, y, alpha, beta, cw, ser=K.cross_entropy_grad_ser):
    """Class-index cross-entropy with its gradient (gradient scale 0.5): the
    serial driver ``ser``, the parallel one and the loss-only one agree bit for
    bit and match the reference; rows with ``alpha = beta = 0`` are 0. Returns
    the serial ``(loss, grad)``."""
    n = x.shape[0]
    la, lb, lc, lw = (np.empty(n) for _ in range(4))
    ga, gb, gw = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    ser(x, y, alpha, beta, cw, 0.5, la, ga)
    K.cross_entropy_grad_par(x, y, alpha, beta, cw, 0.5, lb, gb)
    np.testing.assert_array_equal(la, lb)
    np.testing.assert_array_equal(ga, gb)
    K.cross_entropy_par(x, y, alpha, beta, cw, lc)
    np.testing.assert_array_equal(la, lc)
    ref.cross_entropy_grad_rows(x, y, alpha, beta, cw, 0.5, lw, gw)
    _close(la, lw, x.dtype.type, "loss")
    _close(ga, gw, x.dtype.type, "grad")
    ignored = (alpha == 0.0) & (beta == 0.0)
    assert ignored.any()
    assert not ga[ignored].any()
    assert not la[ignored].any()
    return la, ga


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1000, 130), (2 * K.LOG_ROWS + 3, 64)], ids=str)
def test_row_groups_same_bits(shape, dtype, rng):
    """log_softmax, logsumexp and cross-entropy take their rows' logs a group
    of ``LOG_ROWS`` rows at a time (log_softmax: as many as fit in
    ``REREAD_BYTES``): tasks that end mid-group and partial last groups give
    the serial driver's bits, and the reference's values."""
    x = _x(rng, shape, dtype)
    for G in (K.LOG_ROWS, K._reread_rows(x)):
        assert K._task_rows(x) % G or shape[0] % G
    assert K._reread_rows(x) < K.LOG_ROWS
    _rows_modes_agree(x, K.log_softmax_ser, K.log_softmax_par, ref.log_softmax_rows)
    _rows_modes_agree(
        x, K.logsumexp_ser, K.logsumexp_par, ref.logsumexp_rows, per_row=True
    )
    # class-index cross-entropy: ignored rows (alpha = beta = 0) in every group,
    # smoothing on half of the rows
    y, alpha, beta, cw = _ce_args(rng, x)
    alpha[::7] = beta[::7] = 0.0
    n = shape[0]
    la, ga = _ce_index_modes_agree(x, y, alpha, beta, cw)
    lb, lc, lw = (np.empty(n) for _ in range(3))
    gb, gw = np.empty_like(x), np.empty_like(x)
    # probability targets, label smoothing 0.1
    t = rng.dirichlet(np.ones(shape[1]), n).astype(dtype)
    K.cross_entropy_prob_grad_ser(x, t, 0.1, cw, 0.5, la, ga)
    K.cross_entropy_prob_grad_par(x, t, 0.1, cw, 0.5, lb, gb)
    np.testing.assert_array_equal(la, lb)
    np.testing.assert_array_equal(ga, gb)
    K.cross_entropy_prob_par(x, t, 0.1, cw, lc)
    np.testing.assert_array_equal(la, lc)
    ref.cross_entropy_prob_grad_rows(x, t, 0.1, cw, 0.5, lw, gw)
    _close(la, lw, dtype, "prob loss")
    _close(ga, gw, dtype, "prob grad")
    xc = x.copy()  # grad_out is x: every row is read before it is written
    K.cross_entropy_prob_grad_par(xc, t, 0.1, cw, 0.5, lb, xc)
    np.testing.assert_array_equal(la, lb)
    np.testing.assert_array_equal(ga, xc)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1000, 130), (2 * K.LOG_ROWS + 3, 64), (3, 20000)])
def test_backward_blocks_same_bits(shape, dtype, rng):
    """The backward passes take a block of rows per call: the serial driver,
    the parallel one (tasks that end mid-array) and the output over either
    input give the same bits, and the reference's values."""
    rows = max(1, K.BACKWARD_TASK // shape[1])
    assert shape[0] % rows or rows == 1
    g = rng.standard_normal(shape).astype(dtype)
    p = np.empty_like(g)
    ref.softmax_rows(rng.standard_normal(shape).astype(dtype), p)
    lp = np.log(p)
    for name, saved in (("softmax_backward", p), ("log_softmax_backward", lp)):
        ser, par = getattr(K, f"{name}_ser"), getattr(K, f"{name}_par")
        a, b, want = (np.empty_like(g) for _ in range(3))
        ser(g, saved, a)
        par(g, saved, b)
        np.testing.assert_array_equal(a, b)
        getattr(ref, f"{name}_rows")(g, saved, want)
        _close(a, want, dtype, name)
        gc, sc = g.copy(), saved.copy()
        par(gc, saved, gc)  # out is grad
        par(g, sc, sc)  # out is the saved output
        np.testing.assert_array_equal(gc, a)
        np.testing.assert_array_equal(sc, a)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C", [7, 64, 1000])
def test_log_softmax_backward_exp_paths(C, dtype, rng):
    """log_softmax_backward takes the unclamped exp in float32 where a float32
    row's log-probabilities allow it, float32 lanes with the exp of arguments
    that are not positive where none is positive but some fall below that
    domain (a masked row's ``-inf``), the clamped exp in float64 elsewhere:
    rows of log-probabilities, and rows with ``-inf``, values below the
    unclamped domain, positive values (exp overflows in float32) and NaN."""
    x = (rng.standard_normal((8, C)) * 3).astype(dtype)
    lp = np.empty_like(x)
    ref.log_softmax_rows(x, lp)
    lp[1, 3] = -np.inf
    lp[2, 0] = -95.0  # below float32's nonpos_min: a subnormal exp
    lp[3, 1] = 0.5
    lp[4, 2] = 100.0  # exp is inf in float32, finite in float64
    lp[5, 4] = np.nan
    lp[6] = K.EXP64_NONPOS_MIN + 1.0 if dtype == np.float64 else -86.0
    g = rng.standard_normal((8, C)).astype(dtype)
    g[7, :] = 1.0 / C  # the sum is exact: no low part
    got, want = np.empty_like(g), np.empty_like(g)
    K.log_softmax_backward_ser(g, lp, got)
    ref.log_softmax_backward_rows(g, lp, want)
    _close(got, want, dtype, "log_softmax_backward")  # NaN where it is NaN
    assert np.isinf(got[4, 2]) == (dtype == np.float32)
    assert np.isnan(got).sum() == 1
    assert np.isnan(got[5, 4])


def _grouped_rows(rng, shape, dtype):
    """Logits for the grouped passes: special rows, and rows whose range ends
    inside and outside the unclamped exp's domain (both exp loops)."""
    x = _x(rng, shape, dtype)
    lim = K.EXP32_NONPOS_MIN if dtype == np.float32 else K.EXP64_NONPOS_MIN
    x[5] = np.linspace(0.0, 0.5 * lim, shape[1])
    x[6] = np.linspace(0.0, 1.5 * lim, shape[1])
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1003, 64), (700, 128), (301, 500)], ids=str)
def test_grouped_passes(shape, dtype, rng):
    """The grouped drivers (a pass over a group of rows per call; the backend
    picks them by row width) against the row-at-a-time ones: the same bits,
    serial, parallel and in place, a partial last group included, and the
    reference's values; ignored rows are 0; a smoothed row in a group sends the
    group's gradient back to a row at a time, while the loss alone keeps the
    grouped statistics and adds the smoothed rows' weighted sums."""
    x = _grouped_rows(rng, shape, dtype)
    n = shape[0]
    assert n % K._reread_rows(x)  # a partial last group
    a = _rows_modes_agree(
        x, K.softmax_grouped_ser, K.softmax_grouped_par, ref.softmax_rows
    )
    c_ = np.empty_like(x)
    K.softmax_par(x, c_)  # a row at a time
    np.testing.assert_array_equal(a, c_)
    a = _rows_modes_agree(
        x, K.log_softmax_grouped_ser, K.log_softmax_grouped_par, ref.log_softmax_rows
    )
    K.log_softmax_par(x, c_)
    np.testing.assert_array_equal(a, c_)
    la, lb, lc = np.empty(n, dtype), np.empty(n, dtype), np.empty(n, dtype)
    K.logsumexp_grouped_ser(x, la)
    K.logsumexp_grouped_par(x, lb)
    K.logsumexp_par(x, lc)  # a row at a time
    np.testing.assert_array_equal(la, lc)
    np.testing.assert_array_equal(lb, lc)
    y, alpha, beta, cw = _ce_args(rng, x)
    beta[:] = 0.0
    alpha[::9] = 0.0  # ignored rows in most groups
    grouped = K.cross_entropy_grad_grouped_ser
    la, ga = _ce_index_modes_agree(x, y, alpha, beta, cw, grouped)
    lp, gp = np.empty(n), np.empty_like(x)
    K.cross_entropy_grad_grouped_par(x, y, alpha, beta, cw, 0.5, lp, gp)
    np.testing.assert_array_equal(la, lp)
    np.testing.assert_array_equal(ga, gp)
    lc = np.empty(n)
    K.cross_entropy_grouped_ser(x, y, alpha, beta, cw, lc)  # the loss alone
    np.testing.assert_array_equal(la, lc)
    K.cross_entropy_grouped_par(x, y, alpha, beta, cw, lc)
    np.testing.assert_array_equal(la, lc)
    lb = np.empty(n)
    xc = x.copy()  # the gradient over the logits: the target column read first
    grouped(xc, y, alpha, beta, cw, 0.5, lb, xc)
    np.testing.assert_array_equal(la, lb)
    np.testing.assert_array_equal(ga, xc)
    # smoothed rows in some groups, then in all: the same bits either way
    beta[: n // 2 : 50] = 0.05
    la, ga = _ce_index_modes_agree(x, y, alpha, beta, cw, grouped)
    K.cross_entropy_grouped_ser(x, y, alpha, beta, cw, lc)
    np.testing.assert_array_equal(la, lc)
    K.cross_entropy_grouped_par(x, y, alpha, beta, cw, lc)
    np.testing.assert_array_equal(la, lc)
    tp = rng.uniform(size=x.shape)
    tp[:, ::3] = 0.0  # terms with a_c == 0, also where x_c is -inf
    tp = (tp / tp.sum(axis=1, keepdims=True)).astype(dtype)
    pa, pb = np.empty(n), np.empty(n)
    K.cross_entropy_prob_par(x, tp, 0.1, cw, pa)  # a row at a time
    K.cross_entropy_prob_grouped_ser(x, tp, 0.1, cw, pb)
    np.testing.assert_array_equal(pa, pb)
    K.cross_entropy_prob_grouped_par(x, tp, 0.1, cw, pb)
    np.testing.assert_array_equal(pa, pb)
    every = np.full(n, 0.05)
    every[::9] = 0.0  # and the ignored rows stay ignored
    rows, lg = np.empty(n), np.empty(n)
    K.cross_entropy_par(x, y, alpha, every, cw, rows)  # a row at a time
    K.cross_entropy_grouped_ser(x, y, alpha, every, cw, lg)
    np.testing.assert_array_equal(rows, lg)
    K.cross_entropy_grouped_par(x, y, alpha, every, cw, lg)
    np.testing.assert_array_equal(rows, lg)
    rl = np.empty(n)
    ref.cross_entropy_rows(x, y, alpha, every, cw, rl)
    np.testing.assert_allclose(lg, rl, rtol=1e-5 if dtype == np.float32 else 1e-12)
    K.cross_entropy_grad_grouped_par(x, y, alpha, beta, cw, 0.5, lp, gp)
    np.testing.assert_array_equal(la, lp)
    np.testing.assert_array_equal(ga, gp)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 2, 7, 8, 16, 25, 33, 63])
def test_short_prob_loss_grouped(c, dtype, rng):
    """The probability-target loss alone of short rows, which the backend runs
    grouped above ``NARROW_PROB_C`` classes: the bits of a row at a time,
    serial and parallel, with rows ending inside and outside the unclamped
    exp's domain, -inf logits under zero and nonzero targets, smoothing and
    class weights; and the reference's values."""
    n = 1003
    x = _grouped_rows(rng, (n, c), dtype)
    x[7::11] *= 40  # exps that span more than 2^29, or underflow, in finite rows
    assert n % K._reread_rows(x)  # a partial last group
    tp = rng.uniform(size=x.shape)
    tp[:, ::3] = 0.0  # terms with a_c == 0, also where x_c is -inf
    tp[9] = 1.0  # a row of all-nonzero targets
    tp = (tp / np.maximum(tp.sum(axis=1, keepdims=True), 1e-300)).astype(dtype)
    cw = rng.uniform(0.5, 2.0, c)
    for eps in (0.0, 0.1):
        want = np.empty(n)
        K.cross_entropy_prob_par(x, tp, eps, cw, want)  # a row at a time
        grouped = (K.cross_entropy_prob_grouped_ser, K.cross_entropy_prob_grouped_par)
        for driver in grouped:
            got = np.empty(n)
            driver(x, tp, eps, cw, got)
            np.testing.assert_array_equal(got.view(np.int64), want.view(np.int64))
        rl = np.empty(n)
        ref.cross_entropy_prob_rows(x, tp, eps, cw, rl)
        _close(want, rl, dtype, f"eps={eps}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 2, 5, 10, 16, K.NARROW_PROB_C])
def test_narrow_prob_tiles(c, dtype, rng):
    """The probability-target cross-entropy of rows to ``NARROW_PROB_C``
    classes, in transposed tiles: serial and threaded (a partial last tile),
    the loss alone and with its gradient (into another array and over the
    logits) give the same bits, NaNs' included (compared as bytes); and the
    reference's values, with rows of NaN, of only ``-inf``, ``+inf``, the
    format's largest, exps past the unclamped exp's range, ``-inf`` logits
    under zero and nonzero targets, a NaN target, smoothing and class
    weights."""
    R = K._tile_rows(c)
    n = 2 * R + R // 2 + 11
    x = _grouped_rows(rng, (n, c), dtype)
    x[7::13] *= 40.0
    x[8, :] = np.nan
    x[9, : (c + 1) // 2] = np.finfo(dtype).max
    x[10] = 100.0 + rng.standard_normal(c)
    x[R - 1 : R + 2] = -np.inf  # rows of only -inf across a tile's end
    x[R, 0] = np.nan
    t = rng.uniform(size=x.shape)
    if c > 2:
        t[:, ::3] = 0.0  # terms with a_c == 0, also where x_c is -inf
    t = (t / t.sum(axis=1, keepdims=True)).astype(dtype)
    t[11, 0] = np.nan
    cw = rng.uniform(0.5, 2.0, c)
    for eps in (0.0, 0.1):
        with np.errstate(all="ignore"):
            want_l, want_g = np.empty(n), np.empty_like(x)
            ref.cross_entropy_prob_grad_rows(x, t, eps, cw, 0.3, want_l, want_g)
            losses, grads = [], []
            for suffix in ("ser", "par"):
                lo = np.empty(n)
                getattr(K, f"cross_entropy_prob_short_{suffix}")(x, t, eps, cw, lo)
                losses.append(lo)
                grad = getattr(K, f"cross_entropy_prob_grad_short_{suffix}")
                la, ga = np.empty(n), np.empty_like(x)
                grad(x, t, eps, cw, 0.3, la, ga)
                lb, gb = np.empty(n), x.copy()
                grad(gb, t, eps, cw, 0.3, lb, gb)
                losses += [la, lb]
                grads += [ga, gb]
        for lo in losses[1:]:
            assert lo.tobytes() == losses[0].tobytes()
        for g in grads[1:]:
            assert g.tobytes() == grads[0].tobytes()
        _close(losses[0], want_l, dtype, f"loss eps={eps}")
        _close(grads[0], want_g, dtype, f"grad eps={eps}")


def test_narrow_prob_choice():
    """Probability-target rows to ``NARROW_PROB_C`` classes take the transposed
    tiles, the loss alone and with its gradient, serial or threaded by size,
    in both dtypes; wider ones do not."""
    picked = []

    def pick(drivers, x, serial_max=None):
        narrow = (_ops._CE_PROB_SHORT, _ops._CE_PROB_GRAD_SHORT)
        picked.append(drivers in narrow)
        return lambda *args: None

    cases = [(1, True), (_ops.NARROW_PROB_C, True), (_ops.NARROW_PROB_C + 1, False)]
    with mock.patch.object(_ops, "_pick", pick):
        for rows in (8, 65536):
            for c, _ in cases:
                for dtype in DTYPES:
                    x = np.broadcast_to(dtype(0), (rows, c))
                    _ops.cross_entropy_prob_rows(x, x, 0.0, None, None)
                    _ops.cross_entropy_prob_grad_rows(x, x, 0.0, None, 1.0, None, x)
    assert picked == [want for _ in range(2) for _, want in cases for _ in range(4)]
    assert [_ops._cep_mode16(c) for c, _ in cases] == [2, 2, 1]


def test_grouped_choice():
    """The grouped drivers take softmax rows of ``SHORT_C`` classes up to
    ``SOFTMAX_GROUP_ROW_BYTES`` (float32 ones from ``SOFTMAX_SHORT_GROUPED_C``
    classes), and in serial calls softmax and cross-entropy
    rows up to ``SMALL_GROUP_ROW_BYTES``, and so in calls of at most
    ``CE_GROUP_MAX_BYTES`` cross-entropy with its gradient and the float32 loss
    alone (class-index or, float32 only, probability targets), and the
    probability-target loss alone of rows wider than ``NARROW_PROB_C`` and
    shorter than ``SHORT_C`` (float32 in
    a call of any size, float64 to ``CE_GROUP_MAX_BYTES``);
    log_softmax rows up to ``LOG_SOFTMAX_GROUP_ROW_BYTES``, in serial calls up to
    ``LOG_SOFTMAX_SMALL_GROUP_ROW_BYTES``; logsumexp rows up to
    ``LOGSUMEXP_GROUP_ROW_BYTES``, in serial calls up to
    ``SMALL_GROUP_ROW_BYTES``; float32 log_softmax and logsumexp rows shorter
    than ``SHORT_C`` at multiples of ``LOG_SHORT_GROUPED_STEP`` from
    ``LOG_SHORT_GROUPED_C``, and float32 class-index cross-entropy rows from
    ``CE_SHORT_GROUPED_C`` classes: by shape and dtype alone."""
    picked = []

    def pick(drivers, x, serial_max=None):
        grouped = (
            _ops._SOFTMAX_GROUPED,
            _ops._CE_GRAD_GROUPED,
            _ops._CE_GROUPED,
            _ops._LOG_SOFTMAX_GROUPED,
            _ops._LOGSUMEXP_GROUPED,
            _ops._CE_PROB_GROUPED,
        )
        picked.append(drivers in grouped)
        return lambda *args: None

    small = _ops.SERIAL_MAX // 128  # rows of a serial call at 128 classes
    short_grouped = _ops.SOFTMAX_SHORT_GROUPED_C
    softmax_cases = [
        ((65536, short_grouped - 1), np.float32, False),
        ((small, short_grouped - 1), np.float32, False),
        ((65536, short_grouped), np.float32, True),
        ((small, short_grouped), np.float32, True),
        ((65536, _ops.SHORT_C - 1), np.float32, True),
        ((65536, _ops.SHORT_C - 1), np.float64, False),
        ((small, short_grouped), np.float64, False),
        ((65536, _ops.SHORT_C), np.float32, True),
        ((65536, 80), np.float32, True),
        ((65536, 81), np.float32, False),
        ((65536, 64), np.float64, False),
        ((small, 64), np.float64, True),
        ((small, 128), np.float32, True),
        ((small + 1, 128), np.float32, False),
        ((small, 129), np.float32, False),
        ((8192, 1000), np.float32, False),
    ]
    big = _ops.CE_GROUP_MAX_BYTES // (64 * 4)  # rows of 64 float32 classes
    short_ce = _ops.CE_SHORT_GROUPED_C
    short_ce_cases = [  # float32 short rows from CE_SHORT_GROUPED_C, any size
        ((65536, short_ce - 1), np.float32, False),
        ((small, short_ce - 1), np.float32, False),
        ((65536, short_ce), np.float32, True),
        ((small, short_ce), np.float32, True),
        ((65536, _ops.SHORT_C - 1), np.float32, True),
        ((small, _ops.SHORT_C - 1), np.float64, False),
    ]
    ce_grad_cases = short_ce_cases + [
        ((small, _ops.SHORT_C - 1), np.float32, True),
        ((small, _ops.SHORT_C), np.float32, True),
        ((small + 1, 128), np.float32, True),
        ((small, 64), np.float64, True),
        ((small, 65), np.float64, False),
        ((small, 129), np.float32, False),
        ((big, 64), np.float32, True),
        ((big + 1, 64), np.float32, False),
        ((big // 2, 128), np.float32, True),
        ((big, 128), np.float32, False),
    ]
    ce_loss_cases = short_ce_cases + [
        ((small, _ops.SHORT_C - 1), np.float32, True),
        ((small, _ops.SHORT_C), np.float32, True),
        ((small + 1, 128), np.float32, True),
        ((small, 64), np.float64, True),
        ((_ops.SERIAL_MAX // 64 + 1, 64), np.float64, False),  # float64: small only
        ((small, 65), np.float64, False),
        ((small, 129), np.float32, False),
        ((big, 64), np.float32, True),
        ((big + 1, 64), np.float32, False),
        ((big // 2, 128), np.float32, True),
        ((big, 128), np.float32, False),
    ]
    short64 = _ops.CE_GROUP_MAX_BYTES // (8 * (_ops.SHORT_C - 1))  # float64 rows
    narrow = _ops.NARROW_PROB_C  # to this width: the transposed tiles
    ce_prob_cases = [  # short rows: float32 at any size, float64 in cache
        ((small, 1), np.float32, False),
        ((small, narrow), np.float64, False),
        ((small, narrow + 1), np.float32, True),
        ((small, _ops.SHORT_C - 1), np.float32, True),
        ((4 * big, _ops.SHORT_C - 1), np.float32, True),
        ((small, narrow + 1), np.float64, True),
        ((short64, _ops.SHORT_C - 1), np.float64, True),
        ((short64 + 1, _ops.SHORT_C - 1), np.float64, False),
        ((small, _ops.SHORT_C), np.float32, True),
        ((small, 64), np.float64, False),  # float64 from SHORT_C: a row at a time
        ((small, 129), np.float32, False),
        ((big, 64), np.float32, True),
        ((big + 1, 64), np.float32, False),
        ((big // 2, 128), np.float32, True),
    ]
    log_grouped = _ops.LOG_SHORT_GROUPED_C
    step = _ops.LOG_SHORT_GROUPED_STEP
    short_log_cases = [  # float32 short rows at the multiples of step from 32
        ((65536, log_grouped - step), np.float32, False),
        ((65536, log_grouped - 1), np.float32, False),
        ((65536, log_grouped), np.float32, True),
        ((small, log_grouped), np.float32, True),
        ((65536, log_grouped + 1), np.float32, False),
        ((65536, log_grouped + step), np.float32, True),
        ((65536, _ops.SHORT_C - step), np.float32, True),
        ((65536, log_grouped), np.float64, False),
    ]
    log_softmax_cases = short_log_cases + [
        ((65536, _ops.SHORT_C - 1), np.float32, False),
        ((65536, _ops.SHORT_C), np.float32, True),
        ((65536, 64), np.float64, False),
        ((65536, 65), np.float32, False),
        ((small, 128), np.float32, True),
        ((_ops.SERIAL_MAX // 1024, 1024), np.float32, True),
        ((_ops.SERIAL_MAX // 1024 + 1, 1024), np.float32, False),
        ((_ops.SERIAL_MAX // 1024, 1024), np.float64, False),
        ((_ops.SERIAL_MAX // 512, 512), np.float64, True),
    ]
    logsumexp_cases = short_log_cases + [
        ((65536, _ops.SHORT_C - 1), np.float32, False),
        ((65536, _ops.SHORT_C), np.float32, True),
        ((65536, 65), np.float32, False),
        ((65536, 64), np.float64, False),
        ((small, 128), np.float32, True),
        ((small + 1, 128), np.float32, False),
        ((small, 64), np.float64, True),
        ((small, 129), np.float32, False),
    ]
    with mock.patch.object(_ops, "_pick", pick):
        for shape, dtype, _ in softmax_cases:
            x = np.broadcast_to(dtype(0), shape)
            _ops.softmax_rows(x, x)
        for shape, dtype, _ in ce_grad_cases:
            x = np.broadcast_to(dtype(0), shape)
            _ops.cross_entropy_grad_rows(x, None, None, None, None, 1.0, None, x)
        for shape, dtype, _ in ce_loss_cases:  # the loss alone
            x = np.broadcast_to(dtype(0), shape)
            _ops.cross_entropy_rows(x, None, None, None, None, None)
        for shape, dtype, _ in ce_prob_cases:
            x = np.broadcast_to(dtype(0), shape)
            _ops.cross_entropy_prob_rows(x, x, 0.0, None, None)
        for shape, dtype, _ in log_softmax_cases:
            x = np.broadcast_to(dtype(0), shape)
            _ops.log_softmax_rows(x, x)
        for shape, dtype, _ in logsumexp_cases:
            x = np.broadcast_to(dtype(0), shape)
            _ops.logsumexp_rows(x, x[:, 0])
    cases = (
        softmax_cases
        + ce_grad_cases
        + ce_loss_cases
        + ce_prob_cases
        + log_softmax_cases
        + logsumexp_cases
    )
    assert picked == [want for *_, want in cases]


def test_backward_serial_limits():
    """log_softmax_backward threads from half the size the other ops do
    (``LOG_SOFTMAX_BACKWARD_SERIAL_MAX``); softmax_backward from ``SERIAL_MAX``."""
    assert _ops.LOG_SOFTMAX_BACKWARD_SERIAL_MAX == _ops.SERIAL_MAX // 2
    picked = []

    def spy(mode):
        return lambda *args: picked.append(mode)

    drivers = (spy("ser"), None, spy("par"), spy("ser"), spy("par"))
    half = _ops.LOG_SOFTMAX_BACKWARD_SERIAL_MAX // 64
    full = _ops.SERIAL_MAX // 64
    with (
        mock.patch.object(_ops, "_LOG_SOFTMAX_BACKWARD", drivers),
        mock.patch.object(_ops, "_SOFTMAX_BACKWARD", drivers),
    ):
        for rows in (half, half + 1, full):
            x = np.broadcast_to(np.float32(0), (rows, 64))
            _ops.log_softmax_backward_rows(x, x, x)
        for rows in (full, full + 1):
            x = np.broadcast_to(np.float32(0), (rows, 64))
            _ops.softmax_backward_rows(x, x, x)
    assert picked == ["ser", "par", "par", "ser", "par"]


def test_grouped_serial_limits():
    """Grouped log_softmax threads above ``GROUPED_SERIAL_MAX`` elements, grouped
    softmax and logsumexp too when they have ``GROUPED_THREAD_ROWS`` rows, else
    from ``SERIAL_MAX``; the other modes keep ``SERIAL_MAX``."""
    assert _ops.GROUPED_SERIAL_MAX < _ops.SERIAL_MAX
    picked = []

    def spy(mode):
        return lambda *args: picked.append(mode)

    drivers = (spy("ser"), None, spy("par"), spy("ser"), spy("par"))
    lim = _ops.GROUPED_SERIAL_MAX // 64  # rows of 64 float32 classes
    full = _ops.SERIAL_MAX // 64
    assert lim < _ops.GROUPED_THREAD_ROWS <= full
    patched = [
        mock.patch.object(_ops, name, drivers)
        for name in ("_LOG_SOFTMAX_GROUPED", "_SOFTMAX_GROUPED", "_LOGSUMEXP_GROUPED")
    ]
    with patched[0], patched[1], patched[2]:
        for rows in (lim, lim + 1, full):
            x = np.broadcast_to(np.float32(0), (rows, 64))
            _ops.log_softmax_rows(x, x)
        for rows in (lim + 1, _ops.GROUPED_THREAD_ROWS - 1, _ops.GROUPED_THREAD_ROWS):
            x = np.broadcast_to(np.float32(0), (rows, 64))
            _ops.softmax_rows(x, x)
            _ops.logsumexp_rows(x, x[:, 0])
    assert picked == ["ser", "par", "par"] + ["ser"] * 4 + ["par"] * 2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape", [(9000, 10), (700, 63), (5, 1), (3000, 16), (3000, 17)], ids=str
)
def test_short_modes_same_bits(shape, dtype, rng):
    """The serial and parallel short-row drivers agree bit for bit (tiles of
    ``TILE // C`` rows: the parallel split must not change a row's result)."""
    x = _x(rng, shape, dtype)
    n = shape[0]
    for op in ("softmax", "log_softmax"):
        a, b = np.empty_like(x), np.empty_like(x)
        getattr(K, f"{op}_short_ser")(x, a)
        getattr(K, f"{op}_short_par")(x, b)
        np.testing.assert_array_equal(a, b, err_msg=op)
    a, b = np.empty(n, dtype), np.empty(n, dtype)
    K.logsumexp_short_ser(x, a)
    K.logsumexp_short_par(x, b)
    np.testing.assert_array_equal(a, b)
    y, alpha, beta, cw = _ce_args(rng, x)  # label smoothing on half of the rows
    la, lb, ga, gb = np.empty(n), np.empty(n), np.empty_like(x), np.empty_like(x)
    K.cross_entropy_grad_short_ser(x, y, alpha, beta, cw, 0.5, la, ga)
    K.cross_entropy_grad_short_par(x, y, alpha, beta, cw, 0.5, lb, gb)
    np.testing.assert_array_equal(la, lb)
    np.testing.assert_array_equal(ga, gb)
    K.cross_entropy_short_par(x, y, alpha, beta, cw, lb)
    np.testing.assert_array_equal(la, lb)  # the loss kernel: the same bits
    xc = x.copy()  # grad_out is x: what is read of a row is read before it is written
    K.cross_entropy_grad_short_par(xc, y, alpha, beta, cw, 0.5, lb, xc)
    np.testing.assert_array_equal(la, lb)
    np.testing.assert_array_equal(ga, xc)


@pytest.mark.parametrize("dtype", DTYPES)
def test_segment_range_by_order_key(dtype, rng):
    """``_seg_range`` (an integer maximum and minimum of order keys) is the
    exact ``(max, min)``: signs, zeros, subnormals, infinities, every length up
    to a few vectors."""
    tiny = np.finfo(dtype).smallest_subnormal
    pool = np.array(
        [-np.inf, -3e38, -1.0, -tiny, -0.0, 0.0, tiny, 1.0, 2.5, 3e38, np.inf], dtype
    )
    for n in [*range(1, 70), 1000]:
        for _ in range(3):
            xs = np.where(
                rng.random(n) < 0.5,
                rng.choice(pool, n),
                (rng.standard_normal(n) * 10 ** rng.uniform(-40, 30, n)).astype(dtype),
            ).astype(dtype)
            hi, lo = K._seg_range(xs, 0, n)
            assert hi == np.max(xs), (n, xs)
            assert lo == np.min(xs), (n, xs)
            # a zero's sign: -0.0 orders below +0.0 (either is exact for a max)
            if lo == 0.0:
                assert np.signbit(lo) == np.any((xs == 0) & np.signbit(xs))
    assert K._seg_range(np.full(9, -np.inf, dtype), 0, 9) == (-np.inf, -np.inf)
    assert K._seg_range(np.array([-5.0, -1.0, -3.0], dtype), 1, 3) == (-1.0, -3.0)
    # a NaN: NaN, or the extreme of the rest (its row is NaN either way)
    for nan in (np.nan, -np.nan):
        hi, lo = K._seg_range(np.array([1.0, nan, 7.0, -2.0], dtype), 0, 4)
        assert np.isnan(hi) or hi == 7.0
        assert np.isnan(lo) or lo == -2.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_domain_from_the_minimum(dtype, rng):
    """``_range_nonpos`` decides from a segment's minimum what ``_seg_nonpos``
    decides from every element, for segments whose range ends on both sides of
    (and exactly at) the unclamped exp's domain, with and without ``-inf``."""
    lim = K.EXP32_NONPOS_MIN if dtype == np.float32 else K.EXP64_NONPOS_MIN
    seen = set()
    for _ in range(400):
        n = int(rng.integers(1, 40))
        m = dtype(rng.uniform(-1e3, 1e3))
        span = rng.choice([rng.uniform(0, -2 * lim), -lim, -lim * (1 + 1e-7)])
        xs = (m - rng.uniform(0, 1, n) * span).astype(dtype)
        xs[rng.integers(n)] = m
        if rng.random() < 0.1:
            xs[rng.integers(n)] = -np.inf
        hi, lo = K._seg_range(xs, 0, n)
        want = K._seg_nonpos(xs, hi)
        assert K._range_nonpos(lo, hi, xs) == want, (xs, hi)
        seen.add(want)
    assert seen == {True, False}
    # the edge itself, one ULP either side
    m = 3.0
    edge = dtype(m + lim)
    for v, want in [
        (edge, True),
        (np.nextafter(edge, dtype(np.inf)), True),
        (np.nextafter(edge, dtype(-np.inf)), False),
    ]:
        xs = np.array([m, v], dtype)
        assert K._seg_nonpos(xs, m) == want
        assert K._range_nonpos(K._seg_range(xs, 0, 2)[1], m, xs) == want


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_domain_choice(dtype):
    """``_seg_nonpos`` admits a segment to the unclamped exp exactly when every
    ``x - max`` (as the exp sees it) is NaN or at least ``nonpos_min``."""
    lim = K.EXP32_NONPOS_MIN if dtype == np.float32 else K.EXP64_NONPOS_MIN
    m = 3.0

    def ok(*vals):
        return K._seg_nonpos(np.array([m, *vals], dtype), m)

    assert ok(m + lim)
    assert ok(m - 1.0, np.nan)  # NaN passes: the unclamped exp keeps it NaN
    assert not ok(np.nextafter(dtype(m + lim), dtype(-np.inf)))
    assert not ok(-np.inf)  # the clamped exp gives 0 there
    assert not ok(m - 1e4)
    assert not ok(np.nan, -np.inf)
    # a segment of only -inf (its "max" replaced by 0 by the callers)
    assert not K._seg_nonpos(np.full(4, -np.inf, dtype), 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [100, 40000], ids=str)
def test_rows_on_both_sides_of_the_exp_domain(dtype, c, rng):
    """Rows whose range ends just inside, at, and just outside the unclamped
    exp's domain, with -inf entries, and rows wider than it: every op against
    the reference (a wrong choice gives zeros, negatives or infinities)."""
    lim = K.EXP32_NONPOS_MIN if dtype == np.float32 else K.EXP64_NONPOS_MIN
    spans = [0.5 * lim, lim, 1.001 * lim, 1.5 * lim, 20 * lim]
    x = np.empty((2 * len(spans) + 1, c), dtype)
    for i, span in enumerate(spans):
        x[i] = np.linspace(0.0, span, c) + 2.0
        x[len(spans) + i] = rng.permutation(x[i])
    x[-1] = x[0]
    x[-1, ::7] = -np.inf
    for op in ("softmax_rows", "log_softmax_rows"):
        got, want = np.empty_like(x), np.empty_like(x)
        getattr(nb, op)(x, got)
        getattr(ref, op)(x, want)
        _close(got, want, dtype, op)
    got, want = np.empty(x.shape[0], dtype), np.empty(x.shape[0], dtype)
    nb.logsumexp_rows(x, got)
    ref.logsumexp_rows(x, want)
    _close(got, want, dtype, "logsumexp")
    y, alpha, beta, cw = _ce_args(rng, x)
    for b in (beta, np.zeros_like(beta)):
        lg, lw = np.empty(x.shape[0]), np.empty(x.shape[0])
        gg, gw = np.empty_like(x), np.empty_like(x)
        nb.cross_entropy_grad_rows(x, y, alpha, b, cw, 0.5, lg, gg)
        ref.cross_entropy_grad_rows(x, y, alpha, b, cw, 0.5, lw, gw)
        _close(lg, lw, dtype, "loss")
        _close(gg, gw, dtype, "grad")


def _picked(n, c, short=False, split=True):
    """The driver ``_ops._pick`` picks for an ``(n, c)`` input of an op with (or
    without) short-row and split drivers (as :func:`_ops._drivers` lays them
    out: the short pair the row pair where the op has none)."""
    names = ["ser", "split" if split else None, "par"]
    names += ["short_ser", "short_par"] if short else ["ser", "par"]
    x = np.broadcast_to(np.float32(0), (n, c))  # the shape, no memory
    return _ops._pick(tuple(names), x)


def test_mode_choice_depends_on_shape_only():
    assert _picked(32, 10) == "ser"
    assert _picked(4, 262144) == "split"
    assert _picked(64, 262144) == "par"
    assert _picked(8192, 1000) == "par"
    assert _picked(32, 10, short=True) == "short_ser"
    assert _picked(65536, 10, short=True) == "short_par"
    assert _picked(65536, _ops.SHORT_C, short=True) == "par"
    assert _picked(8192, 1000, short=True) == "par"
    # ops without a split or short-row driver take the row-parallel one
    assert _picked(4, 262144, split=False) == "par"
    assert _picked(65536, 10) == "par"
    assert _picked(1, 64, short=True) == "ser"


@pytest.mark.parametrize("dtype", DTYPES)
def test_read_only_input(dtype, rng):
    """A read-only x, as the core hands it over (a writeable view of its memory,
    no copy, for an array this large): the same results, and x untouched (the
    in-place loops write through ``out`` only)."""
    x = _x(rng, (5, 7000), dtype)
    keep = x.copy()
    x.setflags(write=False)
    x = _writable(x)
    assert x.flags.writeable
    assert not x.base.array.flags.writeable
    for op in ("softmax_rows", "log_softmax_rows"):
        got, want = np.empty_like(x), np.empty_like(x)
        getattr(nb, op)(x, got)
        getattr(ref, op)(x, want)
        _close(got, want, dtype, op)
    y, alpha, beta, cw = _ce_args(rng, x)
    loss, grad = np.empty(5), np.empty_like(x)
    nb.cross_entropy_grad_rows(x, y, alpha, beta, cw, 1.0, loss, grad)
    assert x.tobytes() == keep.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_short_row_sum_is_compensated(dtype, rng):
    """The tile row sum against the exactly rounded sum (``math.fsum``): float64
    the same bits (its split parts are summed exactly, then the rests, each
    below ``2**(k - 53)``, with an error near ``2**-90`` relative, then one
    rounding: only a sum that close to a rounding boundary could differ; a plain
    sum loses up to C / 2 ULPs, 1-3 on these rows), float32 summed in float64."""
    from numba import njit

    @njit
    def row_sums(e):
        out = np.empty(e.shape[0])
        err = np.empty(e.shape[0])
        for i in range(e.shape[0]):
            out[i], err[i] = K.tile_row_sum(e, i, True)
        return out, err

    for c in (1, 2, 3, 4, 5, 7, 8, 13, 31, 63):
        # exp-like values: one 1, the rest spread over many binades, so the
        # partial sums round at every step
        e = np.exp(-rng.uniform(0, 30, (200, c))).astype(dtype)
        e[:, rng.integers(0, c)] = 1.0
        got, err = row_sums(e)
        want = np.array([math.fsum(map(float, r)) for r in e])
        if dtype == np.float64:
            np.testing.assert_array_equal(got, want, err_msg=f"C={c}")
            _assert_sum_errors(e, got, err, f"C={c}")
        else:
            _assert_near_one_f32(e, got, err, f"C={c}")
            # plain float64 adds of exact terms: at most (c - 1) roundings
            np.testing.assert_allclose(got, want, rtol=max(1, c - 1) * 2.0**-53)


@pytest.mark.parametrize("c", [K.DOT_CHUNK, K.DOT_CHUNK + 1, 16384, 100_000])
def test_float64_dot_product_bounded_at_any_width(c, rng):
    """softmax_backward's float64 dot product on rows with one dominant class
    (its probability near 1, the rest near 1e-17, as in the kit's "dominant"
    rows): within 4 ULPs of ``sum |g p|`` of the exact sum of the products at
    any width. Summed in one vector loop, the dominant lane's other terms were
    each rounded against its product: about 40 ULPs at 100000 classes."""
    x = rng.standard_normal((4, c))
    x[:, 0] += 40.0
    p = np.exp(x - x.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    g = rng.standard_normal((4, c))
    for r in range(4):
        want = math.fsum(float(v) for v in g[r].astype(np.longdouble) * p[r])
        got = K._dot_row(g[r], p[r])
        ulp = np.spacing(np.abs(g[r] * p[r]).sum())
        assert abs(got - want) <= 4 * ulp, (r, got, want, (got - want) / ulp)


def test_split_sum_any_width(rng):
    """The float64 split sum beyond the short rows' widths (its bias grows with
    C, the high parts' spacing with it): exactly rounded sums of exp values at
    64 to 5000 terms, subnormal terms among them; a NaN gives NaN."""
    for c in (64, 65, 127, 128, 129, 1000, 5000):
        e = np.exp(-rng.uniform(0, 40, (50, c)))
        e[:, 0] = 1.0
        e[1, 1:] = 1.0  # the largest sum, c
        e[2, 1:] = 5e-324  # subnormal rests
        b = K._split_bias(c)
        assert c < b / 1.5 * 2, c
        assert b / 1.5 >= 4, c
        parts = [K._exps_sum(r, True) for r in e]
        got = np.array([s for s, _ in parts])
        want = np.array([math.fsum(r) for r in e])
        np.testing.assert_array_equal(got, want, err_msg=f"C={c}")
        _assert_sum_errors(e, got, np.array([er for _, er in parts]), f"C={c}")
    e[3, 7] = np.nan
    s, er = K._exps_sum(e[3], True)
    assert np.isnan(s)
    assert er == 0.0


def _assert_near_one_f32(e, S, E, what):
    """float32 exps (one exactly 1 a row): where the exact sum is below ``1 + n
    NEAR_ONE_F32`` (``n`` terms; a margin of 2 ULPs of 1 for the plain sum's
    rounding), the kernels sum the rest apart and ``S + E`` is the exact sum to
    ``n 2**-53`` of the rest (plain float64 adds of the rest; the split of ``1 +
    rest`` exact); where it is above, ``E`` is 0 and ``S`` is the plain sum, whose
    error is below ``n 2**-52``, 2**-26 of the rest (a quarter of a float32 ULP).
    Rows whose rest is below 2**-29 need the second sum: ``1 + rest`` is not a
    float64."""
    n = e.shape[1]
    edge = n * Fraction(K.NEAR_ONE_F32)
    for r in range(e.shape[0]):
        exact = sum(map(Fraction, e[r].astype(np.float64).tolist()))
        rest = exact - 1
        got = Fraction(S[r]) + Fraction(E[r])
        if rest < edge - Fraction(2) ** -51:
            assert abs(got - exact) <= n * Fraction(2) ** -53 * rest, (what, r)
        elif rest > edge + Fraction(2) ** -51:
            assert E[r] == 0.0, (what, r)
            assert abs(got - exact) <= Fraction(2) ** -26 * rest, (what, r)


def _assert_sum_errors(e, S, E, what):
    """``E`` is each row sum's rounding error, ``sum(e) - S`` computed exactly:
    to 2**-80 of the sum (the split sum's rests add with an error near 2**-90;
    an ULP of the sum is 2**-52 of it), for ``log(S) + E / S``."""
    for r in range(e.shape[0]):
        exact = float(sum(map(Fraction, e[r].tolist())) - Fraction(S[r]))
        assert abs(E[r] - exact) <= 2.0**-80 * S[r], (what, r, E[r], exact)


@pytest.mark.parametrize("c", [64, 65, 1000, K.BLOCK])
def test_float64_row_sums_are_exactly_rounded(c, rng):
    """The row kernels' float64 sums of exps (a block's, with and without the
    unclamped exp; a group's, stored or not) are ``math.fsum`` of the same exps
    (stored by the kernels' own exp loops): split into parts that add up
    exactly. A plain vector sum lost 1-3 ULPs of the sum on such rows."""
    n = 6
    x = rng.standard_normal((n, c)) * 4
    x[1, 3] = -800.0  # outside the unclamped domain: the clamped exp loop
    M, lo = x.max(axis=1), x.min(axis=1)
    e = np.empty_like(x)
    K._grp_exp_store(x, e, 0, n, M, lo, False)
    want = np.array([math.fsum(r) for r in e])
    for r in range(n):
        nonpos = bool(K._range_nonpos(lo[r], M[r], x[r]))
        assert nonpos == (r != 1)
        got, err = K._seg_sumexp(x[r], 0, c, M[r], nonpos)
        assert got == want[r], (r, got, want[r])
        _assert_sum_errors(e[r : r + 1], [got], [err], "block sum")
        assert K._exps_sum(e[r], True) == (got, err), r
    S = np.empty(n)
    Er = np.empty(n)
    K._grp_sum(e, 0, n, S, Er, True)
    np.testing.assert_array_equal(S, want)
    _assert_sum_errors(e, S, Er, "group sums")
    K._grp_sumexp(x, 0, n, M, lo, S)  # the errors into lo
    np.testing.assert_array_equal(S, want)
    np.testing.assert_array_equal(lo, Er)


def _softmax_ulps(got, x):
    """The largest error of a float64 softmax in ULPs of ``p max(1, |log p|)``
    (the kit's metric), against a long double reference."""
    xl = x.astype(np.longdouble)
    e = np.exp(xl - xl.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    scale = (p * np.maximum(1, np.abs(np.log(p)))).astype(np.float64)
    return float(np.max(np.abs(got - p.astype(np.float64)) / np.spacing(scale)))


@pytest.mark.skipif(
    np.finfo(np.longdouble).nmant < 63, reason="no extended long double here"
)
@pytest.mark.parametrize("c", [64, 1000, 20000])
def test_float64_softmax_error_bound(c, rng):
    """float64 softmax within 3 ULPs (exp 0.88, its argument's rounding 0.5, the
    exactly rounded sum, the reciprocal and the scaling 0.5 each), at one block
    and past it (20000 classes: the blocks' sums rescaled). With plain vector
    sums the worst was 4, 5 and 7 ULPs on these rows, where SciPy's is 6, 7
    and 2."""
    x = rng.standard_normal((max(8, 400_000 // c), c)) * 4
    got = np.empty_like(x)
    nb.softmax_rows(x, got)
    assert _softmax_ulps(got, x) <= 3.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 2, 15, 16, 17, 31, 32, 40, 47, 48, 63])
def test_transposed_tiles_both_sides_of_the_threshold(c, dtype, rng):
    """Short rows taken transposed (log_softmax and logsumexp, softmax up to
    NARROW_C classes) and row-major (float64 softmax above it; float32 softmax
    rows from SOFTMAX_SHORT_GROUPED_C classes are grouped, and float32
    log_softmax and logsumexp rows at 32, 40, 48 and 56): the reference's
    values, special rows isolated, out aliasing x, and 1000 rows = a partial
    last tile."""
    assert c < _ops.SHORT_C
    x = _x(rng, (1000, c), dtype)
    for op in ("softmax_rows", "log_softmax_rows", "logsumexp_rows"):
        shape_out = (1000,) if op == "logsumexp_rows" else x.shape
        got, want = np.empty(shape_out, dtype), np.empty(shape_out, dtype)
        getattr(nb, op)(x, got)
        getattr(ref, op)(x, want)
        _close(got, want, dtype, f"{op} C={c}")
        if op != "logsumexp_rows":
            xc = x.copy()
            getattr(nb, op)(xc, xc)
            np.testing.assert_array_equal(xc, got, err_msg=f"{op} C={c} in place")


@pytest.mark.parametrize("dtype", DTYPES)
def test_transposed_column_sum_is_compensated(dtype, rng):
    """The transposed tiles' column sums against the exactly rounded sum, as the
    row-major tiles' row sums (test_short_row_sum_is_compensated)."""
    from numba import njit

    @njit
    def col_sums(t):
        k = t.shape[1]
        s, c = np.empty(k), np.empty(k)
        K.narrow_sums(t, s, c, k, True)
        return s, c

    for c in (1, 2, 3, 5, 13, 31, 63):
        e = np.exp(-rng.uniform(0, 30, (200, c))).astype(dtype)
        e[:, rng.integers(0, c)] = 1.0
        got, err = col_sums(np.ascontiguousarray(e.T))
        want = np.array([math.fsum(map(float, r)) for r in e])
        if dtype == np.float64:
            assert np.all(np.abs(got - want) <= np.spacing(want)), c
            _assert_sum_errors(e, got, err, f"C={c}")
        else:
            _assert_near_one_f32(e, got, err, f"C={c}")
            np.testing.assert_allclose(got, want, rtol=max(1, c - 1) * 2.0**-53)


def _exact_softmax_backward(g, p):
    """``p (g - <g, p>)`` per row with the dot product summed exactly (fsum of
    the float32 products, each exact in float64), then the rest in float64."""
    g64, p64 = g.astype(float), p.astype(float)
    d = np.array([math.fsum(a * b) for a, b in zip(g64, p64, strict=True)])
    return p64 * (g64 - d[:, None]), d


@pytest.mark.parametrize("c", [31, 32, 47, K.SHORT_C - 1, 257])
def test_softmax_backward_float32_lanes_error_bound(c, rng):
    """float32 rows written in float32 lanes stay within the docstring's bound:
    2.5 ULP of each result (two roundings of relative 2^-24, each under an ULP
    of the result, and the last, half an ULP), plus what the dot product's
    float64 rounding and its split into two float32 parts carry
    (``2^-47 |d| p``); rows with uniform and peaked probabilities, gradients
    of mixed scale; short rows with and without a scalar tail in the dot
    product's vector loop."""
    n = 96
    x = (rng.standard_normal((n, c)) * rng.uniform(0.1, 8, (n, 1))).astype(np.float32)
    p = np.empty_like(x)
    ref.softmax_rows(x, p)
    scale = 10.0 ** rng.integers(-3, 4, (n, 1))
    g = (rng.standard_normal((n, c)) * scale).astype(np.float32)
    got = np.empty_like(g)
    K.softmax_backward_ser(g, p, got)
    want, d = _exact_softmax_backward(g, p)
    ulp = np.spacing(np.abs(want).astype(np.float32)).astype(float)
    dots = np.abs(g * p.astype(float)).sum(1, keepdims=True)
    slack = np.abs(p) * (2.0**-47 * np.abs(d)[:, None] + c * 2.0**-52 * dots)
    assert (np.abs(got - want) <= 2.5 * ulp + slack).all()


def test_softmax_backward_float32_cancellation_is_exact():
    """Where ``g_j`` equals the dot product, ``g - dh`` cancels exactly in
    float32 and the result is the float64 write's (0 for a constant gradient,
    which any other probabilities leave at ``<g, p> = g``)."""
    p = np.array([[0.125, 0.375, 0.5], [0.25, 0.25, 0.5]], np.float32)
    g = np.array([[3.0, 3.0, 3.0], [1.0, 4.0, 2.5]], np.float32)  # row 1: <g, p> = 2.5
    got = np.empty_like(g)
    K.softmax_backward_ser(g, p, got)
    want, _ = _exact_softmax_backward(g, p)
    np.testing.assert_array_equal(got, want.astype(np.float32))
    assert got[0].tolist() == [0.0, 0.0, 0.0]
    assert got[1, 2] == 0.0


@pytest.mark.parametrize("width", [4, 40])
@pytest.mark.parametrize(
    "dot",
    [
        2.0**101,
        float(np.nextafter(np.float32(2.0**102), np.float32(0))),
        2.0**102,
        2.0**110,
    ],
    ids=["below", "just-below", "at", "above"],
)
@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["pos", "neg"])
def test_softmax_backward_float32_lanes_limit(dot, sign, width):
    """float32 rows whose dot product is below 2^102 in magnitude run in float32
    lanes whatever their gradient: with an element at float32's largest and
    the dot product of the other sign, ``g - dh`` still rounds to a finite
    float32 and the result is within the float32 lanes' bound of the exact
    one. At 2^102 and above, the row runs in float64: at 2^110,
    ``g - <g, p>`` is beyond float32's largest while the result is not, and it
    comes back finite. The large elements sit last in the wider rows (the dot
    product's scalar tail)."""
    top = np.finfo(np.float32).max
    g = np.zeros((2, width), np.float32)
    p = np.zeros((2, width), np.float32)
    # <g, p> = 0.5 * x: the top elements cancel (0.25 top - 0.25 top)
    x = np.float32(-2.0 * sign * dot)
    g[0, -4:] = [top, -top, x, 1.0]
    g[1, -4:] = [-top, top, -x, 1.0]
    p[:, -4:] = [0.25, 0.25, 0.5, 0.0]
    got = np.empty_like(g)
    K.softmax_backward_ser(g, p, got)
    want, d = _exact_softmax_backward(g, p)
    assert np.abs(d).tolist() == [dot, dot]
    assert np.isfinite(want).all()
    assert np.isfinite(got).all()
    ulp = np.spacing(np.abs(want).astype(np.float32)).astype(float)
    assert (np.abs(got - want) <= 2.5 * ulp).all()


def test_backward_huge_gradients():
    """float32 gradients near float32's largest value: where the exact result
    is finite, so is the kernels' (float32 rows run in float32 lanes only where
    no intermediate can overflow; float64 has no wider type to fall back on, in
    the reference either)."""
    dtype = np.float32
    big = float(np.finfo(dtype).max) * 0.9
    g = np.array([[big, -big], [big, big], [big, -big / 2]], dtype)
    p = np.array([[0.25, 0.75], [0.25, 0.75], [0.5, 0.5]], dtype)
    lp = np.log(p)
    for name, saved in (("softmax_backward", p), ("log_softmax_backward", lp)):
        got, want = np.empty_like(g), np.empty_like(g)
        getattr(K, f"{name}_ser")(g, saved, got)
        getattr(ref, f"{name}_rows")(g, saved, want)
        assert np.isfinite(want).all(), name  # the cases are finite
        _close(got, want, dtype, name)


@pytest.mark.parametrize(
    "shape",
    [(512, 64), (96, 257), (64, 10), (300, 40), (40, 1000), (3, 40000)],
    ids=str,
)
def test_log_softmax_float32_is_rounded_once(shape, rng):
    """float32 log_softmax subtracts in float64, ``(x - M) - log S`` with the
    difference exact, and rounds once: within half an ULP of each result in
    every driver (grouped, a row at a time, the short-row tiles, split over
    blocks), beyond what ``log S`` itself carries: its float64 sum and log
    (``(C + 4) 2^-53 + 2^-52 log S``) and its float32 exps (about an ULP
    each, and half an ULP of ``x - M`` in their arguments:
    ``2^-22 sum p_j (1 + |x_j - M|)`` over the other elements). Written in
    float32 lanes instead (``((x - M) - hi) - lo``), the worst was 1.2 ULP;
    that was measured and not taken (docs/benchmarks.md). Rows of logits of
    mixed scale, every third offset by 1e4, every fourth with one logit 25
    above the rest (``log p`` of the maximum about -1e-9)."""
    n, c = shape
    x = rng.standard_normal((n, c)) * rng.uniform(0.05, 30, (n, 1))
    x[::3] += 1e4
    x[1::4, 0] += 25
    x = x.astype(np.float32)
    got = np.empty_like(x)
    nb.log_softmax_rows(x, got)
    xl = x.astype(np.longdouble)
    rows = np.arange(n)
    top = np.argmax(x, axis=1)
    m = xl[rows, top][:, None]
    e = np.exp(xl - m)
    ls = np.log(e.sum(axis=1, keepdims=True))
    want = (xl - m) - ls
    p = e / e.sum(axis=1, keepdims=True)
    p[rows, top] = 0
    stats = 2.0**-22 * (p * (1 + np.abs(xl - m))).sum(axis=1, keepdims=True)
    slack = (c + 4) * 2.0**-53 + 2.0**-52 * ls + stats
    ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.longdouble)
    err = np.abs(got.astype(np.longdouble) - want)
    assert (err <= 0.5 * ulp + slack).all(), float((err / ulp).max())
