"""A strict stand-in for CuPy's array library, and a loopback backend on it.

softcore's core and conformance kit have code paths for arrays that are not NumPy's
(``backend.xp`` is ``cupy`` for the GPU backend). Without a GPU those paths never
run: the emulated cupy backend computes on NumPy arrays. This module gives them a
device-like array type to run on, on the CPU. It holds only what the core and the
kit use; what it holds behaves as in CuPy:

- :class:`ndarray` is *not* a ``numpy.ndarray`` (CuPy's is not either): it wraps a
  host buffer. ``numpy.asarray(x)`` raises ``TypeError`` (``.get()`` is the way to
  the host); ``float``/``int``/``bool`` of a one-element array work; reductions and
  ``x[()]`` give 0-d arrays, never scalars; arithmetic with a non-0-d
  ``numpy.ndarray`` is a ``TypeError`` (Python and NumPy scalars are fine) and a
  Python int outside an integer array's dtype is an ``OverflowError``, also in a
  comparison (CuPy's NEP 50 rule; NumPy 2 compares those exactly);
  ``flags`` has ``c_contiguous``, ``f_contiguous`` and ``owndata`` and no
  ``writeable`` (CuPy arrays cannot be read-only); integer index arrays wrap around
  instead of raising; ``empty`` memory is not zeroed (here: all bits set, NaN);
  float32 subnormals are flushed to zero where CuPy's own kernels (compiled with
  ``-ftz=true``) flush them: operands and results of elementwise ops and
  reductions, and either side of a dtype conversion, but not copies or
  ``matmul`` (cuBLAS). On a GPU that flush lost linear cross-entropy's float32
  gradients of 1e-40; the fake reproduces it.
- :func:`host_reads` counts the host's reads of device memory (``.get()``,
  ``int``, ``float``, ``bool``): on a GPU each one waits for the device, so the
  tests hold the core to how often a call may wait; :func:`launches` counts the
  kernels a call launches, each a launch's host time in CuPy.
- :data:`xp` is the array module: ``asarray`` of host data copies it to the current
  device, native-endian, C (or F, for an F-ordered array) ordered, and raises
  ``ValueError`` for a dtype CuPy has no arrays of (object, strings);
  ``ascontiguousarray`` of a 0-d array is 1-d; functions that take arrays take
  device arrays only.
- Two devices and a thread-local current device (``with x.device:``). An operation
  that launches a kernel checks that its arrays are on the current device and
  raises ``ValueError`` otherwise, as CuPy does without peer access; views,
  ``.get()`` and ``asarray`` of another device's array (a copy) do not.

:class:`FakeDeviceBackend` (``"fakedev"``) is a loopback backend: each kernel
asserts the kernel contract of ``backends/README.md`` (device arrays of this module
on the current device, C-contiguous, the contract's ndim, shapes and dtypes, no
partial overlap, Python floats for the scalars), then runs the NumPy reference
kernel on the wrapped host buffers in place. Run the conformance kit through it::

    python tests/fake_device.py [--max-examples N] [kit options]
"""

from __future__ import annotations

import itertools
import sys
import threading
import types
from pathlib import Path
from typing import Any

import numpy as np

N_DEVICES = 2
_SUPPORTED_CHARS = "?bhilqBHILQefdFD"  # the dtypes CuPy arrays can have
_POISON = 0xFF  # what fresh memory holds: every bit set (NaN for floats)

# ------------------------------------------------------------------ devices

_state = threading.local()


def _current() -> int:
    stack = getattr(_state, "stack", None)
    return stack[-1] if stack else 0


class Device:
    """``cupy.cuda.Device``: an id, and a context manager making it current."""

    def __init__(self, device: int = 0) -> None:
        if not 0 <= device < N_DEVICES:
            raise ValueError(f"invalid device ordinal {device}")
        self.id = device

    def __enter__(self) -> Device:
        if getattr(_state, "stack", None) is None:
            _state.stack = []
        _state.stack.append(self.id)
        return self

    def __exit__(self, *exc: Any) -> None:
        _state.stack.pop()


class _Counts(threading.local):
    reads = 0
    launches = 0


_counts = _Counts()


def host_reads() -> int:
    """Reads of device memory by the host so far in this thread: ``.get()``, and
    ``int``, ``float``, ``bool`` or ``repr`` of an array. On a GPU each one waits
    for the device to finish the work queued before it."""
    return _counts.reads


