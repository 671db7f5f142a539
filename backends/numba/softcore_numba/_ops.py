"""The backend's kernels: pick a mode by shape, then run the jitted driver.

Importing this module imports numba (and sets up the runtime first). The mode
depends on the shape alone, never on the thread count, so results are bitwise
equal for any number of threads:

* rows of fewer than ``SHORT_C`` classes take the short-row kernels (tiles of rows,
  one vectorised exp per tile) where the op has them, serial or parallel over
  tiles by the rule below;
* rows of ``SHORT_C`` classes or more and at most ``SOFTMAX_GROUP_ROW_BYTES``
  (softmax), or ``SMALL_GROUP_ROW_BYTES`` in a serial call (softmax and the
  class-index cross-entropy gradient), take the grouped drivers (each pass
  over a group of rows in one function; the same bits);
* serial below ``SERIAL_MAX`` elements (no thread launch: small calls stay cheap);
* split over row blocks when there are fewer than ``SPLIT_ROWS`` rows wider than
  one block (a few very wide rows still use every thread);
* parallel over rows otherwise.
"""

from __future__ import annotations

import os

from . import _runtime

_runtime.ensure()

from . import _kernels as K  # noqa: E402

launch = _runtime.launch

SERIAL_MAX = int(os.environ.get("SOFTCORE_NUMBA_SERIAL_MAX", 1 << 15))
SPLIT_ROWS = 16
BLOCK = K.BLOCK


SHORT_C = K.SHORT_C


def _drivers(op: str, split: bool = False, short: bool = False) -> tuple:
    """``op``'s jitted drivers as ``(ser, split, par, short_ser, short_par)``, None
    where the op has no such mode; looked up once, so a small call pays no lookups."""

    def get(suffix):
        return getattr(K, f"{op}_{suffix}")

    return (
        get("ser"),
        get("split") if split else None,
        get("par"),
        get("short_ser") if short else None,
        get("short_par") if short else None,
    )


def _run(drivers, x, *args):
    """Run ``x``'s op in the mode its shape picks, by the rule of the module's
    docstring (``drivers`` from :func:`_drivers`). The serial modes are tested
    first: on a small call each Python step shows."""
    ser, split, par, short_ser, short_par = drivers
    n, c = x.shape
    short = short_ser is not None and c < SHORT_C
    if n * c <= SERIAL_MAX:
        (short_ser if short else ser)(x, *args)
    elif short:
        launch(short_par, x, *args)
    elif split is not None and c > BLOCK and n < SPLIT_ROWS:
        launch(split, x, *args)
    else:
        launch(par, x, *args)


_SOFTMAX = _drivers("softmax", split=True, short=True)
_SOFTMAX_GROUPED = _drivers("softmax_grouped")
SOFTMAX_GROUP_ROW_BYTES = K.SOFTMAX_GROUP_ROW_BYTES
SMALL_GROUP_ROW_BYTES = K.SMALL_GROUP_ROW_BYTES
_LOG_SOFTMAX = _drivers("log_softmax", split=True, short=True)
_LOGSUMEXP = _drivers("logsumexp", split=True, short=True)
_SOFTMAX_BACKWARD = _drivers("softmax_backward")
_LOG_SOFTMAX_BACKWARD = _drivers("log_softmax_backward")
_CE = _drivers("cross_entropy", short=True)
_CE_GRAD = _drivers("cross_entropy_grad", split=True, short=True)
# small calls only: its serial driver
_CE_GRAD_GROUPED = (K.cross_entropy_grad_grouped_ser, None, None, None, None)
_CE_PROB = _drivers("cross_entropy_prob")
_CE_PROB_GRAD = _drivers("cross_entropy_prob_grad")


def _small_grouped(x) -> bool:
    """Whether a serial call takes ``x``'s rows, of ``SHORT_C`` classes or more,
    by the grouped drivers. The callers test ``SHORT_C`` first, so that short
    rows, the smallest calls, pay no call here (~0.1 us of a 32x10 call's ~1.7)."""
    n, c = x.shape
    return c * x.itemsize <= SMALL_GROUP_ROW_BYTES and n * c <= SERIAL_MAX


def softmax_rows(x, out):
    c = x.shape[1]
    if SHORT_C <= c and (
        c * x.itemsize <= SOFTMAX_GROUP_ROW_BYTES or _small_grouped(x)
    ):
        _run(_SOFTMAX_GROUPED, x, out)
    else:
        _run(_SOFTMAX, x, out)


def log_softmax_rows(x, out):
    _run(_LOG_SOFTMAX, x, out)


def logsumexp_rows(x, out):
    _run(_LOGSUMEXP, x, out)


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
    _run(_SOFTMAX_BACKWARD, grad, probs, out)


def log_softmax_backward_rows(grad, log_probs, out):
    _run(_LOG_SOFTMAX_BACKWARD, grad, log_probs, out)


def cross_entropy_rows(x, target, alpha, beta, class_weight, loss_out):
    _run(_CE, x, target, alpha, beta, class_weight, loss_out)


def cross_entropy_grad_rows(
    x, target, alpha, beta, class_weight, grad_scale, loss_out, grad_out
):
    _run(
        _CE_GRAD_GROUPED if SHORT_C <= x.shape[1] and _small_grouped(x) else _CE_GRAD,
        x,
        target,
        alpha,
        beta,
        class_weight,
        float(grad_scale),
        loss_out,
        grad_out,
    )


def cross_entropy_prob_rows(x, target, smoothing, class_weight, loss_out):
    _run(_CE_PROB, x, target, float(smoothing), class_weight, loss_out)


def cross_entropy_prob_grad_rows(
    x, target, smoothing, class_weight, grad_scale, loss_out, grad_out
):
    _run(
        _CE_PROB_GRAD,
        x,
        target,
        float(smoothing),
        class_weight,
        float(grad_scale),
        loss_out,
        grad_out,
    )


def cross_entropy_index_sum(x, target, class_weight, ignore_index, smoothing):
    """The optional fused small call, the core's plan, the row losses and their
    sum in one jitted call: ``(bad, total, norm)`` (see the kernels), or None for
    a batch large enough to thread, which the core's general path runs."""
    n, c = x.shape
    if n * c > SERIAL_MAX:
        return None
    fused = (
        K.cross_entropy_index_sum_short
        if c < SHORT_C
        else K.cross_entropy_index_sum_rows
    )
    return fused(x, target, class_weight, int(ignore_index), float(smoothing))
