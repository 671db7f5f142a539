"""Vectorisable ``exp`` and ``log`` for Numba kernels.

Numba lowers ``np.exp``/``math.exp`` to a scalar libm call unless the SVML
patched LLVM is present, which it is not in the llvmlite wheels from PyPI. A
loop that calls libm cannot be vectorised, and such kernels run several times
slower than a memory copy. The functions here are branch-free (every special
case is a ``select``), use only arithmetic, comparisons and bit casts, and are
inlined into the calling loop, so LLVM's loop and SLP vectorisers turn them into
SIMD code.

Algorithms (classic Cody-Waite range reduction plus a polynomial):

``exp64(x)``
    ``n = rint(x / ln 2)`` (magic-number rounding), ``r = x - n ln2_hi - n ln2_lo``
    with ``|r| <= ln(2)/2``, ``exp(r)`` by its Taylor series to degree 13
    (truncation error < 1e-17), and ``2**n`` built from exponent bits in two
    halves so that results in the subnormal range are rounded once. ``x`` is
    clamped to ``709.79`` first, which makes overflow give ``+inf``; below
    ``EXP64_ZERO_BELOW`` (about -745.13, ``-inf`` too), where ``exp(x)``
    rounds to ``+0``, the result is selected as ``+0`` and the arithmetic
    runs on ``0`` instead (see below); a NaN passes the compares (they are
    false) and propagates through the arithmetic.
``exp32(x)``
    the same in float32 (degree 7), for float32 arguments (zero below
    ``EXP32_ZERO_BELOW``, about -103.97).

Underflow. A product whose result is subnormal or rounds to zero costs an
Intel core a microcode assist, some hundred cycles, on every lane that has
one. Computing ``2**n`` for an argument clamped to the bottom of the range
did exactly that: a row of masked logits (``-inf``, or ``-1e4`` as attention
masks write them) took 2.4-5x its unmasked time in every op (one thread,
float32 softmax at 512x64 with half its logits ``-inf``: 51 us against 21
unmasked; PyTorch 24 us either way). Such lanes now never reach a
subnormal: their arithmetic runs on a harmless argument and the ``+0`` is a
select (23 us; the bench command's ``masked`` variant: 0.13-0.62 of the time
before, every row op and dtype, docs/benchmarks.md). The same bits as the clamped
arithmetic, for every float32 (all 2^32 compared) and around the float64
bound. Arguments whose result is itself subnormal (about -103.97 to -87.3
in float32) still pay the assist, as any exp does that produces them.
``exp32_nonpos(x)``, ``exp64_nonpos(x)``
    the same functions, bit for bit, on ``[EXP*_NONPOS_MIN, 0]`` (and NaN): no
    clamps and ``2**n`` applied in one product, since there it is a normal
    number. About 30% fewer vector instructions; what a softmax row needs, whose
    ``x - max`` is never positive, once a check has seen its smallest value.
``exp32_neg(x)``, ``exp64_neg(x)``
    the same functions, bit for bit, for every ``x <= 0`` (and NaN): what a
    row's ``x - max`` takes when its smallest value is below the unclamped
    domain (a masked row, or logits spread wider than 87). No upper clamp,
    and ``2**n`` applied in one exact product with ``2**(n + 64)`` (``+ 512``
    in float64, a normal number for every such ``n``), then one product with
    ``2**-64`` that rounds a subnormal result once, as the two halves do. One
    thread, in cache: 0.21 against 0.27 ns per float32 element (the unclamped
    one 0.175), 0.71-0.76 against 0.84-0.89 ns per float64 one. Positive
    arguments from about 43 (float32) and 354 (float64) give meaningless
    results: callers pass differences from a maximum.
``log64(x)``
    ``x = 2**e * m`` with ``m`` in ``[sqrt(1/2), sqrt(2))`` from the exponent
    bits (subnormals are scaled by ``2**54`` first), then
    ``log(m) = f - f*f/2 + s (f*f/2 + R(s*s))`` with ``f = m - 1``,
    ``s = f / (2 + f)`` and ``R`` the ``atanh`` series. ``log(0) = -inf``,
    ``log(x < 0) = NaN``, ``log(inf) = inf``, NaN is passed through.

Measured accuracy is in ``tests/test_vexp.py`` (max error below one ULP for
``exp64``/``log64`` against mpmath, ``exp32`` against float64).
"""

