"""A stand-in for CuPy on machines without a GPU: NumPy arrays dressed as CuPy's, and
``RawModule`` built on the host emulation of kernels.cu (``cupy_emulation``).

It exists to run ``test_cupy_gpu.py`` here (``test_cupy_emulated.py`` does, in a
subprocess with this folder first on ``sys.path``), so that a device test whose own
Python is wrong fails on every machine, not on the rare run with a GPU. It is no
GPU: what those tests check about the hardware (-ftz, CUDA's exp, streams, a second
device) it cannot show, and the run deselects the tests that need a real one.
"""

from __future__ import annotations

import threading
import types
from typing import ClassVar

import cupy_emulation
import numpy as _np
from cupy_emulation import EmuArray

__version__ = "0.0-emulated"


class _Context:
    """A context manager with nothing to switch and nothing to wait for."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self):
        pass


class _Device(_Context, cupy_emulation._Device):
    compute_capability = "90"  # as an H100's: thread-block clusters

    def __init__(self, i: int = 0):
        if i != 0:
            raise RuntimeError(f"the emulated device has one device, not {i + 1}")


class ndarray(EmuArray):  # CuPy's name, in this module: the backend accepts it
    """The emulation's array (``data.ptr``, ``device``), with CuPy's ``get``."""

    def get(self):
        return _np.array(self)

    def __getitem__(self, key):
        # CuPy wraps an out-of-bounds integer-array index where NumPy raises (the
        # core's device plan relies on it, and checks the targets after)
        if isinstance(key, _np.ndarray) and key.dtype.kind in "iu" and self.ndim:
            return _wrap(_np.take(_np.asarray(self), key, axis=0, mode="wrap"))
        return super().__getitem__(key)


def _wrap(r):
    if isinstance(r, _np.ndarray) and not isinstance(r, ndarray):
        return r.view(ndarray)
    return r


def asnumpy(a):
    return _np.array(a) if isinstance(a, ndarray) else _np.asarray(a)


def asarray(a, dtype=None, order=None):
    """A device array: a copy of a host array (as a transfer is), the array itself
    when it is already one and no conversion is asked for."""
    if isinstance(a, ndarray):
        return _wrap(_np.asarray(a, dtype=dtype, order=order))
    return _wrap(_np.array(a, dtype=dtype, order=order, copy=True))


class _Generator:
    """``cupy.random.default_rng``: NumPy's generator, its arrays dressed."""

    def __init__(self, seed=None):
        self._g = _np.random.default_rng(seed)

    def __getattr__(self, name):
        method = getattr(self._g, name)
        return lambda *a, **k: _wrap(method(*a, **k))


random = types.SimpleNamespace(default_rng=_Generator)


def __getattr__(name):  # the rest of the array API: NumPy's, results dressed
    obj = getattr(_np, name)
    if callable(obj) and not isinstance(obj, type):

        def call(*args, **kwargs):
            return _wrap(obj(*args, **kwargs))

        return call
    return obj


# ---------------------------------------------------------------------------
# cupy.cuda: one device, one stream, the device attributes of an H100


class _Event:
    def record(self, stream=None):
        pass

    def synchronize(self):
        pass


class _Stream(_Context):
    null = None

    def __init__(self, *a, **k):
        pass


def _device_attribute(attr: int, device: int) -> int:
    return cupy_emulation.DEVICE_ATTRIBUTES[attr]


class CUDADriverError(RuntimeError):
    pass


cuda = types.SimpleNamespace(
    Device=_Device,
    Stream=_Stream,
    Event=_Event,
    # no clock to read: every interval a millisecond (tools/bench_gpu.py then runs
    # its code paths, its ratios all 1)
    get_elapsed_time=lambda start, stop: 1.0,
    get_current_stream=lambda: _Stream(),
    runtime=types.SimpleNamespace(
        getDeviceCount=lambda: 1,
        deviceGetAttribute=_device_attribute,
        getDeviceProperties=lambda i: {
            "name": b"host emulation",
            "major": 9,
            "minor": 0,
            "totalGlobalMem": 1 << 30,
        },
        runtimeGetVersion=lambda: 12080,
    ),
    driver=types.SimpleNamespace(CUDADriverError=CUDADriverError),
)


# ---------------------------------------------------------------------------
# RawModule: the kernels built for the host


class RawModule:
    _lock = threading.Lock()
    _dlls: ClassVar[dict] = {}  # one host build per set of -D options

    def __init__(self, code: str, options=()):
        self.code, self._functions = code, {}
        self._defines = tuple(o for o in options if o.startswith("-D"))

    def compile(self):
        with RawModule._lock:
            if self._defines not in RawModule._dlls:
                RawModule._dlls[self._defines] = cupy_emulation.build(
                    defines=self._defines
                )
        return RawModule._dlls[self._defines]

    def get_function(self, name: str):
        dll = self.compile()
        fn = self._functions.get(name)
        if fn is None:
            fn = self._functions.setdefault(
                name, cupy_emulation._EmuFunction(dll, name)
            )
        return fn


# ---------------------------------------------------------------------------
# cublas.gemm, as linear_grad_accumulate calls it


def _gemm(transa, transb, a, b, out=None, alpha=1.0, beta=0.0):
    a = a.T if transa == "T" else a
    b = b.T if transb == "T" else b
    r = alpha * _np.matmul(_np.asarray(a), _np.asarray(b))
    if beta:
        r = r + beta * _np.asarray(out)
    out[...] = r
    return out


cublas = types.SimpleNamespace(gemm=_gemm)
