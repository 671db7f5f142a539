"""Input checks, dtype promotion, axis-last layout and cross-entropy option resolution.

Everything here runs before any kernel, so a bad call raises before work starts and
nothing is written to a user's ``out``. Messages say what was wrong, what was expected
and what was received.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

_F16 = np.dtype(np.float16)
_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
REDUCTIONS = ("mean", "sum", "none")
_UNSIGNED = {n: np.dtype(f"u{n}") for n in (1, 2, 4, 8)}  # by itemsize
_MAX: Any = np.maximum.reduce  # (NumPy 2.5's stubs lack its plain overload)
_SMALL_ROWS = 64
"""Batches of at most this many rows take their targets' range from a Python list
(one ``tolist`` and two builtins beat NumPy's reduction's fixed cost there)."""


def is_bfloat16(dt: np.dtype) -> bool:
    """Whether ``dt`` is ml_dtypes' ``bfloat16``, the NumPy dtype of JAX's and
    TensorFlow's bfloat16 arrays on the host (known by name: softcore does not
    import ml_dtypes). By its scalar type's name: ``dt.name`` is computed in
    Python, 0.9 us for bfloat16 and 5 us for float16 where this is 0.1 us."""
    return dt.kind == "V" and dt.itemsize == 2 and dt.type.__name__ == "bfloat16"


def is_floating(dt: np.dtype) -> bool:
    """Whether ``dt`` is a floating dtype: NumPy's, or bfloat16."""
    return dt.kind == "f" or is_bfloat16(dt)


def is_real(dt: np.dtype) -> bool:
    """Whether ``dt`` holds real numbers: bool, integers, floating, bfloat16."""
    return dt.kind in "biu" or is_floating(dt)


def float_dtypes(dtype: Any, what: str) -> tuple[np.dtype, np.dtype]:
    """``(compute, result)`` dtypes for an input of ``dtype``.

    float32/float64 compute in their own precision; float16 and bfloat16 compute
    in float32 and return their own dtype; bool and integers promote to float64
    (NumPy's rule); everything else is a ``TypeError``.
    """
    found = _DTYPE_RULES.get(dtype)
    if found is not None:
        return found
    dt = np.dtype(dtype)
    kind = dt.kind
    if kind == "f":
        if dt.itemsize == 4:
            return _F32, _F32
        if dt.itemsize == 8:
            return _F64, _F64
        if dt.itemsize == 2:
            return _F32, _F16
        raise TypeError(
            f"{what} has dtype {dt}; expected float16, bfloat16, float32 or float64"
            + (" (extended precision is not supported)" if dt.itemsize > 8 else "")
        )
    if kind in "biu":
        return _F64, _F64
    if is_bfloat16(dt):
        _DTYPE_RULES[dt] = (_F32, dt)
        return _F32, dt
    raise TypeError(
        f"{what} has dtype {dt}; expected a real floating, integer or bool array"
    )


_DTYPE_RULES: dict[Any, tuple[np.dtype, np.dtype]] = {
    _F16: (_F32, _F16),
    _F32: (_F32, _F32),
    _F64: (_F64, _F64),
}


def check_axis(axis: Any, ndim: int, what: str) -> int:
    """Normalise ``axis`` for an array of ``ndim`` dimensions."""
    if type(axis) is int and -ndim <= axis < ndim:
        return axis % ndim
    try:
        ax = operator.index(axis)
    except TypeError:
        raise TypeError(
            f"axis must be an integer; received {type(axis).__name__} {axis!r}"
        ) from None
    if ndim == 0:
        raise ValueError(f"{what} must have at least one dimension; received a scalar")
    if not -ndim <= ax < ndim:
        raise ValueError(
            f"axis {ax} is out of bounds for {what} with {ndim} dimension(s); "
            f"expected -{ndim} <= axis < {ndim}"
        )
    return ax % ndim


def is_multi_axis(axis: Any) -> bool:
    """Whether ``axis`` names several axes (None, a tuple or a list)."""
    return axis is None or isinstance(axis, (tuple, list))