from __future__ import annotations

import llvmlite.ir as llir
import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import _runtime

_runtime.ensure()  # cache locator before the first @njit(cache=True)

__all__ = [
    "EXP32_NONPOS_MIN",
    "EXP32_ZERO_BELOW",
    "EXP64_NONPOS_MIN",
    "EXP64_ZERO_BELOW",
    "exp32",
    "exp32_neg",
    "exp32_nonpos",
    "exp64",
    "exp64_neg",
    "exp64_nonpos",
    "f32_bits",
    "f32_from_bits",
    "f64_bits",
    "f64_from_bits",
    "fma",
    "fmaxnum",
    "log64",
    "wide",
]

# ---------------------------------------------------------------- bit casts


@intrinsic
def f64_from_bits(typingctx, v):
    """Reinterpret an int64 as a float64 (no conversion)."""
    if v != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def f64_bits(typingctx, v):
    """Reinterpret a float64 as an int64 (no conversion)."""
    if v != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def f32_from_bits(typingctx, v):
    """Reinterpret an int32 as a float32 (no conversion)."""
    if v != types.int32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llir.FloatType())

    return types.float32(types.int32), codegen


@intrinsic
def f32_bits(typingctx, v):
    """Reinterpret a float32 as an int32 (no conversion)."""
    if v != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llir.IntType(32))

    return types.int32(types.float32), codegen


@intrinsic
def fmaxnum(typingctx, a, b):
    """``llvm.maxnum``: the larger of two floats, the other one if one is NaN."""
    if a != b or not isinstance(a, types.Float):
        return None

    def codegen(context, builder, signature, args):
        lty = args[0].type
        name = "llvm.maxnum.f32" if a == types.float32 else "llvm.maxnum.f64"
        fnty = llir.FunctionType(lty, [lty, lty])
        fn = cgutils.get_or_insert_function(builder.module, fnty, name)
        return builder.call(fn, args)

    return a(a, b), codegen


@intrinsic
def fma(typingctx, a, b, c):
    """``llvm.fma``: ``a * b + c`` rounded once (a hardware FMA where there is one)."""
    if not (a == b == c) or not isinstance(a, types.Float):
        return None

    def codegen(context, builder, signature, args):
        lty = args[0].type
        name = "llvm.fma.f32" if a == types.float32 else "llvm.fma.f64"
        fnty = llir.FunctionType(lty, [lty, lty, lty])
        fn = cgutils.get_or_insert_function(builder.module, fnty, name)
        return builder.call(fn, args)

    return a(a, b, c), codegen


VECTOR_WIDTH = 512
"""Vector width (bits) asked of LLVM for every loop of the kernels."""

_WIDTH_ATTR = f'"prefer-vector-width"="{VECTOR_WIDTH}"'


@intrinsic
def wide(typingctx):
    """Ask LLVM for ``VECTOR_WIDTH``-bit vectors in the calling function.

    LLVM tunes Intel cores with AVX-512 (Skylake-SP to Sapphire Rapids) to
    prefer 256-bit vectors, so the loop vectoriser never uses zmm registers
    there, and a loop mixing float32 and float64 (a float32 ``exp`` summed in
    float64) runs its float32 arithmetic in xmm: 4 lanes of 16. The function
    attribute ``prefer-vector-width`` overrides that for one function only,
    leaving every other numba function of the process alone. It has to be on
    the function that holds the loop (a loop helper is vectorised when its own
    library is finalised, before it is inlined anywhere); calling ``wide()``
    from an ``inline="always"`` helper marks its caller. On CPUs without
    AVX-512 it changes nothing. It is code generation only, no run-time work.
    """

    def codegen(context, builder, signature, args):
        attrs = builder.function.attributes
        if _WIDTH_ATTR not in attrs:
            # llvmlite validates attribute names against a fixed list that has
            # no string ("key"="value") attributes; its set holds and prints
            # them as they are.
            set.add(attrs, _WIDTH_ATTR)
        return context.get_dummy_value()

    return types.none(), codegen


