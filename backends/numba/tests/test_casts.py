"""The ``cast`` hook: float32 to and from float16 and bfloat16 on the bits, against
NumPy's float16 cast and ml_dtypes' bfloat16 cast (the references the core's
results are defined by), over every 16-bit pattern and every float32 rounding
case, on one thread and threaded."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from softcore._validate import _writable
from softcore_numba import _casts, _ops

ml_dtypes = pytest.importorskip(
    "ml_dtypes", reason="ml_dtypes (bfloat16's NumPy dtype) is not installed"
)
BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
LOW = [pytest.param(F16, id="float16"), pytest.param(BF16, id="bfloat16")]
# sizes that take the serial and the threaded drivers (and a ragged last chunk)
SIZES = [_casts.SERIAL_MAX, _casts.SERIAL_MAX + 3 * _casts.CHUNK + 5]


def _bits(a):
    return a.view(np.uint16 if a.itemsize == 2 else np.uint32)


def _snan(low, sign=1):
    """A signalling NaN of ``low`` (quiet bit clear, a payload the widening
    cast keeps): the forward blocks widen and round quietly (one instruction
    each with F16C), and must give the cast path's bits all the same."""
    bits = 0x7D01 if low == F16 else 0x7F81
    return np.array([bits | (0x8000 if sign < 0 else 0)], np.uint16).view(low)[0]


def _tiled(a, n):
    """``a`` repeated to ``n`` elements at least."""
    return np.resize(a, max(n, a.size))


def _float32_cases():
    """float32 patterns around every rounding boundary of both formats: every
    value of the top 19 bits with the low 13 bits (float16's dropped bits) at
    ties, just off them, zero and full; every top 16 bits with the low 16
    (bfloat16's) likewise; and random patterns. Subnormals, the overflow
    boundary, infinities and NaNs of both signs and of every payload top are
    among them."""
    top19 = np.arange(1 << 19, dtype=np.uint32) << 13
    low13 = np.array([0, 1, 0x7FF, 0xFFF, 0x1000, 0x1001, 0x17FF, 0x1FFF], np.uint32)
    top16 = np.arange(1 << 16, dtype=np.uint32) << 16
    low16 = np.array([0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF], np.uint32)
    rnd = np.random.default_rng(5).integers(0, 1 << 32, 1 << 20, dtype=np.uint64)
    u = np.concatenate(
        [
            (top19[:, None] | low13).ravel(),
            (top16[:, None] | low16).ravel(),
            rnd.astype(np.uint32),
        ]
    )
    return u.view(np.float32)


CASES = _float32_cases()


@pytest.mark.parametrize("low", LOW)
@pytest.mark.parametrize("n", SIZES)
def test_widening_every_pattern_matches_the_reference(low, n):
    """Every 16-bit pattern (NaN payloads and signs included) widens to the
    float32 bits NumPy's (float16) or ml_dtypes' (bfloat16) cast gives."""
    h = _tiled(np.arange(1 << 16, dtype=np.uint16), n).view(low)
    with np.errstate(invalid="ignore"):  # NumPy's cast flags signalling NaNs
        want = h.astype(np.float32)
    got = np.full(h.shape, np.nan, np.float32)
    assert _ops.cast(h, got)
    bad = np.flatnonzero(_bits(got) != _bits(want))
    assert bad.size == 0, [
        (hex(_bits(h)[i]), hex(_bits(got)[i]), hex(_bits(want)[i])) for i in bad[:5]
    ]


@pytest.mark.parametrize("low", LOW)
@pytest.mark.parametrize("threaded", [False, True])
def test_rounding_every_boundary_matches_the_reference(low, threaded):
    """float32 values at and around every rounding boundary round to the 16-bit
    patterns of NumPy's (float16) or ml_dtypes' (bfloat16) cast: ties to even,
    subnormals, overflow to infinity, NaNs of their sign (and, for float16,
    payload top)."""
    x = CASES if threaded else CASES[: _casts.SERIAL_MAX]
    with np.errstate(all="ignore"):
        want = x.astype(low)
    got = np.zeros(x.shape, low)
    assert _ops.cast(x, got)
    bad = np.flatnonzero(_bits(got) != _bits(want))
    assert bad.size == 0, [
        (hex(_bits(x)[i]), hex(_bits(got)[i]), hex(_bits(want)[i])) for i in bad[:5]
    ]


