"""The NumPy reference backend.

Clarity first: each kernel is the formula of ``backends/README.md`` written with
NumPy, evaluated in float64 (so float32 results are correctly rounded up to a few
ULPs) on blocks of rows, so no temporary is larger than one block, whatever N is.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

import softcore
from softcore._api import _loss_total

_BLOCK_ELEMENTS = 1 << 16  # temporaries hold at most this many float64 values


def _blocks(n_rows: int, width: int):
    step = max(1, _BLOCK_ELEMENTS // max(1, width))
    for start in range(0, n_rows, step):
        yield slice(start, min(n_rows, start + step))


_quiet = np.errstate(all="ignore")
"""The row kernels' decorator: NumPy's floating-point warnings off. NaN and
infinite values give the NaN and infinite results the contract names, and no
op warns of them, on any backend: a caller whose warnings are errors (a test
suite's ``-W error``) gets the result. From NumPy 2.0 (the oldest supported)
``np.errstate`` as a decorator keeps its state per call, so threads calling
the backend at once are safe."""


class _Shifted(NamedTuple):
    m: np.ndarray  # each row's maximum, (rows, 1)
    z: np.ndarray  # x - m
    e: np.ndarray  # exp(z)
    s: np.ndarray  # sum(e), (rows, 1)
    log_s: np.ndarray  # log(s), (rows, 1)


def _shifted(x: np.ndarray) -> _Shifted:
    """``m = max``, ``z = x - m``, ``e = exp(z)``, ``s = sum(e)`` and ``log(s)``
    per row, in float64.

    ``logsumexp = m + log(s)`` and ``log_softmax = z - log(s)``.

    A row with NaN, +inf or only -inf has max NaN/+inf/-inf, so ``x - max`` has a NaN
    and the whole row's results are NaN, as the contract asks.
    """
    x = x.astype(np.float64, copy=False)
    top = x.argmax(axis=1)[:, None]  # the first maximum (or NaN)
    m = np.take_along_axis(x, top, axis=1)
    z = x - m
    e = np.exp(z)
    # The maximum's term is 1 (NaN in a special row): summed apart from the
    # others, which then keep their own relative accuracy, where a sum with
    # the 1 among them rounded each to a unit of 1 (a row of 100000 classes,
    # one 40 above the rest: 10 ULPs of softmax with NumPy 2.2's sum)
    # ``log(s)`` is ``log1p`` of that rest: where the maximum dominates, ``s``
    # rounds to a unit of 1 and its log kept nothing of the rest (logsumexp of
    # ``[0, -40]`` was 0 for 4.2e-18)
    one = np.take_along_axis(e, top, axis=1)
    np.put_along_axis(e, top, 0.0, axis=1)
    rest = e.sum(axis=1, keepdims=True)
    s = rest + one
    log_s = np.log1p(rest + (one - 1.0))  # one - 1: 0, or NaN in a special row
    np.put_along_axis(e, top, one, axis=1)
    return _Shifted(m, z, e, s, log_s)


class ReferenceBackend:
    """Computes every op with NumPy; the backend the core names and trusts."""

    name = "numpy"
    priority = 0
    threaded = False
    xp = np

    @property
    def version(self) -> str:
        return softcore.__version__

    def available(self) -> bool | str:
        return True

    def accepts(self, x: Any) -> bool:
        return isinstance(x, np.ndarray)  # host array-likes: the registry

    # ------------------------------------------------------------- row-wise ops
    @_quiet
    def softmax_rows(self, x: np.ndarray, out: np.ndarray) -> None:
        for b in _blocks(*x.shape):
            sh = _shifted(x[b])
            out[b] = sh.e / sh.s

    @_quiet
    def log_softmax_rows(self, x: np.ndarray, out: np.ndarray) -> None:
        for b in _blocks(*x.shape):
            sh = _shifted(x[b])
            out[b] = sh.z - sh.log_s  # a result past float32's range: -inf

    @_quiet
    def logsumexp_rows(self, x: np.ndarray, out: np.ndarray) -> None:
        for b in _blocks(*x.shape):
            sh = _shifted(x[b])
            out[b] = (sh.m + sh.log_s)[:, 0]  # beyond float32's range: inf

    @_quiet
    def softmax_jacobian_rows(self, x: np.ndarray, out: np.ndarray) -> None:
        c = x.shape[1]
        for b in _blocks(x.shape[0], c * c):
            sh = _shifted(x[b])
            p = sh.e / sh.s
            jb = -p[:, :, None] * p[:, None, :]
            jb.reshape(-1, c * c)[:, :: c + 1] += p
            out[b] = jb

    @_quiet
    def log_softmax_jacobian_rows(self, x: np.ndarray, out: np.ndarray) -> None:
        c = x.shape[1]
        for b in _blocks(x.shape[0], c * c):
            sh = _shifted(x[b])
            p = sh.e / sh.s
            jb = np.broadcast_to(-p[:, None, :], (p.shape[0], c, c)).copy()
            jb.reshape(-1, c * c)[:, :: c + 1] += 1.0
            out[b] = jb

    @_quiet
    def softmax_backward_rows(
        self, grad: np.ndarray, probs: np.ndarray, out: np.ndarray
    ) -> None:
        for b in _blocks(*grad.shape):
            g = grad[b].astype(np.float64)
            p = probs[b].astype(np.float64)
            dot = (g * p).sum(axis=1, keepdims=True)
            out[b] = p * (g - dot)  # a result past float32's range: inf

    @_quiet
    def log_softmax_backward_rows(
        self, grad: np.ndarray, log_probs: np.ndarray, out: np.ndarray
    ) -> None:
        for b in _blocks(*grad.shape):
            g = grad[b].astype(np.float64)
            total = g.sum(axis=1, keepdims=True)
            out[b] = g - np.exp(log_probs[b].astype(np.float64)) * total  # or inf

    # ------------------------------------------------------------ cross-entropy
    def _ce_index(self, x, target, alpha, beta, cw, scale, loss_out, grad_out):
        wsum = cw.sum()
        for b in _blocks(*x.shape):
            _, z, e, s, log_s2 = _shifted(x[b])
            log_s = log_s2[:, 0]  # lse - x_c = log_s - z_c
            a, be, y = alpha[b], beta[b], target[b]
            kept = (a != 0) | (be != 0)
            rows = np.arange(z.shape[0])
            loss = a * (log_s - z[rows, y])
            smooth = be != 0
            if smooth.any():
                loss = loss + np.where(smooth, be * (wsum * log_s - z @ cw), 0.0)
            loss_out[b] = np.where(kept, loss, 0.0)
            if grad_out is None:
                continue
            g = (e / s) * (a + be * wsum)[:, None]
            g[rows, y] -= a
            g -= be[:, None] * cw[None, :]
            g *= scale
            g[~kept] = 0.0
            grad_out[b] = g

    @_quiet
    def cross_entropy_rows(self, x, target, alpha, beta, class_weight, loss_out):
        self._ce_index(x, target, alpha, beta, class_weight, 1.0, loss_out, None)

    @_quiet
    def cross_entropy_grad_rows(
        self, x, target, alpha, beta, class_weight, grad_scale, loss_out, grad_out
    ):
        self._ce_index(
            x, target, alpha, beta, class_weight, grad_scale, loss_out, grad_out
        )

    def _ce_prob(self, x, target, eps, cw, scale, loss_out, grad_out):
        c = x.shape[1]
        for b in _blocks(*x.shape):
            _, z, e, s, log_s = _shifted(x[b])
            a = ((1.0 - eps) * target[b].astype(np.float64) + eps / c) * cw
            terms = np.where(a != 0, a * (log_s - z), 0.0)
            loss_out[b] = terms.sum(axis=1)
            if grad_out is None:
                continue
            grad_out[b] = scale * ((e / s) * a.sum(axis=1, keepdims=True) - a)

    @_quiet
    def cross_entropy_prob_rows(self, x, target, smoothing, class_weight, loss_out):
        self._ce_prob(x, target, smoothing, class_weight, 1.0, loss_out, None)

    @_quiet
    def cross_entropy_prob_grad_rows(
        self, x, target, smoothing, class_weight, grad_scale, loss_out, grad_out
    ):
        self._ce_prob(
            x, target, smoothing, class_weight, grad_scale, loss_out, grad_out
        )


backend = ReferenceBackend()


# ------------------------------------- the optional cross_entropy_index_rows
# What a backend's cross_entropy_index_rows must compute (backends/README.md), in
# NumPy: the core's class-index plan from unchecked targets, then the reference
# kernels. The reference backend does not offer it (its calls take the core's own
# plan); the test doubles of the hook call these.


def index_plan(
    target: np.ndarray, n_classes: int, class_weight: Any, ignore_index: int, eps: float
) -> tuple[Any, ...]:
    """``(t0, alpha, beta, cw, norm, keep)`` of in-range class-index targets as the
    core forms them: ignored rows' targets 0 and ``alpha = beta = 0``, ``cw`` the
    class weights (ones for None), ``norm`` the kept rows' summed weight."""
    keep = target != ignore_index
    t0 = np.where(keep, target, 0)
    cw = np.ones(n_classes) if class_weight is None else class_weight
    w_y = cw[t0] * keep
    alpha = (1.0 - eps) * w_y
    beta = np.where(keep, eps / n_classes, 0.0)
    return t0, alpha, beta, cw, float(w_y.sum()), keep


def index_rows(
    x: np.ndarray,
    target: np.ndarray,
    class_weight: Any,
    ignore_index: int,
    smoothing: float,
    mean: bool,
    loss_rows: np.ndarray,
    loss_out: Any,
    grad_out: Any,
) -> np.ndarray:
    """``cross_entropy_index_rows`` on NumPy arrays; returns ``[first bad row]``
    (-1 for none), having written nothing where a target is bad."""
    c = x.shape[1]
    bad = np.flatnonzero((target != ignore_index) & ((target < 0) | (target >= c)))
    if bad.size:
        return np.array([float(bad[0])])
    t0, alpha, beta, cw, norm, keep = index_plan(
        target, c, class_weight, ignore_index, smoothing
    )
    if grad_out is None:
        backend.cross_entropy_rows(x, t0, alpha, beta, cw, loss_rows)
    else:
        scale = (1.0 / norm if norm else 0.0) if mean else 1.0
        backend.cross_entropy_grad_rows(
            x, t0, alpha, beta, cw, scale, loss_rows, grad_out
        )
        if mean and not norm:  # PyTorch's 0/0 in every kept row
            grad_out[keep] = np.nan
    if loss_out is not None:
        total = _loss_total(loss_rows, np)  # the host path's sum, its bits
        if mean:
            total = total / norm if norm else total * np.nan
        loss_out[0] = total
    return np.array([-1.0])
