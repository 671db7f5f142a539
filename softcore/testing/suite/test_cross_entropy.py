"""Cross-entropy semantics: PyTorch itself, ignored rows, fused vs separate, and
linear cross-entropy against explicit logits and across chunk sizes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from softcore.testing import _cases
from softcore.testing._assert import assert_identical, assert_ulp
from softcore.testing._cases import OPS, ops_of
from softcore.testing._check import check_against_reference, result_dtype
from softcore.testing._strategies import FLOAT_DTYPES, draw_spec, kit_settings
from softcore.testing._tolerances import tolerance


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        pytest.skip(
            "torch is not installed: the comparison with PyTorch itself is skipped "
            "(the NumPy restatement of its formulas is still checked)"
        )
    return torch


def _torch_ce(
    torch: Any, inputs: _cases.Inputs, linear: bool
) -> tuple[np.ndarray, ...]:
    """PyTorch's loss and gradient(s) in float64 for the same inputs."""
    F = torch.nn.functional
    kw = {
        k: inputs.kwargs[k]
        for k in ("ignore_index", "reduction", "label_smoothing")
        if k in inputs.kwargs
    }
    if "weight" in inputs.kwargs:
        kw["weight"] = torch.tensor(np.asarray(inputs.kwargs["weight"], np.float64))
    if linear:
        x = torch.tensor(np.asarray(inputs.args[0], np.float64), requires_grad=True)
        w = torch.tensor(np.asarray(inputs.args[1], np.float64), requires_grad=True)
        bias = inputs.kwargs.get("linear_bias")
        b = (
            torch.tensor(np.asarray(bias, np.float64), requires_grad=True)
            if bias is not None
            else None
        )
        t = torch.tensor(np.asarray(inputs.args[2], np.int64))
        loss = F.cross_entropy(F.linear(x, w, b), t, **kw)
        loss.sum().backward() if loss.numel() else None
        grads = [x.grad, w.grad, b.grad if b is not None else None]
        return (loss.detach().numpy(),) + tuple(
            None if g is None else g.numpy() for g in grads
        )
    axis = inputs.kwargs.get("axis", -1)
    logits = np.asarray(inputs.args[0], np.float64)
    target = np.asarray(inputs.args[1])
    nd = logits.ndim
    dim = 0 if nd == 1 else 1  # PyTorch's class dimension
    z = np.ascontiguousarray(np.moveaxis(logits, axis, dim))
    if target.dtype.kind == "f":
        t = torch.tensor(
            np.ascontiguousarray(np.moveaxis(target.astype(np.float64), axis, dim))
        )
    else:
        t = torch.tensor(target.astype(np.int64))
    zt = torch.tensor(z, requires_grad=True)
    loss = F.cross_entropy(zt, t, **kw)
    if zt.numel():
        loss.sum().backward()
        grad = np.moveaxis(zt.grad.numpy(), dim, axis)
    else:
        grad = np.zeros(logits.shape)
    return loss.detach().numpy(), grad


@pytest.mark.parametrize(
    "op", ["cross_entropy_with_grad", "linear_cross_entropy_with_grad"]
)
@given(data=st.data())
@kit_settings()
def test_cross_entropy_matches_torch(
    sc: Any, backend: Any, op: str, data: st.DataObject
) -> None:
    """Loss and gradients equal torch.nn.functional.cross_entropy's (float64, every
    option), within the op's tolerance; PyTorch's gradient of reduction='none' is
    taken of the summed loss, as the contract says."""
    torch = _torch()
    spec = draw_spec(data, op, zero_weight=False)
    inputs = _cases.build(op, spec, "float64")
    got = OPS[op].call(sc, inputs, backend)
    want = _torch_ce(torch, inputs, OPS[op].family == "linear")
    refs = OPS[op].reference(inputs)
    for name, g, w, ref in zip(OPS[op].outputs, got, want, refs, strict=True):
        if ref is None:
            continue
        _, scale = ref
        assert_ulp(
            g,
            np.asarray(w, np.longdouble),
            scale,
            tol=tolerance(op, "float64"),
            op=op,
            output=f"{name} vs torch",
            backend=backend.name,
            dtype="float64",
            record=False,
            **spec,
        )


