"""Vector-Jacobian products: softmax_backward and log_softmax_backward."""

# asv reads params / param_names as class attributes holding lists.
# ruff: noqa: RUF012

from __future__ import annotations

from .common import (
    BACKENDS,
    DTYPES,
    ROW_SHAPES,
    Case,
    _RatioToCopy,
    _RatioToPeer,
    _TimeOp,
    require_peer,
)


class Backward(_TimeOp, _RatioToCopy):
    params = [
        ["softmax_backward", "log_softmax_backward"],
        BACKENDS,
        ROW_SHAPES,
        DTYPES,
    ]
    param_names = ["op", "backend", "shape", "dtype"]
    timeout = 300

    def setup(self, op, backend, shape, dtype):
        self.case = Case(op, "alloc", backend, shape, dtype)


class BackwardPeers(_RatioToPeer):
    """softcore / ``torch._softmax_backward_data``; JAX: the same formula, jitted."""

    params = [
        ["softmax_backward", "log_softmax_backward"],
        BACKENDS,
        ROW_SHAPES,
        DTYPES,
        ["torch", "jax"],
    ]
    param_names = ["op", "backend", "shape", "dtype", "peer"]
    timeout = 300

    def setup(self, op, backend, shape, dtype, peer):
        require_peer(peer)
        self.case = Case(op, "alloc", backend, shape, dtype)