def launches() -> int:
    """Kernels launched so far in this thread: array operations that compute on the
    device (``zeros``, ``ones`` and ``full`` included, ``empty`` and views not)
    and the loopback backend's kernels. On a GPU each costs a launch, most of it
    host time in CuPy, however small the array."""
    return _counts.launches


def _check_device(*arrays: Any) -> None:
    """A kernel launch: every array must be on the current device."""
    _counts.launches += 1
    cur = _current()
    for a in arrays:
        if isinstance(a, ndarray) and a._dev != cur:
            raise ValueError(
                f"The device where the array resides ({a._dev}) is different "
                f"from the current device ({cur}). Peer access is unavailable "
                "between these devices."
            )


class _MemoryPointer:
    def __init__(self, ptr: int, device_id: int) -> None:
        self.ptr = ptr
        self.device_id = device_id


class _Flags:
    def __init__(self, c: bool, f: bool, owndata: bool) -> None:
        self.c_contiguous = c
        self.f_contiguous = f
        self.owndata = owndata


# ------------------------------------------------------------------- arrays


def _host_operand(v: Any) -> Any:
    """An operand of an elementwise op, as the host value to compute with."""
    if isinstance(v, ndarray):
        return v._a
    if isinstance(v, bool | int | float | complex | np.generic):
        return v
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return v[()]
    raise TypeError(f"Unsupported type {type(v)}")


_TINY32 = np.float32(2.0**-126)


def _ftz(h: Any, copy: bool = True) -> Any:
    """``h`` with its float32 subnormals flushed to (signed) zero, as CuPy's own
    kernels see and leave them (CuPy compiles them with ``-ftz=true``); other
    values as they are. A copy unless ``copy`` is False (then in place)."""
    if not isinstance(h, np.ndarray | np.generic) or h.dtype != np.float32:
        return h
    sub = np.abs(h) < _TINY32
    if not sub.any():
        return h
    if isinstance(h, np.generic) or copy:
        return np.where(sub, np.copysign(np.float32(0), h), h).astype(np.float32)
    h[sub] = np.copysign(np.float32(0), h[sub])
    return h


def _new(host: Any) -> ndarray:
    """A fresh array on the current device holding ``host``."""
    return ndarray._wrap(np.asarray(host), _current(), None)


def _cast(h: np.ndarray, dt: np.dtype, order: str) -> np.ndarray:
    """A converted copy of ``h``, float32 flushed on either side of the conversion
    (a same-dtype copy moves bits and flushes nothing)."""
    if dt == h.dtype:
        return np.array(h, order=order, copy=True)
    with np.errstate(all="ignore"):
        return _ftz(_ftz(h).astype(dt, order=order), copy=False)


def _alloc(shape: Any, dtype: Any, order: str = "C") -> ndarray:
    dt = np.dtype(dtype)
    if dt.char not in _SUPPORTED_CHARS:
        raise ValueError(f"Unsupported dtype {dt}")
    shape = (shape,) if isinstance(shape, int | np.integer) else tuple(shape)
    buf = np.full(int(np.prod(shape, dtype=np.int64)) * dt.itemsize, _POISON, np.uint8)
    return _new(np.ndarray(shape, dtype=dt, buffer=buf, order=order))


