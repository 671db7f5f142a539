"""Compile the kernel source with NVRTC directly, without CuPy or a GPU.

CuPy needs a CUDA driver even to compile, so the device-free check calls the NVRTC
library itself through ctypes, with the options CuPy adds for a ``RawModule``. The
library comes from the ``nvidia-cuda-nvrtc-cu12`` wheel (or any CUDA toolkit).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import re
import sys
from dataclasses import dataclass

from softcore_cupy._kernels import KERNEL_NAMES, NVRTC_OPTIONS, kernel_source

#: What CuPy appends to the options of every RawModule compiled with NVRTC.
CUPY_ADDED_OPTIONS = ("--device-as-default-execution-space", "-ftz=true")

#: Virtual architectures checked by default: Turing, Ampere, Hopper.
DEFAULT_ARCHS = ("75", "80", "90")


@dataclass
class CompileResult:
    arch: str
    ok: bool
    log: str
    missing: list[str]


def find_nvrtc() -> str | None:
    """Path of a loadable libnvrtc, or None."""
    env = os.environ.get("SOFTCORE_NVRTC")
    if env:
        return env
    candidates: list[str] = []
    for base in sys.path:
        for pat in (
            "nvidia/cuda_nvrtc/lib/libnvrtc.so*",
            "nvidia/cu*/lib/libnvrtc.so*",
        ):
            candidates += sorted(glob.glob(os.path.join(base, pat)))
    for home in (
        os.environ.get("CUDA_HOME"),
        os.environ.get("CUDA_PATH"),
        "/usr/local/cuda",
    ):
        if home:
            candidates += sorted(glob.glob(os.path.join(home, "lib64", "libnvrtc.so*")))
    # the plain library first; skip the "alt" and builtins variants
    candidates = [c for c in candidates if re.search(r"/libnvrtc\.so(\.\d+)*$", c)]
    if candidates:
        return candidates[0]
    return ctypes.util.find_library("nvrtc")


def load_nvrtc() -> ctypes.CDLL:
    path = find_nvrtc()
    if path is None:
        raise OSError(
            "libnvrtc not found: pip install nvidia-cuda-nvrtc-cu12 "
            "(or set SOFTCORE_NVRTC to the library's path)"
        )
    return ctypes.CDLL(path)


def nvrtc_version(lib: ctypes.CDLL) -> tuple[int, int]:
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    return major.value, minor.value


def compile_source(
    lib: ctypes.CDLL, source: str, arch: str, options: tuple[str, ...]
) -> tuple[bool, str, str]:
    """Compile ``source`` to PTX for ``compute_<arch>``: (ok, log, ptx)."""
    prog = ctypes.c_void_p()
    rc = lib.nvrtcCreateProgram(
        ctypes.byref(prog), source.encode(), b"kernels.cu", 0, None, None
    )
    if rc != 0:
        raise RuntimeError(f"nvrtcCreateProgram failed with status {rc}")
    try:
        opts = [*options, *CUPY_ADDED_OPTIONS, f"-arch=compute_{arch}"]
        argv = (ctypes.c_char_p * len(opts))(*(o.encode() for o in opts))
        rc = lib.nvrtcCompileProgram(prog, len(opts), argv)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, buf)
        log = buf.value.decode(errors="replace")
        ptx = ""
        if rc == 0:
            lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
            pbuf = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetPTX(prog, pbuf)
            ptx = pbuf.value.decode(errors="replace")
        return rc == 0, log, ptx
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def check(archs: tuple[str, ...] = DEFAULT_ARCHS) -> list[CompileResult]:
    """Compile the shipped source for each arch; report errors and missing entries."""
    lib = load_nvrtc()
    source = kernel_source()
    results = []
    for arch in archs:
        ok, log, ptx = compile_source(lib, source, arch, NVRTC_OPTIONS)
        entries = set(re.findall(r"\.entry\s+(\w+)", ptx))
        missing = [] if not ok else [k for k in KERNEL_NAMES if k not in entries]
        results.append(CompileResult(arch, ok and not missing, log.strip(), missing))
    return results
