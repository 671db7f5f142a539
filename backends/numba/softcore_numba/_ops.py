"""The backend's kernels: pick a mode by shape, then run the jitted driver.

Importing this module imports numba (and sets up the runtime first). The mode
depends on the shape alone, never on the thread count, so results are bitwise
equal for any number of threads:

* rows of fewer than ``SHORT_C`` classes take the short-row kernels (tiles of rows,
  one vectorised exp per tile) where the op has them, serial or parallel over
  tiles by the rule below;
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


def _mode(n: int, c: int, short: bool = False) -> str:
    """The driver for an ``(n, c)`` input (``short``: the op has short-row kernels)."""
    if short and c < SHORT_C:
        return "short_ser" if n * c <= SERIAL_MAX else "short_par"
    if n * c <= SERIAL_MAX:
        return "ser"
    if c > BLOCK and n < SPLIT_ROWS:
        return "split"
    return "par"


def _run(ser, split, par, x, *args, short=None):
    """Run ``x``'s op in the mode its shape picks (``split`` None: no split mode;
    ``short``: the ``(serial, parallel)`` short-row kernels, if the op has them)."""
    m = _mode(*x.shape, short is not None)
    if m == "short_ser":
        short[0](x, *args)
    elif m == "short_par":
        launch(short[1], x, *args)
    elif m == "ser":
        ser(x, *args)
    elif m == "split" and split is not None:
        launch(split, x, *args)
    else:
        launch(par, x, *args)


def softmax_rows(x, out):
    short = (K.softmax_short_ser, K.softmax_short_par)
    _run(K.softmax_ser, K.softmax_split, K.softmax_par, x, out, short=short)


def log_softmax_rows(x, out):
    short = (K.log_softmax_short_ser, K.log_softmax_short_par)
    _run(K.log_softmax_ser, K.log_softmax_split, K.log_softmax_par, x, out, short=short)


def logsumexp_rows(x, out):
    short = (K.logsumexp_short_ser, K.logsumexp_short_par)
    _run(K.logsumexp_ser, K.logsumexp_split, K.logsumexp_par, x, out, short=short)


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
    _run(K.softmax_backward_ser, None, K.softmax_backward_par, grad, probs, out)


def log_softmax_backward_rows(grad, log_probs, out):
    _run(
        K.log_softmax_backward_ser,
        None,
        K.log_softmax_backward_par,
        grad,
        log_probs,
        out,
    )


def cross_entropy_rows(x, target, alpha, beta, class_weight, loss_out):
    _run(
        K.cross_entropy_ser,
        None,
        K.cross_entropy_par,
        x,
        target,
        alpha,
        beta,
        class_weight,
        loss_out,
        short=(K.cross_entropy_short_ser, K.cross_entropy_short_par),
    )


def cross_entropy_grad_rows(
    x, target, alpha, beta, class_weight, grad_scale, loss_out, grad_out
):
    short = (K.cross_entropy_grad_short_ser, K.cross_entropy_grad_short_par)
    _run(
        K.cross_entropy_grad_ser,
        K.cross_entropy_grad_split,
        K.cross_entropy_grad_par,
        x,
        target,
        alpha,
        beta,
        class_weight,
        float(grad_scale),
        loss_out,
        grad_out,
        short=short,
    )


def cross_entropy_prob_rows(x, target, smoothing, class_weight, loss_out):
    _run(
        K.cross_entropy_prob_ser,
        None,
        K.cross_entropy_prob_par,
        x,
        target,
        float(smoothing),
        class_weight,
        loss_out,
    )


def cross_entropy_prob_grad_rows(
    x, target, smoothing, class_weight, grad_scale, loss_out, grad_out
):
    _run(
        K.cross_entropy_prob_grad_ser,
        None,
        K.cross_entropy_prob_grad_par,
        x,
        target,
        float(smoothing),
        class_weight,
        float(grad_scale),
        loss_out,
        grad_out,
    )
