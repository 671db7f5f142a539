"""The backend protocol: what a plugin registered under ``softcore.backends`` provides.

The full contract, with every kernel's formula, is ``backends/README.md`` in the
source tree. In short: the core hands a backend C-contiguous ``(rows, C)`` arrays of
float32/float64 and preallocated outputs; a backend computes and writes, nothing else.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

KERNELS: tuple[str, ...] = (
    "softmax_rows",
    "log_softmax_rows",
    "logsumexp_rows",
    "softmax_jacobian_rows",
    "log_softmax_jacobian_rows",
    "softmax_backward_rows",
    "log_softmax_backward_rows",
    "cross_entropy_rows",
    "cross_entropy_grad_rows",
    "cross_entropy_prob_rows",
    "cross_entropy_prob_grad_rows",
)
"""Names of the row kernels every backend implements."""


@runtime_checkable
class Backend(Protocol):
    """A softcore backend.

    Attributes
    ----------
    name : str
        Registry name; equals the entry-point name.
    version : str
        Version of the distribution that provides it.
    priority : int
        Automatic selection takes the available backend with the highest priority
        that accepts the input array.
    threaded : bool
        Whether kernels use several threads; the conformance kit then checks that
        results are bitwise equal for every thread count.
    xp : module
        The array module of the arrays the kernels take (``numpy``, ``cupy``).

    Optional, looked up with ``getattr`` (see ``backends/README.md``):
    ``linear_chunk_rows(n_classes, n_features, itemsize)``, rows per chunk of
    linear cross-entropy; ``cross_entropy_index_sum(x, target, class_weight,
    ignore_index, smoothing)``, a small loss-only class-index call in one step,
    returning ``(bad_row, total, normaliser)`` or None to decline;
    ``cross_entropy_index_grad_sum(x, target, class_weight, ignore_index,
    smoothing, mean, grad_out)``, the same with its gradient written into
    ``grad_out`` (nothing written for a bad row or to decline);
    ``precompile(jobs=None)``, compile every kernel into the on-disk cache ahead of
    first use (``python -m softcore warmup``), returning a line of what it did;
    ``cast(src, dst)``, float16 or bfloat16 to or from float32 in NumPy's and
    ml_dtypes' bits, returning False (nothing written) to decline;
    ``low_precision_rows(kernel, args, out)``, a float16 or bfloat16 softmax,
    log_softmax, logsumexp, backward pass or cross-entropy (loss rows, and
    gradient; class-index or probability targets) in its own dtype, or False
    to decline.
    """

    name: str
    version: str
    priority: int
    threaded: bool

    @property
    def xp(self) -> Any: ...

    def available(self) -> bool | str:
        """``True``, or a short reason why the backend cannot run here."""
        ...

    def accepts(self, x: Any) -> bool:
        """Whether ``x``'s array type is one this backend computes on (cheap)."""
        ...

    def softmax_rows(self, x: Any, out: Any) -> None: ...
    def log_softmax_rows(self, x: Any, out: Any) -> None: ...
    def logsumexp_rows(self, x: Any, out: Any) -> None: ...
    def softmax_jacobian_rows(self, x: Any, out: Any) -> None: ...
    def log_softmax_jacobian_rows(self, x: Any, out: Any) -> None: ...
    def softmax_backward_rows(self, grad: Any, probs: Any, out: Any) -> None: ...
    def log_softmax_backward_rows(
        self, grad: Any, log_probs: Any, out: Any
    ) -> None: ...
    def cross_entropy_rows(
        self,
        x: Any,
        target: Any,
        alpha: Any,
        beta: Any,
        class_weight: Any,
        loss_out: Any,
    ) -> None: ...
    def cross_entropy_grad_rows(
        self,
        x: Any,
        target: Any,
        alpha: Any,
        beta: Any,
        class_weight: Any,
        grad_scale: float,
        loss_out: Any,
        grad_out: Any,
    ) -> None: ...
    def cross_entropy_prob_rows(
        self,
        x: Any,
        target: Any,
        smoothing: float,
        class_weight: Any,
        loss_out: Any,
    ) -> None: ...
    def cross_entropy_prob_grad_rows(
        self,
        x: Any,
        target: Any,
        smoothing: float,
        class_weight: Any,
        grad_scale: float,
        loss_out: Any,
        grad_out: Any,
    ) -> None: ...
