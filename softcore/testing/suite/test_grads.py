"""Gradients: vector-Jacobian products against the explicit Jacobian, and every
derivative against central finite differences of the backend's own forward op."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from softcore.testing import _cases, _oracle
from softcore.testing._assert import assert_ulp
from softcore.testing._cases import OPS, Inputs, ops_of
from softcore.testing._strategies import draw_spec, kit_settings
from softcore.testing._tolerances import tolerance

FD_RTOL = 1e-6
"""Central differences in float64 with step 1e-5 * max(1, |x|): truncation ~h^2 and
rounding ~eps/h are both below 1e-9 relative for these smooth, O(1)-scaled inputs;
1e-6 of the gradient's largest magnitude leaves a thousandfold margin and still
catches any formula error (a wrong sign or a missing term is O(1))."""


def _fd(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """d f / d x by central differences: shape ``f.shape + x.shape``."""
    x = np.array(x, dtype=np.float64)
    f0 = np.asarray(f(x), dtype=np.float64)
    out = np.zeros(f0.shape + x.shape)
    for k in np.ndindex(*x.shape):
        h = 1e-5 * max(1.0, abs(x[k]))
        xp, xm = x.copy(), x.copy()
        xp[k] += h
        xm[k] -= h
        out[(...,) + k] = (
            np.asarray(f(xp), np.float64) - np.asarray(f(xm), np.float64)
        ) / (2 * h)
    return out


def _assert_fd(got: np.ndarray, fd: np.ndarray, *, what: str, **ctx: Any) -> None:
    got = np.asarray(got, np.float64)
    if got.shape != fd.shape:
        raise AssertionError(
            f"{what}: shape {got.shape}, finite differences {fd.shape}"
        )
    if got.size == 0:
        return
    # a gradient that is exactly 0 (C == 1) is computed as rounding noise: floor the
    # scale at 1e-3, far below any term a formula error would add for O(1) inputs
    scale = max(float(np.abs(fd).max()), 1e-3)
    err = np.abs(got - fd)
    worst = float(err.max())
    if not worst <= FD_RTOL * scale:
        idx = np.unravel_index(int(np.argmax(err)), err.shape)
        raise AssertionError(
            f"{what} disagrees with central finite differences ({ctx}): max |error| "
            f"{worst:.3g} > {FD_RTOL:g} * {scale:.3g} at index {list(map(int, idx))}: "
            f"finite differences {fd[idx]!r}, received {got[idx]!r}"
        )


def _small(data: st.DataObject, op: str, **fixed: Any) -> dict[str, Any]:
    spec = draw_spec(data, op, max_c=6, regimes=("normal", "ties", "dominant"), **fixed)
    return spec


def _finite_loss(sc: Any, backend: Any, op: str, inputs: Inputs) -> Inputs:
    """The same inputs with reduction='sum' where every row is ignored (mean: NaN)."""
    loss_op = "cross_entropy" if OPS[op].family == "ce" else "linear_cross_entropy"
    loss = OPS[loss_op].call(sc, inputs, backend)[0]
    if np.all(np.isfinite(loss)):
        return inputs
    return inputs.replace("reduction", "sum")


@pytest.mark.parametrize("op", ["softmax_jacobian", "log_softmax_jacobian"])
@given(data=st.data())
@kit_settings(0.4)
def test_jacobian_finite_differences(
    sc: Any, backend: Any, op: str, data: st.DataObject
) -> None:
    """softmax_jacobian / log_softmax_jacobian are the derivatives of softmax /
    log_softmax (central differences, float64)."""
    rows = data.draw(st.integers(1, 3), label="rows")
    c = data.draw(st.integers(1, 6), label="C")
    x = (
        np.random.default_rng(
            data.draw(st.integers(0, 2**31), label="seed")
        ).standard_normal((rows, c))
        * 2
    )
    fwd = OPS[op.removesuffix("_jacobian")].function(sc)
    xp = backend.xp

    def f(z: np.ndarray) -> np.ndarray:
        return np.asarray(_cases.to_host(fwd(xp.asarray(z), backend=backend.name)))

    fd = _fd(f, x)  # (rows, C, rows, C)
    want = np.stack([fd[r, :, r, :] for r in range(rows)])
    got = _cases.to_host(OPS[op].function(sc)(xp.asarray(x), backend=backend.name))
    _assert_fd(got, want, what=f"{op}[{backend.name}]", x=x.tolist())


@pytest.mark.parametrize("op", ops_of("backward"))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@given(data=st.data())
@kit_settings(0.5)
def test_backward_is_vector_jacobian_product(
    sc: Any, backend: Any, op: str, dtype: str, data: st.DataObject
) -> None:
    """softmax_backward(g, softmax(x)) = g . softmax_jacobian(x), and likewise for
    log_softmax (the backend's own Jacobian, contracted here explicitly)."""
    spec = draw_spec(data, op, max_c=12)
    axis = spec["axis"]
    rng = np.random.default_rng(spec["seed"])
    x = _cases._values(rng, spec["shape"], spec["regime"], spec["C"])
    x = _cases._cast(x, dtype)
    g = _cases._cast(rng.standard_normal(spec["shape"]), dtype)
    fwd = op.removesuffix("_backward")
    xp = backend.xp
    y = OPS[fwd].function(sc)(xp.asarray(x), axis=axis, backend=backend.name)
    jac = _cases.to_host(
        OPS[fwd + "_jacobian"].function(sc)(
            xp.asarray(x), axis=axis, backend=backend.name
        )
    )
    got = _cases.to_host(
        OPS[op].function(sc)(xp.asarray(g), y, axis=axis, backend=backend.name)
    )
    gl = np.moveaxis(g, axis, -1).astype(np.longdouble)
    jl = jac.astype(np.longdouble)
    want = np.moveaxis(np.einsum("...i,...ij->...j", gl, jl), -1, axis)
    # the magnitudes of the contraction, the op's own metric on its rounded second
    # argument (1 - p is ill-conditioned in a rounded p), and the contraction of the
    # Jacobian's own metric: its tolerance allows errors scaled by exp's condition
    # number (|log p|), which |J| alone does not carry (a Jacobian with p's argument
    # rounded, within that tolerance, was 39 ulps from g.J on |J| alone)
    ((_, own),) = getattr(_oracle, op)(gl, np.moveaxis(_cases.to_host(y), axis, -1))
    terms = np.einsum("...i,...ij->...j", np.abs(gl), np.abs(jl))
    ((_, jscale),) = getattr(_oracle, fwd + "_jacobian")(np.moveaxis(x, axis, -1))
    jterms = np.einsum("...i,...ij->...j", np.abs(gl), jscale)
    scale = np.moveaxis(np.maximum(np.maximum(terms, own), jterms), -1, axis)
    # two computations, each within the op's tolerance of the exact value
    assert_ulp(
        got,
        want,
        scale,
        tol=2 * tolerance(op, dtype),
        op=op,
        output="vs g.J",
        backend=backend.name,
        dtype=dtype,
        record=False,
        **spec,
    )


def _ce_loss_fn(
    sc: Any, backend: Any, op: str, inputs: Inputs, wrt: str | int
) -> Callable[[np.ndarray], Any]:
    loss_op = "cross_entropy" if OPS[op].family == "ce" else "linear_cross_entropy"

    def f(z: np.ndarray) -> Any:
        r = OPS[loss_op].call(sc, inputs.replace(wrt, z), backend)[0]
        return np.sum(r)  # reduction="none": the gradient is of the summed loss

    return f


@pytest.mark.parametrize("op", ["cross_entropy_grad", "cross_entropy_with_grad"])
@given(data=st.data())
@kit_settings(0.5)
def test_cross_entropy_grad_finite_differences(
    sc: Any, backend: Any, op: str, data: st.DataObject
) -> None:
    """cross_entropy_grad (and the fused op's gradient) is the derivative of
    cross_entropy for every option (for reduction='none', of the summed loss)."""
    spec = _small(data, op, zero_weight=False)
    inputs = _finite_loss(sc, backend, op, _cases.build(op, spec, "float64"))
    fd = _fd(_ce_loss_fn(sc, backend, op, inputs, 0), inputs.x)
    got = OPS[op].call(sc, inputs, backend)[-1]
    _assert_fd(got, fd, what=f"{op}[{backend.name}] gradient", **spec)


@pytest.mark.parametrize("wrt", ["input", "linear_weight", "linear_bias"])
@given(data=st.data())
@kit_settings(0.4)
def test_linear_cross_entropy_grad_finite_differences(
    sc: Any, backend: Any, wrt: str, data: st.DataObject
) -> None:
    """linear_cross_entropy_with_grad's d_input, d_linear_weight and d_linear_bias are
    the derivatives of linear_cross_entropy."""
    op = "linear_cross_entropy_with_grad"
    spec = _small(data, op, bias=True, zero_weight=False)
    spec["N"], spec["D"] = min(spec["N"], 5), min(spec["D"], 4)
    inputs = _finite_loss(sc, backend, op, _cases.build(op, spec, "float64"))
    key: str | int = {"input": 0, "linear_weight": 1, "linear_bias": "linear_bias"}[wrt]
    x0 = inputs.args[key] if isinstance(key, int) else inputs.kwargs[key]
    fd = _fd(_ce_loss_fn(sc, backend, op, inputs, key), x0)
    got = OPS[op].call(sc, inputs, backend)[
        1 + ["input", "linear_weight", "linear_bias"].index(wrt)
    ]
    _assert_fd(got, fd, what=f"{op}[{backend.name}] d_{wrt}", **spec)
