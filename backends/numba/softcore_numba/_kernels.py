"""Row kernels: pure ``@njit`` functions on C-contiguous ``(rows, C)`` arrays.

Every op is one function per execution mode, all built from the same row and
segment helpers, so every mode computes the same bits:

``<op>_par``
    parallel over rows (``prange``), for large inputs;
``<op>_ser``
    the same loop run serially, for small inputs (no thread launch);
``<op>_split`` (softmax, log_softmax, logsumexp, class-index cross-entropy)
    parallel over fixed-size blocks of each row, for a few very wide rows.

Arithmetic. A row is cut into blocks of ``BLOCK`` elements (a partition fixed by
``C`` alone). Per block: its maximum ``m_b`` and ``s_b = sum exp(x - m_b)``; the
blocks are combined left to right into the row's ``M`` and ``S``
(``S = S exp(M - m) + s``), so the result does not depend on how many threads
ran, nor on which mode ran. ``lse = M + log S``; ``log_softmax = (x - M) - log S``;
softmax (and the unsmoothed CE gradient) store ``exp(x - m_b)`` in the output
while summing and scale it by ``exp(m_b - M) / S``: one exp per element. Sums
are in float64 for both dtypes; float32 rows take ``exp`` in float32 of the
float32 difference (:func:`~softcore_numba._vexp.exp32`), float64 rows
:func:`~softcore_numba._vexp.exp64`; results are rounded once to the input's
dtype. Where every ``x - m`` of a segment is in ``[-87, 0]`` (float32;
``[-708, 0]`` float64) or NaN, the exp is
:func:`~softcore_numba._vexp.exp32_nonpos` (``exp64_nonpos``): the same bits
without the clamps and the second scaling (decided per segment from the
minimum that the maximum pass also takes, :func:`_range_nonpos`; the short-row
tiles compare every element, :func:`_seg_nonpos`). Elsewhere (a masked row's
``-inf``, logits spread wider) it is :func:`~softcore_numba._vexp.exp32_neg`
(``exp64_neg``): the same bits for every argument that is not positive, with
one clamp and one scaling fewer. Sums are vectorised
(``reassoc`` on the reduction loops only, which never write; the order is fixed
by the compiled code, not by the thread count).

Vector width. Every loop helper calls :func:`~softcore_numba._vexp.wide`, so
LLVM uses 512-bit vectors where the CPU has them (it prefers 256 bits on Intel
cores otherwise). A float32 row's ``sum exp(x - m)`` is two loops, the exp into
a float32 scratch and the float64 sum from L1: fused, the float64 sum sets the
loop's width and the exp runs half (or a quarter) as many lanes. The scratch is
allocated once per parallel task of ``TASK`` elements (:func:`scratch`), and
the smoothed and probability-target gradients store the exp first, then apply
their float64 affine map, for the same reason. Same bits as the fused loops.

Special values fall out of the arithmetic: a NaN gives a NaN sum; a ``+inf``
gives ``M = inf`` and ``inf - inf = NaN``; a row of only ``-inf`` gets
``S = NaN`` explicitly. Outputs may alias inputs: every kernel reads what it
needs of a row before it writes that row.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic, overload
from numba.np.arrayobj import make_array, populate_array

from . import _runtime

_runtime.ensure()  # cache locator before the first @njit(cache=True)

from ._casts import (  # noqa: E402
    bf16_to_f32,
    f32_to_bf16,
    f32_to_half_quiet,
    half_to_f32_quiet,
)
from ._vexp import (  # noqa: E402
    EXP32_NONPOS_MIN,
    EXP64_NONPOS_MIN,
    exp32,
    exp32_neg,
    exp32_nonpos,
    exp64,
    exp64_neg,
    exp64_nonpos,
    f32_bits,
    f32_from_bits,
    f64_bits,
    f64_from_bits,
    fma,
    fmaxnum,
    log64,
    wide,
)

BLOCK = 16384
"""Elements per row block: the fixed partition of a row for the reductions."""

TASK = 1 << 15
"""Elements per parallel task of the row-statistics kernels (one scratch each)."""

MIN_TASKS = 4
"""Fewest tasks a parallel row driver splits a call into (rows allowing)."""

BACKWARD_TASK = 1 << 12
"""Elements per parallel task of the backward passes (no scratch): a call just
above the serial limit still has a task for each thread (log_softmax_backward
at 512x64 float32, two threads: 10.1 us in one task of 32768 elements, 7.4 us
in tasks of 4096; at 8192x1000 and 65536x128 the same time either way)."""

_NAN = np.nan
_INF = np.inf
_NINF = -np.inf
_ZERO32 = np.float32(0.0)
_RED = {"reassoc", "contract"}  # vectorised reductions; exp keeps its own flags
_KW = {"cache": True, "nogil": True, "error_model": "numpy"}
_PKW = {**_KW, "parallel": True}
_GLUE = {**_KW, "inline": "always"}  # row glue: no call (and no refcounts) per row


@intrinsic
def borrow(typingctx, a):
    """``a`` as a view without a memory owner (numba's ``meminfo`` NULL), for
    the serial drivers' arguments: every row view taken from it then skips
    the reference count's atomic increment and decrement. The parallel
    drivers' loop bodies get their arrays that way from numba already, and
    a serial driver taking rows of 64 float32 classes one at a time spent
    about as much on the counts as on the arithmetic (4096x64, one thread:
    softmax_ser 397-404 us, softmax_par 221-231, softmax_ser on borrowed
    arrays 213; cross_entropy_grad_ser 503-526, borrowed 293). The view is
    valid while ``a`` is, so a driver borrows its own arguments and returns
    none of them."""
    if not isinstance(a, types.Array):
        return None

    def codegen(context, builder, signature, args):
        src = make_array(a)(context, builder, args[0])
        dst = make_array(a)(context, builder)
        populate_array(
            dst,
            data=src.data,
            shape=src.shape,
            strides=src.strides,
            itemsize=src.itemsize,
            meminfo=None,
        )
        return dst._getvalue()

    return a(a), codegen


def _is_f32(a):
    """Whether a numba type is a float32 array (overloads pick by it)."""
    return isinstance(a, types.Array) and a.dtype == types.float32


_BITS16 = (types.uint16, types.int16)


def _is_f32_like(a):
    """:func:`_is_f32`, or a 16-bit row computed in float32 (:func:`ld`)."""
    return _is_f32(a) or (isinstance(a, types.Array) and a.dtype in _BITS16)


def ld(v):
    """An element as the kernels compute on it: a float as it is, float16 bits
    (uint16) or bfloat16 bits (int16) widened to float32 (exact; a signalling
    NaN may come back quiet, as the arithmetic that takes it next would make
    it). The backward kernels read 16-bit rows through it (``_rows16``)."""
    raise NotImplementedError  # only callable from jitted code


def st(v, row):
    """A result to store into ``row``: a float row stores it as it is (numba
    casts), a 16-bit row the bits nearest ``float32(v)`` (``v`` a result of
    arithmetic, never a signalling NaN: F16C's NaN bits are NumPy's then)."""
    raise NotImplementedError  # only callable from jitted code


@overload(ld, inline="always")
def _ld_impl(v):
    if v == types.uint16:
        return lambda v: half_to_f32_quiet(v)
    if v == types.int16:
        return lambda v: bf16_to_f32(np.uint16(v))
    return lambda v: v


def mul64(a, b):
    """``float64(a) * float64(b)`` for two elements of a row (:func:`ld`),
    exact wherever it is rounded: float16 rows (uint16 bits) multiply in
    float32, exactly (11-bit significands make at most 22 bits; magnitudes
    from 2^-48 to 2^32), and widen the product once. Widened first, each
    float16 element takes a conversion to float64 (``vcvtph2pd``) that costs
    on an AVX512-FP16 host twice the float32 product's whole loop (one
    thread, 64x1000: 0.38 ns an element against 0.18). bfloat16's range is
    float32's, so its products could round in float32: it widens first."""
    raise NotImplementedError  # only callable from jitted code


@overload(mul64, inline="always")
def _mul64_impl(a, b):
    if a == types.uint16 and b == types.uint16:
        return lambda a, b: np.float64(ld(a) * ld(b))
    return lambda a, b: np.float64(ld(a)) * np.float64(ld(b))


@overload(st, inline="always")
def _st_impl(v, row):
    if row.dtype == types.uint16:
        return lambda v, row: f32_to_half_quiet(np.float32(v))
    if row.dtype == types.int16:
        return lambda v, row: np.int16(f32_to_bf16(np.float32(v)))
    return lambda v, row: v


def argdiff(v, m, row):
    """``v - m`` for an element ``v`` of ``row`` and a float64 ``m`` that holds a
    value of ``row``'s dtype (a row maximum), in the dtype :func:`expdiff` takes
    its exp in: float32 rows round it to float32 (half an ULP of ``v - m``, within
    the kit's ``|x - lse|`` scaling), float64 rows keep it in float64."""
    raise NotImplementedError  # only callable from jitted code


def expdiff(v, m, row):
    """``exp(v - m)`` as float64 (:func:`argdiff`): :func:`exp64` of the float64
    difference, or :func:`exp32` of the float32 one (twice as many lanes), taken
    by :func:`exp_elem_neg` (``m`` is a maximum of the values ``v`` comes from:
    the difference is never positive)."""
    raise NotImplementedError  # only callable from jitted code


def expdiff_nonpos(v, m, row):
    """:func:`expdiff`, bit for bit, where ``argdiff(v, m, row)`` is NaN or in
    ``[nonpos_min(row), 0]`` (see :func:`_seg_nonpos`): no clamps, one scaling."""
    raise NotImplementedError  # only callable from jitted code


def nonpos_min(row):
    """The lower end of :func:`expdiff_nonpos`'s domain, in ``argdiff``'s dtype."""
    raise NotImplementedError  # only callable from jitted code


@overload(argdiff, inline="always")
def _argdiff_impl(v, m, row):
    if _is_f32(row):
        return lambda v, m, row: np.float32(v) - np.float32(m)
    return lambda v, m, row: np.float64(v) - m


def f32_row(row):
    """Whether ``row`` is float32 (a compile-time constant)."""
    raise NotImplementedError  # only callable from jitted code


@overload(f32_row, inline="always")
def _f32_row_impl(row):
    f32 = _is_f32_like(row)
    return lambda row: f32


def exp_elem(v):
    """``exp`` of an element in its own dtype (exp32 / exp64)."""
    raise NotImplementedError  # only callable from jitted code


@overload(exp_elem, inline="always")
def _exp_elem_impl(v):
    if v == types.float32:
        return lambda v: exp32(v)
    return lambda v: exp64(v)


def exp_elem_nonpos(v):
    """:func:`exp_elem` for ``v`` NaN or in ``[nonpos_min, 0]`` (unclamped)."""
    raise NotImplementedError  # only callable from jitted code


@overload(exp_elem_nonpos, inline="always")
def _exp_elem_nonpos_impl(v):
    if v == types.float32:
        return lambda v: exp32_nonpos(v)
    return lambda v: exp64_nonpos(v)


def exp_elem_neg(v):
    """:func:`exp_elem`, bit for bit, for ``v <= 0`` or NaN (no upper clamp,
    one scaling: ``exp32_neg`` / ``exp64_neg``)."""
    raise NotImplementedError  # only callable from jitted code


@overload(exp_elem_neg, inline="always")
def _exp_elem_neg_impl(v):
    if v == types.float32:
        return lambda v: exp32_neg(v)
    return lambda v: exp64_neg(v)


@overload(expdiff, inline="always")
def _expdiff_impl(v, m, row):
    return lambda v, m, row: np.float64(exp_elem_neg(argdiff(v, m, row)))


@overload(expdiff_nonpos, inline="always")
def _expdiff_nonpos_impl(v, m, row):
    return lambda v, m, row: np.float64(exp_elem_nonpos(argdiff(v, m, row)))


_NONPOS_MIN32 = np.float32(EXP32_NONPOS_MIN)


@overload(nonpos_min, inline="always")
def _nonpos_min_impl(row):
    if _is_f32_like(row):
        return lambda row: _NONPOS_MIN32
    return lambda row: EXP64_NONPOS_MIN


# ------------------------------------------------------------------ segment helpers


def order_key(v):
    """An integer of ``v``'s width that orders as ``v`` does (NaN aside): its
    bits, with the magnitude bits flipped for negative ``v``; an involution."""
    raise NotImplementedError  # only callable from jitted code


@overload(order_key, inline="always")
def _order_key_impl(v):
    if v == types.float32:

        def impl(v):
            i = f32_bits(v)
            return np.int32(i ^ ((i >> np.int32(31)) & np.int32(0x7FFFFFFF)))

        return impl
    if v == types.float64:

        def impl(v):
            i = f64_bits(v)
            return i ^ ((i >> 63) & 0x7FFFFFFFFFFFFFFF)

        return impl
    return None


def key_floor(v):
    """The least :func:`order_key` of ``v``'s width (a NaN's with the sign bit
    and every payload bit set)."""
    raise NotImplementedError  # only callable from jitted code


@overload(key_floor, inline="always")
def _key_floor_impl(v):
    if v == types.float32:
        return lambda v: _KEY_FLOOR32
    return lambda v: _KEY_FLOOR64


_KEY_FLOOR32 = np.int32(-(2**31))
_KEY_FLOOR64 = np.int64(-(2**63))


def from_order_key(k):
    """The float that :func:`order_key` maps to ``k``."""
    raise NotImplementedError  # only callable from jitted code


@overload(from_order_key, inline="always")
def _from_order_key_impl(k):
    if k == types.int32:
        return lambda k: f32_from_bits(
            np.int32(k ^ ((k >> np.int32(31)) & np.int32(0x7FFFFFFF)))
        )
    if k == types.int64:
        return lambda k: f64_from_bits(k ^ ((k >> 63) & 0x7FFFFFFFFFFFFFFF))
    return None


@njit(**_KW)
def _seg_range(xr, j0, j1):
    """``(max, min)`` of ``xr[j0:j1]``, as float64; ``-inf`` for a segment of
    ``-inf``.

    Taken as the integer maximum and minimum of :func:`order_key`: exact, and
    one 1-cycle instruction a vector each, where ``llvm.maxnum`` (NaN-ignoring)
    lowers to three with a longer latency; the maximum alone ran 2.5-3x faster
    at 128 and 1000 float32 classes. The minimum rides along in the same pass
    (it decides the exp's domain, :func:`_range_nonpos`, without another pass
    over the segment). A segment with a NaN may give NaN for either (by the
    NaN's sign bit) or the extremes of the rest. Either way every result of
    its row is NaN, through that element's exp (the callers shift such a
    segment by 0, as an all ``-inf`` one, so other exps may overflow or,
    unclamped, be meaningless: the sum is NaN all the same).
    """
    wide()
    xs = xr[j0:j1]  # loops start at 0: no negative-index wraparound, so no gathers
    hi = order_key(xs[0])
    lo = hi
    for j in range(xs.shape[0]):
        k = order_key(xs[j])
        hi = max(hi, k)
        lo = min(lo, k)
    return np.float64(from_order_key(hi)), np.float64(from_order_key(lo))


@njit(**_KW)
def _seg_nonpos(xs, m):
    """Whether :func:`expdiff_nonpos` may stand for :func:`expdiff` on all of
    ``xs``: no ``argdiff(x, m)`` below ``nonpos_min`` (none is above 0 when ``m``
    is their maximum; NaN passes). Rows with ``-inf`` or a range wider than
    ``-nonpos_min`` (87 in float32) take the clamped exp.

    One compare per element from cache, against the exp's clamps and second
    scaling: a float32 softmax at 128 and 1000 classes took 11-13% less time.
    """
    wide()
    lim = nonpos_min(xs)
    low = False
    for j in range(xs.shape[0]):
        low |= argdiff(xs[j], m, xs) < lim
    return not low


@njit(**_GLUE)
def _range_nonpos(lo, m, row):
    """:func:`_seg_nonpos` of a segment of ``row``'s dtype from its minimum
    ``lo`` (:func:`_seg_range`), without reading it again: ``argdiff(v, m)`` is
    rounded from an exact difference, so it is monotonic in ``v`` and the
    minimum is the one element that can fall below ``nonpos_min``. (A NaN
    minimum admits the segment; its row is NaN either way.)"""
    return not argdiff(lo, m, row) < nonpos_min(row)


# ------------------------------------------------------- exactly rounded float64 sums
# A float64 row's sum of exps (each in [0, 1], or NaN) is taken exactly rounded:
# each term is split into a high part, a multiple of 2**(k - 53) where any sum of
# the row's terms (fewer than 2**k) is a float64, and the exact rest. The high
# parts add up exactly in any order and the rests (each below 2**(k - 53)) with an
# error near 2**-90 of the sum, so both run in reassociated vector loops; then one
# rounding. A plain vector sum lost up to 2-3 ULPs of the sum (C / 2 in order).
# float32 rows are summed in float64 as they are: exact enough.


@njit(**_KW)
def _split_bias(n):
    """``1.5 * 2**(k - 1)`` with ``2**(k - 1) <= max(n, 4) < 2**k``: ``v + b``
    for ``v`` in ``[0, 1]`` stays in ``b``'s binade, whose spacing
    ``2**(k - 53)`` makes every sum of ``n`` high parts (below ``2**k``) a
    float64."""
    top = f64_bits(np.float64(max(n, 4))) & 0x7FF0000000000000
    return 1.5 * f64_from_bits(top)


@njit(**_KW)
def _split_hi(v, b):
    """``v`` rounded to a multiple of ``b``'s spacing (``v - hi`` is exact).
    Compiled apart, without fast-math flags, so that the caller's reassociated
    loop cannot fold ``(v + b) - b`` to ``v``."""
    return (v + b) - b


@njit(**_KW)
def _split_lo(v, hi):
    """``v - hi``, exact, kept apart from the reassociated loop as above."""
    return v - hi


# The log of a sum near 1. A row's ``S`` is at least 1 (its maximum's term), and
# where that term dominates, ``log S`` is small: rounding ``S`` to float64 costs
# half a unit of 1, which is all of ``log S`` for ``S - 1`` below 2**-53
# (logsumexp of ``[0, -40]`` was 0 for 4.2e-18, and ``[0, -20]`` 3e-8 off).
# Every float64 sum therefore also returns its rounding error ``E`` (exact:
# TwoSum of the split sum's two parts, or of a TwoSum's sum and compensation),
# and ``log S`` is taken as ``log(S) + E / S`` (:func:`log_sum`): ``log`` is
# accurate to an ULP of itself near 1, and ``E / S`` is the first-order term of
# ``log(S + E)``, the rest below 2**-106 relative. float32 and 16-bit rows,
# whose sums are plain, give ``E = 0``: their results round to float32 far
# above the float64 sum's error, but for ``S - 1`` below about 1e-9.


@njit(**_KW)
def _sum_parts(a, b):
    """``(s, e)``: ``s = a + b`` rounded and ``e`` its exact rounding error
    (Knuth's TwoSum; 0 where ``s`` is not finite). Compiled apart, without
    fast-math flags, as :func:`_split_hi`, for the reassociated sum loops."""
    s = a + b
    bp = s - a
    e = (a - (s - bp)) + (b - bp)
    return s, (e if abs(s) < np.inf else 0.0)


# float32 rows sum their exps plainly in float64, so the lane that adds the
# maximum's 1 rounds every later term of it to 2**-53: ``S - 1`` has an
# absolute error below ``n 2**-52`` for ``n`` terms (``S < 2``, every add in
# that lane at worst), which stays under 2**-26 of ``S - 1``, a quarter of a
# float32 ULP of ``log S``, unless ``S - 1`` is itself below ``n 2**-26`` (a
# row whose maximum leads every other logit by about 18 or more; logsumexp of
# float32 ``[0, -40]`` was 0 for 4.2e-18). Such sums are taken again from the
# stored exps (in L1): the float64 sum of the terms below 1, and the count of
# exact ones, which is the plain sum less that rest, rounded (the plain sum
# is off by far less than 1/2); their sum's error kept as the float64 sums'
# is (:func:`_near_one_f32`). The second pass made those rows 1.1-1.5x slower
# when it compared and counted in float64; the rest alone, ``v - floor(v)`` in
# float32, takes 0.88-0.97 of that (docs/benchmarks.md).

NEAR_ONE_F32 = 2.0**-26
"""A float32 row's sum of ``n`` exps is taken again where ``1 <= S < 1 + n
NEAR_ONE_F32``."""


@njit(fastmath=_RED, **_KW)
def _rest(es):
    """The float64 sum of the exps ``es`` (in ``[0, 1]``) that are below 1:
    ``v - floor(v)`` in their own dtype is 0 for a one and ``v`` otherwise,
    exactly, without a compare (a conditional did not vectorise; a compare
    and a count took 7 vector instructions for 8 terms, this 4)."""
    wide()
    rest = 0.0
    for j in range(es.shape[0]):
        v = es[j]
        rest += np.float64(v - np.floor(v))
    return rest


@njit(**_GLUE)
def near_one(s, n):
    """Whether a float32 row's plain sum ``s`` of ``n`` exps is taken again."""
    return 1.0 <= s < 1.0 + n * NEAR_ONE_F32


@njit(**_GLUE)
def _ones_rest_sum(s, rest):
    """``(S, E)`` from a plain sum ``s`` near 1 and the exact-ish sum ``rest``
    of its terms below 1: the ones' count ``rint(s - rest)``, and the two
    added with the rounding error."""
    return _sum_parts(np.rint(s - rest), rest)


@njit(**_KW)
def _resum(es, s):
    """``(S, E)`` of float32 exps ``es`` whose plain sum is ``s``: their exact
    ones and the rest apart, split exactly (a call only for the rows
    :func:`near_one` picks: its array argument costs a reference count's
    atomics, 25 ns, a call)."""
    return _ones_rest_sum(s, _rest(es))


