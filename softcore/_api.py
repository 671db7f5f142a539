"""The public operations: validate, normalise, pick a backend, call one row kernel."""

from __future__ import annotations

import contextlib
import math
from typing import Any, Literal

import numpy as np

from softcore import _registry as _reg
from softcore import _workspace
from softcore._validate import (
    _writable,
    as_array,
    check_axes,
    check_axis,
    check_ce_options,
    check_out,
    check_same_shape,
    class_weight,
    compute_target,
    contiguous,
    converted,
    first_bad_target,
    float_dtypes,
    is_multi_axis,
    is_real,
    may_alias,
    plan_cross_entropy,
    rows,
    rows_hook_min,
)

__all__ = [
    "cross_entropy",
    "cross_entropy_grad",
    "cross_entropy_with_grad",
    "linear_cross_entropy",
    "linear_cross_entropy_with_grad",
    "log_softmax",
    "log_softmax_backward",
    "log_softmax_jacobian",
    "logsumexp",
    "softmax",
    "softmax_backward",
    "softmax_jacobian",
]

Reduction = Literal["mean", "sum", "none"]
Axes = int | tuple[int, ...] | None

_HOST = contextlib.nullcontext()


def _device_of(x: Any) -> Any:
    """The input's device as a context manager (CuPy), so outputs are allocated on
    the same device as the input; a no-op for host arrays."""
    if type(x) is np.ndarray:
        return _HOST
    dev = getattr(x, "device", None)
    return dev if hasattr(dev, "__enter__") else _HOST


def _prepare(x: Any, axis: Any, backend: Any, what: str = "x") -> tuple:
    """Backend, array, normalised axis, compute and result dtypes for one input."""
    be = _reg.resolve(x, backend)
    xp = be.xp
    arr = as_array(x, xp, what)
    compute, result = float_dtypes(arr.dtype, what)
    ax = check_axis(axis, arr.ndim, what)
    return be, xp, arr, ax, compute, result


def _restore(y2: Any, shape: tuple[int, ...], ax: int, xp: Any) -> Any:
    """Undo :func:`rows` for an input of ``shape``: reshape to the axis-last
    shape, move the axis back."""
    ndim = len(shape)
    if ndim == 2 and ax == 1:
        return y2
    y = y2 if ndim == 2 else y2.reshape(shape[:ax] + shape[ax + 1 :] + (shape[ax],))
    if ax != ndim - 1:
        y = xp.moveaxis(y, -1, ax)
    return y


def _direct_out(
    out: Any,
    ax: int,
    shape2: tuple[int, ...],
    compute: Any,
    result: Any,
    xp: Any,
    inputs: tuple = (),
    untouchable: tuple = (),
) -> Any:
    """``out`` as the C-contiguous ``(rows, C)`` array a kernel may write directly,
    or None when the result must go through a temporary: ``out`` of another dtype
    than the computation's, not C-contiguous with the class axis last, overlapping
    one of ``inputs`` other than as the very same view (the kernels read a row
    before they write it, so only an exact alias is safe), or sharing any memory
    with one of ``untouchable`` (arrays a kernel reads in another order)."""
    if out is None or result != compute:
        return None
    o_last = out if ax == out.ndim - 1 else xp.moveaxis(out, ax, -1)
    if not o_last.flags.c_contiguous:
        return None
    # a 2-D out of another shape: all of a 2-D array's axes as one class axis
    cand = o_last if o_last.shape == shape2 else o_last.reshape(shape2)
    # plain loops, not any() over generators: a small call feels each step
    for a in inputs:
        if may_alias(a, cand, xp):
            return None
    if untouchable:
        share = getattr(xp, "may_share_memory", None)
        if share is not None:
            for a in untouchable:
                if a is not None and share(a, cand):
                    return None
    return cand


def _deliver(y: Any, out: Any, result: Any, xp: Any, be: Any = None) -> Any:
    """A temporary result already in the caller's layout: cast to ``result`` in a
    new array, or copied into ``out`` (through ``be``'s ``cast`` hook where
    that converts, :func:`converted`)."""
    return converted(y, result, xp, be, out)


def _to_out(
    y2: Any, shape: tuple, ax: int, out: Any, result: Any, xp: Any, be: Any = None
) -> Any:
    """The temporary result ``y2`` (``(rows, C)``, compute dtype) in the caller's
    layout, through :func:`_deliver`. Where the layout is not ``y2``'s own, a
    result to convert is converted first, while it is contiguous."""
    y = _restore(y2, shape, ax, xp)
    if y2.dtype != result and not y.flags.c_contiguous:
        y = _restore(converted(y2, result, xp, be), shape, ax, xp)
    return _deliver(y, out, result, xp, be)


_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_I64 = np.dtype(np.int64)


def _plain_2d(x: Any, axis: Any) -> bool:
    """Whether ``x`` is a C-contiguous, aligned and writeable 2-D NumPy array
    and ``axis`` its last as a Python int: the layout of a plain host call.
    ``carray`` tells all three flags at the cost of one; a read-only array is
    tried again as a writeable view or copy (:func:`_read_only`)."""
    return (
        type(x) is np.ndarray
        and type(axis) is int
        and x.ndim == 2
        and (axis == -1 or axis == 1)
        and x.flags.carray
    )


def _host_rows(x: Any, axis: Any, backend: Any) -> Any:
    """The backend of a plain host call, or None for the general path.

    Plain: ``x`` a non-empty C-contiguous 2-D float32 or float64 NumPy array,
    ``axis`` its last as a Python int, the backend a NumPy one. The kernel reads
    ``x`` as it is and the result has its dtype, so the call may skip the
    general steps (``_prepare``, :func:`rows`, :func:`_direct_out`), each of
    which a small call feels: 8x64 float32 softmax took 2.06 us through them
    and 1.50 us without. The backend is resolved first, as on the general path,
    so a bad ``backend`` gives the same error."""
    if _plain_2d(x, axis):
        dt = x.dtype
        if (dt is _F32 or dt is _F64) and x.size:
            be = _reg.resolve(x, backend)
            if be.xp is np:
                return be
    return None


def _plain_out(x: Any, out: Any) -> bool:
    """Whether ``out`` may take a plain input's (:func:`_host_rows`) result
    without the general checks: a writeable C-contiguous NumPy array of ``x``'s
    shape and dtype, either ``x`` itself or sharing no memory with it (both own
    their data). Everything else takes :func:`check_out` and
    :func:`_direct_out`, which give the same answer for this case, a
    microsecond later."""
    if out is x:
        return bool(x.flags.writeable)
    if type(out) is not np.ndarray or out.dtype is not x.dtype:
        return False
    if out.shape != x.shape:
        return False
    fo = out.flags
    return fo.writeable and fo.c_contiguous and fo.owndata and x.flags.owndata


def _host_rows16(x: Any, axis: Any, backend: Any) -> Any:
    """The ``low_precision_rows`` hook of a plain 16-bit host call, or None.

    Plain: as for :func:`_host_rows`, but ``x`` float16 or bfloat16 in native
    byte order with ``rows_hook_min`` elements or more, the sizes whose
    general path offers the rows to that hook, and the backend one that has
    it. The call may then hand the rows to the hook at once: at 512x64 float16
    the general steps cost about 4 us of a 20 us softmax_backward."""
    if _plain_2d(x, axis) and x.itemsize == 2:
        if x.size < rows_hook_min(x.dtype, "rows"):
            return None
        compute, result = float_dtypes(x.dtype, "x")
        if compute is _F32 and result == x.dtype:
            be = _reg.resolve(x, backend)
            if be.xp is np:
                return getattr(be, "low_precision_rows", None)
    return None


_DECLINED = object()
"""What :func:`_plain_rows16` returns where the hook declined the rows."""


def _plain_rows16(kernel: str, arrays: tuple, axis: Any, out: Any, backend: Any) -> Any:
    """A plain 16-bit call (:func:`_host_rows16`) of softmax, log_softmax or a
    backward pass (``arrays``, its inputs, all of the first one's dtype, shape
    and layout; a read-only saved output is taken as a view or copy, as
    :func:`_plain_backward` takes it): its result, None for the general path,
    or ``_DECLINED`` where the hook declined (writing nothing): the general
    path without the hook."""
    x = arrays[0]
    hook = _host_rows16(x, axis, backend)
    if hook is None:
        return None
    if len(arrays) == 2:  # a backward pass: its saved output too
        s = arrays[1]
        if type(s) is not np.ndarray or s.dtype != x.dtype or s.shape != x.shape:
            return None
        s = _plain_saved(s)
        if s is None:
            return None
        arrays = (x, s)
    if out is None:
        y = np.empty(x.shape, dtype=x.dtype)
    elif all(_plain_out(a, out) for a in arrays):
        y = out
    else:
        return None
    return y if hook(kernel, arrays, y) else _DECLINED


def _plain_saved(saved: Any) -> Any:
    """A plain backward call's saved output (a NumPy array of its gradient's
    dtype and shape) as the kernel takes it: itself where C-contiguous, aligned
    and writeable, a writeable view or copy where only read-only, else None (a
    strided or unaligned one: the general path)."""
    if saved.flags.carray:
        return saved
    saved = _writable(saved)
    return saved if saved.flags.carray else None


def _read_only(x: Any) -> bool:
    """Whether ``x`` is a read-only NumPy array. A plain call's checks fail on
    that flag alone, and are then tried again on a writeable view or copy of
    ``x`` (``_writable``): a read-only 8x64 float32 softmax took 9.6 us through
    the general path and a view, 3.1 us with a writeable input."""
    return type(x) is np.ndarray and not x.flags.writeable


def _plain_rowwise(kernel: str, x: Any, axis: Any, out: Any, backend: Any) -> Any:
    """A plain call (:func:`_host_rows`, :func:`_host_rows16`) of a
    row-preserving kernel (softmax, log_softmax), or None for the general
    path."""
    be = _host_rows(x, axis, backend)
    if be is None:
        if _read_only(x):
            return _plain_rowwise(kernel, _writable(x), axis, out, backend)
        y = _plain_rows16(kernel, (x,), axis, out, backend)
        if y is _DECLINED:
            return _rowwise(kernel, x, axis, out, backend, rows_hook=False)
        return y
    if out is None:
        y = np.empty(x.shape, dtype=x.dtype)
        getattr(be, kernel)(x, y)
        return y
    if _plain_out(x, out):
        getattr(be, kernel)(x, out)
        return out
    return None


def _rowwise(
    kernel: str, x: Any, axis: Any, out: Any, backend: Any, rows_hook: bool = True
) -> Any:
    """One code path for the row-preserving ops (softmax, log_softmax);
    ``rows_hook`` False where the backend's ``low_precision_rows`` hook has
    declined these rows already."""
    be, xp, arr, ax, compute, result = _prepare(x, axis, backend)
    if out is not None:
        check_out(out, arr.shape, result, xp)
    if arr.size == 0:
        return xp.empty(arr.shape, dtype=result) if out is None else out
    if rows_hook and result != compute and arr.size >= rows_hook_min(result, "rows"):
        done = _low_precision_rows(kernel, be, xp, (arr,), ax, out, result)
        if done is not None:
            return done
    x2 = rows(arr, ax, compute, xp, be)
    o2 = _direct_out(out, ax, x2.shape, compute, result, xp, (x2,))
    if o2 is None:
        y2 = xp.empty(x2.shape, dtype=compute)
        getattr(be, kernel)(x2, y2)
        return _to_out(y2, arr.shape, ax, out, result, xp, be)
    getattr(be, kernel)(x2, o2)
    return out


