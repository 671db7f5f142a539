"""float32 to and from the 16-bit floats (float16, bfloat16), on their bits.

The core computes float16 and bfloat16 arrays in float32: it widens the inputs and
rounds the results back. NumPy's float16 casts run one element at a time, and
far slower where a result is subnormal in float16 (a softmax over 32000 classes
is: ``1/32000`` is below float16's smallest normal): at 64x32000, rounding the
float32 softmax to float16 took 295 times as long as the softmax itself.
ml_dtypes' bfloat16 casts are scalar loops too. The kernels here are branch-free
(every case a ``select``) integer and float arithmetic on the bits, so LLVM
vectorises them, and they run parallel over chunks of ``CHUNK`` elements on
large arrays. float16 converts in hardware where the CPU has F16C
(:data:`HARDWARE_HALF`), its NaNs given NumPy's bits back.

Results are bitwise those of ``numpy.ndarray.astype`` (float16) and of
ml_dtypes (bfloat16), which ``tests/test_casts.py`` checks over every 16-bit
pattern and every float32 rounding case (ties, subnormals, overflow, NaN):

* widening is exact; a NaN keeps its sign and payload;
* rounding is to nearest, ties to even, subnormals included; values from
  float16's largest finite plus half an ULP (65520) up round to infinity;
* a float32 NaN gives a float16 NaN of its sign and the top ten bits of its
  payload (``0x7c01`` where those are zero, so it stays a NaN), as NumPy does,
  and the canonical quiet bfloat16 NaN of its sign (``0x7fc0``), as ml_dtypes
  does.
"""

from __future__ import annotations

import llvmlite.ir as llir
from numba import njit, prange, types
from numba.extending import intrinsic

from . import _runtime

_runtime.ensure()  # cache locator before the first @njit(cache=True)

from ._vexp import wide  # noqa: E402

CHUNK = 1 << 14
"""Elements per parallel task."""

SERIAL_MAX = 1 << 15
"""Arrays of at most this many elements are converted on one thread (at 4096
elements two threads took twice one thread's time, at 65536 a half to two
thirds of it)."""

_KW = {"cache": True, "nogil": True, "error_model": "numpy"}

# The element conversions are LLVM IR on 32-bit integers: numba types every
# operation on int32 values as int64, and its loops then ran in 64-bit lanes, half
# as many per vector (float16 to float32 took 0.31 ns an element on one thread).
_I16 = llir.IntType(16)
_I32 = llir.IntType(32)
_F32 = llir.FloatType()
_HALF = llir.HalfType()


def _hardware_half() -> bool:
    """Whether the code numba compiles here may convert float16 in hardware:
    x86's F16C (``vcvtph2ps``, ``vcvtps2ph``, 16 lanes an instruction) on the
    host CPU, numba compiling for the host (``NUMBA_CPU_NAME`` and
    ``NUMBA_CPU_FEATURES`` unset). Elsewhere LLVM may turn the conversion into a
    call to a runtime function the JIT does not link."""
    import os

    if os.environ.get("NUMBA_CPU_NAME") or os.environ.get("NUMBA_CPU_FEATURES"):
        return False
    import llvmlite.binding as llb

    try:
        return "f16c" in llb.get_host_cpu_features().flatten()
    except RuntimeError:  # features unknown to LLVM on this host
        return False


HARDWARE_HALF = _hardware_half()
"""float16 conversions in hardware (F16C), with NumPy's NaN bits restored;
otherwise on the bits in integer lanes. Same results either way. One thread,
32768 elements in L1: float16 to float32 0.059 ns an element against 0.113,
float32 to float16 0.060 against 0.191 (a Zen 4 host)."""


def _k(v):
    return llir.Constant(_I32, v)


def _pick(b, cases, default):
    """``select`` chain: the value of the first true condition, else ``default``."""
    out = default
    for cond, value in reversed(cases):
        out = b.select(cond, value, out)
    return out


