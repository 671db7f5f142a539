"""The core's use of a backend's optional ``cast`` hook: float16 and bfloat16
inputs widened to float32, and results rounded back, by the backend where it
offers the hook (NumPy's float16 cast runs an element at a time).

The backend here is the NumPy reference with a hook that casts as NumPy does and
records its calls, so every result must be bitwise the reference's own: what is
checked is where the core calls the hook (every op, moved axes, ``out=``) and
that a hook that declines, or a small array, leaves NumPy's cast in charge."""

from __future__ import annotations

import numpy as np
import pytest

import softcore as sc
from softcore import _validate

BIG = (40, 300)  # 12000 elements, above CAST_MIN
SMALL = (3, 16)  # and its Jacobian, 768 elements
LOW = ["float16"]
try:
    import ml_dtypes

    LOW.append(np.dtype(ml_dtypes.bfloat16).name)
    _BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # the bfloat16 cases need ml_dtypes, a test dependency
    _BF16 = None


def _dtype(name):
    return _BF16 if name == "bfloat16" else np.dtype(name)


class Hooked:
    """The NumPy reference backend with a ``cast`` hook that records its calls
    and casts as NumPy does, or declines (``decline``)."""

    def __init__(self, decline=False):
        self._inner = sc.get_backend("numpy")
        self.decline = decline
        self.calls = []

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def cast(self, src, dst):
        assert src.flags.c_contiguous
        assert dst.flags.c_contiguous
        assert src.shape == dst.shape
        self.calls.append((src.dtype.name, dst.dtype.name))
        if self.decline:
            return False
        np.copyto(dst, src, casting="same_kind")
        return True


class RowsHooked(Hooked):
    """:class:`Hooked` with a ``low_precision_rows`` hook too, recorded, that
    computes as the cast path would (the float32 kernel, NumPy's cast), or
    declines (``decline_rows``)."""

    def __init__(self, decline_rows=False):
        super().__init__()
        self.decline_rows = decline_rows
        self.rows_calls = []
        self.target_dtypes = []

    def low_precision_rows(self, kernel, args, out):
        assert out.flags.c_contiguous
        if kernel.startswith("cross_entropy"):
            return self._cross_entropy(kernel, args, out)
        lse = kernel == "logsumexp_rows"
        assert out.ndim == 1 if lse else out.ndim == 2
        for a in args:
            assert a.flags.c_contiguous
            assert a.dtype == out.dtype
            assert a.shape[: out.ndim] == out.shape
            assert a.ndim == 2
        self.rows_calls.append(kernel)
        if self.decline_rows:
            return False
        y = np.empty(out.shape, np.float32)
        getattr(self._inner, kernel)(*(a.astype(np.float32) for a in args), y)
        np.copyto(out, y, casting="same_kind")
        return True

    def _cross_entropy(self, kernel, args, out):
        """The cross-entropy: the float32 kernel's row losses on the widened
        logits (and probabilities), its gradient rounded. Records the
        probabilities' dtype in ``target_dtypes``."""
        x, t = args[0], args[1]
        assert x.ndim == 2
        assert x.flags.c_contiguous
        probs = "_prob" in kernel
        if probs:
            assert t.shape == x.shape
            assert t.flags.c_contiguous
            assert t.dtype in (x.dtype, np.float32)
            self.target_dtypes.append(t.dtype)
            t = t.astype(np.float32)
        else:
            assert all(a.shape == (x.shape[0],) for a in args[1:4])
        self.rows_calls.append(kernel)
        if self.decline_rows:
            return False
        x32 = x.astype(np.float32)
        alone = 4 if probs else 5
        if not kernel.endswith("_grad_rows"):
            assert len(args) == alone
            assert out.dtype == np.float64
            assert out.shape == (x.shape[0],)
            getattr(self._inner, kernel)(x32, t, *args[2:], out)
            return True
        assert len(args) == alone + 2
        assert out.dtype == x.dtype
        assert out.shape == x.shape
        g = np.empty(x.shape, np.float32)
        getattr(self._inner, kernel)(x32, t, *args[2:], g)
        np.copyto(out, g, casting="same_kind")
        return True