def _low_precision_rows(
    kernel: str, be: Any, xp: Any, arrays: tuple, ax: int, out: Any, result: Any
) -> Any:
    """A float16 or bfloat16 softmax, log_softmax or backward pass (``arrays``,
    its inputs) through the backend's optional ``low_precision_rows`` hook,
    which converts the rows in cache (no float32 copy of the arrays), or None
    where the backend has no such hook or declines."""
    hook = getattr(be, "low_precision_rows", None)
    if hook is None or any(a.dtype != result for a in arrays):
        return None
    # copies only for a moved or strided axis
    args = tuple(rows(a, ax, result, xp) for a in arrays)
    shape = arrays[0].shape
    o2 = _direct_out(out, ax, args[0].shape, result, result, xp, args)
    y2 = o2 if o2 is not None else xp.empty(args[0].shape, dtype=result)
    if not hook(kernel, args, y2):
        return None
    return out if o2 is not None else _to_out(y2, shape, ax, out, result, xp)


def _over_axes(
    kernel: str, x: Any, axis: Any, out: Any, keepdims: bool, backend: Any
) -> Any:
    """softmax, log_softmax or logsumexp (``kernel``) over several axes, or all of
    them (``axis=None``), taken together as one flattened class axis."""
    be = _reg.resolve(x, backend)
    xp = be.xp
    arr = as_array(x, xp, "x")
    compute, result = float_dtypes(arr.dtype, "x")
    axes = check_axes(axis, arr.ndim, "x")
    if len(axes) == 1:
        if kernel == "logsumexp_rows":
            return _logsumexp(arr, axes[0], keepdims, backend)
        return _rowwise(kernel, arr, axes[0], out, backend)
    if out is not None:
        check_out(out, arr.shape, result, xp)
    xt, last = _axes_last(arr, axes, xp)
    moved = xt is not arr
    batch = _reduced_shape(arr.shape, axes, False)
    k = math.prod(arr.shape[a] for a in axes)
    if kernel == "logsumexp_rows":
        x2 = None
        if arr.size:
            x2 = contiguous(xt, compute, xp, be).reshape(-1, k)
        res = _lse_rows(be, xp, x2, batch, compute, result)
        if keepdims:
            res = res.reshape(_reduced_shape(arr.shape, axes, True))
        return res[()] if res.ndim == 0 else res
    if arr.size == 0:
        return xp.empty(arr.shape, dtype=result) if out is None else out
    x2 = contiguous(xt, compute, xp, be).reshape(-1, k)
    # with the class axes already last, out's last axis stands for all of them
    o2 = None
    if not moved:
        o2 = _direct_out(out, arr.ndim - 1, x2.shape, compute, result, xp, (x2,))
    if o2 is not None:
        getattr(be, kernel)(x2, o2)
        return out
    y2 = xp.empty(x2.shape, dtype=compute)
    getattr(be, kernel)(x2, y2)
    if moved and result != compute:  # convert while contiguous
        y2 = converted(y2, result, xp, be)
    y = y2.reshape(xt.shape)
    return _deliver(xp.moveaxis(y, last, axes) if moved else y, out, result, xp, be)


def _axes_last(a: Any, axes: tuple[int, ...], xp: Any) -> tuple[Any, tuple[int, ...]]:
    """``a`` with the (sorted) ``axes`` moved last, in their order (``a`` itself
    where they are last already), and the positions they took."""
    last = tuple(range(a.ndim - len(axes), a.ndim))
    return (a if axes == last else xp.moveaxis(a, axes, last)), last


def _reduced_shape(
    shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool
) -> tuple[int, ...]:
    """``shape`` reduced over ``axes``: without them, or with them of length 1."""
    if keepdims:
        return tuple(1 if a in axes else n for a, n in enumerate(shape))
    return tuple(n for a, n in enumerate(shape) if a not in axes)


def softmax(x: Any, axis: Axes = -1, *, out: Any = None, backend: Any = None) -> Any:
    r"""Softmax along ``axis``: ``exp(x - logsumexp(x, axis, keepdims=True))``.

    Parameters
    ----------
    x : array_like
        Logits; any number of batch dimensions. float16 and bfloat16 (ml_dtypes')
        are computed in float32 and returned in their own dtype; integers and bool
        are promoted to float64.
    axis : int, tuple of ints or None, default -1
        The class axis. Several axes (``None``: all of them) are taken together as
        one flattened class axis, as SciPy and JAX do.
    out : ndarray, optional
        Where to write the result: same shape as ``x``, the result's dtype. It may be
        ``x`` itself.
    backend : str, optional
        A registered backend's name (see :func:`list_backends`).

    Returns
    -------
    ndarray
        Probabilities, same shape as ``x``; each slice along ``axis`` sums to 1.

    Raises
    ------
    TypeError
        Complex, object or string input; ``out`` of the wrong dtype or type; an
        ``axis`` that is not an integer, a tuple of integers or None.
    ValueError
        ``axis`` out of range or named twice; ``out`` of the wrong shape or
        read-only.

    Notes
    -----
    :math:`\sigma(x)_i = e^{x_i - m} / \sum_j e^{x_j - m}` with :math:`m = \max_j x_j`,
    so any finite input is stable. A slice with a NaN, a ``+inf`` or only ``-inf``
    values gives NaN in that slice only.

    See Also
    --------
    log_softmax, logsumexp, softmax_backward

    Examples
    --------
    >>> import numpy as np, softcore as sc
    >>> sc.softmax(np.array([0.0, np.log(3.0)]), backend="numpy")
    array([0.25, 0.75])
    """
    y = _plain_rowwise("softmax_rows", x, axis, out, backend)
    if y is not None:
        return y
    with _device_of(x):
        if is_multi_axis(axis):
            return _over_axes("softmax_rows", x, axis, out, False, backend)
        return _rowwise("softmax_rows", x, axis, out, backend)


def log_softmax(
    x: Any, axis: Axes = -1, *, out: Any = None, backend: Any = None
) -> Any:
    r"""Log-softmax along ``axis``: ``x - logsumexp(x, axis, keepdims=True)``.

    Parameters and errors as for :func:`softmax`.

    Returns
    -------
    ndarray
        Log-probabilities, same shape as ``x``.

    Notes
    -----
    Computed as :math:`x_i - m - \log\sum_j e^{x_j - m}`, never as ``log(softmax)``,
    so tiny probabilities keep their full relative accuracy.

    See Also
    --------
    softmax, logsumexp, log_softmax_backward

    Examples
    --------
    >>> import numpy as np, softcore as sc
    >>> sc.log_softmax(np.array([1000.0, 1000.0]), backend="numpy")
    array([-0.69314718, -0.69314718])
    """
    y = _plain_rowwise("log_softmax_rows", x, axis, out, backend)
    if y is not None:
        return y
    with _device_of(x):
        if is_multi_axis(axis):
            return _over_axes("log_softmax_rows", x, axis, out, False, backend)
        return _rowwise("log_softmax_rows", x, axis, out, backend)


def logsumexp(
    x: Any,
    axis: Axes = -1,
    *,
    keepdims: bool = False,
    b: Any = None,
    return_sign: bool = False,
    backend: Any = None,
) -> Any:
    r"""``log(sum(exp(x), axis))`` without overflow; with ``b``,
    ``log|sum(b * exp(x), axis)|``, as SciPy's and JAX's ``logsumexp``.

    Parameters
    ----------
    x : array_like
        Input; dtypes as for :func:`softmax`.
    axis : int, tuple of ints or None, default -1
        The axis to reduce; several axes (``None``: all of them) are reduced
        together, as SciPy and JAX do.
    keepdims : bool, default False
        Keep the reduced axes with length 1.
    b : array_like, optional
        Factors of ``exp(x)``, broadcastable to ``x``'s shape (a scalar
        included); they may be negative, to subtract. The result's dtype is
        ``x``'s and ``b``'s promoted as NumPy 2 promotes them: a Python number
        takes ``x``'s dtype, an array or NumPy scalar promotes it.
    return_sign : bool, default False
        Also return the sign of the sum: ``1``, ``-1``, or ``0`` where it is 0
        (NaN where the result is NaN). Without it, a negative sum gives NaN.
    backend : str, optional
        A registered backend's name.

    Returns
    -------
    ndarray or scalar, or a pair of them with ``return_sign``
        ``x``'s shape without the reduced axes (with them, length 1, if
        ``keepdims``); a scalar when every axis is reduced. Reducing over no
        elements gives ``-inf``.

    Notes
    -----
    :math:`m + \log\sum_j e^{x_j - m}`, :math:`m = \max_j x_j`. Following the
    softcore numerical contract, a slice with a NaN, a ``+inf`` or only ``-inf``
    values gives NaN (SciPy gives ``+inf`` / ``-inf`` for the last two).

    With ``b``: :math:`m + \log|\sum_j b_j e^{x_j - m}|`, ``m`` the largest
    ``x`` of a term, the sum in float64 (the backend's own kernel where it has
    one, ``logsumexp_weighted_rows``; else the core's, in ``xp`` operations).
    The result is as exact as the terms, but where positive and negative ones
    cancel, as any method's is. A factor of 0 removes its term, whatever ``x``
    holds there (SciPy's rule: ``b`` is also a mask). A slice with no term
    left (every ``b`` zero or every ``x`` ``-inf``) is NaN, as a slice of
    only ``-inf`` is without ``b`` (SciPy: ``-inf``, sign 0); one whose terms
    cancel exactly gives ``-inf`` with sign 0. A NaN or ``+inf`` in ``x``
    where ``b`` is not 0, or a NaN or infinite ``b``, makes its slice NaN. A
    ``b`` that does not vary along the batch (a vector of per-class factors, a
    scalar) goes to the kernel as one row for every row; one that varies
    along the batch and must be broadcast is copied to ``x``'s shape.

    See Also
    --------
    softmax, log_softmax

    Examples
    --------
    >>> import numpy as np, softcore as sc
    >>> float(sc.logsumexp(np.array([1e4, 1e4]), backend="numpy"))
    10000.69314718056
    >>> x, b = np.array([1.0, 1.0]), np.array([1.0, -3.0])
    >>> res, sign = sc.logsumexp(x, b=b, return_sign=True, backend="numpy")
    >>> round(float(res), 12), float(sign)  # log|e - 3e| = 1 + log 2
    (1.69314718056, -1.0)
    """
    if b is not None or return_sign:
        if not keepdims:
            y = _plain_weighted(x, axis, b, return_sign, backend)
            if y is not None:
                return y
        with _device_of(x):
            return _weighted_logsumexp(x, axis, keepdims, b, return_sign, backend)
    if not keepdims:
        be = _host_rows(x, axis, backend)
        if be is None and _read_only(x):
            x = _writable(x)
            be = _host_rows(x, axis, backend)
        if be is not None:  # the common call
            lse = np.empty(x.shape[0], dtype=x.dtype)
            be.logsumexp_rows(x, lse)
            return lse
    with _device_of(x):
        return _plain_logsumexp(x, axis, keepdims, backend)


def _plain_logsumexp(x: Any, axis: Any, keepdims: bool, backend: Any) -> Any:
    if is_multi_axis(axis):
        return _over_axes("logsumexp_rows", x, axis, None, keepdims, backend)
    return _logsumexp(x, axis, keepdims, backend)