class ndarray:
    """A device array: a host buffer behind CuPy's interface (see the module doc)."""

    __slots__ = ("_a", "_base", "_dev")
    __array_priority__ = 100
    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def _wrap(cls, host: np.ndarray, dev: int, base: ndarray | None) -> ndarray:
        assert host.dtype.isnative
        obj = cls.__new__(cls)
        obj._a, obj._dev, obj._base = host, dev, base
        return obj

    def _view(self, host: np.ndarray) -> ndarray:
        """A view of this array's memory (no kernel, no device check)."""
        assert host.size == 0 or np.may_share_memory(host, self._a), "not a view"
        base = self if self._base is None else self._base
        return ndarray._wrap(host, self._dev, base)

    # ---------------------------------------------------------- attributes
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)

    @property
    def flags(self) -> _Flags:
        f = self._a.flags
        return _Flags(bool(f.c_contiguous), bool(f.f_contiguous), self._base is None)

    @property
    def data(self) -> _MemoryPointer:
        ptr = self._a.__array_interface__["data"][0] if self.size else 0
        return _MemoryPointer(ptr, self._dev)

    @property
    def device(self) -> Device:
        return Device(self._dev)

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        c = self._a.flags.c_contiguous
        return {
            "shape": self.shape,
            "typestr": self.dtype.str,
            "descr": self.dtype.descr,
            "strides": None if c else self.strides,
            "data": (self.data.ptr, False),
            "version": 3,
            "stream": 1,
        }

    @property
    def T(self) -> ndarray:
        return self if self.ndim < 2 else self._view(self._a.T)

    # --------------------------------------------------------- conversions
    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. "
            "Please use `.get()` to construct a NumPy array explicitly."
        )

    def get(self, stream: Any = None, order: str = "C") -> np.ndarray:
        """A host copy (0-d for a 0-d array): on a GPU, a wait for the device."""
        _counts.reads += 1
        return np.array(self._a, order=order, copy=True)

    def __int__(self) -> int:
        return int(self.get())

    def __float__(self) -> float:
        return float(self.get())

    def __bool__(self) -> bool:
        if self.size != 1:
            raise ValueError(
                f"The truth value of an array with {self.size} elements is "
                "ambiguous. Use a.any() or a.all()"
            )
        return bool(self.get())

    def __repr__(self) -> str:
        return repr(self.get())

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    # ------------------------------------------------- copies and layouts
    def astype(
        self,
        dtype: Any,
        order: str = "K",
        casting: Any = None,
        subok: Any = None,
        copy: bool = True,
    ) -> ndarray:
        if casting is not None or subok is not None:
            raise TypeError("casting and subok are not supported yet")
        dt = np.dtype(dtype)
        if dt.char not in _SUPPORTED_CHARS:
            raise ValueError(f"Unsupported dtype {dt}")
        f = self._a.flags
        layout_ok = {
            "K": True,
            "A": f.c_contiguous or f.f_contiguous,
            "C": f.c_contiguous,
            "F": f.f_contiguous,
        }
        if dt == self.dtype and not copy and layout_ok[order.upper()]:
            return self
        _check_device(self)
        return _new(_cast(self._a, dt, order))

    def copy(self, order: str = "C") -> ndarray:
        """A copy on the *current* device (CuPy copies across devices)."""
        return _new(self._a.copy(order=order))

    def view(self, dtype: Any) -> ndarray:
        return self._view(self._a.view(dtype))

    def reshape(self, *shape: Any, order: str = "C") -> ndarray:
        if len(shape) == 1 and isinstance(shape[0], tuple | list):
            shape = tuple(shape[0])
        res = self._a.reshape(shape, order=order)
        if res.size == 0 or np.may_share_memory(res, self._a):
            return self._view(res)
        _check_device(self)  # a copy: a kernel
        return _new(res)

    def ravel(self, order: str = "C") -> ndarray:
        return self.reshape(-1, order=order)

    def fill(self, value: Any) -> None:
        if isinstance(value, np.ndarray) and value.shape != ():
            raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
        _check_device(self)
        self._a.fill(_host_operand(value))

    # ----------------------------------------------------------- indexing
    def _index(self, key: Any) -> tuple[tuple[Any, ...], bool]:
        """``key`` for the host buffer, and whether it holds an index array.

        As in CuPy: index lists and host arrays are copied to the device, integer
        index arrays wrap around, and a trailing ``...`` makes ``a[()]`` and
        ``a[0, 0]`` 0-d views rather than scalars.
        """
        conv: list[Any] = []
        for s in key if isinstance(key, tuple) else (key,):
            if s is None or s is Ellipsis or isinstance(s, slice):
                conv.append(s)
            elif isinstance(s, int | np.integer) and not isinstance(s, bool | np.bool_):
                conv.append(int(s))
            else:
                if isinstance(s, ndarray):
                    _check_device(s)
                h = s._a if isinstance(s, ndarray) else np.asarray(s)
                if h.dtype.kind not in "biu":
                    raise IndexError(
                        "arrays used as indices must be of integer or boolean "
                        f"type. (actual: {h.dtype.type})"
                    )
                conv.append(h)
        advanced = any(isinstance(c, np.ndarray) for c in conv)
        if Ellipsis not in [c for c in conv if not isinstance(c, np.ndarray)]:
            conv.append(Ellipsis)
        used = sum(
            c.ndim if isinstance(c, np.ndarray) and c.dtype == bool else 1
            for c in conv
            if c is not None and c is not Ellipsis
        )
        axis = 0
        for i, c in enumerate(conv):
            if c is Ellipsis:
                axis += self.ndim - used
            elif isinstance(c, np.ndarray) and c.dtype.kind in "iu":
                if axis < self.ndim and self.shape[axis]:
                    conv[i] = c % self.shape[axis]
                axis += 1
            elif c is not None:
                axis += c.ndim if isinstance(c, np.ndarray) else 1
        return tuple(conv), advanced

    def __getitem__(self, key: Any) -> ndarray:
        hkey, advanced = self._index(key)
        if not advanced:
            return self._view(self._a[hkey])
        _check_device(self)
        return _new(np.array(self._a[hkey], copy=True))

    def __setitem__(self, key: Any, value: Any) -> None:
        hkey, advanced = self._index(key)
        if isinstance(value, np.ndarray) and advanced:
            hv = value  # CuPy copies it over for an index-array scatter
        elif isinstance(value, np.ndarray) and value.shape != ():
            raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
        else:
            hv = _host_operand(value)
        _check_device(self, value)
        with np.errstate(all="ignore"):
            self._a[hkey] = hv

    # ---------------------------------------------------- NumPy protocols
    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kw: Any) -> Any:
        if method != "__call__":
            return NotImplemented
        out = kw.pop("out", None)
        return _ufunc(ufunc, *inputs, out=None if out is None else out[0], **kw)

    def __array_function__(self, func: Any, types_: Any, args: Any, kw: Any) -> Any:
        impl = getattr(xp, func.__name__, None)
        return NotImplemented if impl is None else impl(*args, **kw)


