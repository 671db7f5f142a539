"""Build kernels.cu for the host (see host_cuda.h) and launch it like CuPy would.

:func:`emulated` patches ``softcore_cupy._kernels`` so that its real launch code
(variant and layout choice, argument packing) drives the host build, with NumPy
arrays dressed as CuPy arrays (``.data.ptr``, ``.device``).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import types
from pathlib import Path

import numpy as np

from softcore_cupy import _kernels

HERE = Path(__file__).resolve().parent


class _Device:
    """The one emulated device: a context manager, equal to any other handle on it
    (as CuPy's devices compare by id)."""

    id = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __eq__(self, other):
        return isinstance(other, _Device) and other.id == self.id

    def __hash__(self):
        return hash(self.id)


class _Data:
    def __init__(self, ptr: int):
        self.ptr = ptr


class EmuArray(np.ndarray):
    """A NumPy array that answers ``.data.ptr`` and ``.device`` as CuPy's does."""

    @property
    def data(self):  # type: ignore[override]
        return _Data(self.ctypes.data)

    @property
    def device(self):  # type: ignore[override]
        return _Device()


def dev(a: np.ndarray) -> EmuArray:
    return np.asarray(a).view(EmuArray)


def compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++"))


def _cluster_of(name: str) -> int:
    """Blocks of a cluster a kernel is compiled for: a split-row kernel's ``_c<CL>``
    suffix (its ``__cluster_dims__``), else 1."""
    if name.startswith("sc_split_"):
        return int(name.rsplit("_c", 1)[1])
    return 1


def build(cache_dir: Path | None = None, defines: tuple[str, ...] = ()) -> ctypes.CDLL:
    """The host build of kernels.cu (cached by its text), with ``defines`` (NVRTC's
    ``-DNAME=VALUE`` options, as ``_kernels.compile_options`` gives them)."""
    cxx = compiler()
    if cxx is None:
        raise OSError("no C++ compiler (g++) to build the host emulation")
    src = _kernels.kernel_source()
    header = (HERE / "host_cuda.h").read_text()
    names = _kernels.KERNEL_NAMES
    table = "\n".join(
        f'    if (!std::strcmp(name, "{n}"))'
        f" {{ emu_launch({n}, g, b, args, shm, {_cluster_of(n)}); return 0; }}"
        for n in names
    )
    harness = (
        '#include "host_cuda.h"\n'
        '#include "kernels.cu"\n'
        'extern "C" int sc_emulate(const char* name, unsigned gx, unsigned gy,\n'
        "                          unsigned bx, unsigned by, void** args,\n"
        "                          unsigned shm) {\n"
        "    dim3 g{gx, gy, 1}, b{bx, by, 1};\n"
        f"{table}\n"
        "    return -1;\n"
        "}\n"
        'extern "C" void sc_emulate_reverse(int r) { g_reverse = r; }\n'
    )
    key = hashlib.sha256(
        (src + header + harness + "\n".join(defines)).encode()
    ).hexdigest()[:16]
    cache_dir = Path(cache_dir or tempfile.gettempdir()) / "softcore-cupy-emu"
    cache_dir.mkdir(parents=True, exist_ok=True)
    lib = cache_dir / f"emu-{key}.so"
    if not lib.exists():
        with tempfile.TemporaryDirectory() as tmp:
            t = Path(tmp)
            (t / "kernels.cu").write_text(src)
            (t / "host_cuda.h").write_text(header)
            (t / "harness.cpp").write_text(harness)
            out = t / "emu.so"
            cmd = [
                cxx,
                "-std=c++20",
                "-O1",
                "-shared",
                "-fPIC",
                "-pthread",
                *defines,
                "-x",
                "c++",
                str(t / "harness.cpp"),
                "-o",
                str(out),
            ]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError("host build of kernels.cu failed:\n" + res.stderr)
            shutil.move(str(out), lib)
    dll = ctypes.CDLL(str(lib))
    dll.sc_emulate.restype = ctypes.c_int
    dll.sc_emulate.argtypes = [
        ctypes.c_char_p,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.POINTER(ctypes.c_void_p),
        ctypes.c_uint,
    ]
    dll.sc_emulate_reverse.restype = None
    dll.sc_emulate_reverse.argtypes = [ctypes.c_int]
    return dll


@contextlib.contextmanager
def reverse_order(dll: ctypes.CDLL, order: int = 1):
    """Launches in which a block's last thread takes the first turn (host_cuda.h's
    g_reverse; ``order=2``: a cluster's last block first, threads in order)."""
    dll.sc_emulate_reverse(order)
    try:
        yield
    finally:
        dll.sc_emulate_reverse(0)


# What the emulated device answers, as an H100 or H200 does (cudaDevAttr numbers:
# threads, shared memory and registers per SM, a block's shared-memory opt-in), and its
# kernels: the row kernels' static shared memory is their 64 doubles, and ptxas gives
# the widest of them 64 registers a thread.
DEVICE_ATTRIBUTES = {39: 2048, 81: 233472, 82: 65536, 97: 232448}
STATIC_SHARED = 512


class _EmuFunction:
    shared_size_bytes = STATIC_SHARED
    num_regs = 64

    def __init__(self, dll: ctypes.CDLL, name: str):
        self.dll, self.name = dll, name
        self.max_dynamic_shared_size_bytes = 48 * 1024 - STATIC_SHARED

    def __call__(self, grid, block, args, shared_mem=0):
        if shared_mem > self.max_dynamic_shared_size_bytes:  # as a GPU refuses it
            raise RuntimeError(
                f"{self.name}: {shared_mem} bytes of dynamic shared memory, "
                f"{self.max_dynamic_shared_size_bytes} allowed"
            )
        keep = []
        ptrs = (ctypes.c_void_p * len(args))()
        for i, a in enumerate(args):
            if isinstance(a, np.ndarray):
                assert a.flags.c_contiguous, f"{self.name}: argument {i} not contiguous"
                c = ctypes.c_void_p(a.ctypes.data)
            elif isinstance(a, np.int64):
                c = ctypes.c_longlong(int(a))
            elif isinstance(a, np.float64):
                c = ctypes.c_double(float(a))
            else:
                raise TypeError(f"{self.name}: argument {i} of type {type(a)}")
            keep.append(c)
            ptrs[i] = ctypes.cast(ctypes.pointer(c), ctypes.c_void_p)
        rc = self.dll.sc_emulate(
            self.name.encode(), grid[0], grid[1], block[0], block[1], ptrs, shared_mem
        )
        assert rc == 0, f"unknown kernel {self.name}"


_patch_lock = threading.Lock()
_patch_depth = 0
_saved: tuple = ()


@contextlib.contextmanager
def emulated(dll: ctypes.CDLL):
    """Route softcore_cupy._kernels' launches to the host build.

    Reentrant and safe across threads (the kit's concurrent-calls property calls a
    kernel from several at once): the first entry patches, the last exit restores.
    A thread-unsafe version let one thread's exit pull ``cupy`` from under another
    thread's launch sequence (cross_entropy_index_rows imports it between launches).
    """
    global _patch_depth, _saved
    with _patch_lock:
        if _patch_depth == 0:
            fake_cupy = types.ModuleType("cupy")
            fake_cupy.float64 = np.float64
            fake_cupy.empty = lambda shape, dtype: dev(np.empty(shape, dtype))
            fake_cupy.cuda = types.SimpleNamespace(
                runtime=types.SimpleNamespace(
                    deviceGetAttribute=lambda attr, device: DEVICE_ATTRIBUTES[attr]
                ),
                driver=types.SimpleNamespace(CUDADriverError=RuntimeError),
                # an sm_90 device: thread-block clusters (the split-row kernels)
                Device=lambda device_id: types.SimpleNamespace(compute_capability="90"),
            )
            _saved = (
                _kernels._function,
                sys.modules.get("cupy"),
                dict(_kernels._stage_caps),
                dict(_kernels._split_capable),
            )
            # one function object per name, as CuPy keeps them (a shared-memory
            # opt-in set on one stays set), and the opt-ins of a fresh device
            functions: dict[str, _EmuFunction] = {}
            _kernels._stage_caps.clear()
            _kernels._split_capable.clear()

            def function(name, device_id):
                fn = functions.get(name)
                if fn is None:  # setdefault: threads racing here get one object
                    fn = functions.setdefault(name, _EmuFunction(dll, name))
                return fn

            _kernels._function = function
            sys.modules["cupy"] = fake_cupy
        _patch_depth += 1
    try:
        yield
    finally:
        with _patch_lock:
            _patch_depth -= 1
            if _patch_depth == 0:
                saved_fn, saved_mod, saved_caps, saved_split = _saved
                _kernels._function = saved_fn
                _kernels._stage_caps.clear()
                _kernels._stage_caps.update(saved_caps)
                _kernels._split_capable.clear()
                _kernels._split_capable.update(saved_split)
                if saved_mod is None:
                    sys.modules.pop("cupy", None)
                else:
                    sys.modules["cupy"] = saved_mod