def _plain_weighted(x: Any, axis: Any, b: Any, return_sign: bool, backend: Any) -> Any:
    """A plain host call of :func:`logsumexp` with factors: its result, or
    None for the general path. Plain: ``x`` as for :func:`_host_rows` (or a
    1-D such array, ``axis`` 0, -1 or None), ``b`` a C-contiguous array of
    ``x``'s own dtype and shape (or, for a 2-D ``x``, one row of factors for
    every row: shape ``(C,)`` or ``(1, C)``), and the backend one with
    ``logsumexp_weighted_rows``. The hook then takes both arrays as they
    are: at 32x10 the general steps (promotion, broadcasting, axes,
    conversions) took about 5 us of a 7 us call."""
    if type(x) is not np.ndarray or type(b) is not np.ndarray:
        return None
    if b.dtype is not x.dtype or not b.flags.carray:
        return None  # x's dtype and layout: _host_rows
    scalar = x.ndim == 1
    if scalar:
        if b.shape != x.shape:
            return None
        if axis is not None and (type(axis) is not int or axis not in (0, -1)):
            return None  # the general path names the bad axis
        x, b, axis = x.reshape(1, -1), b.reshape(1, -1), -1
    elif b.shape != x.shape:
        if x.ndim != 2 or b.shape not in ((x.shape[1],), (1, x.shape[1])):
            return None
        b = b.reshape(1, -1)  # shared by every row
    be = _host_rows(x, axis, backend)
    hook = getattr(be, "logsumexp_weighted_rows", None)
    if hook is None:
        return None
    res = np.empty(x.shape[0], dtype=x.dtype)
    sign = np.empty(x.shape[0], dtype=x.dtype)
    hook(x, b, res, sign)
    if not return_sign:
        res[sign < 0] = np.nan
    if scalar:
        res, sign = res[0], sign[0]
    return (res, sign) if return_sign else res


def _weighted_logsumexp(
    x: Any, axis: Any, keepdims: bool, b: Any, return_sign: bool, backend: Any
) -> Any:
    """:func:`logsumexp` with factors ``b`` (None: ones) or ``return_sign``:
    the backend's ``logsumexp_weighted_rows`` hook where it has one, else
    :func:`_composed` from its logsumexp kernel."""
    be = _reg.resolve(x, backend)
    xp = be.xp
    arr = as_array(x, xp, "x")
    compute, result = float_dtypes(arr.dtype, "x")
    if is_multi_axis(axis):
        axes = check_axes(axis, arr.ndim, "x")
    else:
        axes = (check_axis(axis, arr.ndim, "x"),)
    w = None
    if b is not None:
        w = as_array(b, xp, "b")
        cb, rb = float_dtypes(w.dtype, "b")
        if type(b) not in (int, float, bool):  # a Python number is weak (NEP 50)
            compute = np.promote_types(compute, cb)
            result = np.promote_types(result, rb)
        try:  # checked here, broadcast where it is used
            joint = np.broadcast_shapes(tuple(w.shape), tuple(arr.shape))
        except ValueError:
            joint = None
        if joint != tuple(arr.shape):  # b broadcasts to x, not x to b
            raise ValueError(
                f"b has shape {tuple(w.shape)}, which does not broadcast to x's "
                f"shape {tuple(arr.shape)}"
            )

    hook = getattr(be, "logsumexp_weighted_rows", None)
    if w is not None and hook is not None and arr.size:
        res, sign = _weighted_rows(hook, be, xp, arr, w, axes, keepdims, compute)
    else:
        if w is not None:
            w = xp.broadcast_to(w, arr.shape)
        with np.errstate(all="ignore"):  # log(0), inf - inf: NaN where they meet
            res, sign = _composed(be, xp, arr, w, axes, keepdims, compute)
    if not return_sign:  # an elementwise where: no array module waits for it
        res = xp.where(sign < 0, np.nan, res)
    res = res.astype(result, copy=False)
    sign = sign.astype(result, copy=False)
    if res.ndim == 0:
        res, sign = res[()], sign[()]
    return (res, sign) if return_sign else res


def _composed(
    be: Any, xp: Any, arr: Any, w: Any, axes: tuple, keepdims: bool, compute: Any
) -> tuple[Any, Any]:
    """``(log|S|, sign S)`` (NaN, NaN for a NaN result) where the backend has
    no ``logsumexp_weighted_rows``: without ``w``, its logsumexp kernel; with
    it, SciPy's formula ``m + log|sum(w exp(x - m))|`` in ``xp`` operations,
    in float64 (float32 inputs are exact there, and their sum gains 29 bits)."""
    if w is None:
        res = xp.asarray(_plain_logsumexp(arr, axes, keepdims, be.name))
        res = res.astype(compute, copy=False)
        sign = xp.where(res == -np.inf, 0.0, xp.where(xp.isnan(res), np.nan, 1.0))
        return res, sign.astype(compute)
    xa = arr.astype(np.float64)
    wa = w.astype(np.float64)
    if math.prod(arr.shape[a] for a in axes) == 0:  # a sum of nothing: 0
        shape = _reduced_shape(arr.shape, axes, True)
        res = xp.full(shape, -np.inf, dtype=compute)
        sign = xp.zeros(shape, dtype=compute)
    else:
        live = wa != 0  # a zero factor removes its term; a NaN one stays
        m = xp.where(live, xa, -np.inf).max(axis=axes, keepdims=True)
        big = bool(xp.abs(wa).max() > _W_SCALE_ABOVE)  # an inf factor: by 2**0
        if big:  # a power of two per slice, so that the sum cannot overflow
            e = xp.frexp(xp.abs(wa).max(axis=axes, keepdims=True))[1]
            wa = xp.ldexp(wa, -e)
        t = wa * xp.exp(xp.minimum(xa - m, 0.0))  # NaN where m is NaN or +inf
        total = xp.where(live, t, 0.0).sum(axis=axes, keepdims=True)
        res = m + xp.log(xp.abs(total))
        if big:
            res = res + e * _LN2
        # no term (m is -inf): NaN, as for a slice of -inf; an infinite sum
        # (not scaled) only from an infinite factor: NaN too
        res = xp.where((m == -np.inf) | (xp.abs(total) == np.inf), np.nan, res)
        sign = xp.where(xp.isnan(res), np.nan, xp.sign(total))
        res, sign = res.astype(compute), sign.astype(compute)
    if not keepdims:
        kept = _reduced_shape(arr.shape, axes, False)
        res, sign = res.reshape(kept), sign.reshape(kept)
    return res, sign


_LN2 = math.log(2.0)
_W_SCALE_ABOVE = 2.0**600


def _weighted_rows(
    hook: Any,
    be: Any,
    xp: Any,
    arr: Any,
    w: Any,
    axes: tuple,
    keepdims: bool,
    compute: Any,
) -> tuple[Any, Any]:
    """``(log|S|, sign S)`` through the backend's ``logsumexp_weighted_rows``:
    ``x`` and ``w`` (which broadcasts to ``x``'s shape) with the reduced axes
    moved last and flattened into C-contiguous rows, ``w`` copied only where
    it was broadcast or strided; a ``w`` that does not vary along the batch
    goes as one row, ``(1, k)``, for every row."""
    k = math.prod(arr.shape[a] for a in axes)

    def flat(a: Any) -> Any:
        return contiguous(_axes_last(a, axes, xp)[0], compute, xp, be).reshape(-1, k)

    x2 = flat(arr)
    # factors that do not vary along the batch (a per-class weight vector):
    # one row of them for every row, not a copy broadcast to x's shape
    padded = (1,) * (arr.ndim - w.ndim) + tuple(w.shape)
    if all(padded[a] == 1 for a in range(arr.ndim) if a not in axes):
        one = tuple(arr.shape[a] if a in axes else 1 for a in range(arr.ndim))
        w2 = flat(xp.broadcast_to(w.reshape(padded), one))
    else:
        w2 = flat(xp.broadcast_to(w, arr.shape))
    res = xp.empty(x2.shape[0], dtype=compute)
    sign = xp.empty(x2.shape[0], dtype=compute)
    hook(x2, w2, res, sign)
    shape = _reduced_shape(arr.shape, axes, keepdims)
    return res.reshape(shape), sign.reshape(shape)


def _lse_rows(
    be: Any, xp: Any, x2: Any, batch: tuple, compute: Any, result: Any
) -> Any:
    """logsumexp of each row of ``x2`` (None: no elements, ``-inf``), shaped
    ``batch``, in the result dtype."""
    if x2 is None:
        return xp.full(batch, -np.inf, dtype=result)
    lse = xp.empty(x2.shape[0], dtype=compute)
    be.logsumexp_rows(x2, lse)
    return converted(lse, result, xp, be).reshape(batch)


def _low_precision_lse(
    be: Any, xp: Any, arr: Any, ax: int, result: Any, batch: tuple
) -> Any:
    """A float16 or bfloat16 logsumexp over ``ax`` through the backend's
    optional ``low_precision_rows`` hook (``"logsumexp_rows"``, the result of
    shape ``(rows,)``), shaped ``batch``; or None where the backend has no
    such hook or declines."""
    hook = getattr(be, "low_precision_rows", None)
    if hook is None:
        return None
    x2 = rows(arr, ax, result, xp)  # a copy only for a moved or strided axis
    lse = xp.empty(x2.shape[0], dtype=result)
    return lse.reshape(batch) if hook("logsumexp_rows", (x2,), lse) else None


def _logsumexp(x: Any, axis: Any, keepdims: bool, backend: Any) -> Any:
    be, xp, arr, ax, compute, result = _prepare(x, axis, backend)
    batch = arr.shape[:ax] + arr.shape[ax + 1 :]
    res = None
    n = arr.size  # an empty array takes the general path (-inf rows), even where
    # rows_hook_min is 0 (small float16 calls)
    if result != compute and n and n >= rows_hook_min(result, "logsumexp"):
        res = _low_precision_lse(be, xp, arr, ax, result, batch)
    if res is None:
        x2 = rows(arr, ax, compute, xp, be) if n else None
        res = _lse_rows(be, xp, x2, batch, compute, result)
    if keepdims:
        return xp.expand_dims(res, ax)
    return res[()] if res.ndim == 0 else res


def _jacobian(kernel: str, x: Any, axis: Any, backend: Any) -> Any:
    be, xp, arr, ax, compute, result = _prepare(x, axis, backend)
    c = arr.shape[ax]
    batch = arr.shape[:ax] + arr.shape[ax + 1 :]
    if arr.size == 0:
        return xp.empty(batch + (c, c), dtype=result)
    x2 = rows(arr, ax, compute, xp, be)
    jac = xp.empty((x2.shape[0], c, c), dtype=compute)
    getattr(be, kernel)(x2, jac)
    jac = converted(jac, result, xp, be)
    return jac.reshape(batch + (c, c))


def softmax_jacobian(x: Any, axis: int = -1, *, backend: Any = None) -> Any:
    r"""The softmax Jacobian ``J[..., i, j] = ∂s_i/∂x_j = s_i (δ_ij − s_j)``.

    Parameters
    ----------
    x : array_like
        Logits, shape ``batch + (C,)`` once ``axis`` is moved last.
    axis : int, default -1
        The class axis.
    backend : str, optional
        A registered backend's name.

    Returns
    -------
    ndarray
        Shape ``batch + (C, C)``; symmetric, each row and column sums to 0.

    Notes
    -----
    Writes the ``C × C`` matrix once per batch element from the probabilities. To
    multiply a vector by it, :func:`softmax_backward` is ``O(C)`` instead of
    ``O(C²)``.

    See Also
    --------
    log_softmax_jacobian, softmax_backward

    Examples
    --------
    >>> import numpy as np, softcore as sc
    >>> sc.softmax_jacobian(np.zeros(2), backend="numpy")
    array([[ 0.25, -0.25],
           [-0.25,  0.25]])
    """
    with _device_of(x):
        return _jacobian("softmax_jacobian_rows", x, axis, backend)


