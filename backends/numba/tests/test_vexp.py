"""Accuracy of the vectorisable exp/log in ULPs, and their special values.

References: mpmath at 120 bits for the float64 functions; NumPy's float64 exp
(< 1 float64 ULP, so exact to ~2**-29 float32 ULP) for the float32 ones.
Stated tolerances: exp64 and log64 < 1 ULP, exp32 < 1.5 ULP (measured on 400k
samples: 0.88, 0.73 and 1.004 ULP; NumPy's float32 exp: 2.4 ULP on the same
samples). ``exp32_nonpos`` and ``exp64_nonpos`` must
equal ``exp32`` and ``exp64`` bit for bit on their whole domain, and so must
``exp32_neg`` and ``exp64_neg`` for every argument that is not positive.
"""

import itertools

import mpmath
import numpy as np
from numba import njit

from softcore_numba._vexp import (
    EXP32_NONPOS_MIN,
    EXP32_ZERO_BELOW,
    EXP64_NONPOS_MIN,
    EXP64_ZERO_BELOW,
    exp32,
    exp32_neg,
    exp32_nonpos,
    exp64,
    exp64_neg,
    exp64_nonpos,
    log64,
)

TINY64 = np.finfo(np.float64).tiny
TINY32 = np.finfo(np.float32).tiny


def _mapped(f):
    """A jitted loop ``out[i] = f(x[i])`` for the jitted scalar function ``f``.
    Not cached on disk: a cached loop keeps the code of the ``f`` it inlined
    when ``f`` changes since (numba checks only this file's timestamp), so a
    test would pass on a function that no longer exists."""

    @njit
    def run(x, out):
        for i in range(x.size):
            out[i] = f(x[i])

    return run


_map_exp64 = _mapped(exp64)
_map_log64 = _mapped(log64)
_map_exp32 = _mapped(exp32)
_map_exp32_nonpos = _mapped(exp32_nonpos)
_map_exp64_nonpos = _mapped(exp64_nonpos)
_map_exp32_neg = _mapped(exp32_neg)
_map_exp64_neg = _mapped(exp64_neg)


def _apply(kernel, x, dtype):
    out = np.empty(x.shape, dtype)
    kernel(x, out)
    return out


def _ulp64(y, exact):
    """|y - exact| in units of the float64 spacing at ``exact`` (mpf)."""
    r = abs(float(exact))
    unit = np.spacing(r) if r >= TINY64 else 5e-324
    return float(abs(mpmath.mpf(float(y)) - exact) / unit)


def _ulp32(y, exact64):
    e = np.abs(exact64)
    unit = np.spacing(e.astype(np.float32)).astype(np.float64)
    unit[e < TINY32] = 2.0**-149
    return np.abs(y.astype(np.float64) - exact64) / unit


def test_exp64_ulp_whole_range(rng):
    mpmath.mp.prec = 120
    x = np.concatenate(
        [
            rng.uniform(-745.13, 709.78, 3000),
            rng.uniform(-1.0, 1.0, 500),
            rng.uniform(-1e-8, 1e-8, 100),
            rng.uniform(-745.13, -708.0, 500),  # subnormal results
            rng.uniform(700.0, 709.78, 300),
        ]
    )
    y = _apply(_map_exp64, x, np.float64)
    errs = [_ulp64(y[i], mpmath.exp(mpmath.mpf(x[i]))) for i in range(x.size)]
    assert max(errs) < 1.0, f"exp64: max error {max(errs):.3f} ULP, expected < 1"


def test_log64_ulp_whole_range(rng):
    mpmath.mp.prec = 120
    x = np.concatenate(
        [
            np.exp(rng.uniform(-744.0, 709.0, 3000)),
            rng.uniform(0.5, 2.0, 500),
            1.0 + rng.uniform(-1e-6, 1e-6, 100),
            rng.uniform(5e-324, TINY64, 200),  # subnormal arguments
        ]
    )
    y = _apply(_map_log64, x, np.float64)
    errs = [_ulp64(y[i], mpmath.log(mpmath.mpf(x[i]))) for i in range(x.size)]
    assert max(errs) < 1.0, f"log64: max error {max(errs):.3f} ULP, expected < 1"


def test_exp32_ulp_whole_range(rng):
    x32 = rng.uniform(-103.97, 88.72, 400_000).astype(np.float32)
    x32 = np.concatenate([x32, np.float32(rng.uniform(-1, 1, 10_000))])
    y = _apply(_map_exp32, x32, np.float32)
    exact = np.exp(x32.astype(np.float64))
    ok = exact < float(np.finfo(np.float32).max)
    err = _ulp32(y[ok], exact[ok]).max()
    assert err < 1.5, f"exp32: max error {err:.3f} ULP, expected < 1.5"


