"""Linear cross-entropy: time, ratio to its three GEMMs, peak memory, PyTorch."""

# asv reads params / param_names as class attributes holding lists.
# ruff: noqa: RUF012

from __future__ import annotations

from .common import (
    BACKENDS,
    DTYPES,
    LINEAR_SHAPES,
    Case,
    _PeakExtraMemory,
    _RatioToPeer,
    _TimeOp,
    require_peer,
)

OPS = ["linear_cross_entropy", "linear_cross_entropy_with_grad"]


class LinearCrossEntropy(_TimeOp, _PeakExtraMemory):
    """``variant``: ``plain`` allocates the gradients each call; ``out`` writes them
    into ``out=(dX, dW, None)`` kept across calls, as a training loop would
    (``linear_cross_entropy_with_grad`` only: the loss alone has no ``out``)."""

    params = [OPS, ["plain", "out"], BACKENDS, LINEAR_SHAPES, DTYPES]
    param_names = ["op", "variant", "backend", "shape", "dtype"]
    timeout = 1200

    def setup(self, op, variant, backend, shape, dtype):
        self.case = Case(op, variant, backend, shape, dtype)

    def track_ratio_gemm(self, *params):
        """time / (X @ W.T, G @ W, G.T @ X) into preallocated outputs."""
        return self.case.ratio_to_floor()

    track_ratio_gemm.unit = "ratio"

    def peakmem_op(self, *params):
        # asv's peakmem is the process's maximum RSS, inputs included;
        # track_peak_extra_mib isolates the call itself.
        self.case.call()


class LinearCrossEntropyPeers(_RatioToPeer):
    """softcore / ``F.linear_cross_entropy``: reference path (``options=None``) and
    chunked (``options=torch.nn.LinearCrossEntropyOptions()``); JAX: linear + CE,
    jitted."""

    params = [OPS, BACKENDS, LINEAR_SHAPES, DTYPES, ["torch", "torch-chunked", "jax"]]
    param_names = ["op", "backend", "shape", "dtype", "peer"]
    timeout = 1200

    def setup(self, op, backend, shape, dtype, peer):
        require_peer(peer)
        self.case = Case(op, "plain", backend, shape, dtype)

    def track_peer_peak_extra_mib(self, op, backend, shape, dtype, peer):
        """The peer's own peak extra memory (same method as softcore's)."""
        if peer == "jax":
            return float("nan")  # measured for PyTorch only
        from softcore import _bench

        mib, method = _bench.peak_extra_mib(
            self.case.op, "plain", self.case.shape, dtype, peer, 0
        )
        if mib is None:
            raise RuntimeError(f"memory measurement failed: {method}")
        return mib

    track_peer_peak_extra_mib.unit = "MiB"