def test_known_values():
    """A few patterns worked by hand, independent of either library."""
    x = np.array(
        [1.0, -2.5, 65504.0, 65519.99, 65520.0, 2.0**-24, 2.0**-25, 3 * 2.0**-26],
        np.float32,
    )
    h = np.empty(x.size, F16)
    assert _ops.cast(x, h)
    want = [0x3C00, 0xC100, 0x7BFF, 0x7BFF, 0x7C00, 0x0001, 0x0000, 0x0001]
    assert _bits(h).tolist() == want  # 2**-25 is a tie: to even, zero
    b = np.empty(x.size, BF16)
    assert _ops.cast(np.array([1.0, 1.00390625, 1.01171875, -0.0], np.float32), b[:4])
    # 1 + 2**-8 is a tie (to even: 1.0); 1 + 3 * 2**-8 a tie (to even: 1 + 2**-6)
    assert _bits(b[:4]).tolist() == [0x3F80, 0x3F80, 0x3F82, 0x8000]


@pytest.mark.parametrize("low", LOW)
def test_shapes_and_read_only_inputs(rng, low):
    """Any C-contiguous shape, both ways; a read-only input (the caller's), as
    the core hands it over: a writeable view of its memory."""
    x = rng.standard_normal((7, 300, 20)).astype(np.float32)
    x.setflags(write=False)
    lo = np.empty(x.shape, low)
    assert _ops.cast(_writable(x), lo)
    assert np.array_equal(_bits(lo), _bits(x.astype(low)))
    lo.setflags(write=False)
    back = np.empty(x.shape, np.float32)
    assert _ops.cast(_writable(lo), back)
    assert np.array_equal(back, lo.astype(np.float32))


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (np.ones(4096, np.float64), np.empty(4096, np.float16)),
        (np.ones(4096, np.float32), np.empty(4096, np.float64)),
        (np.ones(4096, np.int16), np.empty(4096, np.float32)),
        (np.ones(4096, np.float32), np.empty(4096, np.uint16)),
        (np.ones(4096, np.float32), np.empty(4096, np.float32)),
        (np.ones(4096, np.float32), np.empty(4095, np.float16)),
        (np.ones((64, 128), np.float32).T, np.empty((128, 64), np.float16)),
        (np.ones(4096, np.float32), np.empty(8192, np.float16)[::2]),
    ],
    ids=[
        "float64-in",
        "float64-out",
        "int16",
        "uint16",
        "same",
        "sizes",
        "strided-in",
        "strided-out",
    ],
)
def test_declines_what_it_does_not_convert(src, dst):
    """Any other pair of dtypes, other shapes, or a strided array: False, and
    nothing written (the core then casts with NumPy)."""
    before = dst.copy()
    assert _ops.cast(src, dst) is False
    assert dst.tobytes() == before.tobytes()


# (rows, classes) taking each float32 mode, serial and threaded: short rows,
# grouped, a row at a time, rows wider than a block (one per task); the last
# three grouped in 16 bits where the float32 call of their shape, the
# reference, goes a row at a time
ROW_SHAPES = [(5000, 8), (100, 64), (600, 64), (2000, 100), (40, 1000), (300, 1000)]
ROW_SHAPES += [(20, 40000), (1, 7), (300, 256), (200, 512), (3000, 128)]


@pytest.mark.parametrize("low", LOW)
@pytest.mark.parametrize("kernel", ["softmax_rows", "log_softmax_rows"])
@pytest.mark.parametrize(("n", "c"), ROW_SHAPES)
def test_low_precision_rows_are_the_float32_rows_rounded(rng, low, kernel, n, c):
    """16-bit rows converted a block at a time give bitwise the float32 kernel's
    results rounded by NumPy's (ml_dtypes') cast, into another array, in place,
    and from a read-only input."""
    x = (rng.standard_normal((n, c)) * 3).astype(np.float32).astype(low)
    y32 = np.empty((n, c), np.float32)
    getattr(_ops, kernel)(x.astype(np.float32), y32)
    want = y32.astype(low)
    out = np.empty_like(x)
    ro = x.copy()
    ro.setflags(write=False)
    ro = _writable(ro)  # as the core hands it over
    assert _ops.low_precision_rows(kernel, (ro,), out)
    assert out.tobytes() == want.tobytes()
    y = x.copy()
    assert _ops.low_precision_rows(kernel, (y,), y)
    assert y.tobytes() == want.tobytes()


