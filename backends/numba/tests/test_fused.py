"""The fused small class-index loss (``cross_entropy_index_sum``) against the
core's general path, which runs when the backend offers no such kernel.

Both compute each row's loss with the same serial kernel from the same per-row
weights; only the order of the final sums differs (the fused kernel adds in row
order, NumPy pairwise), so the totals may differ by the rounding of a sum:
at most ``n * eps64 * sum(|row loss|)``, plus one rounding to the result dtype.
"""

import numpy as np
import pytest

import softcore as sc
from softcore_numba import _ops
from softcore_numba import backend as nb


@pytest.fixture
def spy(monkeypatch):
    """Record what the fused kernel returned, call by call."""
    seen = []
    real = _ops.cross_entropy_index_sum

    def fused(*args):
        got = real(*args)
        seen.append(got)
        return got

    monkeypatch.setattr(nb, "cross_entropy_index_sum", fused, raising=False)
    return seen


def _general(monkeypatch, *args, **kw):
    with monkeypatch.context() as m:
        m.setattr(nb, "cross_entropy_index_sum", None, raising=False)
        return sc.cross_entropy(*args, backend="numba", **kw)


def _bound(x, t, kw, got, monkeypatch):
    """How far two summation orders of the same row losses may be apart."""
    rows = _general(monkeypatch, x, t, **{**kw, "reduction": "none"})
    rows = np.asarray(rows, np.float64)
    finite = rows[np.isfinite(rows)]
    b = len(rows) * np.finfo(np.float64).eps * np.abs(finite).sum()
    if kw.get("reduction", "mean") == "mean":
        keep = t.reshape(-1) != kw.get("ignore_index", -100)
        w = kw.get("weight")
        norm = (
            keep.sum()
            if w is None
            else abs(w[np.where(keep, t.reshape(-1), 0)] * keep).sum()
        )
        b = b / norm if norm else 0.0
    return b + (np.spacing(np.abs(got)) if got.dtype == np.float32 else 0.0)


