"""The backend's kernels: pick a mode by shape, then run the jitted driver.

Importing this module imports numba (and sets up the runtime first). The mode
depends on the shape alone, never on the thread count, so results are bitwise
equal for any number of threads:

* rows of fewer than ``SHORT_C`` classes take the short-row kernels (tiles of rows,
  one vectorised exp per tile) where the op has them, serial or parallel over
  tiles by the rule below, but for float32 softmax rows of
  ``SOFTMAX_SHORT_GROUPED_C`` classes or more, float32 log_softmax and
  logsumexp rows of ``LOG_SHORT_GROUPED_C`` classes or more whose width is a
  multiple of ``LOG_SHORT_GROUPED_STEP``, and float32 class-index
  cross-entropy rows of ``CE_SHORT_GROUPED_C`` classes or more, which take the
  grouped drivers;
* rows of ``SHORT_C`` classes or more and at most ``SOFTMAX_GROUP_ROW_BYTES``
  (softmax), or ``SMALL_GROUP_ROW_BYTES`` in a serial call (softmax and the
  class-index cross-entropy's loss, through log_softmax's grouped statistics)
  or in a call of at most ``CE_GROUP_MAX_BYTES`` (the class-index
  cross-entropy's gradient, and its float32 loss, also with probability
  targets), take the grouped drivers
  (each pass over a group of rows in one function; the same bits); so do
  log_softmax rows of at most ``LOG_SOFTMAX_GROUP_ROW_BYTES``, or
  ``LOG_SOFTMAX_SMALL_GROUP_ROW_BYTES`` in a serial call, and logsumexp rows of
  at most ``LOGSUMEXP_GROUP_ROW_BYTES``, or ``SMALL_GROUP_ROW_BYTES`` in a
  serial call;
* serial below ``SERIAL_MAX`` elements (no thread launch: small calls stay
  cheap), ``LOG_SOFTMAX_BACKWARD_SERIAL_MAX`` for log_softmax_backward,
  ``GROUPED_SERIAL_MAX`` for grouped log_softmax calls (and grouped softmax
  and logsumexp calls of ``GROUPED_THREAD_ROWS`` rows or more);
* split over row blocks when there are fewer than ``SPLIT_ROWS`` rows wider than
  one block (a few very wide rows still use every thread);
* parallel over rows otherwise.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from softcore._validate import is_bfloat16

from . import _runtime

_runtime.ensure()

from . import _casts as C  # noqa: E402
from . import _kernels as K  # noqa: E402
from . import _rows16 as R  # noqa: E402

launch = _runtime.launch

SERIAL_MAX = int(os.environ.get("SOFTCORE_NUMBA_SERIAL_MAX", 1 << 15))
SPLIT_ROWS = 16
LOG_SOFTMAX_BACKWARD_SERIAL_MAX = SERIAL_MAX // 2
"""Its exp makes log_softmax_backward's element dearer than the others': two
threads pay for their launch from about half the size (two threads against
one at 512x64: float32 7.4-7.9 against 8.1-8.7 us, float64 15.9 against 20.5;
at 384x64 float32 about even, float64 11.0 against 15.5)."""
GROUPED_SERIAL_MAX = SERIAL_MAX * 3 // 4
"""log_softmax calls that take the grouped drivers thread above three
quarters of ``SERIAL_MAX`` elements (whether they are grouped still counts to
``SERIAL_MAX``), in at least ``K.MIN_TASKS`` tasks; so do softmax and
logsumexp calls of ``GROUPED_THREAD_ROWS`` rows or more. Such calls of 32768
elements went on one thread. Threaded ÷ serial, 2 threads, medians of 5
interleaved rounds: log_softmax 0.79 (512x64 float32), 0.84 (448x64), 0.80
(256x128), 0.79 (512x64 float64), 0.65 (448x64 float64), 0.64 (256x128
float64), 0.82 (64x512 float64), 0.99-1.02 at 128x256 and 32x1000 float32;
softmax and logsumexp 0.84 (512x64 float32), 0.64-0.66 (float64), but 1.17
and 1.04 at 256x128 float32; at 320x64 float32 (20480 elements) all three
lost (1.05-1.20)."""
GROUPED_THREAD_ROWS = 512
BLOCK = K.BLOCK


SHORT_C = K.SHORT_C


def _drivers(op: str, split: bool = False, short: bool = False) -> tuple:
    """``op``'s drivers as ``(ser, split, par, short_ser, short_par)``, the
    parallel ones bound to :func:`launch`: ``split`` None where the op has no
    such mode, the short pair the row pair where it has no short mode. Looked
    up once, so a small call pays no lookups."""

    def get(suffix):
        return getattr(K, f"{op}_{suffix}")

    ser, par = get("ser"), functools.partial(launch, get("par"))
    return (
        ser,
        functools.partial(launch, get("split")) if split else None,
        par,
        get("short_ser") if short else ser,
        functools.partial(launch, get("short_par")) if short else par,
    )


def _pick(drivers, x, serial_max=None):
    """The driver of the mode ``x``'s shape picks, by the rule of the module's
    docstring (``drivers`` from :func:`_drivers`). The serial modes are tested
    first and the caller calls the driver with its own arguments: on a small
    call each Python step shows (a ``*args`` call costs ~80 ns more).
    ``serial_max`` stands for ``SERIAL_MAX`` where an op's differs."""
    ser, split, par, short_ser, short_par = drivers
    n, c = x.shape
    if n * c <= (SERIAL_MAX if serial_max is None else serial_max):
        return short_ser if c < SHORT_C else ser
    if c < SHORT_C:
        return short_par
    if split is not None and c > BLOCK and n < SPLIT_ROWS:
        return split
    return par