def _ufunc(uf: Any, *args: Any, out: Any = None, **kw: Any) -> ndarray:
    """A NumPy ufunc on device operands: a kernel on the current device."""
    hosts = [_host_operand(a) for a in args]
    # NEP 50 as CuPy applies it: a Python int outside an integer array's dtype is
    # an OverflowError, comparisons included (NumPy 2 compares those exactly)
    for a in args:
        if isinstance(a, ndarray) and a.dtype.kind in "iu":
            info = np.iinfo(a.dtype)
            for v in args:
                if type(v) is int and not info.min <= v <= info.max:
                    raise OverflowError(
                        f"Python integer {v} out of bounds for {a.dtype}"
                    )
    if out is not None and not isinstance(out, ndarray):
        raise TypeError(f"Unsupported type {type(out)}")
    _check_device(*args, out)
    hosts = [_ftz(h) for h in hosts]
    with np.errstate(all="ignore"):
        if out is None:
            return _new(_ftz(np.asarray(uf(*hosts, **kw)), copy=False))
        uf(*hosts, out=out._a, **kw)
        _ftz(out._a, copy=False)
        return out


def _binary_ops(uf: Any) -> tuple[Any, Any, Any]:
    def op(self: ndarray, other: Any) -> ndarray:
        return _ufunc(uf, self, other)

    def rop(self: ndarray, other: Any) -> ndarray:
        return _ufunc(uf, other, self)

    def iop(self: ndarray, other: Any) -> ndarray:
        return _ufunc(uf, self, other, out=self)

    return op, rop, iop


for _name, _uf in [
    ("add", np.add),
    ("sub", np.subtract),
    ("mul", np.multiply),
    ("truediv", np.true_divide),
    ("and", np.bitwise_and),
    ("or", np.bitwise_or),
]:
    _op, _rop, _iop = _binary_ops(_uf)
    setattr(ndarray, f"__{_name}__", _op)
    setattr(ndarray, f"__r{_name}__", _rop)
    setattr(ndarray, f"__i{_name}__", _iop)
for _name, _uf in [
    ("lt", np.less),
    ("le", np.less_equal),
    ("eq", np.equal),
    ("ne", np.not_equal),
    ("gt", np.greater),
    ("ge", np.greater_equal),
]:
    setattr(ndarray, f"__{_name}__", _binary_ops(_uf)[0])


def _reduction(fn: Any) -> Any:
    def method(self: ndarray, axis: Any = None, **kw: Any) -> ndarray:
        _check_device(self)
        with np.errstate(all="ignore"):
            return _new(_ftz(np.asarray(fn(_ftz(self._a), axis, **kw)), copy=False))

    method.__name__ = fn.__name__
    return method


for _fn in (np.sum, np.max, np.min, np.any, np.all, np.argmax):
    setattr(ndarray, _fn.__name__, _reduction(_fn))


# ------------------------------------------------------- the array module


def _require(a: Any, fn: str) -> ndarray:
    if not isinstance(a, ndarray):
        raise TypeError(
            f"{fn}: Argument 'a' has incorrect type (expected cupy.ndarray, "
            f"got {type(a).__name__})"
        )
    return a


