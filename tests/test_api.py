"""The core's own contract: validation messages, dtypes, shapes, nothing half-written.

Values are checked here against float64 formulas written out in the test; the
conformance kit (tests/test_conformance.py) checks every backend far more widely.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import softcore as sc
from softcore._backend import KERNELS
from softcore._validate import VIEW_MIN_BYTES

B = "numpy"


def _host_backends():
    names = [b.name for b in sc.list_backends() if b.available is True]
    return [n for n in ("numpy", "numba") if n in names]


def _softmax64(x, axis=-1):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            np.array([[0, 1, 2], [3, 12, 0]]),
            r"target\[1, 1\] = 12 is outside \[0, 10\) "
            r"and is not ignore_index=-100",
        ),
        (np.array([[0, -1, 2], [3, 4, 0]]), r"target\[0, 1\] = -1 is outside"),
        (
            np.array([0, 1]),
            r"class-index target must have .* \(2, 3\); received \(2,\)",
        ),
        (
            np.ones((2, 3, 9)),
            r"probability target must have .* \(2, 3, 10\); "
            r"received \(2, 3, 9\)",
        ),
    ],
)
def test_bad_target_names_what_where_and_expected(target, message):
    logits = np.zeros((2, 3, 10))
    with pytest.raises(ValueError, match=message):
        sc.cross_entropy(logits, target, backend=B)


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64", "uint8"])
def test_target_range_is_checked_for_every_integer_dtype(dtype):
    """The range check reads the targets as unsigned in one reduction: a negative
    target must still be caught, and an ignore_index below every target (but in
    [0, C)) must still be honoured."""
    logits = np.linspace(-2.0, 2.0, 12).reshape(3, 4)
    if np.dtype(dtype).kind == "i":
        with pytest.raises(ValueError, match=r"target\[1\] = -3 is outside"):
            sc.cross_entropy(logits, np.array([0, -3, 1], dtype=dtype), backend=B)
    target = np.array([1, 2, 3], dtype=dtype)
    lsm = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    want = -lsm[[0, 1, 2], [1, 2, 3]]
    for ignore, keep in ((0, [0, 1, 2]), (2, [0, 2])):
        got = sc.cross_entropy(
            logits, target, ignore_index=ignore, reduction="none", backend=B
        )
        expected = np.zeros(3)
        expected[keep] = want[keep]
        np.testing.assert_allclose(got, expected, rtol=1e-14, atol=0)
        mean = sc.cross_entropy(logits, target, ignore_index=ignore, backend=B)
        np.testing.assert_allclose(mean, want[keep].mean(), rtol=1e-14)


@pytest.mark.parametrize("backend", _host_backends())
def test_ignore_index_is_compared_in_the_targets_own_dtype(backend):
    """A uint64 target equal to a huge ignore_index is ignored (it once wrapped to
    -1 in int64 and was read as a class), an ignore_index the dtype cannot hold
    ignores nothing, and a target it does not cover is still an error."""
    logits = np.linspace(-2.0, 2.0, 12).reshape(3, 4)
    top = 2**64 - 1
    lsm = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    t = np.array([1, top, 3], dtype=np.uint64)
    got = sc.cross_entropy(
        logits, t, ignore_index=top, reduction="none", backend=backend
    )
    np.testing.assert_allclose(got, [-lsm[0, 1], 0.0, -lsm[2, 3]], rtol=1e-14)
    for bad, ignore in ((t, -1), (np.array([1, 200, 3], np.uint8), -100)):
        with pytest.raises(ValueError, match=r"target\[1\] = \d+ is outside"):
            sc.cross_entropy(logits, bad, ignore_index=ignore, backend=backend)
    # int8 -100 is ignored; with a weight and nothing ignored, all rows count
    t8 = np.array([1, -100, 3], dtype=np.int8)
    got = sc.cross_entropy(logits, t8, reduction="none", backend=backend)
    np.testing.assert_allclose(got, [-lsm[0, 1], 0.0, -lsm[2, 3]], rtol=1e-14)
    w = np.array([1.0, 2.0, 0.5, 4.0])
    got = sc.cross_entropy(logits, np.array([1, 0, 3]), weight=w, backend=backend)
    want = (2.0 * -lsm[0, 1] + 1.0 * -lsm[1, 0] + 4.0 * -lsm[2, 3]) / 7.0
    np.testing.assert_allclose(got, want, rtol=1e-14)


class _HostArrayLike:
    """A host array-like that is not an ndarray (as a pandas Series or CPU tensor)."""

    def __init__(self, a):
        self._a = np.asarray(a)
        self.shape, self.dtype = self._a.shape, self._a.dtype

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)


def test_host_array_likes_are_converted_in_numpy_calls():
    """A NumPy call refuses only arrays on a device (see test_device_arrays.py);
    other host array-likes are converted as numpy.asarray converts them."""
    logits = np.linspace(-2.0, 2.0, 12).reshape(3, 4)
    target = np.array([0, 3, 1])
    weight = np.array([1.0, 2.0, 0.5, 1.0])
    want = sc.cross_entropy(logits, target, weight=weight, backend=B)
    got = sc.cross_entropy(
        logits, _HostArrayLike(target), weight=_HostArrayLike(weight), backend=B
    )
    assert got == want


def test_lists_go_where_numpy_arrays_go():
    """A list (or a CPU tensor) is computed as the NumPy array it converts to, on
    the backend that array would get: the fastest installed, not the reference
    alone (which took every list while numba took only arrays)."""
    assert sc.get_backend(like=[[0.0, 1.0]]) is sc.get_backend(like=np.empty(0))
    assert sc.get_backend(like=_HostArrayLike([1.0])) is sc.get_backend()


@pytest.mark.parametrize("backend", _host_backends())
@pytest.mark.parametrize("kind", ["list", "array_like"])
def test_host_array_likes_as_the_first_argument(rng, backend, kind):
    """Every op takes host data as its first argument and returns NumPy arrays,
    bit for bit those of the converted array, by name and automatically."""
    x = rng.standard_normal((6, 5))
    g = rng.standard_normal((6, 5))
    w = rng.standard_normal((3, 5))
    y = np.array([0, 4, 2, 2, 1, 3])

    def wrap(a):
        return a.tolist() if kind == "list" else _HostArrayLike(a)

    calls = [
        (sc.softmax, (x,)),
        (sc.log_softmax, (x,)),
        (sc.logsumexp, (x,)),
        (sc.softmax_jacobian, (x,)),
        (sc.softmax_backward, (g, _softmax64(x))),
        (sc.cross_entropy, (x, y)),
        (sc.cross_entropy_with_grad, (x, y)),
        (sc.linear_cross_entropy_with_grad, (x, w, y % 3)),
    ]
    automatic = sc.get_backend().name == backend
    for f, args in calls:
        want = f(*args, backend=backend)
        gots = [f(*map(wrap, args), backend=backend)]
        if automatic:
            gots.append(f(*map(wrap, args)))
        for got in gots:
            for gv, wv in zip(_leaves(got), _leaves(want), strict=True):
                assert type(gv) is type(wv), f.__name__
                np.testing.assert_array_equal(gv, wv, err_msg=f.__name__)


def _leaves(r):
    """A result's arrays, nested tuples flattened."""
    if isinstance(r, tuple):
        return [leaf for item in r for leaf in _leaves(item)]
    return [] if r is None else [r]


@pytest.mark.parametrize("dtype", ["int8", "int16"])
def test_negative_targets_with_more_classes_than_the_dtype_half(dtype):
    """Regression: with C above the dtype's non-negative half (int8: 128), a
    negative target seen as unsigned can be a class (int8 -100 is 156): ignored
    rows were then computed with target -100 and bad targets went unreported."""
    c = 2 ** (8 * np.dtype(dtype).itemsize) - 50  # -100 and -60 as unsigned: < c
    logits = np.linspace(-3.0, 3.0, 3 * c).reshape(3, c)
    target = np.array([5, -100, 7], dtype=dtype)
    got = sc.cross_entropy_with_grad(logits, target, reduction="none", backend=B)
    want = sc.cross_entropy_with_grad(
        logits, target.astype(np.int64), reduction="none", backend=B
    )
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    assert got[0][1] == 0.0
    bad = np.array([5, -60, 7], dtype=dtype)
    with pytest.raises(ValueError, match=r"target\[1\] = -60 is outside"):
        sc.cross_entropy(logits, bad, backend=B)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"reduction": "avg"}, ValueError, r"reduction must be one of .*'avg'"),
        ({"label_smoothing": 1.5}, ValueError, r"label_smoothing must be in \[0, 1\]"),
        ({"label_smoothing": -0.1}, ValueError, r"label_smoothing must be in"),
        # float() parses a string; PyTorch refuses it, and None, as these do
        ({"label_smoothing": "0.1"}, TypeError, r"must be a real number; .*'0.1'"),
        ({"label_smoothing": None}, TypeError, r"must be a real number; .*None"),
        ({"label_smoothing": np.array([0.1])}, TypeError, r"must be a real number"),
        (
            {"weight": np.ones(3)},
            ValueError,
            r"weight must be 1-D .* \(4,\); "
            r"received shape \(3,\)",
        ),
        ({"weight": np.ones((4, 1))}, ValueError, r"received shape \(4, 1\)"),
        ({"ignore_index": 1.5}, TypeError, r"ignore_index must be an integer"),
    ],
)
def test_bad_options(kwargs, error, message):
    with pytest.raises(error, match=message):
        sc.cross_entropy_with_grad(
            np.zeros((2, 4)), np.array([0, 1]), backend=B, **kwargs
        )


def test_ignore_index_with_probability_target_is_rejected_like_torch():
    with pytest.raises(ValueError, match="ignore_index is not supported"):
        sc.cross_entropy(np.zeros((2, 3)), np.full((2, 3), 1 / 3), ignore_index=0)


@pytest.mark.parametrize("dtype", [np.complex128, object, "U3"])
def test_non_real_input_is_a_type_error(dtype):
    x = np.zeros((2, 3), dtype=dtype)
    with pytest.raises(TypeError, match="dtype"):
        sc.softmax(x, backend=B)


@pytest.mark.parametrize("axis", [2, -3, 1.0])
def test_bad_axis(axis):
    with pytest.raises((ValueError, TypeError), match="axis"):
        sc.log_softmax(np.zeros((2, 3)), axis=axis, backend=B)


@pytest.mark.parametrize(
    ("out", "error", "message"),
    [
        (
            np.full((3, 2), 7.0),
            ValueError,
            r"out has shape \(3, 2\); expected \(2, 3\)",
        ),
        (
            np.full((2, 3), 7.0, dtype=np.float32),
            TypeError,
            r"out has dtype float32; expected float64",
        ),
    ],
)
def test_bad_out_raises_and_writes_nothing(out, error, message):
    before = out.copy()
    with pytest.raises(error, match=message):
        sc.softmax(np.zeros((2, 3)), out=out, backend=B)
    np.testing.assert_array_equal(out, before)


def test_read_only_out_is_rejected():
    out = np.zeros((2, 3))
    out.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        sc.softmax(np.zeros((2, 3)), out=out, backend=B)


def test_backward_shape_mismatch():
    with pytest.raises(
        ValueError,
        match=r"grad and probs must have the same shape; "
        r"received \(2, 3\) and \(2, 4\)",
    ):
        sc.softmax_backward(np.zeros((2, 3)), np.zeros((2, 4)), backend=B)


def test_linear_ce_shape_errors():
    x, w = np.zeros((5, 4)), np.zeros((3, 4))
    with pytest.raises(
        ValueError, match="input has 4 features but linear_weight expects 5"
    ):
        sc.linear_cross_entropy(x, np.zeros((3, 5)), np.zeros(5, int), backend=B)
    with pytest.raises(ValueError, match=r"linear_bias must have shape \(3,\)"):
        sc.linear_cross_entropy(
            x, w, np.zeros(5, int), linear_bias=np.zeros(4), backend=B
        )
    with pytest.raises(ValueError, match=r"target\[2\] = 3 is outside \[0, 3\)"):
        sc.linear_cross_entropy(x, w, np.array([0, 1, 3, 0, 0]), backend=B)
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        sc.linear_cross_entropy(x, w, np.zeros(5, int), chunk_size=0, backend=B)