_SOFTMAX = _drivers("softmax", split=True, short=True)
_SOFTMAX_GROUPED = _drivers("softmax_grouped")
SOFTMAX_GROUP_ROW_BYTES = K.SOFTMAX_GROUP_ROW_BYTES
SMALL_GROUP_ROW_BYTES = K.SMALL_GROUP_ROW_BYTES
_LOG_SOFTMAX = _drivers("log_softmax", split=True, short=True)
_LOG_SOFTMAX_GROUPED = _drivers("log_softmax_grouped")
LOG_SOFTMAX_GROUP_ROW_BYTES = K.LOG_SOFTMAX_GROUP_ROW_BYTES
LOG_SOFTMAX_SMALL_GROUP_ROW_BYTES = K.LOG_SOFTMAX_SMALL_GROUP_ROW_BYTES
_LOGSUMEXP = _drivers("logsumexp", split=True, short=True)
_LOGSUMEXP_GROUPED = _drivers("logsumexp_grouped")
LOGSUMEXP_GROUP_ROW_BYTES = K.LOGSUMEXP_GROUP_ROW_BYTES
_SOFTMAX_BACKWARD = _drivers("softmax_backward")
_LOG_SOFTMAX_BACKWARD = _drivers("log_softmax_backward")
_CE = _drivers("cross_entropy", short=True)
_CE_GRAD = _drivers("cross_entropy_grad", split=True, short=True)
_CE_GRAD_GROUPED = _drivers("cross_entropy_grad_grouped")
_CE_GROUPED = _drivers("cross_entropy_grouped")
CE_GROUP_MAX_BYTES = K.CE_GROUP_MAX_BYTES
_CE_PROB = _drivers("cross_entropy_prob")
_CE_PROB_GROUPED = _drivers("cross_entropy_prob_grouped")
_CE_PROB_GRAD = _drivers("cross_entropy_prob_grad")
_CE_PROB_SHORT = _drivers("cross_entropy_prob_short")
_CE_PROB_GRAD_SHORT = _drivers("cross_entropy_prob_grad_short")
NARROW_PROB_C = K.NARROW_PROB_C