def asarray(a: Any, dtype: Any = None, order: Any = None) -> ndarray:
    """A device array on the current device: a device array on it as is (or
    cast), one on another device copied over, anything else through
    ``numpy.asarray`` and copied to the device."""
    if isinstance(a, ndarray):
        if a._dev != _current():
            a = a.copy()
        return a.astype(a.dtype if dtype is None else dtype, order or "K", copy=False)
    host = np.asarray(a, dtype=dtype)
    if host.dtype.char not in _SUPPORTED_CHARS:
        raise ValueError(f"Unsupported dtype {host.dtype}")
    if not host.dtype.isnative:
        host = host.astype(host.dtype.newbyteorder("="))
    if order is None or order in "KAka":
        order = "F" if isinstance(a, np.ndarray) and a.flags.f_contiguous else "C"
    return _new(np.array(host, order=order, copy=True))


def empty(shape: Any, dtype: Any = float, order: str = "C") -> ndarray:
    return _alloc(shape, dtype, order)


def zeros(shape: Any, dtype: Any = float, order: str = "C") -> ndarray:
    a = _alloc(shape, dtype, order)
    a.fill(0)
    return a


def ones(shape: Any, dtype: Any = float, order: str = "C") -> ndarray:
    a = _alloc(shape, dtype, order)
    a.fill(1)
    return a


def full(shape: Any, fill_value: Any, dtype: Any = None, order: str = "C") -> ndarray:
    if dtype is None:
        dtype = np.array(fill_value).dtype
    a = _alloc(shape, dtype, order)
    a.fill(fill_value)
    return a


def empty_like(prototype: Any, dtype: Any = None) -> ndarray:
    p = _require(prototype, "empty_like")
    f = p._a.flags
    order = "F" if f.f_contiguous and not f.c_contiguous else "C"
    return _alloc(p.shape, p.dtype if dtype is None else dtype, order)


def ascontiguousarray(a: Any, dtype: Any = None) -> ndarray:
    a = _require(a, "ascontiguousarray")
    dt = a.dtype if dtype is None else np.dtype(dtype)
    if dt == a.dtype and a._a.flags.c_contiguous:
        return a.reshape(1) if a.ndim == 0 else a
    _check_device(a)
    return _new(_cast(a._a, dt, "C").reshape(a.shape or (1,)))


def asfortranarray(a: Any, dtype: Any = None) -> ndarray:
    a = _require(a, "asfortranarray")
    dt = a.dtype if dtype is None else np.dtype(dtype)
    if dt == a.dtype and a._a.flags.f_contiguous:
        return a.reshape(1) if a.ndim == 0 else a
    _check_device(a)
    return _new(_cast(a._a.reshape(a.shape or (1,)), dt, "F"))


def copyto(dst: Any, src: Any, casting: str = "same_kind") -> None:
    dst = _require(dst, "copyto")
    if isinstance(src, np.ndarray) or np.isscalar(src):
        if np.size(src) != 1:
            raise ValueError("non-scalar numpy.ndarray cannot be used for copyto")
        np.copyto(np.empty((), dst.dtype), src, casting=casting)
        _check_device(dst)
        dst._a[...] = np.asarray(src).item()
        return
    src = _require(src, "copyto")
    if not np.can_cast(src.dtype, dst.dtype, casting):
        raise TypeError(f"Cannot cast {src.dtype} to {dst.dtype} in {casting} mode")
    pairs = itertools.zip_longest(reversed(src.shape), reversed(dst.shape), fillvalue=1)
    if not all(s in (d, 1) for s, d in pairs):
        raise ValueError(
            f"could not broadcast input array from shape {src.shape} into shape "
            f"{dst.shape}"
        )
    h = src._a if src._dev == dst._dev else src._a.copy()  # CuPy copies over
    if src.dtype != dst.dtype:  # a conversion kernel, which flushes float32
        h = _cast(h, dst.dtype, "K")
    with Device(dst._dev), np.errstate(all="ignore"):
        np.copyto(dst._a, h.reshape(h.shape[max(0, h.ndim - dst.ndim) :]))


def moveaxis(a: Any, source: Any, destination: Any) -> ndarray:
    a = _require(a, "moveaxis")
    return a._view(np.moveaxis(a._a, source, destination))


def expand_dims(a: Any, axis: Any) -> ndarray:
    a = _require(a, "expand_dims")
    return a._view(np.expand_dims(a._a, axis))


def may_share_memory(a: Any, b: Any) -> bool:
    a, b = _require(a, "may_share_memory"), _require(b, "may_share_memory")
    return a._dev == b._dev and bool(np.may_share_memory(a._a, b._a))


