"""The fused small class-index loss with its gradient
(``cross_entropy_index_grad_sum``) against the core's general path, which runs
when the backend offers no such kernel, and against the float64 formula.

Both run the same serial row kernel on the same per-row weights, so the
gradients are the same bits wherever the gradient's scale is: always for a sum,
and for a mean without class weights (the normaliser then counts rows). With
class weights the fused kernel sums the mean's normaliser in row order, NumPy
pairwise, so the scale may differ in its last bit. The loss is the fused loss
alone's (``cross_entropy``), to the bit: both sum the same row losses in row
order.
"""

import numpy as np
import pytest

import softcore as sc
from softcore_numba import _ops
from softcore_numba import backend as nb


@pytest.fixture
def spy(spy_on):
    """Record what the fused gradient kernel returned, call by call."""
    return spy_on("cross_entropy_index_grad_sum")


def _general(monkeypatch, *args, **kw):
    with monkeypatch.context() as m:
        m.setattr(nb, "cross_entropy_index_grad_sum", None, raising=False)
        return sc.cross_entropy_with_grad(*args, backend="numba", **kw)


def _cases(rng, n, c):
    t = rng.integers(0, c, n)
    ign = np.where(rng.uniform(size=n) < 0.2, -100, t)
    w = rng.uniform(0.5, 2.0, c)
    wneg = rng.uniform(-1.0, 2.0, c)
    wneg[min(1, c - 1)] = 0.0
    zero0 = np.where(np.arange(c) == 0, 0.0, 1.0)
    return [
        (t, {}),
        (ign, {}),
        (t, {"ignore_index": min(3, c - 1)}),
        (t, {"label_smoothing": 0.2}),
        (ign, {"label_smoothing": 1.0, "reduction": "sum"}),
        (t, {"weight": w}),
        (ign, {"weight": wneg, "reduction": "sum"}),
        (ign, {"weight": w, "label_smoothing": 0.2}),
        (np.full(n, -100), {}),  # all ignored: NaN mean, a zero gradient
        (np.full(n, -100), {"reduction": "sum"}),
        (np.zeros(n, np.int64), {"weight": zero0}),  # no weight: NaN rows
        (np.where(ign == -100, -100, 0), {"weight": zero0}),  # NaN rows and 0
    ]


def _scale_bound(x, t, kw):
    """How far a weighted mean's gradients may move when its normaliser
    (positive weights: ``norm = sum w_y``) is summed in another order: each
    term of an element, ``gs ((a + b W) p + b w_j + a [j = y])`` with ``gs = 1 /
    norm``, by the sums' relative difference, at most ``n eps64``."""
    n, c = x.shape
    eps = kw.get("label_smoothing", 0.0)
    w = kw["weight"]
    keep = t != kw.get("ignore_index", -100)
    tk = np.where(keep, t, 0)
    a = w[tk] * keep * (1 - eps)
    b = keep * eps / c
    z = x.astype(np.float64)
    with np.errstate(all="ignore"):
        e = np.exp(z - z.max(-1, keepdims=True))
        p = e / e.sum(-1, keepdims=True)
    norm = (w[tk] * keep).sum()
    if norm == 0:  # a zero scale on either path: no slack
        return np.zeros_like(z)
    terms = (a + b * w.sum())[:, None] * p + b[:, None] * w + a[:, None]
    return 4 * n * np.finfo(np.float64).eps * terms / norm


def _same(a, b):
    return a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, "bfloat16"])
