"""Layouts, empty batches, one class, and ``out=``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from softcore.testing import _cases
from softcore.testing._assert import assert_identical
from softcore.testing._cases import OPS, ops_of
from softcore.testing._check import check_against_reference
from softcore.testing._runtime import to_backend, to_host
from softcore.testing._strategies import FLOAT_DTYPES, draw_spec, kit_settings

# Each layout takes the array already on the backend's device (``xp``) and
# returns the same logical array in another memory layout there. Read-only and
# big-endian arrays exist only in NumPy (CuPy has neither flag).


def _noncontiguous(a: Any, xp: Any) -> Any:
    big = xp.zeros(tuple(2 * s + 1 for s in a.shape), a.dtype)
    view = big[tuple(slice(1, None, 2) for _ in a.shape)]
    view[...] = a
    return view


def _fortran(a: Any, xp: Any) -> Any:
    return xp.asfortranarray(a)


def _negative(a: Any, xp: Any) -> Any:
    rev = tuple(slice(None, None, -1) for _ in a.shape)
    return xp.ascontiguousarray(a[rev])[rev]


def _transposed(a: Any, xp: Any) -> Any:
    # same logical array, memory in reversed axis order (a transposed view)
    return xp.ascontiguousarray(a.T).T


def _readonly(a: Any, xp: Any) -> Any:
    b = a.copy()
    b.setflags(write=False)
    return b


def _big_endian(a: Any, xp: Any) -> Any:
    return a.astype(a.dtype.newbyteorder(">"))


LAYOUTS = {
    "noncontiguous": _noncontiguous,
    "fortran": _fortran,
    "transposed_view": _transposed,
    "negative_strides": _negative,
    "readonly": _readonly,
    "big_endian": _big_endian,
}
NUMPY_ONLY = {"readonly", "big_endian"}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@given(data=st.data())
@kit_settings(0.4)
def test_layouts(
    sc: Any, backend: Any, op: str, layout: str, data: st.DataObject
) -> None:
    """Non-contiguous, Fortran, transposed, negatively strided, read-only and
    big-endian inputs (every array argument; float32, float64 or float16) give
    bitwise the result of contiguous native copies. On a device backend the
    layouts are made on the device; the read-only and big-endian ones, which
    only NumPy has, are skipped there."""
    xp = backend.xp
    if xp is not np and layout in NUMPY_ONLY:
        pytest.skip(
            f"{layout} arrays exist only in NumPy; backend {backend.name!r} "
            f"computes on {getattr(xp, '__name__', xp)!r} arrays"
        )
    dtype = data.draw(st.sampled_from(["float32", "float64", "float16"]), label="dtype")
    spec = draw_spec(data, op)
    inputs = _cases.build(op, spec, dtype)
    plain = inputs.copy()
    fancy = inputs
    for k, a in inputs.arrays():
        b = LAYOUTS[layout](to_backend(backend, a), xp) if a.ndim else a
        assert np.array_equal(to_host(b), a, equal_nan=True)
        fancy = fancy.replace(k, b)
    want = OPS[op].call(sc, plain, backend)
    got = OPS[op].call(sc, fancy, backend)
    for name, g, w in zip(OPS[op].outputs, got, want, strict=True):
        if w is None:
            continue
        assert_identical(
            g,
            w,
            what=f"{op}[{backend.name}] {name} with {layout} inputs vs contiguous",
            **spec,
        )


def _emptied(spec: dict[str, Any], op: str, where: int) -> dict[str, Any]:
    spec = dict(spec)
    fam = OPS[op].family
    if fam == "linear":
        spec["N"] = 0
        return spec
    batch = list(spec["batch"]) or [1]
    batch[where % len(batch)] = 0
    spec["batch"] = tuple(batch)
    if fam in ("rows", "backward"):
        nd = len(batch) + 1
        spec["axis"] = min(max(spec["axis"], -nd), nd - 1)
        ax = spec["axis"] % nd
        spec["shape"] = tuple(batch[:ax]) + (spec["C"],) + tuple(batch[ax:])
    else:
        nd = len(batch) + 1
        spec["axis"] = min(max(spec["axis"], -nd), nd - 1)
    return spec


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@given(data=st.data())
@kit_settings(0.4)
def test_empty_batch(
    sc: Any, backend: Any, op: str, dtype: str, data: st.DataObject
) -> None:
    """A batch with a zero-length dimension gives empty results of the right shape
    (reductions: sum 0, mean NaN, as PyTorch)."""
    spec = draw_spec(data, op)
    spec = _emptied(spec, op, data.draw(st.integers(0, 3), label="empty_dim"))
    inputs = _cases.build(op, spec, dtype)
    check_against_reference(sc, backend, op, inputs, ctx=spec, record=False)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@given(data=st.data())
@kit_settings(0.4)
def test_single_class(
    sc: Any, backend: Any, op: str, dtype: str, data: st.DataObject
) -> None:
    """C == 1 works: softmax 1, log_softmax 0, logsumexp x, zero gradients."""
    spec = draw_spec(data, op, n_classes=1)
    inputs = _cases.build(op, spec, dtype)
    check_against_reference(sc, backend, op, inputs, ctx=spec, record=False)


def _drawn_on_backend(
    sc: Any, backend: Any, op: str, dtype: str, data: st.DataObject
) -> tuple[dict[str, Any], tuple[Any, ...], _cases.Inputs, list[Any], dict[str, Any]]:
    """A drawn case of ``op``: its spec, the results of a plain call (host
    arrays), and fresh copies of its inputs, with their arguments on the backend."""
    spec = draw_spec(data, op)
    inputs = _cases.build(op, spec, dtype)
    want = OPS[op].call(sc, inputs.copy(), backend)
    fresh = inputs.copy()
    args = [to_backend(backend, a) for a in fresh.args]
    kwargs = {k: to_backend(backend, v) for k, v in fresh.kwargs.items()}
    return spec, want, fresh, args, kwargs


@pytest.mark.parametrize("op", ops_of("rows", "ce", where=lambda s: s.has_out))
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("alias", [True, False], ids=["out_is_input", "out_separate"])
@given(data=st.data())
@kit_settings(0.5)
def test_out(
    sc: Any, backend: Any, op: str, dtype: str, alias: bool, data: st.DataObject
) -> None:
    """``out=`` is filled and returned; it may be the input itself (any axis). For
    the cross-entropy gradients ``out`` takes the gradient, and may be the logits."""
    spec, want, fresh, args, kwargs = _drawn_on_backend(sc, backend, op, dtype, data)
    x = args[fresh.primary]
    out = x if alias else to_backend(backend, np.full(fresh.x.shape, 7.0, dtype))
    res = OPS[op].function(sc)(*args, out=out, backend=backend.name, **kwargs)
    got = res[-1] if isinstance(res, tuple) else res  # the gradient comes last
    if got is not out:
        raise AssertionError(
            f"{op}[{backend.name}](out=...) did not return out itself ({spec})"
        )
    what = "out=input" if alias else "out=separate array"
    assert_identical(
        to_host(out),
        want[-1],
        what=f"{op}[{backend.name}] {what} vs a fresh result",
        **spec,
    )
    if isinstance(res, tuple):
        assert_identical(
            to_host(res[0]),
            want[0],
            what=f"{op}[{backend.name}] loss with {what} vs without",
            **spec,
        )


@pytest.mark.parametrize("op", ["linear_cross_entropy_with_grad"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("mode", ["separate", "input_reused", "some_none"])
@given(data=st.data())
@kit_settings(0.5)
def test_linear_out(
    sc: Any, backend: Any, op: str, dtype: str, mode: str, data: st.DataObject
) -> None:
    """``linear_cross_entropy_with_grad(..., out=(dX, dW, db))`` fills and returns
    the arrays given (``dX`` may be the input itself; None entries are
    allocated), with the same bits as a call without ``out``."""
    spec, want, _, args, kwargs = _drawn_on_backend(sc, backend, op, dtype, data)
    x, w = args[0], args[1]
    bias = kwargs.get("linear_bias")

    def filled(shape: tuple) -> Any:
        return to_backend(backend, np.full(shape, 7.0, dtype))

    out: list[Any] = [filled(x.shape), filled(w.shape), None]
    if bias is not None:
        out[2] = filled(bias.shape)
    if mode == "input_reused":
        out[0] = x
    elif mode == "some_none":
        out[0] = None
    res = OPS[op].function(sc)(*args, out=tuple(out), backend=backend.name, **kwargs)
    loss, grads = res
    names = ("d_input", "d_linear_weight", "d_linear_bias")
    for i, (o, g) in enumerate(zip(out, grads, strict=True)):
        if o is not None and g is not o:
            raise AssertionError(
                f"{op}[{backend.name}](out=..., {mode}) did not return out[{i}] "
                f"itself as {names[i]} ({spec})"
            )
    got = (to_host(loss),) + tuple(to_host(g) for g in grads)
    for name, g, w_ in zip(("loss",) + names, got, want, strict=True):
        if w_ is None:
            assert g is None, f"{op}[{backend.name}] {name}: expected None ({spec})"
            continue
        assert_identical(
            g, w_, what=f"{op}[{backend.name}] {name} with out= ({mode})", **spec
        )