@pytest.mark.parametrize("low", LOW)
@pytest.mark.parametrize(("n", "c"), ROW_SHAPES)
def test_low_precision_logsumexp_is_the_float32_one_rounded(rng, low, n, c):
    """16-bit logsumexp rows converted a block at a time: bitwise the float32
    kernel's results rounded, from a writeable and a read-only input, with
    special rows (NaN, +inf, all -inf, values at the format's largest)."""
    x = (rng.standard_normal((n, c)) * 3).astype(np.float32)
    if n > 4:
        x[1, 0] = np.nan
        x[2, 1] = np.inf
        x[3, :] = -np.inf
        x[4, :] = 60000.0 if low == F16 else 1e38
    x = x.astype(low)
    if n > 6:
        x[5, c // 2] = _snan(low)
        x[6, 0] = _snan(low, -1)
    y32 = np.empty(n, np.float32)
    _ops.logsumexp_rows(x.astype(np.float32), y32)
    with np.errstate(over="ignore"):
        want = y32.astype(low)
    out = np.empty(n, low)
    assert _ops.low_precision_rows("logsumexp_rows", (x,), out)
    assert out.tobytes() == want.tobytes()
    ro = x.copy()
    ro.setflags(write=False)
    ro = _writable(ro)  # as the core hands it over
    out2 = np.empty(n, low)
    assert _ops.low_precision_rows("logsumexp_rows", (ro,), out2)
    assert out2.tobytes() == want.tobytes()


@pytest.mark.parametrize(
    ("x", "out"),
    [
        (np.ones((4, 40000), F16), np.empty(4, F16)),
        (np.ones((40, 100), F16), np.empty(39, F16)),
        (np.ones((40, 100), F16), np.empty((40, 1), F16)),
        (np.ones((40, 100), F16), np.empty(40, BF16)),
        (np.ones((100, 40), F16).T, np.empty(40, F16)),
    ],
    ids=["split-rows", "length", "2-d", "mixed", "strided"],
)
def test_low_precision_logsumexp_declines(x, out):
    before = out.copy()
    assert _ops.low_precision_rows("logsumexp_rows", (x,), out) is False
    assert out.tobytes() == before.tobytes()


@pytest.mark.parametrize(
    ("kernel", "x", "out"),
    [
        ("softmax_rows", np.ones((4, 40000), F16), np.empty((4, 40000), F16)),
        ("softmax_jacobian_rows", np.ones((40, 100), F16), np.empty((40, 100), F16)),
        ("softmax_rows", np.ones((40, 100), np.float32), np.empty((40, 100), F16)),
        ("softmax_rows", np.ones((40, 100), F16), np.empty((40, 100), BF16)),
        ("softmax_rows", np.ones((100, 40), F16).T, np.empty((40, 100), F16)),
        ("softmax_rows", np.ones((40, 100), F16), np.empty((40, 99), F16)),
    ],
    ids=["split-rows", "other-kernel", "float32", "mixed", "strided", "shapes"],
)
def test_low_precision_rows_declines(kernel, x, out):
    """Rows the float32 path would split across threads, other kernels, dtypes
    and layouts: False and nothing written (the core takes the cast path)."""
    before = out.copy()
    assert _ops.low_precision_rows(kernel, (x,), out) is False
    assert _ops.low_precision_rows("softmax_backward_rows", (x,), out) is False
    assert out.tobytes() == before.tobytes()


CE_SHAPES = [(1000, 8), (600, 30), (500, 64), (300, 128), (40, 1000), (4000, 64)]
CE_SHAPES += [(20, 40000), (4, 40000)]  # wide rows: the last the float32 path splits


def _ce_args(rng, n, c, low):
    """Logits with special rows (NaN, +inf, all -inf, the format's largest),
    targets, per-row ``alpha`` and ``beta`` (rows ignored, smoothed or not)
    and class weights, as the core hands them over."""
    x = (rng.standard_normal((n, c)) * 3).astype(np.float32)
    x[1, 0] = np.nan
    x[2, 1] = np.inf
    x[3, :] = -np.inf
    x[0, :2] = 60000.0 if low == F16 else 1e38
    x = x.astype(low)
    x[min(4, n - 1), c - 1] = _snan(low)
    t = rng.integers(0, c, n)
    alpha = rng.choice([0.0, 0.9, 1.0], n)
    beta = rng.choice([0.0, 0.1 / c], n)
    return x, t, alpha, beta, rng.uniform(0.5, 2.0, c)


def _same_losses(got, want):
    """Row losses bitwise equal, a NaN's sign aside: the float32 kernels' own
    NaN loss of a row of only ``-inf`` takes either sign by the driver (x86's
    default NaN is negative, the kernels' constant positive)."""
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)
    assert got[~nan].tobytes() == want[~nan].tobytes()


