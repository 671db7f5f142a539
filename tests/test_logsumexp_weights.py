"""``logsumexp(x, b=..., return_sign=...)``: SciPy's and JAX's weighted,
signed logsumexp, checked against mpmath and against the documented rules.

The reference sums ``b * exp(x)`` in 60-digit arithmetic from the exact
values of the inputs. The tolerance is the problem's own conditioning, as the
kit's logsumexp metric takes it: each term carries a relative error of a few
units of ``1 + |x|`` (``exp`` of a rounded difference), and the sum amplifies
it by ``sum|terms| / |sum|``, which is large only where positive and negative
terms cancel.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import softcore as sc
from softcore.testing import _oracle


def _backends():
    names = [b.name for b in sc.list_backends() if b.available is True]
    return [n for n in ("numpy", "numba") if n in names]


BACKENDS = _backends()


def _reference(x_row, b_row):
    """``(log|s|, sign(s), bound)`` of ``s = sum b exp(x)`` for one slice, and
    the error bound in units of the compute dtype's epsilon."""
    value, sign, spread, spread_x = _oracle.weighted_logsumexp_row(x_row, b_row)
    if sign == 0:
        return -math.inf, 0.0, 0.0
    return value, sign, spread + spread_x + abs(value)


def _check_against_mpmath(x, b, res, sign, eps, what):
    for i in range(x.shape[0]):
        want, want_sign, bound = _reference(x[i], b[i])
        assert sign[i] == want_sign, f"{what} row {i}: sign {sign[i]}, want {want_sign}"
        if want == -math.inf:
            assert res[i] == -math.inf, f"{what} row {i}: {res[i]}, want -inf"
            continue
        err = abs(float(res[i]) - want)
        assert err <= 4 * eps * bound, (
            f"{what} row {i}: {res[i]!r}, mpmath {want!r}: error {err:.3g} over "
            f"the bound {4 * eps * bound:.3g}"
        )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["positive", "signed", "cancelling"])
def test_weighted_logsumexp_matches_mpmath(backend, dtype, kind):
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((40, 9)) * 4).astype(dtype)
    if kind == "positive":
        b = rng.uniform(0, 3, x.shape).astype(dtype)
        b[rng.random(x.shape) < 0.2] = 0
    elif kind == "signed":
        b = rng.standard_normal(x.shape).astype(dtype)
    else:  # pairs of nearly equal terms of opposite signs
        x[:, 1] = x[:, 0]
        b = rng.standard_normal(x.shape).astype(dtype) * 1e-3
        b[:, 0] = 1
        b[:, 1] = -1 + rng.uniform(-1e-3, 1e-3, x.shape[0]).astype(dtype)
    res, sign = sc.logsumexp(x, b=b, return_sign=True, backend=backend)
    assert res.dtype == sign.dtype == np.dtype(dtype)
    eps = float(np.finfo(dtype).eps)
    _check_against_mpmath(x, b, res, sign, eps, f"{backend} {dtype} {kind}")
    plain = sc.logsumexp(x, b=b, backend=backend)
    np.testing.assert_array_equal(plain, np.where(sign < 0, np.nan, res))