def log_softmax_jacobian(x: Any, axis: int = -1, *, backend: Any = None) -> Any:
    r"""The log-softmax Jacobian ``J[..., i, j] = δ_ij − s_j``.

    Parameters, returns and errors as for :func:`softmax_jacobian`.

    See Also
    --------
    softmax_jacobian, log_softmax_backward

    Examples
    --------
    >>> import numpy as np, softcore as sc
    >>> sc.log_softmax_jacobian(np.zeros(2), backend="numpy")
    array([[ 0.5, -0.5],
           [-0.5,  0.5]])
    """
    with _device_of(x):
        return _jacobian("log_softmax_jacobian_rows", x, axis, backend)


def _plain_backward(
    kernel: str, grad: Any, saved: Any, axis: Any, out: Any, backend: Any
) -> Any:
    """A plain call of a backward op (``grad`` and ``saved`` both plain inputs,
    :func:`_host_rows`, of one shape and dtype; or 16-bit, :func:`_host_rows16`),
    or None for the general path: at 512x64 float32 the general steps cost 3.9
    us of a 9.2 us call."""
    be = _host_rows(grad, axis, backend)
    if be is None:
        if _read_only(grad):
            return _plain_backward(kernel, _writable(grad), saved, axis, out, backend)
        y = _plain_rows16(kernel, (grad, saved), axis, out, backend)
        if y is _DECLINED:
            name = "log_probs" if kernel.startswith("log") else "probs"
            return _backward(kernel, grad, saved, axis, out, backend, name, False)
        return y
    if (
        type(saved) is not np.ndarray
        or saved.dtype is not grad.dtype
        or saved.shape != grad.shape
    ):
        return None
    saved = _plain_saved(saved)
    if saved is None:
        return None
    if out is None:
        y = np.empty(grad.shape, dtype=grad.dtype)
        getattr(be, kernel)(grad, saved, y)
        return y
    if _plain_out(grad, out) and _plain_out(saved, out):
        getattr(be, kernel)(grad, saved, out)
        return out
    return None


def _backward(
    kernel: str,
    grad: Any,
    saved: Any,
    axis: Any,
    out: Any,
    backend: Any,
    name: str,
    rows_hook: bool = True,
) -> Any:
    """One code path for the backward passes (``rows_hook`` as for
    :func:`_rowwise`)."""
    be, xp, g, ax, cg, rg = _prepare(grad, axis, backend, "grad")
    s = as_array(saved, xp, name)
    cs, rs = float_dtypes(s.dtype, name)
    check_same_shape(g, s, "grad", name)
    compute = np.promote_types(cg, cs)
    result = np.promote_types(rg, rs)
    if out is not None:
        check_out(out, g.shape, result, xp)
    if g.size == 0:
        return xp.empty(g.shape, dtype=result) if out is None else out
    if rows_hook and result != compute and g.size >= rows_hook_min(result, "rows"):
        done = _low_precision_rows(kernel, be, xp, (g, s), ax, out, result)
        if done is not None:
            return done
    g2 = rows(g, ax, compute, xp, be)
    s2 = rows(s, ax, compute, xp, be)
    o2 = _direct_out(out, ax, g2.shape, compute, result, xp, (g2, s2))
    if o2 is None:
        y2 = xp.empty(g2.shape, dtype=compute)
        getattr(be, kernel)(g2, s2, y2)
        return _to_out(y2, g.shape, ax, out, result, xp, be)
    getattr(be, kernel)(g2, s2, o2)
    return out


def softmax_backward(
    grad: Any, probs: Any, axis: int = -1, *, out: Any = None, backend: Any = None
) -> Any:
    r"""Vector–Jacobian product of softmax: ``probs * (grad − Σ grad·probs)``.

    Parameters
    ----------
    grad : array_like
        The upstream gradient ``∂L/∂s``.
    probs : array_like
        The softmax output ``s`` the gradient belongs to; same shape as ``grad``.
    axis : int, default -1
        The class axis.
    out : ndarray, optional
        Where to write ``∂L/∂x``; may be ``grad`` or ``probs``.
    backend : str, optional
        A registered backend's name.

    Returns
    -------
    ndarray
        ``∂L/∂x = Jᵀ grad``, same shape as ``grad``, computed in ``O(C)`` per row
        without building ``J``.

    Raises
    ------
    ValueError
        ``grad`` and ``probs`` differ in shape.

    See Also
    --------
    softmax, softmax_jacobian

    Examples
    --------
    >>> import numpy as np, softcore as sc
    >>> sc.softmax_backward(np.array([1.0, 0.0]), np.array([0.5, 0.5]), backend="numpy")
    array([ 0.25, -0.25])
    """
    y = _plain_backward("softmax_backward_rows", grad, probs, axis, out, backend)
    if y is not None:
        return y
    with _device_of(grad):
        return _backward(
            "softmax_backward_rows", grad, probs, axis, out, backend, "probs"
        )


def log_softmax_backward(
    grad: Any, log_probs: Any, axis: int = -1, *, out: Any = None, backend: Any = None
) -> Any:
    r"""Vector–Jacobian product of log-softmax: ``grad − exp(log_probs) · Σ grad``.

    Parameters as for :func:`softmax_backward`, with ``log_probs`` the log-softmax
    output.

    See Also
    --------
    log_softmax, log_softmax_jacobian

    Examples
    --------
    >>> import numpy as np, softcore as sc
    >>> lp = np.log(np.array([0.5, 0.5]))
    >>> sc.log_softmax_backward(np.array([1.0, 0.0]), lp, backend="numpy")
    array([ 0.5, -0.5])
    """
    y = _plain_backward(
        "log_softmax_backward_rows", grad, log_probs, axis, out, backend
    )
    if y is not None:
        return y
    with _device_of(grad):
        return _backward(
            "log_softmax_backward_rows",
            grad,
            log_probs,
            axis,
            out,
            backend,
            "log_probs",
        )


# --------------------------------------------------------------------------- CE


def _ce(
    logits: Any,
    target: Any,
    weight: Any,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    axis: Any,
    backend: Any,
    want_grad: bool,
    out: Any = None,
    want_loss: bool = True,
    fused: bool = True,
) -> tuple[Any, Any]:
    """``(loss, grad)``: grad None unless ``want_grad``, loss None unless
    ``want_loss`` (the gradient alone skips the loss's reduction: on a device two
    kernel launches). ``fused=False``: :func:`_plain_index_loss` (or
    :func:`_plain_index_grad`) has offered the call to the fused kernel already,
    and it was declined."""
    be, xp, arr, ax, compute, result = _prepare(logits, axis, backend, "logits")
    if out is not None:
        check_out(out, arr.shape, result, xp)
    hook = getattr(be, "cross_entropy_index_rows", None)
    if hook is not None:
        done = _index_rows_call(
            hook, arr, ax, target, weight, ignore_index, reduction,
            label_smoothing, compute, result, xp, want_grad, want_loss, out,
        )  # fmt: skip
        if done is not None:
            return done
    if fused and not want_grad and reduction != "none":
        if getattr(be, "cross_entropy_index_sum", None) is not None:
            loss = _fused_index_loss(
                be, arr, ax, target, weight, ignore_index, reduction,
                label_smoothing, compute, result,
            )  # fmt: skip
            if loss is not None:
                return loss, None
    # 16-bit logits widened for the loss with its gradient (the loss then the
    # loss alone's bits); the gradient alone keeps their own rows, faster there
    # (1.03-1.11x the time at 512x32 through float32, bench 2026-12-06 night),
    # but for a weighted mean, whose scale the fused kernel sums in row order
    # (the general path pairwise): the float32 call's bits rounded, as always
    widen = (
        want_loss or result == compute or (weight is not None and reduction == "mean")
    )
    if fused and want_grad and reduction != "none" and widen:
        done = _fused_index_grad(
            be, arr, ax, target, weight, ignore_index, reduction, label_smoothing,
            compute, result, xp, out, want_loss,
        )  # fmt: skip
        if done is not None:
            return done
    batch = arr.shape[:ax] + arr.shape[ax + 1 :]
    n = math.prod(batch)
    # 16-bit logits the backend's hook may take whole, with 16-bit probabilities
    hook = getattr(be, "low_precision_rows", None)
    hooked = hook is not None and bool(n) and result != compute
    if hooked:  # 16-bit logits: the small ones by kind of call
        index = getattr(getattr(target, "dtype", None), "kind", None) in ("i", "u")
        kind = "ce_index_grad" if want_grad and index else "ce"
        hooked = arr.size >= rows_hook_min(result, kind)
    scratch = _workspace.take(xp, n)  # see _workspace: no fresh pages per call
    try:
        plan = plan_cross_entropy(
            target,
            tuple(arr.shape),
            ax,
            compute,
            xp,
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
            scratch=scratch,
            be=be,
            keep=result if hooked else None,
        )
        loss_rows = xp.empty(n, dtype=np.float64) if scratch is None else scratch.loss
        grad = None
        low = None
        if hooked:
            low = _low_precision_ce(hook, xp, arr, ax, plan, loss_rows, out, want_grad)
            if low is None:
                compute_target(plan, compute, xp, be)
        if low is not None:
            grad = low[0]
        elif n:
            x2 = rows(arr, ax, compute, xp, be)
            if want_grad:
                # the gradient may overwrite the logits (out=logits), never the
                # targets or weights, which the kernels read in their own order
                g2 = _direct_out(
                    out,
                    ax,
                    x2.shape,
                    compute,
                    result,
                    xp,
                    (x2,),
                    (plan.target, plan.class_weight),
                )
                direct = g2 is not None
                if not direct:
                    g2 = xp.empty(x2.shape, dtype=compute)
                if plan.probs:
                    be.cross_entropy_prob_grad_rows(
                        x2,
                        plan.target,
                        plan.smoothing,
                        plan.class_weight,
                        plan.grad_scale,
                        loss_rows,
                        g2,
                    )
                else:
                    be.cross_entropy_grad_rows(
                        x2,
                        plan.target,
                        plan.alpha,
                        plan.beta,
                        plan.class_weight,
                        plan.grad_scale,
                        loss_rows,
                        g2,
                    )
                if plan.nan_rows is not None:
                    g2[plan.nan_rows] = np.nan
                grad = out
                if not direct:
                    grad = _to_out(g2, arr.shape, ax, out, result, xp, be)
            elif plan.probs:
                be.cross_entropy_prob_rows(
                    x2, plan.target, plan.smoothing, plan.class_weight, loss_rows
                )
            else:
                be.cross_entropy_rows(
                    x2, plan.target, plan.alpha, plan.beta, plan.class_weight, loss_rows
                )
        elif want_grad:
            if out is None:
                grad = xp.zeros(arr.shape, dtype=result)
            else:
                out[...] = 0
                grad = out
        loss = _reduce(loss_rows, plan, batch, result, xp) if want_loss else None
        return loss, grad
    finally:
        _workspace.give_back(scratch)