# ---------------------------------------------------------------- exp, float64

_LOG2E = 1.4426950408889634
_LN2HI = 6.93147180369123816490e-01  # 0x3fe62e42fee00000: n * _LN2HI exact
_LN2LO = 1.90821492927058770002e-10  # 0x3dea39ef35793c76
_SHIFT = 6755399441055744.0  # 1.5 * 2**52: x + _SHIFT rounds x to an integer
_SHIFT_BITS = 0x4338000000000000
_XMAX = 709.79  # exp(_XMAX) > DBL_MAX: rounds to +inf
EXP64_ZERO_BELOW = -745.1332191019411
"""The smallest float64 whose :func:`exp64` is not ``+0`` (``5e-324``): every
argument below rounds to ``+0``."""

# 1 / k! for k = 13 .. 2
_E13 = 1.0 / 6227020800.0
_E12 = 1.0 / 479001600.0
_E11 = 1.0 / 39916800.0
_E10 = 1.0 / 3628800.0
_E9 = 1.0 / 362880.0
_E8 = 1.0 / 40320.0
_E7 = 1.0 / 5040.0
_E6 = 1.0 / 720.0
_E5 = 1.0 / 120.0
_E4 = 1.0 / 24.0
_E3 = 1.0 / 6.0
_E2 = 0.5

_FLAGS = {"contract"}


@njit(fastmath=_FLAGS, cache=True, error_model="numpy")
def _exp64_parts(x):
    """``(p, k)`` with ``exp(x) = p * 2**n``, ``n`` an integer read from ``k``'s
    bits and ``p = exp(r)`` for ``|r| <= ln(2)/2``; ``x`` must be clamped already."""
    k = x * _LOG2E + _SHIFT
    n = k - _SHIFT
    r = x - n * _LN2HI
    r = r - n * _LN2LO
    p = _E13
    p = p * r + _E12
    p = p * r + _E11
    p = p * r + _E10
    p = p * r + _E9
    p = p * r + _E8
    p = p * r + _E7
    p = p * r + _E6
    p = p * r + _E5
    p = p * r + _E4
    p = p * r + _E3
    p = p * r + _E2
    p = 1.0 + (r + (r * r) * p)
    return p, k


@njit(fastmath=_FLAGS, cache=True, error_model="numpy")
def exp64(x):
    """``exp`` of a float64, branch-free and vectorisable (< 1 ULP)."""
    zero = x < EXP64_ZERO_BELOW  # rounds to +0: no subnormal arithmetic
    xc = x
    xc = _XMAX if xc > _XMAX else xc
    xc = 0.0 if zero else xc
    p, k = _exp64_parts(xc)
    ni = f64_bits(k) - _SHIFT_BITS
    n1 = ni >> 1
    n2 = ni - n1
    y = (p * f64_from_bits((n1 + 1023) << 52)) * f64_from_bits((n2 + 1023) << 52)
    return 0.0 if zero else y  # a NaN argument went through: y is NaN


EXP64_NONPOS_MIN = -708.0
"""Lower end of :func:`exp64_nonpos`'s domain: ``n >= -1022`` there, so
``2**n`` is a normal number and ``p * 2**n`` (``p >= 1/sqrt(2)``) too."""


@njit(fastmath=_FLAGS, cache=True, error_model="numpy")
def exp64_nonpos(x):
    """:func:`exp64` for ``x`` in ``[EXP64_NONPOS_MIN, 0]`` (or NaN), bit for bit.

    There no clamp can bind and ``p * 2**n`` is a normal number, so ``2**n`` is
    built once and applied with one product (exact, as each of :func:`exp64`'s
    two products is). Other arguments give meaningless results: callers check
    the domain first (a row's ``x - max`` is never positive; its smallest value
    decides).
    """
    p, k = _exp64_parts(x)
    return p * f64_from_bits((f64_bits(k) - (_SHIFT_BITS - 1023)) << 52)


_TWO_M512 = 2.0**-512


