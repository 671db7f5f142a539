"""Independent references: long double NumPy and mpmath, never softcore itself.

Every function takes NumPy arrays with the class axis last and returns
``(exact, scale)`` pairs of long double arrays: the exact result, and the magnitude
at which its error is counted (see ``_tolerances.py``).  Rows are computed in
mpmath (40 significant digits) when the input is small or when long double is not
wider than double on this platform, in long double (64-bit significand on x86)
otherwise.  The special-value rules of the numerical contract are written out here
on purpose, independently of any backend:

- a row with a NaN, a ``+inf``, or only ``-inf`` entries is NaN throughout;
- ``-inf`` entries of an otherwise finite row have probability 0 and log-probability
  ``-inf``.

The cross-entropy functions follow ``torch.nn.functional.cross_entropy``'s formulas
(``aten/src/ATen/native/LossNLL.cpp``), restated:

- class-index targets: ``loss_r = (1-e) w[y_r] (-log p_r,y_r) + (e/C) sum_c w_c
  (-log p_rc)``, zero for rows whose target is ``ignore_index``; the mean divides by
  the sum of ``w[y_r]`` over the rows kept (when that is 0 the loss is NaN, and so
  is the gradient of every kept row, as in PyTorch);
- probability targets: ``t <- (1-e) t + e/C``; ``loss_r = sum_c w_c t_rc (-log
  p_rc)``; the mean divides by the number of rows;
- class-index rows take PyTorch's two parts as they are: ``0 * inf`` is NaN, so
  label smoothing 1 with the target's logit ``-inf``, or a zero class weight on a
  ``-inf`` logit with smoothing, is a NaN loss; a row whose ``(1-e) w[y_r]`` and
  ``e`` are both 0 (ignored, or a zero class weight on its target without
  smoothing) has loss 0 and a zero gradient, even where its target's logit is
  ``-inf`` (PyTorch: NaN there, the one case softcore reads otherwise);
- probability-target terms whose coefficient is exactly 0 add 0 even where the
  log-probability is ``-inf`` (PyTorch: NaN); a row whose coefficients are all 0
  has loss 0.
"""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np

LD = np.longdouble
EXTENDED = np.finfo(LD).nmant >= 63
"""Whether long double has more precision than double here (x86: 64-bit significand)."""

MP_MAX_SIZE = 64
"""Inputs with at most this many elements are computed in mpmath."""

_MP_DPS = 40


def _ld(a: Any) -> np.ndarray:
    return np.asarray(a).astype(LD)


def _mp_to_ld(v: Any) -> Any:
    if mpmath.isnan(v):
        return LD("nan")
    if mpmath.isinf(v):
        return LD("inf") if v > 0 else LD("-inf")
    if abs(v) < _LD_TINY:
        # below the smallest normal long double, parsing sets ERANGE (and NumPy
        # warns); such values are 0 or subnormal in float64, which float() gets
        # exactly right
        return LD(float(v))
    return LD(mpmath.nstr(v, 30, min_fixed=1, max_fixed=0))


_LD_TINY = mpmath.mpf(str(np.finfo(LD).tiny))


def _bad_rows(x: np.ndarray) -> np.ndarray:
    return np.isnan(x).any(-1) | np.isposinf(x).any(-1) | np.isneginf(x).all(-1)


