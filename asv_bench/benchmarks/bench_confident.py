"""Confident rows: every logit 20-45 below its row's maximum, the target on top.

A trained model's rows look like this. Their float32 sums fall within
``C 2^-26`` of 1, where ``log S`` rounded from the plain sum would lose
``S - 1``; the numba backend sums such rows a second time for the ops that take
``log S``. These cases guard the cost of that second sum; softmax, which skips
it, is the control.
"""

# asv reads params / param_names as class attributes holding lists.
# ruff: noqa: RUF012

from __future__ import annotations

from .common import BACKENDS, DTYPES, _VariantOp, _VariantPeers

CONFIDENT_OPS = [
    "softmax",
    "log_softmax",
    "logsumexp",
    "cross_entropy",
    "cross_entropy_with_grad",
]
CONFIDENT_SHAPES = ["65536x16", "16384x128", "8192x1000", "256x32000", "32x10"]


class Confident(_VariantOp):
    variant = "confident"
    params = [CONFIDENT_OPS, BACKENDS, CONFIDENT_SHAPES, DTYPES]


class ConfidentPeers(_VariantPeers):
    """softcore / the peer on the same confident rows."""

    variant = "confident"
    params = [CONFIDENT_OPS, BACKENDS, CONFIDENT_SHAPES, DTYPES, ["torch", "jax"]]