_LSE_WEIGHTED = _drivers("logsumexp_weighted")
_LSE_WEIGHTED_SHORT = _drivers("logsumexp_weighted_short")
WEIGHTED_SHORT_C = {4: K.WEIGHTED_SHORT_C32, 8: K.WEIGHTED_SHORT_C64}


def logsumexp_weighted_rows(x, b, out, sign):
    """The optional hook: ``log|sum(b exp(x))|`` of each row into ``out``, its
    sign into ``sign`` (serial to ``SERIAL_MAX`` elements, parallel above);
    ``b`` of shape ``(1, C)``: the same factors for every row."""
    short = x.shape[1] < WEIGHTED_SHORT_C[x.itemsize]  # transposed tiles
    _pick(_LSE_WEIGHTED_SHORT if short else _LSE_WEIGHTED, x)(x, b, out, sign)


def _grouped(x, limit, small_limit=SMALL_GROUP_ROW_BYTES) -> bool:
    """Whether ``x``'s rows take the grouped drivers: rows of ``SHORT_C``
    classes or more and at most ``limit`` bytes, or ``small_limit`` in a serial
    call (the larger)."""
    n, c = x.shape
    if c < SHORT_C:
        return False
    b = c * x.itemsize
    return b <= limit or (b <= small_limit and n * c <= SERIAL_MAX)


def _grouped_serial_max(x) -> int:
    """The serial limit of a grouped softmax or logsumexp call."""
    return GROUPED_SERIAL_MAX if x.shape[0] >= GROUPED_THREAD_ROWS else SERIAL_MAX


SOFTMAX_SHORT_GROUPED_C = K.SOFTMAX_SHORT_GROUPED_C


def _short_softmax_grouped(c) -> bool:
    """Whether float32 softmax rows of ``c`` classes, fewer than ``SHORT_C``,
    take the grouped drivers (the 16-bit blocks follow: :func:`_mode16`)."""
    return SOFTMAX_SHORT_GROUPED_C <= c < SHORT_C


LOG_SHORT_GROUPED_C = K.LOG_SHORT_GROUPED_C
LOG_SHORT_GROUPED_STEP = K.LOG_SHORT_GROUPED_STEP


def _short_log_grouped(c) -> bool:
    """Whether float32 log_softmax and logsumexp rows of ``c`` classes, fewer
    than ``SHORT_C``, take the grouped drivers (the 16-bit blocks follow)."""
    return LOG_SHORT_GROUPED_C <= c < SHORT_C and c % LOG_SHORT_GROUPED_STEP == 0


def _log_grouped(x, limit, small_limit=SMALL_GROUP_ROW_BYTES) -> bool:
    """Whether ``x``'s log_softmax or logsumexp rows take the grouped drivers:
    float32 rows by :func:`_short_log_grouped` below ``SHORT_C``, and by
    :func:`_grouped` from there."""
    c = x.shape[1]
    if c < SHORT_C:
        return x.itemsize == 4 and _short_log_grouped(c)
    return _grouped(x, limit, small_limit)


def _softmax_grouped(x) -> bool:
    """Whether ``x``'s softmax rows take the grouped drivers: float32 rows from
    ``SOFTMAX_SHORT_GROUPED_C`` classes to ``SHORT_C``, and by
    :func:`_grouped` from there."""
    c = x.shape[1]
    if c < SHORT_C:
        return x.itemsize == 4 and _short_softmax_grouped(c)
    return _grouped(x, SOFTMAX_GROUP_ROW_BYTES)


def softmax_rows(x, out):
    if _softmax_grouped(x):
        _pick(_SOFTMAX_GROUPED, x, _grouped_serial_max(x))(x, out)
    else:
        _pick(_SOFTMAX, x)(x, out)


def log_softmax_rows(x, out):
    if _log_grouped(x, LOG_SOFTMAX_GROUP_ROW_BYTES, LOG_SOFTMAX_SMALL_GROUP_ROW_BYTES):
        _pick(_LOG_SOFTMAX_GROUPED, x, GROUPED_SERIAL_MAX)(x, out)
    else:
        _pick(_LOG_SOFTMAX, x)(x, out)