def _low_precision_ce(
    hook: Any,
    xp: Any,
    arr: Any,
    ax: int,
    plan: Any,
    loss_rows: Any,
    out: Any,
    want_grad: bool,
) -> tuple[Any] | None:
    """A float16 or bfloat16 cross-entropy's row losses (into ``loss_rows``)
    and, where ``want_grad``, its gradient, as ``(grad,)``, through the
    backend's optional ``low_precision_rows`` hook, ``hook`` (``cross_entropy_rows``,
    ``cross_entropy_grad_rows``; ``cross_entropy_prob_rows``,
    ``cross_entropy_prob_grad_rows`` for probability targets, which come in
    the logits' dtype where the user's were, else in float32), which
    converts the rows in cache: no float32 copy of the logits (nor of 16-bit
    probabilities), nor a float32 gradient beside the 16-bit one. None, with
    nothing written, where the hook declines."""
    result = arr.dtype
    x16 = rows(arr, ax, result, xp)  # a copy only for a moved or strided axis
    args: tuple[Any, ...]
    if plan.probs:
        kernel = "cross_entropy_prob"
        args = (x16, plan.target, plan.smoothing, plan.class_weight)
    else:
        kernel = "cross_entropy"
        args = (x16, plan.target, plan.alpha, plan.beta, plan.class_weight)
    if not want_grad:
        return (None,) if hook(f"{kernel}_rows", args, loss_rows) else None
    kept_apart = (plan.target, plan.class_weight)
    g16 = _direct_out(out, ax, x16.shape, result, result, xp, (x16,), kept_apart)
    direct = g16 is not None
    if not direct:
        g16 = xp.empty(x16.shape, dtype=result)
    if not hook(f"{kernel}_grad_rows", (*args, plan.grad_scale, loss_rows), g16):
        return None
    if plan.nan_rows is not None:
        g16[plan.nan_rows] = np.nan
    return (out if direct else _to_out(g16, arr.shape, ax, out, result, xp),)


def _index_rows_call(
    hook: Any,
    arr: Any,
    ax: int,
    target: Any,
    weight: Any,
    ignore_index: Any,
    reduction: str,
    label_smoothing: Any,
    compute: Any,
    result: Any,
    xp: Any,
    want_grad: bool,
    want_loss: bool,
    out: Any,
) -> tuple[Any, Any] | None:
    """``(loss, grad)`` through the backend's optional ``cross_entropy_index_rows``
    (backends/README.md), or None where the general path must run: targets that are
    not integers other than uint64 of the batch's shape, an empty batch, an
    ``ignore_index`` no int64 holds.

    The backend checks, weighs and counts the targets where they are and returns
    the verdict as an array; the core reads it once, after every launch of the call
    is queued (on a device, one wait at the end instead of one before the row
    kernel). Where a target is bad the backend has written nothing, and the error
    is the general path's, so nothing differs for the user."""
    eps = check_ce_options(reduction, label_smoothing, ignore_index)
    n_classes = arr.shape[ax]
    batch = arr.shape[:ax] + arr.shape[ax + 1 :]
    t = as_array(target, xp, "target")
    ignore = _int64_targets(t, batch, ignore_index)
    if ignore is None or n_classes == 0:
        return None
    n = math.prod(batch)
    cw = None if weight is None else class_weight(weight, n_classes, xp)
    x2 = rows(arr, ax, compute, xp)
    t64 = xp.ascontiguousarray(t.reshape(-1), dtype=np.int64)
    loss_rows = xp.empty(n, dtype=_F64)
    total = None
    if want_loss and reduction != "none":  # a 16-bit loss: the float32 one rounded
        total = xp.empty(1, dtype=compute)
    g2, direct = None, False
    if want_grad:
        kept_apart = (t64,) if cw is None else (t64, cw)
        g2 = _direct_out(out, ax, x2.shape, compute, result, xp, (x2,), kept_apart)
        direct = g2 is not None
        if not direct:
            g2 = xp.empty(x2.shape, dtype=compute)
    check = hook(x2, t64, cw, ignore, eps, reduction == "mean", loss_rows, total, g2)
    loss = None
    if want_loss:
        # beyond float16: inf, as it should
        with np.errstate(over="ignore", under="ignore"):
            if total is None:
                loss = _loss_as(loss_rows.reshape(batch), result)
            else:
                loss = total.astype(result, copy=False).reshape(())[()]
    if float(check[0]) >= 0:
        raise ValueError(first_bad_target(t, n_classes, ignore_index, xp))
    grad = None
    if want_grad:
        grad = out if direct else _to_out(g2, arr.shape, ax, out, result, xp)
    return loss, grad


_CAST_MAX = {np.dtype(np.float32): float(np.finfo(np.float32).max)}
_HALF_MAX = {"float16": 65504.0, "bfloat16": float.fromhex("0x1.fep127")}
"""The largest finite float16 and bfloat16, by scalar type name (a float64
below it rounds to float32 and on to the 16-bit type without overflow)."""


_NO_WEIGHT = np.empty(0)  # the fused kernel's "no class weight"
_FUSED_MAX = 1 << 15
"""Logits up to which a loss-only cross-entropy is offered to the fused kernel
(linear cross-entropy's computed in one matrix product, no chunks at that
size); the backend may still decline."""


def _fused_args(
    target: Any,
    weight: Any,
    ignore_index: Any,
    reduction: str,
    label_smoothing: Any,
    batch: tuple,
    n_classes: int,
) -> Any:
    """``(target, class_weight, ignore_index, smoothing)`` for the backend's
    optional fused kernel ``cross_entropy_index_sum`` (a small class-index loss,
    plan, row losses and sum in one call: on a 32 x 10 batch the general path's
    NumPy steps cost more than the arithmetic), or None where the general path
    must run: a target that is not NumPy integers (or a list of them) of the
    batch's shape, uint64 targets (int64 cannot hold them all), a weight that
    is not a real vector of ``C`` entries, an ``ignore_index`` no int64 holds.
    The choice depends on values and dtypes only, never on memory layout or
    flags (arrays are copied where the kernel needs it), so every layout of the
    same call gives the same bits. Raises what the general path raises for bad
    options."""
    t = _host_array(target)
    if t is None:
        return None
    eps = check_ce_options(reduction, label_smoothing, ignore_index)
    ignore = _int64_targets(t, batch, ignore_index)
    if ignore is None or n_classes == 0:
        return None
    if weight is None:
        cw = _NO_WEIGHT
    else:
        cw = _host_array(weight)
        if cw is None or not is_real(cw.dtype) or cw.shape != (n_classes,):
            return None
        cw = _writable(np.ascontiguousarray(cw, dtype=np.float64))
    if t.dtype is _I64 and t.ndim == 1:
        f = t.flags
        if f.c_contiguous and f.writeable:  # as it comes: 0.2 us sooner
            return t, cw, ignore, eps
    flat = t if t.ndim == 1 else t.reshape(-1)
    return _writable(np.ascontiguousarray(flat, dtype=np.int64)), cw, ignore, eps


def _int64_targets(t: Any, batch: tuple, ignore_index: Any) -> int | None:
    """``ignore_index`` as an int where class-index targets ``t`` can go to a
    backend's fused path as int64 rows, else None: integers other than uint64
    (int64 cannot hold them all) of the batch's shape, a batch that is not empty,
    an ``ignore_index`` that int64 holds. After :func:`check_ce_options`."""
    dt = t.dtype
    if dt is not _I64:
        kind = dt.kind
        if not (kind == "i" or (kind == "u" and dt.itemsize < 8)):
            return None
    if t.shape != batch or 0 in batch:  # t a NumPy array: its shape a tuple
        return None
    ignore = int(ignore_index)  # an integer: check_ce_options saw to it
    return ignore if -(1 << 63) <= ignore < 1 << 63 else None


def _host_array(v: Any) -> Any:
    """``v`` as a NumPy array where it is one or a list or tuple, else None."""
    if type(v) is np.ndarray:
        return v
    return np.asarray(v) if isinstance(v, list | tuple) else None


def _fused_loss(
    got: Any, target: Any, n_classes: int, args: tuple, reduction: str, result: Any
) -> Any:
    """The loss from the fused kernel's ``(bad, total, norm)``; for a bad target
    the general path's error."""
    bad, total, normaliser = got
    if bad >= 0:
        t = np.asarray(target)
        raise ValueError(first_bad_target(t, n_classes, args[2], np))
    return _scalar_loss(total, normaliser, reduction, result, np)


def _fused_index_loss(
    be: Any,
    arr: Any,
    ax: int,
    target: Any,
    weight: Any,
    ignore_index: Any,
    reduction: str,
    label_smoothing: Any,
    compute: Any,
    result: Any,
) -> Any:
    """:func:`cross_entropy`'s loss through the fused kernel (see
    :func:`_fused_args`), or None where the general path must run, the kernel
    declining included."""
    shape = arr.shape
    if arr.size > _FUSED_MAX:
        return None
    args = _fused_args(
        target, weight, ignore_index, reduction, label_smoothing,
        shape[:ax] + shape[ax + 1 :], shape[ax],
    )  # fmt: skip
    if args is None:
        return None
    x2 = rows(arr, ax, compute, np, be)
    got = be.cross_entropy_index_sum(x2, *args)
    if got is None:
        return None
    return _fused_loss(got, target, shape[ax], args, reduction, result)


def _fused_index_grad(
    be: Any,
    arr: Any,
    ax: int,
    target: Any,
    weight: Any,
    ignore_index: Any,
    reduction: str,
    label_smoothing: Any,
    compute: Any,
    result: Any,
    xp: Any,
    out: Any,
    want_loss: bool,
) -> Any:
    """``(loss, grad)`` of :func:`cross_entropy_with_grad` (``loss`` None
    unless ``want_loss``) through the backend's optional fused kernel with the
    gradient, ``cross_entropy_index_grad_sum``: the targets of
    :func:`_fused_args`, logits of at most ``_FUSED_MAX`` elements on the
    host (16-bit ones widened to float32 by :func:`rows`, as for the loss
    alone), a loss to reduce. The gradient is written as the general path
    writes it (into ``out`` where :func:`_direct_out` allows, else through a
    temporary, rounded to a 16-bit result there: float32's rounded, the bits
    of the general path's 16-bit rows); the loss is the fused loss alone's
    (:func:`_fused_index_loss`), to the bit. None where the general path must
    run, the kernel declining included (it then writes nothing)."""
    hook = getattr(be, "cross_entropy_index_grad_sum", None)
    if hook is None or xp is not np or arr.size > _FUSED_MAX:
        return None
    shape = arr.shape
    n_classes = shape[ax]
    args = _fused_args(
        target, weight, ignore_index, reduction, label_smoothing,
        shape[:ax] + shape[ax + 1 :], n_classes,
    )  # fmt: skip
    if args is None:
        return None
    x2 = rows(arr, ax, compute, np, be)
    # the kernel reads the targets and weights in its own order: out may not
    # share their memory (a temporary then), as on the general path
    g2 = _direct_out(out, ax, x2.shape, compute, result, np, (x2,), args[:2])
    direct = g2 is not None
    if not direct:
        g2 = np.empty(x2.shape, dtype=compute)
    got = hook(x2, *args, reduction == "mean", g2)
    if got is None:
        return None
    loss = _fused_loss(got, target, n_classes, args, reduction, result)
    if direct:
        grad = out
    elif out is None and ax == 1 and len(shape) == 2 and result == compute:
        grad = g2  # what _to_out gives, 0.3 us sooner
    else:
        grad = _to_out(g2, shape, ax, out, result, np, be)
    return (loss if want_loss else None), grad