@njit(fastmath=_FLAGS, cache=True, error_model="numpy")
def exp64_neg(x):
    """:func:`exp64` for ``x <= 0`` (or NaN), bit for bit, with one upper clamp
    and one exponent split fewer.

    ``n`` is in ``[-1075, 0]`` there, so ``2**(n + 512)`` is a normal number and
    ``p * 2**(n + 512)`` is exact; the product with ``2**-512`` is then exact for
    a normal result and rounds a subnormal one once, as :func:`exp64`'s second
    half-product does. Arguments below ``EXP64_ZERO_BELOW`` select ``+0`` and
    compute on ``0``, as there. Correct up to about ``x = 354`` (``n <= 511``);
    callers pass a difference from a maximum, never positive.
    """
    zero = x < EXP64_ZERO_BELOW
    xc = 0.0 if zero else x
    p, k = _exp64_parts(xc)
    s = f64_from_bits((f64_bits(k) - (_SHIFT_BITS - 1023 - 512)) << 52)
    y = (p * s) * _TWO_M512
    return 0.0 if zero else y


# ---------------------------------------------------------------- exp, float32

_F = np.float32
_LOG2E_F = _F(1.4426950408889634)
_LN2HI_F = _F(0.693359375)  # 0x3f318000: n * _LN2HI_F exact for |n| < 2**9
_LN2LO_F = _F(-2.12194440e-4)
_SHIFT_F = _F(12582912.0)  # 1.5 * 2**23
_SHIFT_F_BITS = 0x4B400000
_XMAX_F = _F(88.8)  # > log(FLT_MAX)
EXP32_ZERO_BELOW = _F(-103.97208)
"""The smallest float32 whose :func:`exp32` is not ``+0`` (``1e-45``): every
argument below rounds to ``+0``."""
_ZERO_F = _F(0.0)
_ONE_F = _F(1.0)
_F7 = _F(1.0 / 5040.0)
_F6 = _F(1.0 / 720.0)
_F5 = _F(1.0 / 120.0)
_F4 = _F(1.0 / 24.0)
_F3 = _F(1.0 / 6.0)
_F2 = _F(0.5)


@njit(fastmath=_FLAGS, cache=True, error_model="numpy")
def _poly32(r):
    """``exp(r)`` for ``|r| <= ln(2)/2``, in float32."""
    p = _F7
    p = p * r + _F6
    p = p * r + _F5
    p = p * r + _F4
    p = p * r + _F3
    p = p * r + _F2
    return _ONE_F + (r + (r * r) * p)


@njit(fastmath=_FLAGS, cache=True, error_model="numpy")
def _exp32_parts(x):
    """``(p, k)`` with ``exp(x) = p * 2**n``, ``n`` an integer read from ``k``'s
    bits; ``x`` must be clamped already."""
    k = x * _LOG2E_F + _SHIFT_F
    n = k - _SHIFT_F
    r = x - n * _LN2HI_F
    r = r - n * _LN2LO_F
    return _poly32(r), k


@njit(fastmath=_FLAGS, cache=True, error_model="numpy")
def _scale2_32(p, ni):
    """``p * 2**ni`` in two products, so that a subnormal result is rounded once."""
    n1 = np.int32(ni >> np.int32(1))
    n2 = np.int32(ni - n1)
    s1 = f32_from_bits(np.int32((n1 + np.int32(127)) << np.int32(23)))
    s2 = f32_from_bits(np.int32((n2 + np.int32(127)) << np.int32(23)))
    return (p * s1) * s2


@njit(fastmath=_FLAGS, cache=True, error_model="numpy")
def exp32(x):
    """``exp`` of a float32 computed in float32, branch-free and vectorisable."""
    zero = x < EXP32_ZERO_BELOW  # rounds to +0: no subnormal arithmetic
    xc = x
    xc = _XMAX_F if xc > _XMAX_F else xc
    xc = _ZERO_F if zero else xc
    p, k = _exp32_parts(xc)
    y = _scale2_32(p, np.int32(f32_bits(k) - np.int32(_SHIFT_F_BITS)))
    return _ZERO_F if zero else y  # a NaN argument went through: y is NaN


