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

from .common import (
    BACKENDS,
    DTYPES,
    Case,
    _RatioToCopy,
    _RatioToPeer,
    _TimeOp,
    require_peer,
)

MASKED_OPS = [
    "softmax",
    "log_softmax",
    "logsumexp",
    "softmax_backward",
    "log_softmax_backward",
    "cross_entropy_with_grad",
]
MASKED_SHAPES = ["512x64", "64x512", "8192x1000", "32x10"]


class Masked(_TimeOp, _RatioToCopy):
    params = [MASKED_OPS, BACKENDS, MASKED_SHAPES, DTYPES]
    param_names = ["op", "backend", "shape", "dtype"]
    timeout = 300

    def setup(self, op, backend, shape, dtype):
        self.case = Case(op, "masked", backend, shape, dtype)


class MaskedPeers(_RatioToPeer):
    """softcore / the peer on the same masked logits."""

    params = [MASKED_OPS, BACKENDS, MASKED_SHAPES, DTYPES, ["torch", "jax"]]
    param_names = ["op", "backend", "shape", "dtype", "peer"]
    timeout = 300

    def setup(self, op, backend, shape, dtype, peer):
        require_peer(peer)
        self.case = Case(op, "masked", backend, shape, dtype)