@pytest.mark.parametrize("low", LOW)
@pytest.mark.parametrize(("n", "c"), CE_SHAPES)
def test_low_precision_cross_entropy_is_the_float32_one(rng, low, n, c):
    """The class-index cross-entropy on 16-bit rows converted a block at a
    time: row losses bitwise the float32 kernel's on the widened logits, the
    gradient its gradient rounded, into another array and over the logits,
    from a read-only input too; on one thread and threaded; the gradient of
    rows the float32 path splits declined, nothing written."""
    x, t, alpha, beta, cw = _ce_args(rng, n, c, low)
    x32 = x.astype(np.float32)
    with np.errstate(all="ignore"):
        want_loss = np.empty(n)
        g32 = np.empty((n, c), np.float32)
        _ops.cross_entropy_grad_rows(x32, t, alpha, beta, cw, 0.5, want_loss, g32)
        want_grad = g32.astype(low)
        want_alone = np.empty(n)
        _ops.cross_entropy_rows(x32, t, alpha, beta, cw, want_alone)
    ro = x.copy()
    ro.setflags(write=False)
    ro = _writable(ro)  # as the core hands it over
    loss = np.empty(n)
    assert _ops.low_precision_rows("cross_entropy_rows", (ro, t, alpha, beta, cw), loss)
    _same_losses(loss, want_alone)
    split = c > _ops.BLOCK and n < _ops.SPLIT_ROWS
    for into in ("other", "logits"):
        xs = x.copy()
        g = xs if into == "logits" else np.full_like(x, 7)
        before = g.copy()
        loss = np.full(n, 7.0)
        args = (ro if into == "other" else xs, t, alpha, beta, cw, 0.5, loss)
        done = _ops.low_precision_rows("cross_entropy_grad_rows", args, g)
        assert done is not split
        if split:
            assert g.tobytes() == before.tobytes()
            assert (loss == 7.0).all()
            continue
        _same_losses(loss, want_loss)
        assert g.tobytes() == want_grad.tobytes()