@njit(**_GLUE)
def _near_one_f32(es, s, logs):
    """``(S, E)`` of float32 exps ``es`` whose plain float64 sum is ``s``:
    ``(s, 0)``, or where ``s`` is that near 1 and ``logs`` (the caller takes
    ``log S``; softmax does not, and keeps its time), the sum taken again apart
    from its exact ones, with its rounding error."""
    if logs and near_one(s, es.shape[0]):
        return _resum(es, s)
    return s, 0.0


def finish_sum(es, sh, sl, logs):
    """``(S, E)`` of a sum of the exps ``es`` split into ``(sh, sl)`` by
    :func:`split_add` (``logs``: as :func:`_near_one_f32`)."""
    raise NotImplementedError  # only callable from jitted code


@overload(finish_sum, inline="always")
def _finish_sum_impl(es, sh, sl, logs):
    if _is_f32_like(es):
        return lambda es, sh, sl, logs: _near_one_f32(es, sh, logs)  # sl: -0.0
    return lambda es, sh, sl, logs: _sum_parts(sh, sl)


@njit(**_GLUE)
def log_sum(S, E):
    """``log(S + E)`` for a row sum ``S >= 1`` with rounding error ``E``."""
    return log64(S) + E / S


def sum_bias(row, n):
    """The split's bias for sums of ``n`` exps of ``row`` (float64 rows; 0.0,
    unused, for float32 and 16-bit rows)."""
    raise NotImplementedError  # only callable from jitted code


def split_add(sh, sl, v, b, row):
    """``(sh, sl)`` with a term ``v`` of ``row``'s sum added: its high part to
    ``sh``, its rest to ``sl`` (float64 rows); ``(sh + v, sl)`` for float32
    and 16-bit rows. The loops start ``sl`` at -0.0: ``sh + -0.0`` is ``sh``
    for every ``sh``, so for those rows LLVM drops it and the loop is the plain
    sum it was (``+ 0.0`` would stay: it turns -0.0 into +0.0)."""
    raise NotImplementedError  # only callable from jitted code


@overload(sum_bias, inline="always")
def _sum_bias_impl(row, n):
    if _is_f32_like(row):
        return lambda row, n: 0.0
    return lambda row, n: _split_bias(n)


@overload(split_add, inline="always")
def _split_add_impl(sh, sl, v, b, row):
    if _is_f32_like(row):
        return lambda sh, sl, v, b, row: (sh + v, sl)

    def impl(sh, sl, v, b, row):
        hi = _split_hi(v, b)
        return sh + hi, sl + _split_lo(v, hi)

    return impl


@njit(fastmath=_RED, **_KW)
def _seg_sumexp(xr, j0, j1, m, nonpos):
    wide()
    xs = xr[j0:j1]
    b = sum_bias(xs, xs.shape[0])
    sh = 0.0
    sl = -0.0
    if nonpos:
        for j in range(xs.shape[0]):
            v = expdiff_nonpos(xs[j], m, xs)
            sh, sl = split_add(sh, sl, v, b, xs)
    else:
        for j in range(xs.shape[0]):
            v = expdiff(xs[j], m, xs)
            sh, sl = split_add(sh, sl, v, b, xs)
    return _sum_parts(sh, sl)


@njit(fastmath={"contract"}, **_KW)
def _seg_exp_store(xr, outr, j0, j1, m, ip, nonpos):
    # ``nonpos``: the segment is in the unclamped exp's domain (_seg_nonpos).
    # ``ip``: outr is xr. A separate loop without the second array vectorises
    # unconditionally; with both, LLVM's run-time overlap check would fall back
    # to scalar code exactly in the in-place case.
    # (the in-place loop goes through ``outr``: ``xr`` may be a read-only array)
    wide()
    os_ = outr[j0:j1]
    if ip:
        if nonpos:
            for j in range(os_.shape[0]):
                os_[j] = expdiff_nonpos(os_[j], m, os_)
        else:
            for j in range(os_.shape[0]):
                os_[j] = expdiff(os_[j], m, os_)
    else:
        xs = xr[j0:j1]
        if nonpos:
            for j in range(xs.shape[0]):
                os_[j] = expdiff_nonpos(xs[j], m, xs)
        else:
            for j in range(xs.shape[0]):
                os_[j] = expdiff(xs[j], m, xs)


@njit(fastmath=_RED, **_KW)
def _exps_sum(os_, logs):
    """The float64 sum of ``os_`` (exp values, in ``[0, 1]``; float64 rows'
    exactly rounded) and its rounding error: a block's stored exps, and a short
    tile's row (``logs``: as :func:`_near_one_f32`)."""
    wide()
    b = sum_bias(os_, os_.shape[0])
    sh = 0.0
    sl = -0.0
    for j in range(os_.shape[0]):
        v = np.float64(os_[j])
        sh, sl = split_add(sh, sl, v, b, os_)
    return finish_sum(os_, sh, sl, logs)


def split_factor(f, row):
    """A float64 factor as ``(hi, lo)`` for :func:`mul_split` on ``row``'s dtype."""
    raise NotImplementedError  # only callable from jitted code


def mul_split(v, hi, lo):
    """``v * (hi + lo)``, rounded once to ``v``'s dtype."""
    raise NotImplementedError  # only callable from jitted code


@overload(split_factor, inline="always")
def _split_factor_impl(f, row):
    if _is_f32_like(row):
        # f = hi + lo to twice float32's precision (lo = 0 where hi is not finite)
        def impl(f, row):
            hi = np.float32(f)
            lo = np.float32(f - np.float64(hi)) if abs(hi) < np.inf else _ZERO32
            return hi, lo

        return impl
    return lambda f, row: (f, 0.0)


@overload(mul_split, inline="always")
def _mul_split_impl(v, hi, lo):
    if v == types.float32:
        # v * hi + v * lo with one rounding (an FMA): within 2**-47 relative
        # before that rounding, as accurate as a float64 product rounded to
        # float32, but in float32 lanes and without conversions.
        return lambda v, hi, lo: fma(v, hi, v * lo)
    return lambda v, hi, lo: v * hi


@njit(fastmath={"contract"}, **_KW)
def scale_seg(os_, f):
    """``os_ *= f`` (a float64 ``f``), each element rounded once to its dtype."""
    wide()
    hi, lo = split_factor(f, os_)
    for j in range(os_.shape[0]):
        os_[j] = mul_split(os_[j], hi, lo)


@njit(**_KW)
def _seg_scale(outr, j0, j1, f):
    scale_seg(outr[j0:j1], f)


@njit(**_GLUE)
def _block_exp_store_e(xr, outr, j0, j1, ip, logs=True):
    """Store ``e = exp(x - m_b)`` of one block in ``outr``; return ``(m_b, s_b,
    E_b)``, ``E_b`` the sum's rounding error. An all ``-inf`` block stores zeros
    (NaN where it holds a NaN)."""
    # these two lines are also _block_stats_lo's: a shared inlined helper
    # returning (m, lo, shift, nonpos) made float32 softmax and logsumexp at 128
    # classes 4-6% slower (interleaved against this code, in cache)
    m, lo = _seg_range(xr, j0, j1)
    sh = m if m > _NINF else 0.0
    _seg_exp_store(xr, outr, j0, j1, sh, ip, _range_nonpos(lo, sh, xr))
    s, e = _exps_sum(outr[j0:j1], logs)
    return m, s, e


@njit(**_GLUE)
def _block_exp_store(xr, outr, j0, j1, ip):
    """:func:`_block_exp_store_e` without the error: ``(m_b, s_b)``."""
    m, s, _ = _block_exp_store_e(xr, outr, j0, j1, ip, False)
    return m, s


@njit(**_GLUE)
def _block_factor(m, M, S):
    """Scale turning a block's stored ``exp(x - m_b)`` into ``exp(x - M) / S``."""
    if m == M:  # every one-block row: exp(0) = 1 without a scalar exp
        return 1.0 / S
    return (exp64(m - M) if m > _NINF else 0.0) * (1.0 / S)


@njit(**_GLUE)
def _exp_store_row(xr, outr, ip, logs):
    """Store ``exp(x - m_b)`` block by block in ``outr``; return the row's
    ``(M, S, E)`` (``E``: the sum's rounding error) and the block maxima."""
    wide()
    C = xr.shape[0]
    if C <= BLOCK:
        m, sb, E = _block_exp_store_e(xr, outr, 0, C, ip, logs)
        M, S = _combine(_NINF, 0.0, m, sb)
        M, S = _finish(M, S)
        bm = np.empty(1)
        bm[0] = m
        return M, S, E, bm
    nb = (C + BLOCK - 1) // BLOCK
    bm = np.empty(nb)
    M = _NINF
    S = 0.0
    E = 0.0
    for b in range(nb):
        j0 = b * BLOCK
        m, sb, eb = _block_exp_store_e(xr, outr, j0, min(C, j0 + BLOCK), ip, logs)
        bm[b] = m
        M, S, E = _combine_e(M, S, E, m, sb, eb)
    M, S = _finish(M, S)
    return M, S, E, bm


@njit(**_GLUE)
def _scale_row(outr, M, S, bm, c):
    """``outr *= c * factor_b`` per block."""
    wide()
    C = outr.shape[0]
    for b in range(bm.shape[0]):
        j0 = b * BLOCK
        _seg_scale(outr, j0, min(C, j0 + BLOCK), _block_factor(bm[b], M, S) * c)


def scratch(x):
    """A per-task buffer for :func:`block_sumexp` on rows of ``x`` (2-D)."""
    raise NotImplementedError  # only callable from jitted code


def block_sumexp(xr, j0, j1, m, buf, nonpos):
    """``sum exp(xr[j0:j1] - m)`` in float64 and its rounding error (``buf``:
    from :func:`scratch`; ``nonpos``: as :func:`_seg_nonpos` of the segment)."""
    raise NotImplementedError  # only callable from jitted code


@overload(scratch, inline="always")
def _scratch_impl(x):
    if _is_f32(x):
        return lambda x: np.empty(min(x.shape[1], BLOCK), np.float32)
    return lambda x: np.empty(0, np.float64)


@overload(block_sumexp, inline="always")
def _block_sumexp_impl(xr, j0, j1, m, buf, nonpos):
    if _is_f32(xr):
        # Two loops: the exp in float32 lanes into ``buf``, then the float64
        # sum from L1. Fused in one loop, the float64 sum sets the vector
        # width: the float32 exp ran 8 lanes of 16 (4 where 256-bit vectors
        # are preferred), measured 1.5x slower than the two loops.
        def impl(xr, j0, j1, m, buf, nonpos):
            n = j1 - j0
            _seg_exp_store(xr[j0:j1], buf, 0, n, m, False, nonpos)
            return _exps_sum(buf[:n], True)

        return impl
    return lambda xr, j0, j1, m, buf, nonpos: _seg_sumexp(xr, j0, j1, m, nonpos)


@njit(**_GLUE)
def _block_stats_lo(xr, j0, j1, buf):
    """``(m_b, s_b, E_b, lo_b)`` of one block, ``E_b`` the sum's rounding error
    and ``lo_b`` the block's minimum; an all ``-inf`` block gives ``(-inf, 0)``
    (or ``(-inf, NaN)`` if it holds a NaN)."""
    m, lo = _seg_range(xr, j0, j1)
    sh = m if m > _NINF else 0.0
    s, e = block_sumexp(xr, j0, j1, sh, buf, _range_nonpos(lo, sh, xr))
    return m, s, e, lo


@njit(**_GLUE)
def _block_stats(xr, j0, j1, buf):
    """``(m_b, s_b, E_b)`` of one block (:func:`_block_stats_lo`)."""
    m, s, e, _ = _block_stats_lo(xr, j0, j1, buf)
    return m, s, e