def matmul(x1: Any, x2: Any, out: Any = None, casting: str = "same_kind") -> ndarray:
    x1, x2 = _require(x1, "matmul"), _require(x2, "matmul")
    if out is not None:
        out = _require(out, "matmul")
        want = np.result_type(x1.dtype, x2.dtype)
        if not np.can_cast(want, out.dtype, casting):
            raise TypeError(f"Cannot cast {want} to {out.dtype} in {casting} mode")
        if np.may_share_memory(out._a, x1._a) or np.may_share_memory(out._a, x2._a):
            raise ValueError("fake matmul: out overlaps an input (cuBLAS would race)")
    _check_device(x1, x2, out)
    with np.errstate(all="ignore"):
        if out is None:
            return _new(np.matmul(x1._a, x2._a))
        np.matmul(x1._a, x2._a, out=out._a)
        return out


def where(condition: Any, x: Any, y: Any) -> ndarray:
    return _ufunc(np.where, condition, x, y)


def argmax(a: Any, axis: Any = None) -> ndarray:
    return _require(a, "argmax").argmax(axis)


def broadcast_to(a: Any, shape: Any) -> ndarray:
    return _require(a, "broadcast_to")._view(np.broadcast_to(a._a, shape))


def _elementwise(uf: Any) -> Any:
    def fn(*args: Any) -> ndarray:
        return _ufunc(uf, *args)

    fn.__name__ = uf.__name__
    return fn


ndarray.__neg__ = _elementwise(np.negative)  # type: ignore[method-assign]


xp = types.ModuleType("fakecupy", "A strict stand-in for CuPy's array module.")
for _f in (
    asarray,
    empty,
    zeros,
    ones,
    full,
    empty_like,
    ascontiguousarray,
    asfortranarray,
    copyto,
    moveaxis,
    expand_dims,
    may_share_memory,
    matmul,
    where,
    argmax,
    broadcast_to,
    *(_elementwise(uf) for uf in (np.log, np.exp, np.minimum, np.isnan, np.sign)),
):
    setattr(xp, _f.__name__, _f)
xp.abs = _elementwise(np.absolute)  # type: ignore[attr-defined]
xp.ndarray = ndarray  # type: ignore[attr-defined]
ndarray.__module__ = xp.__name__


def device_array(host: Any, device: int = 0) -> ndarray:
    """``host`` copied to fake device ``device``."""
    with Device(device):
        return asarray(host)


# ------------------------------------------------------ loopback backend

NAME = "fakedev"
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_F64 = (np.dtype(np.float64),)


class KernelContractError(AssertionError):
    """A kernel received what backends/README.md says it never will."""


def _operand(
    name: str,
    a: Any,
    dtypes: tuple[Any, ...],
    shape: tuple[int, ...] | None = None,
    empty: bool = False,
) -> np.ndarray:
    """The host buffer of kernel operand ``a`` after checking the contract
    (``shape=None``: any 2-D shape; non-empty unless ``empty``)."""
    if not isinstance(a, ndarray):
        t = type(a)
        raise KernelContractError(
            f"kernel operand {name} is a {t.__module__}.{t.__qualname__}, not a "
            "device array"
        )
    ok_shape = a.ndim == 2 if shape is None else a.shape == shape
    problems = [
        f"on device {a._dev}, current {_current()}" if a._dev != _current() else "",
        "" if a._a.flags.c_contiguous else "not C-contiguous",
        "" if a.dtype in dtypes else f"dtype {a.dtype}, expected one of {dtypes}",
        "" if ok_shape else f"shape {a.shape}, expected {shape or '2-D'}",
        "" if a.size or empty else "empty",
    ]
    if any(problems):
        problems = [p for p in problems if p]
        raise KernelContractError(f"kernel operand {name}: {', '.join(problems)}")
    return a._a


def _no_partial_overlap(operands: dict[str, np.ndarray]) -> None:
    items = list(operands.items())
    for i, (na, a) in enumerate(items):
        for nb, b in items[i + 1 :]:
            same = (
                a.__array_interface__["data"] == b.__array_interface__["data"]
                and a.shape == b.shape
                and a.strides == b.strides
            )
            if not same and np.shares_memory(a, b):
                raise KernelContractError(f"kernel operands {na} and {nb} overlap")


def _scalar(name: str, v: Any) -> float:
    if type(v) is not float:
        raise KernelContractError(
            f"kernel argument {name} is a {type(v).__name__}, not a Python float"
        )
    return v


