"""Cross-entropy: loss, gradient, fused loss+gradient, with and without options."""

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
    _PeakExtraMemory,
    _RatioToCopy,
    _RatioToPeer,
    _TimeOp,
    peer_supported,
    require_dtype,
    require_peer,
)

OPS = ["cross_entropy", "cross_entropy_grad", "cross_entropy_with_grad"]
#: plain: class-index targets, no option; the others as in ``softcore._bench``:
#: per-class weights, label_smoothing=0.1, 10% of targets ignored (ignore_index),
#: probability targets, weights + smoothing + ignore_index together, and ``out``:
#: plain inputs with the gradient written into a preallocated array.
OPTIONS = ["weight", "smoothing", "ignore", "prob", "all", "out"]


class CrossEntropy(_TimeOp, _RatioToCopy):
    params = [OPS, BACKENDS, ROW_SHAPES, DTYPES]
    param_names = ["op", "backend", "shape", "dtype"]
    timeout = 300

    def setup(self, op, backend, shape, dtype):
        self.case = Case(op, "plain", backend, shape, dtype)


class CrossEntropyOptions(_RatioToCopy):
    """The fused loss+gradient with each option of ``F.cross_entropy``."""

    params = [OPTIONS, BACKENDS, ROW_SHAPES, DTYPES]
    param_names = ["variant", "backend", "shape", "dtype"]
    timeout = 300

    def setup(self, variant, backend, shape, dtype):
        self.case = Case("cross_entropy_with_grad", variant, backend, shape, dtype)

    def time_with_grad(self, *params):
        self.case.call()


class CrossEntropyPeers(_RatioToPeer):
    """softcore / ``F.cross_entropy`` forward (+ backward for the gradient ops)."""

    params = [OPS, ["plain", *OPTIONS], BACKENDS, ROW_SHAPES, DTYPES, ["torch", "jax"]]
    param_names = ["op", "variant", "backend", "shape", "dtype", "peer"]
    timeout = 300

    def setup(self, op, variant, backend, shape, dtype, peer):
        require_peer(peer)
        peer_supported(op, variant, peer)
        if op != "cross_entropy_with_grad" and variant != "plain":
            raise NotImplementedError("options are benchmarked on the fused op")
        self.case = Case(op, variant, backend, shape, dtype)


class CrossEntropyLowPrecision(_TimeOp, _PeakExtraMemory):
    """float16 and bfloat16 class-index cross-entropy (computed in float32):
    time, and the peak extra memory of one call (a float32 copy of the logits,
    or a float32 gradient beside the 16-bit one, would show there)."""

    params = [["cross_entropy", "cross_entropy_with_grad"], BACKENDS, LOW_SHAPES]
    params += [LOW_DTYPES]
    param_names = ["op", "backend", "shape", "dtype"]
    timeout = 300

    def setup(self, op, backend, shape, dtype):
        require_dtype(dtype)
        self.case = Case(op, "plain", backend, shape, dtype)