def logsumexp_rows(x, out):
    if _log_grouped(x, LOGSUMEXP_GROUP_ROW_BYTES):
        _pick(_LOGSUMEXP_GROUPED, x, _grouped_serial_max(x))(x, out)
    else:
        _pick(_LOGSUMEXP, x)(x, out)


def _jacobian(x, out, log):
    n, c = x.shape
    if n * c * c <= SERIAL_MAX:
        K.jacobian_ser(x, out, log)
    else:
        launch(K.jacobian_par, x, out, log)


def softmax_jacobian_rows(x, out):
    _jacobian(x, out, False)


def log_softmax_jacobian_rows(x, out):
    _jacobian(x, out, True)


def softmax_backward_rows(grad, probs, out):
    _pick(_SOFTMAX_BACKWARD, grad)(grad, probs, out)


def log_softmax_backward_rows(grad, log_probs, out):
    _pick(_LOG_SOFTMAX_BACKWARD, grad, LOG_SOFTMAX_BACKWARD_SERIAL_MAX)(
        grad, log_probs, out
    )


CE_SHORT_GROUPED_C = K.CE_SHORT_GROUPED_C


def _short_ce_grouped(c) -> bool:
    """Whether float32 class-index cross-entropy rows of ``c`` classes, fewer
    than ``SHORT_C``, take the grouped drivers, in a call of any size (the
    16-bit blocks follow: :func:`_ce_mode16`)."""
    return CE_SHORT_GROUPED_C <= c < SHORT_C


def _f32_loss_grouped(x) -> bool:
    """Whether a float32 loss alone takes the grouped statistics: rows to
    ``SMALL_GROUP_ROW_BYTES`` in calls to ``CE_GROUP_MAX_BYTES`` (in cache)."""
    return (
        x.itemsize == 4
        and x.nbytes <= CE_GROUP_MAX_BYTES
        and _grouped(x, SMALL_GROUP_ROW_BYTES)
    )


def cross_entropy_rows(x, target, alpha, beta, class_weight, loss_out):
    short = x.itemsize == 4 and _short_ce_grouped(x.shape[1])
    grouped = short or _grouped(x, 0) or _f32_loss_grouped(x)
    d = _CE_GROUPED if grouped else _CE
    _pick(d, x)(x, target, alpha, beta, class_weight, loss_out)


def cross_entropy_grad_rows(
    x, target, alpha, beta, class_weight, grad_scale, loss_out, grad_out
):
    short = x.itemsize == 4 and _short_ce_grouped(x.shape[1])
    grouped = short or (
        x.nbytes <= CE_GROUP_MAX_BYTES and _grouped(x, SMALL_GROUP_ROW_BYTES)
    )
    d = _CE_GRAD_GROUPED if grouped else _CE_GRAD
    _pick(d, x)(
        x,
        target,
        alpha,
        beta,
        class_weight,
        float(grad_scale),
        loss_out,
        grad_out,
    )


def _prob_loss_grouped(x) -> bool:
    """Whether a probability-target loss alone takes the grouped statistics
    (the same bits as a row at a time): rows of fewer than ``SHORT_C``
    classes, float32 in a call of any size and float64 to
    ``CE_GROUP_MAX_BYTES``; wider rows as :func:`_f32_loss_grouped`. Short
    rows a row at a time cost 30-60 ns each; grouped, one thread, 512 rows
    of 8-63 classes in cache took 0.58-0.86 of the time in float32 and
    0.84-0.96 in float64, and two threads at 65536-262144 rows of 10-56
    float32 classes 0.73-0.92 (float64 out of cache: 0.93-1.11). Rows to
    ``NARROW_PROB_C`` classes take the transposed tiles before this rule
    (:func:`_prob_narrow`): they sum in another order (not the grouped
    statistics' bits once a row's exps span more than 2^29, a range of about
    20, where the float64 sum rounds), so the gradient's kernel takes them
    too."""
    if x.shape[1] < SHORT_C:
        return x.itemsize == 4 or x.nbytes <= CE_GROUP_MAX_BYTES
    return _f32_loss_grouped(x)