EXP32_NONPOS_MIN = -87.0
"""Lower end of :func:`exp32_nonpos`'s domain: ``n >= -126`` there, so
``2**n`` is a normal float32 (``p * 2**n`` may be subnormal: rounded once)."""


@njit(fastmath=_FLAGS, cache=True, error_model="numpy")
def exp32_nonpos(x):
    """:func:`exp32` for ``x`` in ``[EXP32_NONPOS_MIN, 0]`` (or NaN), bit for bit.

    There no clamp can bind and ``2**n`` is a normal number, so it is built once
    and applied with one product: a subnormal result is rounded once, as in
    :func:`exp32`, and a normal one is exact in both. About 30% fewer vector
    instructions than :func:`exp32` (no clamps, one scale instead of two).
    Other arguments give meaningless results: callers check the domain first.
    """
    p, k = _exp32_parts(x)
    e = np.int32(f32_bits(k) - np.int32(_SHIFT_F_BITS - 127))
    return p * f32_from_bits(np.int32(e << np.int32(23)))


_TWO_M64_F = _F(2.0**-64)


@njit(fastmath=_FLAGS, cache=True, error_model="numpy")
def exp32_neg(x):
    """:func:`exp32` for ``x <= 0`` (or NaN), bit for bit (all 2^31 such
    float32 compared), as :func:`exp64_neg` is for float64: ``n`` in
    ``[-150, 0]``, ``2**(n + 64)`` normal, ``p * 2**(n + 64)`` exact, the
    product with ``2**-64`` rounding a subnormal result once. Correct up to
    about ``x = 43`` (``n <= 63``); callers pass a difference from a maximum.
    """
    zero = x < EXP32_ZERO_BELOW
    xc = _ZERO_F if zero else x
    p, k = _exp32_parts(xc)
    e = np.int32(f32_bits(k) - np.int32(_SHIFT_F_BITS - 127 - 64))
    y = (p * f32_from_bits(np.int32(e << np.int32(23)))) * _TWO_M64_F
    return _ZERO_F if zero else y


# ---------------------------------------------------------------- log, float64

_SQRT2 = 1.4142135623730951
_TWO54 = 18014398509481984.0
_DBL_MIN = 2.2250738585072014e-308
_MANT_MASK = 0x000FFFFFFFFFFFFF
_ONE_BITS = 0x3FF0000000000000
# 2 / (2k + 1), k = 1 .. 10: the atanh series of log((1 + s) / (1 - s)) / s - 2
_L1 = 2.0 / 3.0
_L2 = 2.0 / 5.0
_L3 = 2.0 / 7.0
_L4 = 2.0 / 9.0
_L5 = 2.0 / 11.0
_L6 = 2.0 / 13.0
_L7 = 2.0 / 15.0
_L8 = 2.0 / 17.0
_L9 = 2.0 / 19.0
_L10 = 2.0 / 21.0
_INF = np.inf


@njit(fastmath=_FLAGS, cache=True, error_model="numpy")
def log64(x):
    """``log`` of a float64, branch-free and vectorisable (< 1 ULP)."""
    sub = x < _DBL_MIN
    xs = x * _TWO54 if sub else x
    b = f64_bits(xs)
    e = (b >> 52) - 1023
    e = e - 54 if sub else e
    m = f64_from_bits((b & _MANT_MASK) | _ONE_BITS)
    big = m > _SQRT2
    m = m * 0.5 if big else m
    e = e + 1 if big else e
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    q = _L10
    q = q * z + _L9
    q = q * z + _L8
    q = q * z + _L7
    q = q * z + _L6
    q = q * z + _L5
    q = q * z + _L4
    q = q * z + _L3
    q = q * z + _L2
    q = q * z + _L1
    rr = z * q
    hfsq = 0.5 * f * f
    dk = float(e)
    y = dk * _LN2HI - ((hfsq - (s * (hfsq + rr) + dk * _LN2LO)) - f)
    y = -_INF if x == 0.0 else y
    y = _INF if x == _INF else y
    y = np.nan if x < 0.0 else y
    return y if x == x else x
