"""The backend object registered as ``cupy`` (see backends/README.md)."""

from __future__ import annotations

import functools
from typing import Any

from softcore_cupy import _kernels

# Extra device memory a linear cross-entropy chunk may take: the (chunk, C) logits
# buffer, which the gradient overwrites in place.
_CHUNK_BYTES = 256 << 20
_CHUNK_MIN, _CHUNK_MAX, _CHUNK_ALIGN = 128, 16384, 128


@functools.cache
def _is_cupy_type(cls: type) -> bool:
    return (cls.__module__ or "").split(".", 1)[0] == "cupy"


def _check_available() -> bool | str:
    try:
        import cupy
    except ImportError:
        return "cupy not installed"
    except Exception as exc:  # a broken install: say what broke
        return f"cupy failed to import: {type(exc).__name__}: {exc}"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, insufficient driver, ...
        return f"no CUDA device ({type(exc).__name__}: {exc})"
    if n < 1:
        return "no CUDA device"
    return True


class CupyBackend:
    """Row kernels on CuPy arrays, compiled by NVRTC on first use per device.

    Outputs stay on the inputs' device and are written on CuPy's current stream;
    nothing goes through the host. ``threaded`` is False: a GPU kernel's result does
    not depend on a host thread count, and every row's sums are formed in an order
    fixed by the row length alone (no atomics), which the tests check by repeated
    calls and by comparing rows computed in different batches.
    """

    name = "cupy"
    priority = 100
    threaded = False

    @property
    def version(self) -> str:
        from softcore_cupy import __version__

        return __version__

    @property
    def xp(self) -> Any:
        import cupy

        return cupy

    def available(self) -> bool | str:
        return _check_available()

    def accepts(self, x: Any) -> bool:
        return _is_cupy_type(type(x))

    def describe(self) -> dict[str, str]:
        """CuPy's version, the current device and CUDA runtime, and where CuPy
        keeps compiled kernels, for ``python -m softcore info``."""
        import os

        import cupy

        device = cupy.cuda.Device().id
        props = cupy.cuda.runtime.getDeviceProperties(device)
        name = props.get("name", b"?")
        name = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
        what = f"{device}: {name}"
        if "major" in props:
            what += f", compute capability {props['major']}.{props.get('minor', 0)}"
        if "totalGlobalMem" in props:
            what += f", {props['totalGlobalMem'] / 2**30:.1f} GiB"
        runtime = cupy.cuda.runtime.runtimeGetVersion()  # e.g. 12080 for 12.8
        cache = os.environ.get("CUPY_CACHE_DIR") or os.path.join(
            os.path.expanduser("~"), ".cupy", "kernel_cache"
        )
        return {
            "cupy": cupy.__version__,
            "device": what,
            "CUDA runtime": f"{runtime // 1000}.{runtime % 1000 // 10}",
            "kernel cache": cache,
        }

    def precompile(self, jobs: int | None = None) -> str:
        """Compile kernels.cu for the current device with NVRTC (CuPy keeps the
        binary in its kernel cache, so a later process loads it); ``jobs`` is
        unused: one module, one compile."""
        import cupy

        device = cupy.cuda.Device().id
        _kernels._module(device)
        return f"{len(_kernels.KERNEL_NAMES)} kernels compiled for device {device}"

    def linear_chunk_rows(self, n_classes: int, n_features: int, itemsize: int) -> int:
        """Rows per linear cross-entropy chunk: a (rows, C) buffer of about 256 MiB.

        Large enough that the chunk's GEMMs run at cuBLAS speed, small enough that
        peak extra memory is bounded by the chunk, not by N x C.
        """
        rows = _CHUNK_BYTES // max(1, n_classes * itemsize)
        rows = rows // _CHUNK_ALIGN * _CHUNK_ALIGN
        return int(min(_CHUNK_MAX, max(_CHUNK_MIN, rows)))

    def linear_grad_accumulate(
        self, grad: Any, x: Any, d_weight: Any, d_bias: Any, first: bool
    ) -> None:
        """``d_weight (+)= grad.T @ x`` and ``d_bias (+)= grad.sum(0)`` in cuBLAS.

        CuPy compiles its own kernels with ``-ftz=true``, so ``d_weight += part`` or
        ``grad.sum(0)`` on float32 would flush subnormal terms and sums to zero. A
        GEMM with ``beta = 1`` accumulates in place instead (and needs no temporary
        block beside ``d_weight``); the bias gradient is ``grad.T @ ones``.
        """
        import cupy
        from cupy import cublas

        beta = 0.0 if first else 1.0
        cublas.gemm("T", "N", grad, x, out=d_weight, beta=beta)
        if d_bias is not None:
            ones = cupy.ones((grad.shape[0], 1), dtype=grad.dtype)
            cublas.gemm("T", "N", grad, ones, out=d_bias.reshape(-1, 1), beta=beta)

    softmax_rows = staticmethod(_kernels.softmax_rows)
    log_softmax_rows = staticmethod(_kernels.log_softmax_rows)
    logsumexp_rows = staticmethod(_kernels.logsumexp_rows)
    logsumexp_weighted_rows = staticmethod(_kernels.logsumexp_weighted_rows)
    softmax_jacobian_rows = staticmethod(_kernels.softmax_jacobian_rows)
    log_softmax_jacobian_rows = staticmethod(_kernels.log_softmax_jacobian_rows)
    softmax_backward_rows = staticmethod(_kernels.softmax_backward_rows)
    log_softmax_backward_rows = staticmethod(_kernels.log_softmax_backward_rows)
    cross_entropy_rows = staticmethod(_kernels.cross_entropy_rows)
    cross_entropy_grad_rows = staticmethod(_kernels.cross_entropy_grad_rows)
    cross_entropy_prob_rows = staticmethod(_kernels.cross_entropy_prob_rows)
    cross_entropy_prob_grad_rows = staticmethod(_kernels.cross_entropy_prob_grad_rows)
    cross_entropy_index_rows = staticmethod(_kernels.cross_entropy_index_rows)

    def __repr__(self) -> str:
        return "<softcore backend 'cupy' (softcore-cupy)>"


backend = CupyBackend()