def _half_to_f32_codegen(keep_snan):
    def codegen(context, b, signature, args):
        if HARDWARE_HALF and not keep_snan:
            return b.fpext(b.bitcast(args[0], _HALF), _F32)
        x = b.zext(args[0], _I32)
        a = b.and_(x, _k(0x7FFF))
        sign = b.shl(b.and_(x, _k(0x8000)), _k(16))
        a13 = b.shl(a, _k(13))
        if HARDWARE_HALF:  # F16C quiets a signalling NaN; NumPy keeps its bits
            hw = b.bitcast(b.fpext(b.bitcast(args[0], _HALF), _F32), _I32)
            nan = b.or_(b.or_(sign, _k(0x7F800000)), a13)
            is_nan = b.icmp_signed(">", a, _k(0x7C00))
            return b.bitcast(b.select(is_nan, nan, hw), _F32)
        normal = b.add(a13, _k(112 << 23))  # rebias: (127 - 15) << 23
        special = b.or_(a13, _k(0x7F800000))  # inf, NaN: payload kept
        unit = llir.Constant(_F32, 2.0**-24)  # float16's smallest subnormal
        sub = b.bitcast(b.fmul(b.sitofp(a, _F32), unit), _I32)  # exact
        bits = _pick(
            b,
            [
                (b.icmp_signed("<", a, _k(0x400)), sub),
                (b.icmp_signed(">=", a, _k(0x7C00)), special),
            ],
            normal,
        )
        return b.bitcast(b.or_(bits, sign), _F32)

    return codegen


@intrinsic
def half_to_f32(typingctx, h):
    """The float32 that float16 bits ``h`` (uint16) stand for (exact)."""
    if h != types.uint16:
        return None
    return types.float32(types.uint16), _half_to_f32_codegen(True)


@intrinsic
def half_to_f32_quiet(typingctx, h):
    """:func:`half_to_f32`, but a signalling NaN may come back quiet: for a
    value that arithmetic takes next, which quiets it anyway. With F16C one
    instruction, without NumPy's NaN bits restored."""
    if h != types.uint16:
        return None
    return types.float32(types.uint16), _half_to_f32_codegen(False)


def _f32_to_half_codegen(keep_snan):
    def codegen(context, b, signature, args):
        if HARDWARE_HALF and not keep_snan:
            return b.bitcast(b.fptrunc(args[0], _HALF), _I16)
        x = b.bitcast(args[0], _I32)
        sign = b.and_(b.lshr(x, _k(16)), _k(0x8000))
        a = b.and_(x, _k(0x7FFFFFFF))
        top = b.and_(b.lshr(a, _k(13)), _k(0x3FF))
        nan = b.or_(_k(0x7C00), b.select(b.icmp_signed("==", top, _k(0)), _k(1), top))
        is_nan = b.icmp_signed(">", a, _k(0x7F800000))
        if HARDWARE_HALF:  # F16C sets the quiet bit of a NaN; NumPy does not
            hw = b.zext(b.bitcast(b.fptrunc(args[0], _HALF), _I16), _I32)
            return b.trunc(b.select(is_nan, b.or_(nan, sign), hw), _I16)
        # normal: rebias the exponent, round the 13 dropped bits to nearest even
        odd = b.and_(b.lshr(a, _k(13)), _k(1))
        normal = b.lshr(b.add(b.sub(a, _k(112 << 23)), b.add(_k(0xFFF), odd)), _k(13))
        # subnormal (below 2**-14): adding 0.5, whose ULP is 2**-24, rounds |v|
        # to that unit; the bits above 0.5's are the count of units
        tiny = llir.Constant(_F32, 2.0**-14)
        av = b.bitcast(a, _F32)
        small = b.select(b.fcmp_ordered("<", av, tiny), av, tiny)
        half = llir.Constant(_F32, 0.5)
        sub = b.sub(b.bitcast(b.fadd(small, half), _I32), _k(0x3F000000))
        r = _pick(
            b,
            [
                (is_nan, nan),
                (b.icmp_signed(">=", a, _k(0x477FF000)), _k(0x7C00)),  # 65520 up: inf
                (b.icmp_signed("<", a, _k(0x38800000)), sub),
            ],
            normal,
        )
        return b.trunc(b.or_(r, sign), _I16)

    return codegen


@intrinsic
def f32_to_half(typingctx, v):
    """The float16 bits (uint16) nearest float32 ``v``, ties to even; a NaN keeps
    its sign and top ten payload bits (``0x7c01`` where those are zero)."""
    if v != types.float32:
        return None
    return types.uint16(types.float32), _f32_to_half_codegen(True)


