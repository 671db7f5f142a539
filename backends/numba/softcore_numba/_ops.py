"""The backend's kernels: pick a mode by shape, then run the jitted driver.

Importing this module imports numba (and sets up the runtime first). The mode
depends on the shape alone, never on the thread count, so results are bitwise
equal for any number of threads:

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


def _mode(n: int, c: int) -> str:
    if n * c <= SERIAL_MAX:
        return "ser"
    if c > BLOCK and n < SPLIT_ROWS:
        return "split"
    return "par"


def softmax_rows(x, out):
    m = _mode(*x.shape)
    if m == "ser":
        K.softmax_ser(x, out)
    elif m == "split":
        launch(K.softmax_split, x, out)
    else:
        launch(K.softmax_par, x, out)


def log_softmax_rows(x, out):
    m = _mode(*x.shape)
    if m == "ser":
        K.log_softmax_ser(x, out)
    elif m == "split":
        launch(K.log_softmax_split, x, out)
    else:
        launch(K.log_softmax_par, x, out)


def logsumexp_rows(x, out):
    m = _mode(*x.shape)
    if m == "ser":
        K.logsumexp_ser(x, out)
    elif m == "split":
        launch(K.logsumexp_split, x, out)
    else:
        launch(K.logsumexp_par, x, out)


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
    n, c = grad.shape
    if n * c <= SERIAL_MAX:
        K.softmax_backward_ser(grad, probs, out)
    else:
        launch(K.softmax_backward_par, grad, probs, out)


def log_softmax_backward_rows(grad, log_probs, out):
    n, c = grad.shape
    if n * c <= SERIAL_MAX:
        K.log_softmax_backward_ser(grad, log_probs, out)
    else:
        launch(K.log_softmax_backward_par, grad, log_probs, out)


def cross_entropy_rows(x, target, alpha, beta, class_weight, loss_out):
    n, c = x.shape
    if n * c <= SERIAL_MAX:
        K.cross_entropy_ser(x, target, alpha, beta, class_weight, loss_out)
    else:
        launch(K.cross_entropy_par, x, target, alpha, beta, class_weight, loss_out)


def cross_entropy_grad_rows(
    x, target, alpha, beta, class_weight, grad_scale, loss_out, grad_out
):
    args = (x, target, alpha, beta, class_weight, float(grad_scale), loss_out, grad_out)
    m = _mode(*x.shape)
    if m == "ser":
        K.cross_entropy_grad_ser(*args)
    elif m == "split":
        launch(K.cross_entropy_grad_split, *args)
    else:
        launch(K.cross_entropy_grad_par, *args)


def cross_entropy_prob_rows(x, target, smoothing, class_weight, loss_out):
    n, c = x.shape
    args = (x, target, float(smoothing), class_weight, loss_out)
    if n * c <= SERIAL_MAX:
        K.cross_entropy_prob_ser(*args)
    else:
        launch(K.cross_entropy_prob_par, *args)


def cross_entropy_prob_grad_rows(
    x, target, smoothing, class_weight, grad_scale, loss_out, grad_out
):
    n, c = x.shape
    args = (
        x,
        target,
        float(smoothing),
        class_weight,
        float(grad_scale),
        loss_out,
        grad_out,
    )
    if n * c <= SERIAL_MAX:
        K.cross_entropy_prob_grad_ser(*args)
    else:
        launch(K.cross_entropy_prob_grad_par, *args)
