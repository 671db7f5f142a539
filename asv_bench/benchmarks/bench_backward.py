"""Vector-Jacobian products: softmax_backward and log_softmax_backward."""

# asv reads params / param_names as class attributes holding lists.
# ruff: noqa: RUF012

from __future__ import annotations

from .common import BACKENDS, DTYPES, ROW_SHAPES, Case, require_peer


class Backward:
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

    def time_op(self, *params):
        self.case.call()

    def track_ratio_copy(self, *params):
        return self.case.ratio_to_floor()

    track_ratio_copy.unit = "ratio"


class BackwardPeers:
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

    def track_ratio_peer(self, op, backend, shape, dtype, peer):
        return self.case.ratio_to_peer(peer)

    track_ratio_peer.unit = "ratio"