def _plain_fused_backend(
    logits: Any, axis: Any, backend: Any, reduction: str, hook: str
) -> Any:
    """The backend of a plain host call (:func:`_host_rows`) with a loss to
    reduce whose fused ``hook`` the core may offer it first, or None: the
    backend lacks the hook, or has ``cross_entropy_index_rows``, which the
    general path offers the call to before anything else."""
    be = _host_rows(logits, axis, backend)
    if be is None or reduction == "none":
        return None
    if getattr(be, "cross_entropy_index_rows", None) is not None:
        return None
    return be if getattr(be, hook, None) is not None else None


def _plain_index_grad(
    logits: Any,
    target: Any,
    weight: Any,
    ignore_index: Any,
    reduction: str,
    label_smoothing: Any,
    axis: Any,
    out: Any,
    backend: Any,
    want_loss: bool,
) -> Any:
    """:func:`_fused_index_grad` of a plain host call (:func:`_host_rows`,
    ``out`` None or :func:`_plain_out`), as :func:`_plain_index_loss` for the
    loss alone: its ``(loss, grad)``, None where the call is not plain (the
    general path runs, offering the call to the kernel as usual), or
    ``_DECLINED`` where the kernel was offered the call and declined it."""
    be = _plain_fused_backend(
        logits, axis, backend, reduction, "cross_entropy_index_grad_sum"
    )
    if be is None:
        if _read_only(logits):
            return _plain_index_grad(
                _writable(logits), target, weight, ignore_index, reduction,
                label_smoothing, axis, out, backend, want_loss,
            )  # fmt: skip
        return None
    if out is not None and not _plain_out(logits, out):
        return None  # check_out's errors, _direct_out's temporaries
    done = _fused_index_grad(
        be, logits, 1, target, weight, ignore_index, reduction, label_smoothing,
        logits.dtype, logits.dtype, np, out, want_loss,
    )  # fmt: skip
    return _DECLINED if done is None else done


def _plain_index_loss(
    logits: Any,
    target: Any,
    weight: Any,
    ignore_index: Any,
    reduction: str,
    label_smoothing: Any,
    axis: Any,
    backend: Any,
) -> Any:
    """:func:`cross_entropy` of a plain host call (:func:`_host_rows`) through
    the fused kernel (:func:`_fused_index_loss`), skipping the general path's
    steps before it (``_prepare``, :func:`rows`): the same kernel on the same
    arrays, so the same bits and errors. None where the call is not plain or the backend
    lacks the kernel (the general path runs, offering it as usual),
    ``_DECLINED`` where the kernel was offered the call and declined it (the
    general path runs without offering it again). At 32 x 10 float32 the
    general steps cost 1.7 us of a 5.5 us call."""
    be = _plain_fused_backend(
        logits, axis, backend, reduction, "cross_entropy_index_sum"
    )
    if be is None:
        if _read_only(logits):
            return _plain_index_loss(
                _writable(logits), target, weight, ignore_index, reduction,
                label_smoothing, axis, backend,
            )  # fmt: skip
        return None
    n, c = logits.shape
    if n * c > _FUSED_MAX:
        return _DECLINED  # as _fused_index_loss declines it
    args = _fused_args(
        target, weight, ignore_index, reduction, label_smoothing, (n,), c
    )
    if args is None:
        return _DECLINED
    # _fused_index_loss's steps for a plain array, without rows() (whose checks
    # cost 0.3-0.4 us of a 4.4 us call at 32 x 10): it would return the logits,
    # writeable as a plain call's are
    got = be.cross_entropy_index_sum(logits, *args)
    if got is None:
        return _DECLINED
    return _fused_loss(got, target, c, args, reduction, logits.dtype)


def _loss_as(loss: Any, result: Any) -> Any:
    """Float64 losses (an array, or a NumPy scalar) in the result dtype. A 16-bit
    result goes through float32, the dtype it is computed in, so its losses are the
    float32 call's rounded, bitwise, as every other 16-bit result is; rounded
    straight from float64 they differed where the float32 loss lies halfway between
    two 16-bit numbers (the kit found a float16 loss of 273.25 where the float32
    loss, 273.125, rounds to 273.0)."""
    if result.itemsize == 2:
        loss = loss.astype(_F32)
    return loss.astype(result)


def _reduce(loss_rows: Any, plan: Any, batch: tuple, result: Any, xp: Any) -> Any:
    # a float64 loss beyond float32's range becomes inf in the cast, as it should
    if plan.reduction == "none":
        with np.errstate(over="ignore", under="ignore"):
            return _loss_as(loss_rows.reshape(batch), result)
    total = _loss_total(loss_rows, xp)
    return _scalar_loss(total, plan.normaliser, plan.reduction, result, xp)


_PYTHON_SUM_MAX = 128


def _loss_total(loss_rows: Any, xp: Any) -> Any:
    """The sum of the (float64) loss rows; on the host a Python float, which no
    special value makes warn: ``+inf`` and ``-inf`` losses (negative class weights
    or targets) sum to NaN, and a sum past float64's range is ``inf``, as every
    other special value gives its result without a warning (README); Python's
    arithmetic on the total (a mean's division) is as quiet. Up to 128 rows it
    is Python's sum, in row order as the fused step's (0.2-1.4 us, NumPy's 0.75
    bare and 1.5 under ``errstate``); beyond, NumPy's pairwise sum under
    ``errstate``, 0.75 us more than bare: 1.07-1.09x the time of a 129-512-row
    call with probability targets, under 1.02x from 4096 rows."""
    if xp is not np:
        return loss_rows.sum()
    if loss_rows.size <= _PYTHON_SUM_MAX:
        return sum(loss_rows.tolist())
    with np.errstate(over="ignore", invalid="ignore"):
        return float(loss_rows.sum())


def _scalar_loss(
    total: Any, normaliser: float, reduction: str, result: Any, xp: Any
) -> Any:
    """The summed loss as the result's scalar: divided for ``"mean"``."""
    if reduction == "mean":
        # a mean over no (or only zero-weight) targets is 0/0 = NaN, as PyTorch
        total = total / normaliser if normaliser else total * np.nan
    if xp is np:
        if result.itemsize == 2:
            if abs(total) <= _HALF_MAX.get(result.type.__name__, 0.0):
                # neither rounding can overflow: the scalars' own casts, the
                # bits of _loss_as's (3.6 us under errstate, 0.8 without)
                return result.type(_F32.type(total))
            with np.errstate(over="ignore", under="ignore"):
                return _loss_as(np.float64(total), result)
        top = _CAST_MAX.get(result)
        if top is None or abs(total) <= top:  # the cast cannot overflow
            return result.type(total)
        with np.errstate(over="ignore", under="ignore"):
            return result.type(total)
    with np.errstate(over="ignore", under="ignore"):
        if result.itemsize == 2:
            return _loss_as(xp.asarray(total, dtype=_F64), result)[()]
        return xp.asarray(total, dtype=result)[()]


_CE_DOC_PARAMS = """
    Parameters
    ----------
    logits : array_like
        Unnormalised scores; the class axis is ``axis``, all other axes are batch.
    target : array_like
        Either class indices (an integer array with ``logits``' shape without the
        class axis; values in ``[0, C)`` or ``ignore_index``) or class probabilities
        (a floating array with ``logits``' shape).
    weight : array_like, optional
        A weight per class, shape ``(C,)``.
    ignore_index : int, default -100
        Class-index targets equal to it contribute nothing, also to the mean's
        denominator. Unused with probability targets.
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"`` divides the summed loss by the summed weight of the kept targets
        (by the number of rows for probability targets); ``"none"`` returns the
        per-element loss with the batch shape.
    label_smoothing : float in [0, 1], default 0
        Mixes the target with the uniform distribution: ``(1 - ε) y + ε / C``.
    axis : int, default -1
        The class axis.
    backend : str, optional
        A registered backend's name.
"""

_CE_DOC_OUT = """    out : ndarray, optional
        Where to write the gradient: the logits' shape, the result's dtype. It may
        be ``logits`` itself, which the gradient then overwrites: no ``N x C``
        array is allocated and no fresh memory is touched, so a training step that
        no longer needs its logits halves its peak memory. If ``out`` overlaps
        ``target`` or ``weight``, or ``logits`` other than as the same view, the
        result is still right (it goes through a temporary). An ``out`` of the
        wrong shape or read-only is a ValueError, of the wrong dtype or array type
        a TypeError, raised before anything is written.
"""

_CE_DOC_RAISES = """
    Raises
    ------
    ValueError
        A target outside ``[0, C)`` that is not ``ignore_index`` (the message names
        the first one and its position), a target of the wrong shape, an unknown
        ``reduction``, ``label_smoothing`` outside ``[0, 1]``, a ``weight`` of the
        wrong length, or no classes.
    TypeError
        Non-real logits, or a target that is neither integer nor floating.
"""


def cross_entropy(
    logits: Any,
    target: Any,
    *,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    axis: int = -1,
    backend: Any = None,
) -> Any:
    loss = _plain_index_loss(
        logits, target, weight, ignore_index, reduction, label_smoothing, axis,
        backend,
    )  # fmt: skip
    if loss is not None and loss is not _DECLINED:
        return loss
    with _device_of(logits):
        return _ce(
            logits,
            target,
            weight,
            ignore_index,
            reduction,
            label_smoothing,
            axis,
            backend,
            False,
            fused=loss is None,
        )[0]


def cross_entropy_grad(
    logits: Any,
    target: Any,
    *,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    axis: int = -1,
    out: Any = None,
    backend: Any = None,
) -> Any:
    done = _plain_index_grad(
        logits, target, weight, ignore_index, reduction, label_smoothing, axis,
        out, backend, False,
    )  # fmt: skip
    if done is not None and done is not _DECLINED:
        return done[1]
    with _device_of(logits):
        return _ce(
            logits,
            target,
            weight,
            ignore_index,
            reduction,
            label_smoothing,
            axis,
            backend,
            True,
            out,
            want_loss=False,
            fused=done is None,
        )[1]


def cross_entropy_with_grad(
    logits: Any,
    target: Any,
    *,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    axis: int = -1,
    out: Any = None,
    backend: Any = None,
) -> tuple[Any, Any]:
    done = _plain_index_grad(
        logits, target, weight, ignore_index, reduction, label_smoothing, axis,
        out, backend, True,
    )  # fmt: skip
    if done is not None and done is not _DECLINED:
        return done
    with _device_of(logits):
        return _ce(
            logits,
            target,
            weight,
            ignore_index,
            reduction,
            label_smoothing,
            axis,
            backend,
            True,
            out,
            fused=done is None,
        )


