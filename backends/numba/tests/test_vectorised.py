"""The exp/log loops and the row kernels compile to SIMD code.

numba lowers ``np.exp`` to a scalar libm call; these tests read the generated
x86 assembly (of fresh, uncached compilations: numba cannot show cached code)
and check that our loops use packed FMAs instead and call no libm
``exp``/``log``. Skipped on CPUs without AVX2.

The vector width is LLVM's choice for the host CPU: a loop that reads float64
and computes in float32 runs 8 lanes (ymm) on Intel cores but 4 (float64 in
ymm, float32 in xmm) on AMD Zen 3, so any packed register counts.
"""

import platform
import re

import llvmlite.binding as llvm
import numba
import numpy as np
import pytest
from numba import njit

from softcore_numba import _kernels as K
from softcore_numba._vexp import exp32, exp64, log64


@njit
def _map_exp64(x, out):
    for i in range(x.size):
        out[i] = exp64(x[i])


@njit
def _map_log64(x, out):
    for i in range(x.size):
        out[i] = log64(x[i])


@njit
def _map_exp32(x, out):
    for i in range(x.size):
        out[i] = exp32(x[i])


pytestmark = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64")
    or "+avx2" not in llvm.get_host_cpu_features().flatten(),
    reason="needs an x86-64 CPU with AVX2",
)


def _asm(dispatcher):
    (sig,) = dispatcher.signatures[:1]
    return dispatcher.inspect_asm(sig)


def _packed_fma(asm, suffix):
    return re.findall(rf"vfn?m(?:add|sub)\d+{suffix}\s+[^\n]*%[xyz]mm", asm)


def _libm_calls(asm):
    return re.findall(r"call\w*\s+[^\n]*\b(?:exp|expf|log|logf)\b", asm)


@pytest.mark.parametrize(
    ("kernel", "dtype", "suffix"),
    [
        (_map_exp64, np.float64, "pd"),
        (_map_log64, np.float64, "pd"),
        (_map_exp32, np.float32, "ps"),
    ],
    ids=["exp64", "log64", "exp32"],
)
def test_building_blocks_vectorise(kernel, dtype, suffix):
    x = np.linspace(-5, 5, 64).astype(dtype)
    out = np.empty(64, dtype)
    kernel(np.abs(x) if kernel is _map_log64 else x, out)
    asm = _asm(kernel)
    assert len(_packed_fma(asm, suffix)) >= 8, "no packed FMA: the loop is scalar"
    assert not _libm_calls(asm)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "name",
    ["softmax_ser", "log_softmax_ser", "logsumexp_ser", "cross_entropy_grad_ser"],
)
def test_row_kernels_vectorise(name, dtype):
    x = np.linspace(-3, 3, 40).astype(dtype).reshape(4, 10)
    kernel = njit(getattr(K, name).py_func)  # fresh: cached code is not inspectable
    if name == "logsumexp_ser":
        kernel(x, np.empty(4, dtype))
    elif name == "cross_entropy_grad_ser":
        kernel(
            x,
            np.zeros(4, np.int64),
            np.ones(4),
            np.zeros(4),
            np.ones(10),
            1.0,
            np.empty(4),
            np.empty_like(x),
        )
    else:
        kernel(x, np.empty_like(x))
    asm = "\n".join(
        kernel.inspect_asm(s)
        for s in kernel.signatures
        if s[0].dtype == numba.from_dtype(np.dtype(dtype))
    )
    suffix = "pd" if dtype == np.float64 else "p[sd]"
    assert len(_packed_fma(asm, suffix)) >= 8, f"{name}: no packed FMA"
    assert not _libm_calls(asm), f"{name}: calls libm exp/log"


def _fresh(name, dtype):
    """A fresh compilation of driver ``name`` (cached code is not inspectable),
    run once on a small float ``dtype`` input."""
    x = np.linspace(-3, 3, 40).astype(dtype).reshape(4, 10)
    kernel = njit(getattr(K, name).py_func)
    if name == "logsumexp_ser":
        kernel(x, np.empty(4, dtype))
    elif name == "cross_entropy_ser":
        t = np.zeros(4, np.int64)
        kernel(x, t, np.ones(4), np.zeros(4), np.ones(10), np.empty(4))
    else:
        kernel(x, np.empty_like(x))
    return kernel


def test_kernels_ask_for_wide_vectors_and_nothing_else_does():
    kernel = _fresh("logsumexp_ser", np.float32)
    ir = "\n".join(kernel.inspect_llvm(s) for s in kernel.signatures)
    assert '"prefer-vector-width"="512"' in ir

    @njit
    def other(a):  # a user's function in the same process keeps LLVM's choice
        s = 0.0
        for v in a:
            s += v
        return s

    other(np.ones(4))
    assert "prefer-vector-width" not in other.inspect_llvm(other.signatures[0])


@pytest.mark.skipif(
    "+avx512f" not in llvm.get_host_cpu_features().flatten(),
    reason="needs a CPU with AVX-512 (zmm registers)",
)
@pytest.mark.parametrize(
    "name", ["softmax_ser", "log_softmax_ser", "logsumexp_ser", "cross_entropy_ser"]
)
def test_float32_exp_runs_in_512_bit_lanes(name):
    # log_softmax, logsumexp and the loss sum exp(x - m) in float64: fused in one
    # loop, the float64 sum would hold the float32 exp to 8 lanes (ymm), or to 4
    # (xmm) where LLVM prefers 256-bit vectors. Only a float32 FMA on zmm shows
    # that the exp runs 16 lanes wide.
    kernel = _fresh(name, np.float32)
    asm = "\n".join(kernel.inspect_asm(s) for s in kernel.signatures)
    zmm_ps = re.findall(r"vfn?m(?:add|sub)\d+ps\s+[^\n]*%zmm", asm)
    assert len(zmm_ps) >= 8, f"{name}: the float32 exp is narrower than 16 lanes"