def _run(op, x, backend, rng):
    """``op`` on ``x`` (and companions of its dtype and shape): its results."""
    if op == "softmax":
        return (sc.softmax(x, backend=backend),)
    if op == "log_softmax_in_place":
        y = x.copy()
        return (sc.log_softmax(y, out=y, backend=backend), y)
    if op == "softmax_axis0":
        return (sc.softmax(x, axis=0, backend=backend),)
    if op == "softmax_axes":
        return (sc.softmax(x.reshape(x.shape[0], 2, -1), axis=(0, 2), backend=backend),)
    if op == "softmax_out":
        out = np.empty(x.shape, x.dtype)
        return (sc.softmax(x, out=out, backend=backend), out)
    if op == "softmax_strided_out":
        out = np.empty(x.shape[::-1], x.dtype).T
        return (sc.log_softmax(x, out=out, backend=backend), out)
    if op == "softmax_axis0_out":
        out = np.empty(x.shape, x.dtype)
        return (sc.softmax(x, axis=0, out=out, backend=backend), out)
    if op == "logsumexp":
        return (
            sc.logsumexp(x, backend=backend),
            sc.logsumexp(x.reshape(x.shape[0], 2, -1), axis=(1, 2), backend=backend),
        )
    if op == "logsumexp_rows":  # one class axis: the rows hook's
        return (
            sc.logsumexp(x, backend=backend),
            sc.logsumexp(x.T, axis=0, backend=backend),
        )
    if op == "jacobian":
        return (sc.softmax_jacobian(x[:, :40], backend=backend),)
    if op == "backward":
        g = np.asarray(rng.standard_normal(x.shape), dtype=x.dtype)
        p = sc.softmax(x, backend="numpy")
        return (
            sc.softmax_backward(g, p, backend=backend),
            sc.log_softmax_backward(g, p, axis=0, backend=backend),
        )
    if op == "backward_in_place":
        g = np.asarray(rng.standard_normal(x.shape), dtype=x.dtype)
        p = sc.softmax(x, backend="numpy")
        return (sc.softmax_backward(g, p, out=g, backend=backend), g)
    if op == "ce_prob":
        p = sc.softmax(x * 0.5, backend="numpy")
        loss, grad = sc.cross_entropy_with_grad(x, p, reduction="none", backend=backend)
        return loss, grad
    if op.startswith("ce_prob_"):  # probabilities of other dtypes, options
        p = sc.softmax(np.asarray(x, np.float32) * 0.5, backend="numpy")
        if op == "ce_prob_float32":
            return sc.cross_entropy_with_grad(x, p, backend=backend)
        if op == "ce_prob_float64":
            return sc.cross_entropy_with_grad(x, p.astype(np.float64), backend=backend)
        p = p.astype(x.dtype)
        if op == "ce_prob_loss":
            return (
                sc.cross_entropy(x, p, backend=backend),
                sc.cross_entropy(x, p, reduction="none", backend=backend),
            )
        if op == "ce_prob_options":
            w = rng.uniform(0.5, 2.0, x.shape[1])
            kw = {"weight": w, "label_smoothing": 0.1, "backend": backend}
            return sc.cross_entropy_with_grad(x, p, reduction="sum", **kw)
        if op == "ce_prob_axis0":
            return sc.cross_entropy_with_grad(x.T, p.T, axis=0, backend=backend)
        assert op == "ce_prob_in_place"  # the gradient over the logits
        y = x.copy()
        return (sc.cross_entropy_grad(y, p, out=y, backend=backend), y)
    if op == "ce_index":
        t = rng.integers(0, x.shape[1], x.shape[0])
        return sc.cross_entropy_with_grad(x, t, backend=backend)
    if op == "ce_index_loss":
        t = rng.integers(0, x.shape[1], x.shape[0])
        return (
            sc.cross_entropy(x, t, backend=backend),
            sc.cross_entropy(x, t, reduction="none", backend=backend),
        )
    if op == "ce_index_options":  # weights, ignored rows, smoothing, a sum
        t = rng.integers(0, x.shape[1], x.shape[0])
        t[::7] = -100
        w = rng.uniform(0.5, 2.0, x.shape[1])
        kw = {"weight": w, "label_smoothing": 0.1, "backend": backend}
        return sc.cross_entropy_with_grad(x, t, reduction="sum", **kw)
    if op == "ce_index_axis0":
        t = rng.integers(0, x.shape[0], x.shape[1])
        return sc.cross_entropy_with_grad(x, t, axis=0, backend=backend)
    if op == "ce_index_in_place":  # the gradient over the logits
        t = rng.integers(0, x.shape[1], x.shape[0])
        y = x.copy()
        return (sc.cross_entropy_grad(y, t, out=y, backend=backend), y)
    if op == "ce_index_all_ignored":  # mean over no rows: NaN, as PyTorch's
        t = np.full(x.shape[0], -100)
        return sc.cross_entropy_with_grad(x, t, backend=backend)
    if op == "linear":
        w = np.asarray(rng.standard_normal((50, x.shape[1])) * 0.1, dtype=x.dtype)
        b = np.asarray(rng.standard_normal(50), dtype=x.dtype)
        t = rng.integers(0, 50, x.shape[0])
        loss, grads = sc.linear_cross_entropy_with_grad(
            x, w, t, linear_bias=b, backend=backend
        )
        return (loss, *grads)
    raise AssertionError(op)


