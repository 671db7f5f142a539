"""softmax and log_softmax of float16 and bfloat16 rows, converted in cache.

Through the ``cast`` hook a 16-bit call widens the whole array into a float32
temporary, runs the float32 kernel over it and rounds a second temporary back:
three passes over memory and two float32 arrays of the input's size. Here a
block of rows (``TASK`` elements, in L2) is widened into a float32 scratch, the
float32 serial driver runs on it in place, and the block is rounded into the
output: one read and one write of 16-bit data, and a scratch per task.

The float32 driver is the one ``_ops`` picks for float32 rows of this width
(``mode``: 0 a row at a time, 1 grouped, 2 short rows); every mode computes the
same bits, so results are bitwise the float32 kernel's results rounded, as the
cast path's are. Rows that the float32 path would split across threads (a few
rows wider than a block) are left to the cast path (``_ops`` declines them).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import _runtime

_runtime.ensure()  # cache locator before the first @njit(cache=True)

from . import _kernels as K  # noqa: E402
from ._casts import _narrow, _widen  # noqa: E402

TASK = K.TASK
"""Elements per block of rows (a float32 scratch of 128 KiB)."""

_KW = {"cache": True, "nogil": True, "error_model": "numpy"}


@njit(**_KW)
def _softmax32(blk, mode):
    if mode == 0:
        K.softmax_ser(blk, blk)
    elif mode == 1:
        K.softmax_grouped_ser(blk, blk)
    else:
        K.softmax_short_ser(blk, blk)


@njit(**_KW)
def _log_softmax32(blk, mode):
    if mode == 0:
        K.log_softmax_ser(blk, blk)
    elif mode == 1:
        K.log_softmax_grouped_ser(blk, blk)
    else:
        K.log_softmax_short_ser(blk, blk)


@njit(inline="always", **_KW)
def _block(x, out, r0, r1, half, mode, log, buf):
    """Rows ``[r0, r1)``: widen into ``buf``, the float32 driver in place, round
    into ``out``. The block is read whole before any of it is written, so
    ``out`` may be ``x``."""
    c = x.shape[1]
    m = (r1 - r0) * c
    flat = buf[:m]
    _widen(x[r0:r1].reshape(m), flat, half)
    blk = flat.reshape(r1 - r0, c)
    if log:
        _log_softmax32(blk, mode)
    else:
        _softmax32(blk, mode)
    _narrow(flat, out[r0:r1].reshape(m), half)


@njit(inline="always", **_KW)
def _block_rows(c):
    return max(1, TASK // c)


@njit(**_KW)
def rows16_ser(x, out, half, mode, log):
    """``out`` (uint16 patterns of float16 where ``half``, else bfloat16) the
    softmax (log_softmax where ``log``) of the rows of ``x``, one thread."""
    n, c = x.shape
    R = _block_rows(c)
    buf = np.empty(min(n, R) * c, np.float32)
    for r0 in range(0, n, R):
        _block(x, out, r0, min(n, r0 + R), half, mode, log, buf)


@njit(parallel=True, **_KW)
def rows16_par(x, out, half, mode, log):
    n, c = x.shape
    R = max(1, min(_block_rows(c), (n + K.MIN_TASKS - 1) // K.MIN_TASKS))
    for t in prange((n + R - 1) // R):
        r0 = t * R
        r1 = min(n, r0 + R)
        _block(x, out, r0, r1, half, mode, log, np.empty((r1 - r0) * c, np.float32))