def check_axes(axis: Any, ndim: int, what: str) -> tuple[int, ...]:
    """Normalise ``None`` (every axis) or a tuple/list of axes for an array of
    ``ndim`` dimensions: sorted, each in range, none repeated."""
    if axis is None:
        return tuple(range(ndim))
    axes = []
    for a in axis:
        try:
            ax = operator.index(a)
        except TypeError:
            raise TypeError(
                f"axis must be an integer, a tuple of integers or None; received "
                f"{axis!r}"
            ) from None
        if not -ndim <= ax < ndim:
            raise ValueError(
                f"axis {ax} is out of bounds for {what} with {ndim} dimension(s); "
                f"expected -{ndim} <= axis < {ndim}"
            )
        axes.append(ax % ndim)
    if len(set(axes)) != len(axes):
        raise ValueError(f"axis {tuple(axis)!r} names an axis more than once")
    return tuple(sorted(axes))


_DLPACK_HOST = (1, 3)  # kDLCPU, kDLCUDAHost (pinned host memory)


def on_device(x: Any) -> bool:
    """Whether ``x``'s data lives on a device: it gives a
    ``__cuda_array_interface__`` (a CuPy array, a CUDA tensor), or a
    ``__dlpack_device__`` other than host memory. A CPU tensor's
    ``__cuda_array_interface__`` raises, which counts as none."""
    try:
        x.__cuda_array_interface__  # noqa: B018 (reading it is the test)
        return True
    except Exception:
        pass
    if getattr(type(x), "__dlpack_device__", None) is None:
        return False
    try:
        kind = int(x.__dlpack_device__()[0])
    except Exception:
        return False
    return kind not in _DLPACK_HOST


_HOST_SCALARS = (list, tuple, int, float, bool, np.generic)
_ARRAY_PROTOCOLS = ("__array__", "__array_interface__", "__array_struct__")


def host_array_like(x: Any) -> bool:
    """Whether ``x`` is host data that ``numpy.asarray`` converts but that is no
    NumPy array: a list, a tuple, a Python or NumPy scalar, or an object with one
    of NumPy's array protocols (a pandas Series, a CPU tensor, a JAX array on the
    CPU) whose data is not on a device."""
    if isinstance(x, _HOST_SCALARS):
        return True
    t = type(x)
    if not any(hasattr(t, name) for name in _ARRAY_PROTOCOLS):
        return False
    return not on_device(x)


def _masks_entries(x: Any) -> bool:
    """Whether ``x`` is a NumPy masked array with an entry masked."""
    if not isinstance(x, np.ma.MaskedArray):
        return False
    mask = np.ma.getmask(x)
    return mask is not np.ma.nomask and bool(mask.any())


def as_array(x: Any, xp: Any, what: str) -> Any:
    """``x`` as an array of the backend's module (lists and scalars are converted).

    softcore never copies between host and device behind the caller's back, so an
    array the call's backend cannot take is a ``TypeError``: in a call on device
    arrays (CuPy), any array of another type, a NumPy array included; in a call on
    NumPy arrays, an array that lives on a device (:func:`on_device`).
    Host array-likes (a pandas Series, a CPU tensor) in a NumPy call are converted
    as ``numpy.asarray`` converts them.
    """
    if isinstance(x, np.ndarray) and xp is np:
        if type(x) is not np.ndarray and _masks_entries(x):
            raise TypeError(
                f"{what} is a masked array with masked entries, and softcore does "
                "not read masks: fill them first (for logits, "
                f"{what}.filled(-np.inf) gives masked classes probability 0), or "
                f"pass {what}.data to compute on every entry"
            )
        return x if type(x) is np.ndarray else np.asarray(x)  # a subclass: its data
    if (
        hasattr(x, "shape")
        and hasattr(x, "dtype")
        and not isinstance(x, xp.ndarray | np.generic)
        and (xp is not np or on_device(x))
    ):
        t, want = type(x), xp.ndarray
        raise TypeError(
            f"{what} is a {t.__module__}.{t.__qualname__}, but this call computes on "
            f"{want.__module__}.{want.__qualname__} arrays (the type of its first "
            f"array argument); pass {what} as one of those: softcore does not move "
            "arrays between array libraries or devices"
        )
    try:
        arr = xp.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} could not be converted to an array: {exc}") from None
    if arr.dtype == object:
        raise TypeError(f"{what} has dtype object; expected a real floating array")
    return arr


CAST_MIN = 1024
"""Arrays of fewer elements convert between float32 and float16/bfloat16 with
the array module's own cast, not a backend's ``cast`` hook (one call of it
costs about what NumPy's whole cast of a small array does)."""