ROWS_OPS = [
    "softmax",
    "log_softmax_in_place",
    "softmax_axis0",
    "softmax_out",
    "softmax_strided_out",
    "softmax_axis0_out",
    "backward",
    "backward_in_place",
    "logsumexp_rows",
    "ce_index",
    "ce_index_loss",
    "ce_index_options",
    "ce_index_axis0",
    "ce_index_in_place",
    "ce_index_all_ignored",
    "ce_prob",
    "ce_prob_float32",
    "ce_prob_float64",
    "ce_prob_loss",
    "ce_prob_options",
    "ce_prob_axis0",
    "ce_prob_in_place",
]
OPS = [
    "softmax",
    "log_softmax_in_place",
    "softmax_axis0",
    "softmax_axes",
    "softmax_out",
    "softmax_strided_out",
    "softmax_axis0_out",
    "logsumexp",
    "jacobian",
    "backward",
    "backward_in_place",
    "ce_prob",
    "ce_index",
    "linear",
]
WIDENS_ONLY = {"logsumexp"}  # 40 and 40 results: too few to round through it


def _same(got, want):
    for g, w in zip(got, want, strict=True):
        g, w = np.asarray(g), np.asarray(w)
        assert g.dtype == w.dtype
        assert g.shape == w.shape
        assert g.tobytes() == w.tobytes()  # in C order, whatever the layout


@pytest.mark.parametrize("low", LOW)
@pytest.mark.parametrize("op", OPS)
def test_the_hook_widens_and_rounds_with_the_same_bits(op, low):
    """Large 16-bit inputs go through the hook both ways, and the results are
    bitwise those of the backend without a hook."""
    rng = np.random.default_rng(1)
    x = np.asarray(rng.standard_normal(BIG) * 3, dtype=_dtype(low))
    hooked = Hooked()
    got = _run(op, x, hooked, np.random.default_rng(2))
    want = _run(op, x, "numpy", np.random.default_rng(2))
    _same(got, want)
    assert (low, "float32") in hooked.calls
    if op not in WIDENS_ONLY:
        assert ("float32", low) in hooked.calls


@pytest.mark.parametrize("low", LOW)
@pytest.mark.parametrize("op", OPS)
def test_a_declining_hook_leaves_the_cast_to_numpy(op, low):
    rng = np.random.default_rng(3)
    x = np.asarray(rng.standard_normal(BIG) * 3, dtype=_dtype(low))
    hooked = Hooked(decline=True)
    got = _run(op, x, hooked, np.random.default_rng(4))
    want = _run(op, x, "numpy", np.random.default_rng(4))
    _same(got, want)
    assert hooked.calls  # asked, declined


@pytest.mark.parametrize("op", OPS)
def test_small_arrays_and_other_dtypes_do_not_call_the_hook(op):
    """Below ``CAST_MIN`` elements NumPy casts (a hook call costs about as much);
    float32 and float64 inputs have nothing to convert."""
    rng = np.random.default_rng(5)
    for dtype, shape in [("float16", SMALL), ("float32", BIG), ("float64", BIG)]:
        hooked = Hooked()
        _run(op, np.asarray(rng.standard_normal(shape), dtype=dtype), hooked, rng)
        assert hooked.calls == [], (dtype, shape)
    assert np.prod(SMALL) < _validate.CAST_MIN <= np.prod(BIG)


@pytest.mark.parametrize("low", LOW)
@pytest.mark.parametrize("op", ROWS_OPS)
def test_low_precision_rows_hook_takes_16bit_rows(op, low):
    """A backend with ``low_precision_rows`` gets large 16-bit softmax,
    log_softmax, backward, logsumexp and cross-entropy rows in their own dtype
    (no cast either way; 16-bit probabilities in theirs, others in float32),
    moved axes and ``out=`` included, with the same bits as the cast path; one
    that declines leaves them to the cast path."""
    x = np.asarray(np.random.default_rng(6).standard_normal(BIG) * 3, _dtype(low))
    with np.errstate(invalid="ignore"):  # all rows ignored: 0/0
        want = _run(op, x, "numpy", np.random.default_rng(7))
    hooked = RowsHooked()
    with np.errstate(invalid="ignore"):
        _same(_run(op, x, hooked, np.random.default_rng(7)), want)
    two = ("backward", "logsumexp_rows", "ce_index_loss", "ce_prob_loss")
    calls = 2 if op in two else 1  # two calls each
    assert len(hooked.rows_calls) == calls
    assert hooked.calls == []
    if op.startswith("ce_prob"):  # 16-bit probabilities come as they are
        wide = op in ("ce_prob_float32", "ce_prob_float64")
        assert hooked.target_dtypes == [np.float32 if wide else x.dtype] * calls
    declining = RowsHooked(decline_rows=True)
    with np.errstate(invalid="ignore"):
        _same(_run(op, x, declining, np.random.default_rng(7)), want)
    assert len(declining.rows_calls) == calls
    assert (low, "float32") in declining.calls
    # below CAST_MIN elements the calls ROWS_HOOK_SMALL lists reach it too,
    # no others
    small, xs = RowsHooked(), x[:3, :16]
    with np.errstate(invalid="ignore"):
        want = _run(op, xs, "numpy", np.random.default_rng(7))
        _same(_run(op, xs, small, np.random.default_rng(7)), want)
    if low in _validate.ROWS_HOOK_SMALL.get(_hook_kind(op), ()):
        assert len(small.rows_calls) == calls
    else:
        assert small.rows_calls == []