SPECIAL64 = np.array(
    [
        np.nan,
        np.inf,
        -np.inf,
        0.0,
        -0.0,
        1e-300,
        709.78,
        709.79,
        710.0,
        1e308,
        -708.4,
        -740.0,
        -745.13,
        -745.14,
        -746.0,
        -1e308,
    ]
)


def test_exp64_special_values():
    with np.errstate(over="ignore"):
        expected = np.exp(SPECIAL64)
    got = _apply(_map_exp64, SPECIAL64, np.float64)
    np.testing.assert_array_equal(got, expected)


def test_log64_special_values():
    x = np.array(
        [
            np.nan,
            np.inf,
            -np.inf,
            0.0,
            -0.0,
            -1.0,
            5e-324,
            TINY64,
            1.0,
            2.0,
            np.finfo(np.float64).max,
        ]
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.log(x)
    got = _apply(_map_log64, x, np.float64)
    np.testing.assert_array_equal(got, expected)


def test_exp32_special_values():
    x = np.array(
        [
            np.nan,
            np.inf,
            -np.inf,
            0.0,
            88.72,
            88.73,
            1e30,
            -87.3,
            -103.0,
            -103.97,
            -104.0,
            -1e30,
        ],
        np.float32,
    )
    with np.errstate(over="ignore"):
        expected = np.exp(x.astype(np.float64)).astype(np.float32)
    got = _apply(_map_exp32, x, np.float32)
    # values are compared to within 1 ULP, classes (nan, inf, 0) exactly
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
    np.testing.assert_array_equal(got == 0, expected == 0)
    fin = np.isfinite(expected)
    np.testing.assert_array_max_ulp(got[fin], expected[fin], maxulp=1)


def _float32_chunks(lo, hi, size=1 << 22):
    """Every float32 in ``[lo, hi]`` (both of one sign), ``size`` at a time:
    ``[-1e-3, -0.0]`` alone holds 982 million of them (16 MiB a chunk, where
    one array of them took 4 GiB and the test's peak some 20 GiB)."""
    a, b = (int(v) for v in np.float32([lo, hi]).view(np.int32))
    a, b = min(a, b), max(a, b)
    for s in range(a, b + 1, size):
        yield np.arange(s, min(b + 1, s + size), dtype=np.int32).view(np.float32)


def test_exp32_rounds_to_zero_exactly_below_its_bound():
    """Every float32 in [-104.5, -103.5] against NumPy's float64 exp rounded to
    float32: zero exactly where that is (below ``EXP32_ZERO_BELOW``, where the
    result is now a select, not subnormal arithmetic), and within an ULP of
    the smallest subnormals above it; the bound is tight (the smallest
    subnormal at it, zero one float below)."""
    (x,) = _float32_chunks(-104.5, -103.5)
    got = _apply(_map_exp32, x, np.float32)
    want = np.exp(x.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(got == 0, want == 0)
    np.testing.assert_array_equal(got == 0, x < EXP32_ZERO_BELOW)
    assert (np.abs(got.astype(float) - want) <= 2.0**-149).all()
    edge = np.float32([EXP32_ZERO_BELOW, np.nextafter(EXP32_ZERO_BELOW, -np.inf)])
    assert _apply(_map_exp32, edge, np.float32).tolist() == [2.0**-149, 0.0]


def test_exp64_rounds_to_zero_exactly_below_its_bound(rng):
    """``EXP64_ZERO_BELOW`` is where the exact exp crosses half the smallest
    subnormal (mpmath): exp64 gives that subnormal at the bound and +0 one
    float below; the exact exp is monotone, so 20000 floats either side and a
    sample further down are zero exactly where they are below it."""
    with mpmath.workdps(40):
        half = mpmath.mpf(2) ** -1075
        assert mpmath.exp(mpmath.mpf(EXP64_ZERO_BELOW)) > half
        below = np.nextafter(EXP64_ZERO_BELOW, -np.inf)
        assert mpmath.exp(mpmath.mpf(float(below))) < half
    edge = np.array([EXP64_ZERO_BELOW, below])
    assert _apply(_map_exp64, edge, np.float64).tolist() == [5e-324, 0.0]
    bits = np.float64(EXP64_ZERO_BELOW).view(np.int64)
    x = np.concatenate(
        [
            (bits + np.arange(-20_000, 20_000)).view(np.float64),
            rng.uniform(-800.0, -740.0, 100_000),
        ]
    )
    got = _apply(_map_exp64, x, np.float64)
    np.testing.assert_array_equal(got == 0, x < EXP64_ZERO_BELOW)


def test_exp32_nonpos_is_exp32_on_its_domain(rng):
    """Every float32 in the last unit above the domain's lower end and the first
    thousandth below 0, a sample of the rest, and NaN: the same bits as the
    clamped exp."""
    lo = float(EXP32_NONPOS_MIN)
    parts = itertools.chain(
        _float32_chunks(lo, lo + 1.0),
        _float32_chunks(-1e-3, -0.0),
        [
            rng.uniform(lo, 0.0, 1_000_000).astype(np.float32),
            np.float32([lo, -0.0, 0.0, np.nan, -np.nan]),
        ],
    )
    n = 0
    for x in parts:
        got = _apply(_map_exp32_nonpos, x, np.float32)
        want = _apply(_map_exp32, x, np.float32)
        np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))
        n += x.size
    assert n > 980_000_000  # the chunks covered the ranges (982.8 million)
    # below the domain the single scaling is wrong (2**n underflows): the
    # kernels must never take it there, which the domain check sees to
    below = np.float32(lo - 1.0)
    assert _apply(_map_exp32_nonpos, np.float32([below]), np.float32)[0] != np.exp(
        np.float64(below)
    ).astype(np.float32)