@intrinsic
def f32_to_half_quiet(typingctx, v):
    """:func:`f32_to_half` for a ``v`` that is no signalling NaN (a result of
    arithmetic): a quiet NaN's top ten payload bits hold the quiet bit, so F16C
    (one instruction) gives NumPy's bits for it."""
    if v != types.float32:
        return None
    return types.uint16(types.float32), _f32_to_half_codegen(False)


@intrinsic
def bf16_to_f32(typingctx, h):
    """The float32 that bfloat16 bits ``h`` (uint16) stand for (exact)."""
    if h != types.uint16:
        return None

    def codegen(context, b, signature, args):
        return b.bitcast(b.shl(b.zext(args[0], _I32), _k(16)), _F32)

    return types.float32(types.uint16), codegen


@intrinsic
def f32_to_bf16(typingctx, v):
    """The bfloat16 bits (uint16) nearest float32 ``v``, ties to even; a NaN
    becomes ``0x7fc0`` of its sign."""
    if v != types.float32:
        return None

    def codegen(context, b, signature, args):
        x = b.bitcast(args[0], _I32)
        odd = b.and_(b.lshr(x, _k(16)), _k(1))
        rounded = b.lshr(b.add(x, b.add(_k(0x7FFF), odd)), _k(16))
        nan = b.or_(b.and_(b.lshr(x, _k(16)), _k(0x8000)), _k(0x7FC0))
        is_nan = b.icmp_unsigned(">", b.and_(x, _k(0x7FFFFFFF)), _k(0x7F800000))
        return b.trunc(b.select(is_nan, nan, rounded), _I16)

    return types.uint16(types.float32), codegen


@njit(**_KW)
def _widen(src, dst, half):
    """``dst`` (float32) from the 16-bit patterns ``src``. The loops start at 0:
    from an index LLVM cannot prove non-negative, each element pays for
    negative-index wraparound and the loop stays scalar (4x slower)."""
    wide()
    if half:
        for i in range(src.size):
            dst[i] = half_to_f32(src[i])
    else:
        for i in range(src.size):
            dst[i] = bf16_to_f32(src[i])


@njit(**_KW)
def _narrow(src, dst, half):
    """The 16-bit patterns ``dst`` nearest the float32 ``src``."""
    wide()
    if half:
        for i in range(src.size):
            dst[i] = f32_to_half(src[i])
    else:
        for i in range(src.size):
            dst[i] = f32_to_bf16(src[i])


@njit(**_KW)
def _widen_quiet(src, dst, half):
    """:func:`_widen` for values that arithmetic takes next (a signalling NaN
    may come back quiet: :func:`half_to_f32_quiet`), as a 16-bit block of the
    forward ops is. With F16C, one instruction an element: a third of
    :func:`_widen`'s time on a Zen 3 host, whose lane-crossing shuffles make
    the NaN bits' repair cost twice the conversion."""
    if half:
        wide()
        for i in range(src.size):
            dst[i] = half_to_f32_quiet(src[i])
    else:
        _widen(src, dst, half)


@njit(**_KW)
def _narrow_quiet(src, dst, half):
    """:func:`_narrow` for results of arithmetic, never a signalling NaN
    (:func:`f32_to_half_quiet`)."""
    if half:
        wide()
        for i in range(src.size):
            dst[i] = f32_to_half_quiet(src[i])
    else:
        _narrow(src, dst, half)


@njit(**_KW)
def widen_ser(src, dst, half):
    """float32 ``dst`` from the uint16 patterns ``src`` of float16 (``half``) or
    bfloat16 numbers; 1-D C-contiguous, one size."""
    _widen(src, dst, half)


@njit(parallel=True, **_KW)
def widen_par(src, dst, half):
    n = src.size
    for k in prange((n + CHUNK - 1) // CHUNK):
        lo = k * CHUNK
        hi = min(n, lo + CHUNK)
        _widen(src[lo:hi], dst[lo:hi], half)


@njit(**_KW)
def narrow_ser(src, dst, half):
    """The uint16 patterns ``dst`` of the float16 (``half``) or bfloat16 numbers
    nearest the float32 ``src``; 1-D C-contiguous, one size."""
    _narrow(src, dst, half)


@njit(parallel=True, **_KW)
def narrow_par(src, dst, half):
    n = src.size
    for k in prange((n + CHUNK - 1) // CHUNK):
        lo = k * CHUNK
        hi = min(n, lo + CHUNK)
        _narrow(src[lo:hi], dst[lo:hi], half)
