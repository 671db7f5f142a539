"""softmax, log_softmax and logsumexp: time, ratio to np.copyto, ratio to peers."""

# asv reads params / param_names as class attributes holding lists.
# ruff: noqa: RUF012

from __future__ import annotations

from .common import (
    BACKENDS,
    DTYPES,
    LOW_DTYPES,
    LOW_SHAPES,
    ROW_SHAPES,
    Case,
    _RatioToCopy,
    _RatioToPeer,
    _TimeOp,
    peer_supported,
    require_dtype,
    require_peer,
)


class Softmax(_TimeOp, _RatioToCopy):
    """softmax / log_softmax, into a preallocated ``out=`` and allocating."""

    params = [
        ["softmax", "log_softmax"],
        ["out", "alloc"],
        BACKENDS,
        ROW_SHAPES,
        DTYPES,
    ]
    param_names = ["op", "variant", "backend", "shape", "dtype"]
    timeout = 300

    def setup(self, op, variant, backend, shape, dtype):
        self.case = Case(op, variant, backend, shape, dtype)


class LogSumExp(_RatioToCopy):
    params = [BACKENDS, ROW_SHAPES, DTYPES]
    param_names = ["backend", "shape", "dtype"]
    timeout = 300

    def setup(self, backend, shape, dtype):
        self.case = Case("logsumexp", "alloc", backend, shape, dtype)

    def time_logsumexp(self, *params):
        self.case.call()


class SoftmaxPeers(_RatioToPeer):
    """softcore's time / the peer's time for the same call (PyTorch, JAX)."""

    params = [
        ["softmax", "log_softmax", "logsumexp"],
        ["out", "alloc"],
        BACKENDS,
        ROW_SHAPES,
        DTYPES,
        ["torch", "jax"],
    ]
    param_names = ["op", "variant", "backend", "shape", "dtype", "peer"]
    timeout = 300

    def setup(self, op, variant, backend, shape, dtype, peer):
        require_peer(peer)
        peer_supported(op, variant, peer)
        self.case = Case(op, variant, backend, shape, dtype)


class SoftmaxLowPrecision(_TimeOp, _RatioToCopy):
    """float16 and bfloat16 softmax / log_softmax (computed in float32): time,
    and the ratio to ``np.copyto`` of the 16-bit array."""

    params = [["softmax", "log_softmax"], BACKENDS, LOW_SHAPES, LOW_DTYPES]
    param_names = ["op", "backend", "shape", "dtype"]
    timeout = 300

    def setup(self, op, backend, shape, dtype):
        require_dtype(dtype)
        self.case = Case(op, "alloc", backend, shape, dtype)


class SoftmaxLowPrecisionPeers(_RatioToPeer):
    """softcore's 16-bit softmax / log_softmax time / PyTorch's 16-bit call's."""

    params = [["softmax", "log_softmax"], BACKENDS, LOW_SHAPES, LOW_DTYPES, ["torch"]]
    param_names = ["op", "backend", "shape", "dtype", "peer"]
    timeout = 300

    def setup(self, op, backend, shape, dtype, peer):
        require_dtype(dtype)
        require_peer(peer)
        self.case = Case(op, "alloc", backend, shape, dtype)