def _prob_narrow(c) -> bool:
    """Whether probability-target rows of ``c`` classes take the transposed
    tiles, the loss alone and with its gradient alike (the same loss bits)."""
    return 0 < c <= NARROW_PROB_C


def cross_entropy_prob_rows(x, target, smoothing, class_weight, loss_out):
    if _prob_narrow(x.shape[1]):
        d = _CE_PROB_SHORT
    elif _prob_loss_grouped(x):
        d = _CE_PROB_GROUPED
    else:
        d = _CE_PROB
    _pick(d, x)(x, target, float(smoothing), class_weight, loss_out)


def cross_entropy_prob_grad_rows(
    x, target, smoothing, class_weight, grad_scale, loss_out, grad_out
):
    d = _CE_PROB_GRAD_SHORT if _prob_narrow(x.shape[1]) else _CE_PROB_GRAD
    _pick(d, x)(
        x,
        target,
        float(smoothing),
        class_weight,
        float(grad_scale),
        loss_out,
        grad_out,
    )


_FUSED_MODES = ("short", "grouped", "rows")
_FUSED_LOSS = tuple(getattr(K, f"cross_entropy_index_sum_{m}") for m in _FUSED_MODES)
_FUSED_GRAD = tuple(
    getattr(K, f"cross_entropy_index_grad_sum_{m}") for m in _FUSED_MODES
)


def _fused_mode(x) -> int:
    """The serial row driver of a small class-index cross-entropy, as an index
    into ``_FUSED_MODES``, by the rule of :func:`cross_entropy_rows` and
    :func:`cross_entropy_grad_rows` for a serial call (which gives the same
    bits): the short rows', grouped for float32 rows of ``CE_SHORT_GROUPED_C``
    classes and more; from ``SHORT_C`` classes, the grouped one where
    :func:`_grouped` takes a serial call, else a row at a time. One entry point
    per driver, so that a first call compiles only the driver it runs."""
    c = x.shape[1]
    if c < SHORT_C:
        return 1 if x.itemsize == 4 and _short_ce_grouped(c) else 0
    return 1 if _grouped(x, 0) else 2


def cross_entropy_index_sum(x, target, class_weight, ignore_index, smoothing):
    """The optional fused small call, the core's plan, the row losses and their
    sum in one jitted call: ``(bad, total, norm)`` (see the kernels), or None for
    a batch large enough to thread, which the core's general path runs."""
    n, c = x.shape
    if n * c > SERIAL_MAX:
        return None
    fused = _FUSED_LOSS[_fused_mode(x)]
    return fused(x, target, class_weight, int(ignore_index), float(smoothing))


def cross_entropy_index_grad_sum(
    x, target, class_weight, ignore_index, smoothing, mean, grad_out
):
    """The optional fused small call with its gradient: as
    :func:`cross_entropy_index_sum`, the gradient of the mean (``mean``) or the
    sum written into ``grad_out`` (``x`` itself allowed), nothing written for a
    bad target; None, nothing written, for a batch large enough to thread."""
    n, c = x.shape
    if n * c > SERIAL_MAX:
        return None
    fused = _FUSED_GRAD[_fused_mode(x)]
    return fused(
        x, target, class_weight, int(ignore_index), float(smoothing), bool(mean),
        grad_out,
    )  # fmt: skip


_F32_TYPE = np.dtype(np.float32)
_U16 = np.dtype(np.uint16)


def _sixteen_bit(dt) -> bool | None:
    """True for float16, False for bfloat16, None for any other dtype (a
    16-bit one in the other byte order among them)."""
    if dt.itemsize != 2 or not dt.isnative:
        return None
    if dt.kind == "f":
        return True
    return False if is_bfloat16(dt) else None