@pytest.mark.parametrize("op", ops_of("ce", "linear"))
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@given(data=st.data())
@kit_settings(0.4)
def test_all_ignored(
    sc: Any, backend: Any, op: str, dtype: str, data: st.DataObject
) -> None:
    """Every row ignored: mean loss NaN, sum 0, none all 0; gradients exactly zero."""
    spec = draw_spec(
        data,
        op,
        target="index",
        ignore_frac=1.0,
        ignore_index=-100,
        target_dtype="int64",
    )
    if OPS[op].family == "linear":
        spec["N"] = max(spec["N"], 1)
    else:
        spec["batch"] = tuple(max(b, 1) for b in spec["batch"])
    inputs = _cases.build(op, spec, dtype)
    got = check_against_reference(sc, backend, op, inputs, ctx=spec, record=False)
    for name, g in zip(OPS[op].outputs, got, strict=True):
        if g is None:
            continue
        if name == "loss":
            red = spec["reduction"]
            ok = np.all(np.isnan(g)) if red == "mean" else np.all(g == 0)
        else:
            ok = np.all(g == 0)
        if not ok:
            raise AssertionError(
                f"{op}[{backend.name}] {name} with every row ignored "
                f"(reduction={spec['reduction']}): expected "
                f"{'NaN' if name == 'loss' and spec['reduction'] == 'mean' else 0}, "
                f"received {g!r}"
            )


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@given(data=st.data())
@kit_settings(0.5)
def test_fused_matches_separate(
    sc: Any, backend: Any, dtype: str, data: st.DataObject
) -> None:
    """cross_entropy_with_grad returns what cross_entropy and cross_entropy_grad do,
    each within tolerance (the fused pass may round differently, not more)."""
    spec = draw_spec(data, "cross_entropy_with_grad")
    inputs = _cases.build("cross_entropy_with_grad", spec, dtype)
    loss, grad = OPS["cross_entropy_with_grad"].call(sc, inputs, backend)
    loss1 = OPS["cross_entropy"].call(sc, inputs, backend)[0]
    grad1 = OPS["cross_entropy_grad"].call(sc, inputs, backend)[0]
    p = _cases.ce_parts(inputs)
    rd = result_dtype(inputs)
    for name, a, b, scale in (
        ("loss", loss, loss1, p["loss_scale"]),
        ("grad", grad, grad1, p["grad_scale"]),
    ):
        assert_ulp(
            a,
            np.asarray(b, np.longdouble),
            scale,
            tol=2 * tolerance("cross_entropy_with_grad", rd),
            op="cross_entropy_with_grad",
            output=f"{name} vs separate op",
            backend=backend.name,
            dtype=rd,
            record=False,
            **spec,
        )


@pytest.mark.parametrize("op", ops_of("linear"))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@given(data=st.data())
@kit_settings(0.5)
def test_linear_matches_explicit_logits(
    sc: Any, backend: Any, op: str, dtype: str, data: st.DataObject
) -> None:
    """linear_cross_entropy(x, W, t, linear_bias=b) = cross_entropy(x @ W.T + b, t)
    (the backend's own cross_entropy on logits formed in long double)."""
    spec = draw_spec(data, op)
    inputs = _cases.build(op, spec, dtype)
    xin, wl, t = inputs.args
    b = inputs.kwargs.get("linear_bias")
    z = xin.astype(np.longdouble) @ wl.astype(np.longdouble).T
    if b is not None:
        z = z + b.astype(np.longdouble)
    ce_in = _cases.Inputs(
        [z.astype(dtype), t],
        {
            k: v
            for k, v in inputs.kwargs.items()
            if k in ("weight", "ignore_index", "reduction", "label_smoothing")
        },
        0,
        -1,
        1,
    )
    want = OPS["cross_entropy"].call(sc, ce_in, backend)[0]
    got = OPS[op].call(sc, inputs, backend)[0]
    (_, scale), *_ = OPS[op].reference(inputs)
    assert_ulp(
        got,
        np.asarray(want, np.longdouble),
        scale,
        tol=2 * tolerance(op, dtype),
        op=op,
        output="loss vs explicit logits",
        backend=backend.name,
        dtype=dtype,
        record=False,
        **spec,
    )