def test_exp64_nonpos_is_exp64_on_its_domain(rng):
    lo = EXP64_NONPOS_MIN
    x = np.concatenate(
        [
            np.nextafter(lo, 0.0) + rng.uniform(0.0, 1.0, 100_000),
            -rng.uniform(0.0, 1e-3, 100_000),
            rng.uniform(lo, 0.0, 1_000_000),
            [lo, -0.0, 0.0, np.nan, -np.nan, -5e-324],
        ]
    )
    got = _apply(_map_exp64_nonpos, x, np.float64)
    want = _apply(_map_exp64, x, np.float64)
    np.testing.assert_array_equal(got.view(np.int64), want.view(np.int64))


def test_exp32_neg_is_exp32_where_not_positive(rng):
    """Every float32 from -110 to -80 (the subnormal results, the zero bound,
    the unclamped domain's lower end), a million from (-1, 0], 4 million
    float32 bit patterns drawn from all negative ones (NaNs and -inf among
    them) and the special values: the same bits as the clamped exp, and within
    its error of NumPy's float64 exp. (All 2^31 non-positive float32 were
    compared once, by a one-off script: no difference.)"""
    drawn = rng.integers(-(2**31), 0, 1 << 22, dtype=np.int64).astype(np.int32)
    parts = itertools.chain(
        _float32_chunks(-110.0, -80.0),
        [
            -rng.random(1_000_000).astype(np.float32),
            drawn.view(np.float32),
            np.float32([0.0, -0.0, -np.inf, np.nan, -np.nan, EXP32_ZERO_BELOW, -3e38]),
        ],
    )
    n = worst = 0
    for x in parts:
        got = _apply(_map_exp32_neg, x, np.float32)
        np.testing.assert_array_equal(
            got.view(np.int32), _apply(_map_exp32, x, np.float32).view(np.int32)
        )
        with np.errstate(invalid="ignore"):  # signalling NaNs among the drawn
            exact = np.exp(x.astype(np.float64))
        ok = np.isfinite(exact)
        worst = max(worst, float(_ulp32(got[ok], exact[ok]).max(initial=0.0)))
        n += x.size
    assert n > 8_900_000  # the chunks covered the ranges (8.93 million)
    assert worst < 1.5, f"exp32_neg: max error {worst:.3f} ULP, expected < 1.5"


def test_exp64_neg_is_exp64_where_not_positive(rng):
    """The float64 bound's neighbourhood (every float64 within 2**20 of it),
    the subnormal results' range, the unclamped domain's lower end, a sample of
    all negative doubles and the special values: the same bits as exp64, and
    within an ULP of mpmath on a sample of the subnormal results."""
    b = np.int64(np.float64(EXP64_ZERO_BELOW).view(np.int64))
    x = np.concatenate(
        [
            (b + np.arange(-(1 << 20), 1 << 20)).view(np.float64),
            rng.uniform(-746.0, -700.0, 1_000_000),
            np.nextafter(EXP64_NONPOS_MIN, 0.0) - rng.uniform(0.0, 1.0, 100_000),
            -rng.uniform(0.0, 1e-3, 100_000),
            rng.integers(-(2**63), 0, 1_000_000).view(np.float64),
            [0.0, -0.0, -np.inf, np.nan, -np.nan, -5e-324, -1e308, EXP64_ZERO_BELOW],
        ]
    )
    got = _apply(_map_exp64_neg, x, np.float64)
    np.testing.assert_array_equal(
        got.view(np.int64), _apply(_map_exp64, x, np.float64).view(np.int64)
    )
    mpmath.mp.prec = 120
    for v in rng.uniform(-745.0, -708.5, 200):
        y = _apply(_map_exp64_neg, np.float64([v]), np.float64)[0]
        assert _ulp64(y, mpmath.exp(mpmath.mpf(float(v)))) < 1.0, v
