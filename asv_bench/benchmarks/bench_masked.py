"""Masked logits: every row op under a causal attention mask.

Row ``i`` keeps its first ``i % C + 1`` classes and holds ``-inf`` in the rest
(the bench command's ``masked`` variant): what softmax over attention scores,
or over a vocabulary padded to a round size, sees. An exp that works out the
masked lanes' zeros through subnormal arithmetic pays a microcode assist on
each of them, so these cases guard what the unmasked ones cannot show.
"""

# asv reads params / param_names as class attributes holding lists.
# ruff: noqa: RUF012

from __future__ import annotations

from .common import BACKENDS, DTYPES, _VariantOp, _VariantPeers

MASKED_OPS = [
    "softmax",
    "log_softmax",
    "logsumexp",
    "softmax_backward",
    "log_softmax_backward",
    "cross_entropy_with_grad",
]
MASKED_SHAPES = ["512x64", "64x512", "8192x1000", "32x10"]


class Masked(_VariantOp):
    variant = "masked"
    params = [MASKED_OPS, BACKENDS, MASKED_SHAPES, DTYPES]


class MaskedPeers(_VariantPeers):
    """softcore / the peer on the same masked logits."""

    variant = "masked"
    params = [MASKED_OPS, BACKENDS, MASKED_SHAPES, DTYPES, ["torch", "jax"]]