# ------------------------------------------------------------ dtypes, shapes


@pytest.mark.parametrize(
    ("dtype", "result"),
    [
        (np.float16, np.float16),
        (np.float32, np.float32),
        (np.float64, np.float64),
        (np.int32, np.float64),
        (np.bool_, np.float64),
    ],
)
def test_dtype_rules(dtype, result):
    x = np.arange(12).reshape(3, 4).astype(dtype)
    for f in (sc.softmax, sc.log_softmax, sc.logsumexp, sc.softmax_jacobian):
        assert f(x, backend=B).dtype == result, f.__name__
    loss, grad = sc.cross_entropy_with_grad(x, np.array([0, 1, 3]), backend=B)
    assert loss.dtype == result
    assert grad.dtype == result


def test_float16_is_computed_in_float32():
    x = np.array([[10.0, 10.0 + 2**-6, 9.0]], dtype=np.float16)
    expected = _softmax64(x.astype(np.float32)).astype(np.float16)
    np.testing.assert_array_equal(sc.softmax(x, backend=B), expected)


# Rows of logits whose float32 loss (target 0) lies exactly halfway between two
# 16-bit numbers while the float64 loss does not (found by a search over random
# rows): float16 losses 26.4453125, 25.0703125, 14.62890625, 36.015625;
# bfloat16 ones 24.0625, 23.0625, 22.3125, 32.125.
_TIE_ROWS = {
    "float16": [
        [-8.0859375, -6.3046875, -0.459716796875, 18.359375],
        [-13.6796875, -13.6875, -4.8203125, 11.390625],
        [-6.90234375, 7.7265625, -22.359375, -11.5],
        [-13.46875, -11.6953125, 7.08203125, 22.546875],
    ],
    "bfloat16": [
        [-4.1875, 2.28125, -5.1875, 19.875],
        [-9.9375, -4.03125, -0.8984375, 13.125],
        [-9.3125, -3.34375, 13.0, -9.4375],
        [-16.25, 15.875, -18.0, -6.0625],
    ],
}


def _ce_loss_only(*args, **kwargs):
    return sc.cross_entropy_with_grad(*args, **kwargs)[0]


@pytest.mark.parametrize("backend", _host_backends())
@pytest.mark.parametrize("low", ["float16", "bfloat16"])
def test_16bit_losses_are_the_float32_losses_rounded(backend, low):
    """A 16-bit loss is the float32 call's loss rounded, as every 16-bit
    result is, also where that rounding is a tie the float64 sum would have
    broken the other way (the conformance kit found a float16 loss of 273.25
    where the float32 loss, 273.125, rounds to 273.0): per row, summed and
    averaged, through the loss alone and with its gradient, and through
    linear cross-entropy (an identity weight: its logits are the rows)."""
    if low == "float16":
        dt = np.dtype(np.float16)
    else:
        ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 needs ml_dtypes")
        dt = np.dtype(ml_dtypes.bfloat16)
    x = np.array(_TIE_ROWS[low], dtype=np.float32).astype(dt)
    x32 = x.astype(np.float32)
    assert (x32 == np.array(_TIE_ROWS[low])).all()  # the rows are exact in dt
    t = np.zeros(len(x), dtype=np.int64)

    def same(got, want, what):
        got, want = np.asarray(got), np.asarray(want)
        assert got.dtype == dt, what
        np.testing.assert_array_equal(
            got.view(np.uint16), want.astype(dt).view(np.uint16), err_msg=what
        )

    for f in (sc.cross_entropy, _ce_loss_only):
        for reduction in ("none", "sum", "mean"):
            kw = {"reduction": reduction, "backend": backend}
            same(f(x, t, **kw), f(x32, t, **kw), f"{f.__name__}, {reduction}, batch")
            for i in range(len(x)):
                got = f(x[i : i + 1], t[:1], **kw)
                same(got, f(x32[i : i + 1], t[:1], **kw), f"row {i}, {reduction}")
    eye = np.eye(4, dtype=np.float32)
    for reduction in ("none", "sum"):
        kw = {"reduction": reduction, "backend": backend}
        got = sc.linear_cross_entropy(x, eye.astype(dt), t, **kw)
        same(got, sc.linear_cross_entropy(x32, eye, t, **kw), f"linear, {reduction}")


@pytest.mark.parametrize("backend", _host_backends())
@pytest.mark.parametrize("low", ["float16", "bfloat16"])
def test_16bit_weighted_mean_gradient_is_the_float32_one_rounded(backend, low):
    """The gradient alone of a weighted mean, 16-bit logits: the float32 call's
    bits rounded, also where the gradient is the rounding residue of a
    cancellation (one class: 0 exactly, or about 1e-17) that the mean's scale
    decides. The small float32 call sums that scale in row order, the 16-bit
    one summed it pairwise on the general path (169 of 6000 such calls
    differed)."""
    if low == "float16":
        dt = np.dtype(np.float16)
    else:
        ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 needs ml_dtypes")
        dt = np.dtype(ml_dtypes.bfloat16)
    rng = np.random.default_rng(0)
    cases = [(np.zeros((22, 1)), np.zeros(22, int), np.array([1.4348151232158501]))]
    for _ in range(300):
        n, c = int(rng.integers(1, 40)), int(rng.integers(1, 4))
        x = rng.standard_normal((n, c)) * rng.choice([0, 1, 5])
        cases.append((x, rng.integers(0, c, n), rng.random(c) * 2))
    for x, t, w in cases:
        x = x.astype(dt)
        for eps in (0.0, 0.1):
            kw = {"weight": w, "label_smoothing": eps, "backend": backend}
            got = sc.cross_entropy_grad(x, t, **kw)
            want = sc.cross_entropy_grad(x.astype(np.float32), t, **kw).astype(dt)
            np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))


