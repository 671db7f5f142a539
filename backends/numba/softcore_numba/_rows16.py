"""softmax, log_softmax and their backward passes on float16 and bfloat16 rows,
converted in cache.

Through the ``cast`` hook a 16-bit call widens the whole array into a float32
temporary, runs the float32 kernel over it and rounds a second temporary back:
three passes over memory and two float32 arrays of the input's size. Here a
block of rows (``TASK`` elements, in L2) is widened into a float32 scratch, the
float32 serial driver runs on it in place, and the block is rounded into the
output: one read and one write of 16-bit data, and a scratch per task.

The float32 driver is the one ``_ops`` picks for float32 rows of this width
(``mode``: 0 a row at a time, 1 grouped, 2 short rows; the backward passes have
one); every mode computes the same bits, so results are bitwise the float32
kernel's results rounded, as the cast path's are. softmax and log_softmax rows
that the float32 path would split across threads (a few rows wider than a
block) are left to the cast path (``_ops`` declines them).
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


@njit(**_KW)
def rows16_ser(x, out, half, mode, log):
    """``out`` (uint16 patterns of float16 where ``half``, else bfloat16) the
    softmax (log_softmax where ``log``) of the rows of ``x``, one thread."""
    n, c = x.shape
    R = max(1, TASK // c)
    buf = np.empty(min(n, R) * c, np.float32)
    for r0 in range(0, n, R):
        _block(x, out, r0, min(n, r0 + R), half, mode, log, buf)


@njit(parallel=True, **_KW)
def rows16_par(x, out, half, mode, log):
    n, c = x.shape
    R = K._task_rows(x)
    for t in prange((n + R - 1) // R):
        r0 = t * R
        r1 = min(n, r0 + R)
        _block(x, out, r0, r1, half, mode, log, np.empty((r1 - r0) * c, np.float32))


BACK_TASK = TASK // 2
"""Elements per block of a backward pass: three float32 scratches of 64 KiB
(the incoming gradient, the saved output, the result: written over an input,
the float32 kernels' loops lose their vector form, LLVM's overlap check
failing)."""


@njit(**_KW)
def _backward32(gb, pb, ob, log):
    if log:
        K.log_softmax_backward_ser(gb, pb, ob)
    else:
        K.softmax_backward_ser(gb, pb, ob)


@njit(inline="always", **_KW)
def _back_block(g, p, out, r0, r1, half, log, buf):
    """Rows ``[r0, r1)`` of a backward pass: both inputs widened into ``buf``'s
    first two thirds, the float32 pass into its last, rounded into ``out``
    (which may be ``g`` or ``p``: the block is read before it is written)."""
    c = g.shape[1]
    m = (r1 - r0) * c
    k = buf.shape[0] // 3
    fg = buf[:m]
    fp = buf[k : k + m]
    fo = buf[2 * k : 2 * k + m]
    _widen(g[r0:r1].reshape(m), fg, half)
    _widen(p[r0:r1].reshape(m), fp, half)
    shape = (r1 - r0, c)
    _backward32(fg.reshape(shape), fp.reshape(shape), fo.reshape(shape), log)
    _narrow(fo, out[r0:r1].reshape(m), half)


@njit(**_KW)
def back16_ser(g, p, out, half, log):
    """``out`` the softmax (log_softmax where ``log``) backward pass of
    incoming gradient ``g`` and saved output ``p``, 16-bit patterns as in
    :func:`rows16_ser`, one thread."""
    n, c = g.shape
    R = max(1, BACK_TASK // c)
    buf = np.empty(3 * min(n, R) * c, np.float32)
    for r0 in range(0, n, R):
        _back_block(g, p, out, r0, min(n, r0 + R), half, log, buf)


@njit(parallel=True, **_KW)
def back16_par(g, p, out, half, log):
    n, c = g.shape
    R = K._task_rows(g, BACK_TASK)
    for t in prange((n + R - 1) // R):
        r0 = t * R
        r1 = min(n, r0 + R)
        buf = np.empty(3 * (r1 - r0) * c, np.float32)
        _back_block(g, p, out, r0, r1, half, log, buf)
