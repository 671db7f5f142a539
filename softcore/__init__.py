"""softcore: softmax and everything around it, on batches, behind one NumPy-style API.

See ``README.md`` for the API and backend tables; every function's docstring states
its formula, shapes, dtypes and errors.
"""

from __future__ import annotations

__version__ = "0.1.0"

from softcore._api import (
    cross_entropy,
    cross_entropy_grad,
    cross_entropy_with_grad,
    linear_cross_entropy,
    linear_cross_entropy_with_grad,
    log_softmax,
    log_softmax_backward,
    log_softmax_jacobian,
    logsumexp,
    softmax,
    softmax_backward,
    softmax_jacobian,
)
from softcore._registry import (
    BackendError,
    BackendInfo,
    BackendNotFoundError,
    BackendUnavailableError,
    get_backend,
    list_backends,
    set_backend,
    use_backend,
)
from softcore._workspace import release_scratch

__all__ = [
    "BackendError",
    "BackendInfo",
    "BackendNotFoundError",
    "BackendUnavailableError",
    "__version__",
    "cross_entropy",
    "cross_entropy_grad",
    "cross_entropy_with_grad",
    "get_backend",
    "linear_cross_entropy",
    "linear_cross_entropy_with_grad",
    "list_backends",
    "log_softmax",
    "log_softmax_backward",
    "log_softmax_jacobian",
    "logsumexp",
    "release_scratch",
    "set_backend",
    "softmax",
    "softmax_backward",
    "softmax_jacobian",
    "use_backend",
]