def _cases(rng, c):
    n = 37
    t = rng.integers(0, c, n)
    ign = np.where(rng.uniform(size=n) < 0.2, -100, t)
    w = rng.uniform(0.5, 2.0, c)
    wneg = rng.uniform(-1.0, 2.0, c)
    wneg[1] = 0.0
    return [
        (t, {}),
        (ign, {}),
        (t, {"ignore_index": 3}),
        (t, {"weight": w}),
        (ign, {"weight": wneg, "reduction": "sum"}),
        (ign, {"weight": w, "label_smoothing": 0.2}),
        (t, {"label_smoothing": 1.0, "reduction": "sum"}),
        (np.full(n, -100), {}),  # all ignored: NaN mean
        (np.full(n, -100), {"reduction": "sum"}),  # and a 0 sum
        (np.zeros(n, np.int64), {"weight": np.where(np.arange(c) == 0, 0.0, 1.0)}),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", [10, 100])  # short rows, and rows of SHORT_C or more
def test_fused_loss_is_the_general_paths(dtype, c, rng, spy, monkeypatch):
    x = (rng.standard_normal((37, c)) * 3).astype(dtype)
    x[4, 2] = np.nan  # a NaN row
    x[5, : c // 2] = -np.inf  # -inf entries in a finite row
    for t, kw in _cases(rng, c):
        del spy[:]
        got = sc.cross_entropy(x, t, backend="numba", **kw)
        assert len(spy) == 1
        assert spy[0] is not None
        assert spy[0][0] == -1
        want = _general(monkeypatch, x, t, **kw)
        assert type(got) is type(want)
        assert np.isnan(got) == np.isnan(want), (kw, got, want)
        if not np.isnan(want):
            bound = _bound(x, t, kw, got, monkeypatch)
            assert abs(float(got) - float(want)) <= bound, (kw, got, want, bound)


def test_fused_loss_is_the_float64_formula(rng, spy):
    # independently of the general path: mean of w_y ((1-eps) nll + eps mean(-logp))
    n, c = 50, 12
    x = rng.standard_normal((n, c))
    t = np.where(rng.uniform(size=n) < 0.2, -100, rng.integers(0, c, n))
    w = rng.uniform(0.5, 2.0, c)
    eps = 0.1
    got = sc.cross_entropy(x, t, weight=w, label_smoothing=eps, backend="numba")
    assert spy[-1] is not None
    keep = t != -100
    tk = np.where(keep, t, 0)
    logp = x - np.log(np.exp(x).sum(-1, keepdims=True))
    wy = w[tk] * keep
    rows = -(
        wy * (1 - eps) * logp[np.arange(n), tk] + keep * eps / c * (w * logp).sum(-1)
    )
    np.testing.assert_allclose(got, rows.sum() / wy.sum(), rtol=1e-14)


@pytest.mark.parametrize(
    ("t", "kw"),
    [
        (np.array([0, 1, 10, 2]), {}),
        (np.array([0, -1, 2, 3]), {}),
        (np.array([0, -100, 2, -7]), {}),
        (np.array([0, 3, 12, 3]), {"ignore_index": 3}),
        (np.array([[0, 1], [2, 99]]), {"weight": np.ones(10)}),
    ],
)
def test_fused_loss_raises_the_general_paths_error(t, kw, rng, spy, monkeypatch):
    x = rng.standard_normal(t.shape + (10,))
    with pytest.raises(ValueError, match="outside") as fused:
        sc.cross_entropy(x, t, backend="numba", **kw)
    assert spy[-1][0] >= 0  # the fused kernel found it
    with pytest.raises(ValueError, match="outside") as general:
        _general(monkeypatch, x, t, **kw)
    assert str(fused.value) == str(general.value)


def test_fused_loss_on_batches_with_the_class_axis_elsewhere(rng, spy, monkeypatch):
    x = rng.standard_normal((3, 7, 4))  # classes on axis 1
    t = rng.integers(0, 7, (3, 4))
    t[1, 2] = -100
    got = sc.cross_entropy(x, t, axis=1, backend="numba")
    assert spy[-1] is not None
    want = _general(monkeypatch, x, t, axis=1)
    assert abs(got - want) <= _bound(x, t, {"axis": 1}, got, monkeypatch)
    xm = np.moveaxis(x, 1, -1).reshape(-1, 7)
    np.testing.assert_allclose(
        got, sc.cross_entropy(xm, t.reshape(-1), backend="numpy"), rtol=1e-14
    )


def test_large_batches_and_other_inputs_take_the_general_path(rng, spy, monkeypatch):
    c = 10
    x = rng.standard_normal((8, c))
    t = rng.integers(0, c, 8)
    ro_x = x.copy()
    ro_x.setflags(write=False)
    ro_t = t.copy()
    ro_t.setflags(write=False)
    w = rng.uniform(0.5, 2.0, c)
    others = [
        (x, t.astype(np.int32), {}),  # not int64
        (x, t.astype(">i8"), {}),  # not native
        (x, t.tolist(), {}),  # not an array
        (ro_x, t, {}),  # read-only (another compiled variant): not fused
        (x, ro_t, {}),
        (x, t, {"weight": w.astype(np.float32)}),  # a weight to convert
        (x, t, {"weight": w.tolist()}),
        (x, t, {"ignore_index": 1 << 63}),  # no int64 holds it
        (x, t, {"reduction": "none"}),
    ]
    for xi, ti, kw in others:
        got = sc.cross_entropy(xi, ti, backend="numba", **kw)
        assert spy == [], kw
        want = _general(monkeypatch, xi, ti, **kw)
        np.testing.assert_array_equal(got, want)
    big = rng.standard_normal((_ops.SERIAL_MAX // c + 1, c))  # past serial: threads
    tb = rng.integers(0, c, big.shape[0])
    got = sc.cross_entropy(big, tb, backend="numba")
    assert spy == [None]  # asked, and declined
    np.testing.assert_array_equal(got, _general(monkeypatch, big, tb))
    # the loss + gradient calls never take it
    sc.cross_entropy_with_grad(x, t, backend="numba")
    assert spy == [None]