@njit(**_GLUE)
def _task_rows(x, task=TASK):
    """Rows per task of about ``task`` elements: a task allocates one scratch;
    many rows share it. At least ``MIN_TASKS`` tasks where there are rows
    enough, so that a call just above the serial limit still gives every
    thread work."""
    n, C = x.shape
    return max(1, min(task // C, -(-n // MIN_TASKS)))


@njit(**_GLUE)
def _combine(M, S, m, s):
    """Fold one block's ``(m, s)`` into the running ``(M, S)`` (:func:`_combine_e`
    without the errors, which the compiler drops)."""
    M, S, _ = _combine_e(M, S, 0.0, m, s, 0.0)
    return M, S


@njit(**_GLUE)
def _combine_e(M, S, E, m, s, e):
    """:func:`_combine` carrying the sums' rounding errors: ``(M, S, E)`` with
    ``S`` the same bits. The block holding the row's maximum joins with factor
    1, so its error stays exact; a scaled block's product rounds relative to
    itself, which is part of ``S - 1``, not of the 1."""
    if m == _NINF:
        S2, r = _sum_parts(S, s)
        return M, S2, E + e + r
    if M == _NINF:  # the first block: no scalar exp (S is 0, or NaN)
        return m, S + s, E + e
    if m > M:
        f = exp64(M - m)
        S2, r = _sum_parts(S * f, s)
        return m, S2, E * f + e + r
    f = exp64(m - M)
    S2, r = _sum_parts(S, s * f)
    return M, S2, E + e * f + r


@njit(**_GLUE)
def _finish(M, S):
    """``(M, S)`` of a whole row; a row of only ``-inf`` gets ``S = NaN``."""
    return M, (_NAN if M == _NINF else S)


@njit(**_GLUE)
def _row_stats_e_lo(xr, buf):
    """A row's ``(M, S, E)`` (``E``: the sum's rounding error) and its minimum
    (for :func:`_range_nonpos` against ``M``; a NaN row may give any minimum,
    its results are NaN anyway)."""
    wide()
    C = xr.shape[0]
    if C <= BLOCK:  # the same arithmetic; a loop around it compiled ~3x slower
        m, s, e, lo = _block_stats_lo(xr, 0, C, buf)
        M, S = _combine(_NINF, 0.0, m, s)
        M, S = _finish(M, S)
        return M, S, e, lo
    M = _NINF
    S = 0.0
    E = 0.0
    lo = np.inf
    for j0 in range(0, C, BLOCK):
        m, s, e, lb = _block_stats_lo(xr, j0, min(C, j0 + BLOCK), buf)
        M, S, E = _combine_e(M, S, E, m, s, e)
        lo = min(lo, lb)
    M, S = _finish(M, S)
    return M, S, E, lo


@njit(**_GLUE)
def _row_stats_e(xr, buf):
    """A row's ``(M, S, E)`` (:func:`_row_stats_e_lo`)."""
    M, S, E, _ = _row_stats_e_lo(xr, buf)
    return M, S, E


@njit(fastmath={"contract"}, **_KW)
def _seg_log_softmax(xr, outr, j0, j1, M, log_s, ip):
    wide()
    os_ = outr[j0:j1]
    if ip:
        for j in range(os_.shape[0]):
            os_[j] = (np.float64(os_[j]) - M) - log_s
    else:
        xs = xr[j0:j1]
        for j in range(xs.shape[0]):
            os_[j] = (np.float64(xs[j]) - M) - log_s


# ---------------------------------------------------------------------- row helpers


@njit(**_GLUE)
def _softmax_row(xr, outr, ip):
    C = xr.shape[0]
    if C <= BLOCK:  # no block-maxima array to allocate
        m, sb = _block_exp_store(xr, outr, 0, C, ip)
        M, S = _combine(_NINF, 0.0, m, sb)
        M, S = _finish(M, S)
        _seg_scale(outr, 0, C, _block_factor(m, M, S) * 1.0)
        return
    M, S, _, bm = _exp_store_row(xr, outr, ip, False)
    _scale_row(outr, M, S, bm, 1.0)


LOG_ROWS = 64
"""Rows whose ``log S`` log_softmax and logsumexp take in one vectorised loop."""

REREAD_BYTES = 8192
"""Most bytes of logits in one group of the kernels that read a group's rows a
second time to write them (log_softmax): the group stays in L1 between the
passes. 64 rows of 128 float32 classes (32 KiB) went back to L2 and cost
10-20% more than 16 rows (8 KiB). Probability-target cross-entropy, which
reads the targets too, showed no gain and keeps ``LOG_ROWS``."""


def group_scratch(k, R):
    """``(k, min(R, LOG_ROWS))`` float64: ``k`` terms of each row of a group of
    at most ``R`` rows (log_softmax, logsumexp and probability-target
    cross-entropy: ``M``, ``S`` and ``log S``; its gradient also the minimum)."""
    raise NotImplementedError  # only callable from jitted code


@overload(group_scratch, inline="always")
def _group_scratch_impl(k, R):
    return lambda k, R: np.empty((k, min(R, LOG_ROWS)))


@njit(**_GLUE)
def _reread_rows(x):
    """Rows per group of a kernel that reads its group twice (``REREAD_BYTES``)."""
    return max(1, min(LOG_ROWS, REREAD_BYTES // (x.shape[1] * x.itemsize)))


# Narrow one-block rows can take softmax's passes, and the unsmoothed
# cross-entropy gradient's, a group of rows at a time: each pass is one
# function over the group's rows (the maxima and minima, the exps, the sums,
# the scaling), where a row at a time calls each pass per row. The loops over
# a row are the same, so are the bits, and the choice may depend on anything.
# It saves a function call and a loop's entry per row and pass, which shows in
# cache; out of cache a group's bursts of reads and of arithmetic overlap less
# well than a row's, and the gain went, or turned into a loss, as this shared
# machine's memory got slower during the day. So the grouped drivers take:
# small (serial) calls with rows of at most SMALL_GROUP_ROW_BYTES, both ops;
# the cross-entropy's such rows also in parallel calls of at most
# CE_GROUP_MAX_BYTES (in cache; the loss alone in float32); softmax rows of at
# most SOFTMAX_GROUP_ROW_BYTES at any size. Medians of 31 interleaved rounds,
# grouped time over a row at a time, several runs each.
# Tried and not kept: prefetching the next group's rows (out of cache it made
# up for the bursts; in cache it gave back much of the gain, 0.93-0.98 against
# 0.79 at 128 float32 classes), and grouping the statistics alone (log_softmax
# and logsumexp, 128-512 classes, 2 threads: 0.92-1.25).

SMALL_GROUP_ROW_BYTES = 512
"""Serial calls (at most ``SERIAL_MAX`` elements, so in cache) with rows of
``SHORT_C`` classes to this many bytes take the grouped passes: softmax and the
unsmoothed cross-entropy gradient. One thread, 2048 rows: softmax 0.56-0.58 of
the time at 64 float32 classes, 0.73-0.76 at 128, 0.70-0.85 at 64 float64;
cross-entropy with its gradient 0.65-0.69, 0.77-0.84 and 0.78-0.91. At 128
float64 and 256 classes 0.84-1.16: not taken. (SERIAL_MAX elements of 64
float32 classes, 512 rows, gave the same: 0.58 and 0.65-0.66.)"""

CE_GROUP_MAX_BYTES = 8 << 20
"""The class-index cross-entropy takes the grouped passes, rows of ``SHORT_C``
classes to ``SMALL_GROUP_ROW_BYTES``, in calls of any thread count up to this
many bytes of logits (rows that come from cache, where grouping pays): its
unsmoothed gradient, and its float32 loss alone. Through ``python -m softcore
bench`` (2 threads, the trees before and after alternating, two runs), time
after over before: with the gradient (allocating and ``out=``) 0.61-0.73 at 64
float32 classes (8192 and 32768 rows), 0.75-0.84 at 128 (4096 and 8192 rows),
0.76-0.81 at 64 float64 (8192 rows); at 16 MiB the gain went (65536x64 float32
0.90-1.09, 32768x64 float64 0.90-1.25), and the kernels alone at 32 and 64 MiB
took 1.00-1.05. The loss alone, float32: 0.71-0.78 at 64 classes, 0.80-0.85 at
128 (0.72-1.01 with ignored rows); float64 0.92-1.13, so its float64 loss keeps
a row at a time outside small calls. The float32 probability-target loss alone
takes them under the same limits: 0.71-0.91 at 512x64 to 8192x128 (its
float64 kernels 0.94-1.18, not taken)."""

SOFTMAX_GROUP_ROW_BYTES = 320
"""softmax rows of ``SHORT_C`` classes to this many bytes take the grouped
passes at every size. 65536 rows, 2 threads, out of cache: 0.63-0.92 of the time
at 64 float32 classes (11 runs; a row at a time took 1.20-1.30x PyTorch's
time there), 0.76 at 80 (one run); at 96-128 float32 classes 0.80-1.16, and the
cross-entropy gradient at 64-512 classes 0.80-1.23: not taken (the gradient is
grouped in cache only, ``CE_GROUP_MAX_BYTES``)."""


@njit(**_KW)
def _grp_range(x, r0, r1, M, lo):
    """Rows ``r0:r1``' maxima and minima into ``M`` and ``lo`` (as
    :func:`_seg_range`)."""
    wide()
    for r in range(r0, r1):
        xs = x[r]
        hi = order_key(xs[0])
        low = hi
        for j in range(xs.shape[0]):
            k = order_key(xs[j])
            hi = max(hi, k)
            low = min(low, k)
        M[r - r0] = np.float64(from_order_key(hi))
        lo[r - r0] = np.float64(from_order_key(low))


@njit(fastmath={"contract"}, **_KW)
def _grp_exp_store(x, out, r0, r1, M, lo, ip):
    """``out[r] = exp(x[r] - m)`` for rows ``r0:r1``, ``m`` the row's maximum
    (0 for a row of ``-inf``), as :func:`_block_exp_store` stores a one-block
    row: the loops of :func:`_seg_exp_store` (``ip``: ``out`` is ``x``)."""
    wide()
    for r in range(r0, r1):
        m = M[r - r0]
        sh = m if m > _NINF else 0.0
        os_ = out[r]
        nonpos = _range_nonpos(lo[r - r0], sh, os_)
        if ip:
            if nonpos:
                for j in range(os_.shape[0]):
                    os_[j] = expdiff_nonpos(os_[j], sh, os_)
            else:
                for j in range(os_.shape[0]):
                    os_[j] = expdiff(os_[j], sh, os_)
        else:
            xs = x[r]
            if nonpos:
                for j in range(xs.shape[0]):
                    os_[j] = expdiff_nonpos(xs[j], sh, xs)
            else:
                for j in range(xs.shape[0]):
                    os_[j] = expdiff(xs[j], sh, xs)


@njit(fastmath=_RED, **_KW)
def _grp_sum(out, r0, r1, S, E, logs):
    """Rows ``r0:r1``' float64 sums into ``S`` and their rounding errors into
    ``E`` (the loop of :func:`_exps_sum`)."""
    wide()
    b = sum_bias(out, out.shape[1])
    for r in range(r0, r1):
        os_ = out[r]
        sh = 0.0
        sl = -0.0
        for j in range(os_.shape[0]):
            v = np.float64(os_[j])
            sh, sl = split_add(sh, sl, v, b, os_)
        S[r - r0], E[r - r0] = finish_sum(os_, sh, sl, logs)


@njit(fastmath={"contract"}, **_KW)
def _grp_scale(out, r0, r1, F):
    """``out[r] *= F[r - r0]`` for rows ``r0:r1`` (as :func:`scale_seg`)."""
    wide()
    for r in range(r0, r1):
        os_ = out[r]
        hi, lo = split_factor(F[r - r0], os_)
        for j in range(os_.shape[0]):
            os_[j] = mul_split(os_[j], hi, lo)


@njit(**_GLUE)
def _grp_exp_sums(x, out, r0, r1, M, S, lo, ip, logs):
    """The grouped passes up to the sums: ``out[r] = exp(x[r] - M)`` and the
    rows' ``(M, S)`` as :func:`_finish` gives them; ``lo`` holds the rows'
    minima, then the sums' rounding errors."""
    _grp_range(x, r0, r1, M, lo)
    _grp_exp_store(x, out, r0, r1, M, lo, ip)
    _grp_sum(out, r0, r1, S, lo, logs)
    for i in range(r1 - r0):
        S[i] = _finish(M[i], S[i])[1]


@njit(**_GLUE)
def _softmax_groups(x, out, r0, r1, ip, st):
    """softmax of rows ``r0:r1``, ``REREAD_BYTES`` of them at a time (``st``:
    ``(3, LOG_ROWS)`` float64)."""
    G = _reread_rows(x)
    for q in range(r0, r1, G):
        q1 = min(r1, q + G)
        k = q1 - q
        M, S, F = st[0, :k], st[1, :k], st[2, :k]
        _grp_exp_sums(x, out, q, q1, M, S, F, ip, False)
        for i in range(k):
            F[i] = _block_factor(M[i], M[i], S[i]) * 1.0
        _grp_scale(out, q, q1, F)


LOG_SOFTMAX_GROUP_ROW_BYTES = 256
"""log_softmax rows of ``SHORT_C`` classes to this many bytes take grouped
passes at every size, and to ``LOG_SOFTMAX_SMALL_GROUP_ROW_BYTES`` in serial
calls. A row at a time, a one-block row makes four calls on views of it, which
cost more than a narrow row's arithmetic (512x64 float32 took 5.8x PyTorch's
time). Grouped time over a row at a time, medians of 15 interleaved rounds:
serial calls 0.31 (512x64 float32), 0.48 (256x128), 0.68 (128x256), 0.86-0.87
(64x512, 32x1000), float64 0.51 (512x64), 0.64 (256x128), 0.90 (64x512); two
threads at 65536x64 float32 0.72-0.78 (16 MiB, out of cache), in cache
0.67-0.92 (2048x64 to 1024x256 float32, 2048x64 float64); but out of cache at
wider rows 1.03-1.13 (65536x128, 16384x256, 8192x1000 float32) and 1.07-1.26
(float64, 64-1000 classes), as for softmax: not taken there."""

LOG_SOFTMAX_SMALL_GROUP_ROW_BYTES = 4096


@njit(fastmath=_RED, **_KW)
def _grp_sumexp(x, r0, r1, M, lo, S):
    """float64 rows ``r0:r1``' ``sum exp(x[r] - m)`` into ``S`` and its rounding
    error into ``lo``, which held the rows' minima (``m`` as
    :func:`_grp_exp_store` takes it; the loops of :func:`_seg_sumexp`)."""
    wide()
    b = sum_bias(x, x.shape[1])
    for r in range(r0, r1):
        i = r - r0
        m = M[i]
        sh = m if m > _NINF else 0.0
        xs = x[r]
        s_hi = 0.0
        s_lo = -0.0
        if _range_nonpos(lo[i], sh, xs):
            for j in range(xs.shape[0]):
                v = expdiff_nonpos(xs[j], sh, xs)
                s_hi, s_lo = split_add(s_hi, s_lo, v, b, xs)
        else:
            for j in range(xs.shape[0]):
                v = expdiff(xs[j], sh, xs)
                s_hi, s_lo = split_add(s_hi, s_lo, v, b, xs)
        S[i], lo[i] = _sum_parts(s_hi, s_lo)  # the minimum was read above


def grp_sumexp(x, r0, r1, M, lo, S, E):
    """Rows ``r0:r1``' sums of exps into ``S``, as :func:`block_sumexp` takes a
    one-block row's, and their rounding errors into ``lo``, which held their
    minima (``E``: from :func:`group_exps`)."""
    raise NotImplementedError  # only callable from jitted code


@overload(grp_sumexp, inline="always")
def _grp_sumexp_impl(x, r0, r1, M, lo, S, E):
    if _is_f32(x):
        # the exps in float32 lanes into E, then their float64 sums
        def impl(x, r0, r1, M, lo, S, E):
            _grp_exp_store(x[r0:r1], E, 0, r1 - r0, M, lo, False)
            _grp_sum(E, 0, r1 - r0, S, lo, True)

        return impl
    return lambda x, r0, r1, M, lo, S, E: _grp_sumexp(x, r0, r1, M, lo, S)


def group_exps(x):
    """A group's float32 exps (``(rows, C)``, :func:`_reread_rows` rows) for
    :func:`grp_sumexp`; empty for float64 rows, summed as they are computed."""
    raise NotImplementedError  # only callable from jitted code


@overload(group_exps, inline="always")
def _group_exps_impl(x):
    if _is_f32(x):
        return lambda x: np.empty((_reread_rows(x), x.shape[1]), np.float32)
    return lambda x: np.empty((0, 0), np.float64)


@njit(fastmath={"contract"}, **_KW)
def _grp_log_softmax_write(x, out, r0, r1, M, LS, ip):
    """``out[r] = (x[r] - M) - log S`` for rows ``r0:r1`` (the loops of
    :func:`_seg_log_softmax`)."""
    wide()
    for r in range(r0, r1):
        m = M[r - r0]
        ls = LS[r - r0]
        os_ = out[r]
        if ip:
            for j in range(os_.shape[0]):
                os_[j] = (np.float64(os_[j]) - m) - ls
        else:
            xs = x[r]
            for j in range(xs.shape[0]):
                os_[j] = (np.float64(xs[j]) - m) - ls


@njit(**_GLUE)
def _grp_stats(x, r0, r1, M, S, L, E):
    """Rows ``r0:r1``' ``(M, S)`` by the grouped passes (their range, then
    :func:`grp_sumexp`); ``L`` holds their minima, then the sums' rounding
    errors (for :func:`_log_group`), ``E`` is from :func:`group_exps`."""
    _grp_range(x, r0, r1, M, L)
    grp_sumexp(x, r0, r1, M, L, S, E)
    for i in range(r1 - r0):
        S[i] = _finish(M[i], S[i])[1]


@njit(**_GLUE)
def _log_softmax_groups(x, out, r0, r1, ip, st, E):
    """log_softmax of one-block rows ``r0:r1`` by grouped passes,
    ``REREAD_BYTES`` of them at a time (``st``: ``(3, LOG_ROWS)`` float64)."""
    G = _reread_rows(x)
    for q in range(r0, r1, G):
        q1 = min(r1, q + G)
        k = q1 - q
        M, S, L = st[0, :k], st[1, :k], st[2, :k]
        _grp_stats(x, q, q1, M, S, L, E)  # L: the minima, the errors, the logs
        _log_group(st, k)
        _grp_log_softmax_write(x, out, q, q1, M, L, ip)


@njit(**_GLUE)
def _group_stats(x, r0, r1, buf, st):
    """Rows ``r0:r1``' ``(M, S, E)`` into ``st[:3, :r1 - r0]`` (``E``, the sums'
    rounding errors, where :func:`_log_group` puts ``log S``)."""
    for r in range(r0, r1):
        i = r - r0
        st[0, i], st[1, i], st[2, i] = _row_stats_e(x[r], buf)


@njit(**_GLUE)
def _group_stats_lo(x, r0, r1, buf, st):
    """:func:`_group_stats`, and each row's minimum into ``st[3]``."""
    for r in range(r0, r1):
        i = r - r0
        st[0, i], st[1, i], st[2, i], st[3, i] = _row_stats_e_lo(x[r], buf)


@njit(fastmath={"contract"}, **_KW)
def _log_group(st, n):
    """``st[2, :n] = log S`` from the sums ``st[1]`` and their rounding errors
    ``st[2]`` (:func:`log_sum`), vectorised: a row's scalar ``log64`` cost
    15-20 ns, a fifth of a 128-class float32 logsumexp row."""
    wide()
    S = st[1, :n]
    ls = st[2, :n]
    for i in range(ls.shape[0]):
        ls[i] = log_sum(S[i], ls[i])


@njit(fastmath={"contract"}, **_KW)
def _lse_group_out(st, os_):
    """``lse = M + log S`` of a group's rows (``st[2]``: the sums' rounding
    errors), rounded once to ``os_``'s dtype."""
    wide()
    for i in range(os_.shape[0]):
        os_[i] = st[0, i] + log_sum(st[1, i], st[2, i])


@njit(**_GLUE)
def _log_softmax_group(x, out, r0, r1, ip, buf, st):
    """Every row's statistics first, then their logs in one loop, then the
    writes (a row is read before it is written: ``out`` may be ``x``)."""
    _group_stats(x, r0, r1, buf, st)
    _log_group(st, r1 - r0)
    C = x.shape[1]
    for r in range(r0, r1):
        _seg_log_softmax(x[r], out[r], 0, C, st[0, r - r0], st[2, r - r0], ip)


@njit(**_GLUE)
def _lse_group(x, out, r0, r1, buf, st):
    _group_stats(x, r0, r1, buf, st)
    _lse_group_out(st, out[r0:r1])


DOT_CHUNK = 1024
"""float64 rows longer than this sum softmax_backward's dot product
(:func:`_dot_row`) a chunk at a time, the chunks' sums compensated (TwoSum).
In one vector loop each of its partial sums (16 in 256-bit vectors, 32 in
512-bit ones) adds ``C / 16`` or ``C / 32`` terms in order, so the rounding
error grew with the row: with one class dominant, every term of that class's
lane rounds against its product, and the kit's metric (tolerance 16 ULPs)
measured 17 ULPs at 16384 classes and 42 at 100000 (4 rows of each, 4 seeds,
256-bit vectors); chunked, 3.2-3.6 (1.1-3.6 over normal, dominant and centred
rows of 2000-100000 classes). A chunk bounds each partial sum to 64 terms at
any width; its time was within the noise (one thread, 1000-100000 classes,
medians of 6 alternating runs: 0.94-1.04 of the one loop's, 1.04 for the
unchanged 1000 classes). float32 and 16-bit rows sum exact float64 products
2^29 times more finely than their results round: one loop. log_softmax_backward's
sum of the gradient keeps one loop too: its metric counts ``sum |g|`` whole
(0.50 ULPs on the same rows)."""


@njit(fastmath=_RED, **_KW)
def _dot_seg(g, p):
    """``<g, p>`` summed in float64 in one vector loop, products as
    :func:`mul64` takes them (float16 rows multiply in float32 and widen only
    the product: one thread, 0.35-0.42 ns an element for the whole
    softmax_backward pass, where widening each element took 0.46-0.54)."""
    wide()
    s = 0.0
    for j in range(g.shape[0]):
        s += mul64(g[j], p[j])
    return s


@njit(**_GLUE)
def _dot_row(g, p):
    """``<g, p>`` in float64: :func:`_dot_seg`, a chunk at a time for float64
    rows past ``DOT_CHUNK``."""
    C = g.shape[0]
    if f32_row(g) or C <= DOT_CHUNK:
        return _dot_seg(g, p)
    s = 0.0
    c = 0.0
    for j0 in range(0, C, DOT_CHUNK):
        j1 = min(C, j0 + DOT_CHUNK)
        s, c = _two_sum_acc(s, c, _dot_seg(g[j0:j1], p[j0:j1]))
    return _two_sum_done(s, c)


# The backward passes take a block of rows per call, the write loop in the
# block's own function: called a row at a time, the row's views and call cost
# more than a narrow row's arithmetic (softmax_backward at 512x64 float32, one
# thread: 18.8 us a row at a time, 5.5 us a block at a time; 5.3 and 4.9 us at
# 32x1000). The reductions stay functions of their own, so their loops (and
# bits) are the same wherever the block is compiled.


_F32_LANES_MAX = 2.0**102
"""A float32 row's ``(g - dh) - dl`` cannot overflow where ``|<g, p>|`` is below
this, whatever its gradient: ``|dh|`` is then at most 2^102, less than half an
ULP of float32's largest (2^103), so ``g - dh`` rounds to a finite float32 for
every finite ``g`` (and ``dl`` is smaller still)."""


@njit(fastmath={"contract"}, **_KW)
def _softmax_backward_block(g, p, out, r0, r1):
    """``out[r] = p[r] (g[r] - <g[r], p[r]>)`` for rows ``r0:r1`` (a row is
    read before it is written: ``out`` may be ``g`` or ``p``).

    The dot product is summed in float64. A float32 row whose dot product is
    below 2^102 in magnitude (:data:`_F32_LANES_MAX`) is written in float32
    lanes, twice a float64 loop's, as ``((g - dh) - dl) p`` with the dot product
    split in two float32 parts: ``g - dh`` is exact where it cancels,
    elsewhere three roundings keep the result within 2.5 ULP (2.05 the worst
    seen; the float64 write's is 0.5). Other rows (a NaN or larger dot
    product), and float64 ones, are written in float64: ``g - <g, p>``
    overflows float32 for a gradient near its largest and a dot product of
    the other sign where the result need not. The bound is on the dot
    product alone, so the row needs no test of its elements (an element at
    least 2^126 in magnitude sent the row to float64; without that test in the
    dot product's loop, float32 calls take 0.68-0.74 of the time at 512x32,
    0.80-0.90 at 512x64, 0.92-0.94 at 64x512, 0.85-0.95 at 8192x1000).
    One thread, float32, the float32 lanes' time over the float64 write's:
    0.75 at 512x64, 0.64 at 64x512, 0.68-0.75 at 32x1000, 0.94-1.0 at
    8192x1000 (a Zen 4 host, whose zmm conversions between float32 and
    float64 are dear; on an earlier host a variant with the check took
    1.0-1.09).

    float16 and bfloat16 rows (uint16 and int16 bits, ``_rows16``) take the
    float32 rows' loops, each element widened as it is loaded and rounded as
    it is stored (:func:`ld`, :func:`st`): the float32 results rounded.
    """
    wide()
    for r in range(r0, r1):
        gr, pr, outr = g[r], p[r], out[r]
        d = _dot_row(gr, pr)
        if f32_row(gr) and abs(d) < _F32_LANES_MAX:
            # split_factor's two parts without its test for an infinite high
            # part (dh is finite here): with that test the pass took
            # 1.07-1.17x the time at 512x32 and 512x64 float32 (one thread,
            # in cache; 0.99-1.04x at 64x512 and 256x128)
            dh = np.float32(d)
            dl = np.float32(d - np.float64(dh))
            for j in range(gr.shape[0]):
                outr[j] = st(((ld(gr[j]) - dh) - dl) * ld(pr[j]), outr)
            continue
        for j in range(gr.shape[0]):
            pj = np.float64(ld(pr[j]))
            outr[j] = st(pj * (np.float64(ld(gr[j])) - d), outr)


@njit(fastmath=_RED, **_KW)
def _sum_row(g):
    wide()
    s = 0.0
    for j in range(g.shape[0]):
        s += np.float64(ld(g[j]))
    return s


@njit(**_KW)
def _row_nonpos(lpr):
    """Whether every element of ``lpr`` is NaN or in ``[nonpos_min, 0]``, the
    domain of :func:`exp_elem_nonpos` (log-probabilities are, unless a row
    holds ``-inf`` or one below ``nonpos_min``: -87 in float32). A loop of its
    own: folded into the sum's, float32 at 256x128 took 1.4x the time."""
    wide()
    lim = nonpos_min(lpr)
    out_ = False
    for j in range(lpr.shape[0]):
        v = ld(lpr[j])
        out_ |= (v < lim) | (v > 0)
    return not out_


@njit(**_KW)
def _row_notpos(lpr):
    """Whether no element of ``lpr`` is positive, the domain of
    :func:`exp_elem_neg`: asked of a row that :func:`_row_nonpos` turned down
    (a masked row's ``-inf``), so that the others pay no second loop (one
    loop telling both apart took 1.03-1.07x the time at 64x512 and 256x128)."""
    wide()
    pos = False
    for j in range(lpr.shape[0]):
        pos |= ld(lpr[j]) > 0
    return not pos


@njit(fastmath={"contract"}, **_KW)
def _log_softmax_backward_block(g, lp, out, r0, r1):
    """``out[r] = g[r] - exp(lp[r]) sum(g[r])`` for rows ``r0:r1``.

    Where a float32 row's log-probabilities are all in the unclamped exp's
    domain (no ``-inf``, none above 0 or below ``nonpos_min``) and its sum is
    finite in float32, the exp and the subtraction run in float32, twice a
    float64 exp's lanes, the float64 sum split in two float32 parts so that its
    rounding adds no error where the subtraction cancels (``exp`` is at most 1
    there: no intermediate overflows where the result does not). At 512x64,
    one thread: 17.7 us with every row in float64, 7.3-8.4 us so. A row with
    none above 0 but some below that domain (a masked row's ``-inf``) takes
    the same float32 lanes with :func:`exp_elem_neg`: masked calls 0.86-0.97
    of the time they took in float64 (float16 0.67-0.89), their error that of
    the unmasked rows (0.5-1.1 ULP of the kit's metric; 0.5-1.04 in float64).
    Other rows, and float64 ones, take the clamped exp and subtract in float64
    (float64 rows through the check and the unclamped exp: 0.79-0.96 of the
    time in cache, but 1.07-1.17 out of cache, at 8192x1000 and 1024x32000).
    16-bit rows as in :func:`_softmax_backward_block`.
    """
    wide()
    for r in range(r0, r1):
        gr, lpr, outr = g[r], lp[r], out[r]
        t = _sum_row(gr)
        th, tl = split_factor(t, gr)
        lanes = f32_row(gr) and abs(th) < _INF
        if lanes and _row_nonpos(lpr):
            for j in range(gr.shape[0]):  # float32: th + tl holds t
                e = exp_elem_nonpos(ld(lpr[j]))
                outr[j] = st((ld(gr[j]) - e * th) - e * tl, outr)
        elif lanes and _row_notpos(lpr):
            for j in range(gr.shape[0]):
                e = exp_elem_neg(ld(lpr[j]))
                outr[j] = st((ld(gr[j]) - e * th) - e * tl, outr)
        else:
            for j in range(gr.shape[0]):
                e = np.float64(exp_elem(ld(lpr[j])))
                outr[j] = st(np.float64(ld(gr[j])) - e * t, outr)


# --------------------------------------------------------- cross-entropy, class index


@njit(fastmath={"contract"}, **_KW)
def _seg_ce_grad(xr, gr, j0, j1, M, c1, c2, cw, ip, nonpos):
    """Write ``g_j = exp(x_j - M) c1 - c2 w_j`` over a segment (``gr`` may be ``xr``;
    ``nonpos``: the unclamped exp may run, as :func:`_seg_nonpos`).

    Reductions never share a loop with a write: where ``gr`` may alias ``xr``
    LLVM picks a vector or a scalar loop at run time, which would change the
    order of a sum with ``reassoc``.
    """
    wide()
    ws = cw[j0:j1]
    gs_ = gr[j0:j1]
    if ip:
        if nonpos:
            for j in range(gs_.shape[0]):
                gs_[j] = expdiff_nonpos(gs_[j], M, gs_) * c1 - c2 * ws[j]
        else:
            for j in range(gs_.shape[0]):
                gs_[j] = expdiff(gs_[j], M, gs_) * c1 - c2 * ws[j]
    else:
        xs = xr[j0:j1]
        if nonpos:
            for j in range(xs.shape[0]):
                gs_[j] = expdiff_nonpos(xs[j], M, xs) * c1 - c2 * ws[j]
        else:
            for j in range(xs.shape[0]):
                gs_[j] = expdiff(xs[j], M, xs) * c1 - c2 * ws[j]


@njit(fastmath={"contract"}, **_KW)
def _seg_affine(gr, j0, j1, c1, c2, cw):
    """``g_j = g_j c1 - c2 w_j`` over a segment, in float64, rounded once."""
    wide()
    ws = cw[j0:j1]
    gs_ = gr[j0:j1]
    for j in range(gs_.shape[0]):
        gs_[j] = np.float64(gs_[j]) * c1 - c2 * ws[j]


def seg_ce_grad(xr, gr, j0, j1, M, c1, c2, cw, ip, nonpos):
    """:func:`_seg_ce_grad`, in two loops for float32 rows (same bits)."""
    raise NotImplementedError  # only callable from jitted code


@overload(seg_ce_grad, inline="always")
def _seg_ce_grad_impl(xr, gr, j0, j1, M, c1, c2, cw, ip, nonpos):
    if _is_f32(gr):
        # the float32 exp alone first (16 lanes, not the float64 loop's 8),
        # stored exactly; then the float64 affine map from L1
        def impl(xr, gr, j0, j1, M, c1, c2, cw, ip, nonpos):
            _seg_exp_store(xr, gr, j0, j1, M, ip, nonpos)
            _seg_affine(gr, j0, j1, c1, c2, cw)

        return impl
    return lambda xr, gr, j0, j1, M, c1, c2, cw, ip, nonpos: _seg_ce_grad(
        xr, gr, j0, j1, M, c1, c2, cw, ip, nonpos
    )


@njit(fastmath=_RED, **_KW)
def _seg_wdot(xr, j0, j1, M, cw):
    wide()
    xs = xr[j0:j1]
    ws = cw[j0:j1]
    acc = 0.0
    for j in range(xs.shape[0]):
        acc += ws[j] * (M - np.float64(xs[j]))  # 0 * inf is NaN, as in PyTorch
    return acc


@njit(**_GLUE)
def _ce_loss(a, b, M, log_s, xy, wdot, W):
    """A class-index row's loss ``a (lse - x_y) + b sum_j w_j (lse - x_j)``:
    0 for a row that is not kept (``a = b = 0``), else the formula taken
    literally, so ``0 * inf`` is NaN there as in PyTorch (label smoothing 1, or
    a zero class weight, on a ``-inf`` logit)."""
    if a == 0.0 and b == 0.0:
        return 0.0
    loss = a * ((M - xy) + log_s)
    if b != 0.0:
        loss += b * (wdot + W * log_s)
    return loss


@njit(**_GLUE)
def _ce_row_stats(xr, y, b, cw, buf):
    """A kept row's ``(M, S, E, x_y, wdot)``: what its loss needs but ``log S``."""
    wide()
    M, S, E = _row_stats_e(xr, buf)
    wdot = 0.0
    if b != 0.0:
        C = xr.shape[0]
        for j0 in range(0, C, BLOCK):
            wdot += _seg_wdot(xr, j0, min(C, j0 + BLOCK), M, cw)
    return M, S, E, np.float64(xr[y]), wdot


# Class-index cross-entropy rows are taken a group of LOG_ROWS rows at a time,
# as log_softmax's: each kept row's gradient but its target column, and its
# (M, S, x_y, wdot) into the group's scratch T; then for the whole group in one
# vectorised loop exp(x_y - M) (the target column's one accurate exp) and
# log S; then per row the target column and the loss. The scalar exp64 and
# log64 per row cost 30-40 ns, a fifth of a 128-class float32 row.

_T_M, _T_S, _T_XY, _T_WDOT, _T_EY, _T_LOGS, _T_E = range(7)  # rows of a group's T
_T_ROWS = 7  # _T_E: the sums' rounding errors (log_sum)


@njit(fastmath={"contract"}, **_KW)
def _ce_group_transcendentals(T, n):
    """``exp(x_y - M)`` and ``log S`` of a group's ``n`` rows, vectorised."""
    wide()
    for i in range(n):
        T[_T_EY, i] = exp64(T[_T_XY, i] - T[_T_M, i])
        T[_T_LOGS, i] = log_sum(T[_T_S, i], T[_T_E, i])


@njit(**_GLUE)
def _put_stats(T, i, M, S, E, xy, wdot):
    T[_T_M, i] = M
    T[_T_S, i] = S
    T[_T_E, i] = E
    T[_T_XY, i] = xy
    T[_T_WDOT, i] = wdot


@njit(**_GLUE)
def _group_loss(T, i, a, b, W):
    """Row ``i``'s loss from its group's terms (0 for an ignored row)."""
    if a == 0.0 and b == 0.0:
        return 0.0
    return _ce_loss(a, b, T[_T_M, i], T[_T_LOGS, i], T[_T_XY, i], T[_T_WDOT, i], W)


@njit(**_GLUE)
def _ce_group(x, target, alpha, beta, cw, W, r0, r1, buf, T, loss_out):
    for r in range(r0, r1):
        # an ignored row (loss 0 by _group_loss) is read as its neighbours are:
        # skipping it broke the prefetcher's stream (every other row of 128
        # doubles ignored took 1.6x the time of none)
        M, S, E, xy, wdot = _ce_row_stats(x[r], target[r], beta[r], cw, buf)
        _put_stats(T, r - r0, M, S, E, xy, wdot)
    _ce_group_transcendentals(T, r1 - r0)
    for r in range(r0, r1):
        loss_out[r] = _group_loss(T, r - r0, alpha[r], beta[r], W)


@njit(**_GLUE)
def _ce_grad_seg(xr, gr, j0, j1, y, a, b, cw, W, gs, M, S, ip, lo):
    """Gradient over ``[j0, j1)`` given the row's ``(M, S)``; the smoothing
    partial sum of the segment is read first and returned. The target column is
    fixed up by the caller.

    ``lo``, the row's minimum or the segment's, decides the exp's domain against
    ``M`` (:func:`_range_nonpos`). Where the row's minimum rules out a segment
    that is in the domain, the clamped exp runs: the same bits there."""
    c1 = gs * (a + b * W) / S
    part = _seg_wdot(xr, j0, j1, M, cw)
    seg_ce_grad(xr, gr, j0, j1, M, c1, gs * b, cw, ip, _range_nonpos(lo, M, xr))
    return part


@njit(**_GLUE)
def _ce_grad_fix(gr, y, a, b, cw, W, gs, M, S, xy):
    _ce_grad_fix_e(gr, y, a, b, cw, W, gs, S, exp64(xy - M))  # one accurate exp


@njit(**_GLUE)
def _ce_grad_fix_e(gr, y, a, b, cw, W, gs, S, ey):
    """The target column of the gradient, given ``ey = exp(x_y - M)``."""
    p = ey * (gs * (a + b * W) / S)
    gr[y] = (p - gs * b * cw[y]) - gs * a


@njit(**_KW)
def _zero_row(gr):
    wide()
    for j in range(gr.shape[0]):
        gr[j] = 0.0


@njit(**_GLUE)
def _ce_grad_body(xr, gr, y, a, b, cw, W, gs, ip, buf):
    """A kept row's gradient but its target column; returns ``(M, S, E, x_y,
    wdot)`` for :func:`_ce_grad_fix_e` and :func:`_ce_loss`."""
    wide()
    xy = np.float64(xr[y])  # before gr (possibly xr) is written
    C = xr.shape[0]
    if b == 0.0:  # no smoothing: store exp(x - m_b) in gr, then scale it
        if C <= BLOCK:  # no block-maxima array to allocate
            m, sb, E = _block_exp_store_e(xr, gr, 0, C, ip)
            M, S = _combine(_NINF, 0.0, m, sb)
            M, S = _finish(M, S)
            _seg_scale(gr, 0, C, _block_factor(m, M, S) * (gs * a))
        else:
            M, S, E, bm = _exp_store_row(xr, gr, ip, True)
            _scale_row(gr, M, S, bm, gs * a)
        return M, S, E, xy, 0.0
    M, S, E, lo = _row_stats_e_lo(xr, buf)
    wdot = 0.0
    for j0 in range(0, C, BLOCK):
        j1 = min(C, j0 + BLOCK)
        wdot += _ce_grad_seg(xr, gr, j0, j1, y, a, b, cw, W, gs, M, S, ip, lo)
    return M, S, E, xy, wdot


@njit(**_GLUE)
def _ce_grad_groups(x, target, alpha, gs, ip, r0, r1, T, grad_out):
    """:func:`_ce_grad_body` of unsmoothed one-block rows ``r0:r1`` by the grouped
    passes (``T[_T_XY]`` taken first, as the writes may overwrite ``x``);
    ignored rows are computed, then zeroed."""
    for r in range(r0, r1):
        T[_T_XY, r - r0] = np.float64(x[r, target[r]])
        T[_T_WDOT, r - r0] = 0.0
    G = _reread_rows(x)
    for q in range(r0, r1, G):
        q1 = min(r1, q + G)
        o = q - r0
        M, S, Er = T[_T_M, o:], T[_T_S, o:], T[_T_E, o:]  # Er: lo first
        F = T[_T_LOGS, o:]  # the factors, until the logs
        _grp_exp_sums(x, grad_out, q, q1, M, S, Er, ip, True)
        for r in range(q, q1):
            i = r - q
            F[i] = _block_factor(M[i], M[i], S[i]) * (gs * alpha[r])
        _grp_scale(grad_out, q, q1, F)
    for r in range(r0, r1):
        if alpha[r] == 0.0:
            _zero_row(grad_out[r])


@njit(**_GLUE)
def _ce_grad_rows(x, target, alpha, beta, cw, W, gs, ip, r0, r1, buf, T, grad_out):
    """Rows ``r0:r1`` a row at a time: each kept row's gradient but its target
    column, and its terms into ``T``. An ignored row is read and computed as its
    neighbours are (with ``alpha = 1``, ``beta = 0``), then zeroed: skipping its
    read broke the prefetcher's stream, and rows of 128 doubles with every tenth
    one ignored took 1.35x the time. One call of the row body for both (each
    call site of inlined code is typed and compiled again)."""
    for r in range(r0, r1):
        a, b = alpha[r], beta[r]
        kept = a != 0.0 or b != 0.0
        if not kept:
            a, b = 1.0, 0.0
        M, S, E, xy, wdot = _ce_grad_body(
            x[r], grad_out[r], target[r], a, b, cw, W, gs, ip, buf
        )
        if not kept:
            _zero_row(grad_out[r])
            M, S, E, xy, wdot = 0.0, 1.0, 0.0, 0.0, 0.0
        _put_stats(T, r - r0, M, S, E, xy, wdot)


@njit(**_GLUE)
def _ce_grad_group(
    x, target, alpha, beta, cw, W, gs, ip, r0, r1, buf, T, loss_out, grad_out
):
    _ce_grad_rows(x, target, alpha, beta, cw, W, gs, ip, r0, r1, buf, T, grad_out)
    _ce_grad_group_end(target, alpha, beta, cw, W, gs, r0, r1, T, loss_out, grad_out)


@njit(**_GLUE)
def _ce_grad_group_end(target, alpha, beta, cw, W, gs, r0, r1, T, loss_out, grad_out):
    """A group's transcendentals, target columns and losses, from its terms in
    ``T``."""
    _ce_group_transcendentals(T, r1 - r0)
    for r in range(r0, r1):
        i = r - r0
        a, b = alpha[r], beta[r]
        if a != 0.0 or b != 0.0:
            S, ey = T[_T_S, i], T[_T_EY, i]
            _ce_grad_fix_e(grad_out[r], target[r], a, b, cw, W, gs, S, ey)
        loss_out[r] = _group_loss(T, i, a, b, W)


@njit(**_GLUE)
def _any_nonzero(v, r0, r1):
    for r in range(r0, r1):
        if v[r] != 0.0:
            return True
    return False


@njit(**_GLUE)
def _ce_grad_group_grouped(
    x, target, alpha, beta, cw, W, gs, ip, r0, r1, buf, T, loss_out, grad_out
):
    """:func:`_ce_grad_group` by the grouped passes where no row of the group
    is smoothed (the smoothed gradient keeps its row-at-a-time passes)."""
    if _any_nonzero(beta, r0, r1):
        _ce_grad_rows(x, target, alpha, beta, cw, W, gs, ip, r0, r1, buf, T, grad_out)
    else:
        _ce_grad_groups(x, target, alpha, gs, ip, r0, r1, T, grad_out)
    _ce_grad_group_end(target, alpha, beta, cw, W, gs, r0, r1, T, loss_out, grad_out)


@njit(fastmath=_RED, **_KW)
def _wsum(cw):
    wide()
    W = 0.0
    for c in range(cw.shape[0]):
        W += cw[c]
    return W


# ---------------------------------------------------- cross-entropy, probability target


@njit(**_GLUE)
def _prob_coeffs(eps, C):
    """``(k1, k0)`` of label smoothing ``eps`` over ``C`` classes: a row's
    coefficient of class ``j`` is ``a_j = (k1 t_j + k0) w_j``."""
    return 1.0 - eps, eps / C


@njit(fastmath=_RED, **_KW)
def _prob_A(tr, cw, k1, k0):
    wide()
    A = 0.0
    for j in range(tr.shape[0]):
        A += (k1 * np.float64(tr[j]) + k0) * cw[j]
    return A


@njit(fastmath=_RED, **_KW)
def _prob_loss(xr, tr, cw, k1, k0, M, log_s):
    wide()
    acc = 0.0
    for j in range(xr.shape[0]):
        aj = (k1 * np.float64(tr[j]) + k0) * cw[j]
        acc += (aj * ((M - np.float64(xr[j])) + log_s)) if aj != 0.0 else 0.0
    return acc


@njit(**_GLUE)
def _ce_prob_group(x, target, cw, k1, k0, r0, r1, buf, st, loss_out):
    """Losses of rows ``r0:r1``, their logs taken in one loop (as log_softmax)."""
    _group_stats(x, r0, r1, buf, st)
    _log_group(st, r1 - r0)
    for r in range(r0, r1):
        i = r - r0
        loss_out[r] = _prob_loss(x[r], target[r], cw, k1, k0, st[0, i], st[2, i])


@njit(fastmath={"contract"}, **_KW)
def _prob_affine(tr, gr, cw, k1, k0, c1, gs):
    """``g_j = g_j c1 - gs a_j`` (``g_j`` holding ``exp(x_j - M)``), in float64."""
    wide()
    for j in range(gr.shape[0]):
        aj = (k1 * np.float64(tr[j]) + k0) * cw[j]
        gr[j] = np.float64(gr[j]) * c1 - gs * aj


@njit(**_GLUE)
def _ce_prob_grad_tail(xr, tr, gr, cw, k1, k0, gs, ip, M, S, log_s, lo):
    """A row's loss and gradient, given its ``(M, S, log S)`` and minimum."""
    loss = _prob_loss(xr, tr, cw, k1, k0, M, log_s)  # read before gr is written
    A = _prob_A(tr, cw, k1, k0)
    c1 = gs * A / S
    # the exp alone (float32 rows: in float32 lanes, twice the float64 loop's
    # width), stored exactly, then the float64 affine map from cache
    _seg_exp_store(xr, gr, 0, xr.shape[0], M, ip, _range_nonpos(lo, M, xr))
    _prob_affine(tr, gr, cw, k1, k0, c1, gs)
    return loss


@njit(**_GLUE)
def _ce_prob_grad_group(x, target, cw, k1, k0, gs, ip, r0, r1, buf, st, lo, go):
    """Every row's statistics first (nothing is written yet: ``go`` may be
    ``x``), their logs in one loop, then each row's loss and gradient
    (``st``: four rows, the fourth for the rows' minima). One-block rows
    into another array take :func:`_ce_prob_grad_stored`."""
    if not ip and x.shape[1] <= BLOCK:
        _ce_prob_grad_stored(x, target, cw, k1, k0, gs, r0, r1, buf, st, lo, go)
        return
    _group_stats_lo(x, r0, r1, buf, st)
    _log_group(st, r1 - r0)
    for r in range(r0, r1):
        i = r - r0
        lo[r] = _ce_prob_grad_tail(
            x[r], target[r], go[r], cw, k1, k0, gs, ip,
            st[0, i], st[1, i], st[2, i], st[3, i],
        )  # fmt: skip


@njit(**_GLUE)
def _ce_prob_grad_stored(x, target, cw, k1, k0, gs, r0, r1, buf, st, lo, go):
    """:func:`_ce_prob_grad_group` of one-block rows into another array with
    one exp an element, not two: each row's ``exp(x - M)`` is stored in its
    gradient row as it is summed (as softmax does), the logs taken in one
    loop, then the loss read from ``x`` (still whole) and the affine map
    applied to the stored exps. The same ``(M, S)``, exps and arithmetic as
    the statistics-first path, so the same bits; a row of no finite maximum
    (only ``-inf`` and NaN) takes that path, for its NaNs' bits."""
    C = x.shape[1]
    for r in range(r0, r1):
        i = r - r0
        m, sb, st[2, i] = _block_exp_store_e(x[r], go[r], 0, C, False)
        M, S = _combine(_NINF, 0.0, m, sb)
        st[0, i], st[1, i] = _finish(M, S)
    _log_group(st, r1 - r0)
    for r in range(r0, r1):
        i = r - r0
        xr, tr, gr = x[r], target[r], go[r]
        M, S, log_s = st[0, i], st[1, i], st[2, i]
        if not M > _NINF:
            M, S, Er, mn = _row_stats_e_lo(xr, buf)
            log_s = log_sum(S, Er)
            lo[r] = _ce_prob_grad_tail(
                xr, tr, gr, cw, k1, k0, gs, False, M, S, log_s, mn
            )
            continue
        lo[r] = _prob_loss(xr, tr, cw, k1, k0, M, log_s)
        _prob_affine(tr, gr, cw, k1, k0, gs * _prob_A(tr, cw, k1, k0) / S, gs)


# ------------------------------------------------------------------- Jacobian rows


@njit(fastmath={"contract"}, **_KW)
def _jac_row_i(Jr, i, s_last, log):
    """Row ``i`` of one Jacobian from the probabilities kept in ``Jr[C-1]``."""
    wide()
    C = Jr.shape[1]
    si = np.float64(s_last[i])
    Ji = Jr[i]
    if log:
        for j in range(C):
            Ji[j] = -np.float64(s_last[j])
        Ji[i] = 1.0 - si
    else:
        for j in range(C):
            Ji[j] = -(si * np.float64(s_last[j]))
        Ji[i] = si * (1.0 - si)


@njit(fastmath={"contract"}, **_KW)
def _jac_row_last(Jr, log):
    """Row ``C-1`` in place (it holds the probabilities until now)."""
    wide()
    C = Jr.shape[1]
    row = Jr[C - 1]
    sl = np.float64(row[C - 1])
    if log:
        for j in range(C):
            row[j] = -np.float64(row[j])
        row[C - 1] = 1.0 - sl
    else:
        for j in range(C):
            row[j] = -(sl * np.float64(row[j]))
        row[C - 1] = sl * (1.0 - sl)


# ========================================================================== drivers
# One serial and one parallel driver per op; the Python layer picks by size.


@njit(**_PKW)
def softmax_par(x, out):
    wide()
    ip = x.ctypes.data == out.ctypes.data
    for r in prange(x.shape[0]):
        _softmax_row(x[r], out[r], ip)


@njit(**_KW)
def softmax_ser(x, out):
    x, out = borrow(x), borrow(out)
    wide()
    ip = x.ctypes.data == out.ctypes.data
    for r in range(x.shape[0]):
        _softmax_row(x[r], out[r], ip)


# Rows that take the grouped passes have drivers of their own, picked by shape:
# with both loops in one parallel driver, the row-at-a-time one ran 1.2-1.3x
# slower (8192x1000 float32, 2 threads).


@njit(**_PKW)
def softmax_grouped_par(x, out):
    wide()
    ip = x.ctypes.data == out.ctypes.data
    n = x.shape[0]
    R = _task_rows(x)
    for t in prange((n + R - 1) // R):
        _softmax_groups(x, out, t * R, min(n, t * R + R), ip, group_scratch(3, R))


@njit(**_KW)
def softmax_grouped_ser(x, out):
    x, out = borrow(x), borrow(out)
    wide()
    ip = x.ctypes.data == out.ctypes.data
    _softmax_groups(x, out, 0, x.shape[0], ip, group_scratch(3, x.shape[0]))


@njit(**_PKW)
def log_softmax_par(x, out):
    wide()
    ip = x.ctypes.data == out.ctypes.data
    n = x.shape[0]
    G = _reread_rows(x)
    R = _task_rows(x)
    for t in prange((n + R - 1) // R):
        buf = scratch(x)
        st = group_scratch(3, R)
        t1 = min(n, t * R + R)
        for g in range(t * R, t1, G):
            _log_softmax_group(x, out, g, min(t1, g + G), ip, buf, st)


@njit(**_KW)
def log_softmax_ser(x, out):
    x, out = borrow(x), borrow(out)
    wide()
    ip = x.ctypes.data == out.ctypes.data
    n = x.shape[0]
    G = _reread_rows(x)
    buf = scratch(x)
    st = group_scratch(3, n)
    for g in range(0, n, G):
        _log_softmax_group(x, out, g, min(n, g + G), ip, buf, st)


@njit(**_PKW)
def log_softmax_grouped_par(x, out):
    wide()
    ip = x.ctypes.data == out.ctypes.data
    n = x.shape[0]
    R = _task_rows(x)
    for t in prange((n + R - 1) // R):
        st = group_scratch(3, R)
        _log_softmax_groups(x, out, t * R, min(n, t * R + R), ip, st, group_exps(x))


@njit(**_KW)
def log_softmax_grouped_ser(x, out):
    x, out = borrow(x), borrow(out)
    wide()
    ip = x.ctypes.data == out.ctypes.data
    st = group_scratch(3, x.shape[0])
    _log_softmax_groups(x, out, 0, x.shape[0], ip, st, group_exps(x))


LOGSUMEXP_GROUP_ROW_BYTES = 256
"""logsumexp rows of ``SHORT_C`` classes to this many bytes take log_softmax's
grouped statistics at every size, and to ``SMALL_GROUP_ROW_BYTES`` in serial
calls (the same bits). Grouped time over a row at a time, kernels, medians of
15 interleaved rounds: serial 0.57 (512x64 float32), 0.78 (256x128), 0.97
(512x64 float64); two threads 0.66-0.69 (65536x64 float32), 0.78 (2048x64).
Not taken: out of cache at 512 bytes (65536x128 float32 0.83-0.86, but
0.97-1.00 through the bench; 65536x64 float64 0.99 in one run, 1.18-1.19 in
the next), and wider serial rows (0.97 at 128x256 float32, 1.07 at 32x1000,
1.19 at 64x512 float64)."""


@njit(**_GLUE)
def _lse_groups(x, out, r0, r1, st, E):
    """logsumexp of one-block rows ``r0:r1`` from log_softmax's grouped
    statistics (:func:`_log_softmax_groups`; ``st``: ``(3, LOG_ROWS)``)."""
    G = _reread_rows(x)
    for q in range(r0, r1, G):
        q1 = min(r1, q + G)
        k = q1 - q
        _grp_stats(x, q, q1, st[0, :k], st[1, :k], st[2, :k], E)
        _lse_group_out(st, out[q:q1])


@njit(**_PKW)
def logsumexp_grouped_par(x, out):
    wide()
    n = x.shape[0]
    R = _task_rows(x)
    for t in prange((n + R - 1) // R):
        st = group_scratch(3, R)
        _lse_groups(x, out, t * R, min(n, t * R + R), st, group_exps(x))


@njit(**_KW)
def logsumexp_grouped_ser(x, out):
    x, out = borrow(x), borrow(out)
    wide()
    st = group_scratch(3, x.shape[0])
    _lse_groups(x, out, 0, x.shape[0], st, group_exps(x))


@njit(**_PKW)
def logsumexp_par(x, out):
    wide()
    n = x.shape[0]
    R = _task_rows(x)
    for t in prange((n + R - 1) // R):
        buf = scratch(x)
        st = group_scratch(3, R)
        t1 = min(n, t * R + R)
        for g in range(t * R, t1, LOG_ROWS):
            _lse_group(x, out, g, min(t1, g + LOG_ROWS), buf, st)


@njit(**_KW)
def logsumexp_ser(x, out):
    x, out = borrow(x), borrow(out)
    wide()
    n = x.shape[0]
    buf = scratch(x)
    st = group_scratch(3, n)
    for g in range(0, n, LOG_ROWS):
        _lse_group(x, out, g, min(n, g + LOG_ROWS), buf, st)


@njit(**_PKW)
def softmax_backward_par(g, p, out):
    n = g.shape[0]
    R = max(1, BACKWARD_TASK // g.shape[1])
    for t in prange((n + R - 1) // R):
        _softmax_backward_block(g, p, out, t * R, min(n, t * R + R))


@njit(**_KW)
def softmax_backward_ser(g, p, out):
    g, p, out = borrow(g), borrow(p), borrow(out)
    _softmax_backward_block(g, p, out, 0, g.shape[0])


@njit(**_PKW)
def log_softmax_backward_par(g, lp, out):
    n = g.shape[0]
    R = max(1, BACKWARD_TASK // g.shape[1])
    for t in prange((n + R - 1) // R):
        _log_softmax_backward_block(g, lp, out, t * R, min(n, t * R + R))


@njit(**_KW)
def log_softmax_backward_ser(g, lp, out):
    g, lp, out = borrow(g), borrow(lp), borrow(out)
    _log_softmax_backward_block(g, lp, out, 0, g.shape[0])


@njit(**_PKW)
def cross_entropy_par(x, target, alpha, beta, cw, loss_out):
    wide()
    W = _wsum(cw)
    n = x.shape[0]
    R = _task_rows(x)
    for t in prange((n + R - 1) // R):
        buf = scratch(x)
        T = group_scratch(_T_ROWS, R)
        t1 = min(n, t * R + R)
        for g in range(t * R, t1, LOG_ROWS):
            g1 = min(t1, g + LOG_ROWS)
            _ce_group(x, target, alpha, beta, cw, W, g, g1, buf, T, loss_out)


@njit(**_KW)
def cross_entropy_ser(x, target, alpha, beta, cw, loss_out):
    x, cw = borrow(x), borrow(cw)
    wide()
    W = _wsum(cw)
    n = x.shape[0]
    buf = scratch(x)
    T = group_scratch(_T_ROWS, n)
    for g in range(0, n, LOG_ROWS):
        g1 = min(n, g + LOG_ROWS)
        _ce_group(x, target, alpha, beta, cw, W, g, g1, buf, T, loss_out)


@njit(**_PKW)
def cross_entropy_grad_par(x, target, alpha, beta, cw, gs, loss_out, grad_out):
    wide()
    W = _wsum(cw)
    ip = x.ctypes.data == grad_out.ctypes.data
    n = x.shape[0]
    R = _task_rows(x)
    for t in prange((n + R - 1) // R):
        buf = scratch(x)
        T = group_scratch(_T_ROWS, R)
        t1 = min(n, t * R + R)
        for g in range(t * R, t1, LOG_ROWS):
            _ce_grad_group(
                x, target, alpha, beta, cw, W, gs, ip, g, min(t1, g + LOG_ROWS),
                buf, T, loss_out, grad_out,
            )  # fmt: skip


@njit(**_KW)
def cross_entropy_grad_ser(x, target, alpha, beta, cw, gs, loss_out, grad_out):
    x, cw, grad_out = borrow(x), borrow(cw), borrow(grad_out)
    wide()
    W = _wsum(cw)
    ip = x.ctypes.data == grad_out.ctypes.data
    n = x.shape[0]
    buf = scratch(x)
    T = group_scratch(_T_ROWS, n)
    for g in range(0, n, LOG_ROWS):
        _ce_grad_group(
            x, target, alpha, beta, cw, W, gs, ip, g, min(n, g + LOG_ROWS),
            buf, T, loss_out, grad_out,
        )  # fmt: skip


# The grouped passes' drivers (SMALL_GROUP_ROW_BYTES rows; in parallel calls up
# to CE_GROUP_MAX_BYTES): drivers of their own, as the grouped code inlined
# beside the row loop can make that loop slower (softmax's parallel driver:
# 1.2-1.3x at 8192x1000 float32). The loss alone needs no row buffer, smoothed
# rows included; the gradient's smoothed groups go a row at a time.


@njit(**_PKW)
def cross_entropy_grad_grouped_par(x, target, alpha, beta, cw, gs, loss_out, grad_out):
    wide()
    W = _wsum(cw)
    ip = x.ctypes.data == grad_out.ctypes.data
    n = x.shape[0]
    R = _task_rows(x)
    for t in prange((n + R - 1) // R):
        buf = scratch(x)
        T = group_scratch(_T_ROWS, R)
        t1 = min(n, t * R + R)
        for g in range(t * R, t1, LOG_ROWS):
            _ce_grad_group_grouped(
                x, target, alpha, beta, cw, W, gs, ip, g, min(t1, g + LOG_ROWS),
                buf, T, loss_out, grad_out,
            )  # fmt: skip


@njit(**_KW)
def cross_entropy_grad_grouped_ser(x, target, alpha, beta, cw, gs, loss_out, grad_out):
    x, cw, grad_out = borrow(x), borrow(cw), borrow(grad_out)
    wide()
    W = _wsum(cw)
    ip = x.ctypes.data == grad_out.ctypes.data
    n = x.shape[0]
    buf = scratch(x)
    T = group_scratch(_T_ROWS, n)
    for g in range(0, n, LOG_ROWS):
        _ce_grad_group_grouped(
            x, target, alpha, beta, cw, W, gs, ip, g, min(n, g + LOG_ROWS),
            buf, T, loss_out, grad_out,
        )  # fmt: skip


@njit(**_GLUE)
def _ce_loss_groups(x, target, alpha, beta, cw, W, r0, r1, T, E, loss_out):
    """The losses of one-block rows ``r0:r1`` from log_softmax's grouped
    statistics (:func:`_log_softmax_groups`: the rows' ranges, their exps'
    float64 sums, ``E`` from :func:`group_exps`); nothing else written. A
    smoothed row's weighted sum is :func:`_ce_row_stats`' loop, once its
    maximum is known, so every row gets the bits of :func:`_ce_group`. Ignored
    rows are computed, their losses 0."""
    for r in range(r0, r1):
        T[_T_XY, r - r0] = np.float64(x[r, target[r]])
        T[_T_WDOT, r - r0] = 0.0
    G = _reread_rows(x)
    for q in range(r0, r1, G):
        q1 = min(r1, q + G)
        o, k = q - r0, q1 - q
        M, S, L = T[_T_M, o : o + k], T[_T_S, o : o + k], T[_T_E, o : o + k]
        _grp_stats(x, q, q1, M, S, L, E)  # L: the minima, then the errors
        for r in range(q, q1):  # the group's rows are still in L1
            if beta[r] != 0.0:
                T[_T_WDOT, r - r0] = _seg_wdot(x[r], 0, x.shape[1], M[r - q], cw)
    _ce_group_transcendentals(T, r1 - r0)
    for r in range(r0, r1):
        loss_out[r] = _group_loss(T, r - r0, alpha[r], beta[r], W)


@njit(**_KW)
def cross_entropy_grouped_ser(x, target, alpha, beta, cw, loss_out):
    """The loss alone by grouped passes (:func:`_ce_loss_groups`): the same
    bits as :func:`cross_entropy_ser`, whose narrow rows go one at a time (a
    small call). It went through the grouped gradient into a scratch array
    before, which wrote (and allocated) a gradient only to drop it."""
    x, cw = borrow(x), borrow(cw)
    W = _wsum(cw)
    n = x.shape[0]
    T = group_scratch(_T_ROWS, n)
    E = group_exps(x)
    for g in range(0, n, LOG_ROWS):
        g1 = min(n, g + LOG_ROWS)
        _ce_loss_groups(x, target, alpha, beta, cw, W, g, g1, T, E, loss_out)


@njit(**_PKW)
def cross_entropy_grouped_par(x, target, alpha, beta, cw, loss_out):
    """:func:`cross_entropy_grouped_ser` over tasks of rows."""
    wide()
    W = _wsum(cw)
    n = x.shape[0]
    R = _task_rows(x)
    for t in prange((n + R - 1) // R):
        T = group_scratch(_T_ROWS, R)
        E = group_exps(x)
        t1 = min(n, t * R + R)
        for g in range(t * R, t1, LOG_ROWS):
            g1 = min(t1, g + LOG_ROWS)
            _ce_loss_groups(x, target, alpha, beta, cw, W, g, g1, T, E, loss_out)


@njit(**_PKW)
def cross_entropy_prob_par(x, target, eps, cw, loss_out):
    wide()
    k1, k0 = _prob_coeffs(eps, x.shape[1])
    n = x.shape[0]
    R = _task_rows(x)
    for t in prange((n + R - 1) // R):
        buf = scratch(x)
        st = group_scratch(3, R)
        t1 = min(n, t * R + R)
        for g in range(t * R, t1, LOG_ROWS):
            g1 = min(t1, g + LOG_ROWS)
            _ce_prob_group(x, target, cw, k1, k0, g, g1, buf, st, loss_out)


@njit(**_KW)
def cross_entropy_prob_ser(x, target, eps, cw, loss_out):
    x, target, cw = borrow(x), borrow(target), borrow(cw)
    wide()
    k1, k0 = _prob_coeffs(eps, x.shape[1])
    n = x.shape[0]
    buf = scratch(x)
    st = group_scratch(3, n)
    for g in range(0, n, LOG_ROWS):
        g1 = min(n, g + LOG_ROWS)
        _ce_prob_group(x, target, cw, k1, k0, g, g1, buf, st, loss_out)


@njit(**_GLUE)
def _ce_prob_loss_groups(x, target, cw, k1, k0, r0, r1, st, E, loss_out):
    """:func:`_ce_prob_group` of one-block rows with log_softmax's grouped
    statistics (:func:`_grp_stats`, ``REREAD_BYTES`` of rows at a time; the
    same ``(M, S)``, so the same bits)."""
    G = _reread_rows(x)
    for q in range(r0, r1, G):
        q1 = min(r1, q + G)
        k = q1 - q
        M, S, L = st[0, :k], st[1, :k], st[2, :k]
        _grp_stats(x, q, q1, M, S, L, E)  # L: the minima, the errors, the logs
        _log_group(st, k)
        for r in range(q, q1):  # the group's rows are still in L1
            i = r - q
            loss_out[r] = _prob_loss(x[r], target[r], cw, k1, k0, M[i], L[i])


@njit(**_PKW)
def cross_entropy_prob_grouped_par(x, target, eps, cw, loss_out):
    """The probability-target loss alone by grouped statistics, over tasks."""
    wide()
    k1, k0 = _prob_coeffs(eps, x.shape[1])
    n = x.shape[0]
    R = _task_rows(x)
    for t in prange((n + R - 1) // R):
        st = group_scratch(3, R)
        E = group_exps(x)
        _ce_prob_loss_groups(
            x, target, cw, k1, k0, t * R, min(n, t * R + R), st, E, loss_out
        )


@njit(**_KW)
def cross_entropy_prob_grouped_ser(x, target, eps, cw, loss_out):
    """The probability-target loss alone by grouped statistics."""
    x, target, cw = borrow(x), borrow(target), borrow(cw)
    wide()
    k1, k0 = _prob_coeffs(eps, x.shape[1])
    st = group_scratch(3, x.shape[0])
    E = group_exps(x)
    _ce_prob_loss_groups(x, target, cw, k1, k0, 0, x.shape[0], st, E, loss_out)


@njit(**_PKW)
def cross_entropy_prob_grad_par(x, target, eps, cw, gs, loss_out, grad_out):
    wide()
    ip = x.ctypes.data == grad_out.ctypes.data
    k1, k0 = _prob_coeffs(eps, x.shape[1])
    n = x.shape[0]
    R = _task_rows(x)
    for t in prange((n + R - 1) // R):
        buf = scratch(x)
        st = group_scratch(4, R)
        t1 = min(n, t * R + R)
        for g in range(t * R, t1, LOG_ROWS):
            _ce_prob_grad_group(
                x, target, cw, k1, k0, gs, ip, g, min(t1, g + LOG_ROWS),
                buf, st, loss_out, grad_out,
            )  # fmt: skip


@njit(**_KW)
def cross_entropy_prob_grad_ser(x, target, eps, cw, gs, loss_out, grad_out):
    x, target, cw, grad_out = borrow(x), borrow(target), borrow(cw), borrow(grad_out)
    wide()
    ip = x.ctypes.data == grad_out.ctypes.data
    k1, k0 = _prob_coeffs(eps, x.shape[1])
    n = x.shape[0]
    buf = scratch(x)
    st = group_scratch(4, n)
    for g in range(0, n, LOG_ROWS):
        _ce_prob_grad_group(
            x, target, cw, k1, k0, gs, ip, g, min(n, g + LOG_ROWS),
            buf, st, loss_out, grad_out,
        )  # fmt: skip


# Jacobians: the probabilities go to the last row of each (C, C) block first, every
# other row is written from it (parallel over (row, i) pairs, so a few rows still
# use every thread), and the last row is finished in place.


@njit(**_PKW)
def jacobian_par(x, out, log):
    wide()
    n, C = x.shape
    for r in prange(n):
        _softmax_row(x[r], out[r, C - 1], False)
    m = C - 1
    for k in prange(n * m):
        r = k // m
        _jac_row_i(out[r], k - r * m, out[r, C - 1], log)
    for r in prange(n):
        _jac_row_last(out[r], log)


@njit(**_KW)
def jacobian_ser(x, out, log):
    x, out = borrow(x), borrow(out)
    wide()
    n, C = x.shape
    for r in range(n):
        _softmax_row(x[r], out[r, C - 1], False)
        for i in range(C - 1):
            _jac_row_i(out[r], i, out[r, C - 1], log)
        _jac_row_last(out[r], log)


# Few wide rows: parallel over (row, block) pairs, the same block statistics and the
# same left-to-right combine as the row drivers, so the bits are the same.


@njit(**_GLUE)
def _fold_blocks(bm, bs, be, r):
    """Row ``r``'s ``(M, S, E)`` from its blocks' maxima, sums and the sums'
    rounding errors (``(rows, blocks)`` arrays), as :func:`_finish` gives them."""
    M = _NINF
    S = 0.0
    E = 0.0
    for b in range(bm.shape[1]):
        M, S, E = _combine_e(M, S, E, bm[r, b], bs[r, b], be[r, b])
    M, S = _finish(M, S)
    return M, S, E


@njit(**_PKW)
def _split_stats(x, M, S, E):
    """Each row's ``(M, S)`` and the sum's rounding error ``E``."""
    wide()
    n, C = x.shape
    nb = (C + BLOCK - 1) // BLOCK
    bm = np.empty((n, nb))
    bs = np.empty((n, nb))
    be = np.empty((n, nb))
    for k in prange(n * nb):
        r = k // nb
        b = k - r * nb
        j0 = b * BLOCK
        j1 = min(C, j0 + BLOCK)
        bm[r, b], bs[r, b], be[r, b] = _block_stats(x[r], j0, j1, scratch(x))
    for r in range(n):
        M[r], S[r], E[r] = _fold_blocks(bm, bs, be, r)


@njit(**_PKW)
def softmax_split(x, out):
    wide()
    n, C = x.shape
    ip = x.ctypes.data == out.ctypes.data
    nb = (C + BLOCK - 1) // BLOCK
    bm = np.empty((n, nb))
    bs = np.empty((n, nb))
    for k in prange(n * nb):
        r = k // nb
        b = k - r * nb
        j0 = b * BLOCK
        j1 = min(C, j0 + BLOCK)
        bm[r, b], bs[r, b] = _block_exp_store(x[r], out[r], j0, j1, ip)
    M = np.empty(n)
    S = np.empty(n)
    for r in range(n):
        Mr = _NINF
        Sr = 0.0
        for b in range(nb):
            Mr, Sr = _combine(Mr, Sr, bm[r, b], bs[r, b])
        M[r], S[r] = _finish(Mr, Sr)
    for k in prange(n * nb):
        r = k // nb
        b = k - r * nb
        j0 = b * BLOCK
        f = _block_factor(bm[r, b], M[r], S[r]) * 1.0
        _seg_scale(out[r], j0, min(C, j0 + BLOCK), f)


@njit(**_PKW)
def log_softmax_split(x, out):
    wide()
    n, C = x.shape
    ip = x.ctypes.data == out.ctypes.data
    nb = (C + BLOCK - 1) // BLOCK
    M = np.empty(n)
    S = np.empty(n)
    E = np.empty(n)
    _split_stats(x, M, S, E)
    for r in range(n):
        S[r] = log_sum(S[r], E[r])
    for k in prange(n * nb):
        r = k // nb
        j0 = (k - r * nb) * BLOCK
        j1 = min(C, j0 + BLOCK)
        _seg_log_softmax(x[r], out[r], j0, j1, M[r], S[r], ip)


@njit(**_KW)
def logsumexp_split(x, out):  # parallel inside _split_stats
    wide()
    n = x.shape[0]
    M = np.empty(n)
    S = np.empty(n)
    E = np.empty(n)
    _split_stats(x, M, S, E)
    for r in range(n):
        out[r] = M[r] + log_sum(S[r], E[r])


@njit(**_PKW)
def cross_entropy_grad_split(x, target, alpha, beta, cw, gs, loss_out, grad_out):
    wide()
    n, C = x.shape
    ip = x.ctypes.data == grad_out.ctypes.data
    nb = (C + BLOCK - 1) // BLOCK
    W = _wsum(cw)
    xy = np.empty(n)
    for r in range(n):
        xy[r] = np.float64(x[r, target[r]])  # before grad_out (possibly x) is written
    bm = np.empty((n, nb))
    bs = np.empty((n, nb))
    be = np.empty((n, nb))
    bl = np.empty((n, nb))
    for k in prange(n * nb):
        r = k // nb
        b = k - r * nb
        j0 = b * BLOCK
        j1 = min(C, j0 + BLOCK)
        if beta[r] == 0.0:
            if alpha[r] != 0.0:
                bm[r, b], bs[r, b], be[r, b] = _block_exp_store_e(
                    x[r], grad_out[r], j0, j1, ip
                )
        else:
            bm[r, b], bs[r, b], be[r, b], bl[r, b] = _block_stats_lo(
                x[r], j0, j1, scratch(x)
            )
    M = np.empty(n)
    S = np.empty(n)
    E = np.empty(n)
    for r in range(n):
        if alpha[r] == 0.0 and beta[r] == 0.0:
            continue
        M[r], S[r], E[r] = _fold_blocks(bm, bs, be, r)
    part = np.zeros((n, nb))
    for k in prange(n * nb):
        r = k // nb
        b = k - r * nb
        j0 = b * BLOCK
        j1 = min(C, j0 + BLOCK)
        a = alpha[r]
        be = beta[r]
        if a == 0.0 and be == 0.0:
            _zero_row(grad_out[r, j0:j1])
        elif be == 0.0:
            f = _block_factor(bm[r, b], M[r], S[r]) * (gs * a)
            _seg_scale(grad_out[r], j0, j1, f)
        else:
            part[r, b] = _ce_grad_seg(
                x[r], grad_out[r], j0, j1, target[r], a, be, cw, W, gs, M[r], S[r],
                ip, bl[r, b],
            )  # fmt: skip
    for r in range(n):
        a = alpha[r]
        be = beta[r]
        if a == 0.0 and be == 0.0:
            loss_out[r] = 0.0
            continue
        wdot = 0.0
        for b in range(nb):
            wdot += part[r, b]
        _ce_grad_fix(grad_out[r], target[r], a, be, cw, W, gs, M[r], S[r], xy[r])
        loss_out[r] = _ce_loss(a, be, M[r], log_sum(S[r], E[r]), xy[r], wdot, W)


# ====================================================================== short rows
# Rows narrower than SHORT_C: a row's loops are too short to vectorise, and a scalar
# exp costs ~30 instructions. The rows are taken a tile of TILE elements at a time:
# per row, its maximum and the differences ``x - m`` (scalar, one op each); one
# vectorised exp over the whole tile; per row, the sum and the writes. The result
# of a row does not depend on the tiling (the exp is elementwise), so the serial
# and parallel drivers give the same bits; which path runs depends on C only.

SHORT_C = 64
"""Rows with fewer classes than this take the short-row kernels. Measured against
the row kernels (2 threads): float32 rows are 2-2.7x faster at 8 classes and
still 1.1-1.4x at 48-56. float64 rows kept the short path up to 64 for its
compensated sums, which brought the float64 softmax's largest error from 3.57
ULP (the row kernels' plain sums then) to 1.34, below SciPy's 3.36, and
log_softmax's from 1.48 to 1.15; the row kernels now sum float64 rows exactly
rounded too (:func:`_split_hi`), so the grouped passes may serve them: not
measured yet. Its row-major float64 softmax took 2.0-2.3x the row kernels' time per
element from 24 to 56 classes while its maxima ran as a float maxnum chain and
its sums as a scalar TwoSum; with the vectorised integer maximum and the split
sum (:func:`tile_row_sum`) 1.1-1.3x, and 1.0 at 63 (one thread, 4096 rows, in
cache: 1.7-1.8 against 2.8-3.3 ns an element before)."""
TILE = 4096
"""Elements per tile of short rows."""

SOFTMAX_SHORT_GROUPED_C = 16
"""float32 softmax rows of this many classes up to ``SHORT_C`` take the grouped
drivers (``_ops``), not the short ones: ``SHORT_C`` was measured against a row
at a time, before the grouped passes existed, and these beat the short tiles
at every width from 16 classes. Time per element, grouped over short, one
thread at 4096 rows (in cache) / two threads at 65536: 0.83 / 0.78 at 16
classes, 0.67 / 0.65 at 17, 0.48 / 0.55 at 24, 0.54 / 0.60 at 31, 0.38 /
0.38 at 32, 0.35 / 0.43 at 33, 0.33 / 0.36 at 48, 0.38 / 0.42 at 55, 0.44 /
0.46 at 63 (medians of 9 interleaved rounds of 5 calls); at 12 classes 1.30 /
1.25 and at 8 1.34 / 1.22, so narrower rows stay short. float64 rows stay
short for their compensated sums (see ``SHORT_C``); log_softmax and logsumexp
rows too, whose transposed tiles gain nothing from grouping below 32 classes
and, at 31 or 55, lose (1.3-1.4 at 31), but see ``LOG_SHORT_GROUPED_C``."""

LOG_SHORT_GROUPED_C = 32
"""float32 log_softmax and logsumexp rows of this many classes up to
``SHORT_C`` whose width is a multiple of ``LOG_SHORT_GROUPED_STEP`` take the
grouped drivers, not the transposed tiles (the same bits). Grouped over short,
one thread, 4096 rows in cache, medians of 7 interleaved rounds, log_softmax /
logsumexp: 0.78 / 0.79 at 32 classes, 0.82 / 0.83 at 40, 0.73 / 0.69 at 48,
0.80 / 0.76 at 56 (two threads at 65536 rows, log_softmax: 0.76, 0.86, 0.71,
0.79); other widths gain less or lose (1.03-1.12 at 34-35, 38-39, 42-43,
46-47; below 32 only 16 and 24 break even, 0.93-1.07), as the grouped
passes' vector loops end in a scalar tail there. Above 48 most widths gained
on a Sapphire Rapids host (0.75-0.99) where an earlier host lost at 55; they
stay short."""
LOG_SHORT_GROUPED_STEP = 8


def zero_of(v):
    """0 in ``v``'s dtype."""
    raise NotImplementedError  # only callable from jitted code


@overload(zero_of, inline="always")
def _zero_of_impl(v):
    if v == types.float32:
        return lambda v: _ZERO32
    return lambda v: 0.0


@njit(fastmath={"contract"}, **_KW)
def _flat_exp(t):
    """``t = exp(t)`` over a tile of rows' ``x - max`` (never positive): the
    unclamped exp where :func:`_seg_nonpos` admits the whole tile (shift 0)."""
    wide()
    if _seg_nonpos(t, 0.0):
        for i in range(t.shape[0]):
            t[i] = exp_elem_nonpos(t[i])
    else:
        for i in range(t.shape[0]):
            t[i] = exp_elem_neg(t[i])


@njit(**_KW)
def _tile_rows(C):
    return max(1, TILE // C)


@njit(**_GLUE)
def _short_max(x, r):
    """Maximum of row ``r`` ignoring NaN (NaN if all are): the largest order
    key, a NaN's taken as the least, in a vectorised integer loop (a chain of
    float maxnum waited its latency an element: 1.0 against 0.27 ns an element
    at 63 float64 classes)."""
    wide()
    xs = x[r]
    least = key_floor(xs[0])
    hi = least
    for j in range(xs.shape[0]):
        v = xs[j]
        hi = max(hi, order_key(v) if v == v else least)
    return from_order_key(hi)


@njit(**_GLUE)
def _wdot_term(w, m, v):
    """A term ``w (m - v)`` of the smoothing sum; NaN for a ``-inf`` logit of
    weight 0 (``0 * inf``), as in PyTorch and the reference."""
    return w * (m - np.float64(v))


@njit(**_GLUE)
def _two_sum_done(s, c):
    """The compensated sum ``s + c`` (``s`` alone when infinite: inf - inf in the
    correction would give NaN): :func:`_two_sum_parts` without its error."""
    return _two_sum_parts(s, c)[0]


def short_wdot(x, r, m, cw):
    """``sum_j w_j (m - x_j)`` of row ``r``."""
    raise NotImplementedError  # only callable from jitted code


@overload(short_wdot, jit_options=_KW)
def _short_wdot_impl(x, r, m, cw):
    if _is_f32(x):
        # float32 logits: m - x_j is exact in float64, and a plain float64 sum
        # errs far below float32's precision (two chains: an add's latency)
        def impl(x, r, m, cw):
            C = x.shape[1]
            s0 = 0.0
            s1 = 0.0
            for j in range(0, C - 1, 2):
                s0 += _wdot_term(cw[j], m, x[r, j])
                s1 += _wdot_term(cw[j + 1], m, x[r, j + 1])
            if C % 2:
                s0 += _wdot_term(cw[C - 1], m, x[r, C - 1])
            return s0 + s1

        return impl

    def impl(x, r, m, cw):  # float64: compensated (TwoSum, no branch)
        s = 0.0
        c = 0.0
        for j in range(x.shape[1]):
            s, c = _two_sum_acc(s, c, _wdot_term(cw[j], m, x[r, j]))
        return _two_sum_done(s, c)

    return impl


@njit(**_KW)
def _short_exp(x, e, r0, r1, M):
    """``e[i] = exp(x[r0 + i] - m)`` for the rows ``r0 .. r1`` with ``m`` their
    maxima (0 for a row of only ``-inf``), and ``M[i] = m`` as float64. ``e`` may
    be those rows of ``x`` itself: each element is read before it is written."""
    wide()
    _short_maxima(x, r0, r1, M)
    for r in range(r0, r1):
        _short_shift(x, e, r, r - r0, M[r - r0])
    _flat_exp(e[: r1 - r0].reshape((r1 - r0) * x.shape[1]))


@njit(**_GLUE)
def _short_maxima(x, r0, r1, M):
    """``M[i]`` the maximum of row ``r0 + i`` (:func:`_short_max`): a loop of
    its own, as the integer maximum does not vectorise in a loop that also
    shifts the row (0.27 against 1.0 ns an element)."""
    for r in range(r0, r1):
        M[r - r0] = _short_max(x, r)


@njit(**_GLUE)
def _short_shift(x, e, r, i, m):
    """``e[i] = x[r] - m`` (``- 0`` for a row of only ``-inf``, as the one-block
    rows; NaN: 0 too), before the tile's exp."""
    wide()
    c = m if m > _NINF else zero_of(m)
    for j in range(x.shape[1]):
        e[i, j] = x[r, j] - c


@njit(**_KW)
def _short_exp_wdot(x, e, r0, r1, M, D, cw):
    """:func:`_short_exp`, and ``D[i]`` the smoothing sum of each row (as
    :func:`short_wdot`), taken while the row is in cache: one maximum per row."""
    wide()
    _short_maxima(x, r0, r1, M)
    for r in range(r0, r1):
        m = M[r - r0]
        D[r - r0] = short_wdot(x, r, m, cw)  # before e (maybe x) is written
        _short_shift(x, e, r, r - r0, m)
    _flat_exp(e[: r1 - r0].reshape((r1 - r0) * x.shape[1]))


def tile_row_sum(e, i, logs):
    """The float64 sum of tile row ``i`` (exp values, in ``[0, 1]``) and its
    rounding error."""
    raise NotImplementedError  # only callable from jitted code


@overload(tile_row_sum, jit_options=_KW)
def _tile_row_sum_impl(e, i, logs):
    if _is_f32(e):
        # float32 values summed in float64: the error stays far below float32's.
        # Four chains: a sum in order waits an add latency per element.
        def impl(e, i, logs):
            C = e.shape[1]
            s0 = s1 = s2 = s3 = 0.0
            for j in range(0, C - 3, 4):
                s0 += np.float64(e[i, j])
                s1 += np.float64(e[i, j + 1])
                s2 += np.float64(e[i, j + 2])
                s3 += np.float64(e[i, j + 3])
            s = (s0 + s1) + (s2 + s3)
            for j in range(C - C % 4, C):
                s += np.float64(e[i, j])
            if logs and near_one(s, C):  # rare: the row view only then
                return _resum(e[i], s)
            return s, 0.0

        return impl

    # float64: the terms are exp values in [0, 1] (or NaN). Each is split into a
    # high part, rounded to a multiple of 2**-q where any sum of C of them is
    # exact, and the exact rest (:func:`_split_hi`); both kinds are summed in
    # vector lanes, in any order: the high parts exactly, the rests (each below
    # 2**-q) with an error far below an ULP of the sum, then one rounding. The
    # sum is within about half an ULP for any C, where a plain sum could lose
    # C / 2 ULPs (a compensated TwoSum in four chains did as well, at 3.5-5
    # times the time: it does not vectorise).
    def impl(e, i, logs):
        return _exps_sum(e[i], logs)

    return impl


@njit(**_GLUE)
def _two_sum_parts(s, c):
    """The compensated sum ``s + c`` (``s`` alone when infinite) and its rounding
    error (``|c|`` is far below ``|s|``: Fast2Sum; 0 where ``s`` is not
    finite)."""
    if abs(s) < np.inf:
        t = s + c
        return t, c - (t - s)
    return s, 0.0


@njit(**_GLUE)
def _two_sum_acc(s, c, v):
    """``s + v`` rounded, and ``c`` plus its rounding error (Knuth's TwoSum)."""
    t = s + v
    bp = t - s
    return t, c + ((s - (t - bp)) + (v - bp))


@njit(**_KW)
def _short_sum(e, i, m, logs=True):
    """``S`` of tile row ``i`` (NaN for a row of only ``-inf``) and its rounding
    error."""
    s, er = tile_row_sum(e, i, logs)
    return (_NAN if m == _NINF else s), er


@njit(fastmath={"contract"}, **_KW)
def _short_log_sums(e, M, L, Er, k):
    """``L[i] = log S_i`` for the first ``k`` tile rows: one vectorised log
    (``Er``: a scratch for the sums' rounding errors)."""
    wide()
    for i in range(k):
        L[i], Er[i] = _short_sum(e, i, M[i])
    for i in range(k):
        L[i] = log_sum(L[i], Er[i])


@njit(fastmath={"contract"}, **_KW)
def _short_scale(e, i, f):
    wide()
    hi, lo = split_factor(f, e)
    for j in range(e.shape[1]):
        e[i, j] = mul_split(e[i, j], hi, lo)


# Short rows taken transposed: a tile's rows are copied into a (C, k) scratch, one
# column per row, so the maximum, the shift, the exp and the sum each run one
# vectorised loop across the tile's rows instead of C scalar steps per row. All
# short log_softmax and logsumexp rows take this path (float32 ones of 32, 40, 48
# and 56 classes, LOG_SHORT_GROUPED_C, the grouped drivers); softmax rows up to NARROW_C
# classes (its transposed write costs more than the statistics save above that;
# float32 rows from SOFTMAX_SHORT_GROUPED_C take the grouped drivers instead)
# and class-index cross-entropy rows up to NARROW_CE_C (float32 rows above it take
# the grouped drivers, CE_SHORT_GROUPED_C; float64 ones the row-major tiles).

NARROW_CE_C = 24
"""Class-index cross-entropy rows with at most this many classes take the
transposed tiles (the loss kernel and the loss-and-gradient kernel alike, so they
give the same loss bits). Against the row-major tiles (one thread, 65536 rows,
best of 15 interleaved; float32 / float64), at 4 / 10 / 24 / 32 / 63 classes: the
loss 0.63 / 0.53, 0.59 / 0.59, 0.69 / 0.72 of the time (4-24 classes); loss with
gradient 0.93 / 0.91, 0.99 / 0.99, 0.86 / 0.93, 0.86 / 1.06, 0.89 / 0.98 without
smoothing and 0.80 / 0.74, 0.65 / 0.74, 0.75 / 0.93, 0.83 / 0.98, 0.87 / 1.00 with
it. Where the gradient gains nothing the per-row work (the target column, the
loss) dominates; float64 rows stop gaining above 24 classes."""

CE_SHORT_GROUPED_C = NARROW_CE_C + 1
"""float32 class-index cross-entropy rows of this many classes up to
``SHORT_C`` (the loss alone, with its gradient, and the fused small loss)
take the grouped drivers, not the row-major short tiles: grouped over short,
one thread, 4096 rows in cache, medians of 7 interleaved rounds, loss /
gradient / smoothed gradient: 0.59 / 0.56 / 0.78 at 25 classes, 0.62 / 0.67
/ 0.76 at 31, 0.38 / 0.48 / 0.59 at 32, 0.47 / 0.53 / 0.57 at 45, 0.33 /
0.39 / 0.54 at 48, 0.35 / 0.39 / 0.48 at 60, 0.40 / 0.44 / 0.51 at 63; two
threads at 65536 rows 0.35-0.62, 0.40-0.66 and 0.53-0.85 (the row-at-a-time
drivers 0.46-0.86, 0.60-1.07, 0.51-0.86). At 24 classes the transposed tiles
still win the loss and the smoothed gradient (1.07, 1.04). The unsmoothed
losses are the same bits; the smoothed ones are the grouped and row drivers'
(float64 rows keep the short tiles' compensated sums)."""

NARROW_C = 16
"""softmax rows with at most this many classes take the transposed tiles.
Measured against the row-major tiles (one thread, 65536 rows, best of 15
interleaved; float32 / float64): at 4 / 10 / 16 classes softmax took 0.56 / 0.46,
0.59 / 0.57, 0.59 / 0.81 of the time, but at 24 / 32 / 48 / 63 classes 0.94 /
0.98, 0.92 / 1.12, 0.98 / 1.11, 0.74 / 0.94 (one run): no steady gain, as its
transposed write costs what the statistics save. log_softmax took 0.46-0.82 and
logsumexp 0.40-0.77 from 4 to 63 classes, so every short row of theirs is taken
transposed. The results were the same bits on those inputs."""


@njit(**_KW)
def _narrow_in(x, T, r0, k):
    """``T[j, i] = x[r0 + i, j]`` for the tile's ``k`` rows."""
    wide()
    C = x.shape[1]
    for i in range(k):
        for j in range(C):
            T[j, i] = x[r0 + i, j]


def narrow_sums(T, S, c, k, logs):
    """``S[i]``: the float64 sum of column ``i`` of ``T``, in order (float64:
    compensated), and ``c[i]`` its rounding error (float32 columns: 0, but for
    sums near 1 taken again where ``logs``, :func:`_near_one_f32`)."""
    raise NotImplementedError  # only callable from jitted code


@overload(narrow_sums, jit_options=_KW)
def _narrow_sums_impl(T, S, c, k, logs):
    if _is_f32(T):

        def impl(T, S, c, k, logs):
            for i in range(k):
                S[i] = np.float64(T[0, i])
            for j in range(1, T.shape[0]):
                for i in range(k):
                    S[i] += np.float64(T[j, i])
            n = T.shape[0]
            hits = 0  # a vectorised count first: a branch a column cost 10%
            for i in range(k):
                c[i] = 0.0
                hits += near_one(S[i], n)
            if logs and hits:
                _narrow_resums(T, S, c, k)

        return impl

    def impl(T, S, c, k, logs):  # TwoSum per column, as tile_row_sum
        for i in range(k):
            S[i] = T[0, i]
            c[i] = 0.0
        for j in range(1, T.shape[0]):
            for i in range(k):
                S[i], c[i] = _two_sum_acc(S[i], c[i], T[j, i])
        for i in range(k):
            S[i], c[i] = _two_sum_parts(S[i], c[i])

    return impl


@njit(fastmath=_RED, **_KW)
def _narrow_rest(T, rest, k):
    """:func:`_rest` of the tile's ``k`` columns, across them in one
    vectorised loop (a call a column on its strided view took 25 ns a row)."""
    wide()
    for i in range(k):
        rest[i] = 0.0
    for j in range(T.shape[0]):
        for i in range(k):
            v = T[j, i]
            rest[i] += np.float64(v - np.floor(v))


@njit(**_KW)
def _narrow_resums(T, S, c, k):
    """The float32 columns whose sums :func:`near_one` picks, taken again
    (:func:`_resum`), the others' errors left 0."""
    rest = np.empty(k)
    _narrow_rest(T, rest, k)
    n = T.shape[0]
    for i in range(k):
        if near_one(S[i], n):
            S[i], c[i] = _ones_rest_sum(S[i], rest[i])


@njit(fastmath={"contract"}, **_KW)
def _narrow_stats(x, r0, k, buf, m, M, S, c, logs=True):
    """The tile's rows ``r0 .. r0 + k``: ``M[i]`` their maxima (ignoring NaN, as
    :func:`_short_max`) and ``S[i] = sum exp(x - M)`` (NaN for a row of only
    ``-inf``). Returns ``T``, the ``(C, k)`` view of the flat scratch ``buf``,
    holding ``exp(x - M)`` transposed. ``m`` is a scratch in ``x``'s dtype;
    ``logs``: the caller takes ``log S`` (:func:`narrow_sums`)."""
    wide()
    T = buf[: x.shape[1] * k].reshape((x.shape[1], k))
    _narrow_in(x, T, r0, k)
    C = T.shape[0]
    for i in range(k):
        m[i] = T[0, i]
    for j in range(1, C):
        for i in range(k):
            m[i] = fmaxnum(m[i], T[j, i])
    for i in range(k):
        M[i] = m[i]
        m[i] = m[i] if m[i] > _NINF else zero_of(m[i])  # as _short_shift
    for j in range(C):
        for i in range(k):
            T[j, i] = T[j, i] - m[i]
    _flat_exp(T.reshape(C * k))
    narrow_sums(T, S, c, k, logs)
    for i in range(k):
        S[i] = _NAN if M[i] == _NINF else S[i]
    return T


@njit(fastmath={"contract"}, **_KW)
def _narrow_softmax_out(T, out, S, r0, k):
    """``out[r0 + i, j] = T[j, i] / S[i]``, rounded once; ``S`` is left holding
    ``1 / S``. The divisions in one vectorised loop and the rows in this one
    function (not a call per row): the same bits in half the time (32x10
    float32: 180-200 ns against 340-370)."""
    wide()
    for i in range(k):
        S[i] = 1.0 / S[i]
    for i in range(k):
        hi, lo = split_factor(S[i], T)
        for j in range(T.shape[0]):
            out[r0 + i, j] = mul_split(T[j, i], hi, lo)


@njit(fastmath={"contract"}, **_KW)
def _narrow_log_softmax_out(x, out, M, S, r0, k):
    """``out[r0 + i] = (x[r0 + i] - M[i]) - S[i]`` in float64, ``S`` holding
    ``log S``: the tile's rows in one function, as :func:`_narrow_softmax_out`."""
    wide()
    for i in range(k):
        m, log_s = M[i], S[i]
        for j in range(x.shape[1]):
            out[r0 + i, j] = (np.float64(x[r0 + i, j]) - m) - log_s


@njit(fastmath={"contract"}, **_KW)
def _narrow_log_sums_e(S, c, k):
    """``S[:k] = log S`` from the sums and their rounding errors ``c``
    (:func:`log_sum`), one vectorised loop."""
    wide()
    for i in range(k):
        S[i] = log_sum(S[i], c[i])


def narrow_scratch(x, R):
    """The transposed tiles' scratch for tiles of ``R`` rows of ``x``: ``(T, m, M,
    S, c)``, ``T`` flat (``R * C``) and ``m`` in ``x``'s dtype, the rest
    float64."""
    raise NotImplementedError  # only callable from jitted code


@overload(narrow_scratch, inline="always")
def _narrow_scratch_impl(x, R):
    # two allocations, not five (a small call pays ~70 ns for each); each part
    # starts on a 64-byte boundary, as a fresh array of its own would
    def impl(x, R):
        k = (R * x.shape[1] + 15) // 16 * 16
        own = np.empty(k + R, x.dtype)
        q = (R + 7) // 8 * 8
        f64 = np.empty(3 * q)
        return own[:k], own[k:], f64[:R], f64[q : q + R], f64[2 * q : 2 * q + R]

    return impl


@njit(**_GLUE)
def _narrow_tile(x, out, r0, r1, sc, what):
    """One transposed tile: ``what`` 0 softmax, 1 log_softmax, 2 logsumexp (``out``
    then 1-D)."""
    T, m, M, S, c = sc
    k = r1 - r0
    Tk = _narrow_stats(x, r0, k, T, m, M, S, c, what != 0)
    if what == 0:
        _narrow_softmax_out(Tk, out, S, r0, k)
        return
    _narrow_log_sums_e(S, c, k)
    if what == 1:
        _narrow_log_softmax_out(x, out, M, S, r0, k)
    else:
        for i in range(k):
            out[r0 + i] = M[i] + S[i]


@njit(**_GLUE)
def _narrow_ser(x, out, what):
    n = x.shape[0]
    R = _tile_rows(x.shape[1])
    sc = narrow_scratch(x, R)
    for r0 in range(0, n, R):
        _narrow_tile(x, out, r0, min(n, r0 + R), sc, what)


@njit(fastmath={"contract"}, **_KW)
def _short_scale_rows(e, F, k):
    """``e[i] *= F[i]`` for the first ``k`` tile rows (float64 factors), each
    element rounded once: one function for the tile, not a call per row."""
    wide()
    for i in range(k):
        hi, lo = split_factor(F[i], e)
        for j in range(e.shape[1]):
            e[i, j] = mul_split(e[i, j], hi, lo)


@njit(**_GLUE)
def _short_softmax_tile(x, out, r0, r1, M):
    """Softmax of the rows ``r0 .. r1``; ``M`` (their maxima) ends holding the
    rows' factors ``1 / S``."""
    wide()
    _short_exp(x, out[r0:r1], r0, r1, M)
    e = out[r0:r1]
    for i in range(r1 - r0):
        M[i] = 1.0 / _short_sum(e, i, M[i], False)[0]
    _short_scale_rows(e, M, r1 - r0)


@njit(**_PKW)
def softmax_short_par(x, out):
    wide()
    n, C = x.shape
    R = _tile_rows(C)
    if C <= NARROW_C:
        for t in prange((n + R - 1) // R):
            sc = narrow_scratch(x, R)
            _narrow_tile(x, out, t * R, min(n, t * R + R), sc, 0)
        return
    for t in prange((n + R - 1) // R):
        M = np.empty(R)
        _short_softmax_tile(x, out, t * R, min(n, t * R + R), M)


@njit(**_KW)
def softmax_short_ser(x, out):
    x, out = borrow(x), borrow(out)
    wide()
    n, C = x.shape
    if C <= NARROW_C:
        _narrow_ser(x, out, 0)
        return
    R = _tile_rows(C)
    M = np.empty(R)
    for r0 in range(0, n, R):
        _short_softmax_tile(x, out, r0, min(n, r0 + R), M)


@njit(**_PKW)
def log_softmax_short_par(x, out):
    wide()
    n, C = x.shape
    R = _tile_rows(C)
    for t in prange((n + R - 1) // R):
        sc = narrow_scratch(x, R)
        _narrow_tile(x, out, t * R, min(n, t * R + R), sc, 1)


@njit(**_KW)
def log_softmax_short_ser(x, out):
    x, out = borrow(x), borrow(out)
    wide()
    _narrow_ser(x, out, 1)


@njit(**_PKW)
def logsumexp_short_par(x, out):
    wide()
    n, C = x.shape
    R = _tile_rows(C)
    for t in prange((n + R - 1) // R):
        sc = narrow_scratch(x, R)
        _narrow_tile(x, out, t * R, min(n, t * R + R), sc, 2)


@njit(**_KW)
def logsumexp_short_ser(x, out):
    x, out = borrow(x), borrow(out)
    wide()
    _narrow_ser(x, out, 2)


# Cross-entropy on short rows, class-index targets: the formulas of the row
# kernels above (the unsmoothed gradient by scaling exp(x - m), the smoothed one
# as exp(x - m) c1 - c2 w_j), on the tile's exp values and sums.


@njit(**_GLUE)
def _tile_losses(x, target, alpha, beta, cw, W, loss_out, r0, r1, M, L):
    """The loss of each tile row from its maximum ``M[i]`` and ``L[i] = log S``."""
    for i in range(r1 - r0):
        r = r0 + i
        a = alpha[r]
        b = beta[r]
        if a == 0.0 and b == 0.0:
            loss_out[r] = 0.0
            continue
        wdot = short_wdot(x, r, M[i], cw) if b != 0.0 else 0.0
        xy = np.float64(x[r, target[r]])
        loss_out[r] = _ce_loss(a, b, M[i], L[i], xy, wdot, W)


@njit(**_GLUE)
def _short_ce_tile(x, target, alpha, beta, cw, W, loss_out, r0, r1, e, M, L):
    """``L``: ``2 R`` float64, the rows' ``log S``, then a scratch for the sums'
    rounding errors (one allocation)."""
    wide()
    h = L.shape[0] // 2
    _short_exp(x, e, r0, r1, M)
    Ls, Er = L[:h], L[h:]
    _short_log_sums(e, M, Ls, Er, r1 - r0)
    _tile_losses(x, target, alpha, beta, cw, W, loss_out, r0, r1, M, Ls)


@njit(**_GLUE)
def _narrow_ce_tile(x, target, alpha, beta, cw, W, loss_out, r0, r1, sc):
    """:func:`_short_ce_tile` on the transposed statistics."""
    T, m, M, S, c = sc
    k = r1 - r0
    _narrow_stats(x, r0, k, T, m, M, S, c)
    _narrow_log_sums_e(S, c, k)
    _tile_losses(x, target, alpha, beta, cw, W, loss_out, r0, r1, M, S)


@njit(fastmath={"contract"}, **_KW)
def _narrow_ce_scalars(M, S, L, X, k):
    """``L = log S`` and ``X[2] = exp(x_y - M)`` (``X[0]`` holds ``x_y``), one
    vectorised loop."""
    wide()
    for i in range(k):
        L[i] = log_sum(S[i], L[i])  # L held the sums' rounding errors
        X[2, i] = exp64(X[0, i] - M[i])


@njit(fastmath={"contract"}, **_KW)
def _narrow_smooth_grads(T, out, S, alpha, beta, cw, W, gs, r0, k):
    """``out[r, j] = T[j, i] c1 - c2 w_j`` (``c1 = gs (a + b W) / S_i``, ``c2 =
    gs b``) for the tile's rows with smoothing (their target column is fixed
    afterwards): one function for the tile, not a call per row."""
    wide()
    for i in range(k):
        r = r0 + i
        b = beta[r]
        if b == 0.0:
            continue
        c1 = gs * (alpha[r] + b * W) / S[i]
        c2 = gs * b
        for j in range(T.shape[0]):
            out[r, j] = T[j, i] * c1 - c2 * cw[j]


@njit(fastmath={"contract"}, **_KW)
def _narrow_plain_grads(T, out, S, alpha, beta, gs, r0, k):
    """``out[r] = T[:, i] (gs a_r / S_i)`` for the tile's kept rows without
    smoothing (their target column is fixed afterwards): one function for the
    tile, not a call per row."""
    wide()
    for i in range(k):
        r = r0 + i
        a = alpha[r]
        if beta[r] != 0.0 or a == 0.0:
            continue
        hi, lo = split_factor((1.0 / S[i]) * (gs * a), T)
        for j in range(T.shape[0]):
            out[r, j] = mul_split(T[j, i], hi, lo)


@njit(**_GLUE)
def _narrow_ce_grad_tile(
    x, target, alpha, beta, cw, W, gs, loss_out, grad_out, r0, r1, sc, X
):
    """:func:`_short_ce_grad_tile` on the transposed statistics; ``X`` a ``(3, R)``
    scratch: per tile row ``x_y``, the smoothing sum and ``exp(x_y - M)``. Every
    read of the tile's rows of ``x`` comes before the first write of
    ``grad_out`` (which may be ``x``)."""
    T, m, M, S, L = sc  # the sums' float64 scratch takes log S afterwards
    k = r1 - r0
    for r in range(r0, r1):
        X[0, r - r0] = np.float64(x[r, target[r]])
    Tk = _narrow_stats(x, r0, k, T, m, M, S, L)
    for r in range(r0, r1):
        X[1, r - r0] = short_wdot(x, r, M[r - r0], cw) if beta[r] != 0.0 else 0.0
    _narrow_ce_scalars(M, S, L, X, k)
    # the rows without smoothing, then those with it, as the row-major tiles
    _narrow_plain_grads(Tk, grad_out, S, alpha, beta, gs, r0, k)
    for i in range(k):
        r = r0 + i
        a = alpha[r]
        if beta[r] != 0.0:
            continue
        if a == 0.0:
            _zero_row(grad_out[r])
            loss_out[r] = 0.0
            continue
        _ce_grad_fix_e(grad_out[r], target[r], a, 0.0, cw, W, gs, S[i], X[2, i])
        loss_out[r] = _ce_loss(a, 0.0, M[i], L[i], X[0, i], 0.0, W)
    _narrow_smooth_grads(Tk, grad_out, S, alpha, beta, cw, W, gs, r0, k)
    for i in range(k):
        r = r0 + i
        b = beta[r]
        if b == 0.0:
            continue
        a = alpha[r]
        _ce_grad_fix_e(grad_out[r], target[r], a, b, cw, W, gs, S[i], X[2, i])
        loss_out[r] = _ce_loss(a, b, M[i], L[i], X[0, i], X[1, i], W)


@njit(**_PKW)
def cross_entropy_short_par(x, target, alpha, beta, cw, loss_out):
    wide()
    n, C = x.shape
    R = _tile_rows(C)
    W = _wsum(cw)
    if C <= NARROW_CE_C:
        for t in prange((n + R - 1) // R):
            sc = narrow_scratch(x, R)
            r0 = t * R
            _narrow_ce_tile(
                x, target, alpha, beta, cw, W, loss_out, r0, min(n, r0 + R), sc
            )
        return
    for t in prange((n + R - 1) // R):
        e = np.empty((R, C), x.dtype)
        M = np.empty(R)
        L = np.empty(2 * R)
        r0 = t * R
        _short_ce_tile(
            x, target, alpha, beta, cw, W, loss_out, r0, min(n, r0 + R), e, M, L
        )


@njit(**_KW)
def cross_entropy_short_ser(x, target, alpha, beta, cw, loss_out):
    x, cw = borrow(x), borrow(cw)
    wide()
    n, C = x.shape
    R = _tile_rows(C)
    W = _wsum(cw)
    if C <= NARROW_CE_C:
        sc = narrow_scratch(x, R)
        for r0 in range(0, n, R):
            _narrow_ce_tile(
                x, target, alpha, beta, cw, W, loss_out, r0, min(n, r0 + R), sc
            )
        return
    e = np.empty((R, C), x.dtype)
    M = np.empty(R)
    L = np.empty(2 * R)
    for r0 in range(0, n, R):
        _short_ce_tile(
            x, target, alpha, beta, cw, W, loss_out, r0, min(n, r0 + R), e, M, L
        )


@njit(fastmath={"contract"}, **_KW)
def _short_ce_scalars(e, M, xy, T, k):
    """Per tile row: ``T[0] = S``, ``T[1] = log S`` (holding the sum's rounding
    error first), ``T[2] = exp(x_y - m)``, the logs and exps in one vectorised
    loop."""
    wide()
    for i in range(k):
        T[0, i], T[1, i] = _short_sum(e, i, M[i])
    for i in range(k):
        T[1, i] = log_sum(T[0, i], T[1, i])
        T[2, i] = exp64(xy[i] - M[i])


@njit(fastmath={"contract"}, **_KW)
def _short_ce_smooth_row(e, i, cw, c1, c2):
    wide()
    for j in range(e.shape[1]):
        e[i, j] = e[i, j] * c1 - c2 * cw[j]


@njit(**_GLUE)
def _short_ce_grad_fin(e, i, y, a, b, cw, W, gs, T):
    """Turn row ``i`` of the tile's exp values into the gradient; its loss."""
    S = T[0, i]
    if b == 0.0:
        _short_scale(e, i, (1.0 / S) * (gs * a))  # the one-block rows' factor
    else:
        _short_ce_smooth_row(e, i, cw, gs * (a + b * W) / S, gs * b)
    _ce_grad_fix_e(e[i], y, a, b, cw, W, gs, S, T[2, i])
    return _ce_loss(a, b, T[4, i], T[1, i], T[5, i], T[3, i], W)


@njit(**_GLUE)
def _short_ce_grad_tile(
    x, target, alpha, beta, cw, W, gs, loss_out, grad_out, r0, r1, T
):
    """One tile of rows; ``T`` is a ``(6, R)`` scratch: per tile row ``S``,
    ``log S``, ``exp(x_y - m)``, the smoothing sum, ``m`` and ``x_y``."""
    wide()
    M = T[4]
    xy = T[5]
    # the target logits are read before grad_out (maybe x) is written; the
    # smoothing sums T[3] (read only for rows with beta != 0) with the exp's
    # read of each row, in a tile with any such row
    for r in range(r0, r1):
        xy[r - r0] = np.float64(x[r, target[r]])
    nb = 0  # rows with smoothing (a branch-free count)
    for r in range(r0, r1):
        nb += beta[r] != 0.0
    smooth = nb > 0
    e = grad_out[r0:r1]
    if smooth:
        _short_exp_wdot(x, e, r0, r1, M, T[3], cw)
    else:
        _short_exp(x, e, r0, r1, M)
    _short_ce_scalars(e, M, xy, T, r1 - r0)
    # The rows without smoothing, then those with it: one loop that chose per row
    # between the two kept LLVM from vectorising either (2x slower).
    for i in range(r1 - r0):
        r = r0 + i
        a = alpha[r]
        if beta[r] != 0.0:
            continue
        if a == 0.0:
            for j in range(e.shape[1]):
                e[i, j] = 0.0
            loss_out[r] = 0.0
            continue
        loss_out[r] = _short_ce_grad_fin(e, i, target[r], a, 0.0, cw, W, gs, T)
    if smooth:
        for i in range(r1 - r0):
            r = r0 + i
            b = beta[r]
            if b != 0.0:
                loss_out[r] = _short_ce_grad_fin(
                    e, i, target[r], alpha[r], b, cw, W, gs, T
                )


@njit(**_PKW)
def cross_entropy_grad_short_par(x, target, alpha, beta, cw, gs, loss_out, grad_out):
    wide()
    n, C = x.shape
    R = _tile_rows(C)
    W = _wsum(cw)
    if C <= NARROW_CE_C:
        for t in prange((n + R - 1) // R):
            sc = narrow_scratch(x, R)
            X = np.empty((3, R))
            r0 = t * R
            r1 = min(n, r0 + R)
            _narrow_ce_grad_tile(
                x, target, alpha, beta, cw, W, gs, loss_out, grad_out, r0, r1, sc, X
            )
        return
    for t in prange((n + R - 1) // R):
        T = np.empty((6, R))
        r0 = t * R
        r1 = min(n, r0 + R)
        _short_ce_grad_tile(
            x, target, alpha, beta, cw, W, gs, loss_out, grad_out, r0, r1, T
        )


@njit(**_KW)
def cross_entropy_grad_short_ser(x, target, alpha, beta, cw, gs, loss_out, grad_out):
    x, cw, grad_out = borrow(x), borrow(cw), borrow(grad_out)
    wide()
    n, C = x.shape
    R = _tile_rows(C)
    W = _wsum(cw)
    if C <= NARROW_CE_C:
        sc = narrow_scratch(x, R)
        X = np.empty((3, R))
        for r0 in range(0, n, R):
            r1 = min(n, r0 + R)
            _narrow_ce_grad_tile(
                x, target, alpha, beta, cw, W, gs, loss_out, grad_out, r0, r1, sc, X
            )
        return
    T = np.empty((6, R))
    for r0 in range(0, n, R):
        r1 = min(n, r0 + R)
        _short_ce_grad_tile(
            x, target, alpha, beta, cw, W, gs, loss_out, grad_out, r0, r1, T
        )


# Cross-entropy on short rows, probability targets: the transposed statistics
# of the class-index tiles, then the tile's losses and sums of ``a_ij``
# (``a_ij = (k1 t_ij + k0) w_j``) row-major in one function, and the gradient
# ``e_ij (gs A_i / S_i) - gs a_ij`` in another: two functions a tile where a
# row at a time took five short loops a row. The loss alone computes ``A_i``
# too, so that the two kernels run the same loss loop and give the same bits.

NARROW_PROB_C = 20
"""Probability-target cross-entropy rows with at most this many classes take
the transposed tiles, the loss alone and with its gradient alike (so they give
the same loss bits); wider ones keep the grouped statistics (the loss alone)
and the row kernels (with the gradient). Against those (``scripts/
prob_tiles.py``: 512, 4096 and 65536 rows, two threads where ``_ops`` threads,
medians of 11 interleaved rounds, two runs, and a third of float64 at 65536
rows from 16 classes; float32 / float64), the loss alone took 0.63-0.76 /
0.49-0.68 of the time at 4-8 classes, 0.57-0.72 / 0.51-0.61 at 10, 0.83-0.98 /
0.73-0.87 at 16, 0.80-1.03 / 0.70-0.77 at 20, 0.85-1.14 / 0.74-0.85 at 24 and
1.15-1.39 / 0.83-1.42 at 32; with its gradient 0.34-0.50 / 0.33-0.61,
0.40-0.53 / 0.48-0.60, 0.61-0.82 / 0.67-1.04, 0.63-0.88 / 0.56-0.93,
0.79-0.99 / 0.80-1.20 and 0.90-1.08 / 1.08-1.23."""


@njit(fastmath=_RED, **_KW)
def _narrow_prob_losses(x, target, cw, k1, k0, M, L, A, r0, k, loss_out):
    """``loss_out[r0 + i] = sum_j a_ij ((M_i - x_ij) + L_i)`` (the terms of
    ``a_ij = 0`` left out, so a ``-inf`` logit under a zero coefficient adds 0,
    not NaN, as in :func:`_prob_loss`) and ``A[i] = sum_j a_ij`` for the
    tile's ``k`` rows, ``L`` holding ``log S``."""
    wide()
    for i in range(k):
        r = r0 + i
        m, log_s = M[i], L[i]
        acc = 0.0
        s = 0.0
        for j in range(x.shape[1]):
            aj = (k1 * np.float64(target[r, j]) + k0) * cw[j]
            acc += (aj * ((m - np.float64(x[r, j])) + log_s)) if aj != 0.0 else 0.0
            s += aj
        loss_out[r] = acc
        A[i] = s


@njit(fastmath={"contract"}, **_KW)
def _narrow_log_sums(S, c, L, k):
    """``L[:k] = log S`` from the sums and their rounding errors ``c``
    (:func:`log_sum`), one vectorised loop (``S`` kept)."""
    wide()
    for i in range(k):
        L[i] = log_sum(S[i], c[i])


@njit(fastmath={"contract"}, **_KW)
def _narrow_prob_grads(T, target, cw, k1, k0, gs, S, A, r0, k, grad_out):
    """``grad_out[r0 + i, j] = T[j, i] c1_i - gs a_ij`` (``c1_i = gs A_i / S_i``,
    ``T`` holding ``exp(x - M)`` transposed), in float64 and rounded once, as
    :func:`_prob_affine`: the tile's rows in one function."""
    wide()
    for i in range(k):
        r = r0 + i
        c1 = gs * A[i] / S[i]
        for j in range(T.shape[0]):
            aj = (k1 * np.float64(target[r, j]) + k0) * cw[j]
            grad_out[r, j] = np.float64(T[j, i]) * c1 - gs * aj


def prob_scratch(x, R):
    """:func:`narrow_scratch` for tiles of ``R`` rows of ``x`` and two more
    float64 rows of ``R``: ``(T, m, M, S, c, L, A)``."""
    raise NotImplementedError  # only callable from jitted code


@overload(prob_scratch, inline="always")
def _prob_scratch_impl(x, R):
    def impl(x, R):
        T, m, M, S, c = narrow_scratch(x, R)
        q = (R + 7) // 8 * 8
        f64 = np.empty(2 * q)
        return T, m, M, S, c, f64[:R], f64[q : q + R]

    return impl


@njit(**_GLUE)
def _narrow_prob_tile(x, target, cw, k1, k0, loss_out, r0, r1, sc):
    """The losses of the tile's rows ``r0 .. r1``; returns ``T`` (the tile's
    ``exp(x - M)``, transposed); ``S``, ``A`` (``sc``) hold their sums."""
    T, m, M, S, c, L, A = sc
    k = r1 - r0
    Tk = _narrow_stats(x, r0, k, T, m, M, S, c)
    _narrow_log_sums(S, c, L, k)
    _narrow_prob_losses(x, target, cw, k1, k0, M, L, A, r0, k, loss_out)
    return Tk


@njit(**_PKW)
def cross_entropy_prob_short_par(x, target, eps, cw, loss_out):
    wide()
    n, C = x.shape
    k1, k0 = _prob_coeffs(eps, C)
    R = _tile_rows(C)
    for t in prange((n + R - 1) // R):
        sc = prob_scratch(x, R)
        r0 = t * R
        _narrow_prob_tile(x, target, cw, k1, k0, loss_out, r0, min(n, r0 + R), sc)


@njit(**_KW)
def cross_entropy_prob_short_ser(x, target, eps, cw, loss_out):
    x, target, cw = borrow(x), borrow(target), borrow(cw)
    wide()
    n, C = x.shape
    k1, k0 = _prob_coeffs(eps, C)
    R = _tile_rows(C)
    sc = prob_scratch(x, R)
    for r0 in range(0, n, R):
        _narrow_prob_tile(x, target, cw, k1, k0, loss_out, r0, min(n, r0 + R), sc)


@njit(**_GLUE)
def _narrow_prob_grad_tile(x, target, cw, k1, k0, gs, loss_out, grad_out, r0, r1, sc):
    """The tile's losses, then its gradient: every read of its rows of ``x``
    comes before the first write of ``grad_out`` (which may be ``x``)."""
    Tk = _narrow_prob_tile(x, target, cw, k1, k0, loss_out, r0, r1, sc)
    S, A = sc[3], sc[6]  # the tile's sums of exps and of a_ij
    _narrow_prob_grads(Tk, target, cw, k1, k0, gs, S, A, r0, r1 - r0, grad_out)


@njit(**_PKW)
def cross_entropy_prob_grad_short_par(x, target, eps, cw, gs, loss_out, grad_out):
    wide()
    n, C = x.shape
    k1, k0 = _prob_coeffs(eps, C)
    R = _tile_rows(C)
    for t in prange((n + R - 1) // R):
        sc = prob_scratch(x, R)
        r0 = t * R
        _narrow_prob_grad_tile(
            x, target, cw, k1, k0, gs, loss_out, grad_out, r0, min(n, r0 + R), sc
        )


@njit(**_KW)
def cross_entropy_prob_grad_short_ser(x, target, eps, cw, gs, loss_out, grad_out):
    x, target, cw, grad_out = borrow(x), borrow(target), borrow(cw), borrow(grad_out)
    wide()
    n, C = x.shape
    k1, k0 = _prob_coeffs(eps, C)
    R = _tile_rows(C)
    sc = prob_scratch(x, R)
    for r0 in range(0, n, R):
        _narrow_prob_grad_tile(
            x, target, cw, k1, k0, gs, loss_out, grad_out, r0, min(n, r0 + R), sc
        )


# -------------------------------------------- cross-entropy, one small call fused
#
# A small class-index cross-entropy whole: the core's target plan, the row losses
# and their sum in one call, for a batch too small to thread (the core's NumPy
# steps cost more than the arithmetic there). One entry point per row kernel
# (``_short``, ``_grouped``, ``_rows``: the serial drivers of the same names),
# picked by ``_ops`` as the backend's rule picks the driver, so that a first call
# compiles only the row kernel its width takes: a numba function compiles every
# function it may call, and the entry points that chose between two drivers
# made a first small ``cross_entropy_with_grad`` compile both (64x100 float32,
# one process, a cold cache: 30 s, of which the unused driver took 7; at 1000
# classes the unused grouped driver took 17-22 s).


@njit(**_GLUE)
def _index_plan(target, cw, ignore_index, eps, C):
    """The core's per-row plan, to the bit: ``w_y = cw[y] * keep``,
    ``alpha = w_y (1 - eps)``, ``beta = keep eps / C``, ignored rows' target 0.
    Returns ``(bad, t, alpha, beta, cw, norm)``; ``bad`` the first row whose
    target is neither a class nor ``ignore_index`` (the rest then undefined)."""
    n = target.shape[0]
    uniform = cw.shape[0] == 0
    t = np.empty(n, np.int64)
    alpha = np.empty(n)
    beta = np.empty(n)
    a1 = 1.0 - eps
    b1 = eps / C
    norm = 0.0
    for i in range(n):
        y = target[i]
        if y == ignore_index:
            keep = 0.0
            y = 0
        elif y < 0 or y >= C:
            return i, t, alpha, beta, cw, norm
        else:
            keep = 1.0
        w = keep if uniform else cw[y] * keep
        t[i] = y
        norm += w
        alpha[i] = w * a1 if eps != 0.0 else w
        beta[i] = keep * b1 if eps != 0.0 else 0.0
    return -1, t, alpha, beta, np.ones(C) if uniform else cw, norm


@njit(**_GLUE)
def _row_sum(loss):
    total = 0.0
    for i in range(loss.shape[0]):
        total += loss[i]
    return total


@njit(**_GLUE)
def _index_sum_plan(x, target, cw, ignore_index, eps):
    """The fused loss's plan and its row-loss buffer: ``(bad, t, alpha, beta,
    w, norm, loss)``."""
    bad, t, alpha, beta, w, norm = _index_plan(
        target, cw, ignore_index, eps, x.shape[1]
    )
    return bad, t, alpha, beta, w, norm, np.empty(x.shape[0])


@njit(**_KW)
def cross_entropy_index_sum_short(x, target, cw, ignore_index, eps):
    """``(bad, total, norm)`` of a small batch by the short-row driver
    (``C < SHORT_C``): ``bad`` the first row whose target is neither a class
    nor ``ignore_index`` (then nothing is computed), else -1; ``total`` the
    row losses' sum and ``norm`` the kept rows' summed weight, both in row
    order. ``target`` int64 ``(rows,)`` unchecked; ``cw`` float64 ``(C,)``, or
    ``(0,)`` for no weight."""
    bad, t, alpha, beta, w, norm, loss = _index_sum_plan(
        x, target, cw, ignore_index, eps
    )
    if bad >= 0:
        return bad, 0.0, 0.0
    cross_entropy_short_ser(x, t, alpha, beta, w, loss)
    return -1, _row_sum(loss), norm


@njit(**_KW)
def cross_entropy_index_sum_grouped(x, target, cw, ignore_index, eps):
    """As :func:`cross_entropy_index_sum_short`, by the grouped driver."""
    bad, t, alpha, beta, w, norm, loss = _index_sum_plan(
        x, target, cw, ignore_index, eps
    )
    if bad >= 0:
        return bad, 0.0, 0.0
    cross_entropy_grouped_ser(x, t, alpha, beta, w, loss)
    return -1, _row_sum(loss), norm


@njit(**_KW)
def cross_entropy_index_sum_rows(x, target, cw, ignore_index, eps):
    """As :func:`cross_entropy_index_sum_short`, a row at a time (rows of
    ``SHORT_C`` classes or more)."""
    bad, t, alpha, beta, w, norm, loss = _index_sum_plan(
        x, target, cw, ignore_index, eps
    )
    if bad >= 0:
        return bad, 0.0, 0.0
    cross_entropy_ser(x, t, alpha, beta, w, loss)
    return -1, _row_sum(loss), norm


# The same with the gradient: the core's plan, its gradient scale (``1 / norm``
# for a mean, 0 where nothing has weight, 1 for a sum), the row kernel the
# backend's rule picks for a serial call (the same bits as the general path's
# gradient, given the same scale), and the row losses' sum in row order, as the
# loss alone sums them. Nothing is written for a bad target.


@njit(**_GLUE)
def _index_grad_scale(norm, mean):
    if not mean:
        return 1.0
    return 1.0 / norm if norm != 0.0 else 0.0


@njit(**_GLUE)
def _nan_kept_rows(target, ignore_index, grad_out):
    """A mean over kept rows of no weight: their gradient ``w_y / 0`` is NaN,
    as PyTorch's (the core's ``nan_rows``). ``target`` the caller's rows: the
    core never hands over a ``grad_out`` that shares memory with them."""
    for i in range(target.shape[0]):
        if target[i] != ignore_index:
            grad_out[i, :] = np.nan


@njit(**_GLUE)
def _index_grad_done(target, ignore_index, mean, norm, loss, grad_out):
    """The fused gradient's end: NaN rows where a mean has no weight, and
    ``(-1, total, norm)``."""
    if mean and norm == 0.0:
        _nan_kept_rows(target, ignore_index, grad_out)
    return -1, _row_sum(loss), norm


@njit(**_KW)
def cross_entropy_index_grad_sum_short(
    x, target, cw, ignore_index, eps, mean, grad_out
):
    """``(bad, total, norm)`` as :func:`cross_entropy_index_sum_short`, the
    gradient of the mean (``mean``) or the sum into ``grad_out`` (which may be
    ``x`` itself); nothing written where ``bad >= 0``."""
    bad, t, alpha, beta, w, norm, loss = _index_sum_plan(
        x, target, cw, ignore_index, eps
    )
    if bad >= 0:
        return bad, 0.0, 0.0
    gs = _index_grad_scale(norm, mean)
    cross_entropy_grad_short_ser(x, t, alpha, beta, w, gs, loss, grad_out)
    return _index_grad_done(target, ignore_index, mean, norm, loss, grad_out)


@njit(**_KW)
def cross_entropy_index_grad_sum_grouped(
    x, target, cw, ignore_index, eps, mean, grad_out
):
    """As :func:`cross_entropy_index_grad_sum_short`, by the grouped driver."""
    bad, t, alpha, beta, w, norm, loss = _index_sum_plan(
        x, target, cw, ignore_index, eps
    )
    if bad >= 0:
        return bad, 0.0, 0.0
    gs = _index_grad_scale(norm, mean)
    cross_entropy_grad_grouped_ser(x, t, alpha, beta, w, gs, loss, grad_out)
    return _index_grad_done(target, ignore_index, mean, norm, loss, grad_out)


@njit(**_KW)
def cross_entropy_index_grad_sum_rows(x, target, cw, ignore_index, eps, mean, grad_out):
    """As :func:`cross_entropy_index_grad_sum_short`, a row at a time (rows of
    ``SHORT_C`` classes or more)."""
    bad, t, alpha, beta, w, norm, loss = _index_sum_plan(
        x, target, cw, ignore_index, eps
    )
    if bad >= 0:
        return bad, 0.0, 0.0
    gs = _index_grad_scale(norm, mean)
    cross_entropy_grad_ser(x, t, alpha, beta, w, gs, loss, grad_out)
    return _index_grad_done(target, ignore_index, mean, norm, loss, grad_out)


# ------------------------------------------------- logsumexp with factors b
#
# ``log|sum_j b_j exp(x_j)|`` and its sign, a group of rows at a time (rows of
# ``REREAD_BYTES``, as log_softmax's): per row the largest ``x`` among the
# terms (``b_j != 0``; a zero factor removes its term whatever ``x_j`` is, as in
# SciPy) and the largest ``|b|``; then the sums of ``b_j exp(x_j - m)``
# (float64 rows: split exactly, as the row sums are, the exps in the same loop;
# float32 rows: the exps in float32 lanes into a scratch first, then summed in
# float64: a loop with both ran them in float64's 8 lanes); then every row's
# ``log`` in one vectorised loop. Factors of 1 or more are scaled below 1 by a
# power of two (exact): every term is in ``(-1, 1)``, where the split sums are
# exact, and no sum can overflow. ``b`` of shape ``(1, C)`` is one row of
# factors shared by every row (:func:`_brow`). Grouped, a float32 row took 0.39 (16
# classes), 0.47 (64) and 0.81 (1000) of its time a row at a time (one
# thread, in cache), bitwise the same.

_LN2 = 0.6931471805599453
_W_ROWS = 6  # st: m, the scale, its log, the sum, its error, whether a term


@njit(**_KW)
def _weighted_range(xs, bs):
    """``(m, B, bad)``: the largest ``x`` among the terms (``-inf``: none),
    the largest ``|b|``, and whether a term's ``x`` is NaN or ``+inf`` or a
    factor is NaN or infinite (the row's result is NaN)."""
    wide()
    km = order_key(_NINF)
    kb = np.int64(0)
    bad = False
    for j in range(xs.shape[0]):
        xv = np.float64(xs[j])
        bv = np.float64(bs[j])
        live = bv != 0.0  # NaN factors too
        km = max(km, order_key(xv if live else _NINF))
        ab = abs(bv)
        kb = max(kb, f64_bits(ab))  # non-negative: its bits order as it does
        bad |= (live & ((xv != xv) | (xv == _INF))) | (ab != ab) | (ab == _INF)
    return from_order_key(km), f64_from_bits(kb), bad


@njit(**_GLUE)
def _brow(b, r):
    """Row ``r``'s factors: ``b[r]``, or ``b[0]`` where one row of factors is
    shared by every row (``b`` of shape ``(1, C)``)."""
    return b[min(r, b.shape[0] - 1)]


@njit(**_GLUE)
def _weighted_scale(st, i, m, B, bad):
    """Row ``i`` of a group from its ``(m, B, bad)`` (:func:`_weighted_range`):
    ``m`` (0 where the row gives NaN), the scale ``2**-e``, ``e log 2`` and
    whether it has a term and no bad entry, into ``st``."""
    ok = not (bad or m == _NINF)
    inv = 1.0
    shift = 0.0
    if B >= 1.0:
        e = np.int64(f64_bits(B) >> 52) - 1022  # B < 2**e, e in [1, 1024]
        inv = f64_from_bits(np.int64(1023 - min(e, 1022)) << 52)
        if e > 1022:  # 2**-e is subnormal: exact as 2**-1022 times 2**(1022 - e)
            inv *= f64_from_bits(np.int64(2045 - e) << 52)
        shift = e * _LN2
    st[0, i] = m if ok else 0.0
    st[1, i] = inv
    st[2, i] = shift
    st[5, i] = 1.0 if ok else 0.0


@njit(**_GLUE)
def _weighted_ranges(x, b, q, k, st):
    """Rows ``q:q + k``' ``m``, scale, its log and whether the row is good,
    into ``st`` (:func:`_weighted_scale`)."""
    for i in range(k):
        m, B, bad = _weighted_range(x[q + i], _brow(b, q + i))
        _weighted_scale(st, i, m, B, bad)


@njit(fastmath=_RED, **_KW)
def _weighted_sum(xs, bs, m, inv):
    """float64 rows: ``sum_j (b_j inv) exp(x_j - m)`` over the terms, as
    ``(S, E)``, the sum and its rounding error."""
    wide()
    b = sum_bias(xs, xs.shape[0])
    sh = 0.0
    sl = -0.0
    for j in range(xs.shape[0]):
        bv = np.float64(bs[j])
        t = (bv * inv) * expdiff(xs[j], m, xs)
        v = t if bv != 0.0 else 0.0  # a removed term's exp may be inf or NaN
        sh, sl = split_add(sh, sl, v, b, xs)
    return finish_sum(xs, sh, sl, False)


@njit(fastmath={"contract"}, **_KW)
def _weighted_exps32(x, E, q, k, st):
    """float32 rows ``q:q + k``: ``E[i] = exp(x - m)`` in float32 lanes (a
    removed term's may be anything: its factor drops it)."""
    wide()
    for i in range(k):
        m = np.float32(st[0, i])
        xs = x[q + i]
        es = E[i]
        for j in range(xs.shape[0]):
            es[j] = exp_elem_neg(xs[j] - m)


@njit(fastmath=_RED, **_KW)
def _weighted_sum32(es, bs, inv):
    """``sum_j (b_j inv) es_j`` over the terms, in float64."""
    wide()
    s = 0.0
    for j in range(es.shape[0]):
        bv = np.float64(bs[j])
        t = (bv * inv) * np.float64(es[j])
        s += t if bv != 0.0 else 0.0
    return s


def weighted_sums(x, b, q, k, st, E):
    """Rows ``q:q + k``' sums and their rounding errors into ``st[3]`` and
    ``st[4]`` (``E``: from :func:`group_exps`)."""
    raise NotImplementedError  # only callable from jitted code


@overload(weighted_sums, inline="always")
def _weighted_sums_impl(x, b, q, k, st, E):
    if _is_f32(x):

        def impl32(x, b, q, k, st, E):
            _weighted_exps32(x, E, q, k, st)
            for i in range(k):
                st[3, i] = _weighted_sum32(E[i], _brow(b, q + i), st[1, i])
                st[4, i] = 0.0

        return impl32

    def impl(x, b, q, k, st, E):
        for i in range(k):
            bs = _brow(b, q + i)
            st[3, i], st[4, i] = _weighted_sum(x[q + i], bs, st[0, i], st[1, i])

    return impl


@njit(fastmath={"contract"}, **_KW)
def _weighted_finish(st, out, sign, k):
    """``log|S| + m + e log 2`` and the sign of each row of the group, in one
    vectorised loop: ``-inf`` and 0 where ``S`` is 0, NaN and NaN where the
    row has no term or a bad entry."""
    wide()
    for i in range(k):
        S = st[3, i]
        sg = 1.0 if S > 0.0 else (-1.0 if S < 0.0 else 0.0)
        a = S * sg
        v = (st[0, i] + st[2, i]) + log_sum(a if a > 0.0 else 1.0, st[4, i] * sg)
        ok = st[5, i] == 1.0
        out[i] = (v if a > 0.0 else _NINF) if ok else _NAN
        sign[i] = sg if ok else _NAN


@njit(**_GLUE)
def _weighted_block(x, b, out, sign, r0, r1):
    G = _reread_rows(x)
    st = np.empty((_W_ROWS, G))
    E = group_exps(x)
    for q in range(r0, r1, G):
        k = min(r1, q + G) - q
        _weighted_ranges(x, b, q, k, st)
        weighted_sums(x, b, q, k, st, E)
        _weighted_finish(st, out[q : q + k], sign[q : q + k], k)


@njit(**_PKW)
def logsumexp_weighted_par(x, b, out, sign):
    n = x.shape[0]
    R = _task_rows(x)
    for t in prange((n + R - 1) // R):
        _weighted_block(x, b, out, sign, t * R, min(n, t * R + R))


@njit(**_KW)
def logsumexp_weighted_ser(x, b, out, sign):
    x, b, out, sign = borrow(x), borrow(b), borrow(out), borrow(sign)
    _weighted_block(x, b, out, sign, 0, x.shape[0])


# Short rows in transposed tiles, as the plain logsumexp's: a tile's ``x`` and
# ``b`` transposed into ``(C, k)`` scratches, so that every pass (the ranges,
# the exps, the sums) runs across the tile's rows in vector lanes instead of a
# loop of a few classes a row. float32 sums plainly in float64, float64 by
# TwoSum a column (compensated, where the rows' split sums are exact: the same
# bound, possibly other last bits). One thread, in cache, ns a row, a row at a
# time -> tiles: float32 27 -> 15 (10 classes), 38 -> 22 (15), but 20 -> 23
# (16) and 29 -> 38 (24); float64 37 -> 8 (3), 41 -> 24 (16), 100 -> 53 (31),
# but 64 -> 79 (40).

WEIGHTED_SHORT_C32 = 16
"""float32 rows with fewer classes than this take the transposed tiles."""

WEIGHTED_SHORT_C64 = 32
"""float64 rows with fewer classes than this take the transposed tiles."""


@njit(**_KW)
def _wtile_in(x, b, T, Bt, r0, k):
    """``T[j, i] = x[r0 + i, j]`` and ``Bt[j, i]`` the factor of that element:
    ``b``'s rows transposed, or its one row shared by every row filled along
    ``Bt``'s rows (contiguous stores, no strided reads)."""
    wide()
    C = x.shape[1]
    if b.shape[0] == 1:
        for i in range(k):
            xi = x[r0 + i]
            for j in range(C):
                T[j, i] = xi[j]
        for j in range(C):
            v = b[0, j]
            for i in range(k):
                Bt[j, i] = v
        return
    for i in range(k):
        xi = x[r0 + i]
        bi = b[r0 + i]
        for j in range(C):
            T[j, i] = xi[j]
            Bt[j, i] = bi[j]


@njit(**_KW)
def _wtile_ranges(T, Bt, st, k):
    """The tile's rows' ``(m, B, bad)`` across them in vector lanes (as
    :func:`_weighted_range`: ``m`` the largest ``x`` of a term, ignoring NaN,
    which sets ``bad``), then each row's scale (:func:`_weighted_scale`)."""
    wide()
    for i in range(k):  # st[3], the sums' row, holds the bad flags until then
        st[0, i] = _NINF
        st[1, i] = 0.0
        st[3, i] = 0.0
    for j in range(T.shape[0]):
        for i in range(k):
            xv = np.float64(T[j, i])
            bv = np.float64(Bt[j, i])
            live = bv != 0.0  # NaN factors too
            st[0, i] = fmaxnum(st[0, i], xv if live else _NINF)
            ab = abs(bv)
            st[1, i] = fmaxnum(st[1, i], ab)
            bad = (live & ((xv != xv) | (xv == _INF))) | (ab != ab) | (ab == _INF)
            st[3, i] = max(st[3, i], 1.0 if bad else 0.0)
    for i in range(k):
        _weighted_scale(st, i, st[0, i], st[1, i], st[3, i] != 0.0)


@njit(fastmath={"contract"}, **_KW)
def _wtile_exps(T, Bt, st, k):
    """float32 tiles: ``T[j, i] = exp(x - m_i)`` (a removed term's may be
    anything: its factor drops it); float64 tiles: the terms themselves,
    ``(b inv) exp(x - m_i)``, 0 for a removed one, for :func:`narrow_sums`."""
    wide()
    for j in range(T.shape[0]):
        for i in range(k):
            e = exp_elem_neg(argdiff(T[j, i], st[0, i], T))
            if f32_row(T):
                T[j, i] = e
            else:
                bv = Bt[j, i]
                T[j, i] = (bv * st[1, i]) * e if bv != 0.0 else 0.0


def wtile_sums(T, Bt, st, k):
    """The tile's rows' sums of ``(b inv) exp(x - m)`` over their terms into
    ``st[3]``, their rounding errors into ``st[4]`` (``T`` from
    :func:`_wtile_exps`)."""
    raise NotImplementedError  # only callable from jitted code


@overload(wtile_sums, jit_options=_KW)
def _wtile_sums_impl(T, Bt, st, k):
    if _is_f32(T):

        def impl32(T, Bt, st, k):
            for i in range(k):
                st[3, i] = 0.0
                st[4, i] = 0.0
            for j in range(T.shape[0]):
                for i in range(k):
                    bv = np.float64(Bt[j, i])
                    t = (bv * st[1, i]) * np.float64(T[j, i])
                    st[3, i] += t if bv != 0.0 else 0.0

        return impl32

    def impl(T, Bt, st, k):  # T holds the terms: TwoSum a column
        narrow_sums(T, st[3], st[4], k, False)

    return impl


@njit(**_GLUE)
def _weighted_short_block(x, b, out, sign, r0, r1):
    C = x.shape[1]
    R = _tile_rows(C)
    T = np.empty(R * C, x.dtype)
    Bt = np.empty(R * C, x.dtype)
    st = np.empty((_W_ROWS, R))
    for q in range(r0, r1, R):
        k = min(r1, q + R) - q
        Tk = T[: C * k].reshape((C, k))
        Bk = Bt[: C * k].reshape((C, k))
        _wtile_in(x, b, Tk, Bk, q, k)
        _wtile_ranges(Tk, Bk, st, k)
        _wtile_exps(Tk, Bk, st, k)
        wtile_sums(Tk, Bk, st, k)
        _weighted_finish(st, out[q : q + k], sign[q : q + k], k)


@njit(**_PKW)
def logsumexp_weighted_short_par(x, b, out, sign):
    n = x.shape[0]
    R = _tile_rows(x.shape[1])
    for t in prange((n + R - 1) // R):
        _weighted_short_block(x, b, out, sign, t * R, min(n, t * R + R))


@njit(**_KW)
def logsumexp_weighted_short_ser(x, b, out, sign):
    x, b, out, sign = borrow(x), borrow(b), borrow(out), borrow(sign)
    _weighted_short_block(x, b, out, sign, 0, x.shape[0])