ROWS_HOOK_SMALL: dict[str, tuple[str, ...]] = {
    "rows": ("float16", "bfloat16"),
    "logsumexp": ("float16",),
    "ce_index_grad": ("float16",),
}
"""The 16-bit dtypes whose arrays of fewer than ``CAST_MIN`` elements the core
offers a backend's ``low_precision_rows`` hook, by kind of call: ``rows``
(softmax, log_softmax and their backward passes), ``logsumexp``,
``ce_index_grad`` (a class-index cross-entropy with its gradient) and ``ce``
(any other cross-entropy). Where one call of the numba backend's hook costs
less than the two casts around a float32 call: NumPy casts float16 an element
at a time, ml_dtypes casts a small bfloat16 array in about a microsecond.
Interleaved in one process, 320-1024 elements (docs/benchmarks.md,
2026-12-07): the row ops 0.19-0.76 of the time (float16 and bfloat16);
logsumexp 0.79-0.94, once 1.08 (float16), and 0.90-1.03 (bfloat16: even, so
the casts stay); the class-index gradient 0.45-0.94 (float16) and 1.14-1.37
(bfloat16); the loss rows alone 0.97-1.57 (float16), 1.16-1.48 (bfloat16);
the float16 probability-target gradient 0.79-1.17."""


def rows_hook_min(dtype: Any, kind: str) -> int:
    """Fewest elements of a 16-bit ``dtype`` array the core offers the
    ``low_precision_rows`` hook in a call of ``kind`` (``ROWS_HOOK_SMALL``)."""
    name = dtype.type.__name__  # not dtype.name: 5 us for float16 (is_bfloat16)
    return 0 if name in ROWS_HOOK_SMALL.get(kind, ()) else CAST_MIN


def _cast_hook(be: Any, x: Any, dtype: Any) -> Any:
    """``be``'s ``cast`` hook where it may convert ``x`` to ``dtype``: float16 or
    bfloat16 to or from float32, ``CAST_MIN`` elements or more; else None."""
    if be is None or x.size < CAST_MIN:
        return None
    a, b = x.dtype, np.dtype(dtype)
    low = b if a == _F32 else a if b == _F32 else None
    # the hook converts native bits; NumPy swaps the bytes of any other order
    if low is None or low.itemsize != 2 or not low.isnative or not is_floating(low):
        return None
    return getattr(be, "cast", None)


def contiguous(x: Any, dtype: Any, xp: Any, be: Any = None) -> Any:
    """``x`` as a C-contiguous array of ``dtype`` (``x`` itself when it is one).
    float16 and bfloat16 go to float32 through the backend's ``cast`` hook where
    it has one (NumPy converts them one element at a time)."""
    hook = None if x.dtype == dtype else _cast_hook(be, x, dtype)
    if hook is not None:
        src = x if x.flags.c_contiguous else xp.ascontiguousarray(x)
        dst = xp.empty(x.shape, dtype=dtype)
        if hook(_writable(src) if xp is np else src, dst):
            return dst
    y = xp.ascontiguousarray(x, dtype=dtype)
    return _writable(y) if xp is np else y  # x itself where it was one


def converted(y: Any, dtype: Any, xp: Any, be: Any = None, out: Any = None) -> Any:
    """A result ``y`` in ``dtype``: written into ``out`` where given (of ``y``'s
    shape, and ``dtype``), else a new array with ``y``'s layout (``y`` itself
    when it has ``dtype``). float32 goes to float16 and bfloat16 through the
    backend's ``cast`` hook, as in :func:`contiguous`, where ``y`` (and ``out``)
    are C-contiguous. NumPy's cast to float16 runs under ``np.errstate``: a
    result past float16's range is inf, with no warning, as the hook, ml_dtypes'
    bfloat16 cast and PyTorch give it (1.4-3 us on a small call; the hook costs
    2-3 us more than NumPy's cast below ``CAST_MIN`` elements)."""
    if y.dtype == dtype:  # nothing to convert, nor an errstate to pay for
        return y if out is None else _cast_into(y, dtype, xp, out)
    hook = _cast_hook(be, y, dtype)
    if hook is not None and y.flags.c_contiguous:
        if out is not None and out.flags.c_contiguous:
            if hook(y, out):
                return out
        else:
            dst = xp.empty(y.shape, dtype=dtype)
            if hook(y, dst):
                if out is None:
                    return dst
                y = dst  # into a strided out: NumPy copies, in one dtype
    if dtype != _F16:  # ml_dtypes' bfloat16 cast gives inf without a warning
        return _cast_into(y, dtype, xp, out)
    with np.errstate(over="ignore", under="ignore"):  # past float16's range: inf
        return _cast_into(y, dtype, xp, out)