def cast(src, dst) -> bool:
    """The optional ``cast`` hook: ``dst[...] = src`` converted between float32
    and float16 or bfloat16 (either way), both C-contiguous and of one shape, in
    the bits NumPy's (float16) and ml_dtypes' (bfloat16) casts give (see
    ``_casts``); False, writing nothing, for any other pair of dtypes."""
    if src.shape != dst.shape or not (
        src.flags.c_contiguous and dst.flags.c_contiguous
    ):
        return False
    if dst.dtype == _F32_TYPE:
        half = _sixteen_bit(src.dtype)
        if half is None:
            return False
        s = src.reshape(-1).view(_U16)
        d = dst.reshape(-1)
        if s.size <= C.SERIAL_MAX:
            C.widen_ser(s, d, half)
        else:
            launch(C.widen_par, s, d, half)
        return True
    if src.dtype == _F32_TYPE:
        half = _sixteen_bit(dst.dtype)
        if half is None:
            return False
        s = src.reshape(-1)
        d = dst.reshape(-1).view(_U16)
        if s.size <= C.SERIAL_MAX:
            C.narrow_ser(s, d, half)
        else:
            launch(C.narrow_par, s, d, half)
        return True
    return False


_ROWS16_MAX_C = 1 << 22
"""Widest 16-bit softmax or log_softmax row taken whole (a float32 scratch of
16 MiB; the backward passes have none)."""


ROWS16_SOFTMAX_GROUP_ROW_BYTES = 2048
"""16-bit softmax rows of ``SHORT_C`` classes to this many float32 bytes (512
classes) run the grouped float32 driver on their blocks, which are in cache
whatever the call's size (``_rows16.TASK`` elements); log_softmax rows to
``LOG_SOFTMAX_SMALL_GROUP_ROW_BYTES`` (1024 classes), float32's rule for calls
in cache. Grouped time over a row at a time, float16, two threads, medians of 9
interleaved rounds: softmax 0.59 at 128 classes, 0.78 at 256, 0.90 at 512, 0.99
at 1000, 1.01 at 4000; log_softmax 0.58, 0.75, 0.87, 0.93 and 1.01. (The
float32 rule for the whole call's size, which these rows followed before, ran
65536x128 a row at a time.)"""


LSE16_GROUP_ROW_BYTES = 1024
"""16-bit logsumexp rows of ``SHORT_C`` classes to this many float32 bytes (256
classes) run the grouped float32 driver on their blocks (in cache, as for
softmax). Grouped time over a row at a time, float16, two threads, medians of 7
interleaved rounds: 0.79 at 128 classes, 0.93 at 256, 1.00 at 512, 1.07 at
1000, 1.04 at 4000."""


def _block_mode16(c, limit) -> int:
    """The float32 serial driver 16-bit rows of ``c`` classes run on each
    block: 2 short rows below ``SHORT_C``, 1 grouped to ``limit`` float32
    bytes a row, 0 a row at a time beyond (modes 0 and 1 compute the same
    bits, 2 others, as float32 calls choose them by ``c``)."""
    if c < SHORT_C:
        return 2
    return 1 if 4 * c <= limit else 0


def _lse_mode16(c) -> int:
    """:func:`_block_mode16` for logsumexp: grouped to ``LSE16_GROUP_ROW_BYTES``,
    and short rows grouped where float32's are."""
    if _short_log_grouped(c):
        return 1
    return _block_mode16(c, LSE16_GROUP_ROW_BYTES)


def _mode16(c, log) -> int:
    """:func:`_block_mode16` for softmax (log_softmax where ``log``): grouped
    to ``ROWS16_SOFTMAX_GROUP_ROW_BYTES`` (``LOG_SOFTMAX_SMALL_GROUP_ROW_BYTES``),
    and short rows grouped where float32's are."""
    if _short_log_grouped(c) if log else _short_softmax_grouped(c):
        return 1
    limit = LOG_SOFTMAX_SMALL_GROUP_ROW_BYTES if log else ROWS16_SOFTMAX_GROUP_ROW_BYTES
    return _block_mode16(c, limit)