def _prob_args(rng, n, c, low):
    """:func:`_ce_args`' logits with probability targets (a NaN among them,
    a row of one class) and class weights."""
    x = _ce_args(rng, n, c, low)[0]
    t = rng.random((n, c)).astype(np.float32)
    t /= t.sum(axis=1, keepdims=True)
    t[min(5, n - 1), 3] = np.nan
    t[min(6, n - 1)] = 0.0
    t[min(6, n - 1), c // 2] = 1.0
    t[min(7, n - 1), 1] = np.float32(_snan(low))  # a float32 signalling NaN
    return x, t, rng.uniform(0.5, 2.0, c)


@pytest.mark.parametrize("low", LOW)
@pytest.mark.parametrize(("n", "c"), CE_SHAPES)
def test_low_precision_prob_cross_entropy_is_the_float32_one(rng, low, n, c):
    """The probability-target cross-entropy on 16-bit rows, its targets in
    the logits' dtype or in float32 (read-only too), with and without label
    smoothing: row losses bitwise the float32 kernel's on the widened logits
    and targets, the gradient its gradient rounded, into another array and
    over the logits; on one thread and threaded, wide rows included (its
    gradient has no split mode)."""
    x, t32, cw = _prob_args(rng, n, c, low)
    x32 = x.astype(np.float32)
    for tdt, eps in [(low, 0.0), (low, 0.1), (np.float32, 0.1)]:
        with np.errstate(invalid="ignore"):  # ml_dtypes flags the signalling NaN
            t = t32.astype(tdt)
        t.setflags(write=False)
        t = _writable(t)
        tw = t.astype(np.float32)
        with np.errstate(all="ignore"):
            want_loss = np.empty(n)
            g32 = np.empty((n, c), np.float32)
            _ops.cross_entropy_prob_grad_rows(x32, tw, eps, cw, 0.5, want_loss, g32)
            want_grad = g32.astype(low)
            want_alone = np.empty(n)
            _ops.cross_entropy_prob_rows(x32, tw, eps, cw, want_alone)
        ro = x.copy()
        ro.setflags(write=False)
        ro = _writable(ro)  # as the core hands it over
        loss = np.empty(n)
        args = (ro, t, eps, cw)
        assert _ops.low_precision_rows("cross_entropy_prob_rows", args, loss)
        _same_losses(loss, want_alone)
        for into in ("other", "logits"):
            xs = x.copy()
            g = xs if into == "logits" else np.full_like(x, 7)
            loss = np.full(n, 7.0)
            args = (ro if into == "other" else xs, t, eps, cw, 0.5, loss)
            assert _ops.low_precision_rows("cross_entropy_prob_grad_rows", args, g)
            _same_losses(loss, want_loss)
            assert g.tobytes() == want_grad.tobytes()


@pytest.mark.parametrize("grad", [False, True])
def test_low_precision_prob_cross_entropy_declines(grad):
    """Probabilities of another dtype, shape or layout, vectors of the wrong
    length, a gradient of another dtype: False and nothing written."""
    n, c = 40, 100
    x = np.ones((n, c), F16)
    t, cw = np.full((n, c), 0.01, F16), np.ones(c)
    kernel = "cross_entropy_prob_grad_rows" if grad else "cross_entropy_prob_rows"
    loss = np.zeros(n)
    cases = [
        ((x, t.astype(np.float64), 0.0, cw), None),
        ((x, t.astype(BF16), 0.0, cw), None),
        ((x, t[:, :-1], 0.0, cw), None),
        ((x, np.ones((c, n), F16).T, 0.0, cw), None),
        ((x, t, 0.0, cw[:-1]), None),
        ((x.astype(np.float32), t.astype(np.float32), 0.0, cw), None),
        ((x, t, 0.0), None),
    ]
    if grad:
        cases.append(((x, t, 0.0, cw), np.zeros((n, c), BF16)))
    for args, g in cases:
        if grad:
            g = np.zeros((n, c), F16) if g is None else g
            got = _ops.low_precision_rows(kernel, (*args, 1.0, loss), g)
            assert not np.asarray(g, np.float32).any()
        else:
            got = _ops.low_precision_rows(kernel, args, loss)
        assert got is False
    assert (loss == 0).all()


def test_low_precision_cross_entropy_declines():
    """Other layouts and dtypes, vectors of the wrong length, a gradient of
    another dtype or shape: False and nothing written."""
    n, c = 40, 100
    x = np.ones((n, c), F16)
    t, a, b, cw = np.zeros(n, np.int64), np.ones(n), np.zeros(n), np.ones(c)
    loss = np.zeros(n)
    ok = (x, t, a, b, cw)
    for args, out in [
        ((np.ones((c, n), F16).T, t, a, b, cw), loss),
        ((x.astype(np.float32), t, a, b, cw), loss),
        ((x, t[:-1], a, b, cw), loss),
        ((x, t, a, b, cw[:-1]), loss),
        (ok, np.zeros(n, np.float32)),
        (ok[:4], loss),
    ]:
        assert _ops.low_precision_rows("cross_entropy_rows", args, out) is False
    assert (loss == 0).all()
    grads = (np.zeros((n, c), BF16), np.zeros((n, c - 1), F16), np.zeros((c, n), F16).T)
    for g in grads:
        args = (*ok, 1.0, loss)
        assert _ops.low_precision_rows("cross_entropy_grad_rows", args, g) is False
        assert not np.asarray(g, np.float32).any()
    assert (loss == 0).all()


BACKWARD = ["softmax_backward_rows", "log_softmax_backward_rows"]


@pytest.mark.parametrize("low", LOW)
def test_backward_reductions_are_the_float32_ones(rng, low):
    """The backward passes' dot product and sum on 16-bit rows, converting as
    they load, are bitwise the same functions on the widened float32 rows: the
    same lanes and order, though LLVM vectorises each specialisation on its
    own. The elements' exponents span 2^-24..2^15 (float16) and
    2^-60..2^60 (bfloat16), so that the float64 sums round (products of
    16-bit numbers of like size are exact and sum exactly in any order) and a
    sequential sum differs from these in most rows: a change of order shows."""
    from softcore_numba import _kernels

    ints = np.uint16 if low == F16 else np.int16
    span = (-24, 15) if low == F16 else (-60, 60)

    def spread(c):
        v = rng.uniform(1, 2, c) * np.exp2(rng.integers(*span, c))
        return (v * rng.choice([-1.0, 1.0], c)).astype(low)

    diffs = 0
    for c in [1, 7, 16, 31, 33, 64, 127, 129, 1000, 4097, 32000]:
        for _ in range(8):
            g, p = spread(c), spread(c)
            g32, p32 = g.astype(np.float32), p.astype(np.float32)
            seq = 0.0
            for a, b in zip(g32.tolist(), p32.tolist(), strict=True):
                seq += a * b  # exact products: any rounding is the sum's
            diffs += seq != _kernels._dot_row(g32, p32)
            got = _kernels._dot_row(g.view(ints), p.view(ints))
            assert got == _kernels._dot_row(g32, p32), c
            assert _kernels._sum_row(g.view(ints)) == _kernels._sum_row(g32), c
    assert diffs > 30  # of 88 rows: the inputs make the order matter


@pytest.mark.parametrize("low", LOW)
@pytest.mark.parametrize("kernel", BACKWARD)
@pytest.mark.parametrize(
    ("n", "c"),
    [(1000, 30), (100, 64), (5000, 8), (600, 64), (40, 1000), (4, 40000)]
    + [(2, (1 << 22) + 3)],  # wider than any softmax row taken whole
)
def test_low_precision_backward_is_the_float32_pass_rounded(rng, low, kernel, n, c):
    """16-bit backward passes converting in registers: bitwise the float32
    kernel's results rounded, into another array, over either input (a few rows
    at a time through a scratch), and from read-only inputs; on one thread (the
    first two shapes) and threaded (a few very wide rows too: the backward pass
    has no split mode to leave them to)."""
    x = (rng.standard_normal((n, c)) * 3).astype(np.float32)
    g = (rng.standard_normal((n, c)) * 2).astype(low)
    s = np.empty_like(x)
    (_ops.log_softmax_rows if "log" in kernel else _ops.softmax_rows)(x, s)
    s = s.astype(low)
    y32 = np.empty((n, c), np.float32)
    getattr(_ops, kernel)(g.astype(np.float32), s.astype(np.float32), y32)
    want = y32.astype(low)
    g_ro, s_ro = g.copy(), s.copy()
    g_ro.setflags(write=False)
    s_ro.setflags(write=False)
    g_ro, s_ro = _writable(g_ro), _writable(s_ro)  # as the core hands them over
    out = np.empty_like(g)
    assert _ops.low_precision_rows(kernel, (g_ro, s_ro), out)
    assert out.tobytes() == want.tobytes()
    for i in (0, 1):
        args = [g.copy(), s.copy()]
        assert _ops.low_precision_rows(kernel, tuple(args), args[i])
        assert args[i].tobytes() == want.tobytes()


@pytest.mark.parametrize("low", LOW)
@pytest.mark.parametrize("kernel", ["softmax_rows", "log_softmax_rows", *BACKWARD])
@pytest.mark.parametrize(("n", "c"), [(600, 64), (40, 1000), (5000, 8)])
def test_low_precision_special_values(rng, low, kernel, n, c):
    """NaN, infinities, rows of only -inf, values beyond float16's range and
    subnormal ones: the 16-bit rows are bitwise the float32 kernel's results
    rounded (NaNs compared by their bits too)."""
    x = (rng.standard_normal((n, c)) * 3).astype(np.float32)
    x[1, 3] = np.nan
    x[2, 0] = np.inf
    x[3, :] = -np.inf
    x[4, 1] = -np.inf
    x[5, :] = 60000.0 if low == F16 else 1e38
    x[6, :2] = 6e-8  # float16's subnormals
    x = x.astype(low)
    # signalling NaNs (quiet bit clear, payloads kept by the widening cast)
    x[9, 4] = _snan(low)
    x[11, c - 1] = _snan(low, -1)
    args32 = [x.astype(np.float32)]
    args = [x]
    if kernel in BACKWARD:
        s = np.abs(rng.standard_normal((n, c))).astype(low)
        s[7, 2] = np.inf
        s[8, 5] = np.nan
        s[10, 6] = _snan(low)
        s[9, 1] = _snan(low, -1)
        args32.append(s.astype(np.float32))
        args.append(s)
    y32 = np.empty((n, c), np.float32)
    with np.errstate(all="ignore"):
        getattr(_ops, kernel)(*args32, y32)
        want = y32.astype(low)
    out = np.empty_like(x)
    assert _ops.low_precision_rows(kernel, tuple(args), out)
    assert out.tobytes() == want.tobytes()


@pytest.mark.parametrize(
    ("c", "softmax_mode", "log_mode"),
    [(8, 2, 2), (15, 2, 2), (16, 1, 2), (24, 1, 2), (31, 1, 2), (32, 1, 1)]
    + [(33, 1, 2), (40, 1, 1), (47, 1, 2), (56, 1, 1), (63, 1, 2), (64, 1, 1)]
    + [(256, 1, 1), (257, 1, 1), (512, 1, 1), (513, 0, 1), (1024, 0, 1)]
    + [(1025, 0, 0), (40000, 0, 0)],
)
def test_16bit_rows_take_the_in_cache_mode(c, softmax_mode, log_mode):
    """The blockwise drivers run the float32 serial driver for rows in cache,
    whatever the call's size (every block is): short rows (softmax grouped from
    16 classes, log_softmax and logsumexp at 32, 40, 48 and 56, as float32
    calls of any size; the class-index cross-entropy from 25), grouped rows to
    512 classes (softmax), 1024 (log_softmax), 256 (logsumexp) and
    ``SMALL_GROUP_ROW_BYTES`` (cross-entropy), a row at a time beyond."""
    assert _ops._mode16(c, False) == softmax_mode
    assert _ops._mode16(c, True) == log_mode
    lse = 1 if c < 64 and log_mode == 1 else 2 if c < 64 else 1 if c <= 256 else 0
    assert _ops._lse_mode16(c) == lse
    small = _ops.SMALL_GROUP_ROW_BYTES // 4  # cross-entropy: grouped from 25
    assert _ops._ce_mode16(c) == (2 if c <= 24 else 1 if c <= small else 0)


SOFTWARE_HALF = """
import numpy as np
from softcore_numba import _casts, _ops

assert not _casts.HARDWARE_HALF
h = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
f = np.empty(h.size, np.float32)
assert _ops.cast(h, f)
with np.errstate(invalid="ignore"):
    assert (f.view(np.uint32) == h.astype(np.float32).view(np.uint32)).all()
top = np.arange(1 << 19, dtype=np.uint32) << 13
low = np.array([0, 1, 0xFFF, 0x1000, 0x1001, 0x1FFF], np.uint32)
x = (top[:, None] | low).ravel().view(np.float32)
got = np.empty(x.size, np.float16)
assert _ops.cast(x, got)
with np.errstate(all="ignore"):
    assert (got.view(np.uint16) == x.astype(np.float16).view(np.uint16)).all()
g = np.random.default_rng(0).standard_normal((300, 100)).astype(np.float16)
s = np.random.default_rng(1).random((300, 100)).astype(np.float16)
g[3, 3] = np.array([0x7D01], np.uint16).view(np.float16)[0]
for kernel in ("softmax_backward_rows", "log_softmax_backward_rows"):
    y32 = np.empty(g.shape, np.float32)
    with np.errstate(all="ignore"):
        getattr(_ops, kernel)(g.astype(np.float32), s.astype(np.float32), y32)
        want = y32.astype(np.float16)
    out = np.empty_like(g)
    assert _ops.low_precision_rows(kernel, (g, s), out)
    assert out.tobytes() == want.tobytes(), kernel
print("software float16 conversions: ok")
"""


def test_float16_without_hardware_conversions(tmp_path):
    """Where numba does not compile for the host CPU (``NUMBA_CPU_NAME`` set, as
    for a portable cache) or the CPU has no F16C, float16 converts on the bits
    in integer lanes: the same results, every pattern and rounding case (in a
    fresh process with its own kernel cache)."""
    env = {
        **os.environ,
        "NUMBA_CPU_NAME": "generic",
        "SOFTCORE_NUMBA_CACHE_DIR": str(tmp_path),
    }
    res = subprocess.run(
        [sys.executable, "-c", SOFTWARE_HALF],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "software float16 conversions: ok" in res.stdout


def test_hardware_half_is_what_the_host_offers():
    """F16C conversions exactly where numba compiles for a host CPU that has
    F16C (here: whichever this machine is; the other case runs above)."""
    import llvmlite.binding as llb

    host = "f16c" in llb.get_host_cpu_features().flatten()
    pinned = os.environ.get("NUMBA_CPU_NAME") or os.environ.get("NUMBA_CPU_FEATURES")
    assert _casts.HARDWARE_HALF == (host and not pinned)