def _cast_into(y: Any, dtype: Any, xp: Any, out: Any) -> Any:
    """``y`` cast to ``dtype`` by the array module: into ``out`` where given."""
    if out is None:
        return y.astype(dtype)
    xp.copyto(out, y, casting="same_kind")
    return out


def rows(x: Any, axis: int, compute: np.dtype, xp: Any, be: Any = None) -> Any:
    """``x`` with ``axis`` moved last, flattened to a C-contiguous ``(rows, C)``
    (through ``be``'s ``cast`` hook, :func:`contiguous`, where that converts)."""
    if axis != x.ndim - 1:
        x = xp.moveaxis(x, axis, -1)
    if x.dtype is not compute or not x.flags.c_contiguous:
        x = contiguous(x, compute, xp, be)
    elif xp is np:
        x = _writable(x)  # the caller's array as it is: maybe read-only
    return x if x.ndim == 2 else x.reshape(-1, x.shape[-1])


def _pointer(a: Any) -> int:
    iface = getattr(a, "__array_interface__", None)
    if iface is None:
        iface = a.__cuda_array_interface__
    return int(iface["data"][0])


def may_alias(a: Any, b: Any, xp: Any) -> bool:
    """True when ``a`` and ``b`` overlap in memory without being the same view."""
    if a is b:
        return False
    fa = getattr(a, "flags", None)
    fb = getattr(b, "flags", None)
    if getattr(fa, "owndata", False) and getattr(fb, "owndata", False):
        return False  # two allocations of their own (and 0.7 us cheaper to know)
    share = getattr(xp, "may_share_memory", None)
    if share is None or not share(a, b):
        return False
    return not (
        _pointer(a) == _pointer(b) and a.shape == b.shape and a.strides == b.strides
    )


def check_out(
    out: Any,
    shape: tuple[int, ...],
    dtype: np.dtype,
    xp: Any,
    name: str = "out",
    like: str = "the input's",
) -> None:
    """``out`` must be a writeable array of the backend's type, shape and dtype.
    ``name`` is how messages call it, ``like`` whose shape it must have."""
    expected_type = xp.ndarray
    if not isinstance(out, expected_type):
        raise TypeError(
            f"{name} must be a {expected_type.__module__}.ndarray; "
            f"received {type(out).__module__}.{type(out).__qualname__}"
        )
    if tuple(out.shape) != tuple(shape):
        raise ValueError(
            f"{name} has shape {tuple(out.shape)}; expected {tuple(shape)} ({like})"
        )
    if out.dtype != dtype:
        raise TypeError(
            f"{name} has dtype {out.dtype}; expected {dtype} (the result's)"
        )
    flags = getattr(out, "flags", None)
    if flags is not None and not getattr(flags, "writeable", True):
        raise ValueError(f"{name} is read-only; expected a writeable array")


def check_same_shape(a: Any, b: Any, what_a: str, what_b: str) -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"{what_a} and {what_b} must have the same shape; "
            f"received {tuple(a.shape)} and {tuple(b.shape)}"
        )


def check_ce_options(reduction: Any, label_smoothing: Any, ignore_index: Any) -> float:
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"reduction must be one of 'mean', 'sum', 'none'; received {reduction!r}"
        )
    kind = type(label_smoothing)
    try:
        if (
            kind is not float
            and kind is not int
            and (
                # float() would parse a string, and take a 1-element array with
                # NumPy's DeprecationWarning; PyTorch refuses both
                isinstance(label_smoothing, str | bytes)
                or getattr(label_smoothing, "ndim", 0) != 0
            )
        ):
            raise TypeError
        eps = float(label_smoothing)
    except (TypeError, ValueError):
        raise TypeError(
            f"label_smoothing must be a real number; received {label_smoothing!r}"
        ) from None
    if not 0.0 <= eps <= 1.0:
        raise ValueError(
            f"label_smoothing must be in [0, 1]; received {label_smoothing!r}"
        )
    try:
        operator.index(ignore_index)
    except TypeError:
        raise TypeError(
            f"ignore_index must be an integer; received {ignore_index!r}"
        ) from None
    return eps


