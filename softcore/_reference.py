"""The NumPy reference backend.

Clarity first: each kernel is the formula of ``backends/README.md`` written with
NumPy, evaluated in float64 (so float32 results are correctly rounded up to a few
ULPs) on blocks of rows, so no temporary is larger than one block, whatever N is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import softcore

_BLOCK_ELEMENTS = 1 << 16  # temporaries hold at most this many float64 values


def _blocks(n_rows: int, width: int):
    step = max(1, _BLOCK_ELEMENTS // max(1, width))
    for start in range(0, n_rows, step):
        yield slice(start, min(n_rows, start + step))


def _shifted(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``z = x - max``, ``e = exp(z)``, ``s = sum(e)`` per row, in float64.

    ``logsumexp = max + log(s)`` and ``log_softmax = z - log(s)``.

    A row with NaN, +inf or only -inf has max NaN/+inf/-inf, so ``x - max`` has a NaN
    and the whole row's results are NaN, as the contract asks.
    """
    x = x.astype(np.float64, copy=False)
    with np.errstate(invalid="ignore"):
        m = x.max(axis=1, keepdims=True)
        z = x - m
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    return z, e, s


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
        return isinstance(x, (np.ndarray, np.generic, list, tuple, int, float, bool))

    # ------------------------------------------------------------- row-wise ops
    def softmax_rows(self, x: np.ndarray, out: np.ndarray) -> None:
        for b in _blocks(*x.shape):
            _, e, s = _shifted(x[b])
            out[b] = e / s

    def log_softmax_rows(self, x: np.ndarray, out: np.ndarray) -> None:
        for b in _blocks(*x.shape):
            z, _, s = _shifted(x[b])
            with np.errstate(over="ignore"):  # a result past float32's range: -inf
                out[b] = z - np.log(s)

    def logsumexp_rows(self, x: np.ndarray, out: np.ndarray) -> None:
        for b in _blocks(*x.shape):
            xb = x[b].astype(np.float64, copy=False)
            with np.errstate(invalid="ignore", over="ignore"):
                m = xb.max(axis=1)
                s = np.exp(xb - m[:, None]).sum(axis=1)
                out[b] = m + np.log(s)  # beyond float32's range: inf, correctly

    def softmax_jacobian_rows(self, x: np.ndarray, out: np.ndarray) -> None:
        c = x.shape[1]
        for b in _blocks(x.shape[0], c * c):
            _, e, s = _shifted(x[b])
            p = e / s
            jb = -p[:, :, None] * p[:, None, :]
            jb.reshape(-1, c * c)[:, :: c + 1] += p
            out[b] = jb

    def log_softmax_jacobian_rows(self, x: np.ndarray, out: np.ndarray) -> None:
        c = x.shape[1]
        for b in _blocks(x.shape[0], c * c):
            _, e, s = _shifted(x[b])
            p = e / s
            jb = np.broadcast_to(-p[:, None, :], (p.shape[0], c, c)).copy()
            jb.reshape(-1, c * c)[:, :: c + 1] += 1.0
            out[b] = jb

    def softmax_backward_rows(
        self, grad: np.ndarray, probs: np.ndarray, out: np.ndarray
    ) -> None:
        for b in _blocks(*grad.shape):
            g = grad[b].astype(np.float64)
            p = probs[b].astype(np.float64)
            dot = (g * p).sum(axis=1, keepdims=True)
            with np.errstate(over="ignore"):  # a result past float32's range: inf
                out[b] = p * (g - dot)

    def log_softmax_backward_rows(
        self, grad: np.ndarray, log_probs: np.ndarray, out: np.ndarray
    ) -> None:
        for b in _blocks(*grad.shape):
            g = grad[b].astype(np.float64)
            total = g.sum(axis=1, keepdims=True)
            with np.errstate(over="ignore"):  # a result past float32's range: inf
                out[b] = g - np.exp(log_probs[b].astype(np.float64)) * total

    # ------------------------------------------------------------ cross-entropy
    def _ce_index(self, x, target, alpha, beta, cw, scale, loss_out, grad_out):
        wsum = cw.sum()
        for b in _blocks(*x.shape):
            z, e, s = _shifted(x[b])
            log_s = np.log(s[:, 0])  # lse - x_c = log_s - z_c
            a, be, y = alpha[b], beta[b], target[b]
            kept = (a != 0) | (be != 0)
            rows = np.arange(z.shape[0])
            with np.errstate(invalid="ignore"):
                loss = a * (log_s - z[rows, y])
                smooth = be != 0
                if smooth.any():
                    loss = loss + np.where(smooth, be * (wsum * log_s - z @ cw), 0.0)
            loss_out[b] = np.where(kept, loss, 0.0)
            if grad_out is None:
                continue
            with np.errstate(invalid="ignore"):
                g = (e / s) * (a + be * wsum)[:, None]
                g[rows, y] -= a
                g -= be[:, None] * cw[None, :]
                g *= scale
            g[~kept] = 0.0
            grad_out[b] = g

    def cross_entropy_rows(self, x, target, alpha, beta, class_weight, loss_out):
        self._ce_index(x, target, alpha, beta, class_weight, 1.0, loss_out, None)

    def cross_entropy_grad_rows(
        self, x, target, alpha, beta, class_weight, grad_scale, loss_out, grad_out
    ):
        self._ce_index(
            x, target, alpha, beta, class_weight, grad_scale, loss_out, grad_out
        )

    def _ce_prob(self, x, target, eps, cw, scale, loss_out, grad_out):
        c = x.shape[1]
        for b in _blocks(*x.shape):
            z, e, s = _shifted(x[b])
            a = ((1.0 - eps) * target[b].astype(np.float64) + eps / c) * cw
            with np.errstate(invalid="ignore"):
                terms = np.where(a != 0, a * (np.log(s) - z), 0.0)
            loss_out[b] = terms.sum(axis=1)
            if grad_out is None:
                continue
            with np.errstate(invalid="ignore"):
                grad_out[b] = scale * ((e / s) * a.sum(axis=1, keepdims=True) - a)

    def cross_entropy_prob_rows(self, x, target, smoothing, class_weight, loss_out):
        self._ce_prob(x, target, smoothing, class_weight, 1.0, loss_out, None)

    def cross_entropy_prob_grad_rows(
        self, x, target, smoothing, class_weight, grad_scale, loss_out, grad_out
    ):
        self._ce_prob(
            x, target, smoothing, class_weight, grad_scale, loss_out, grad_out
        )


backend = ReferenceBackend()