cross_entropy.__doc__ = (
    r"""Softmax cross-entropy, with the semantics of PyTorch's ``F.cross_entropy``.
"""
    + _CE_DOC_PARAMS
    + """
    Returns
    -------
    scalar or ndarray
        The loss in the logits' dtype: a scalar for ``"mean"`` and ``"sum"``, the
        batch shape for ``"none"``.
"""
    + _CE_DOC_RAISES
    + r"""
    Notes
    -----
    Per element, with :math:`\ell_c = \mathrm{logsumexp}(x) - x_c`, class weights
    :math:`w` and smoothing :math:`\varepsilon`: class index :math:`y` gives
    :math:`(1-\varepsilon) w_y \ell_y + \frac{\varepsilon}{C}\sum_c w_c \ell_c`;
    probabilities :math:`t` give
    :math:`\sum_c w_c ((1-\varepsilon) t_c + \varepsilon / C) \ell_c`.
    ``"mean"`` over no kept targets is NaN, as in PyTorch.

    See Also
    --------
    cross_entropy_grad, cross_entropy_with_grad, linear_cross_entropy

    Examples
    --------
    >>> import numpy as np, softcore as sc
    >>> # (log(1 + 2 e^-2) + log 3) / 2
    >>> logits = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    >>> round(float(sc.cross_entropy(logits, np.array([0, 2]), backend="numpy")), 6)
    0.669079
    """
)
cross_entropy_grad.__doc__ = (
    r"""Gradient of :func:`cross_entropy` with respect to the logits.
"""
    + _CE_DOC_PARAMS
    + _CE_DOC_OUT
    + """
    Returns
    -------
    ndarray
        ``∂loss/∂logits``, the logits' shape and dtype. For ``reduction="none"`` it is
        the gradient of the summed per-element loss.
"""
    + _CE_DOC_RAISES
    + r"""
    Notes
    -----
    Per element, :math:`\partial/\partial x_j = p_j \sum_c a_c - a_j` with
    :math:`p` the softmax and :math:`a` the per-class coefficients of the loss (the
    seed's :math:`p_k - 1[k = y]` when there are no weights and no smoothing),
    divided by the mean's denominator for ``"mean"``. Ignored elements get 0.

    See Also
    --------
    cross_entropy, cross_entropy_with_grad

    Examples
    --------
    >>> import numpy as np, softcore as sc
    >>> sc.cross_entropy_grad(np.zeros((1, 2)), np.array([0]), backend="numpy")
    array([[-0.5,  0.5]])
    """
)
cross_entropy_with_grad.__doc__ = (
    r"""Loss and gradient of :func:`cross_entropy` from one fused pass over the logits.
"""
    + _CE_DOC_PARAMS
    + _CE_DOC_OUT
    + """
    Returns
    -------
    loss : scalar or ndarray
        As :func:`cross_entropy`.
    grad : ndarray
        As :func:`cross_entropy_grad`.
"""
    + _CE_DOC_RAISES
    + """
    See Also
    --------
    cross_entropy, cross_entropy_grad

    Examples
    --------
    >>> import numpy as np, softcore as sc
    >>> loss, grad = sc.cross_entropy_with_grad(
    ...     np.zeros((1, 2)), np.array([1]), backend="numpy")
    >>> round(float(loss), 6), grad
    (0.693147, array([[ 0.5, -0.5]]))
    """
)


# ------------------------------------------------------------------- linear CE

_DEFAULT_CHUNK_BYTES = 8 << 20
_DW_BLOCK_BYTES = 8 << 20
_DW_BLOCK_MIN = 256