def class_weight(weight: Any, n_classes: int, xp: Any) -> Any:
    """The per-class weight as float64 ``(C,)`` (ones when ``weight`` is None)."""
    if weight is None:
        w = xp.empty(n_classes, dtype=_F64)
        w.fill(1.0)  # a microsecond sooner than xp.ones on a small call
        return w
    w = as_array(weight, xp, "weight")
    if not is_real(w.dtype):
        raise TypeError(f"weight has dtype {w.dtype}; expected a real array")
    if w.ndim != 1 or w.shape[0] != n_classes:
        raise ValueError(
            f"weight must be 1-D with one entry per class, shape ({n_classes},); "
            f"received shape {tuple(w.shape)}"
        )
    w = xp.ascontiguousarray(w, dtype=_F64)
    return _writable(w) if xp is np else w


class _ReadOnlyMemory:
    """A caller's read-only host array, offered through the array interface with
    its memory writeable (:func:`_writable`); it keeps the array alive for as
    long as a view of it lives."""

    __slots__ = ("__array_interface__", "array")
    __array_interface__: dict[str, Any]
    array: Any


VIEW_MIN_BYTES = 1 << 16
"""Read-only arrays of fewer bytes are copied rather than viewed (:func:`_writable`):
the copy costs less (0.3 us at 2 KiB, 1.7 at 64 KiB, against 3 us for the view)."""


def _writable(a: Any) -> Any:
    """Host array ``a`` itself, or where it is read-only (the caller's: a JAX
    array through ``np.asarray``, a memory map opened ``"r"``, a view marked
    so) a writeable view of the same memory, without a copy (a copy below
    ``VIEW_MIN_BYTES``, which is cheaper).

    The kernels never write their inputs (the conformance kit checks every
    input after every call), but a JIT may compile a variant per writeability
    of each input: numba types a read-only array apart, so a read-only first
    call compiled every kernel it reached once more, and a warmup that covered
    those variants compiled 161 of its 276 kernels for them. Every host array
    the core hands a backend as an input goes through here, so a backend sees
    writeable inputs only. The view costs about 3 us, paid by read-only inputs
    alone (a copy of the logits cost more, and their memory twice)."""
    if a.flags.writeable:
        return a
    if a.nbytes < VIEW_MIN_BYTES:
        return a.copy()
    memory = _ReadOnlyMemory()
    iface = dict(a.__array_interface__)
    iface["data"] = (iface["data"][0], False)
    memory.__array_interface__ = iface
    memory.array = a
    view = np.asarray(memory)
    # the interface spells bfloat16 as raw bytes ("|V2"): its own dtype again
    return view if view.dtype == a.dtype else view.view(a.dtype)


def _as_unsigned(t: Any) -> Any:
    """Integer ``t`` seen as the unsigned type of its width (a view, no copy)."""
    return t if t.dtype.kind == "u" else t.view(_UNSIGNED[t.dtype.itemsize])


def _int64_rows(t: Any, xp: Any, scratch: Any) -> Any:
    """Flat targets as contiguous int64: ``t`` itself where it is (on the host,
    :func:`_writable` of it where it is read-only), else a copy (into
    ``scratch.target`` where there is a scratch)."""
    if scratch is None:
        t = xp.ascontiguousarray(t, dtype=np.int64)
        return _writable(t) if xp is np else t
    if t.dtype == np.int64:
        f = t.flags
        if f.c_contiguous:
            return t if f.writeable else _writable(t)
    out = scratch.target
    np.copyto(out, t, casting="unsafe")
    return out


_INT_RANGES: dict = {}


def _int_range(dtype: Any) -> tuple[int, int]:
    """``(min, max)`` of an integer dtype (``np.iinfo`` costs a microsecond)."""
    r = _INT_RANGES.get(dtype)
    if r is None:
        info = np.iinfo(dtype)
        r = _INT_RANGES[dtype] = (int(info.min), int(info.max))
    return r


def first_bad_target(t: Any, n_classes: int, ignore_index: int, xp: Any) -> str | None:
    """Describe the first target outside ``[0, C)`` that is not ``ignore_index``.

    ``t`` is compared only with values its dtype holds: under NEP 50 a Python
    integer outside the dtype's range is an ``OverflowError`` in CuPy, comparisons
    included (``uint8_targets != -100``), or a wrong answer in some versions.
    """
    lo, hi = _int_range(t.dtype)
    bad = t >= n_classes if n_classes <= hi else None
    if lo < 0:
        bad = t < 0 if bad is None else bad | (t < 0)
    if bad is None:
        return None  # every value of the dtype is a class
    if lo <= ignore_index <= hi:
        bad &= t != ignore_index
    if not bool(bad.any()):
        return None
    flat = int(xp.argmax(bad.reshape(-1)))
    pos = tuple(int(i) for i in np.unravel_index(flat, tuple(t.shape)))
    where = ", ".join(map(str, pos))
    value = int(t.reshape(-1)[flat])
    return (
        f"target[{where}] = {value} is outside [0, {n_classes}) "
        f"and is not ignore_index={ignore_index}"
    )


