"""float32 to and from the 16-bit floats (float16, bfloat16), on their bits.

The core computes float16 and bfloat16 arrays in float32: it widens the inputs and
rounds the results back. NumPy's float16 casts run one element at a time, and
far slower where a result is subnormal in float16 (a softmax over 32000 classes
is: ``1/32000`` is below float16's smallest normal): at 64x32000, rounding the
float32 softmax to float16 took 295 times as long as the softmax itself.
ml_dtypes' bfloat16 casts are scalar loops too. The kernels here are branch-free
(every case a ``select``) integer and float arithmetic on the bits, so LLVM
vectorises them, and they run parallel over chunks of ``CHUNK`` elements on
large arrays.

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

import numpy as np
from numba import njit, prange

from . import _runtime

_runtime.ensure()  # cache locator before the first @njit(cache=True)

from ._vexp import f32_bits, f32_from_bits, wide  # noqa: E402

CHUNK = 1 << 14
"""Elements per parallel task."""

SERIAL_MAX = 1 << 15
"""Arrays of at most this many elements are converted on one thread (at 4096
elements two threads took twice one thread's time, at 65536 a half to two
thirds of it)."""

_KW = {"cache": True, "nogil": True, "error_model": "numpy"}
_I32 = np.int32
_HALF_BIAS = _I32(112 << 23)  # (127 - 15) << 23: float32 minus float16 exponent bias
_SUBNORMAL_UNIT = np.float32(2.0**-24)  # float16's smallest subnormal
_HALF_MAGIC = np.float32(0.5)  # its ULP is 2**-24: adding it rounds to that unit
_HALF_MAGIC_BITS = _I32(0x3F000000)


@njit(inline="always", **_KW)
def _half_up(h):
    """float16 bits (in an int32) as the float32 they stand for."""
    a = h & _I32(0x7FFF)
    sign = (h & _I32(0x8000)) << _I32(16)
    normal = (a << _I32(13)) + _HALF_BIAS
    special = (a << _I32(13)) | _I32(0x7F800000)  # inf, NaN: payload kept
    sub = f32_bits(np.float32(a) * _SUBNORMAL_UNIT)  # exact below 2**-14
    bits = sub if a < _I32(0x400) else (special if a >= _I32(0x7C00) else normal)
    return f32_from_bits(_I32(bits | sign))


@njit(inline="always", **_KW)
def _half_down(v):
    """The float16 bits (in an int32's low half) nearest float32 ``v``."""
    b = f32_bits(v)
    sign = (b >> _I32(16)) & _I32(0x8000)
    a = b & _I32(0x7FFFFFFF)
    # normal: rebias the exponent, round the 13 dropped bits to nearest even
    normal = (a - _HALF_BIAS + _I32(0xFFF) + ((a >> _I32(13)) & _I32(1))) >> _I32(13)
    # subnormal (below 2**-14): the count of 2**-24 units, rounded by the add
    small = min(abs(v), np.float32(2.0**-14))
    sub = f32_bits(small + _HALF_MAGIC) - _HALF_MAGIC_BITS
    nan = _I32(0x7C00) | max((a >> _I32(13)) & _I32(0x3FF), _I32(1))
    r = (
        nan
        if a > _I32(0x7F800000)
        else (
            _I32(0x7C00)
            if a >= _I32(0x477FF000)  # 65520 and up: infinity
            else (sub if a < _I32(0x38800000) else normal)
        )
    )
    return r | sign


@njit(inline="always", **_KW)
def _brain_down(v):
    """The bfloat16 bits (in an int32's low half) nearest float32 ``v``."""
    b = f32_bits(v)
    rounded = (b + _I32(0x7FFF) + ((b >> _I32(16)) & _I32(1))) >> _I32(16)
    nan = ((b >> _I32(16)) & _I32(0x8000)) | _I32(0x7FC0)
    return nan if (b & _I32(0x7FFFFFFF)) > _I32(0x7F800000) else rounded


@njit(**_KW)
def _widen(src, dst, half):
    """``dst`` (float32) from the 16-bit patterns ``src``. The loops start at 0:
    from an index LLVM cannot prove non-negative, each element pays for
    negative-index wraparound and the loop stays scalar (4x slower)."""
    wide()
    if half:
        for i in range(src.size):
            dst[i] = _half_up(_I32(src[i]))
    else:
        for i in range(src.size):
            dst[i] = f32_from_bits(_I32(_I32(src[i]) << _I32(16)))


@njit(**_KW)
def _narrow(src, dst, half):
    """The 16-bit patterns ``dst`` nearest the float32 ``src``."""
    wide()
    if half:
        for i in range(src.size):
            dst[i] = np.uint16(_half_down(src[i]) & _I32(0xFFFF))
    else:
        for i in range(src.size):
            dst[i] = np.uint16(_brain_down(src[i]) & _I32(0xFFFF))


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
