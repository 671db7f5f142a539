"""softmax, log_softmax, logsumexp, the backward passes and the cross-entropy
(class-index and probability targets) on float16 and bfloat16 rows, converted
in cache or in registers.

Through the ``cast`` hook a 16-bit call widens the whole array into a float32
temporary, runs the float32 kernel over it and rounds a second temporary back:
three passes over memory and two float32 arrays of the input's size.

softmax and log_softmax go a block of rows (``TASK`` elements, in L2) at a
time: widened into a float32 scratch, the float32 serial driver run on it in
place, the block rounded into the output (logsumexp: the driver into a float32
row of results, rounded into the output's). One read and one write of 16-bit
data, and a scratch per task. The float32 driver is the one ``_ops`` picks for
rows of this width in cache, as every block is (``mode``: 0 a row at a time, 1
grouped, 2 short rows; ``_ops._mode16``); every mode computes the same bits.
softmax and log_softmax rows that the float32 path would split across threads
(a few rows wider than a block) are left to the cast path (``_ops`` declines
them).

The backward passes convert each element as they load and store it (below):
no scratch, the row read twice from cache.

Either way the results are bitwise the float32 kernel's results rounded, as the
cast path's are.

The blocks convert quietly (``_casts._widen_quiet``, ``_narrow_quiet``: with
F16C one instruction an element, no repair of a signalling NaN's bits):
every widened value is taken by arithmetic, which quiets a signalling NaN
anyway, and every value rounded is a result of arithmetic. The tests plant
signalling NaNs in every forward op's inputs and compare bits.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from . import _runtime

_runtime.ensure()  # cache locator before the first @njit(cache=True)

from . import _kernels as K  # noqa: E402
from ._casts import _narrow_quiet, _widen_quiet  # noqa: E402

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
def _widened(x, r0, r1, half, buf):
    """Rows ``[r0, r1)`` of 16-bit ``x`` widened into the front of ``buf``:
    ``(flat, blk)``, the float32 block flat and as ``(r1 - r0, C)`` rows."""
    c = x.shape[1]
    m = (r1 - r0) * c
    flat = buf[:m]
    _widen_quiet(x[r0:r1].reshape(m), flat, half)
    return flat, flat.reshape(r1 - r0, c)


@njit(inline="always", **_KW)
def _block(x, out, r0, r1, half, mode, log, buf):
    """Rows ``[r0, r1)``: widen into ``buf``, the float32 driver in place, round
    into ``out``. The block is read whole before any of it is written, so
    ``out`` may be ``x``."""
    flat, blk = _widened(x, r0, r1, half, buf)
    if log:
        _log_softmax32(blk, mode)
    else:
        _softmax32(blk, mode)
    _narrow_quiet(flat, out[r0:r1].reshape(flat.shape[0]), half)


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


@njit(**_KW)
def _logsumexp32(blk, res, mode):
    if mode == 0:
        K.logsumexp_ser(blk, res)
    elif mode == 1:
        K.logsumexp_grouped_ser(blk, res)
    else:
        K.logsumexp_short_ser(blk, res)


@njit(inline="always", **_KW)
def _lse_block(x, out, r0, r1, half, mode, buf, res):
    """Rows ``[r0, r1)`` of a logsumexp: widen into ``buf``, the float32
    driver into ``res``, round into ``out[r0:r1]``."""
    blk = _widened(x, r0, r1, half, buf)[1]
    rs = res[: r1 - r0]
    _logsumexp32(blk, rs, mode)
    _narrow_quiet(rs, out[r0:r1], half)


@njit(**_KW)
def lse16_ser(x, out, half, mode):
    """``out`` (``(rows,)``, 16-bit patterns as in :func:`rows16_ser`) the
    logsumexp of the rows of ``x``, one thread."""
    n, c = x.shape
    R = max(1, TASK // c)
    buf = np.empty(min(n, R) * c, np.float32)
    res = np.empty(min(n, R), np.float32)
    for r0 in range(0, n, R):
        _lse_block(x, out, r0, min(n, r0 + R), half, mode, buf, res)


@njit(parallel=True, **_KW)
def lse16_par(x, out, half, mode):
    n, c = x.shape
    R = K._task_rows(x)
    for t in prange((n + R - 1) // R):
        r0 = t * R
        r1 = min(n, r0 + R)
        buf = np.empty((r1 - r0) * c, np.float32)
        _lse_block(x, out, r0, r1, half, mode, buf, np.empty(r1 - r0, np.float32))


# ------------------------------------------------------- class-index cross-entropy
#
# The class-index cross-entropy's row losses, and its gradient, go a block of
# rows at a time as softmax's: widened into the scratch, the float32 serial
# driver run on it (the gradient over the block itself, as ``out=logits``
# does), the gradient rounded into ``g``. The float64 row losses are the
# float32 kernel's own. Where the cast path widened the whole logits and kept
# a float32 gradient beside the 16-bit one, this keeps a scratch per task.


@njit(**_KW)
def _ce32(blk, t, a, b, cw, gs, loss, mode, grad):
    if grad:
        if mode == 0:
            K.cross_entropy_grad_ser(blk, t, a, b, cw, gs, loss, blk)
        elif mode == 1:
            K.cross_entropy_grad_grouped_ser(blk, t, a, b, cw, gs, loss, blk)
        else:
            K.cross_entropy_grad_short_ser(blk, t, a, b, cw, gs, loss, blk)
    elif mode == 0:
        K.cross_entropy_ser(blk, t, a, b, cw, loss)
    elif mode == 1:
        K.cross_entropy_grouped_ser(blk, t, a, b, cw, loss)
    else:
        K.cross_entropy_short_ser(blk, t, a, b, cw, loss)


@njit(inline="always", **_KW)
def _ce_block(x, t, a, b, cw, gs, loss, g, r0, r1, half, mode, grad, buf):
    """Rows ``[r0, r1)``: widen into ``buf``, the float32 driver (its losses
    into ``loss[r0:r1]``, its gradient, where ``grad``, over ``buf``), the
    gradient rounded into ``g`` (which may be ``x``: the block is read whole
    first)."""
    flat, blk = _widened(x, r0, r1, half, buf)
    _ce32(blk, t[r0:r1], a[r0:r1], b[r0:r1], cw, gs, loss[r0:r1], mode, grad)
    if grad:
        _narrow_quiet(flat, g[r0:r1].reshape(flat.shape[0]), half)


@njit(**_KW)
def ce16_ser(x, t, a, b, cw, gs, loss, g, half, mode, grad):
    """The class-index cross-entropy of 16-bit rows ``x`` (patterns as in
    :func:`rows16_ser`; targets ``t``, the kernels' ``alpha`` ``a`` and
    ``beta`` ``b``, class weights ``cw``): float64 row losses into ``loss``
    and, where ``grad``, the gradient scaled by ``gs`` into ``g`` (ignored
    otherwise), one thread."""
    n, c = x.shape
    R = max(1, TASK // c)
    buf = np.empty(min(n, R) * c, np.float32)
    for r0 in range(0, n, R):
        r1 = min(n, r0 + R)
        _ce_block(x, t, a, b, cw, gs, loss, g, r0, r1, half, mode, grad, buf)


@njit(parallel=True, **_KW)
def ce16_par(x, t, a, b, cw, gs, loss, g, half, mode, grad):
    n, c = x.shape
    R = K._task_rows(x)
    for tk in prange((n + R - 1) // R):
        r0 = tk * R
        r1 = min(n, r0 + R)
        buf = np.empty((r1 - r0) * c, np.float32)
        _ce_block(x, t, a, b, cw, gs, loss, g, r0, r1, half, mode, grad, buf)


# ------------------------------------------------- probability-target cross-entropy
#
# The same, with the targets a block of rows too: 16-bit targets (the logits'
# dtype) widened into a second scratch, float32 ones (the core's own, or the
# user's) read where they are. The row losses are the float32 kernel's on the
# widened logits and targets, bitwise: the float32 path widens 16-bit targets
# exactly so. The gradient goes into a third scratch, not over the widened
# logits: into another array the float32 kernel stores each one-block row's
# exps as it sums them, one exp an element where over its input it takes two
# (the same bits either way).


def target_rows(t, r0, r1, half, tbuf):
    """Rows ``[r0, r1)`` of targets ``t`` as float32 ``(r1 - r0, C)`` rows:
    widened into ``tbuf`` where ``t`` holds 16-bit patterns (the logits'
    format, ``half``), else ``t``'s own rows."""
    raise NotImplementedError  # only callable from jitted code