# short rows (tiles; float32 from CE_SHORT_GROUPED_C grouped), rows of SHORT_C
# or more to SMALL_GROUP_ROW_BYTES (grouped), and wider ones a row at a time
@pytest.mark.parametrize("c", [1, 10, 40, 64, 100, 600])
def test_fused_grad_is_the_general_paths(dtype, c, rng, spy, monkeypatch):
    # 16-bit logits go widened to float32, their gradient rounded: the bits of
    # the general path's own 16-bit rows (float32's rounded)
    if dtype == "bfloat16":
        dtype = pytest.importorskip(
            "ml_dtypes", reason="ml_dtypes (bfloat16's NumPy dtype) is not installed"
        ).bfloat16
    n = 37
    x = (rng.standard_normal((n, c)) * 3).astype(dtype)
    x[4, 0] = np.nan  # a NaN row
    x[5, : (c + 1) // 2] = -np.inf  # -inf entries in a finite row (or its only one)
    for t, kw in _cases(rng, n, c):
        del spy[:]
        loss, grad = sc.cross_entropy_with_grad(x, t, backend="numba", **kw)
        assert len(spy) == 1
        assert spy[0] is not None
        assert spy[0][0] == -1
        # the loss is the loss alone's, bitwise
        assert _same(loss, sc.cross_entropy(x, t, backend="numba", **kw)), kw
        assert _same(grad, sc.cross_entropy_grad(x, t, backend="numba", **kw)), kw
        want_loss, want = _general(monkeypatch, x, t, **kw)
        assert type(loss) is type(want_loss)
        assert grad.dtype == want.dtype
        assert grad.shape == want.shape
        if "weight" not in kw or kw.get("reduction") == "sum":
            assert _same(grad, want), kw
        else:  # the normaliser summed in another order: the scale's last bits
            np.testing.assert_array_equal(np.isnan(grad), np.isnan(want))
            g, w = grad.astype(np.float64), want.astype(np.float64)
            ulp = np.spacing(np.abs(np.where(np.isnan(want), 0, want)))
            tol = _scale_bound(x, t, kw) + 2 * ulp.astype(np.float64)
            ok = np.isnan(w) | (g == w) | (np.abs(g - w) <= tol)
            assert ok.all(), (kw, np.abs(g - w)[~ok], tol[~ok])
        if np.isnan(want_loss):  # which NaN (its sign) a sum keeps is the compiler's
            assert np.isnan(loss), (kw, loss, want_loss)
        elif np.isinf(want_loss):
            assert _same(loss, want_loss), (kw, loss, want_loss)
        else:  # as the loss alone: the totals summed by other code (Python's sum)
            rows = _general(monkeypatch, x, t, **{**kw, "reduction": "none"})[0]
            finite = np.abs(rows[np.isfinite(rows)]).astype(np.float64).sum()
            bound = 4 * n * np.finfo(np.float64).eps * finite
            bound += float(np.spacing(np.abs(want_loss)))
            assert abs(float(loss) - float(want_loss)) <= bound, (kw, loss)


def test_fused_grad_is_the_float64_formula(rng, spy):
    # independently of the general path: the mean over kept rows of
    # w_y ((1-eps)(p - onehot_y) + eps/C (W p - w)) / w_y-sum
    n, c = 50, 12
    x = rng.standard_normal((n, c))
    t = np.where(rng.uniform(size=n) < 0.2, -100, rng.integers(0, c, n))
    w = rng.uniform(0.5, 2.0, c)
    eps = 0.1
    loss, grad = sc.cross_entropy_with_grad(
        x, t, weight=w, label_smoothing=eps, backend="numba"
    )
    assert spy[-1] is not None
    keep = t != -100
    tk = np.where(keep, t, 0)
    e = np.exp(x - x.max(-1, keepdims=True))
    p = e / e.sum(-1, keepdims=True)
    logp = np.log(p)
    wy = w[tk] * keep
    onehot = np.eye(c)[tk]
    rows = -(
        wy * (1 - eps) * logp[np.arange(n), tk] + keep * eps / c * (w * logp).sum(-1)
    )
    g = (wy * (1 - eps))[:, None] * (p - onehot) + (keep * eps / c)[:, None] * (
        w.sum() * p - w
    )
    np.testing.assert_allclose(loss, rows.sum() / wy.sum(), rtol=1e-13)
    np.testing.assert_allclose(grad, g / wy.sum(), rtol=1e-12, atol=1e-17)


def test_fused_grad_into_out_and_in_place(rng, spy):
    n, c = 24, 16
    x = rng.standard_normal((n, c)).astype(np.float32)
    t = rng.integers(0, c, n)
    t[2] = -100
    loss, want = sc.cross_entropy_with_grad(x, t, backend="numba")
    outs = {
        "fresh": np.empty_like(x),
        "fortran": np.asfortranarray(np.empty_like(x)),  # through a temporary
        "strided": np.empty((n, 2 * c), np.float32)[:, ::2],
    }
    for name, out in outs.items():
        del spy[:]
        got_loss, got = sc.cross_entropy_with_grad(x, t, out=out, backend="numba")
        assert got is out, name
        assert len(spy) == 1, name
        assert spy[0] is not None, name
        assert _same(np.ascontiguousarray(got), want), name
        assert _same(got_loss, loss), name
    xi = x.copy()
    del spy[:]
    got_loss, got = sc.cross_entropy_with_grad(xi, t, out=xi, backend="numba")
    assert got is xi
    assert len(spy) == 1
    assert _same(xi, want)
    assert _same(got_loss, loss)
    # an out that shares the class weights' memory: a temporary, the same bits
    buf = np.empty(n * c + c)
    w = buf[n * c :]
    w[:] = rng.uniform(0.5, 2.0, c)
    x64 = x.astype(np.float64)
    want_w = sc.cross_entropy_grad(x64, t, weight=w.copy(), backend="numba")
    out = buf[: n * c].reshape(n, c)
    got = sc.cross_entropy_grad(x64, t, weight=w, out=out, backend="numba")
    assert got is out
    assert _same(out, want_w)
    # the class axis elsewhere: the rows moved, the same bits moved back
    x3 = np.ascontiguousarray(np.moveaxis(x.reshape(4, 6, c), 2, 1))  # (4, c, 6)
    t3 = t.reshape(4, 6)
    del spy[:]
    got_loss, got = sc.cross_entropy_with_grad(x3, t3, axis=1, backend="numba")
    assert len(spy) == 1
    assert spy[0] is not None
    assert _same(np.ascontiguousarray(np.moveaxis(got, 1, 2)).reshape(n, c), want)
    assert _same(got_loss, loss)


@pytest.mark.parametrize("in_place", [False, True])
def test_fused_grad_bad_target_writes_nothing(in_place, rng, spy, monkeypatch):
    n, c = 8, 10
    x = rng.standard_normal((n, c))
    t = rng.integers(0, c, n)
    t[5] = 10
    out = x if in_place else np.full_like(x, 7.0)
    before = out.copy()
    with pytest.raises(ValueError, match="outside") as fused:
        sc.cross_entropy_with_grad(x, t, out=out, backend="numba")
    assert spy[-1][0] == 5  # the fused kernel found it
    assert _same(out, before)
    with pytest.raises(ValueError, match="outside") as general:
        _general(monkeypatch, x, t, out=out)
    assert str(fused.value) == str(general.value)
    with pytest.raises(ValueError, match="outside"):
        sc.cross_entropy_grad(x, t, out=out, backend="numba")
    assert _same(out, before)


def test_other_calls_take_the_general_path(rng, spy, spy_on, monkeypatch):
    c = 10
    x = rng.standard_normal((8, c))
    t = rng.integers(0, c, 8)
    probs = np.full((8, c), 1.0 / c)
    others = [
        (x, t, {"reduction": "none"}),
        (x, t.astype(np.uint64), {}),  # int64 cannot hold every uint64
        (x, probs, {}),  # probability targets
    ]
    for xi, ti, kw in others:
        got = sc.cross_entropy_with_grad(xi, ti, backend="numba", **kw)
        assert spy == [], kw
        want = _general(monkeypatch, xi, ti, **kw)
        assert _same(got[0], want[0]), kw
        assert _same(got[1], want[1]), kw
    # the gradient alone of 16-bit logits: their own rows (faster there)
    h = x.astype(np.float16)
    got = sc.cross_entropy_grad(h, t, backend="numba")
    assert spy == []
    with monkeypatch.context() as m:
        m.setattr(nb, "cross_entropy_index_grad_sum", None, raising=False)
        assert _same(got, sc.cross_entropy_grad(h, t, backend="numba"))
    from softcore import _api

    monkeypatch.setattr(_api, "_FUSED_MAX", 8 * c - 1)  # past the core's limit
    sc.cross_entropy_with_grad(x, t, backend="numba")
    assert spy == []
    monkeypatch.undo()
    spy_again = spy_on("cross_entropy_index_grad_sum")
    monkeypatch.setattr(_ops, "SERIAL_MAX", 40)  # numba's own limit lower
    out = np.full_like(x, 7.0)
    loss, got = sc.cross_entropy_with_grad(x, t, out=out, backend="numba")
    assert spy_again == [None]  # asked once, declined, nothing written
    want = _general(monkeypatch, x, t)
    assert _same(got, want[1])
    assert _same(loss, want[0])


def _linear_general(monkeypatch, *args, **kw):
    with monkeypatch.context() as m:
        m.setattr(nb, "cross_entropy_index_grad_sum", None, raising=False)
        return sc.linear_cross_entropy_with_grad(*args, backend="numba", **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize(("n", "d", "c"), [(40, 16, 12), (37, 8, 70), (5, 3, 1)])
def test_fused_linear_grads_are_the_general_paths(
    dtype, n, d, c, rng, spy, monkeypatch
):
    # the logits in one product, their gradient from the fused kernel, then the
    # general path's products for its one chunk: the same bits (the scale the
    # same: no class weights with a mean), the loss the loss alone's
    x = rng.standard_normal((n, d)).astype(dtype)
    w = rng.standard_normal((c, d)).astype(dtype)
    b = rng.standard_normal(c).astype(dtype)
    t = rng.integers(0, c, n)
    ign = np.where(rng.uniform(size=n) < 0.2, -100, t)
    cases = [
        (t, {}),
        (ign, {"label_smoothing": 0.1}),
        (ign, {"weight": rng.uniform(0.5, 2.0, c), "reduction": "sum"}),
        (np.full(n, -100), {}),
    ]
    for tt, kw in cases:
        for bias in (None, b):
            del spy[:]
            loss, grads = sc.linear_cross_entropy_with_grad(
                x, w, tt, linear_bias=bias, backend="numba", **kw
            )
            assert len(spy) == 1
            assert spy[0] is not None
            alone = sc.linear_cross_entropy(
                x, w, tt, linear_bias=bias, backend="numba", **kw
            )
            assert _same(loss, alone), kw
            want_loss, want = _linear_general(
                monkeypatch, x, w, tt, linear_bias=bias, **kw
            )
            assert type(loss) is type(want_loss)
            for g, gw in zip(grads, want, strict=True):
                if gw is None:
                    assert g is None
                else:
                    assert g.dtype == gw.dtype
                    assert g.shape == gw.shape
                    assert _same(g, gw), kw


def test_fused_linear_grads_into_out(rng, spy, monkeypatch):
    n, d, c = 24, 8, 16
    x = rng.standard_normal((n, d))
    w = rng.standard_normal((c, d))
    b = rng.standard_normal(c)
    t = rng.integers(0, c, n)
    t[3] = -100
    loss, want = sc.linear_cross_entropy_with_grad(x, w, t, linear_bias=b)
    outs = (np.empty_like(x), np.empty_like(w), np.empty_like(b))
    del spy[:]
    got_loss, got = sc.linear_cross_entropy_with_grad(
        x, w, t, linear_bias=b, out=outs, backend="numba"
    )
    assert len(spy) == 1
    assert all(g is o for g, o in zip(got, outs, strict=True))
    assert all(_same(g, gw) for g, gw in zip(got, want, strict=True))
    assert _same(got_loss, loss)
    # d_input over the input itself; dW through a temporary (Fortran order)
    xi = x.copy()
    dw = np.asfortranarray(np.empty_like(w))
    got_loss, got = sc.linear_cross_entropy_with_grad(
        xi, w, t, linear_bias=b, out=(xi, dw, None), backend="numba"
    )
    assert got[0] is xi
    assert got[1] is dw
    assert _same(xi, want[0])
    assert _same(np.ascontiguousarray(dw), want[1])
    assert _same(got[2], want[2])
    assert _same(got_loss, loss)
    # a bad target: the general path's error, nothing written
    bad = t.copy()
    bad[7] = c
    outs = tuple(np.full_like(a, 7.0) for a in (x, w, b))
    with pytest.raises(ValueError, match="outside") as fused:
        sc.linear_cross_entropy_with_grad(
            x, w, bad, linear_bias=b, out=outs, backend="numba"
        )
    assert spy[-1][0] == 7
    assert all((o == 7.0).all() for o in outs)
    with pytest.raises(ValueError, match="outside") as general:
        _linear_general(monkeypatch, x, w, bad, linear_bias=b)
    assert str(fused.value) == str(general.value)


def test_fused_linear_grads_only_where_one_chunk(rng, spy, monkeypatch):
    # dW summed chunk by chunk is not one chunk's: a call the general path
    # would take in several chunks stays there, its bits its own
    n, d, c = 40, 8, 12
    x = rng.standard_normal((n, d)).astype(np.float32)
    w = rng.standard_normal((c, d)).astype(np.float32)
    t = rng.integers(0, c, n)
    for chunk, fused in ((8, False), (39, False), (40, True), (1000, True)):
        del spy[:]
        got = sc.linear_cross_entropy_with_grad(
            x, w, t, chunk_size=chunk, backend="numba"
        )
        assert (len(spy) == 1) is fused, chunk
        want = _linear_general(monkeypatch, x, w, t, chunk_size=chunk)
        if not fused:  # the one path: the same loss too
            assert _same(got[0], want[0]), chunk
        for g, gw in zip(got[1], want[1], strict=True):
            assert (g is None) == (gw is None)
            if g is not None:
                assert _same(g, gw), chunk
    # the backend's hint, read after the checks (after the kernel, which finds
    # bad targets): several chunks, the general path's bits
    monkeypatch.setenv("SOFTCORE_NUMBA_CHUNK_ROWS", "16")
    got = sc.linear_cross_entropy_with_grad(x, w, t, backend="numba")
    want = _linear_general(monkeypatch, x, w, t, chunk_size=16)
    assert _same(got[0], want[0])
    for g, gw in zip(got[1], want[1], strict=True):
        assert (g is None) == (gw is None)
        if g is not None:
            assert _same(g, gw)