class CrossEntropyPlan:
    """Cross-entropy options resolved into what the row kernels take.

    Attributes: ``probs`` (probability targets?), ``target`` (int64
    ``(rows,)`` or ``(rows, C)`` of the compute dtype, or of the logits' 16-bit
    dtype where :func:`plan_cross_entropy` was asked to keep it),
    ``alpha``/``beta`` (float64 ``(rows,)``, class-index only),
    ``smoothing``, ``class_weight`` (float64 ``(C,)``), ``normaliser`` (the
    mean's denominator) and ``grad_scale``.
    """

    __slots__ = (
        "alpha",
        "beta",
        "class_weight",
        "grad_scale",
        "nan_rows",
        "normaliser",
        "probs",
        "reduction",
        "smoothing",
        "target",
    )
    alpha: Any
    beta: Any
    class_weight: Any
    grad_scale: float
    nan_rows: Any
    normaliser: float
    probs: bool
    reduction: str
    smoothing: float
    target: Any


def plan_cross_entropy(
    target: Any,
    logits_shape: tuple[int, ...],
    axis: int,
    compute: np.dtype,
    xp: Any,
    *,
    weight: Any,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    logits_name: str = "logits",
    scratch: Any = None,
    be: Any = None,
    keep: Any = None,
) -> CrossEntropyPlan:
    """Check ``target`` and the options and resolve them per row.

    ``logits_shape`` is the user's shape; ``axis`` the (normalised) class axis.
    ``scratch``, the thread's :class:`softcore._workspace.Rows` or None, holds
    the per-row arrays of a class-index target (``alpha``, ``beta`` and, where
    they must be copied, the targets); its ``loss`` is the caller's. ``be``, the
    call's backend, converts float16 and bfloat16 probability targets where it
    has a ``cast`` hook (:func:`contiguous`). A probability target of dtype
    ``keep`` (the 16-bit logits' dtype, where the caller may hand both to the
    backend's ``low_precision_rows`` hook) stays in it, as ``(rows, C)`` rows;
    the caller converts it (:func:`compute_target`) where the hook declines.
    """
    eps = check_ce_options(reduction, label_smoothing, ignore_index)
    n_classes = logits_shape[axis]
    if n_classes < 1:
        raise ValueError(
            f"{logits_name} must have at least one class along axis {axis}; "
            f"received shape {logits_shape}"
        )
    batch = logits_shape[:axis] + logits_shape[axis + 1 :]
    t = as_array(target, xp, "target")
    plan = CrossEntropyPlan()
    plan.reduction = reduction
    plan.smoothing = eps
    plan.nan_rows = None
    n_rows = math.prod(batch)
    if t.dtype.kind in "iu":
        if tuple(t.shape) != batch:
            raise ValueError(
                f"class-index target must have the {logits_name} shape without the "
                f"class axis, {batch}; received {tuple(t.shape)}"
            )
        # fast path: every target a class and none ignored. One reduction: seen
        # as unsigned, a negative target is larger than any class, if the classes
        # fit in the dtype's non-negative half (int8: C <= 128); widen if not
        dt = t.dtype
        if dt.kind == "i" and dt.itemsize < 8 and n_classes > _int_range(dt)[1] + 1:
            t = t.astype(np.int64)
        elif not dt.isnative:  # the unsigned view below is native-endian
            t = t.astype(dt.newbyteorder("="))
        flat = t if t.ndim == 1 else t.reshape(-1)
        if xp is not np:
            _index_plan_device(
                plan, t, flat, n_classes, weight, ignore_index, eps, reduction, xp
            )
            return _with_grad_scale(plan, reduction)
        unsigned = None  # flat seen as unsigned, made where it is needed
        if n_rows <= _SMALL_ROWS:
            # a short batch: the same maximum from a Python list, in half the time
            values = flat.tolist()
            hi = max(values, default=0)
            if min(values, default=0) < 0:  # its unsigned view: past any class
                hi = 1 << 64
        else:
            unsigned = _as_unsigned(flat)
            hi = int(unsigned.max()) if n_rows else 0
        in_range = hi < n_classes
        keep = None
        if not in_range or 0 <= ignore_index <= hi:
            if unsigned is None:
                unsigned = _as_unsigned(flat)
            # rows equal to ignore_index are ignored; compared in the target's
            # own dtype, and only where it can hold ignore_index (CuPy raises
            # for uint8 != -100; uint64 must not wrap to it)
            lo_t, hi_t = _int_range(t.dtype)
            if lo_t <= ignore_index <= hi_t:
                keep = flat != ignore_index
            if not in_range:  # some target is no class: it must be ignored
                if keep is not None:  # one reduction over kept rows
                    out_of_range = (
                        int(_MAX(unsigned, where=keep, initial=0)) >= n_classes
                    )
                else:  # C <= hi fits the dtype
                    out_of_range = bool((unsigned >= n_classes).any())
                if out_of_range:
                    msg = first_bad_target(t, n_classes, ignore_index, xp)
                    raise ValueError(msg)
            if keep is None:  # nothing can be ignored and nothing is out of range
                in_range = True
            else:
                in_range = False  # the general path below
        cw = class_weight(weight, n_classes, xp)
        t = _int64_rows(flat, xp, scratch)
        plan.probs = False
        if in_range and weight is None:
            plan.target = t
            if scratch is None:
                plan.alpha = xp.full(n_rows, 1.0 - eps)
                plan.beta = xp.full(n_rows, eps / n_classes)
            else:
                plan.alpha, plan.beta = scratch.alpha, scratch.beta
                plan.alpha.fill(1.0 - eps)
                plan.beta.fill(eps / n_classes)
            plan.normaliser = float(n_rows)
        else:
            if keep is None:  # weights only: every row kept
                keep = xp.ones(n_rows, dtype=bool)
            if scratch is None:
                t, w_y, plan.alpha, plan.beta = _kept_terms(
                    t, keep, cw, eps, n_classes, xp, weight is None
                )
                plan.normaliser = float(w_y.sum())
            else:  # the same in the thread's scratch: no fresh pages to fault in
                # an ignored row's target: 0 (the caller's array is never written)
                t64 = scratch.target
                np.multiply(t, keep, out=t64, casting="unsafe")
                t = t64
                w_y = scratch.alpha
                if weight is None:  # every class weight is 1: w_y is keep
                    np.copyto(w_y, keep)
                    plan.normaliser = float(np.count_nonzero(keep))
                else:
                    cw.take(t, out=w_y, mode="clip")  # t is in range
                    w_y *= keep
                    plan.normaliser = float(w_y.sum())
                if eps:
                    w_y *= 1.0 - eps  # after the sum, which needs w_y
                plan.alpha = w_y
                plan.beta = scratch.beta
                if eps:
                    np.multiply(keep, eps / n_classes, out=plan.beta)
                else:  # the same zeros, sooner
                    plan.beta.fill(0.0)
            plan.target = t
            if reduction == "mean" and plan.normaliser == 0 and bool(keep.any()):
                # PyTorch: the kept rows' gradient is w_y / 0 = 0/0 = NaN
                plan.nan_rows = keep
        plan.class_weight = cw
    elif is_floating(t.dtype):
        if ignore_index != -100:
            raise ValueError(
                "ignore_index is not supported with probability (floating) targets; "
                f"expected the default -100, received {ignore_index}"
            )
        if tuple(t.shape) != tuple(logits_shape):
            raise ValueError(
                f"probability target must have the {logits_name} shape "
                f"{tuple(logits_shape)}; received {tuple(t.shape)}"
            )
        plan.probs = True
        plan.class_weight = class_weight(weight, n_classes, xp)
        kept = keep is not None and t.dtype == keep
        plan.target = rows(t, axis, t.dtype if kept else compute, xp, be)
        plan.alpha = plan.beta = None
        plan.normaliser = float(n_rows)
    else:
        raise TypeError(
            f"target has dtype {t.dtype}; expected integer class indices or "
            "floating class probabilities"
        )
    return _with_grad_scale(plan, reduction)


