"""Accuracy tolerances of the conformance kit: one table, op x dtype.

Every error the kit measures is a count of units in the last place (ULPs) of the
*result dtype*, taken at a scale that the op's condition makes meaningful (the
``metric`` of each entry; never smaller than the exact result, so that rounding
the result costs at most half an ULP of it).  ``float16`` rows are computed in
float32 and rounded once, so their bound is one rounding (1 ULP) for every op.
The references are exact to far below these units: long double (64-bit
significand) or mpmath.

How the numbers were chosen: from the error analysis written next to each entry,
rounded up to a power of two; then checked against what the reference NumPy
backend and ``scipy.special`` achieve on the kit's inputs
(``python -m softcore.testing NAME --accuracy`` prints the measured maxima).  They
were not widened to make any backend pass.
"""

from __future__ import annotations

TOLERANCES: dict[str, dict[str, object]] = {
    "softmax": {
        # ULPs of p * max(1, |x - lse|): exp(d) amplifies an absolute error in
        # d = x - lse by |d|; forming d costs half an ULP of d, exp ~1 ULP, the
        # row sum log2(C)/2 ULP pairwise (or ~0 accumulated in float64), the
        # division half an ULP.
        "metric": "ulp of p*max(1,|log p|)",
        "float16": 1,
        "float32": 4,
        "float64": 8,
    },
    "log_softmax": {
        # ULPs of max(|x - lse|, lse's scale below): the result is a difference
        # of two terms of that size (the row max and the log of the sum); the
        # log of the sum is within an ULP. No floor of 1: a dominating entry's
        # -log S near 0 is known to its own precision (SciPy's log_softmax,
        # which rounds S first, gives 0 there and is far outside this metric).
        "metric": "ulp of max(|log p|,|lse|,sum p|x|)",
        "float16": 1,
        "float32": 4,
        "float64": 4,
    },
    "logsumexp": {
        # ULPs of max(|lse|, sum p|x|), the problem's conditioning: max +
        # log(sum), the log within an ULP of a value in [0, log C], which |lse|
        # alone misses where the two cancel (the row max near -log C, where
        # sum p|x| >= |max x|); the sum's relative error passes through log
        # unamplified; no floor, as SciPy's log1p is exact near 0
        # (_oracle.lse_scale).
        "metric": "ulp of max(|lse|,sum p|x|)",
        "float16": 1,
        "float32": 4,
        "float64": 4,
    },
    "softmax_jacobian": {
        # ULPs of p_i*max(1,|log p_i|)*max(|delta_ij - p_j|, p_j*max(1,|log p_j|)):
        # a product of two softmax-accurate factors; 1 - p_j near p_j = 1 is
        # absolute.
        "metric": "ulp of p_i*c_i*max(|d_ij-p_j|,p_j*c_j)",
        "float16": 1,
        "float32": 8,
        "float64": 16,
    },
    "log_softmax_jacobian": {
        # ULPs of max(|delta_ij - p_j|, p_j*max(1,|log p_j|)): one softmax value
        # and one subtraction from 1.
        "metric": "ulp of max(|d_ij-p_j|,p_j*c_j)",
        "float16": 1,
        "float32": 8,
        "float64": 16,
    },
    "softmax_backward": {
        # ULPs of p_j*(|g_j| + sum_k |g_k p_k|): the dot product sum_k g_k p_k
        # has an absolute error of a few ULPs of sum_k |g_k p_k| (C <= 64 here),
        # then one subtraction and one product.
        "metric": "ulp of p_j*(|g_j|+sum|g p|)",
        "float16": 1,
        "float32": 8,
        "float64": 16,
    },
    "log_softmax_backward": {
        # ULPs of |g_j| + exp(lp_j)*max(1,|lp_j|)*sum_k|g_k|: exp of the input
        # log-probability, a plain sum of grad, one fused subtraction.
        "metric": "ulp of |g_j|+e^lp_j*c_j*sum|g|",
        "float16": 1,
        "float32": 8,
        "float64": 16,
    },
    "cross_entropy": {
        # ULPs of M = gs * sum_r sum_c |a_rc| * max(|lse_r - x_rc|, |lse_r|, |x_rc|,
        # sum_j p_rj |x_rj|) (the magnitudes the loss adds up, and lse's
        # conditioning; gs the mean normaliser): each row is a few ULPs of its
        # M_r, the reduction adds N of them (N <= 64 here). No floor of 1: a
        # confident row's loss near 0 is known to its own precision.
        "metric": "ulp of sum |a|*max(|lse-x|,|lse|,|x|,sum p|x|)",
        "float16": 1,
        "float32": 4,
        "float64": 16,
    },
    "cross_entropy_grad": {
        # ULPs of gs * (p_j * A_r * max(1, |log p_j|) + |a_j|): a softmax value
        # times the row's total target mass, minus the target coefficient.
        "metric": "ulp of gs*(p*A*c+|a|)",
        "float16": 1,
        "float32": 8,
        "float64": 16,
    },
    "cross_entropy_with_grad": {
        # The loss and the gradient, each under its own metric above.
        "metric": "as cross_entropy / cross_entropy_grad",
        "float16": 1,
        "float32": 8,
        "float64": 16,
    },
    "linear_cross_entropy": {
        # As cross_entropy with |x_rc| replaced by (|X| |W|^T + |b|)_rc, the size of
        # the terms of each logit's dot product, times D: a GEMM of depth D <= 48
        # accumulated in the working precision (float32 BLAS accumulates in
        # float32) has an error of up to ~D/2 ULPs of those terms.
        "metric": "ulp of CE metric on |X||W|^T+|b|, times D",
        "float16": 1,
        "float32": 8,
        "float64": 8,
    },
    "linear_cross_entropy_with_grad": {
        # Loss as above; gradients: ULPs of the GEMM of the absolute CE-gradient
        # metric with |W| (d_input), |X| (d_linear_weight), or its column sum
        # (d_linear_bias), times the depth (C, N, N) of that product.
        "metric": "ulp of |G|-GEMM magnitudes, times depth",
        "float16": 1,
        "float32": 8,
        "float64": 8,
    },
}
"""Tolerance per op and dtype, in ULPs of the result dtype at the op's metric scale."""


def tolerance(op: str, dtype: object) -> float:
    """The tolerance for ``op`` on results of ``dtype`` (ints promote to float64)."""
    import numpy as np

    name = np.dtype(dtype).name  # type: ignore[call-overload]
    return float(TOLERANCES[op][name])  # type: ignore[arg-type]
