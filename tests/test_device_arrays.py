"""softcore on device arrays: the core's and the kit's non-NumPy paths, on the CPU.

The arrays are those of ``tests/fake_device.py``, a strict stand-in for CuPy's (not
NumPy arrays, no implicit conversion to the host, 0-d results, no read-only flag,
two devices), computed on by the loopback backend ``fakedev``, whose kernels check
the kernel contract and then run the NumPy reference kernels. Every result here is
compared with the NumPy reference backend's result on host copies of the same
inputs: both paths end in the same kernels, so any difference is the core's device
path. The inputs live on device 1 while device 0 is current, so a result (or a
temporary) allocated on the wrong device fails.
"""

from __future__ import annotations

import functools
import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import fake_device as fd
import numpy as np
import pytest

import softcore as sc
from softcore import _registry

HERE = Path(__file__).resolve().parent
NAME = fd.NAME
DEV = 1
KIT_EXAMPLES = 25


@pytest.fixture(scope="module", autouse=True)
def _fakedev():
    fd.register()
    yield
    if NAME in _registry._loaded:
        _registry.unregister(NAME)


@pytest.fixture(params=["backend_hook", "core_plan"])
def index_path(request, monkeypatch):
    """Class-index cross-entropy through the backend's optional
    ``cross_entropy_index_rows`` (the targets checked and summed on the device,
    read once at the end) and through the core's own device plan (read before
    the row kernel): both give the host path's bits and errors."""
    monkeypatch.setattr(fd.backend, "index_rows", request.param == "backend_hook")
    return request.param