def compute_target(
    plan: CrossEntropyPlan, compute: np.dtype, xp: Any, be: Any = None
) -> None:
    """Convert a probability target that :func:`plan_cross_entropy` kept in its
    16-bit dtype into ``compute``, as it would have."""
    if plan.probs and plan.target.dtype != compute:
        plan.target = rows(plan.target, 1, compute, xp, be)


def _with_grad_scale(plan: CrossEntropyPlan, reduction: str) -> CrossEntropyPlan:
    if reduction == "mean":
        plan.grad_scale = 1.0 / plan.normaliser if plan.normaliser != 0 else 0.0
    else:
        plan.grad_scale = 1.0
    return plan


def _kept_terms(
    t: Any,
    keep: Any,
    cw: Any,
    eps: float,
    n_classes: int,
    xp: Any,
    unweighted: bool = False,
) -> tuple[Any, Any, Any, Any]:
    """The class-index plan's per-row arrays where rows may be ignored, as
    fresh arrays: the targets with an ignored row's set to 0 (the caller's are
    never written), each row's target weight ``w_y`` (0 where ignored),
    ``alpha = (1 - eps) w_y`` and ``beta = eps / C`` where kept, else 0.

    The same values in fewer array operations (each one a kernel launch on a
    device) where the class weights are all 1 (``unweighted``: ``w_y`` is
    ``keep``) and without smoothing (``alpha`` is ``w_y`` itself, read-only
    like every plan array; ``beta`` zeros)."""
    t0 = xp.where(keep, t, 0)
    w_y = keep.astype(_F64) if unweighted else cw[t0] * keep
    if not eps:
        return t0, w_y, w_y, xp.zeros(t0.shape[0], dtype=_F64)
    return t0, w_y, (1.0 - eps) * w_y, (eps / n_classes) * keep.astype(_F64)