def row_stats(x: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(lse, log_p, p)`` of rows ``x[..., :]`` in long double (or mpmath)."""
    x = np.asarray(x)
    if x.dtype.kind in "biu":
        x = x.astype(np.float64)
    if not EXTENDED or x.size <= MP_MAX_SIZE:
        return _row_stats_mp(x)
    return _row_stats_ld(_ld(x))


def _row_stats_ld(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.errstate(all="ignore"):
        bad = _bad_rows(x)
        xs = np.where(bad[..., None], LD(0), x)
        m = (
            xs.max(-1, keepdims=True)
            if x.shape[-1]
            else np.zeros(x.shape[:-1] + (1,), LD)
        )
        d = xs - m
        e = np.exp(d)
        s = e.sum(-1, keepdims=True)
        if x.shape[-1]:
            # log S as log1p of the sum without the maximum's term (exactly 1):
            # log(s) rounds s to 2**-64 first, which is all of log S where the
            # maximum dominates by 45 or more
            top = np.argmax(xs, axis=-1)[..., None]
            one = np.take_along_axis(e, top, -1)
            rest = e.copy()
            np.put_along_axis(rest, top, LD(0), -1)
            log_s = np.log1p(rest.sum(-1, keepdims=True) + (one - 1))
        else:
            log_s = np.log(s)
        lse = (m + log_s)[..., 0]
        log_p = d - log_s
        p = e / s
        lse[bad] = np.nan
        log_p[bad] = np.nan
        p[bad] = np.nan
    return lse, log_p, p


def _row_stats_mp(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = x.reshape(-1, x.shape[-1])
    lse = np.empty(rows.shape[0], LD)
    log_p = np.empty(rows.shape, LD)
    p = np.empty(rows.shape, LD)
    magnitudes = np.abs(rows[np.isfinite(rows)])
    top = float(magnitudes.max()) if magnitudes.size else 1.0
    # enough digits for the integer part of the largest logit and 40 more
    dps = _MP_DPS + max(0, int(np.log10(max(top, 1.0))) + 1)
    with mpmath.workdps(dps):
        for r, row in enumerate(rows):
            vals = [float(v) for v in row]
            if (
                any(v != v for v in vals)
                or any(v == float("inf") for v in vals)
                or all(v == float("-inf") for v in vals)
            ):
                lse[r] = log_p[r] = p[r] = np.nan
                continue
            finite = [mpmath.mpf(v) for v in vals if v != float("-inf")]
            m = max(finite)
            total = mpmath.fsum(mpmath.exp(v - m) for v in finite)
            lse_r = m + mpmath.log(total)
            lse[r] = _mp_to_ld(lse_r)
            for c, v in enumerate(vals):
                if v == float("-inf"):
                    log_p[r, c] = -np.inf
                    p[r, c] = 0
                else:
                    lp = mpmath.mpf(v) - lse_r
                    log_p[r, c] = _mp_to_ld(lp)
                    p[r, c] = _mp_to_ld(mpmath.exp(lp))
    shape = x.shape
    return lse.reshape(shape[:-1]), log_p.reshape(shape), p.reshape(shape)


def _cond(log_p: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.maximum(1, np.abs(log_p))


def _fix_scale(scale: np.ndarray, exact: np.ndarray) -> np.ndarray:
    # 0 * inf products (probability 0 at log-probability -inf) are scale 0
    return np.where(np.isnan(scale) & ~np.isnan(exact), LD(0), scale)


# ----------------------------------------------------------------- row-wise ops


def softmax(x: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    _, log_p, p = row_stats(x)
    with np.errstate(all="ignore"):
        scale = p * _cond(log_p)
    return [(p, _fix_scale(scale, p))]


def log_softmax(x: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """Scale ``max(|log p|, |lse|, sum p|x|)``: ``log p = x - lse``, a difference
    of terms of those sizes, and ``sum p|x|`` is ``lse``'s conditioning
    (:func:`lse_scale`). No floor of 1: where the row maximum is near 0 and
    dominates, the largest entry ``-log S`` is known to its own precision
    (``[0, -40]`` gives ``-4.2e-18``, where SciPy's ``log_softmax`` and
    PyTorch's give 0)."""
    lse, log_p, p = row_stats(x)
    with np.errstate(all="ignore"):
        size = np.maximum(np.abs(lse), _spread(p, np.abs(_ld(np.asarray(x)))))
        scale = np.maximum(np.abs(log_p), size[..., None])
    return [(log_p, _fix_scale(scale, log_p))]


def lse_scale(lse: np.ndarray, x: Any) -> np.ndarray:
    """logsumexp's error scale: ``max(|lse|, sum p_i |x_i|)``, the problem's own
    conditioning: ``lse`` moves by ``sum p_i |x_i| u`` when each logit moves by
    a relative ``u``. Every backend (and SciPy) forms ``lse = m + log S`` with
    ``m`` the row's largest logit and ``1 <= S <= C``, and ``log S`` rounds to
    half an ULP of itself, up to ``log C``, which ``|lse|`` alone misses where
    ``m`` and ``log S`` cancel (rows near ``-log C``: SciPy's float64 error
    there reached 4.4 ULPs of ``max(|lse|, 1)`` at 100000 classes); there
    ``sum p_i |x_i| >= |m|`` (every ``|x_i| >= |m|`` for ``m < 0``). No floor:
    where the maximum is near 0 and dominates, ``lse`` is ``log1p`` of the rest
    and known to its own precision (SciPy's ``logsumexp`` is exact there); a
    floor of 1 let ``logsumexp([0, -40]) = 0`` pass for 4.2e-18."""
    x = _ld(np.asarray(x))
    with np.errstate(all="ignore"):
        p = np.exp(x - lse[..., None])
        return np.maximum(np.abs(lse), _spread(p, np.abs(x)))


def _spread(p: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    """``sum p * magnitude`` over the class axis, kept: how far ``lse`` moves
    when each logit moves by a relative ``u`` (in units of ``u``); classes of
    probability 0 (``-inf`` logits) add nothing."""
    return np.where(p > 0, p * magnitude, LD(0)).sum(-1)


def logsumexp(x: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    lse, _, _ = row_stats(x)
    scale = lse_scale(lse, x)
    return [(lse, _fix_scale(scale, lse))]


def weighted_logsumexp_row(x_row: Any, b_row: Any) -> tuple[float, float, float, float]:
    """``(log|S|, sign S, sum|t| / |S|, sum|t x| / |S|)`` of ``S = sum t``,
    ``t_j = b_j e^{x_j}`` over one row's terms (``b_j != 0``, ``x_j`` not
    ``-inf``), in mpmath at 60 digits from the exact inputs: logsumexp with
    factors, and the two spreads its conditioning takes. ``(-inf, 0, 0, 0)``
    where ``S`` is 0."""
    with mpmath.workdps(60):
        s = mpmath.mpf(0)
        spread = mpmath.mpf(0)
        spread_x = mpmath.mpf(0)
        xs, bs = np.asarray(x_row).tolist(), np.asarray(b_row).tolist()
        for xv, bv in zip(xs, bs, strict=True):
            if bv == 0 or xv == -np.inf:
                continue
            t = mpmath.mpf(bv) * mpmath.exp(mpmath.mpf(xv))
            s += t
            spread += abs(t)
            spread_x += abs(t) * abs(mpmath.mpf(xv))
        if s == 0:
            return -np.inf, 0.0, 0.0, 0.0
        return (
            float(mpmath.log(abs(s))),
            1.0 if s > 0 else -1.0,
            float(spread / abs(s)),
            float(spread_x / abs(s)),
        )


def softmax_jacobian(x: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    _, log_p, p = row_stats(x)
    c = p.shape[-1]
    eye = np.eye(c, dtype=LD)
    with np.errstate(all="ignore"):
        pi, pj = p[..., :, None], p[..., None, :]
        ci, cj = _cond(log_p)[..., :, None], _cond(log_p)[..., None, :]
        jac = pi * (eye - pj)
        scale = pi * ci * np.maximum(np.abs(eye - pj), pj * cj)
    return [(jac, _fix_scale(scale, jac))]


def log_softmax_jacobian(x: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    _, log_p, p = row_stats(x)
    c = p.shape[-1]
    eye = np.eye(c, dtype=LD)
    with np.errstate(all="ignore"):
        pj = p[..., None, :]
        cj = _cond(log_p)[..., None, :]
        jac = np.broadcast_to(eye - pj, p.shape[:-1] + (c, c)).copy()
        scale = np.maximum(np.abs(jac), pj * cj)
    return [(jac, _fix_scale(scale, jac))]


def softmax_backward(grad: Any, probs: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    g, p = _ld(grad), _ld(probs)
    with np.errstate(all="ignore"):
        s = (g * p).sum(-1, keepdims=True)
        out = p * (g - s)
        scale = np.abs(p) * (np.abs(g) + np.abs(g * p).sum(-1, keepdims=True))
    return [(out, _fix_scale(scale, out))]


def log_softmax_backward(
    grad: Any, log_probs: Any
) -> list[tuple[np.ndarray, np.ndarray]]:
    g, lp = _ld(grad), _ld(log_probs)
    with np.errstate(all="ignore"):
        e = np.exp(lp)
        out = g - e * g.sum(-1, keepdims=True)
        scale = np.abs(g) + e * _cond(lp) * np.abs(g).sum(-1, keepdims=True)
    return [(out, _fix_scale(scale, out))]


# --------------------------------------------------------------- cross-entropy


def cross_entropy_parts(
    logits: Any,
    target: Any,
    *,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    mag: Any = None,
) -> dict[str, np.ndarray]:
    """Loss and gradient of ``torch.nn.functional.cross_entropy`` (class axis last).

    ``logits`` is ``(..., C)``; ``target`` is integer ``(...)`` (class indices) or
    float ``(..., C)`` (probabilities).  ``mag``, where given, is the magnitude of
    each logit's computation (for linear cross-entropy); by default ``|logits|``.
    Returns ``loss``, ``loss_scale``, ``grad``, ``grad_scale``.
    """
    x = np.asarray(logits)
    if x.dtype.kind in "biu":
        x = x.astype(np.float64)
    shape = x.shape
    n_classes = shape[-1]
    x2 = x.reshape(-1, n_classes)
    lse, log_p, p = row_stats(x2)
    x2 = _ld(x2)
    w = np.ones(n_classes, LD) if weight is None else _ld(weight)
    eps = LD(label_smoothing)
    t = np.asarray(target)
    index_target = t.dtype.kind in "iu"
    if index_target:
        t = t.reshape(-1).astype(np.int64)
        keep = t != ignore_index
        y = np.where(keep, t, 0)
        alpha = np.where(keep, (1 - eps) * w[y], LD(0))
        beta = np.where(keep, eps / n_classes, LD(0))
        a = beta[:, None] * w[None, :]
        a[np.arange(a.shape[0]), y] += alpha
        norm = np.where(keep, w[y], LD(0)).sum()
    else:
        tt = _ld(t).reshape(-1, n_classes)
        a = ((1 - eps) * tt + eps / n_classes) * w[None, :]
        norm = LD(a.shape[0])
    magnitude = np.abs(x2) if mag is None else _ld(mag).reshape(x2.shape)
    with np.errstate(all="ignore"):
        nz = a != 0
        if index_target:
            # PyTorch's parts, 0 * inf = NaN; a row with neither part is 0
            nll = -log_p[np.arange(a.shape[0]), y]
            smooth = -(w[None, :] * log_p).sum(-1)
            loss_rows = alpha * nll + np.where(beta != 0, beta * smooth, LD(0))
            loss_rows = np.where((alpha == 0) & (beta == 0), LD(0), loss_rows)
        else:
            loss_rows = np.where(nz, a * -log_p, LD(0)).sum(-1)
        # no floor of 1 (as log_softmax's): a confident row's loss, -log p of
        # its largest logit near 0, is known to the precision of lse's
        # conditioning, sum p |logit| (each logit's magnitude for linear CE)
        lse_cond = _spread(p, magnitude)[:, None]
        size = np.maximum(
            np.maximum(np.abs(log_p), np.abs(lse)[:, None]),
            np.maximum(magnitude, lse_cond),
        )
        loss_scale_rows = np.where(nz, np.abs(a) * size, LD(0)).sum(-1)
        mass = a.sum(-1, keepdims=True)
        # an ignored row (alpha == beta == 0) has an exactly zero gradient, whatever
        # its logits; a probability row follows the formula (NaN logits: NaN)
        dead = (~nz).all(-1, keepdims=True) & index_target
        gs = LD(1) / norm if reduction == "mean" else LD(1)
        grad = np.where(dead, LD(0), gs * (p * mass - a))
        cond = np.maximum(_cond(log_p), magnitude)
        spread = np.where(p == 0, LD(0), p * np.abs(mass) * cond)
        grad_scale = np.where(dead, LD(0), np.abs(gs) * (spread + np.abs(a)))
        if reduction == "none":
            loss = loss_rows.reshape(shape[:-1])
            loss_scale = loss_scale_rows.reshape(shape[:-1])
        elif reduction == "sum":
            loss = loss_rows.sum()
            loss_scale = loss_scale_rows.sum()
        else:
            loss = loss_rows.sum() / norm
            loss_scale = loss_scale_rows.sum() / norm
            if norm == 0:
                # PyTorch divides the NLL part and the smoothing part separately by
                # the total weight: the NLL part is 0/0, so the loss is NaN; the
                # gradient of every kept row is NaN (its -w_y / 0 is 0/0), that of
                # ignored rows stays 0
                loss = LD(np.nan)
                if index_target:
                    grad = np.where(keep[:, None], LD(np.nan), np.zeros_like(grad))
    return {
        "loss": np.asarray(loss, LD),
        "loss_scale": _fix_scale(np.asarray(loss_scale, LD), np.asarray(loss, LD)),
        "grad": grad.reshape(shape),
        "grad_scale": _fix_scale(grad_scale, grad).reshape(shape),
    }


def linear_cross_entropy_parts(
    inp: Any,
    linear_weight: Any,
    target: Any,
    *,
    linear_bias: Any = None,
    tiny: float = 0.0,
    **ce: Any,
) -> dict[str, np.ndarray]:
    """Loss and gradients of ``cross_entropy(inp @ linear_weight.T + linear_bias)``.

    Scales multiply the magnitude of each product by its depth (D for the logits,
    C for ``d_input``, N for ``d_linear_weight`` and ``d_linear_bias``).  ``tiny``
    (the smallest normal number of the working dtype) floors the scale of the logit
    gradient: below it, that gradient is only known to a subnormal's spacing.
    """
    xin, wl = _ld(inp), _ld(linear_weight)
    n, d = xin.shape
    with np.errstate(all="ignore"):
        z = xin @ wl.T
        zabs = np.abs(xin) @ np.abs(wl).T
        if linear_bias is not None:
            b = _ld(linear_bias)
            z = z + b
            zabs = zabs + np.abs(b)
    parts = cross_entropy_parts(z, target, mag=zabs * max(d, 1), **ce)
    g = parts["grad"]
    gsc = np.maximum(parts["grad_scale"], LD(tiny))
    with np.errstate(all="ignore"):
        c = wl.shape[0]
        parts["d_input"] = g @ wl
        parts["d_input_scale"] = (gsc @ np.abs(wl)) * max(c, 1)
        parts["d_linear_weight"] = g.T @ xin
        parts["d_linear_weight_scale"] = (gsc.T @ np.abs(xin)) * max(n, 1)
        parts["d_linear_bias"] = g.sum(0)
        parts["d_linear_bias_scale"] = gsc.sum(0) * max(n, 1)
    return parts