@pytest.mark.parametrize("op", ops_of("linear"))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@given(data=st.data())
@kit_settings(0.5)
def test_linear_chunking(
    sc: Any, backend: Any, op: str, dtype: str, data: st.DataObject
) -> None:
    """Every chunk_size (1, odd sizes, N, more than N) gives results of the same
    shape and dtype as chunk_size=None, each within tolerance of the reference (not
    bitwise: a matrix product may round differently for a different row count)."""
    spec = draw_spec(data, op, chunk_size=None)
    n = spec["N"]
    inputs = _cases.build(op, spec, dtype)
    base = OPS[op].call(sc, inputs, backend)
    for chunk in sorted({1, 2, 3, 7, max(n, 1), n + 5}):
        spec_c = {**spec, "chunk_size": chunk}
        inp = inputs.replace("chunk_size", chunk)
        got = check_against_reference(sc, backend, op, inp, ctx=spec_c, record=False)
        for name, g, b in zip(OPS[op].outputs, got, base, strict=True):
            if b is None:
                continue
            if g.shape != b.shape or g.dtype != b.dtype:
                raise AssertionError(
                    f"{op}[{backend.name}] {name}: chunk_size={chunk} gives "
                    "shape/dtype "
                    f"{g.shape}/{g.dtype}, chunk_size=None {b.shape}/{b.dtype}"
                )


@pytest.mark.parametrize("op", ops_of("ce"))
@given(data=st.data())
@kit_settings(0.3)
def test_repeatable(sc: Any, backend: Any, op: str, data: st.DataObject) -> None:
    """The same call twice gives bitwise the same results."""
    spec = draw_spec(data, op)
    inputs = _cases.build(op, spec, "float32")
    a = OPS[op].call(sc, inputs, backend)
    b = OPS[op].call(sc, inputs, backend)
    for name, x, y in zip(OPS[op].outputs, a, b, strict=True):
        assert_identical(
            x, y, what=f"{op}[{backend.name}] {name}: second call vs first", **spec
        )


@pytest.mark.parametrize("op", ops_of("ce"))
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_zero_total_weight(
    sc: Any, backend: Any, op: str, label_smoothing: float
) -> None:
    """reduction='mean' whose kept rows all target zero-weight classes: the
    normaliser is 0, so (as PyTorch 2.13 computes it: the NLL part is 0/0) the loss
    is NaN and so is the gradient of every kept row; ignored rows stay exactly 0."""
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((3, 4))
    target = np.array([0, 0, -100])
    weight = np.array([0.0, 1.0, 1.0, 1.0])
    inputs = _cases.Inputs(
        [logits, target],
        {"weight": weight, "label_smoothing": label_smoothing, "reduction": "mean"},
        0,
        -1,
        1,
    )
    got = dict(zip(OPS[op].outputs, OPS[op].call(sc, inputs, backend), strict=True))
    where = (
        f"{op}[{backend.name}] (targets {target.tolist()}, weight {weight.tolist()})"
    )
    if "loss" in got and not np.isnan(got["loss"]):
        raise AssertionError(f"{where}: expected loss nan, received {got['loss']!r}")
    if "grad" in got:
        g = got["grad"]
        if not (np.all(np.isnan(g[:2])) and np.all(g[2] == 0)):
            raise AssertionError(
                f"{where}: expected gradient rows 0-1 nan (0/0) and row 2 zero, "
                f"received {g.tolist()!r}"
            )