def _ce_mode16(c) -> int:
    """:func:`_block_mode16` for the class-index cross-entropy (its loss alone
    and with its gradient): float32's rule for calls in cache, grouped rows to
    ``SMALL_GROUP_ROW_BYTES`` (``CE_GROUP_MAX_BYTES``), and short rows from
    ``CE_SHORT_GROUPED_C`` classes."""
    if _short_ce_grouped(c):
        return 1
    return _block_mode16(c, SMALL_GROUP_ROW_BYTES)


_CE16 = {  # kernel: (probability targets, with the gradient)
    "cross_entropy_rows": (False, False),
    "cross_entropy_grad_rows": (False, True),
    "cross_entropy_prob_rows": (True, False),
    "cross_entropy_prob_grad_rows": (True, True),
}
_NO_GRAD16 = np.empty((0, 0), np.uint16)  # the loss alone's unused gradient


def _rows_of(a, n) -> bool:
    """Whether ``a`` is a C-contiguous NumPy vector of ``n`` entries."""
    return isinstance(a, np.ndarray) and a.shape == (n,) and a.flags.c_contiguous


def _cep_mode16(c) -> int:
    """The float32 driver of a probability-target loss alone on 16-bit
    blocks: 1 grouped (rows to ``SMALL_GROUP_ROW_BYTES`` float32 bytes,
    float32's rule for calls in cache: :func:`_prob_loss_grouped`), else 0 a
    row at a time: the same bits; 2 the transposed tiles of rows to
    ``NARROW_PROB_C`` classes, with its gradient too (which has one driver
    otherwise)."""
    if _prob_narrow(c):
        return 2
    return 1 if 4 * c <= SMALL_GROUP_ROW_BYTES else 0


def _cross_entropy16(kernel, args, out) -> bool:
    """:func:`low_precision_rows` for the cross-entropy, with the float32
    methods' arguments but ``x`` (and the gradient) 16-bit:
    ``cross_entropy_rows`` with ``args`` ``(x, target, alpha, beta,
    class_weight)`` and ``out`` the float64 row losses, or
    ``cross_entropy_grad_rows`` with ``args`` ``(x, target, alpha, beta,
    class_weight, grad_scale, loss_out)`` and ``out`` the 16-bit gradient;
    ``cross_entropy_prob_rows`` with ``(x, target, smoothing, class_weight)``
    and ``cross_entropy_prob_grad_rows`` with ``(x, target, smoothing,
    class_weight, grad_scale, loss_out)`` likewise, the probabilities of
    ``x``'s shape in its dtype or in float32."""
    probs, grad = _CE16[kernel]
    k = 4 if probs else 5  # the loss alone's arguments
    if len(args) != (k + 2 if grad else k):
        return False
    x, target, cw = args[0], args[1], args[k - 1]
    loss = args[-1] if grad else out
    half = _sixteen_bit(x.dtype)
    if half is None or x.ndim != 2 or not x.flags.c_contiguous:
        return False
    n, c = x.shape
    if n * c == 0 or c > _ROWS16_MAX_C or loss.dtype != np.float64:
        return False
    if not (_rows_of(loss, n) and _rows_of(cw, c)):
        return False
    if probs:
        if not isinstance(target, np.ndarray) or target.shape != x.shape:
            return False
        if target.dtype not in (x.dtype, _F32_TYPE) or not target.flags.c_contiguous:
            return False
    elif not all(_rows_of(a, n) for a in args[1:4]):
        return False
    if grad:
        if out.dtype != x.dtype or out.shape != x.shape or not out.flags.c_contiguous:
            return False
        if not probs and c > BLOCK and n < SPLIT_ROWS:
            return False  # the float32 gradient splits these rows over threads
        g = out.view(_U16)
    else:
        g = _NO_GRAD16
    gs = float(args[k]) if grad else 1.0
    xs = x.view(_U16)
    serial = n * c <= SERIAL_MAX
    if probs:
        t = target if target.dtype == _F32_TYPE else target.view(_U16)
        eps, mode = float(args[2]), _cep_mode16(c)
        if serial:
            R.cep16_ser(xs, t, eps, cw, gs, loss, g, half, mode, grad)
        else:
            launch(R.cep16_par, xs, t, eps, cw, gs, loss, g, half, mode, grad)
        return True
    _, t, a, b = args[:4]
    mode = _ce_mode16(c)
    if serial:
        R.ce16_ser(xs, t, a, b, cw, gs, loss, g, half, mode, grad)
    else:
        launch(R.ce16_par, xs, t, a, b, cw, gs, loss, g, half, mode, grad)
    return True