def _dw_block(n_classes: int, dw: Any) -> int:
    """Classes per block of the weight gradient's accumulation: its temporary
    holds ``_DW_BLOCK_BYTES`` (at least ``_DW_BLOCK_MIN`` classes, so each GEMM
    stays large), not a second ``C x D`` array beside ``dW``."""
    row = dw.shape[1] * dw.itemsize
    return max(1, min(n_classes, max(_DW_BLOCK_MIN, _DW_BLOCK_BYTES // max(1, row))))


def _linear_operands(
    x: Any, w: Any, b: Any, n: int, n_features: int, compute: Any, xp: Any, be: Any
) -> tuple:
    """Input ``(N, D)``, weight and bias, C-contiguous in the compute dtype."""
    return (
        contiguous(x.reshape(n, n_features), compute, xp, be),
        contiguous(w, compute, xp, be),
        None if b is None else contiguous(b, compute, xp, be),
    )


_GRAD_NAMES = ("d_input", "d_linear_weight", "d_linear_bias")


def _check_grad_outs(
    out: Any, shapes: tuple, has_bias: bool, result: Any, xp: Any
) -> tuple:
    """``out`` of :func:`linear_cross_entropy_with_grad`, checked: a tuple of three
    destinations, each None (allocated as usual) or a writeable array of its
    gradient's shape and the result's dtype, no two sharing memory."""
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        raise TypeError(
            "out must be a tuple (d_input, d_linear_weight, d_linear_bias), each "
            f"an array or None; received {type(out).__qualname__}"
            + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else "")
        )
    likes = ("the input's", "linear_weight's", "linear_bias's")
    for i, (o, shape) in enumerate(zip(out, shapes, strict=True)):
        if o is None:
            continue
        if i == 2 and not has_bias:
            raise ValueError(
                "out[2] (d_linear_bias) must be None when there is no linear_bias"
            )
        check_out(o, shape, result, xp, f"out[{i}] ({_GRAD_NAMES[i]})", likes[i])
    share = getattr(xp, "may_share_memory", None)
    given = [(i, o) for i, o in enumerate(out) if o is not None]
    if share is not None:
        for a in range(len(given)):
            for b in range(a + 1, len(given)):
                (i, oi), (j, oj) = given[a], given[b]
                if share(oi, oj):
                    raise ValueError(
                        f"out[{i}] ({_GRAD_NAMES[i]}) and out[{j}] "
                        f"({_GRAD_NAMES[j]}) share memory; each gradient needs its "
                        "own array"
                    )
    return tuple(out)


def _chunk_rows(be: Any, n_classes: int, n_features: int, compute: Any) -> int:
    """Rows per chunk of linear cross-entropy where the caller gave no
    ``chunk_size``: the backend's hint, else ``_DEFAULT_CHUNK_BYTES`` of logits."""
    hint = getattr(be, "linear_chunk_rows", None)
    itemsize = np.dtype(compute).itemsize
    if hint is not None:
        return int(hint(n_classes, n_features, itemsize))
    return _DEFAULT_CHUNK_BYTES // max(1, n_classes * itemsize)


def _grad_dests(
    out: Any,
    x2: Any,
    reads: tuple,
    n_classes: int,
    compute: Any,
    result: Any,
    xp: Any,
    has_bias: bool,
) -> tuple:
    """``(dx, dw, db, direct)`` for linear cross-entropy's gradients: each the
    caller's ``out`` entry where the kernels may write it directly (the
    computation's dtype, C-contiguous, sharing no memory with what is still
    read: d_input may be the input itself, as a chunk's rows of X are read for
    the last time before its rows of dX are written), else a new array; ``dw``
    and ``db`` hold zeros, ``dx`` nothing yet. ``reads``: the weight, bias,
    targets and class weights the chunks read."""
    n, n_features = x2.shape
    o = (None, None, None) if out is None else out
    shapes = ((n, n_features), (n_classes, n_features), (n_classes,))
    made: list[Any] = []
    for i, g in enumerate(o):
        # d_input may be exactly the input; dW and db share nothing read
        inputs, others = ((x2,), reads) if i == 0 else ((), (x2,) + reads)
        made.append(
            None
            if g is None
            else _direct_out(
                g, g.ndim - 1, shapes[i], compute, result, xp, inputs, others
            )
        )
    direct = tuple(g is not None for g in made)
    dx, dw, db = made
    if dx is None:
        dx = xp.empty((n, n_features), dtype=compute)
    if dw is None:
        dw = xp.zeros((n_classes, n_features), dtype=compute)
    elif n == 0:
        dw[...] = 0
    if has_bias:
        if db is None:
            db = xp.zeros(n_classes, dtype=compute)
        else:
            db[...] = 0
    return dx, dw, db, direct


def _grads_out(
    grads: tuple, direct: tuple, out: Any, batch: tuple, result: Any, xp: Any, be: Any
) -> tuple:
    """The gradients ``(dx, dw, db)`` as returned: ``out``'s entries where they
    were written directly, else delivered (in the result dtype, into ``out``'s
    entry where given); ``dx`` in the input's batch shape."""
    o = (None, None, None) if out is None else out
    dx, dw, db = grads
    return tuple(
        o[i] if direct[i] else None if g is None else _deliver(g, o[i], result, xp, be)
        for i, g in enumerate((dx.reshape(batch + (dx.shape[1],)), dw, db))
    )


def _chunk_grads(
    g: Any,
    xs: Any,
    w2: Any,
    dw: Any,
    db: Any,
    dx_rows: Any,
    first: bool,
    accumulate: Any,
    dw_part: Any,
    xp: Any,
) -> Any:
    """One chunk's share of linear cross-entropy's gradients from its logits'
    gradient ``g`` and input rows ``xs``: ``dW (+)= G^T X``, ``db (+)= sum G``
    (through the backend's ``accumulate`` hook where it has one), then ``dX``'s
    rows ``= G W``, last, as they may be ``xs`` itself. After the first chunk
    ``dW`` grows a block of classes at a time, in ``dw_part`` (no C x D
    temporary), made here on first use and returned for the next chunk."""
    if accumulate is not None:  # the backend's dW (+)= G^T X, db (+)= sum G
        accumulate(g, xs, dw, db, first)
    elif first:
        xp.matmul(g.T, xs, out=dw)
    else:  # dW += G^T X, a block of classes at a time
        n_classes, n_features = dw.shape
        if dw_part is None:
            dw_part = xp.empty((_dw_block(n_classes, dw), n_features), dtype=dw.dtype)
        cb = dw_part.shape[0]
        for c0 in range(0, n_classes, cb):
            c1 = min(n_classes, c0 + cb)
            part = dw_part[: c1 - c0]
            xp.matmul(g[:, c0:c1].T, xs, out=part)
            dw[c0:c1] += part
    if db is not None and accumulate is None:
        db += g.sum(axis=0)
    xp.matmul(g, w2, out=dx_rows)
    return dw_part


def _fused_linear_grads(
    g: Any,
    x2: Any,
    w2: Any,
    b2: Any,
    args: tuple,
    out: Any,
    batch: tuple,
    compute: Any,
    result: Any,
    be: Any,
) -> tuple:
    """A small linear cross-entropy's ``(dX, dW, db)`` from the logits'
    gradient ``g`` (the fused kernel's, over the logits), by the general path's
    steps for its one chunk (:func:`_chunk_grads`): the same bits."""
    dx, dw, db, direct = _grad_dests(
        out, x2, (w2, b2, args[0], args[1]), g.shape[1], compute, result, np,
        b2 is not None,
    )  # fmt: skip
    accumulate = getattr(be, "linear_grad_accumulate", None)
    _chunk_grads(g, x2, w2, dw, db, dx, True, accumulate, None, np)
    return _grads_out((dx, dw, db), direct, out, batch, result, np, be)


def _quiet_gemms() -> Any:
    """NumPy's floating-point warnings off for a linear cross-entropy call:
    logits of ``input @ linear_weight.T`` past the dtype's range are infinite
    (and ``inf - inf`` in the bias NaN), as in PyTorch, which says nothing, and
    as every other op here says nothing of such values. A caller whose warnings
    are errors would otherwise get an exception after some chunks were done.
    Underflow too (a product of tiny features is 0 or subnormal): NumPy ignores
    it by default, but a caller's ``np.errstate(all="raise")`` raised it
    midway, after ``out=``'s first chunks were written."""
    return np.errstate(over="ignore", invalid="ignore", under="ignore")


def _linear_ce(
    input: Any,
    linear_weight: Any,
    target: Any,
    linear_bias: Any,
    weight: Any,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    chunk_size: Any,
    backend: Any,
    want_grad: bool,
    out: Any = None,
) -> tuple[Any, Any]:
    be = _reg.resolve(input, backend)
    xp = be.xp
    x = as_array(input, xp, "input")
    w = as_array(linear_weight, xp, "linear_weight")
    cx, rx = float_dtypes(x.dtype, "input")
    cw, rw = float_dtypes(w.dtype, "linear_weight")
    compute = np.promote_types(cx, cw)
    result = np.promote_types(rx, rw)
    if x.ndim < 1:
        raise ValueError(
            "input must have at least one dimension (features); received a scalar"
        )
    if w.ndim != 2:
        raise ValueError(
            f"linear_weight must be 2-D (classes, features); received shape "
            f"{tuple(w.shape)}"
        )
    n_classes, n_features = (int(s) for s in w.shape)
    if x.shape[-1] != n_features:
        raise ValueError(
            f"input has {x.shape[-1]} features but linear_weight expects "
            f"{n_features}; input shape {tuple(x.shape)}, linear_weight shape "
            f"{tuple(w.shape)}"
        )
    b = None
    if linear_bias is not None:
        b = as_array(linear_bias, xp, "linear_bias")
        cb, rb = float_dtypes(b.dtype, "linear_bias")
        compute = np.promote_types(compute, cb)
        result = np.promote_types(result, rb)
        if tuple(b.shape) != (n_classes,):
            raise ValueError(
                f"linear_bias must have shape ({n_classes},); received {tuple(b.shape)}"
            )
    batch = tuple(x.shape[:-1])
    logits_shape = batch + (n_classes,)
    n = math.prod(batch)
    chunk = 0  # rows per chunk: the caller's, else the backend's hint once read
    if chunk_size is not None:
        try:
            chunk = int(chunk_size)
        except (TypeError, ValueError):
            raise TypeError(
                f"chunk_size must be a positive integer; received {chunk_size!r}"
            ) from None
        if chunk < 1 or chunk != chunk_size:
            raise ValueError(
                f"chunk_size must be a positive integer; received {chunk_size!r}"
            )
    # read here, so that a bad SOFTCORE_KEEP_CHUNK_MIB fails before any write
    keep = _workspace.chunk_limit() if xp is np else 0
    if out is not None:
        out = _check_grad_outs(
            out, (tuple(x.shape), (n_classes, n_features), (n_classes,)),
            b is not None, result, xp,
        )  # fmt: skip
    x2: Any = None
    w2: Any = None
    b2: Any = None
    if (
        reduction != "none" and xp is np and n * n_classes <= _FUSED_MAX
    ):  # a small call: the logits at once, then the backend's fused kernel
        name = (
            "cross_entropy_index_grad_sum" if want_grad else "cross_entropy_index_sum"
        )
        hook: Any = getattr(be, name, None)
        if want_grad and chunk and chunk < n:
            # only where the general path takes one chunk: then the same bits
            # (dW summed chunk by chunk is not one chunk's dW)
            hook = None
        args = None
        if hook is not None:
            args = _fused_args(
                target, weight, ignore_index, reduction, label_smoothing, batch,
                n_classes,
            )  # fmt: skip
        if args is not None:  # nothing is converted before the options are checked
            x2, w2, b2 = _linear_operands(x, w, b, n, n_features, compute, xp, be)
            z = xp.matmul(x2, w2.T)
            if b2 is not None:
                z += b2
            if not want_grad:
                got = hook(z, *args)
                if got is not None:
                    return _fused_loss(
                        got, target, n_classes, args, reduction, result
                    ), None
            else:  # the logits' gradient over them, then the general path's GEMMs
                got = hook(z, *args, reduction == "mean", z)
                if got is not None:
                    loss = _fused_loss(got, target, n_classes, args, reduction, result)
                    if not chunk:  # the hint after the checks: no work before them
                        chunk = _chunk_rows(be, n_classes, n_features, compute)
                    if chunk >= n:
                        return loss, _fused_linear_grads(
                            z, x2, w2, b2, args, out, batch, compute, result, be
                        )
    plan = plan_cross_entropy(
        target,
        logits_shape,
        len(batch),
        compute,
        xp,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        logits_name="input @ linear_weight.T",
        be=be,
    )
    if not chunk:
        chunk = _chunk_rows(be, n_classes, n_features, compute)
    chunk = max(1, min(chunk, n))
    if x2 is None:
        x2, w2, b2 = _linear_operands(x, w, b, n, n_features, compute, xp, be)
    wt = w2.T
    loss_rows = xp.empty(n, dtype=np.float64)
    if want_grad:
        # the gradients go straight into out= where they may (_grad_dests)
        reads = (w2, b2, plan.target, plan.class_weight)
        dx, dw, db, direct = _grad_dests(
            out, x2, reads, n_classes, compute, result, xp, b2 is not None
        )
        dw_part = None
        accumulate = getattr(be, "linear_grad_accumulate", None)
    # the chunk buffer is kept between calls (see _workspace.take_chunk)
    buf, kept = _workspace.take_chunk(xp, (chunk, n_classes), compute, keep)
    try:
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            z = buf[: stop - start]
            xs = x2[start:stop]
            xp.matmul(xs, wt, out=z)
            if b2 is not None:
                z += b2
            t = plan.target[start:stop]
            if not want_grad:
                if plan.probs:
                    be.cross_entropy_prob_rows(
                        z, t, plan.smoothing, plan.class_weight, loss_rows[start:stop]
                    )
                else:
                    be.cross_entropy_rows(
                        z,
                        t,
                        plan.alpha[start:stop],
                        plan.beta[start:stop],
                        plan.class_weight,
                        loss_rows[start:stop],
                    )
                continue
            if plan.probs:
                be.cross_entropy_prob_grad_rows(
                    z,
                    t,
                    plan.smoothing,
                    plan.class_weight,
                    plan.grad_scale,
                    loss_rows[start:stop],
                    z,
                )
            else:
                be.cross_entropy_grad_rows(
                    z,
                    t,
                    plan.alpha[start:stop],
                    plan.beta[start:stop],
                    plan.class_weight,
                    plan.grad_scale,
                    loss_rows[start:stop],
                    z,
                )
            if plan.nan_rows is not None:
                z[plan.nan_rows[start:stop]] = np.nan
            dw_part = _chunk_grads(
                z, xs, w2, dw, db, dx[start:stop], start == 0, accumulate, dw_part, xp
            )
    finally:
        _workspace.give_back_chunk(kept)
    loss = _reduce(loss_rows, plan, batch, result, xp)
    if not want_grad:
        return loss, None
    return loss, _grads_out((dx, dw, db), direct, out, batch, result, xp, be)


_LCE_DOC_PARAMS = """
    Parameters
    ----------
    input : array_like
        Features, shape ``batch + (D,)``.
    linear_weight : array_like
        The classifier's weight, shape ``(C, D)`` (PyTorch's ``nn.Linear`` layout).
    target : array_like
        Class indices with shape ``batch``, or probabilities with shape
        ``batch + (C,)``.
    linear_bias : array_like, optional
        The classifier's bias, shape ``(C,)``.
    weight, ignore_index, reduction, label_smoothing
        As for :func:`cross_entropy`.
    chunk_size : int, optional
        Rows of logits computed at a time. The default is the backend's choice (from
        its cache size) or about 8 MiB of logits.
    backend : str, optional
        A registered backend's name.
"""


def linear_cross_entropy(
    input: Any,
    linear_weight: Any,
    target: Any,
    *,
    linear_bias: Any = None,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    chunk_size: int | None = None,
    backend: Any = None,
) -> Any:
    with _device_of(input), _quiet_gemms():
        return _linear_ce(
            input,
            linear_weight,
            target,
            linear_bias,
            weight,
            ignore_index,
            reduction,
            label_smoothing,
            chunk_size,
            backend,
            False,
        )[0]


def linear_cross_entropy_with_grad(
    input: Any,
    linear_weight: Any,
    target: Any,
    *,
    linear_bias: Any = None,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    chunk_size: int | None = None,
    out: tuple[Any, Any, Any] | None = None,
    backend: Any = None,
) -> tuple[Any, tuple[Any, Any, Any]]:
    with _device_of(input), _quiet_gemms():
        return _linear_ce(
            input,
            linear_weight,
            target,
            linear_bias,
            weight,
            ignore_index,
            reduction,
            label_smoothing,
            chunk_size,
            backend,
            True,
            out,
        )


linear_cross_entropy.__doc__ = (
    r"""Cross-entropy of a linear classifier, without materialising all logits.

    Equal to ``cross_entropy(input @ linear_weight.T + linear_bias, target, ...)``
    (PyTorch's ``F.linear_cross_entropy`` names and layout), computed ``chunk_size``
    rows at a time, so the extra memory is one chunk of logits, ``O(chunk × C)``,
    not ``O(N × C)``.
"""
    + _LCE_DOC_PARAMS
    + """
    Returns
    -------
    scalar or ndarray
        As :func:`cross_entropy`.
"""
    + _CE_DOC_RAISES
    + """
    See Also
    --------
    linear_cross_entropy_with_grad, cross_entropy

    Examples
    --------
    >>> import numpy as np, softcore as sc
    >>> x, w = np.eye(2), np.eye(3, 2)
    >>> loss = sc.linear_cross_entropy(x, w, np.array([0, 1]), backend="numpy")
    >>> round(float(loss), 6)
    0.551445
    """
)
linear_cross_entropy_with_grad.__doc__ = (
    r"""Loss and gradients of :func:`linear_cross_entropy` in one chunked pass.

    Per chunk of rows: logits ``Z = X Wᵀ + b``, the cross-entropy gradient
    ``G = ∂loss/∂Z`` written over ``Z`` in place, then ``dX = G W``,
    ``dW += Gᵀ X`` (the seed's ``X^T (P − Y)`` in the ``(C, D)`` layout) and
    ``db += Σ_rows G``. Extra memory: one chunk of logits plus, when there is
    more than one chunk, a block of ``dW`` (8 MiB, at least 256 classes) for the
    accumulation. For NumPy arrays the chunk's buffer is kept for the next call
    (at most ``$SOFTCORE_KEEP_CHUNK_MIB``, default 128 MiB;
    :func:`softcore.release_scratch` frees it).
"""
    + _LCE_DOC_PARAMS
    + """    out : tuple of three ndarrays or None, optional
        Where to write ``(d_input, d_linear_weight, d_linear_bias)``, each of its
        gradient's shape and the result's dtype, or None to allocate that one
        (``out[2]`` must be None without a bias). A training loop that keeps its
        gradient arrays touches no fresh memory for them. ``out[0]`` may be
        ``input`` itself, which then holds ``d_input``. Any other overlap with the
        inputs still gives the right result (through a temporary); two
        destinations that share memory are a ValueError. A destination of the
        wrong shape or read-only is a ValueError, of the wrong dtype or array type
        a TypeError, raised before anything is written.

    Returns
    -------
    loss : scalar or ndarray
        As :func:`cross_entropy`.
    grads : tuple
        ``(d_input, d_linear_weight, d_linear_bias)``; ``d_linear_bias`` is None
        without a bias. For ``reduction="none"`` they are the gradients of the summed
        loss. Those given in ``out`` are those arrays.
"""
    + _CE_DOC_RAISES
    + """
    See Also
    --------
    linear_cross_entropy, cross_entropy_with_grad

    Examples
    --------
    >>> import numpy as np, softcore as sc
    >>> loss, (dx, dw, db) = sc.linear_cross_entropy_with_grad(
    ...     np.eye(2), np.eye(3, 2), np.array([0, 1]), backend="numpy")
    >>> dw.shape, db is None
    ((3, 2), True)
    """
)
