"""bfloat16 (ml_dtypes' NumPy dtype, as JAX hands its arrays over): computed in
float32 and returned as bfloat16, as float16 is. The conformance kit's
``bfloat16_is_float32_rounded`` checks every op against the float32 result
rounded; these check the API around it: dtypes of results, ``out=``, mixed
dtypes, targets and weights, and that other such dtypes stay refused."""

from __future__ import annotations

import numpy as np
import pytest

import softcore as sc

ml_dtypes = pytest.importorskip(
    "ml_dtypes", reason="ml_dtypes (bfloat16's NumPy dtype) is not installed"
)
BF16 = np.dtype(ml_dtypes.bfloat16)
BACKENDS = [b.name for b in sc.list_backends() if b.available and b.name != "cupy"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def _bf16(rng, shape, scale=3.0):
    return (rng.standard_normal(shape) * scale).astype(BF16)


def test_results_are_bfloat16(rng, backend):
    x = _bf16(rng, (5, 7))
    t = rng.integers(0, 7, 5)
    for f in (sc.softmax, sc.log_softmax, sc.logsumexp, sc.softmax_jacobian):
        assert f(x, backend=backend).dtype == BF16, f.__name__
    p = sc.softmax(x, backend=backend)
    assert sc.softmax_backward(x, p, backend=backend).dtype == BF16
    loss, grad = sc.cross_entropy_with_grad(x, t, backend=backend)
    assert isinstance(loss, ml_dtypes.bfloat16)  # a scalar, as float16's is
    assert grad.dtype == BF16
    rows = sc.cross_entropy(x, t, reduction="none", backend=backend)
    assert rows.dtype == BF16
    assert rows.shape == (5,)


def test_softmax_is_the_float32_softmax_rounded_once(rng, backend):
    """Against an independent float64 softmax of the same values: the float32
    result rounded to bfloat16 is within half a bfloat16 ULP of it, plus the
    float32 result's own error (so a result rounded twice, or computed in
    bfloat16, shows)."""
    x = _bf16(rng, (64, 33))
    got = sc.softmax(x, backend=backend).astype(np.float64)
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(axis=1, keepdims=True))
    want = e / e.sum(axis=1, keepdims=True)
    ulp = np.spacing(want.astype(BF16).astype(np.float32)).astype(np.float64) * 2**16
    assert (np.abs(got - want) <= 0.5 * ulp + 4 * 2**-24 * want).all()


def test_out_takes_bfloat16_and_refuses_other_dtypes(rng, backend):
    x = _bf16(rng, (4, 6))
    out = np.empty_like(x)
    assert sc.log_softmax(x, out=out, backend=backend) is out
    np.testing.assert_array_equal(
        out.astype(np.float32), sc.log_softmax(x, backend=backend).astype(np.float32)
    )
    g = np.empty_like(x)
    t = rng.integers(0, 6, 4)
    _, grad = sc.cross_entropy_with_grad(x, t, out=g, backend=backend)
    assert grad is g
    with pytest.raises(TypeError, match="bfloat16"):
        sc.softmax(x, out=np.empty((4, 6), np.float32), backend=backend)
    with pytest.raises(TypeError, match="bfloat16"):
        sc.softmax(x.astype(np.float32), out=out, backend=backend)


def test_probability_targets_and_class_weights_may_be_bfloat16(rng, backend):
    x = _bf16(rng, (8, 5))
    p = sc.softmax(_bf16(rng, (8, 5)), backend=backend)
    w = np.array([1, 0.5, 2, 1, 0.25]).astype(BF16)
    got = sc.cross_entropy(x, p, weight=w, backend=backend)
    want = sc.cross_entropy(
        x.astype(np.float32),
        p.astype(np.float32),
        weight=w.astype(np.float64),
        backend=backend,
    )
    assert isinstance(got, ml_dtypes.bfloat16)
    assert abs(float(got) - float(want)) <= 2**-8 * abs(float(want))  # half an ULP
    t = rng.integers(0, 5, 8)
    got_i = sc.cross_entropy(x, t, weight=w, backend=backend)
    want_i = sc.cross_entropy(x, t, weight=w.astype(np.float32), backend=backend)
    assert got_i == np.asarray(want_i).astype(BF16)


def test_linear_cross_entropy_promotes_as_numpy(rng, backend):
    """bfloat16 with float32 gives float32 (NumPy's promotion with ml_dtypes),
    bfloat16 throughout gives bfloat16 gradients of the float32 computation."""
    x, w = _bf16(rng, (6, 4), 1.0), _bf16(rng, (5, 4), 1.0)
    t = rng.integers(0, 5, 6)
    loss, (dx, dw, db) = sc.linear_cross_entropy_with_grad(x, w, t, backend=backend)
    assert isinstance(loss, ml_dtypes.bfloat16)
    assert (dx.dtype, dw.dtype, db) == (BF16, BF16, None)
    f32 = sc.linear_cross_entropy_with_grad(
        x.astype(np.float32), w.astype(np.float32), t, backend=backend
    )
    np.testing.assert_array_equal(dx, f32[1][0].astype(BF16))
    np.testing.assert_array_equal(dw, f32[1][1].astype(BF16))
    mixed, (dx2, dw2, _) = sc.linear_cross_entropy_with_grad(
        x, w.astype(np.float32), t, backend=backend
    )
    assert (np.asarray(mixed).dtype, dx2.dtype, dw2.dtype) == (
        np.float32,
        np.float32,
        np.float32,
    )


def test_other_ml_dtypes_stay_refused():
    """Only bfloat16 is taken: ml_dtypes' float8 and int4 types and plain void
    stay a TypeError naming the dtype and what is taken."""
    for dt in (ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2, ml_dtypes.int4, "V2"):
        with pytest.raises(TypeError, match=f"dtype {np.dtype(dt)}; expected"):
            sc.softmax(np.zeros((2, 3), dt))