def _to_dev(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return fd.device_array(v, DEV)
    return v


def _on_device(r: Any) -> np.ndarray:
    """``r`` must be a device array on the inputs' device; its host copy."""
    assert isinstance(r, fd.ndarray), (
        f"expected a {fd.xp.__name__}.ndarray, received "
        f"{type(r).__module__}.{type(r).__qualname__}"
    )
    assert r.device.id == DEV, f"result on device {r.device.id}, inputs on {DEV}"
    return r.get()


def _same(got: Any, want: Any, what: str = "") -> None:
    """Device result ``got`` equals the host result ``want`` bitwise, same shape and
    dtype (tuples elementwise, ``None`` for ``None``); a reduced cross-entropy
    loss to 4 units in its last place: the device sums the row losses on the
    device (pairwise here, in a tree on a GPU), the host in Python up to 128
    rows, so the totals may differ in their last bits (README)."""
    if isinstance(want, tuple):
        assert isinstance(got, tuple), what
        assert len(got) == len(want), what
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _same(g, w, f"{what}[{i}]")
        return
    if want is None:
        assert got is None, f"{what}: expected None, received {got!r}"
        return
    g = _on_device(got)
    w = np.asarray(want)
    assert g.dtype == w.dtype, f"{what}: dtype {g.dtype}, host path {w.dtype}"
    assert g.shape == w.shape, f"{what}: shape {g.shape}, host path {w.shape}"
    if w.ndim == 0 and "cross_entropy" in what and np.isfinite(w):
        ulp = float(np.spacing(np.abs(w)))  # in the result's own dtype
        gap = abs(float(g) - float(w))
        assert gap <= 4 * ulp, f"{what}: {g!r}, host path {w!r}"
        return
    np.testing.assert_array_equal(g, w, err_msg=what)


def _both(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """``fn`` on device copies of the arrays (backend fakedev) and on the host
    arrays (backend numpy)."""
    calls = len(fd.backend.calls)
    dev_args = [_to_dev(a) for a in args]
    dev_kwargs = {k: _to_dev(v) for k, v in kwargs.items()}
    assert fd._current() == 0
    got = fn(*dev_args, backend=NAME, **dev_kwargs)
    assert fd._current() == 0, "the call left another device current"
    if all(np.asarray(a).size for a in args if isinstance(a, np.ndarray)):
        assert len(fd.backend.calls) > calls, "no fakedev kernel ran"
    want = fn(*args, backend="numpy", **kwargs)
    return got, want


RNG = np.random.default_rng(20260601)
SHAPE = (2, 3, 5)
DTYPES = ["float16", "float32", "float64", "int32", "bool"]


def _logits(shape: tuple[int, ...] = SHAPE, dtype: str = "float64") -> np.ndarray:
    x = RNG.standard_normal(shape) * 3
    if dtype == "bool":
        return x > 0
    return x.astype(dtype)


# ------------------------------------------------------------ row-wise ops

ROW_OPS = ["softmax", "log_softmax", "softmax_jacobian", "log_softmax_jacobian"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("op", ROW_OPS)
def test_row_ops_return_device_arrays(op, axis, dtype):
    x = _logits(dtype=dtype)
    got, want = _both(getattr(sc, op), x, axis=axis)
    _same(got, want, op)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_logsumexp(axis, keepdims, dtype):
    got, want = _both(sc.logsumexp, _logits(dtype=dtype), axis=axis, keepdims=keepdims)
    _same(got, want, "logsumexp")


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("axis", [-1, 0, (0, 2), None], ids=str)
def test_logsumexp_with_factors_and_sign(axis, dtype):
    x = _logits(dtype=dtype)
    b = RNG.standard_normal(SHAPE[1:]).astype(dtype)
    b[0, 0] = 0
    dx, db = fd.device_array(x, DEV), fd.device_array(b, DEV)
    # fakedev has no logsumexp_weighted_rows: the core's formula in the array
    # module's operations, no kernel
    for keepdims in (False, True):
        kw = {"axis": axis, "keepdims": keepdims, "return_sign": True}
        got = sc.logsumexp(dx, b=db, backend=NAME, **kw)
        want = sc.logsumexp(x, b=b, backend="numpy", **kw)
        _same(got, want, f"logsumexp b= axis={axis}")
    got = sc.logsumexp(dx, b=fd.device_array(np.abs(b), DEV), axis=axis, backend=NAME)
    want = sc.logsumexp(x, b=np.abs(b), axis=axis, backend="numpy")
    _same(got, want, f"logsumexp b>=0 axis={axis}")
    got, want = _both(sc.logsumexp, x, axis=axis, return_sign=True)
    _same(got, want, f"logsumexp return_sign axis={axis}")
    with pytest.raises(TypeError, match=r"b is a numpy\.ndarray"):
        sc.logsumexp(fd.device_array(x, DEV), b=b, backend=NAME)


def _weighted_hook(x: Any, b: Any, out: Any, sign: Any) -> None:
    """A ``logsumexp_weighted_rows`` for fakedev: the contract's operands
    checked (``b`` of ``x``'s shape, or one row shared by every row), then the
    NumPy reference's result written into them."""
    hx = fd._operand("x", x, fd._FLOATS)
    hb = fd._operand("b", b, (hx.dtype,))
    if hb.shape not in (hx.shape, (1, hx.shape[1])):
        raise fd.KernelContractError(f"b has shape {hb.shape}, x {hx.shape}")
    ho = fd._operand("out", out, (hx.dtype,), hx.shape[:1])
    hs = fd._operand("sign", sign, (hx.dtype,), hx.shape[:1])
    fd.backend.calls.append("logsumexp_weighted_rows")
    ho[...], hs[...] = sc.logsumexp(hx, b=hb, return_sign=True, backend="numpy")


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("axis", [-1, 0, (0, 2), None], ids=str)
def test_logsumexp_with_factors_through_a_backend_hook(monkeypatch, axis, dtype):
    """A backend with ``logsumexp_weighted_rows`` (cupy's) gets device arrays of
    the contract's layout, ``b`` broadcast and the reduced axes last, and the
    call reads nothing back to the host."""
    monkeypatch.setattr(
        fd.backend, "logsumexp_weighted_rows", _weighted_hook, raising=False
    )
    x = _logits(dtype=dtype)
    b = RNG.standard_normal(SHAPE[1:]).astype(dtype)
    b[0, 0] = 0
    dx, db = fd.device_array(x, DEV), fd.device_array(b, DEV)
    eps = float(np.finfo(dtype).eps)
    for keepdims, signed in itertools.product((False, True), (False, True)):
        kw = {"axis": axis, "keepdims": keepdims, "return_sign": signed}
        calls = len(fd.backend.calls)
        assert _reads(sc.logsumexp, x, b=b, **kw) == 0
        assert fd.backend.calls[calls:] == ["logsumexp_weighted_rows"]
        got = sc.logsumexp(dx, b=db, backend=NAME, **kw)
        want = sc.logsumexp(x, b=b, backend="numpy", **kw)
        got, want = (got, want) if signed else ((got, None), (want, None))
        g, w = _on_device(got[0]), np.asarray(want[0])
        assert g.dtype == w.dtype, f"axis={axis} keepdims={keepdims}"
        assert g.shape == w.shape, f"axis={axis} keepdims={keepdims}"
        # the hook sums each flattened row; the host path over the axes as given
        np.testing.assert_allclose(g, w, rtol=4 * eps, atol=4 * eps)
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        if signed:
            np.testing.assert_array_equal(_on_device(got[1]), np.asarray(want[1]))


@pytest.mark.parametrize("dtype", ["float16", "float64"])
@pytest.mark.parametrize("axis", [None, (0, 2), (1, 2)], ids=str)
def test_several_axes(axis, dtype):
    x = _logits(dtype=dtype)
    for keepdims in (False, True):
        got, want = _both(sc.logsumexp, x, axis=axis, keepdims=keepdims)
        _same(got, want, f"logsumexp axis={axis}")
    for op in ("softmax", "log_softmax"):
        got, want = _both(getattr(sc, op), x, axis=axis)
        _same(got, want, f"{op} axis={axis}")
        with fd.Device(DEV):
            out = fd.xp.full(x.shape, 7.0, dtype=dtype)
        dx = fd.device_array(x, DEV)
        assert getattr(sc, op)(dx, axis=axis, out=out, backend=NAME) is out
        _same(out, want, f"{op} axis={axis} out=")


def test_a_reduction_to_a_scalar_is_a_0d_device_array():
    """As the design says for CuPy: a 0-d array, never a host scalar."""
    x = _logits((7,))
    got, want = _both(sc.logsumexp, x)
    assert got.ndim == 0
    _same(got, want)
    assert float(got) == float(want)
    got, want = _both(sc.logsumexp, x[:, None], axis=0, keepdims=True)
    _same(got, want)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp"])
def test_empty_batch(op, dtype):
    x = np.zeros((0, 4), dtype)
    _same(*_both(getattr(sc, op), x))
    _same(*_both(getattr(sc, op), x, axis=0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("op", ["softmax_backward", "log_softmax_backward"])
def test_backward_ops(op, axis, dtype):
    x = _logits()
    fwd = sc.softmax if op == "softmax_backward" else sc.log_softmax
    saved = fwd(x, axis=axis, backend="numpy").astype(
        "float64" if dtype in ("int32", "bool") else dtype
    )
    got, want = _both(getattr(sc, op), _logits(dtype=dtype), saved, axis=axis)
    _same(got, want, op)


# --------------------------------------------------------------------- out=


@pytest.mark.parametrize("layout", ["contiguous", "fortran", "strided"])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_out_on_the_device(op, axis, dtype, layout):
    x = _logits(dtype=dtype)
    want = getattr(sc, op)(x, axis=axis, backend="numpy")
    dx = fd.device_array(x, DEV)
    with fd.Device(DEV):
        if layout == "contiguous":
            out = fd.xp.full(x.shape, 7.0, dtype=dtype)
        elif layout == "fortran":
            out = fd.xp.asfortranarray(fd.xp.full(x.shape, 7.0, dtype=dtype))
        else:
            big = fd.xp.full(tuple(2 * s for s in x.shape), 7.0, dtype=dtype)
            out = big[::2, ::2, ::2]
    res = getattr(sc, op)(dx, axis=axis, out=out, backend=NAME)
    assert res is out
    _same(out, want, f"{op} out={layout}")
    if layout == "strided":
        rest = big.get()
        rest[::2, ::2, ::2] = 7.0
        assert np.all(rest == 7.0), "out= wrote outside the view"


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_out_may_be_the_input(op, axis):
    x = _logits(dtype="float32")
    want = getattr(sc, op)(x, axis=axis, backend="numpy")
    dx = fd.device_array(x, DEV)
    assert getattr(sc, op)(dx, axis=axis, out=dx, backend=NAME) is dx
    _same(dx, want, op)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_out_overlapping_the_input_in_part(op):
    """An ``out`` sharing memory with the input without being it: the kernel must
    not get the two (the contract rules out partial overlap)."""
    h = _logits((5, 4))
    want = getattr(sc, op)(h[1:], backend="numpy")
    buf = fd.device_array(h, DEV)
    res = getattr(sc, op)(buf[1:], out=buf[:-1], backend=NAME)
    assert isinstance(res, fd.ndarray)
    _same(buf[:-1], want, op)


@pytest.mark.parametrize("op", ["softmax_backward", "log_softmax_backward"])
def test_backward_out_may_be_an_input(op):
    g, p = _logits(dtype="float32"), _logits(dtype="float32")
    want = getattr(sc, op)(g, p, axis=1, backend="numpy")
    for which in (0, 1):
        dg, dp = fd.device_array(g, DEV), fd.device_array(p, DEV)
        out = (dg, dp)[which]
        assert getattr(sc, op)(dg, dp, axis=1, out=out, backend=NAME) is out
        _same(out, want, f"{op} out=argument {which}")


def test_out_must_be_a_device_array_for_device_input():
    dx = fd.device_array(_logits(), DEV)
    with pytest.raises(TypeError, match=r"out must be a fakecupy\.ndarray; received "):
        sc.softmax(dx, out=np.empty(SHAPE), backend=NAME)
    with pytest.raises(TypeError, match=r"out must be a numpy\.ndarray; received "):
        sc.softmax(_logits(), out=fd.device_array(np.empty(SHAPE), DEV))


# ------------------------------------------------------------ cross-entropy

CE_OPTIONS = [
    {},
    {"reduction": "sum"},
    {"reduction": "none"},
    {"label_smoothing": 0.2},
    {"weight": "w", "reduction": "sum", "label_smoothing": 0.1},
    {"weight": "w0"},
    {"ignore_index": 1},
    {"ignore_index": 0, "weight": "w", "label_smoothing": 1.0, "reduction": "none"},
    {"ignore_index": -1, "target_dtype": "int32"},
    {"ignore_index": 2, "target_dtype": "uint8", "weight": "w"},
    {"target": "prob"},
    {"target": "prob", "weight": "w", "label_smoothing": 0.3, "reduction": "none"},
]


def _ce_inputs(options: dict[str, Any], axis: int, dtype: str = "float64") -> tuple:
    opts = dict(options)
    c = 5
    logits = _logits((3, c, 4) if axis == 1 else (3, 4, c), dtype)
    batch = (3, 4)
    if opts.pop("target", "index") == "prob":
        t = RNG.uniform(0, 1, logits.shape)
        t = (t / t.sum(axis=axis, keepdims=True)).astype(logits.dtype)
    else:
        t = RNG.integers(0, c, batch).astype(opts.pop("target_dtype", "int64"))
        if "ignore_index" in opts and opts["ignore_index"] < 0:
            t[0, :2] = opts["ignore_index"]
    w = opts.get("weight")
    if w is not None:
        weight = RNG.uniform(0.5, 2.0, c)
        if w == "w0":
            weight[int(t.reshape(-1)[0])] = 0.0
        opts["weight"] = weight
    return logits, t, opts


CE_FNS = ["cross_entropy", "cross_entropy_grad", "cross_entropy_with_grad"]


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("axis", [-1, 1])
@pytest.mark.parametrize("options", CE_OPTIONS, ids=lambda o: str(o) or "defaults")
@pytest.mark.parametrize("fn", CE_FNS)
def test_cross_entropy(fn, options, axis, dtype, index_path):
    logits, target, opts = _ce_inputs(options, axis, dtype)
    got, want = _both(getattr(sc, fn), logits, target, axis=axis, **opts)
    _same(got, want, fn)
    loss = got[0] if isinstance(got, tuple) else got
    if fn != "cross_entropy_grad" and opts.get("reduction", "mean") != "none":
        assert loss.ndim == 0, "a reduced loss is a 0-d device array"


@pytest.mark.parametrize("where", ["separate", "logits"])
@pytest.mark.parametrize("axis", [-1, 1])
@pytest.mark.parametrize("options", CE_OPTIONS, ids=lambda o: str(o) or "defaults")
@pytest.mark.parametrize("fn", ["cross_entropy_grad", "cross_entropy_with_grad"])
def test_cross_entropy_grad_out_on_the_device(fn, options, axis, where, index_path):
    """The gradient written into a device ``out`` (or over the device logits),
    the same bits as the host path's fresh gradient."""
    logits, target, opts = _ce_inputs(options, axis, "float32")
    want = getattr(sc, fn)(logits, target, axis=axis, backend="numpy", **opts)
    dx = fd.device_array(logits, DEV)
    dev_opts = {k: _to_dev(v) for k, v in opts.items()}
    if where == "logits":
        out = dx
    else:
        with fd.Device(DEV):
            out = fd.xp.full(logits.shape, 7.0, dtype="float32")
    got = getattr(sc, fn)(
        dx, _to_dev(target), axis=axis, out=out, backend=NAME, **dev_opts
    )
    grad = got[1] if isinstance(got, tuple) else got
    assert grad is out
    _same(got, want, f"{fn} out={where}")


@pytest.mark.parametrize("dtype", ["int8", "int16", "uint8"])
@pytest.mark.parametrize("fn", CE_FNS)
def test_small_integer_targets_with_many_classes(fn, dtype, index_path):
    """More classes than the target dtype's non-negative half (int8: 128): the
    targets are checked, and ignored rows ignored, all the same."""
    c = 300
    logits = _logits((6, c))
    info = np.iinfo(dtype)
    target = RNG.integers(0, min(c, info.max + 1), 6).astype(dtype)
    if info.min < 0:
        target[[1, 4]] = -100
    got, want = _both(getattr(sc, fn), logits, target, reduction="none")
    _same(got, want, fn)


@pytest.mark.parametrize("fn", CE_FNS)
def test_cross_entropy_every_row_ignored(fn, index_path):
    logits = _logits((4, 3))
    target = np.full(4, -100)
    got, want = _both(getattr(sc, fn), logits, target)
    _same(got, want, fn)
    if fn != "cross_entropy_grad":
        loss = got[0] if isinstance(got, tuple) else got
        assert np.isnan(float(loss))


def test_cross_entropy_zero_total_weight(index_path):
    logits = _logits((3, 4))
    target = np.array([0, 0, -100])
    weight = np.array([0.0, 1.0, 1.0, 1.0])
    got, want = _both(sc.cross_entropy_with_grad, logits, target, weight=weight)
    _same(got, want)
    grad = got[1].get()
    assert np.isnan(grad[:2]).all()
    assert (grad[2] == 0).all()


def _counted(counter: Any, fn: Any, *args: Any, **kwargs: Any) -> int:
    """How far ``counter`` (a count of the stand-in device's) moves during one call
    of ``fn`` on device copies of ``args``."""
    dev_args = [_to_dev(a) for a in args]
    dev_kwargs = {k: _to_dev(v) for k, v in kwargs.items()}
    before = counter()
    fn(*dev_args, backend=NAME, **dev_kwargs)
    return counter() - before


def _counted_inputs() -> tuple[Any, Any, Any, Any, Any]:
    """Logits, class-index targets (also with an ignored row), probability targets
    and class weights for the counting tests."""
    return (
        _logits((6, 5)),
        np.array([0, 4, 2, 2, 1, 3]),
        np.array([0, 4, -100, 2, 1, 3]),
        np.full((6, 5), 0.2),
        np.linspace(0.5, 2.0, 5),
    )


def _reads(fn: Any, *args: Any, **kwargs: Any) -> int:
    """Host reads of device memory (each a wait for a GPU) during one call."""
    return _counted(fd.host_reads, fn, *args, **kwargs)


def test_what_waits_for_the_device(index_path):
    """The row ops and probability targets never read device memory back. A
    class-index target is read once through the backend's
    ``cross_entropy_index_rows``: its verdict, after every launch of the call.
    Through the core's own plan, once before the row kernel (the largest target,
    with class weights their summed weight too), twice where some target is
    ``ignore_index`` or no class (whether one is bad, the kept rows' weight and
    whether any is kept come back together). A bad target's message may read
    more."""
    hook = index_path == "backend_hook"
    x, t, t_ign, probs, w = _counted_inputs()
    for op in ROW_OPS + ["logsumexp"]:
        assert _reads(getattr(sc, op), x) == 0, op
    assert _reads(sc.softmax_backward, x, x) == 0
    assert _reads(sc.log_softmax_backward, x, x) == 0
    for fn in map(functools.partial(getattr, sc), CE_FNS):
        assert _reads(fn, x, probs) == 0
        assert _reads(fn, x, probs, weight=w, label_smoothing=0.1) == 0
        assert _reads(fn, x, t) == 1
        assert _reads(fn, x, t, reduction="none") == 1
        assert _reads(fn, x, t, weight=w, label_smoothing=0.1) == 1
        assert _reads(fn, x, t.astype(np.uint8), weight=w) == 1
        ignoring = 1 if hook else 2
        assert _reads(fn, x, t_ign) == ignoring
        assert _reads(fn, x, t_ign, weight=w, reduction="sum") == ignoring
        assert _reads(fn, x, t, ignore_index=2) == ignoring
    xin, lw = _logits((6, 3)), _logits((5, 3))
    for fn in (sc.linear_cross_entropy, sc.linear_cross_entropy_with_grad):
        assert _reads(fn, xin, lw, t) == 1
        assert _reads(fn, xin, lw, t, chunk_size=2) == 1
        assert _reads(fn, xin, lw, t_ign, chunk_size=2) == 2


def _launches(fn: Any, *args: Any, **kwargs: Any) -> int:
    """Kernels that one call of ``fn`` on device copies of ``args`` launches."""
    return _counted(fd.launches, fn, *args, **kwargs)


def test_kernel_launches_per_call(index_path):
    """Kernels launched per call on device arrays (each a launch's host time in
    CuPy, however small the array): one for a row op. For a class-index
    cross-entropy through the backend's ``cross_entropy_index_rows``, whatever the
    options: the targets' statistics and the row kernel, and for a scalar loss the
    total (``"none"``: the rows' cast instead). Through the core's plan: the
    backend's kernel and the plan's array operations (the class weights of ones,
    the largest target, alpha and beta, the loss's sum and mean), more where rows
    are ignored. The gradient alone skips the loss's reduction. Pinned
    so that an added array operation in the core's device path shows."""
    hook = index_path == "backend_hook"
    x, t, t_ign, probs, w = _counted_inputs()
    for op in ROW_OPS + ["logsumexp"]:
        assert _launches(getattr(sc, op), x) == 1, op
    assert _launches(sc.softmax_backward, x, x) == 1
    assert _launches(sc.softmax_jacobian, x) == 1
    cases = [  # (target, options, loss or loss and gradient, gradient alone)
        (t, {}, (7, 5), (3, 2)),
        (t, {"reduction": "none"}, (6, 5), (3, 2)),
        (t, {"label_smoothing": 0.1}, (7, 5), (3, 2)),
        (t, {"weight": w}, (12, 10), (3, 2)),
        (t_ign, {}, (16, 14), (3, 2)),
        (t_ign, {"weight": w, "label_smoothing": 0.1}, (25, 23), (3, 2)),
        (probs, {}, (4, 2), (4, 2)),
    ]
    for target, kw, plan_counts, hook_counts in cases:
        both, grad_only = hook_counts if hook else plan_counts
        what = f"{target.dtype} {kw}"
        assert _launches(sc.cross_entropy, x, target, **kw) == both, what
        assert _launches(sc.cross_entropy_with_grad, x, target, **kw) == both, what
        assert _launches(sc.cross_entropy_grad, x, target, **kw) == grad_only, what


def test_cross_entropy_zero_total_weight_every_row_kept(index_path):
    """Class weights that are 0 at every target, no row ignored: the mean is
    0/0, NaN, and so is the gradient, as on the host (the device plan takes a
    path of its own there)."""
    logits = _logits((3, 4))
    target = np.array([0, 0, 0])
    weight = np.array([0.0, 1.0, 1.0, 1.0])
    for reduction in ("mean", "sum"):
        got, want = _both(
            sc.cross_entropy_with_grad, logits, target, weight=weight,
            reduction=reduction,
        )  # fmt: skip
        _same(got, want)
    got, _ = _both(sc.cross_entropy_with_grad, logits, target, weight=weight)
    assert np.isnan(float(got[0]))
    assert np.isnan(got[1].get()).all()


@pytest.mark.parametrize("fn", CE_FNS)
def test_cross_entropy_empty_batch(fn, index_path):
    for reduction in ("mean", "sum", "none"):
        for shape in ((0, 3), (2, 0, 3)):
            logits, target = np.zeros(shape), np.zeros(shape[:-1], np.int64)
            _same(*_both(getattr(sc, fn), logits, target, reduction=reduction))


def test_cross_entropy_of_one_row(index_path):
    """A 1-D logit vector and a 0-d target: a 0-d device loss."""
    got, want = _both(sc.cross_entropy_with_grad, _logits((6,)), np.array(4))
    _same(got, want)
    assert got[0].ndim == 0


def test_lists_and_scalars_are_converted():
    """Python lists and scalars are not arrays of another library: they go to the
    device, as ``cupy.asarray`` would put them."""
    logits = _logits((3, 4))
    got = sc.cross_entropy(
        fd.device_array(logits, DEV), [0, 3, 1], weight=[1.0, 2.0, 3.0, 4.0]
    )
    # the host side on the reference, as the device kernels are (the default host
    # backend may be numba, which rounds differently)
    want = sc.cross_entropy(
        logits, [0, 3, 1], weight=[1.0, 2.0, 3.0, 4.0], backend="numpy"
    )
    _same(got, want)
    row = logits[0]
    _same(
        sc.cross_entropy(fd.device_array(row, DEV), 2),
        sc.cross_entropy(row, 2, backend="numpy"),
    )


# -------------------------------------------------- linear cross-entropy

LCE_OPTIONS = [
    {},
    {"reduction": "none", "label_smoothing": 0.1},
    {"weight": "w", "ignore_index": 2, "reduction": "sum"},
    {"weight": "w0"},
]


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("chunk_size", [1, 3, 7, 64])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("options", LCE_OPTIONS, ids=lambda o: str(o) or "defaults")
@pytest.mark.parametrize(
    "fn", ["linear_cross_entropy", "linear_cross_entropy_with_grad"]
)
def test_linear_cross_entropy(fn, options, bias, chunk_size, dtype):
    n, d, c = 11, 4, 6
    x = _logits((n, d), dtype)
    w = _logits((c, d), dtype)
    target = RNG.integers(0, c, n)
    opts = dict(options)
    if opts.get("weight"):
        weight = RNG.uniform(0.5, 2.0, c)
        if opts["weight"] == "w0":
            weight[target] = 0.0  # every kept target weighs 0: NaN mean
        opts["weight"] = weight
    if bias:
        opts["linear_bias"] = _logits((c,), dtype)
    got, want = _both(getattr(sc, fn), x, w, target, chunk_size=chunk_size, **opts)
    _same(got, want, fn)


def test_linear_cross_entropy_default_chunks():
    """chunk_size=None takes the backend's hint (5 rows: several chunks here); the
    result matches the host's within rounding (other chunks, other sums)."""
    n, d, c = 23, 4, 6
    x, w = _logits((n, d)), _logits((c, d))
    target = RNG.integers(0, c, n)
    b = _logits((c,))
    got, want = _both(sc.linear_cross_entropy_with_grad, x, w, target, linear_bias=b)
    loss, grads = got
    assert loss.ndim == 0
    np.testing.assert_allclose(_on_device(loss), want[0], rtol=1e-13)
    for g, h in zip(grads, want[1], strict=True):
        np.testing.assert_allclose(_on_device(g), h, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("bias", [False, True])
def test_linear_cross_entropy_gradients_through_the_accumulate_hook(bias):
    """A backend's ``linear_grad_accumulate`` forms dW and db, once per chunk (the
    cupy backend's keeps float32 subnormals that CuPy's own kernels flush), also
    straight into out= arrays; the results are the host path's bits."""
    n, d, c = 13, 4, 6
    x, w = _logits((n, d)), _logits((c, d))
    target = RNG.integers(0, c, n)
    opts = {"chunk_size": 5, "linear_bias": _logits((c,)) if bias else None}
    calls = len(fd.backend.calls)
    got, want = _both(sc.linear_cross_entropy_with_grad, x, w, target, **opts)
    ran = fd.backend.calls[calls:]
    assert ran.count("linear_grad_accumulate") == 3, ran
    _same(got, want, "linear_cross_entropy_with_grad")
    outs = tuple(
        fd.device_array(np.full(s, 7.0), DEV) if s else None
        for s in ((n, d), (c, d), (c,) if bias else None)
    )
    dev_opts = {k: _to_dev(v) for k, v in opts.items()}
    loss, grads = sc.linear_cross_entropy_with_grad(
        _to_dev(x), _to_dev(w), _to_dev(target), out=outs, backend=NAME, **dev_opts
    )
    assert all(g is o for g, o in zip(grads, outs, strict=True) if o is not None)
    _same((loss, grads), want, "linear_cross_entropy_with_grad out=")


def test_optional_hooks_set_to_none_are_absent(monkeypatch):
    """An optional hook that is ``None`` on the backend (a class attribute is
    cheaper to find than a ``__getattr__`` that raises, backends/README.md) is
    absent to the core: the general path runs and gives the host path's bits."""
    monkeypatch.setattr(fd.backend, "cross_entropy_index_rows", None)
    monkeypatch.setattr(fd.backend, "linear_grad_accumulate", None)
    n, d, c = 13, 4, 6
    x, w = _logits((n, d)), _logits((c, d))
    target = RNG.integers(0, c, n)
    calls = len(fd.backend.calls)
    for fn in (sc.cross_entropy, sc.cross_entropy_with_grad):
        got, want = _both(fn, _logits((n, c)), target, label_smoothing=0.1)
        _same(got, want, fn.__name__)
    got, want = _both(sc.linear_cross_entropy_with_grad, x, w, target, chunk_size=5)
    _same(got, want, "linear_cross_entropy_with_grad")
    ran = set(fd.backend.calls[calls:])
    assert "cross_entropy_index_rows" not in ran, ran
    assert "linear_grad_accumulate" not in ran, ran
    assert "cross_entropy_rows" in ran or "cross_entropy_grad_rows" in ran, ran


def test_linear_cross_entropy_of_one_sample():
    d, c = 3, 4
    got, want = _both(
        sc.linear_cross_entropy_with_grad, _logits((d,)), _logits((c, d)), np.array(2)
    )
    _same(got, want)


def test_linear_cross_entropy_empty_batch():
    for fn in (sc.linear_cross_entropy, sc.linear_cross_entropy_with_grad):
        _same(*_both(fn, np.zeros((0, 3)), np.ones((4, 3)), np.zeros(0, np.int64)))


# ------------------------------------------------------------- bad input

BAD = {
    "target_too_large": (
        sc.cross_entropy,
        lambda: (_logits((2, 3, 5)), np.array([[0, 1, 2], [3, 9, 0]])),
        {},
    ),
    "target_negative": (
        sc.cross_entropy_grad,
        lambda: (_logits((2, 5)), np.array([0, -1])),
        {"ignore_index": 2},
    ),
    "target_uint8_too_large": (
        sc.cross_entropy,
        lambda: (_logits((3, 5)), np.array([0, 200, 4], np.uint8)),
        {"ignore_index": 0},
    ),
    "target_uint8_default_ignore_index": (
        sc.cross_entropy_with_grad,
        lambda: (_logits((3, 5)), np.array([0, 200, 4], np.uint8)),
        {},
    ),
    "target_int8_many_classes": (
        sc.cross_entropy,
        lambda: (_logits((3, 200)), np.array([0, -100, -3], np.int8)),
        {},
    ),
    "target_shape": (
        sc.cross_entropy,
        lambda: (_logits((2, 5)), np.zeros(3, np.int64)),
        {},
    ),
    "prob_target_shape": (
        sc.cross_entropy_with_grad,
        lambda: (_logits((2, 5)), np.full((2, 4), 0.25)),
        {},
    ),
    "prob_target_ignore_index": (
        sc.cross_entropy,
        lambda: (_logits((2, 5)), np.full((2, 5), 0.2)),
        {"ignore_index": 1},
    ),
    "target_dtype": (
        sc.cross_entropy,
        lambda: (_logits((2, 5)), np.array([True, False])),
        {},
    ),
    "reduction": (
        sc.cross_entropy,
        lambda: (_logits((2, 5)), np.array([0, 1])),
        {"reduction": "avg"},
    ),
    "label_smoothing": (
        sc.cross_entropy,
        lambda: (_logits((2, 5)), np.array([0, 1])),
        {"label_smoothing": 1.5},
    ),
    "weight_length": (
        sc.cross_entropy,
        lambda: (_logits((2, 5)), np.array([0, 1])),
        {"weight": np.ones(6)},
    ),
    "no_classes": (
        sc.cross_entropy,
        lambda: (np.zeros((2, 0)), np.zeros(2, np.int64)),
        {},
    ),
    "axis": (sc.softmax, lambda: (_logits((2, 5)),), {"axis": 2}),
    "axis_type": (sc.logsumexp, lambda: (_logits((2, 5)),), {"axis": 1.0}),
    "complex": (sc.log_softmax, lambda: (_logits((2, 5)) * 1j,), {}),
    "backward_shapes": (
        sc.softmax_backward,
        lambda: (_logits((2, 5)), _logits((2, 4))),
        {},
    ),
    "out_shape": (sc.softmax, lambda: (_logits((2, 5)),), {"out": np.zeros((2, 4))}),
    "out_dtype": (
        sc.log_softmax,
        lambda: (_logits((2, 5)),),
        {"out": np.zeros((2, 5), np.float32)},
    ),
    "features": (
        sc.linear_cross_entropy,
        lambda: (_logits((3, 4)), _logits((5, 3)), np.array([0, 1, 2])),
        {},
    ),
    "linear_weight_ndim": (
        sc.linear_cross_entropy_with_grad,
        lambda: (_logits((3, 4)), _logits((4,)), np.array([0, 1, 2])),
        {},
    ),
    "bias_length": (
        sc.linear_cross_entropy,
        lambda: (_logits((3, 4)), _logits((5, 4)), np.array([0, 1, 2])),
        {"linear_bias": np.zeros(4)},
    ),
    "linear_target": (
        sc.linear_cross_entropy_with_grad,
        lambda: (_logits((3, 4)), _logits((5, 4)), np.array([0, 7, 2])),
        {},
    ),
    "chunk_size": (
        sc.linear_cross_entropy,
        lambda: (_logits((3, 4)), _logits((5, 4)), np.array([0, 1, 2])),
        {"chunk_size": 0},
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_raises_as_on_the_host(case, index_path):
    """The same exception and the same message as for NumPy arrays, before any
    kernel runs (but the optional ``cross_entropy_index_rows``, which checks the
    targets and writes nothing then), with nothing written to ``out``."""
    fn, make, kwargs = BAD[case]
    args = make()
    with pytest.raises((ValueError, TypeError)) as host:
        fn(*args, backend="numpy", **kwargs)
    dev_kwargs = {k: _to_dev(v) for k, v in kwargs.items()}
    out = dev_kwargs.get("out")
    if out is not None:
        with fd.Device(DEV):
            out.fill(7.0)
    calls = len(fd.backend.calls)
    with pytest.raises(type(host.value)) as dev:
        fn(*[_to_dev(a) for a in args], backend=NAME, **dev_kwargs)
    assert str(dev.value) == str(host.value)
    # the backend's cross_entropy_index_rows checks class-index targets itself and
    # writes nothing for a bad one; no other kernel may have run
    ran = set(fd.backend.calls[calls:]) - {"cross_entropy_index_rows"}
    assert not ran, f"{ran} ran before the error"
    if out is not None:
        assert np.all(out.get() == 7.0), "out was written before the error"


# ----------------------------------------- one call, one kind of array

MIXED = {
    "target": (sc.cross_entropy, (_logits((3, 4)), np.array([0, 1, 3])), {}, 1),
    "prob_target": (
        sc.cross_entropy_grad,
        (_logits((3, 4)), np.full((3, 4), 0.25)),
        {},
        1,
    ),
    "weight": (
        sc.cross_entropy,
        (_logits((3, 4)), np.array([0, 1, 3])),
        {"weight": np.ones(4)},
        "weight",
    ),
    "probs": (sc.softmax_backward, (_logits((3, 4)), _logits((3, 4))), {}, 1),
    "log_probs": (sc.log_softmax_backward, (_logits((3, 4)), _logits((3, 4))), {}, 1),
    "linear_weight": (
        sc.linear_cross_entropy,
        (_logits((3, 4)), _logits((5, 4)), np.array([0, 1, 2])),
        {},
        1,
    ),
    "linear_bias": (
        sc.linear_cross_entropy_with_grad,
        (_logits((3, 4)), _logits((5, 4)), np.array([0, 1, 2])),
        {"linear_bias": np.zeros(5)},
        "linear_bias",
    ),
    "lce_target": (
        sc.linear_cross_entropy,
        (_logits((3, 4)), _logits((5, 4)), np.array([0, 1, 2])),
        {},
        2,
    ),
}


@pytest.mark.parametrize("host_side", ["primary_on_device", "primary_on_host"])
@pytest.mark.parametrize("case", list(MIXED))
def test_a_host_array_and_a_device_array_in_one_call_is_an_error(case, host_side):
    """DESIGN: an array the backend cannot take is a clear error, never a silent
    copy between host and device (CuPy refuses the same mix)."""
    fn, args, kwargs, odd = MIXED[case]
    on_dev = host_side == "primary_on_device"

    def place(key: Any, v: Any) -> Any:
        return _to_dev(v) if (key != odd) == on_dev else v

    args = [place(i, a) for i, a in enumerate(args)]
    kwargs = {k: place(k, v) for k, v in kwargs.items()}
    calls = len(fd.backend.calls)
    host_mod, dev_mod = "numpy.ndarray", "fakecupy.ndarray"
    got, want = (host_mod, dev_mod) if on_dev else (dev_mod, host_mod)
    with pytest.raises(TypeError, match=rf"is a {got}, .* on {want} arrays"):
        fn(*args, **kwargs)
    assert len(fd.backend.calls) == calls


def test_naming_a_backend_that_cannot_take_device_arrays_is_an_error():
    dx = fd.device_array(_logits(), DEV)
    with pytest.raises(TypeError, match=r"'numpy' cannot take an array of type "):
        sc.softmax(dx, backend="numpy")
    with sc.use_backend("numpy"), pytest.raises(TypeError, match=r"cannot take"):
        sc.logsumexp(dx)
    with pytest.raises(TypeError, match=r"'fakedev' cannot take an array of type "):
        sc.softmax(_logits(), backend=NAME)


def test_device_arrays_select_the_device_backend(monkeypatch):
    monkeypatch.setattr(_registry, "_default", None)
    monkeypatch.setattr(_registry, "_env_choice", None)  # as if $SOFTCORE_BACKEND unset
    dx = fd.device_array(_logits(), DEV)
    assert sc.get_backend(like=dx) is fd.backend
    assert sc.get_backend().name != NAME, "NumPy arrays must not go to fakedev"
    calls = len(fd.backend.calls)
    _on_device(sc.softmax(dx))
    assert fd.backend.calls[calls:] == ["softmax_rows"]


def test_float32_arithmetic_flushes_subnormals_as_cupy_does():
    """CuPy compiles its kernels with -ftz=true: float32 subnormals read or made by
    elementwise ops, reductions and conversions are zero; copies and matmul
    (cuBLAS) keep them. The fake does the same, so the core's device paths are
    checked against it."""
    tiny = np.float32(1e-40)  # subnormal: below 2^-126
    a = fd.device_array(np.array([tiny, -tiny, 1.0], np.float32), DEV)
    with fd.Device(DEV):
        assert _on_device(a + 0).tolist() == [0.0, -0.0, 1.0]
        assert np.signbit(_on_device(a * 1)[1])
        assert float(a[:2].sum()) == 0.0
        assert _on_device(a.astype(np.float64))[0] == 0.0
        big = fd.device_array(np.array([1e-40], np.float64), DEV)
        assert _on_device(big.astype(np.float32))[0] == 0.0
        assert _on_device(a.copy())[0] == tiny
        col = fd.device_array(np.ones((1, 1), np.float32), DEV)
        assert _on_device(fd.xp.matmul(a.reshape(3, 1), col))[0, 0] == tiny
        f64 = fd.device_array(np.array([1e-40], np.float64), DEV)
        assert _on_device(f64 + 0)[0] == 1e-40  # float64 is not flushed


@pytest.mark.parametrize("chunk_size", [1, 2, None])
def test_linear_cross_entropy_keeps_float32_subnormal_gradients(chunk_size):
    """dW and db of 1e-40 and less survive on device arrays (the accumulate hook;
    the core's own += and sum would flush them, as on a GPU)."""
    n = 4
    x = np.ones((n, 1), np.float32)
    w = np.array([[0.0], [-90.0], [-95.0], [-100.0], [0.0]], np.float32)
    b = np.zeros(5, np.float32)
    _, (_, dw, db) = sc.linear_cross_entropy_with_grad(
        *(_to_dev(a) for a in (x, w, np.zeros(n, np.int64))),
        linear_bias=_to_dev(b),
        chunk_size=chunk_size,
        backend=NAME,
    )
    z = w[:, 0].astype(np.float64)
    want = np.exp(z - np.log(np.exp(z).sum())) - (np.arange(5) == 0)
    for got in (_on_device(dw)[:, 0], _on_device(db)):
        assert (got[1:4] != 0).all(), got
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=n * 2.0**-150)


def test_device_arrays_are_not_numpy_arrays():
    """As CuPy's: NumPy cannot take them implicitly, nor they NumPy arrays."""
    dx = fd.device_array(_logits(), DEV)
    assert not isinstance(dx, np.ndarray)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        np.asarray(dx)
    with pytest.raises(TypeError, match="Unsupported type"):
        dx + np.ones(SHAPE)


# ------------------------------------------------------- the kit itself


def test_the_conformance_kit_passes_on_device_arrays():
    """The whole kit through the device paths (layouts made on the device, results
    brought back with .get()), as ``python -m softcore check`` runs it."""
    proc = subprocess.run(
        [
            sys.executable,
            str(HERE / "fake_device.py"),
            "--max-examples",
            str(KIT_EXAMPLES),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    start = out.find("softcore conformance kit:")
    verdict = out[start:] if start >= 0 else out[-6000:]
    assert proc.returncode == 0, f"the kit failed on {NAME!r}:\n{verdict}"
    assert "VERDICT: PASS" in out, verdict