_ROWS16 = {"softmax_rows": False, "log_softmax_rows": True}
_BACK16 = {"softmax_backward_rows": False, "log_softmax_backward_rows": True}


def _logsumexp16(args, out) -> bool:
    """:func:`low_precision_rows` for ``logsumexp_rows``: ``out`` of shape
    ``(rows,)``."""
    if len(args) != 1:
        return False
    x = args[0]
    half = _sixteen_bit(out.dtype)
    if half is None or x.dtype != out.dtype or x.ndim != 2 or out.ndim != 1:
        return False
    n, c = x.shape
    if out.shape[0] != n or not (x.flags.c_contiguous and out.flags.c_contiguous):
        return False
    if n * c == 0 or c > _ROWS16_MAX_C or (c > BLOCK and n < SPLIT_ROWS):
        return False  # as for softmax: the float32 path splits those rows
    xs, os_ = x.view(_U16), out.view(_U16)
    mode = _lse_mode16(c)
    if n * c <= SERIAL_MAX:
        R.lse16_ser(xs, os_, half, mode)
    else:
        launch(R.lse16_par, xs, os_, half, mode)
    return True


def low_precision_rows(kernel, args, out) -> bool:
    """The optional ``low_precision_rows`` hook: ``kernel`` (softmax,
    log_softmax, their backward passes, logsumexp into a ``(rows,)``
    ``out``: :func:`_logsumexp16`, or the cross-entropy:
    :func:`_cross_entropy16`) of float16 or bfloat16 rows
    ``args`` (its inputs) into ``out``, all of one dtype, C-contiguous ``(rows,
    C)``, ``out`` possibly one of them; the forward rows converted a block at
    a time in cache, the backward passes in registers (``_rows16``). False,
    writing nothing, for rows the float32 softmax would split over threads,
    softmax and log_softmax rows wider than ``_ROWS16_MAX_C``, or anything
    else."""
    if kernel == "logsumexp_rows":
        return _logsumexp16(args, out)
    if kernel in _CE16:
        return _cross_entropy16(kernel, args, out)
    log = _ROWS16.get(kernel)
    back = _BACK16.get(kernel)
    if (log is None) == (back is None) or len(args) != (1 if back is None else 2):
        return False
    half = _sixteen_bit(out.dtype)
    if half is None or out.ndim != 2 or not out.flags.c_contiguous:
        return False
    for a in args:
        if a.dtype != out.dtype or a.shape != out.shape or not a.flags.c_contiguous:
            return False
    n, c = out.shape
    if n * c == 0 or (back is None and c > _ROWS16_MAX_C):
        return False
    os_ = out.view(_U16)
    if back is not None:  # no scratch but a few rows where out is an input
        g, p = (a.view(_U16) for a in args)
        if n * c <= SERIAL_MAX:
            R.back16_ser(g, p, os_, half, back)
        else:
            launch(R.back16_par, g, p, os_, half, back)
        return True
    if c > BLOCK and n < SPLIT_ROWS:
        return False  # the float32 path splits these rows over threads
    xs = args[0].view(_U16)
    mode = _mode16(c, log)
    if n * c <= SERIAL_MAX:
        R.rows16_ser(xs, os_, half, mode, log)
    else:
        launch(R.rows16_par, xs, os_, half, mode, log)
    return True