def _hook_kind(op):
    """The kind of call ``op`` makes of the ``low_precision_rows`` hook
    (``softcore._validate.ROWS_HOOK_SMALL``)."""
    if op == "logsumexp_rows":
        return "logsumexp"
    if op.startswith("ce_index") and op != "ce_index_loss":
        return "ce_index_grad"
    return "ce" if op.startswith("ce_") else "rows"


def _plain_call(op, x, p, backend):
    """``op`` on plain 16-bit arrays (``p`` a softmax of ``x``): its results.
    The forward ops as :func:`_run` calls them (and ``out=`` over ``axis=1``);
    the backward passes take ``p`` (``_run``'s make their own, through the
    general path)."""
    if op == "softmax_axis1_out":
        out = np.empty_like(x)
        return (sc.softmax(x, axis=1, out=out, backend=backend), out)
    if op not in ("backward", "in_place"):
        return _run(op, x, backend, None)
    if op == "backward":
        return (sc.log_softmax_backward(x, p, backend=backend),)
    g = x.copy()  # backward into the incoming gradient
    return (sc.softmax_backward(g, p, out=g, backend=backend), g)


@pytest.mark.parametrize("low", LOW)
@pytest.mark.parametrize(
    "op",
    ["softmax", "log_softmax_in_place", "softmax_out", "softmax_axis1_out"]
    + ["backward", "in_place"],
)
def test_plain_16bit_calls_go_to_the_rows_hook_at_once(op, low, monkeypatch):
    """A C-contiguous 2-D 16-bit NumPy array over its last axis (and ``out=``
    of its own, or itself) is handed to ``low_precision_rows`` without the
    general steps, with the same bits; where the hook declines, the cast path
    runs without asking it again."""
    from softcore import _api

    x = np.asarray(np.random.default_rng(8).standard_normal(BIG) * 3, _dtype(low))
    p = sc.softmax(x, backend="numpy")
    want = _plain_call(op, x, p, "numpy")

    def no_general_steps(*args, **kwargs):
        raise AssertionError("the general path ran")

    with monkeypatch.context() as m:
        m.setattr(_api, "_prepare", no_general_steps)
        hooked = RowsHooked()
        _same(_plain_call(op, x, p, hooked), want)
    assert len(hooked.rows_calls) == 1
    declining = RowsHooked(decline_rows=True)
    _same(_plain_call(op, x, p, declining), want)
    assert len(declining.rows_calls) == 1
    assert (low, "float32") in declining.calls


@pytest.mark.parametrize("low", LOW)
def test_16bit_calls_that_are_not_plain_take_the_general_path(low):
    """Mixed 16-bit dtypes, a big-endian float16, a read-only ``out`` and
    mismatched shapes: the same results or errors as without the shortcut."""
    rng = np.random.default_rng(10)
    x = np.asarray(rng.standard_normal(BIG) * 3, _dtype(low))
    p = sc.softmax(x, backend="numpy")
    hooked = RowsHooked()
    other = _dtype("float16" if low != "float16" else LOW[-1])
    q = p.astype(other)
    _same(
        (sc.softmax_backward(x, q, backend=hooked),),
        (sc.softmax_backward(x, q, backend="numpy"),),
    )
    if low == "float16":
        xb = x.astype(">f2")
        _same((sc.softmax(xb, backend=hooked),), (sc.softmax(xb, backend="numpy"),))
    ro = np.empty_like(x)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="out is read-only"):
        sc.softmax(x, out=ro, backend=hooked)
    with pytest.raises(ValueError, match="shape"):
        sc.softmax_backward(x, p[:, :-1], backend=hooked)