def _index_plan_device(
    plan: CrossEntropyPlan,
    t: Any,
    flat: Any,
    n_classes: int,
    weight: Any,
    ignore_index: int,
    eps: float,
    reduction: str,
    xp: Any,
) -> None:
    """:func:`plan_cross_entropy`'s class-index plan for device arrays.

    What the host must know (whether every target is a class, the mean's
    denominator) comes back in one read of device memory, each read a wait for
    the device: the largest target, with the summed weight of the targets read
    along with it where there are class weights; where a target is
    ``ignore_index`` or no class, one more read brings whether one is bad,
    the kept rows' weight and whether any row is kept. Values, checks and
    errors are those of the host path.
    """
    n_rows = flat.shape[0]
    cw = class_weight(weight, n_classes, xp)
    t64 = xp.ascontiguousarray(flat, dtype=np.int64)
    unsigned = _as_unsigned(flat)
    # each row's target weight, if every row is kept (a bad target's index
    # wraps: it raises below)
    w_t: Any = None if weight is None else cw[t64]
    hi, total = 0.0, 0.0
    if n_rows and w_t is None:  # float: exact below 2**53, where it decides hi < C
        hi = float(unsigned.max())
    elif n_rows:
        got = xp.zeros(2, dtype=_F64)
        got[0] = unsigned.max()
        got[1] = w_t.sum()  # the denominator, if every row is kept
        hi, total = (float(v) for v in got.get())
    plan.probs = False
    plan.class_weight = cw
    if hi < n_classes and not 0 <= ignore_index <= hi:  # every row kept
        plan.target = t64
        plan.beta = xp.full(n_rows, eps / n_classes)
        if weight is None:
            plan.alpha = xp.full(n_rows, 1.0 - eps)
            plan.normaliser = float(n_rows)
        else:
            plan.alpha = (1.0 - eps) * w_t
            plan.normaliser = total
            if reduction == "mean" and total == 0 and n_rows:
                plan.nan_rows = xp.ones(n_rows, dtype=bool)  # as below: 0/0
        return
    lo_t, hi_t = _int_range(t.dtype)
    if lo_t <= ignore_index <= hi_t:  # compared in the target's own dtype
        keep = flat != ignore_index
    else:
        keep = xp.ones(n_rows, dtype=bool)
    t0, w_y, alpha, beta = _kept_terms(
        t64, keep, cw, eps, n_classes, xp, weight is None
    )
    got = xp.zeros(3, dtype=_F64)
    if hi >= n_classes:  # a kept target outside [0, C) is one at or past C unsigned
        got[0] = _as_unsigned(t0).max()  # (t0: ignored rows' targets are 0)
    got[1] = w_y.sum()
    got[2] = keep.any()
    top, total, kept = (float(v) for v in got.get())
    if top >= n_classes:
        raise ValueError(first_bad_target(t, n_classes, ignore_index, xp))
    plan.target, plan.alpha, plan.beta = t0, alpha, beta
    plan.normaliser = total
    if reduction == "mean" and total == 0 and kept:
        # PyTorch: the kept rows' gradient is w_y / 0 = 0/0 = NaN
        plan.nan_rows = keep