@pytest.mark.parametrize("backend", _host_backends())
@pytest.mark.parametrize("low", ["float16", "bfloat16"])
def test_16bit_losses_beyond_the_range_are_inf_without_a_warning(backend, low):
    """A 16-bit loss too large for its dtype is inf, as the float32 loss
    rounded is, and no overflow warning escapes; one just inside the range
    stays finite (the reduced loss's cast is guarded by the range alone)."""
    if low == "float16":
        dt, big = np.dtype(np.float16), 4e4
    else:
        ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 needs ml_dtypes")
        dt, big = np.dtype(ml_dtypes.bfloat16), 2e38
    x = np.array([[-big, big], [0.0, 1.0]], dtype=np.float32).astype(dt)
    t = np.array([0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for f in (sc.cross_entropy, _ce_loss_only):
            kw = {"backend": backend}
            total = f(x, t, reduction="sum", **kw)
            assert total.dtype == dt, f.__name__
            assert np.isposinf(total), f.__name__
            mean = f(x, t, reduction="mean", **kw)  # 2 big / 2: in range
            assert np.isfinite(mean), f.__name__
            want = f(x.astype(np.float32), t, reduction="mean", **kw).astype(dt)
            assert mean.view(np.uint16) == want.view(np.uint16), f.__name__
            rows = f(x, t, reduction="none", **kw)
            assert np.isposinf(rows[0]), f.__name__
            assert np.isfinite(rows[1]), f.__name__


def _rounded(y, dt):
    with np.errstate(over="ignore"):
        return np.asarray(y, np.float32).astype(dt)


@pytest.mark.parametrize("backend", _host_backends())
@pytest.mark.parametrize("low", ["float16", "bfloat16"])
@pytest.mark.parametrize("rows", [2, 600])  # NumPy's cast; past CAST_MIN, a hook's
def test_16bit_arrays_beyond_the_range_are_inf_without_a_warning(backend, low, rows):
    """A 16-bit array result is the float32 call's rounded, inf where that is
    past the dtype's range, and no overflow warning escapes (allocated and into
    ``out=``): the ops whose results can pass it (logsumexp would need
    millions of classes)."""
    if low == "float16":
        dt, big = np.dtype(np.float16), 6e4
    else:
        ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 needs ml_dtypes")
        dt, big = np.dtype(ml_dtypes.bfloat16), 3e38
    x = np.tile(np.array([[-big, big, 0.0, 1.0]], np.float32), (rows, 1)).astype(dt)
    lp = np.full(x.shape, -1.375, np.float32).astype(dt)  # exp: about a quarter
    g = np.tile(np.array([[big, -big, big, 1.0]], np.float32), (rows, 1)).astype(dt)
    t = np.zeros(rows, np.int64)
    kw = {"backend": backend}
    calls = {
        "log_softmax": lambda a, **o: sc.log_softmax(a[0], **o, **kw),
        "softmax_backward": lambda a, **o: sc.softmax_backward(a[1], a[2], **o, **kw),
        "log_softmax_backward": lambda a, **o: sc.log_softmax_backward(
            a[1], a[3], **o, **kw
        ),
        "d_linear_weight": lambda a, **o: sc.linear_cross_entropy_with_grad(
            a[0], a[4], t, reduction="sum", **kw
        )[1][1],
    }
    if low == "bfloat16":  # its range is float32's: the GEMMs overflow, not a cast
        del calls["d_linear_weight"]
    probs = np.full(x.shape, 1.0, np.float32).astype(dt)
    w = np.ones((3, 4), np.float32).astype(dt)
    arrays = (x, g, probs, lp, w)
    wide = tuple(a.astype(np.float32) for a in arrays)
    for name, call in calls.items():
        want = _rounded(call(wide), dt)
        assert np.isinf(want.astype(np.float32)).any(), name  # the case overflows
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = call(arrays)
            assert got.dtype == dt, name
            np.testing.assert_array_equal(
                got.view(np.uint16), want.view(np.uint16), err_msg=name
            )
            if name in ("log_softmax", "softmax_backward", "log_softmax_backward"):
                out = np.empty(x.shape, dt)
                assert call(arrays, out=out) is out
                np.testing.assert_array_equal(
                    out.view(np.uint16), want.view(np.uint16), err_msg=name
                )


def test_any_axis_and_batch_dims(rng):
    x = rng.standard_normal((3, 5, 4, 2))
    for axis in range(-4, 4):
        np.testing.assert_allclose(
            sc.softmax(x, axis=axis, backend=B), _softmax64(x, axis), rtol=1e-14
        )
    lse = sc.logsumexp(x, axis=1, keepdims=True, backend=B)
    assert lse.shape == (3, 1, 4, 2)
    jac = sc.softmax_jacobian(x, axis=1, backend=B)
    assert jac.shape == (3, 4, 2, 5, 5)


def _ce_row64(x, y, w, eps):
    """One class-index row's loss in float64: 0 for a row that carries no
    weight, else the formula taken literally."""
    x = np.asarray(x, np.float64)
    c = x.size
    w = np.ones(c) if w is None else np.asarray(w, np.float64)
    if (1 - eps) * w[y] == 0 and eps == 0:
        return 0.0
    m = x.max()
    lse = m + np.log(np.exp(x - m).sum())
    with np.errstate(invalid="ignore"):
        loss = (1 - eps) * w[y] * (lse - x[y])
        return loss + eps / c * np.sum(w * (lse - x)) if eps else loss


@pytest.mark.parametrize("backend", _host_backends())
@pytest.mark.parametrize("c", [3, 100, 20000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_takes_zero_times_inf_as_nan(backend, c, dtype):
    """Label smoothing 1 with the target on a ``-inf`` logit, or a zero class
    weight on a ``-inf`` logit with smoothing: the class-index loss is its
    formula taken literally, ``0 * inf = NaN``, as in PyTorch; a row that
    carries no weight at all (a zero class weight on its target, no smoothing)
    is 0, as an ignored row is. The row sits among ordinary ones at widths the
    numba backend takes with its short-row, row and wide kernels, through the
    fused small call (reduced) and the general path (per row); the gradient
    stays finite. (numba took these as 0: a loss of inf or a finite one.)"""
    rng = np.random.default_rng(5)
    n = 8
    x = rng.standard_normal((n, c)).astype(dtype)
    x[0, 0] = -np.inf
    w0 = np.ones(c)
    w0[0] = 0.0
    cases = [  # weight, smoothing, row 0's target, its loss
        (None, 1.0, 0, np.nan),
        (w0, 0.5, 0, np.nan),
        (w0, 0.5, 1, np.nan),  # the smoothing sum's 0 * inf, the target elsewhere
        (None, 0.5, 0, np.inf),
        (w0, 0.0, 0, 0.0),
        (None, 0.0, 1, None),  # finite: the -inf logit is not the target
        (None, 1.0, 1, np.inf),
    ]
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for w, eps, y0, want0 in cases:
        t = rng.integers(1, c, n)
        t[0] = y0
        kw = {"weight": w, "label_smoothing": eps, "backend": backend}
        what = f"weight {w is not None}, smoothing {eps}, target {y0}"
        rows = np.asarray(sc.cross_entropy(x, t, reduction="none", **kw), np.float64)
        want = np.array([_ce_row64(x[i], t[i], w, eps) for i in range(n)])
        if want0 is not None:
            np.testing.assert_array_equal(want[0], want0, err_msg=what)
        np.testing.assert_allclose(rows, want, rtol=rtol, err_msg=what)
        total, grad = sc.cross_entropy_with_grad(x, t, reduction="sum", **kw)
        np.testing.assert_allclose(
            np.float64(total), want.sum(), rtol=rtol, err_msg=what
        )
        np.testing.assert_allclose(
            np.float64(sc.cross_entropy(x, t, reduction="sum", **kw)),
            want.sum(),
            rtol=rtol,
            err_msg=what,
        )
        assert np.isfinite(grad).all(), what


def test_logsumexp_of_1d_is_a_scalar_and_empty_axis_is_minus_inf():
    assert np.ndim(sc.logsumexp(np.zeros(4), backend=B)) == 0
    res = sc.logsumexp(np.zeros((3, 0)), backend=B)
    np.testing.assert_array_equal(res, np.full(3, -np.inf))


def test_out_may_be_the_input(rng):
    x = rng.standard_normal((4, 6))
    expected = _softmax64(x)
    res = sc.softmax(x, out=x, backend=B)
    assert res is x
    np.testing.assert_allclose(x, expected, rtol=1e-14)


def test_out_overlapping_the_input_partially_is_safe(rng):
    buf = rng.standard_normal(13)
    x = buf[:12].reshape(3, 4)
    out = buf[1:13].reshape(3, 4)
    expected = np.log(_softmax64(x))
    sc.log_softmax(x, out=out, backend=B)
    np.testing.assert_allclose(out, expected, rtol=1e-13)


@pytest.mark.parametrize("backend", _host_backends())
def test_plain_out_fast_path_decides_like_the_general_checks(rng, backend):
    # two separate arrays of their own, or out is x: written directly; any view
    # (possibly overlapping) or a bad out goes through the general checks
    from softcore import _api

    f64 = np.dtype(np.float64)
    buf = rng.standard_normal(61)
    cases = [
        (lambda x: np.empty_like(x), True),
        (lambda x: x, True),
        (lambda x: buf[1:41].reshape(5, 8), False),  # overlaps x, a view of buf
        (lambda x: np.empty((10, 8))[::2], False),  # strided
        (lambda x: np.empty((5, 8), np.float32), False),  # dtype: TypeError below
    ]
    for make, plain in cases:
        for op, ref in ((sc.softmax, _softmax64), (sc.log_softmax, None)):
            x = buf[:40].reshape(5, 8)
            x = x.copy() if plain else x
            want = ref(x) if ref else np.log(_softmax64(x))
            out = make(x)
            assert _api._plain_out(x, out) is plain
            if out.dtype != f64:
                with pytest.raises(TypeError, match="dtype"):
                    op(x, out=out, backend=backend)
                continue
            assert op(x, out=out, backend=backend) is out
            np.testing.assert_allclose(out, want, rtol=1e-13, atol=1e-15)
            buf = rng.standard_normal(61)
    ro = np.empty((5, 8))
    ro.setflags(write=False)
    assert not _api._plain_out(np.ones((5, 8)), ro)
    with pytest.raises(ValueError, match="read-only"):
        sc.softmax(np.ones((5, 8)), out=ro, backend=backend)
    assert not _api._plain_out(ro, ro)  # in place on a read-only input
    with pytest.raises(ValueError, match="read-only"):
        sc.log_softmax(ro, out=ro, backend=backend)


@pytest.mark.parametrize("backend", _host_backends())
def test_backward_plain_calls_and_their_outs(rng, backend):
    # the plain backward call (both inputs 2-D, C-contiguous, one dtype) and
    # every out it may write directly, against float64 formulas; views, mixed
    # dtypes and read-only outs take the general path, with its answers
    buf = rng.standard_normal(81)
    g = buf[:40].reshape(5, 8).copy()
    p = _softmax64(rng.standard_normal((5, 8)))
    lp = np.log(p)
    want = {
        "softmax_backward": p * (g - (g * p).sum(-1, keepdims=True)),
        "log_softmax_backward": g - p * g.sum(-1, keepdims=True),
    }
    for op, saved in (("softmax_backward", p), ("log_softmax_backward", lp)):
        f = getattr(sc, op)
        np.testing.assert_allclose(f(g, saved, backend=backend), want[op], rtol=1e-12)
        for which in ("fresh", "grad", "saved", "view"):
            gc, sc_ = g.copy(), saved.copy()
            out = {
                "fresh": np.empty_like(g),
                "grad": gc,
                "saved": sc_,
                "view": buf[41:81].reshape(5, 8),
            }[which]
            assert f(gc, sc_, out=out, backend=backend) is out
            np.testing.assert_allclose(out, want[op], rtol=1e-12, err_msg=which)
        got = f(g.astype(np.float32), saved, backend=backend)  # promoted
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, want[op], rtol=1e-6)
        ro = np.empty_like(g)
        ro.setflags(write=False)
        with pytest.raises(ValueError, match="read-only"):
            f(g, saved, out=ro, backend=backend)


def test_out_with_other_axis_layout(rng):
    x = rng.standard_normal((5, 3))
    out = np.empty((5, 3))
    sc.softmax(x, axis=0, out=out, backend=B)
    np.testing.assert_allclose(out, _softmax64(x, 0), rtol=1e-14)


def test_empty_batches():
    x = np.zeros((0, 5))
    assert sc.softmax(x, backend=B).shape == (0, 5)
    assert sc.logsumexp(x, backend=B).shape == (0,)
    assert sc.softmax_jacobian(x, backend=B).shape == (0, 5, 5)
    t = np.zeros(0, dtype=np.int64)
    assert np.isnan(sc.cross_entropy(x, t, backend=B))  # mean of nothing, as torch
    assert sc.cross_entropy(x, t, reduction="sum", backend=B) == 0
    assert sc.cross_entropy_grad(x, t, backend=B).shape == (0, 5)


def test_cross_entropy_with_no_classes_is_an_error():
    with pytest.raises(ValueError, match="at least one class"):
        sc.cross_entropy(np.zeros((2, 0)), np.zeros(2, int), backend=B)


def test_cross_entropy_matches_the_seed_gradient(rng):
    # the seed derivation: dL/df_k = p_k - 1[k = y] per row, divided by N for mean
    f = rng.standard_normal((7, 5))
    y = rng.integers(0, 5, 7)
    p = _softmax64(f)
    ind = np.zeros_like(f)
    ind[np.arange(7), y] = 1
    loss, grad = sc.cross_entropy_with_grad(f, y, backend=B)
    np.testing.assert_allclose(loss, -np.log(p[np.arange(7), y]).mean(), rtol=1e-14)
    np.testing.assert_allclose(grad, (p - ind) / 7, rtol=1e-13, atol=1e-16)


def test_linear_ce_weight_gradient_is_the_seed_formula(rng):
    # the seed's dW = X.T @ (p - ind), in the (C, D) layout: (P - Y).T @ X
    x = rng.standard_normal((9, 4))
    w = rng.standard_normal((3, 4))
    y = rng.integers(0, 3, 9)
    p = _softmax64(x @ w.T)
    ind = np.eye(3)[y]
    _, (dx, dw, db) = sc.linear_cross_entropy_with_grad(
        x, w, y, reduction="sum", chunk_size=2, backend=B
    )
    np.testing.assert_allclose(dw, (p - ind).T @ x, rtol=1e-12)
    np.testing.assert_allclose(dx, (p - ind) @ w, rtol=1e-12)
    assert db is None


def test_linear_ce_memory_is_bounded_by_the_chunk(rng):
    import tracemalloc

    n, d, c = 4096, 8, 512
    x = rng.standard_normal((n, d))
    w = rng.standard_normal((c, d))
    y = rng.integers(0, c, n)
    full_logits = n * c * 8
    tracemalloc.start()
    sc.linear_cross_entropy_with_grad(x, w, y, chunk_size=64, backend=B)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    outputs = (n * d + c * d) * 8 + n * 8 * 4  # dx, dw, per-row loss and targets
    assert peak - outputs < full_logits / 4, (peak, full_logits)


def test_ignore_index_inside_the_class_range(rng):
    # regression: a fast path once treated targets equal to an in-range
    # ignore_index as ordinary classes
    x = rng.standard_normal((5, 4))
    t = np.array([0, 2, 1, 2, 3])
    loss, grad = sc.cross_entropy_with_grad(x, t, ignore_index=2, backend=B)
    kept = np.array([0, 2, 4])
    p = _softmax64(x)
    np.testing.assert_allclose(loss, -np.log(p[kept, t[kept]]).mean(), rtol=1e-14)
    np.testing.assert_array_equal(grad[[1, 3]], 0.0)


# ------------------------------------------------- cross-entropy gradient out=


def _ce_case(rng, dtype=np.float64, shape=(6, 5), prob=False):
    x = rng.standard_normal(shape).astype(dtype)
    if prob:
        t = rng.uniform(0.0, 1.0, shape)
        t = (t / t.sum(-1, keepdims=True)).astype(dtype)
    else:
        t = rng.integers(0, shape[-1], shape[:-1])
    return x, t


@pytest.mark.parametrize("backend", _host_backends())
@pytest.mark.parametrize("prob", [False, True], ids=["index", "prob"])
@pytest.mark.parametrize("fn", ["cross_entropy_grad", "cross_entropy_with_grad"])
def test_ce_grad_out_separate_and_in_place(rng, backend, prob, fn):
    """``out=`` gets the very bits of the allocating call, also when it is the
    logits; the loss does not change with it."""
    x, t = _ce_case(rng, np.float32, (40, 70), prob)
    opts = {"label_smoothing": 0.1, "backend": backend}
    want = getattr(sc, fn)(x, t, **opts)
    want_grad = want[1] if isinstance(want, tuple) else want
    out = np.full_like(x, 7.0)
    res = getattr(sc, fn)(x, t, out=out, **opts)
    got = res[1] if isinstance(res, tuple) else res
    assert got is out
    np.testing.assert_array_equal(out, want_grad)
    inplace = x.copy()
    res = getattr(sc, fn)(inplace, t, out=inplace, **opts)
    got = res[1] if isinstance(res, tuple) else res
    assert got is inplace
    np.testing.assert_array_equal(inplace, want_grad)
    if isinstance(res, tuple):
        assert res[0] == want[0]


def _ce_grad64(x, t, axis=-1):
    """The seed's gradient of the mean loss, p - onehot(t), over N, in float64."""
    x = np.moveaxis(np.asarray(x, np.float64), axis, -1)
    p = _softmax64(x)
    n, c = x.shape[:-1], x.shape[-1]
    if np.issubdtype(np.asarray(t).dtype, np.integer):
        y = np.eye(c)[t]
    else:
        y = np.moveaxis(np.asarray(t, np.float64), axis, -1)
    return np.moveaxis((p - y) / np.prod(n), -1, axis)


@pytest.mark.parametrize("backend", _host_backends())
def test_ce_grad_out_overlapping_inputs_is_still_right(rng, backend):
    # out shares memory with the logits without being them (one element shifted)
    buf = rng.standard_normal(6 * 5 + 1)
    x, out = buf[:-1].reshape(6, 5), buf[1:].reshape(6, 5)
    t = rng.integers(0, 5, 6)
    want = _ce_grad64(x, t)
    sc.cross_entropy_grad(x, t, out=out, backend=backend)
    np.testing.assert_allclose(out, want, rtol=1e-13, atol=1e-16)
    # out is the probability target itself: the kernels read targets in their own
    # order, so it goes through a temporary
    x, t = _ce_case(rng, np.float64, (6, 5), prob=True)
    want = _ce_grad64(x, t)
    assert sc.cross_entropy_grad(x, t, out=t, backend=backend) is t
    np.testing.assert_allclose(t, want, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("backend", _host_backends())
def test_ce_grad_out_other_axis_and_float16(rng, backend):
    x, t = rng.standard_normal((5, 3, 4)), rng.integers(0, 5, (3, 4))
    out = np.empty_like(x)
    assert sc.cross_entropy_grad(x, t, axis=0, out=out, backend=backend) is out
    np.testing.assert_allclose(out, _ce_grad64(x, t, axis=0), rtol=1e-13, atol=1e-17)
    h = x[0].astype(np.float16)  # (3, 4): 4 classes
    th = rng.integers(0, 4, 3)
    out16 = np.empty_like(h)
    sc.cross_entropy_grad(h, th, out=out16, backend=backend)
    want = sc.cross_entropy_grad(h.astype(np.float32), th, backend=backend)
    np.testing.assert_array_equal(out16, want.astype(np.float16))


@pytest.mark.parametrize("backend", _host_backends())
def test_ce_grad_out_empty_batch_and_nan_rows(backend):
    out = np.full((0, 5), 7.0)
    assert sc.cross_entropy_grad(np.zeros((0, 5)), np.zeros(0, int), out=out) is out
    # every kept target has weight 0: the mean is 0/0 and the kept rows' gradient
    # NaN (as PyTorch); the ignored row's gradient 0
    x = np.zeros((3, 4))
    out = np.full((3, 4), 7.0)
    sc.cross_entropy_grad(
        x,
        np.array([0, -100, 0]),
        weight=np.array([0.0, 1, 1, 1]),
        out=out,
        backend=backend,
    )
    assert np.isnan(out[[0, 2]]).all()
    np.testing.assert_array_equal(out[1], 0.0)


@pytest.mark.parametrize(
    ("out", "target", "error", "message"),
    [
        (np.full((2, 4), 7.0), np.array([0, 1, 2]), ValueError, r"out has shape"),
        (
            np.full((3, 4), 7.0, dtype=np.float32),
            np.array([0, 1, 2]),
            TypeError,
            r"out has dtype float32; expected float64",
        ),
        (np.full((3, 4), 7.0), np.array([0, 9, 2]), ValueError, r"target\[1\] = 9"),
    ],
)
def test_ce_grad_bad_out_or_target_writes_nothing(out, target, error, message):
    x = np.linspace(-1, 1, 12).reshape(3, 4)
    x_before, out_before = x.copy(), out.copy()
    with pytest.raises(error, match=message):
        sc.cross_entropy_with_grad(x, target, out=out, backend=B)
    np.testing.assert_array_equal(out, out_before)
    np.testing.assert_array_equal(x, x_before)
    # in place: the logits are left as they were
    with pytest.raises(ValueError, match=r"target\[1\] = 9"):
        sc.cross_entropy_grad(x, np.array([0, 9, 2]), out=x, backend=B)
    np.testing.assert_array_equal(x, x_before)


# ------------------------------------------------ several axes, or all of them


def _lse_axes64(x, axis, keepdims=False):
    """float64 logsumexp over ``axis`` with NumPy's own multi-axis reductions."""
    x = np.asarray(x, np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    r = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return r if keepdims else np.squeeze(r, axis=axis) if axis != () else r


AXES = [None, (0, 2), (2, 0), (1, 2), (0, 1, 2), [1], ()]


@pytest.mark.parametrize("backend", _host_backends())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", AXES, ids=str)
def test_several_axes_as_one_class_axis(rng, backend, dtype, axis):
    """SciPy's and JAX's reading: the named axes (all for None) form one class
    axis; checked against NumPy's own reductions over the same axes in float64."""
    x = (rng.standard_normal((3, 4, 5)) * 3).astype(dtype)
    ax = tuple(axis) if isinstance(axis, list) else axis
    lse = _lse_axes64(x, ax, keepdims=True)
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    for keepdims in (False, True):
        got = sc.logsumexp(x, axis=axis, keepdims=keepdims, backend=backend)
        want = lse if keepdims or ax == () else _lse_axes64(x, ax)
        assert np.shape(got) == np.shape(want), (axis, keepdims)
        assert np.asarray(got).dtype == dtype
        np.testing.assert_allclose(got, want, rtol=rtol)
    lp = sc.log_softmax(x, axis=axis, backend=backend)
    p = sc.softmax(x, axis=axis, backend=backend)
    assert lp.shape == p.shape == x.shape
    assert p.dtype == lp.dtype == dtype
    np.testing.assert_allclose(lp, x.astype(np.float64) - lse, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(p, np.exp(x.astype(np.float64) - lse), rtol=rtol)
    np.testing.assert_allclose(np.sum(p, axis=ax, dtype=np.float64), 1.0, rtol=rtol)


@pytest.mark.parametrize("backend", _host_backends())
@pytest.mark.parametrize(
    ("shape", "axis"),
    [
        ((3, 4, 5), (1, 2)),
        ((3, 4, 5), (0, 2)),
        ((3, 4, 5), None),
        # every axis of a 2-D array: the out= array keeps its 2-D shape but
        # stands for one row (softmax wrote into it as (4, 5) rows, wrongly)
        ((4, 5), None),
        ((4, 5), (0, 1)),
        ((4, 5), (1, 0)),
        ((700, 47), (-2, -1)),
    ],
    ids=str,
)
def test_several_axes_with_out(rng, backend, shape, axis):
    x = rng.standard_normal(shape)
    want = sc.softmax(x, axis=axis, backend=backend)
    out = np.full_like(x, 7.0)
    assert sc.softmax(x, axis=axis, out=out, backend=backend) is out
    np.testing.assert_array_equal(out, want)
    # in place, and into a float16 out through float32
    y = x.copy()
    assert sc.softmax(y, axis=axis, out=y, backend=backend) is y
    np.testing.assert_array_equal(y, want)
    h = x.astype(np.float16)
    out16 = np.empty_like(h)
    sc.log_softmax(h, axis=axis, out=out16, backend=backend)
    want16 = sc.log_softmax(h.astype(np.float32), axis=axis, backend=backend)
    np.testing.assert_array_equal(out16, want16.astype(np.float16))


@pytest.mark.parametrize("backend", _host_backends())
@pytest.mark.parametrize("shape", [(38, 28), (4, 64)], ids=str)
def test_big_endian_float16_inputs_give_the_native_bits(backend, shape):
    """Big-endian float16 inputs (every array of the call) give the bits of
    native copies, past 1024 elements (38x28), where the core widens 16-bit
    rows through the backend's ``cast`` hook, which reads native bits (the
    numba backend's softmax of such an array was NaN), and below it (4x64)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(np.float16)
    g = rng.standard_normal(shape).astype(np.float16)
    p = sc.softmax(x, backend=backend)
    lp = sc.log_softmax(x, backend=backend)
    t = rng.integers(0, shape[1], shape[0])
    calls = {
        "softmax": lambda x, g, p, lp: sc.softmax(x, backend=backend),
        "log_softmax": lambda x, g, p, lp: sc.log_softmax(x, backend=backend),
        "logsumexp": lambda x, g, p, lp: sc.logsumexp(x, backend=backend),
        "softmax over all axes": lambda x, g, p, lp: sc.softmax(
            x, axis=None, backend=backend
        ),
        "softmax_backward": lambda x, g, p, lp: sc.softmax_backward(
            g, p, backend=backend
        ),
        "log_softmax_backward": lambda x, g, p, lp: sc.log_softmax_backward(
            g, lp, backend=backend
        ),
        "cross_entropy_with_grad": lambda x, g, p, lp: sc.cross_entropy_with_grad(
            x, t, label_smoothing=0.1, backend=backend
        ),
        "probability targets": lambda x, g, p, lp: sc.cross_entropy_with_grad(
            x, p, reduction="none", backend=backend
        ),
    }
    for name, f in calls.items():
        want = f(x, g, p, lp)
        got = f(*(a.astype(">f2") for a in (x, g, p, lp)))
        want = want if isinstance(want, tuple) else (want,)
        got = got if isinstance(got, tuple) else (got,)
        for w, r in zip(want, got, strict=True):
            assert np.asarray(r).dtype == np.float16, name
            np.testing.assert_array_equal(
                np.asarray(r).view(np.uint16), np.asarray(w).view(np.uint16), name
            )


@pytest.mark.parametrize("backend", _host_backends())
@pytest.mark.parametrize("low", ["float16", "bfloat16"])
def test_empty_16bit_logsumexp(backend, low):
    """A 16-bit logsumexp of an empty array is ``-inf`` (or empty) of the batch
    shape, along every axis: small float16 calls go to the backend's rows hook
    from no elements at all, and an empty class axis made the float16 call
    fail to reshape its rows."""
    if low == "float16":
        dt = np.dtype(np.float16)
    else:
        ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 needs ml_dtypes")
        dt = np.dtype(ml_dtypes.bfloat16)
    for shape in [(0, 3, 2), (2, 0, 3), (3, 0), (0, 3), (0,)]:
        for ax in range(-len(shape), len(shape)):
            x = np.zeros(shape, dt)
            got = sc.logsumexp(x, axis=ax, backend=backend)
            batch = shape[: ax % len(shape)] + shape[ax % len(shape) + 1 :]
            assert np.shape(got) == batch, (shape, ax)
            assert np.asarray(got).dtype == dt, (shape, ax)
            if shape[ax] == 0:  # no classes: -inf for every row
                want = np.full(batch, -np.inf)
                np.testing.assert_array_equal(np.asarray(got, np.float64), want)


def test_all_axes_of_a_scalar_and_of_empty_arrays():
    assert sc.logsumexp(np.float64(3.0), axis=None, backend=B) == 3.0
    assert sc.softmax(np.float64(3.0), axis=None, backend=B) == 1.0
    res = sc.logsumexp(np.zeros((3, 0, 2)), axis=(1, 2), backend=B)
    np.testing.assert_array_equal(res, np.full(3, -np.inf))
    assert sc.logsumexp(np.zeros((0, 4)), axis=None, backend=B) == -np.inf
    assert sc.softmax(np.zeros((0, 4)), axis=(0, 1), backend=B).shape == (0, 4)


@pytest.mark.parametrize(
    ("axis", "error", "message"),
    [
        ((0, 0), ValueError, r"names an axis more than once"),
        ((0, -3), ValueError, r"names an axis more than once"),
        ((0, 3), ValueError, r"axis 3 is out of bounds for x with 3 dimension"),
        ((0, 1.5), TypeError, r"a tuple of integers or None"),
    ],
)
def test_bad_axes_raise_and_write_nothing(axis, error, message):
    out = np.full((2, 3, 4), 7.0)
    with pytest.raises(error, match=message):
        sc.softmax(np.zeros((2, 3, 4)), axis=axis, out=out, backend=B)
    np.testing.assert_array_equal(out, 7.0)
    with pytest.raises(error, match=message):
        sc.logsumexp(np.zeros((2, 3, 4)), axis=axis, backend=B)


def test_ops_with_one_class_axis_take_one_integer():
    with pytest.raises(TypeError, match=r"axis must be an integer; received tuple"):
        sc.softmax_jacobian(np.zeros((2, 3)), axis=(0, 1), backend=B)
    with pytest.raises(TypeError, match=r"axis must be an integer; received NoneType"):
        sc.cross_entropy(np.zeros((2, 3)), np.zeros(2, int), axis=None, backend=B)


# ------------------------------------- cross-entropy's per-thread row scratch


def _ce_options():
    """Class-index cases through every branch of the target plan."""
    t = np.array([0, 3, 1, 4, 2, 3, 0])
    return [
        (t, {}),
        (t.astype(np.int32), {}),
        (t.astype(np.uint8), {"ignore_index": 3}),
        (np.where(t == 3, -100, t), {"weight": np.arange(1.0, 6.0)}),
        (np.where(t == 3, -100, t).astype(np.int16), {"label_smoothing": 0.2}),
        (t[::-1], {"weight": np.full(5, 0.5), "reduction": "sum"}),
        (np.full(7, -100), {"reduction": "mean"}),  # all ignored: NaN loss, 0 grad
        (t, {"ignore_index": 3, "weight": np.ones(5), "reduction": "none"}),
    ]


@pytest.mark.parametrize("backend", _host_backends())
def test_ce_row_scratch_gives_the_bits_of_fresh_arrays(rng, backend, monkeypatch):
    from softcore import _workspace

    x = rng.standard_normal((7, 5))
    for t, kw in _ce_options():
        kept = t.copy()
        pooled = sc.cross_entropy_with_grad(x, t, backend=backend, **kw)
        assert not _workspace._SLOT.busy
        monkeypatch.setattr(_workspace, "LIMIT", 0)  # every array fresh
        fresh = sc.cross_entropy_with_grad(x, t, backend=backend, **kw)
        monkeypatch.undo()
        for a, b in zip(pooled, fresh, strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(t, kept)  # the caller's targets untouched
        # and both are the float64 formula
        keep = (t != kw.get("ignore_index", -100)).astype(np.int64)
        w = kw.get("weight", np.ones(5))[t * keep] * keep
        eps = kw.get("label_smoothing", 0.0)
        logp = x - np.log(np.exp(x).sum(-1, keepdims=True))
        rows = -w * ((1 - eps) * logp[np.arange(7), t * keep] + eps * logp.mean(-1))
        red = kw.get("reduction", "mean")
        with np.errstate(invalid="ignore"):  # all ignored: 0/0
            want = {"none": rows, "sum": rows.sum(), "mean": rows.sum() / w.sum()}
        np.testing.assert_allclose(pooled[0], want[red], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("backend", _host_backends())
def test_ce_losses_per_row_do_not_share_the_scratch(rng, backend):
    x = rng.standard_normal((6, 4))
    t = np.array([0, 1, 2, 3, 0, 1])
    first = sc.cross_entropy(x, t, reduction="none", backend=backend)
    kept = first.copy()
    sc.cross_entropy(x[::-1].copy(), t, reduction="none", backend=backend)
    np.testing.assert_array_equal(first, kept)


def test_ce_called_from_inside_a_kernel_gets_its_own_rows(rng, monkeypatch):
    # a backend that calls softcore from inside its kernel (a wrapper delegating
    # to another backend, say) must not share the outer call's scratch
    from softcore import _workspace

    be = sc.get_backend("numpy")
    inner = be.cross_entropy_rows
    nested = []

    def reentrant(x, target, alpha, beta, cw, loss_out):
        if not nested:  # the outer call: one nested call first
            nested.append(None)
            assert _workspace._SLOT.busy
            nested[0] = sc.cross_entropy(-x, target[::-1].copy(), **other)
        inner(x, target, alpha, beta, cw, loss_out)

    x = rng.standard_normal((9, 6))
    t = rng.integers(0, 6, 9)
    want = sc.cross_entropy(x, t, reduction="none", backend="numpy")
    # the nested call's per-row weights differ from the outer call's
    other = {"weight": np.arange(1.0, 7.0), "label_smoothing": 0.3, "backend": B}
    want_inner = sc.cross_entropy(-x, t[::-1].copy(), **other)
    monkeypatch.setattr(be, "cross_entropy_rows", reentrant)
    got = sc.cross_entropy(x, t, reduction="none", backend="numpy")
    np.testing.assert_array_equal(got, want)
    assert nested == [want_inner]
    assert not _workspace._SLOT.busy


@pytest.mark.parametrize("backend", _host_backends())
def test_short_batches_read_the_targets_range_like_long_ones(rng, backend, monkeypatch):
    # a batch of at most _SMALL_ROWS rows takes its targets' range from a Python
    # list; forced either way, every case gives the same bits or the same error
    from softcore import _validate

    x = rng.standard_normal((7, 5))
    cases = [(t, kw) for t, kw in _ce_options()] + [
        (np.array([0, 1, 2, 3, 4, 0, 1], np.int8), {}),
        (np.array([0, 1, -3, 3, 4, 0, 1], np.int8), {}),  # negative: no class
        (np.array([0, 1, 5, 3, 4, 0, 1], np.uint64), {}),  # past the classes
        (np.array([0, 2**64 - 1, 1, 3, 4, 0, 1], np.uint64), {"ignore_index": -1}),
        (np.array([0, 2**64 - 1, 1, 3, 4, 0, 1], np.uint64), {}),
        (np.array([4, 1, 2, 3, 4, 0, 4]).reshape(7), {"ignore_index": 4}),
        (np.array([0, 1, 2, 3, 4, 0, 1], ">i4"), {}),  # big-endian
    ]
    for t, kw in cases:
        got = []
        for small in (10**9, 0):
            monkeypatch.setattr(_validate, "_SMALL_ROWS", small)
            try:
                got.append(sc.cross_entropy_with_grad(x, t, backend=backend, **kw))
            except ValueError as e:
                got.append(str(e))
        monkeypatch.undo()
        if isinstance(got[0], str):
            assert got[0] == got[1], (t, kw)
            assert "outside" in got[0]
        else:
            for a, b in zip(got[0], got[1], strict=True):
                np.testing.assert_array_equal(a, b)
    # 2-D batches (flattened for the list) and an empty one
    x3 = rng.standard_normal((2, 3, 5))
    t2 = np.array([[0, 4, -100], [2, 1, 3]])
    monkeypatch.setattr(_validate, "_SMALL_ROWS", 0)
    want = sc.cross_entropy(x3, t2, reduction="none", backend=backend)
    monkeypatch.setattr(_validate, "_SMALL_ROWS", 10**9)
    np.testing.assert_array_equal(
        sc.cross_entropy(x3, t2, reduction="none", backend=backend), want
    )
    with pytest.raises(ValueError, match="outside"):
        sc.cross_entropy(x3, t2 + 1, backend=backend)
    assert np.isnan(
        sc.cross_entropy(np.zeros((0, 5)), np.zeros(0, int), backend=backend)
    )


def test_ce_scratch_is_released_when_the_target_is_bad():
    from softcore import _workspace

    with pytest.raises(ValueError, match="outside"):
        sc.cross_entropy(np.zeros((3, 4)), np.array([0, 9, 1]), backend=B)
    assert not _workspace._SLOT.busy
    loss = sc.cross_entropy(np.zeros((3, 4)), np.array([0, 3, 1]), backend=B)
    np.testing.assert_allclose(loss, np.log(4.0), rtol=1e-15)


# ------------------------------------------------------- linear CE, dW blocks


@pytest.mark.parametrize("backend", _host_backends())
def test_linear_ce_weight_gradient_in_class_blocks(rng, backend, monkeypatch):
    # dW is accumulated a block of classes at a time after the first chunk; with
    # blocks of 3 of 10 classes (a partial last block) and chunks of 4 of 11 rows,
    # every branch runs and the result is still the float64 formula
    from softcore import _api

    monkeypatch.setattr(_api, "_DW_BLOCK_MIN", 3)
    monkeypatch.setattr(_api, "_DW_BLOCK_BYTES", 1)
    n, d, c = 11, 6, 10
    x = rng.standard_normal((n, d))
    w = rng.standard_normal((c, d))
    b = rng.standard_normal(c)
    y = rng.integers(0, c, n)
    _, (dx, dw, db) = sc.linear_cross_entropy_with_grad(
        x, w, y, linear_bias=b, chunk_size=4, reduction="sum", backend=backend
    )
    g = _softmax64(x @ w.T + b)
    g[np.arange(n), y] -= 1.0
    np.testing.assert_allclose(dw, g.T @ x, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(dx, g @ w, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(db, g.sum(0), rtol=1e-13, atol=1e-14)
    assert _api._dw_block(c, dw) == 3


def _same_bits(a, b):
    """Results (arrays, scalars, None, nested tuples) equal bit for bit: the
    same dtype, shape and bytes (so a NaN equals itself, and -0.0 is not 0.0)."""
    if isinstance(a, tuple):
        return all(_same_bits(x, y) for x, y in zip(a, b, strict=True))
    if a is None or b is None:
        return a is b
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _differ_when_run_at_once(calls, rounds):
    """Run each ``(fn, want)`` of ``calls`` ``rounds`` times, one thread per call,
    all released together; the indices of the calls whose result ever differed
    from its ``want``."""
    import threading

    errors = []
    start = threading.Barrier(len(calls))

    def work(i, fn, want):
        start.wait()
        for _ in range(rounds):
            if not _same_bits(fn(), want):
                errors.append(i)
                return

    threads = [
        threading.Thread(target=work, args=(i, fn, want))
        for i, (fn, want) in enumerate(calls)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return errors


@pytest.mark.parametrize("backend", _host_backends())
def test_ce_scratch_is_per_thread(rng, backend):
    # threads with batches of different sizes, each checked against its result
    # computed alone: a buffer shared across threads would mix their rows (the
    # numba kernels release the GIL, so the calls do overlap)
    calls = []
    for n in (4096, 3000, 5120, 2048):
        x = rng.standard_normal((n, 33))
        t = rng.integers(0, 33, n)
        t[::7] = -100
        w = rng.uniform(0.5, 2.0, 33)

        def call(x=x, t=t, w=w):
            return sc.cross_entropy_with_grad(
                x, t, weight=w, reduction="none", backend=backend
            )

        calls.append((call, call()))  # each result computed alone first
    assert _differ_when_run_at_once(calls, rounds=30) == []


def test_scratch_buffers_are_one_per_thread_and_bounded():
    import threading

    from softcore import _workspace

    mine = _workspace.take(np, 100)
    try:
        assert mine is not None
        assert mine.base.shape == (4, 100)
        for a, dt in ((mine.alpha, "f8"), (mine.beta, "f8"), (mine.loss, "f8")):
            assert a.shape == (100,)
            assert a.dtype == dt
        assert mine.target.shape == (100,)
        assert mine.target.dtype == np.int64
        assert _workspace.take(np, 100) is None  # busy on this thread
        seen = []
        th = threading.Thread(target=lambda: seen.append(_workspace.take(np, 100)))
        th.start()
        th.join()
        theirs = seen[0]
        assert theirs is not None
        assert not np.shares_memory(mine.base, theirs.base)
    finally:
        _workspace.give_back(mine)
    again = _workspace.take(np, 100)  # the same batch size: the same views
    assert again is mine
    _workspace.give_back(again)
    other = _workspace.take(np, 50)  # another size: new views of the buffer
    assert other is not mine
    assert other.base.shape == (4, 50)
    _workspace.give_back(other)
    big = _workspace.LIMIT // 8 // 4 + 1  # one row more than the limit holds
    assert _workspace.take(np, big) is None
    fits = _workspace.take(np, big - 1)
    assert fits is not None
    _workspace.give_back(fits)
    assert not _workspace._SLOT.busy


# ------------------------------------------------------------ linear CE out=


def _lce_case(rng, n=11, d=6, c=10, dtype=np.float64):
    x = rng.standard_normal((n, d)).astype(dtype)
    w = rng.standard_normal((c, d)).astype(dtype)
    b = rng.standard_normal(c).astype(dtype)
    y = rng.integers(0, c, n)
    return x, w, b, y


@pytest.mark.parametrize(
    ("make_out", "error", "message"),
    [
        (lambda x, w, b: (x, w), TypeError, r"out must be a tuple .* of length 2"),
        (lambda x, w, b: x, TypeError, r"out must be a tuple .*; received ndarray"),
        (
            lambda x, w, b: (np.zeros((11, 5)), None, None),
            ValueError,
            r"out\[0\] \(d_input\) has shape \(11, 5\); expected \(11, 6\)",
        ),
        (
            lambda x, w, b: (None, np.zeros((10, 6), np.float32), None),
            TypeError,
            r"out\[1\] \(d_linear_weight\) has dtype float32; expected float64",
        ),
        (
            lambda x, w, b: (None, None, np.zeros(9)),
            ValueError,
            r"out\[2\] \(d_linear_bias\) has shape \(9,\); expected \(10,\)",
        ),
        (
            lambda x, w, b: (None, None, [0.0] * 10),
            TypeError,
            r"out\[2\] \(d_linear_bias\) must be a numpy.ndarray; "
            r"received builtins.list",
        ),
        (
            lambda x, w, b: (x, x[1:], None),
            ValueError,
            r"out\[0\] \(d_input\) and out\[1\] \(d_linear_weight\) share memory",
        ),
    ],
)
def test_linear_ce_bad_out_raises_and_writes_nothing(rng, make_out, error, message):
    _, w, b, y = _lce_case(rng)
    x = np.full((11, 6), 7.0)  # some destinations below are views of the input
    with pytest.raises(error, match=message):
        sc.linear_cross_entropy_with_grad(
            x, w, y, linear_bias=b, out=make_out(x, w, b), backend=B
        )
    assert np.all(x == 7.0)


def test_linear_ce_out_checks_come_before_any_write(rng):
    x, w, b, y = _lce_case(rng)
    outs = (np.full_like(x, 7.0), np.full_like(w, 7.0), np.full_like(b, 7.0))
    y_bad = y.copy()
    y_bad[4] = 10
    with pytest.raises(ValueError, match=r"target\[4\] = 10 is outside"):
        sc.linear_cross_entropy_with_grad(x, w, y_bad, linear_bias=b, out=outs)
    ro = np.zeros_like(w)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match=r"out\[1\] \(d_linear_weight\) is read-only"):
        sc.linear_cross_entropy_with_grad(
            x, w, y, linear_bias=b, out=(outs[0], ro, None)
        )
    with pytest.raises(ValueError, match=r"out\[2\] .* must be None when there is no"):
        sc.linear_cross_entropy_with_grad(x, w, y, out=outs)
    for o in outs:
        assert np.all(o == 7.0)


@pytest.mark.parametrize("backend", _host_backends())
@pytest.mark.parametrize(
    "where", ["separate", "input_reused", "fortran", "over_weight_and_bias", "partial"]
)
def test_linear_ce_out_gives_the_same_bits(rng, backend, where, monkeypatch):
    # chunks of 4 of 11 rows and dW blocks of 3 of 10 classes: every branch of the
    # chunk loop writes into out=; the answer is the call without out=, bit for
    # bit, and also the float64 formula
    from softcore import _api

    monkeypatch.setattr(_api, "_DW_BLOCK_MIN", 3)
    monkeypatch.setattr(_api, "_DW_BLOCK_BYTES", 1)
    x, w, b, y = _lce_case(rng)
    kw = dict(linear_bias=b, chunk_size=4, reduction="sum", backend=backend)
    want_loss, want = sc.linear_cross_entropy_with_grad(x, w, y, **kw)
    g = _softmax64(x @ w.T + b)
    g[np.arange(len(y)), y] -= 1.0
    np.testing.assert_allclose(want[1], g.T @ x, rtol=1e-13, atol=1e-14)
    x_in, w_in, b_in = x.copy(), w.copy(), b.copy()
    if where == "separate":
        outs = (np.full_like(x, 7.0), np.full_like(w, 7.0), np.full_like(b, 7.0))
    elif where == "input_reused":
        outs = (x_in, None, None)
    elif where == "fortran":
        outs = (np.asfortranarray(x * 0), np.asfortranarray(w * 0), None)
    elif where == "over_weight_and_bias":
        outs = (None, w_in, b_in)
    else:  # d_input over the input, shifted by a row: a temporary must be used
        big = np.zeros((12, 6))
        big[1:] = x
        x_in = big[1:]
        outs = (big[:11], None, None)
    kw["linear_bias"] = b_in
    loss, grads = sc.linear_cross_entropy_with_grad(x_in, w_in, y, out=outs, **kw)
    assert loss == want_loss
    for o, got, ref in zip(outs, grads, want, strict=True):
        if o is not None:
            assert got is o
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("backend", _host_backends())
def test_linear_ce_out_of_an_empty_batch_is_zeroed(rng, backend):
    _, w, b, _ = _lce_case(rng)
    x = np.zeros((0, 6))
    outs = (np.zeros((0, 6)), np.full_like(w, 7.0), np.full_like(b, 7.0))
    loss, grads = sc.linear_cross_entropy_with_grad(
        x, w, np.zeros(0, int), linear_bias=b, out=outs, backend=backend
    )
    assert np.isnan(loss)
    assert grads[1] is outs[1]
    assert grads[2] is outs[2]
    assert np.all(outs[1] == 0.0)
    assert np.all(outs[2] == 0.0)


def test_linear_ce_out_of_float16_goes_through_float32(rng):
    x, w, b, y = _lce_case(rng, dtype=np.float16)
    _, want = sc.linear_cross_entropy_with_grad(x, w, y, linear_bias=b, backend=B)
    outs = tuple(np.full_like(a, 7.0) for a in (x, w, b))
    _, grads = sc.linear_cross_entropy_with_grad(
        x, w, y, linear_bias=b, out=outs, backend=B
    )
    for o, got, ref in zip(outs, grads, want, strict=True):
        assert got is o
        assert got.dtype == np.float16
        np.testing.assert_array_equal(got, ref)


# -------------------------------------------- linear CE's kept chunk buffer


def test_the_chunk_buffer_is_kept_reused_and_bounded(monkeypatch):
    from softcore import _workspace

    sc.release_scratch()
    a, kept = _workspace.take_chunk(np, (8, 16), np.float32)
    assert kept
    assert a.shape == (8, 16)
    assert a.dtype == np.float32
    b, kept_b = _workspace.take_chunk(np, (8, 16), np.float32)  # a is in use
    assert not kept_b
    assert not np.shares_memory(a, b)
    assert sc.release_scratch() == 0  # not while a call holds it
    _workspace.give_back_chunk(kept_b)
    _workspace.give_back_chunk(kept)
    c, kept_c = _workspace.take_chunk(np, (4, 8), np.float64)  # smaller: the same
    assert kept_c
    assert np.shares_memory(a, c)
    _workspace.give_back_chunk(kept_c)
    d, kept_d = _workspace.take_chunk(np, (64, 16), np.float32)  # larger: replaced
    assert kept_d
    assert not np.shares_memory(a, d)
    _workspace.give_back_chunk(kept_d)
    assert sc.release_scratch() == 64 * 16 * 4
    assert sc.release_scratch() == 0
    monkeypatch.setenv(_workspace.CHUNK_ENV, "0")
    assert not _workspace.take_chunk(np, (1, 1), np.float32)[1]
    monkeypatch.setenv(_workspace.CHUNK_ENV, "0.001")  # 1048 bytes: 262 float32
    assert _workspace.take_chunk(np, (1, 262), np.float32)[1]
    _workspace.give_back_chunk(True)
    assert not _workspace.take_chunk(np, (1, 263), np.float32)[1]
    assert sc.release_scratch() == 262 * 4


@pytest.mark.parametrize("value", ["-1", "lots", "nan", "inf"])
def test_a_bad_chunk_limit_names_the_variable(monkeypatch, rng, value):
    from softcore import _workspace

    monkeypatch.setenv(_workspace.CHUNK_ENV, value)
    x, w, b, y = _lce_case(rng)
    outs = (np.full_like(x, 7.0), np.full_like(w, 7.0), np.full_like(b, 7.0))
    with pytest.raises(ValueError, match=f"{_workspace.CHUNK_ENV} must be a number"):
        sc.linear_cross_entropy_with_grad(x, w, y, linear_bias=b, out=outs, backend=B)
    for o in outs:
        assert np.all(o == 7.0)


@pytest.mark.parametrize("backend", _host_backends())
def test_linear_ce_gives_the_same_bits_with_the_buffer_kept_or_not(
    rng, backend, monkeypatch
):
    from softcore import _workspace

    x, w, b, y = _lce_case(rng, n=37)
    kw = dict(linear_bias=b, chunk_size=8, backend=backend)
    monkeypatch.setenv(_workspace.CHUNK_ENV, "0")
    sc.release_scratch()
    want = sc.linear_cross_entropy_with_grad(x, w, y, **kw)
    assert _workspace._KEPT.buf is None
    monkeypatch.delenv(_workspace.CHUNK_ENV)
    for _ in range(2):  # the first call makes the buffer, the second reuses it
        got = sc.linear_cross_entropy_with_grad(x, w, y, **kw)
        assert _workspace._KEPT.buf is not None
        assert not _workspace._KEPT.busy
        assert got[0] == want[0]
        for g, h in zip(got[1], want[1], strict=True):
            np.testing.assert_array_equal(g, h)
    # a loss-only call in between, on the same buffer, changes nothing
    sc.linear_cross_entropy(x, w[:, ::-1].copy(), y, **kw)
    got = sc.linear_cross_entropy_with_grad(x, w, y, **kw)
    np.testing.assert_array_equal(got[1][1], want[1][1])


@pytest.mark.parametrize("backend", _host_backends())
def test_linear_ce_from_several_threads_at_once(rng, backend):
    # one kept buffer for the process: the calls that find it busy allocate their
    # own, and every call's result is still its own
    calls = []
    for n in (300, 200, 257, 128):
        x, w, b, y = _lce_case(rng, n=n, d=5, c=40)

        def call(x=x, w=w, b=b, y=y):
            return sc.linear_cross_entropy_with_grad(
                x, w, y, linear_bias=b, chunk_size=64, backend=backend
            )

        calls.append((call, call()))  # each result computed alone first
    assert _differ_when_run_at_once(calls, rounds=20) == []
    from softcore import _workspace

    assert not _workspace._KEPT.busy


def test_the_chunk_buffer_is_given_back_when_a_call_fails(rng, monkeypatch):
    from softcore import _workspace

    x, w, _, y = _lce_case(rng)
    be = sc.get_backend(B)

    def broken(*args):
        raise RuntimeError("kernel failed")

    monkeypatch.setattr(be, "cross_entropy_grad_rows", broken)
    with pytest.raises(RuntimeError, match="kernel failed"):
        sc.linear_cross_entropy_with_grad(x, w, y, backend=B)
    assert not _workspace._KEPT.busy


@pytest.mark.parametrize("ignore", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("op", ["cross_entropy", "cross_entropy_grad"])
def test_read_only_targets_and_weights_reach_kernels_writeable(
    rng, monkeypatch, op, weighted, ignore
):
    """A JIT types arrays by their writeability: the core hands a kernel the
    caller's read-only logits, class-index targets and weights as writeable
    views of the same memory (no copy; copies below ``VIEW_MIN_BYTES``, which
    cost less), so no kernel meets a read-only array. The answers are those
    of writeable inputs."""
    n, c = 300, 120  # loss-only calls this size take the general path
    x = rng.standard_normal((n, c))
    y = rng.integers(0, c, n)
    if ignore:
        y[::7] = -100
    w = rng.random(c) + 0.5 if weighted else None
    want = getattr(sc, op)(x, y, weight=w, backend=B)
    be = sc.get_backend(B)
    seen = []
    for name in ("cross_entropy_rows", "cross_entropy_grad_rows"):
        kernel = getattr(be, name)

        def spy(xr, t, alpha, beta, cw, *rest, _kernel=kernel):
            seen.append((xr, t, cw))
            return _kernel(xr, t, alpha, beta, cw, *rest)

        monkeypatch.setattr(be, name, spy)
    ro = [a.copy() for a in (x, y, w) if a is not None]
    for a in ro:
        a.setflags(write=False)
    got = getattr(sc, op)(ro[0], ro[1], weight=ro[2] if weighted else None, backend=B)
    np.testing.assert_array_equal(got, want)
    assert seen, "no row kernel ran"
    assert ro[0].nbytes >= VIEW_MIN_BYTES > ro[1].nbytes
    for xr, t, cw in seen:
        assert xr.flags.writeable
        assert xr.ctypes.data == ro[0].ctypes.data, "the logits were copied"
        assert t.flags.writeable
        assert t.dtype == np.int64
        assert cw.flags.writeable
        assert not np.shares_memory(t, ro[1])  # small: a copy
        if weighted:
            assert not np.shares_memory(cw, ro[2])
    assert all(not a.flags.writeable for a in ro)  # the caller's flags kept


def _read_only(a):
    a = np.array(a)
    a.setflags(write=False)
    return a


_RO_CALLS = {
    # op: (call, its inputs from logits x (n, c), targets t, probabilities p)
    "softmax": lambda x, t, p, b: sc.softmax(x, backend=b),
    "softmax over all axes": lambda x, t, p, b: sc.softmax(x, axis=None, backend=b),
    "log_softmax": lambda x, t, p, b: sc.log_softmax(x, backend=b),
    "logsumexp": lambda x, t, p, b: sc.logsumexp(x, backend=b),
    "logsumexp over all axes": lambda x, t, p, b: sc.logsumexp(
        x, axis=(0, 1), backend=b
    ),
    "softmax_jacobian": lambda x, t, p, b: sc.softmax_jacobian(x, backend=b),
    "log_softmax_jacobian": lambda x, t, p, b: sc.log_softmax_jacobian(x, backend=b),
    "softmax_backward": lambda x, t, p, b: sc.softmax_backward(x, p, backend=b),
    "log_softmax_backward": lambda x, t, p, b: sc.log_softmax_backward(x, p, backend=b),
    "cross_entropy": lambda x, t, p, b: sc.cross_entropy(x, t, backend=b),
    "cross_entropy_with_grad": lambda x, t, p, b: sc.cross_entropy_with_grad(
        x, t, backend=b
    ),
    "cross_entropy, probabilities": lambda x, t, p, b: sc.cross_entropy(
        x, p, backend=b
    ),
    "cross_entropy_grad, probabilities": lambda x, t, p, b: sc.cross_entropy_grad(
        x, p, reduction="sum", backend=b
    ),
    "cross_entropy, none": lambda x, t, p, b: sc.cross_entropy(
        x, t, reduction="none", backend=b
    ),
}


@pytest.mark.parametrize("backend", _host_backends())
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("n", [4, 1000])  # arrays copied, arrays viewed
@pytest.mark.parametrize("op", list(_RO_CALLS))
def test_read_only_inputs_reach_every_kernel_writeable(
    rng, monkeypatch, op, n, dtype, backend
):
    """Every op, given read-only arrays: every array a kernel receives is
    writeable (a read-only one is its own type to a JIT: numba would compile
    each kernel again for it), the logits are the caller's memory (no copy)
    where they need no conversion and are ``VIEW_MIN_BYTES`` or more, the
    answers are bitwise those of writeable inputs, and the caller's arrays
    keep their flags and values."""
    c = 24
    x = rng.standard_normal((n, c)).astype(dtype)
    t = rng.integers(0, c, n)
    p = _softmax64(rng.standard_normal((n, c))).astype(dtype)
    call = _RO_CALLS[op]
    want = call(x, t, p, backend)
    be = sc.get_backend(backend)
    seen = []
    hooks = ("cast", "low_precision_rows", "cross_entropy_index_sum")
    for name in (*KERNELS, *hooks, "cross_entropy_index_grad_sum"):
        kernel = getattr(be, name, None)
        if kernel is None:
            continue

        def spy(*args, _kernel=kernel):
            seen.extend(a for a in args if isinstance(a, np.ndarray))
            for a in args:
                if isinstance(a, tuple):  # the 16-bit hook's arguments
                    seen.extend(b for b in a if isinstance(b, np.ndarray))
            return _kernel(*args)

        monkeypatch.setattr(be, name, spy)
    ro = [_read_only(a) for a in (x, t, p)]
    got = call(*ro, backend)
    assert seen, "no kernel ran"
    assert all(a.flags.writeable for a in seen), [a.flags for a in seen]
    pointers = {a.ctypes.data for a in seen}
    viewed = ro[0].ctypes.data in pointers
    assert viewed == (dtype != np.float16 and x.nbytes >= VIEW_MIN_BYTES)
    assert _same_bits(got, want)
    for a, b in zip(ro, (x, t, p), strict=True):
        assert not a.flags.writeable
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("backend", _host_backends())
def test_read_only_plain_calls_stay_plain(rng, monkeypatch, backend):
    """A read-only array that is otherwise plain (2-D, C-contiguous, float32 or
    float64, the last axis) takes the plain call on a writeable view of it,
    not the general path (whose steps a small call feels): the general path's
    first step fails here, and the answers are the writeable inputs' bits."""
    x = rng.standard_normal((8, 64)).astype(np.float32)
    p = _softmax64(x).astype(np.float32)
    t = rng.integers(0, 64, 8)
    calls = {
        "softmax": lambda x, p: sc.softmax(x, backend=backend),
        "log_softmax": lambda x, p: sc.log_softmax(x, backend=backend),
        "logsumexp": lambda x, p: sc.logsumexp(x, backend=backend),
        "softmax_backward": lambda x, p: sc.softmax_backward(x, p, backend=backend),
        "log_softmax_backward": lambda x, p: sc.log_softmax_backward(
            x, p, backend=backend
        ),
    }
    if getattr(sc.get_backend(backend), "cross_entropy_index_sum", None):
        calls["cross_entropy"] = lambda x, p: sc.cross_entropy(x, t, backend=backend)
        calls["cross_entropy_with_grad"] = lambda x, p: sc.cross_entropy_with_grad(
            x, t, backend=backend
        )
    want = {k: call(x, p) for k, call in calls.items()}
    from softcore import _api

    def general(*args, **kwargs):
        raise AssertionError("the general path ran")

    monkeypatch.setattr(_api, "_prepare", general)
    xr, pr = _read_only(x), _read_only(p)
    for k, call in calls.items():
        assert _same_bits(call(xr, pr), want[k]), k


@pytest.mark.parametrize("low", ["float16", "bfloat16"])
@pytest.mark.parametrize("size", [256, VIEW_MIN_BYTES], ids=["copied", "viewed"])
def test_read_only_16bit_plain_calls_stay_plain(rng, monkeypatch, low, size):
    """The same for 16-bit rows that the backend's ``low_precision_rows`` hook
    takes whole: read-only inputs, the saved output of a backward pass among
    them, still reach the hook without the general path, copied or viewed."""
    be = sc.get_backend("numba") if "numba" in _host_backends() else None
    if be is None or getattr(be, "low_precision_rows", None) is None:
        pytest.skip("no host backend with a low_precision_rows hook installed")
    if low == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 needs ml_dtypes")
        dtype = np.dtype(ml_dtypes.bfloat16)
    else:
        dtype = np.dtype(np.float16)
    x = (rng.standard_normal((size // 64, 64)) * 3).astype(dtype)
    p = _softmax64(x.astype(np.float64)).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    lp = sc.log_softmax(x, backend="numba")
    calls = {
        "softmax": lambda x, g, p, lp: sc.softmax(x, backend="numba"),
        "log_softmax": lambda x, g, p, lp: sc.log_softmax(x, backend="numba"),
        "softmax_backward": lambda x, g, p, lp: sc.softmax_backward(
            g, p, backend="numba"
        ),
        "log_softmax_backward": lambda x, g, p, lp: sc.log_softmax_backward(
            g, lp, backend="numba"
        ),
    }
    want = {k: call(x, g, p, lp) for k, call in calls.items()}
    from softcore import _api

    def general(*args, **kwargs):
        raise AssertionError("the general path ran")

    monkeypatch.setattr(_api, "_prepare", general)
    ro = [_read_only(a) for a in (x, g, p, lp)]
    for k, call in calls.items():
        # the saved outputs alone read-only, then every input
        for args in ((x, g, *ro[2:]), ro):
            assert _same_bits(call(*args), want[k]), k
    for a, b in zip(ro, (x, g, p, lp), strict=True):
        assert not a.flags.writeable
        assert a.tobytes() == b.tobytes()


def test_writable_view_keeps_the_memory_alive():
    """The writeable view of a read-only array holds the array: deleting every
    other reference leaves the view's values intact; a writeable array is
    returned as it is, a small read-only one copied."""
    import gc

    from softcore._validate import _writable

    n = VIEW_MIN_BYTES // 8
    a = np.arange(6.0 * n).reshape(3, 2 * n)[:, ::2]  # strided, its base unnamed
    a.setflags(write=False)
    want = a.copy()
    v = _writable(a)
    assert v.flags.writeable
    assert (v.shape, v.strides) == (a.shape, a.strides)
    assert np.shares_memory(v, a)
    del a
    gc.collect()
    assert np.array_equal(v, want)
    w = np.ones(3)
    assert _writable(w) is w
    small = np.ones(3)
    small.setflags(write=False)
    c = _writable(small)
    assert c.flags.writeable
    assert not np.shares_memory(c, small)


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("backend", _host_backends())
def test_ndarray_subclasses_compute_on_their_data(rng, backend):
    """A masked array with nothing masked and a matrix compute as their data
    (numba cannot type a subclass: a masked array once reached its kernel and
    raised there); results are plain arrays, bit for bit those of the data."""
    x = rng.standard_normal((4, 5))
    y = np.array([0, 4, 1, 3])
    for wrapped in (np.ma.array(x), np.ma.array(x, mask=False), np.matrix(x)):
        for f in (sc.softmax, sc.log_softmax, sc.logsumexp):
            got = f(wrapped, backend=backend)
            assert type(got) is np.ndarray
            np.testing.assert_array_equal(got, f(x, backend=backend))
        got = sc.cross_entropy_with_grad(wrapped, np.ma.array(y), backend=backend)
        want = sc.cross_entropy_with_grad(x, y, backend=backend)
        assert got[0] == want[0]
        np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("backend", _host_backends())
def test_masked_entries_are_an_error(rng, backend):
    """softcore does not read masks: an array with masked entries is a
    TypeError that names the argument and says how to fill it, before any
    work is done (PyTorch and JAX users mask with -inf logits)."""
    x = rng.standard_normal((4, 5))
    mx = np.ma.array(x, mask=np.eye(4, 5, dtype=bool))
    with pytest.raises(
        TypeError, match=r"x is a masked array .* x\.filled\(-np\.inf\)"
    ):
        sc.softmax(mx, backend=backend)
    with pytest.raises(TypeError, match=r"target is a masked array"):
        sc.cross_entropy(
            x, np.ma.array([0, 1, 2, 3], mask=[0, 1, 0, 0]), backend=backend
        )
    out = np.full_like(x, 7.0)
    with pytest.raises(TypeError, match=r"masked array"):
        sc.cross_entropy_grad(mx, np.array([0, 1, 2, 3]), out=out, backend=backend)
    assert np.all(out == 7.0)
    # filled with -inf, the masked classes get probability 0
    p = sc.softmax(mx.filled(-np.inf), backend=backend)
    assert np.all(p[np.eye(4, 5, dtype=bool)] == 0.0)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("backend", _host_backends())
@pytest.mark.parametrize("dt", ["float32", "float64"])
@pytest.mark.parametrize("chunk_size", [None, 2])  # the fused small path; chunks
def test_linear_ce_logits_past_the_range_warn_nothing(backend, dt, chunk_size):
    """Logits of ``input @ linear_weight.T`` past the dtype's range are
    infinite, as in PyTorch, with no overflow or invalid-value warning from the
    GEMMs or the bias (every other op is silent on such values), so a caller
    whose warnings are errors gets the result, not an exception after some
    chunks of ``out=`` are written. A class whose logit is ``-inf`` (a product
    past the range) takes probability 0: the loss and gradients are finite and
    equal the reference's; a row with a ``+inf`` logit has a NaN loss, as in
    PyTorch. (16-bit inputs compute in float32, where their products fit.)"""
    big = 1e20 if dt == "float32" else 1e160  # big * big is past the range
    x = np.array([[big, 0, 1], [0.5, 1, -1], [big, 1, 0], [1, 0, 0]], dt)
    w = np.array([[-big, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], dt)
    bias = np.array([0, 0.5, -0.5, 0], dt)
    t = np.array([1, 2, 3, 0])
    kw = {"linear_bias": bias, "chunk_size": chunk_size, "backend": backend}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = sc.linear_cross_entropy(x, w, t, reduction="none", **kw)
        loss, (dx, dw, db) = sc.linear_cross_entropy_with_grad(x, w, t, **kw)
        outs = (np.empty_like(x), np.empty_like(w), np.empty_like(bias))
        sc.linear_cross_entropy_with_grad(x, w, t, out=outs, **kw)
    # the reference in float64, the logits past the dtype's range -inf
    with np.errstate(over="ignore"):
        z = x.astype(np.float64) @ w.T.astype(np.float64) + bias
    z[np.abs(z) > np.finfo(dt).max] = -np.inf
    assert np.isneginf(z[[0, 2], 0]).all()
    assert np.isfinite(z[:, 1:]).all()
    m = z.max(axis=1, keepdims=True)
    s = np.exp(z - m).sum(axis=1, keepdims=True)
    p = np.exp(z - m) / s
    want_rows = (m + np.log(s))[:, 0] - z[np.arange(4), t]  # rows 0, 2: 1e20-ish
    g = p.copy()
    g[np.arange(4), t] -= 1
    g /= 4  # the mean's gradient; 0 in the -inf logits' column
    want_dx, want_dw = g @ w.astype(np.float64), g.T @ x.astype(np.float64)
    tol = {"rtol": 2e-6, "atol": 1e-7} if dt == "float32" else {"rtol": 1e-13}
    np.testing.assert_allclose(rows, want_rows, **tol)
    np.testing.assert_allclose(float(loss), want_rows.mean(), **tol)
    np.testing.assert_allclose(dx, want_dx, **tol)
    np.testing.assert_allclose(db, g.sum(axis=0), **tol)
    np.testing.assert_allclose(dw, want_dw, rtol=tol["rtol"])  # 1e20 * g entries
    for got, want in zip(outs, (dx, dw, db), strict=True):
        np.testing.assert_array_equal(got, want)
    # a +inf logit: that row's loss is NaN, the others' are not
    w[0, 0] = big
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = sc.linear_cross_entropy(x, w, t, reduction="none", **kw)
    assert np.isnan(rows[[0, 2]]).all()
    assert np.isfinite(rows[[1, 3]]).all()


@pytest.mark.parametrize("backend", _host_backends())
@pytest.mark.parametrize("dt", ["float32", "float64"])
def test_special_values_give_their_results_without_a_warning(backend, dt):
    """NaN, infinite and extreme values in logits, gradients and targets give
    the contract's results (a row with a NaN, a ``+inf`` or only ``-inf``: NaN
    in that row only) and no NumPy warning, with warnings as errors: the
    numpy backend warned from its products and sums (``inf * 0`` in a
    gradient, ``inf - inf``) where the numba backend and PyTorch say nothing."""
    big = float(np.finfo(dt).max)
    x = np.array(
        [
            [np.nan, 0, 1],
            [np.inf, 0, 1],
            [-np.inf, -np.inf, -np.inf],
            [big, -big, 0],
            [0, 1, 2],
            [-np.inf, 0, 1],
        ],
        dt,
    )
    nan_rows, fine_rows = [0, 1, 2], [3, 4, 5]
    g = np.array([[1, 2, 3]] * 3 + [[np.inf, 1, 1], [1, -np.inf, 1], [big, big, 1]], dt)
    t = np.array([0, 1, 2, 2, 1, 1])
    p = np.full(x.shape, 1 / 3, dt)
    kw = {"backend": backend}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = sc.softmax(x, **kw)
        ls = sc.log_softmax(x, **kw)
        lse = sc.logsumexp(x, **kw)
        jac = sc.softmax_jacobian(x, **kw)
        ljac = sc.log_softmax_jacobian(x, **kw)
        sb = sc.softmax_backward(g, s, **kw)
        lb = sc.log_softmax_backward(g, ls, **kw)
        ce = sc.cross_entropy(x, t, reduction="none", label_smoothing=0.1, **kw)
        cep, gp = sc.cross_entropy_with_grad(x, p, reduction="none", **kw)
        _, gi = sc.cross_entropy_with_grad(x, t, weight=np.array([1, 0, 2.0]), **kw)
    for name, r in (("softmax", s), ("log_softmax", ls), ("jacobian", jac),
                    ("log_softmax_jacobian", ljac), ("gradient", gp)):  # fmt: skip
        assert np.isnan(r[nan_rows]).all(), name
        assert not np.isnan(r[fine_rows]).any(), name
    for name, r in (("logsumexp", lse), ("loss", ce), ("prob loss", cep)):
        assert np.isnan(r[nan_rows]).all(), name
        assert not np.isnan(r[fine_rows]).any(), name
    # a row's gradient is its own, whatever the others' losses; row 1's target
    # has weight 0: it carries no weight, so its gradient is 0 (README)
    assert np.isnan(gi[[0, 2]]).all()
    assert (gi[1] == 0).all()
    assert np.isfinite(gi[fine_rows]).all()
    # the products, as the formulas in float64 give them (inf * 0 is NaN)
    with np.errstate(all="ignore"):
        s64, g64 = s.astype(np.float64), g.astype(np.float64)
        want_sb = s64 * (g64 - (g64 * s64).sum(axis=1, keepdims=True))
        want_lb = g64 - np.exp(ls.astype(np.float64)) * g64.sum(axis=1, keepdims=True)
        want_sb, want_lb = want_sb.astype(dt), want_lb.astype(dt)  # past it: inf
    rtol = 1e-6 if dt == "float32" else 1e-12
    np.testing.assert_allclose(sb, want_sb, rtol=rtol, equal_nan=True)
    np.testing.assert_allclose(lb, want_lb, rtol=rtol, equal_nan=True)


@pytest.mark.parametrize("backend", _host_backends())
@pytest.mark.parametrize("n", [4, 200])  # a sum in Python, one in NumPy
@pytest.mark.parametrize("kind", ["index", "probs"])  # numba: fused, general path
def test_reduced_loss_of_special_rows_warns_nothing(backend, n, kind):
    """A ``"mean"`` or ``"sum"`` over row losses of ``+inf`` and ``-inf`` (a
    negative class weight or target) is NaN, and one past float64's range
    ``inf``, with no NumPy warning: the last case that warned (NumPy's sum of
    the loss rows)."""
    x = np.zeros((n, 3))
    x[:, 0] = -np.inf  # each row's loss at target 0 is +inf
    t = np.zeros(n, dtype=np.int64)
    t[1::2] = 1  # rows 1, 3, ...: target 1, weight -1, logit -inf: loss -inf
    x[1::2, 1] = -np.inf
    w = np.array([1.0, -1.0, 1.0])
    big = np.zeros((n, 2))
    big[:, 1] = -1.5e308  # loss 1.5e308 a row at target 1: the sum passes 1.8e308
    tb = np.ones(n, dtype=np.int64)
    if kind == "index":
        kw = {"backend": backend, "weight": w}
    else:  # the same losses from probability targets: w[t] at t, else 0
        t = np.eye(3)[t] * w[t][:, None]
        tb = np.eye(2)[tb]
        kw = {"backend": backend}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = sc.cross_entropy(x, t, reduction="none", **kw)
        got_sum = sc.cross_entropy(x, t, reduction="sum", **kw)
        got_mean = sc.cross_entropy(x, t, reduction="mean", **kw)
        with_grad, _ = sc.cross_entropy_with_grad(x, t, reduction="sum", **kw)
        kw.pop("weight", None)
        big_rows = sc.cross_entropy(big, tb, reduction="none", **kw)
        big_sum = sc.cross_entropy(big, tb, reduction="sum", **kw)
        big_mean, _ = sc.cross_entropy_with_grad(big, tb, reduction="mean", **kw)
    # the rows themselves: +inf and -inf, the premise of the sums below
    assert np.isposinf(rows[0::2]).all()
    assert np.isneginf(rows[1::2]).all()
    for got in (got_sum, got_mean, with_grad):
        assert type(got) is np.float64
        assert np.isnan(got)
    np.testing.assert_array_equal(big_rows, np.full(n, 1.5e308))
    # the sum passes the range; the mean divides that sum, as PyTorch's does
    assert np.isposinf(big_sum)
    assert np.isposinf(big_mean)


@pytest.mark.parametrize("backend", _host_backends())
def test_linear_ce_underflow_under_a_raising_errstate(backend):
    """Products of tiny features underflow to 0 or subnormals, which NumPy
    ignores by default; under a caller's ``np.errstate(all="raise")`` the GEMMs
    raised midway, after ``out=``'s first chunk was written. They give the
    result, as the float64 formula does with underflow ignored."""
    x = np.array([[1e-200, 1.0], [0.5, 1e-200], [1.0, -1.0]])
    w = np.array([[1e-200, 0.0], [0.0, 1.0], [1e-150, 1e-160]])
    t = np.array([0, 2, 1])
    outs = (np.full_like(x, 7.0), np.full_like(w, 7.0), None)
    with np.errstate(all="raise"):
        loss, (dx, dw, _) = sc.linear_cross_entropy_with_grad(
            x, w, t, chunk_size=1, out=outs, backend=backend
        )
    z = x @ w.T
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    want = np.mean(-np.log(p[np.arange(3), t]))
    g = p.copy()
    g[np.arange(3), t] -= 1
    g /= 3
    np.testing.assert_allclose(float(loss), want, rtol=1e-14)
    np.testing.assert_allclose(dx, g @ w, rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(dw, g.T @ x, rtol=1e-14, atol=1e-300)
    assert dx is outs[0]
    assert dw is outs[1]


@pytest.mark.parametrize("backend", _host_backends())
def test_float16_results_under_a_raising_errstate(backend):
    """float32 results that are float16 subnormals or 0 (``exp(-20)``) are
    cast under the core's own ``errstate``: a caller's ``all="raise"`` raised
    from that cast on the numpy backend after ``out=`` was written."""
    x = np.array([[0.0, -20.0, -9.0], [1.0, 2.0, -30.0]], np.float16)
    t = np.array([1, 2])
    want_p = _softmax64(x)
    with np.errstate(all="raise"):
        out = np.full_like(x, 7)
        p = sc.softmax(x, out=out, backend=backend)
        lp = sc.log_softmax(x, backend=backend)
        jac = sc.softmax_jacobian(x, backend=backend)
        loss, grad = sc.cross_entropy_with_grad(x, t, reduction="none", backend=backend)
    assert p is out
    # float16 results: the float64 values rounded once more, within 1 ULP
    for got, want in (
        (p, want_p),
        (lp, np.log(want_p)),
        (grad, want_p - np.eye(3)[t]),
        (loss, -np.log(want_p[np.arange(2), t])),
    ):
        assert got.dtype == np.float16
        ulp = np.spacing(np.abs(want.astype(np.float16)))
        assert (np.abs(got - want) <= ulp).all(), (got, want)
    assert jac.shape == (2, 3, 3)