@overload(target_rows, inline="always", jit_options=_KW)
def _target_rows_impl(t, r0, r1, half, tbuf):
    if t.dtype == types.float32:
        return lambda t, r0, r1, half, tbuf: t[r0:r1]
    return lambda t, r0, r1, half, tbuf: _widened(t, r0, r1, half, tbuf)[1]


def target_scratch(t, m):
    """A float32 scratch of ``m`` elements for :func:`target_rows`, none
    (empty) for float32 targets."""
    raise NotImplementedError  # only callable from jitted code


@overload(target_scratch, inline="always", jit_options=_KW)
def _target_scratch_impl(t, m):
    if t.dtype == types.float32:
        return lambda t, m: np.empty(0, np.float32)
    return lambda t, m: np.empty(m, np.float32)


@njit(**_KW)
def _cep32(blk, tb, eps, cw, gs, loss, gblk, mode, grad):
    if grad:
        if mode == 2:
            K.cross_entropy_prob_grad_short_ser(blk, tb, eps, cw, gs, loss, gblk)
        else:
            K.cross_entropy_prob_grad_ser(blk, tb, eps, cw, gs, loss, gblk)
    elif mode == 2:
        K.cross_entropy_prob_short_ser(blk, tb, eps, cw, loss)
    elif mode == 1:
        K.cross_entropy_prob_grouped_ser(blk, tb, eps, cw, loss)
    else:
        K.cross_entropy_prob_ser(blk, tb, eps, cw, loss)