@pytest.mark.parametrize("backend", BACKENDS)
def test_weighted_logsumexp_axes_keepdims_and_broadcasting_match_scipy(backend):
    special = pytest.importorskip("scipy.special", reason="SciPy is the reference")
    rng = np.random.default_rng(12)
    x = rng.standard_normal((3, 4, 5)) * 3
    cases = [
        (-1, rng.uniform(0.1, 2, 5)),
        (0, rng.uniform(0.1, 2, (3, 1, 1))),
        (1, rng.standard_normal((3, 4, 5))),
        ((0, 2), rng.uniform(0.1, 2, (4, 1))),
        (None, rng.standard_normal((4, 5))),
        (-1, 2.5),
    ]
    for axis, b in cases:
        for keepdims in (False, True):
            got, got_sign = sc.logsumexp(
                x, axis=axis, b=b, keepdims=keepdims, return_sign=True, backend=backend
            )
            want, want_sign = special.logsumexp(
                x, axis=axis, b=b, keepdims=keepdims, return_sign=True
            )
            assert np.shape(got) == np.shape(want), (axis, keepdims)
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
            np.testing.assert_array_equal(got_sign, want_sign)
    assert np.ndim(sc.logsumexp(x, axis=None, b=1.5, backend=backend)) == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_return_sign_without_weights(backend):
    x = np.array([[1.0, 2.0, 3.0], [np.nan, 0.0, 0.0], [-np.inf, -np.inf, -np.inf]])
    res, sign = sc.logsumexp(x, return_sign=True, backend=backend)
    np.testing.assert_array_equal(res, sc.logsumexp(x, backend=backend))
    np.testing.assert_array_equal(sign, [1.0, np.nan, np.nan])
    empty, empty_sign = sc.logsumexp(
        np.zeros((2, 0)), return_sign=True, backend=backend
    )
    np.testing.assert_array_equal(empty, [-np.inf, -np.inf])
    np.testing.assert_array_equal(empty_sign, [0.0, 0.0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_weighted_special_values(backend):
    inf, nan = np.inf, np.nan
    x = np.array(
        [
            [0.0, 0.0],  # cancels exactly
            [1.0, 2.0],  # negative sum
            [-inf, -inf],  # no nonzero term
            [3.0, 4.0],  # b zero everywhere: no nonzero term
            [nan, 0.0],  # NaN where b is 0: no term
            [inf, 0.0],  # +inf where b is 0: no term
            [1.0, 0.0],  # NaN factor
            [1.0, 0.0],  # +inf factor
            [-inf, 5.0],  # -inf is a zero term
            [5.0, -inf],  # no positive term
            [2.0, 1.0],  # every factor negative
            [1e4, 1e4],  # large, no overflow
        ]
    )
    b = np.array(
        [
            [1.0, -1.0],
            [1.0, -1.0],
            [1.0, -2.0],
            [0.0, 0.0],
            [0.0, 1.0],
            [0.0, 1.0],
            [nan, 1.0],
            [inf, 1.0],
            [-7.0, 2.0],
            [-2.0, 7.0],
            [-1.0, -1.0],
            [1.0, 3.0],
        ]
    )
    res, sign = sc.logsumexp(x, b=b, return_sign=True, backend=backend)
    want = [
        -inf,
        math.log(math.e**2 - math.e),
        nan,
        nan,
        0.0,
        0.0,
        nan,
        nan,
        5.0 + math.log(2.0),
        5.0 + math.log(2.0),
        math.log(math.e**2 + math.e),
        1e4 + math.log(4.0),
    ]
    np.testing.assert_allclose(res, want, rtol=1e-15)
    np.testing.assert_array_equal(sign, [0, -1, nan, nan, 1, 1, nan, nan, 1, -1, -1, 1])
    plain = sc.logsumexp(x, b=b, backend=backend)
    assert np.isnan(plain[[1, 9, 10]]).all()
    assert plain[0] == -inf


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_plain_call_agrees_with_the_general_path(backend, dtype):
    """A plain call (C-contiguous ``x`` and ``b`` of one dtype and shape, the
    last axis) goes to the backend's hook at once; any other layout takes the
    general steps. Both give the same bits, the NaN of a negative sum and the
    scalar of a 1-D slice included."""
    rng = np.random.default_rng(17)
    x = (rng.standard_normal((50, 13)) * 3).astype(dtype)
    b = rng.standard_normal((50, 13)).astype(dtype)
    x[0, 3], x[1, :], b[2, :], b[3, 5] = np.nan, -np.inf, 0, np.inf
    strided = np.repeat(b, 2, axis=1)[:, ::2]  # b's values, another layout
    assert not strided.flags.c_contiguous
    for sign in (False, True):
        plain = sc.logsumexp(x, b=b, return_sign=sign, backend=backend)
        general = sc.logsumexp(x, b=strided, return_sign=sign, backend=backend)
        np.testing.assert_array_equal(plain, general)
        for ax in (None, 0, -1):
            one = sc.logsumexp(x[4], ax, b=b[4], return_sign=sign, backend=backend)
            kept = sc.logsumexp(
                x[4], ax, b=b[4], keepdims=True, return_sign=sign, backend=backend
            )
            np.testing.assert_array_equal(one, np.asarray(kept)[..., 0])
            assert np.ndim(one[0] if sign else one) == 0
    res, sign = sc.logsumexp(x, b=b, return_sign=True, backend=backend)
    negative = sign < 0
    assert negative.any()
    assert np.isnan(res).any()
    no_sign = sc.logsumexp(x, b=b, backend=backend)
    assert np.isnan(no_sign[negative]).all()
    np.testing.assert_array_equal(no_sign[~negative], res[~negative])
    with pytest.raises(ValueError, match="axis 1 is out of bounds"):
        sc.logsumexp(x[0], 1, b=b[0], backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_factors_shared_by_every_row_are_not_copied(backend, dtype, monkeypatch):
    """Factors that do not vary along the batch (a per-class weight vector, a
    scalar) go to the backend's hook as one row for every row: the same bits
    as the same factors copied to ``x``'s shape, on the plain call's path
    (``(C,)``, ``(1, C)``) and on the general one (other axes, more
    dimensions, ``keepdims``); factors that vary along the batch are copied."""
    rng = np.random.default_rng(19)
    x = (rng.standard_normal((3, 40, 9)) * 3).astype(dtype)
    row = rng.standard_normal(9).astype(dtype)
    row[2] = 0  # a removed term
    x[0, 5, 2] = np.nan  # under the zero factor: not a term
    col = rng.standard_normal((40, 1)).astype(dtype)
    cases = [
        (x[0], row, {}),  # the plain call's path
        (x[0], row[None, :], {}),
        (x, row, {}),  # the general path
        (x, row, {"keepdims": True}),
        (x, col, {"axis": (1, 2)}),
        (x, col, {"axis": 1}),
        (x, np.array(1.5, dtype), {"axis": None}),
        (x, rng.standard_normal((3, 1, 9)).astype(dtype), {}),  # varies: copied
    ]
    be = sc.get_backend(backend)
    hook = getattr(be, "logsumexp_weighted_rows", None)
    seen = []
    if hook is not None:  # record the factors' shape the hook is given

        def spy(x2, b2, out, sign):
            seen.append((x2.shape, b2.shape))
            hook(x2, b2, out, sign)

        monkeypatch.setattr(be, "logsumexp_weighted_rows", spy, raising=False)
    for i, (xs, b, kw) in enumerate(cases):
        full = np.broadcast_to(b, xs.shape).copy()
        for sign in (False, True):
            del seen[:]
            got = sc.logsumexp(xs, b=b, return_sign=sign, backend=backend, **kw)
            if hook is not None:
                ((x_shape, b_shape),) = seen
                want_rows = x_shape[0] if i == len(cases) - 1 else 1
                assert b_shape == (want_rows, x_shape[1]), f"case {i}"
            want = sc.logsumexp(xs, b=full, return_sign=sign, backend=backend, **kw)
            np.testing.assert_array_equal(got, want, err_msg=f"case {i}")
        # the full factors' values are held to mpmath by the tests above
        ref = sc.logsumexp(xs, b=full, return_sign=True, backend="numpy", **kw)
        np.testing.assert_array_equal(got[1], ref[1], err_msg=f"case {i}")


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba backend not installed")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("c", [1, 5, 15, 16, 31, 32, 40])
def test_a_row_does_not_depend_on_its_batch(dtype, c):
    """Short rows go in transposed tiles, longer ones a row at a time, and a
    large call in threads: each row's result is the same bits as that row
    computed alone, whatever tile or task it fell in."""
    rng = np.random.default_rng(c)
    x = (rng.standard_normal((5000, c)) * 3).astype(dtype)
    b = rng.standard_normal((5000, c)).astype(dtype)
    b[::7, 0] = 0
    x[::11, -1] = np.nan
    res, sign = sc.logsumexp(x, b=b, return_sign=True, backend="numba")
    for r in (0, 1, 7, 11, 2999, 4999):
        one, one_sign = sc.logsumexp(
            x[r : r + 1], b=b[r : r + 1], return_sign=True, backend="numba"
        )
        np.testing.assert_array_equal(res[r : r + 1], one, err_msg=f"row {r}")
        np.testing.assert_array_equal(sign[r : r + 1], one_sign, err_msg=f"row {r}")


def test_weighted_dtypes_follow_numpy_promotion():
    x32 = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    assert sc.logsumexp(x32, b=2).dtype == np.float32  # a Python number is weak
    assert sc.logsumexp(x32, b=np.float32(2)).dtype == np.float32
    assert sc.logsumexp(x32, b=np.float64(2)).dtype == np.float64
    assert sc.logsumexp(x32, b=np.ones(4)).dtype == np.float64
    assert sc.logsumexp(x32, b=np.ones(4, np.int8)).dtype == np.float64
    assert sc.logsumexp(x32.astype(np.int32), b=1.0).dtype == np.float64
    b16 = np.array([0.5, 1, 2, -0.25], np.float16)
    x16 = x32.astype(np.float16)
    res, sign = sc.logsumexp(x16, b=b16, return_sign=True)
    assert res.dtype == sign.dtype == np.float16
    # computed in float32 and rounded once, as every float16 result is
    res32, sign32 = sc.logsumexp(
        x16.astype(np.float32), b=b16.astype(np.float32), return_sign=True
    )
    np.testing.assert_array_equal(res, res32.astype(np.float16))
    np.testing.assert_array_equal(sign, sign32.astype(np.float16))


def test_weighted_bad_input_is_refused_before_any_work():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"b has shape \(4,\), which does not "):
        sc.logsumexp(x, b=np.ones(4))
    with pytest.raises(ValueError, match=r"b has shape \(3, 3\)"):
        sc.logsumexp(x, b=np.ones((3, 3)))  # b broadcasts to x, not x to b
    with pytest.raises(TypeError, match="b has dtype complex128"):
        sc.logsumexp(x, b=np.ones(3, complex))
    with pytest.raises(TypeError, match="b has dtype"):
        sc.logsumexp(x, b=np.array(["a", "b", "c"]))
    with pytest.raises(ValueError, match="axis 2 is out of bounds"):
        sc.logsumexp(x, axis=2, b=1.0)
    with pytest.raises(ValueError, match="names an axis more than once"):
        sc.logsumexp(x, axis=(0, 0), b=1.0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_weighted_logsumexp_wide_rows_and_extreme_factors(backend, dtype):
    """Rows of 3000 classes, and factors near the dtype's range, against
    mpmath: both paths scale large factors by a power of two so that no sum
    can overflow (the numba kernel from 1, the core's formula past 2**600),
    and sum in float64."""
    rng = np.random.default_rng(13)
    big = 1e300 if dtype == "float64" else 1e37
    x = (rng.standard_normal((6, 3000)) * 5).astype(dtype)
    b = rng.standard_normal((6, 3000)).astype(dtype)
    b[1] = np.abs(b[1]) * big  # each term near the range, thousands of them
    b[2] *= big
    b[3] = np.abs(b[3]) / big  # tiny factors
    b[4, ::2] = 0  # half the terms removed
    b[5] = np.abs(b[5])
    res, sign = sc.logsumexp(x, b=b, return_sign=True, backend=backend)
    eps = float(np.finfo(dtype).eps)
    _check_against_mpmath(x, b, res, sign, eps, f"{backend} {dtype} wide")