class FakeDeviceBackend:
    """The NumPy reference kernels behind the kernel contract, on fake device
    arrays. ``calls`` lists the kernels run."""

    name = NAME
    version = "0"
    priority = 100  # as cupy's; it accepts no NumPy array, so it displaces nothing
    threaded = False
    xp = xp

    def __init__(self) -> None:
        from softcore._reference import backend as reference

        self._ref = reference
        self.calls: list[str] = []

    def available(self) -> bool | str:
        return True

    def accepts(self, x: Any) -> bool:
        return type(x) is ndarray

    def linear_chunk_rows(self, n_classes: int, n_features: int, itemsize: int) -> int:
        """A chunk hint, as cupy's; small, so that linear cross-entropy runs
        several chunks on the kit's inputs."""
        return 5

    def _run(self, kernel: str, ops: dict[str, Any], *args: Any) -> None:
        _no_partial_overlap({k: v for k, v in ops.items() if type(v) is np.ndarray})
        self.calls.append(kernel)
        _counts.launches += 1
        getattr(self._ref, kernel)(*args)

    # row-wise ops
    def _rows(self, kernel: str, x: Any, out: Any, out_kind: str) -> None:
        hx = _operand("x", x, _FLOATS)
        rows, c = hx.shape
        shape = {"row": (rows, c), "lse": (rows,), "jac": (rows, c, c)}[out_kind]
        ho = _operand("out", out, (hx.dtype,), shape)
        self._run(kernel, {"x": hx, "out": ho}, hx, ho)

    def softmax_rows(self, x: Any, out: Any) -> None:
        self._rows("softmax_rows", x, out, "row")

    def log_softmax_rows(self, x: Any, out: Any) -> None:
        self._rows("log_softmax_rows", x, out, "row")

    def logsumexp_rows(self, x: Any, out: Any) -> None:
        self._rows("logsumexp_rows", x, out, "lse")

    def softmax_jacobian_rows(self, x: Any, out: Any) -> None:
        self._rows("softmax_jacobian_rows", x, out, "jac")

    def log_softmax_jacobian_rows(self, x: Any, out: Any) -> None:
        self._rows("log_softmax_jacobian_rows", x, out, "jac")

    def _backward(self, kernel: str, grad: Any, saved: Any, out: Any) -> None:
        hg = _operand("grad", grad, _FLOATS)
        hs = _operand("saved", saved, (hg.dtype,), hg.shape)
        ho = _operand("out", out, (hg.dtype,), hg.shape)
        self._run(kernel, {"grad": hg, "saved": hs, "out": ho}, hg, hs, ho)

    def softmax_backward_rows(self, grad: Any, probs: Any, out: Any) -> None:
        self._backward("softmax_backward_rows", grad, probs, out)

    def log_softmax_backward_rows(self, grad: Any, log_probs: Any, out: Any) -> None:
        self._backward("log_softmax_backward_rows", grad, log_probs, out)

    # cross-entropy: the arguments in the contract's order, checked
    def _ce(self, kernel: str, names: tuple[str, ...], *args: Any) -> None:
        hx = _operand("x", args[0], _FLOATS)
        rows, c = hx.shape
        spec = {
            "target": ((np.dtype(np.int64),), (rows,)),
            "prob_target": ((hx.dtype,), hx.shape),
            "alpha": (_F64, (rows,)),
            "beta": (_F64, (rows,)),
            "class_weight": (_F64, (c,)),
            "loss_out": (_F64, (rows,)),
            "grad_out": ((hx.dtype,), hx.shape),
        }
        ops: dict[str, Any] = {"x": hx}
        for name, a in zip(names[1:], args[1:], strict=True):
            if name in ("smoothing", "grad_scale"):
                ops[name] = _scalar(name, a)
            else:
                ops[name] = _operand(name, a, *spec[name])
        t = ops.get("target")
        if t is not None and (t.min() < 0 or t.max() >= c):
            raise KernelContractError(f"class-index targets outside [0, {c}): {t}")
        self._run(kernel, ops, *ops.values())

    _INDEX = ("x", "target", "alpha", "beta", "class_weight")
    _PROB = ("x", "prob_target", "smoothing", "class_weight")

    def cross_entropy_rows(self, *args: Any) -> None:
        self._ce("cross_entropy_rows", (*self._INDEX, "loss_out"), *args)

    def cross_entropy_grad_rows(self, *args: Any) -> None:
        names = (*self._INDEX, "grad_scale", "loss_out", "grad_out")
        self._ce("cross_entropy_grad_rows", names, *args)

    def cross_entropy_prob_rows(self, *args: Any) -> None:
        self._ce("cross_entropy_prob_rows", (*self._PROB, "loss_out"), *args)

    def cross_entropy_prob_grad_rows(self, *args: Any) -> None:
        names = (*self._PROB, "grad_scale", "loss_out", "grad_out")
        self._ce("cross_entropy_prob_grad_rows", names, *args)

    #: Whether the optional ``cross_entropy_index_rows`` is offered (tests run the
    #: core's own device plan with it off).
    index_rows = True

    def __getattribute__(self, name: str) -> Any:
        if name == "cross_entropy_index_rows" and not object.__getattribute__(
            self, "index_rows"
        ):
            return None
        return object.__getattribute__(self, name)

    def cross_entropy_index_rows(
        self,
        x: Any,
        target: Any,
        class_weight: Any,
        ignore_index: Any,
        smoothing: Any,
        mean: Any,
        loss_rows: Any,
        loss_out: Any,
        grad_out: Any,
    ) -> Any:
        """The optional hook, checked like a kernel, and computed by the
        reference's ``index_rows`` (the core's host plan and the reference
        kernels: the host path's bits). Counted as the cupy backend's launches on
        a small batch: the targets' statistics and the row kernel, and for a
        scalar loss the total."""
        hx = _operand("x", x, _FLOATS)
        rows, c = hx.shape
        i64 = (np.dtype(np.int64),)
        ops = {"x": hx, "target": _operand("target", target, i64, (rows,))}
        if class_weight is not None:
            ops["class_weight"] = _operand("class_weight", class_weight, _F64, (c,))
        if type(ignore_index) is not int:
            what = type(ignore_index).__name__
            raise KernelContractError(f"ignore_index is a {what}, not int")
        eps = _scalar("smoothing", smoothing)
        if type(mean) is not bool:
            raise KernelContractError(f"mean is a {type(mean).__name__}, not bool")
        ops["loss_rows"] = _operand("loss_rows", loss_rows, _F64, (rows,))
        if loss_out is not None:
            ops["loss_out"] = _operand("loss_out", loss_out, _FLOATS, (1,))
        if grad_out is not None:
            ops["grad_out"] = _operand("grad_out", grad_out, (hx.dtype,), hx.shape)
        _no_partial_overlap(ops)
        self.calls.append("cross_entropy_index_rows")
        _counts.launches += 2 if loss_out is None else 3
        from softcore._reference import index_rows

        check = index_rows(
            hx, ops["target"], ops.get("class_weight"), ignore_index, eps, mean,
            ops["loss_rows"], ops.get("loss_out"), ops.get("grad_out"),
        )  # fmt: skip
        return xp.asarray(check)

    def linear_grad_accumulate(
        self, grad: Any, x: Any, d_weight: Any, d_bias: Any, first: Any
    ) -> None:
        """The optional hook, checked like a kernel: ``d_weight (+)= grad.T @ x``
        and ``d_bias (+)= grad.sum(0)``, overwriting when ``first``."""
        hg = _operand("grad", grad, _FLOATS)
        rows, c = hg.shape
        hx = _operand("x", x, (hg.dtype,), empty=True)
        d = hx.shape[1]
        ops = {
            "grad": hg,
            "x": _operand("x", x, (hg.dtype,), (rows, d), empty=True),
            "d_weight": _operand("d_weight", d_weight, (hg.dtype,), (c, d), True),
        }
        if d_bias is not None:
            ops["d_bias"] = _operand("d_bias", d_bias, (hg.dtype,), (c,))
        if type(first) is not bool:
            raise KernelContractError(f"first is a {type(first).__name__}, not bool")
        _no_partial_overlap(ops)
        self.calls.append("linear_grad_accumulate")
        _counts.launches += 1
        sums = {"d_weight": hg.T @ hx, "d_bias": hg.sum(axis=0)}
        for name in ("d_weight", "d_bias"):
            if name in ops:
                if first:
                    ops[name][...] = sums[name]
                else:
                    ops[name] += sums[name]


backend = FakeDeviceBackend()


def register() -> None:
    """Register :data:`backend` in this process (once)."""
    from softcore import _registry

    if NAME not in _registry._loaded:
        _registry.register(backend)


def main(argv: list[str] | None = None) -> int:
    """Run the conformance kit on the fake device backend in this process."""
    from softcore.testing import main as kit

    register()
    return kit([NAME, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    # use the importable module, not a second copy of it named __main__
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import fake_device

    sys.exit(fake_device.main())