@njit(inline="always", **_KW)
def _cep_block(x, t, eps, cw, gs, loss, g, r0, r1, half, mode, grad, bufs):
    """Rows ``[r0, r1)``, as :func:`_ce_block` with probability targets ``t``
    (16-bit patterns widened into the second of ``bufs``, or float32), the
    gradient into the third (one-block rows into another array take one exp
    an element, not two: ``_kernels._ce_prob_grad_stored``)."""
    buf, tbuf, gbuf = bufs
    flat, blk = _widened(x, r0, r1, half, buf)
    tb = target_rows(t, r0, r1, half, tbuf)
    gflat = gbuf[: flat.shape[0]] if grad else flat  # the loss alone: unused
    _cep32(blk, tb, eps, cw, gs, loss[r0:r1], gflat.reshape(blk.shape), mode, grad)
    if grad:
        _narrow_quiet(gflat, g[r0:r1].reshape(flat.shape[0]), half)


@njit(inline="always", **_KW)
def _cep_scratch(t, m, grad):
    """:func:`_cep_block`'s scratches for blocks of ``m`` elements."""
    return (
        np.empty(m, np.float32),
        target_scratch(t, m),
        np.empty(m if grad else 0, np.float32),
    )


@njit(**_KW)
def cep16_ser(x, t, eps, cw, gs, loss, g, half, mode, grad):
    """The probability-target cross-entropy of 16-bit rows ``x`` (patterns as
    in :func:`rows16_ser`; targets ``t`` of ``x``'s shape, its patterns or
    float32, label smoothing ``eps``, class weights ``cw``): float64 row
    losses into ``loss`` and, where ``grad``, the gradient scaled by ``gs``
    into ``g`` (ignored otherwise), one thread. ``mode``: the loss alone's
    float32 driver, 1 grouped, 0 a row at a time (the same bits); 2 the
    transposed tiles of narrow rows, with the gradient too."""
    n, c = x.shape
    R = max(1, TASK // c)
    bufs = _cep_scratch(t, min(n, R) * c, grad)
    for r0 in range(0, n, R):
        r1 = min(n, r0 + R)
        _cep_block(x, t, eps, cw, gs, loss, g, r0, r1, half, mode, grad, bufs)


@njit(parallel=True, **_KW)
def cep16_par(x, t, eps, cw, gs, loss, g, half, mode, grad):
    n, c = x.shape
    R = K._task_rows(x)
    for tk in prange((n + R - 1) // R):
        r0 = tk * R
        r1 = min(n, r0 + R)
        bufs = _cep_scratch(t, (r1 - r0) * c, grad)
        _cep_block(x, t, eps, cw, gs, loss, g, r0, r1, half, mode, grad, bufs)


# ------------------------------------------------------------ backward passes
#
# The backward passes run the float32 kernels themselves
# (``_kernels._softmax_backward_block``, ``_log_softmax_backward_block``) on
# the 16-bit rows: their loops widen each element as they load it and round
# each result as they store it (``_kernels.ld``, ``_kernels.st``), so a row's
# reductions read the 16-bit elements and its write loop writes them: one read
# of each input for the reduction, one for the write, one 16-bit write, no
# scratch. The same source, operations and flags as for float32 rows, so the
# same sums in the same order and results bitwise the float32 kernel's rounded.
# ``tests/test_casts.py`` checks that, and the reductions' bits on inputs whose
# float64 sums round (sums of products of 16-bit numbers of like size are
# exact in any order, so ordinary rows would not show a change of order).
#
# With F16C the float16 conversions are single instructions
# (``half_to_f32_quiet``, ``f32_to_half_quiet``): every value widened there is
# taken by arithmetic next, which quiets a signalling NaN anyway, and every
# value rounded is a result of arithmetic, never a signalling NaN. Against
# widening blocks into L2 scratches (the way softmax goes), two threads: float16
# 0.55-0.82 of the time at every shape measured; bfloat16 0.68-0.83 at 8192x1000
# and 64x32000, 0.73-0.97 at 65536x128, 0.88-0.99 at 512x64 and 256x128
# (docs/benchmarks.md, "16-bit backward passes converting in registers").
# float16's conversion to float64, one instruction, is the dot product's cost:
# 0.3 ns an element against 0.1 for float32's and 0.17 for bfloat16's shift.
#
# float16 rows come as uint16 patterns and bfloat16 rows as int16 ones, so that
# the conversion is chosen when the loop is compiled, not in it.


@njit(inline="always", **_KW)
def _back_block(g, p, out, r0, r1, log):
    if log:
        K._log_softmax_backward_block(g, p, out, r0, r1)
    else:
        K._softmax_backward_block(g, p, out, r0, r1)


@njit(**_KW)
def _back_rows(g, p, out, r0, r1, log, alias):
    """Rows ``r0:r1``. Where ``out`` is ``g`` or ``p`` (``alias``), a few rows
    at a time into a scratch of ``BACKWARD_TASK`` elements and copied: written
    over an input, the write loops take their scalar form (LLVM's overlap check
    fails). softmax_backward over its input, one thread, 32768 elements: 2.3-3.5x
    the time of a distinct output directly, 1.03-1.12x through the scratch."""
    if not alias:
        _back_block(g, p, out, r0, r1, log)
        return
    c = out.shape[1]
    k = max(1, K.BACKWARD_TASK // c)
    buf = np.empty((min(k, r1 - r0), c), out.dtype)
    for a in range(r0, r1, k):
        b = min(r1, a + k)
        _back_block(g[a:b], p[a:b], buf, 0, b - a, log)
        m = (b - a) * c
        src = buf.reshape(buf.size)
        dst = out[a:b].reshape(m)
        for i in range(m):  # numba's 2-D slice assignment: 9 us of 32768 elements
            dst[i] = src[i]


@njit(inline="always", **_KW)
def _overlaps(a, b):
    """Whether two C-contiguous arrays of one size share memory."""
    a0 = a.ctypes.data
    b0 = b.ctypes.data
    return a0 < b0 + b.nbytes and b0 < a0 + a.nbytes


@njit(**_KW)
def back16_ser(g, p, out, half, log):
    """``out`` the softmax (log_softmax where ``log``) backward pass of
    incoming gradient ``g`` and saved output ``p``, 16-bit patterns as in
    :func:`rows16_ser` (``out`` may be ``g`` or ``p``), one thread."""
    g, p, out = K.borrow(g), K.borrow(p), K.borrow(out)  # no counts per row
    alias = _overlaps(out, g) or _overlaps(out, p)
    n = g.shape[0]
    if half:
        _back_rows(g, p, out, 0, n, log, alias)
    else:
        i16 = np.int16
        _back_rows(g.view(i16), p.view(i16), out.view(i16), 0, n, log, alias)


@njit(parallel=True, **_KW)
def back16_par(g, p, out, half, log):
    alias = _overlaps(out, g) or _overlaps(out, p)
    n, c = g.shape
    R = max(1, K.BACKWARD_TASK // c)
    i16 = np.int16
    for t in prange((n + R - 1) // R):
        r0 = t * R
        r1 = min(n, r0 + R)
        if half:
            _back_rows(g, p, out, r0, r1, log, alias)
        else:
            _back_rows(g.view(i16), p.view(i16), out.view(i16), r0, r1, log, alias)
