"""float64 rows whose logits span about 150, and an mpmath measure of the kernels'
probabilities on them (softmax, and the Jacobians' off-diagonal entries): shared by
the emulated tests and the tests on a device.

Rounded once, the argument of exp(x - lse) would cost |x - lse| / 2 ulps of a
probability, about 35 at x - lse = -70; the kernels carry it as a TwoSum pair, so
what is left is exp's error and a few roundings."""

from __future__ import annotations

import numpy as np


def wide_span_rows(c):
    """4 rows of c logits, standard normal times 30; the first 5 of row 0 are a case
    the conformance kit found (Jacobians 39 ulps from softmax_backward)."""
    x = np.random.default_rng(7).standard_normal((4, c)) * 30
    x[0, :5] = [7.54381327, -7.9262918, 38.42535903, 6.29400703, -32.14016239]
    return x


def _probs(row):
    import mpmath

    mpmath.mp.prec = 120
    top = mpmath.mpf(float(row.max()))
    e = [mpmath.exp(mpmath.mpf(float(v)) - top) for v in row]
    s = mpmath.fsum(e)
    return [v / s for v in e]


def _ulps(got, want):
    """|got - want| / |want| in units of 2^-52 (an ulp at the bottom of a binade)."""
    import mpmath

    return float(abs((mpmath.mpf(float(got)) - want) / want)) / 2.0**-52


def softmax_ulps(x, got):
    """The largest error of got = softmax(x) over the probabilities above 2^-1000."""
    worst = 0.0
    for r in range(x.shape[0]):
        p = _probs(x[r])
        for j, pj in enumerate(p):
            if pj > 2.0**-1000:
                worst = max(worst, _ulps(got[r, j], pj))
    return worst


def jacobian_offdiag_ulps(x, got, log):
    """The largest error of the off-diagonal entries of got, the (rows, c, c) Jacobian
    of softmax (-p_i p_j) or of log_softmax (-p_j) at x."""
    worst = 0.0
    c = x.shape[1]
    for r in range(x.shape[0]):
        p = _probs(x[r])
        for i in range(c):
            for j in range(c):
                if i != j:
                    want = -p[j] if log else -p[i] * p[j]
                    worst = max(worst, _ulps(got[r, i, j], want))
    return worst
