"""Dense Jacobians ``(N, C, C)``: time and ratio to allocating and filling J once."""

# asv reads params / param_names as class attributes holding lists.
# ruff: noqa: RUF012

from __future__ import annotations

from .common import (
    BACKENDS,
    DTYPES,
    JACOBIAN_SHAPES,
    Case,
    _RatioToPeer,
    _TimeOp,
    require_peer,
)


class Jacobian(_TimeOp):
    params = [
        ["softmax_jacobian", "log_softmax_jacobian"],
        BACKENDS,
        JACOBIAN_SHAPES,
        DTYPES,
    ]
    param_names = ["op", "backend", "shape", "dtype"]
    timeout = 300

    def setup(self, op, backend, shape, dtype):
        self.case = Case(op, "alloc", backend, shape, dtype)

    def track_ratio_fill(self, *params):
        return self.case.ratio_to_floor()

    track_ratio_fill.unit = "ratio"


class JacobianPeers(_RatioToPeer):
    """softcore / the closed form written in the peer (not jacrev: far slower)."""

    params = [
        ["softmax_jacobian", "log_softmax_jacobian"],
        BACKENDS,
        JACOBIAN_SHAPES,
        DTYPES,
        ["torch", "jax"],
    ]
    param_names = ["op", "backend", "shape", "dtype", "peer"]
    timeout = 300

    def setup(self, op, backend, shape, dtype, peer):
        require_peer(peer)
        self.case = Case(op, "alloc", backend, shape, dtype)
