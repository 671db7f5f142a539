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
def spy(spy_on):
    """Record what the fused kernel returned, call by call."""
    return spy_on("cross_entropy_index_sum")


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
# short rows (row-major tiles), float32 rows of CE_SHORT_GROUPED_C..SHORT_C-1
# classes (grouped, float64 keeps the tiles), and rows of SHORT_C or more
@pytest.mark.parametrize("c", [10, 40, 100])
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
        if np.isinf(want):  # a -inf target logit: +inf on both paths
            assert got == want, (kw, got, want)
        elif not np.isnan(want):
            bound = _bound(x, t, kw, got, monkeypatch)
            assert abs(float(got) - float(want)) <= bound, (kw, got, want, bound)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", [10, 25, 40, 63, 64, 100])
def test_fused_row_is_the_general_rows_bits(dtype, c, rng, spy, monkeypatch):
    # one row at a time there is no sum to reorder: the fused total is the
    # general path's row loss to the bit, at each width rule (tiles, grouped)
    x = (rng.standard_normal((40, c)) * 3).astype(dtype)
    t = rng.integers(0, c, 40)
    for kw in ({}, {"label_smoothing": 0.3}):
        rows = _general(monkeypatch, x, t, reduction="none", **kw)
        for i in range(len(t)):
            del spy[:]
            got = sc.cross_entropy(
                x[i : i + 1], t[i : i + 1], reduction="sum", backend="numba", **kw
            )
            assert len(spy) == 1
            assert spy[0] is not None
            assert got.tobytes() == rows[i].tobytes(), (kw, i, got, rows[i])


_FUSED_DRIVER = {"short": "short_ser", "grouped": "grouped_ser", "rows": "ser"}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", [2, 10, 24, 25, 40, 63, 64, 100, 128, 129, 1000])
def test_fused_entry_point_is_the_driver_the_rows_rule_picks(dtype, c, monkeypatch):
    # one entry point per serial driver, so that a first call compiles only
    # the one it runs: the entry point _ops picks calls the driver that the
    # general path's rule picks for the same (serial) batch
    x = np.zeros((4, c), dtype)
    k = _ops._fused_mode(x)
    mode = _ops._FUSED_MODES[k]
    assert _ops._FUSED_LOSS[k].__name__.endswith("_sum_" + mode)
    assert _ops._FUSED_GRAD[k].__name__.endswith("_sum_" + mode)
    picked = []

    def spy_pick(drivers, a, serial_max=None):
        picked.append(orig(drivers, a, serial_max).__name__)
        return lambda *args: None

    orig = _ops._pick
    monkeypatch.setattr(_ops, "_pick", spy_pick)
    y, w, z = np.zeros(4, np.int64), np.ones(4), np.zeros(4)
    _ops.cross_entropy_rows(x, y, w, z, np.ones(c), np.empty(4))
    _ops.cross_entropy_grad_rows(x, y, w, z, np.ones(c), 1.0, np.empty(4), x.copy())
    suffix = _FUSED_DRIVER[mode]
    assert picked == [f"cross_entropy_{suffix}", f"cross_entropy_grad_{suffix}"]


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


def test_fused_loss_is_the_same_for_every_layout_and_int_type(rng, spy):
    # which path runs depends on values and dtypes, never on memory layout or
    # flags: read-only, strided, big-endian, narrower ints and lists give the
    # plain call's bits (through the fused kernel, on copies where needed)
    c = 10
    x = rng.standard_normal((8, c))
    t = rng.integers(0, c, 8)
    t[3] = -100
    w = rng.uniform(0.5, 2.0, c).astype(np.float32).astype(np.float64)  # exact in f32
    want = sc.cross_entropy(x, t, weight=w, backend="numba")
    ro_x = x.copy()
    ro_x.setflags(write=False)
    ro_t = t.copy()
    ro_t.setflags(write=False)
    ro_w = w.copy()
    ro_w.setflags(write=False)
    variants = [
        (ro_x, ro_t, ro_w),
        (np.asfortranarray(x), t, w),
        (x[::-1].copy()[::-1], t[::-1].copy()[::-1], w[::-1].copy()[::-1]),
        (x, t.astype(np.int32), w),
        (x, t.astype(np.int16), w.astype(np.float32)),
        (x, t.astype(">i8"), w.astype(">f8")),
        (x, t.tolist(), w.tolist()),
    ]
    for xi, ti, wi in variants:
        del spy[:]
        got = sc.cross_entropy(xi, ti, weight=wi, backend="numba")
        assert len(spy) == 1  # asked once, plain call or not
        assert spy[0] is not None
        assert got == want
    assert ro_x.flags.writeable is False  # the caller's flags untouched
    assert ro_t.flags.writeable is False


def test_other_inputs_take_the_general_path(rng, spy, monkeypatch):
    c = 10
    x = rng.standard_normal((8, c))
    t = rng.integers(0, c, 8)
    others = [
        (x, t.astype(np.uint64), {}),  # int64 cannot hold every uint64
        (x, t, {"ignore_index": 1 << 63}),  # no int64 holds it
        (x, t, {"reduction": "none"}),
        (x, t, {"weight": np.ones((1, c))}),  # a bad weight: the general error
    ]
    for xi, ti, kw in others:
        try:
            got = sc.cross_entropy(xi, ti, backend="numba", **kw)
        except ValueError as e:
            got = str(e)
        assert spy == [], kw
        try:
            want = _general(monkeypatch, xi, ti, **kw)
        except ValueError as e:
            want = str(e)
        np.testing.assert_array_equal(got, want)
    big = rng.standard_normal((_ops.SERIAL_MAX // c + 1, c))  # past serial: threads
    tb = rng.integers(0, c, big.shape[0])
    got = sc.cross_entropy(big, tb, backend="numba")
    assert spy == []  # the core's limit is the same as numba's default
    np.testing.assert_array_equal(got, _general(monkeypatch, big, tb))
    monkeypatch.setattr(_ops, "SERIAL_MAX", 40)  # numba's own limit lower
    got = sc.cross_entropy(x, t, backend="numba")
    assert spy == [None]  # asked, and declined
    np.testing.assert_array_equal(got, _general(monkeypatch, x, t))
    # the loss + gradient calls never take it
    sc.cross_entropy_with_grad(x, t, backend="numba")
    assert spy == [None]


def _linear_general(monkeypatch, *args, **kw):
    with monkeypatch.context() as m:
        m.setattr(nb, "cross_entropy_index_sum", None, raising=False)
        return sc.linear_cross_entropy(*args, backend="numba", **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_linear_loss_is_the_general_paths(dtype, rng, spy, monkeypatch):
    # a small loss-only linear CE: the logits in one product, then the fused call
    n, d, c = 40, 16, 12
    x = rng.standard_normal((n, d)).astype(dtype)
    w = rng.standard_normal((c, d)).astype(dtype)
    b = rng.standard_normal(c).astype(dtype)
    for t, kw in _cases(rng, c):
        t = t[:n] if len(t) >= n else np.resize(t, n)
        for bias in (None, b):
            del spy[:]
            got = sc.linear_cross_entropy(
                x, w, t, linear_bias=bias, backend="numba", **kw
            )
            assert len(spy) == 1
            assert spy[0][0] == -1
            want = _linear_general(monkeypatch, x, w, t, linear_bias=bias, **kw)
            assert type(got) is type(want)
            assert np.isnan(got) == np.isnan(want), (kw, got, want)
            if np.isnan(want):
                continue
            z = x @ w.T + (0 if bias is None else bias)
            bound = _bound(z.astype(dtype), t, kw, got, monkeypatch)
            assert abs(float(got) - float(want)) <= bound, (kw, got, want, bound)


def test_fused_linear_loss_errors_and_limits(rng, spy, monkeypatch):
    from softcore import _api

    n, d, c = 6, 4, 5
    x = rng.standard_normal((n, d))
    w = rng.standard_normal((c, d))
    bad = np.array([0, 1, 7, 2, 3, 4])
    with pytest.raises(ValueError, match="outside") as fused:
        sc.linear_cross_entropy(x, w, bad, backend="numba")
    assert spy[-1][0] == 2
    with pytest.raises(ValueError, match="outside") as general:
        _linear_general(monkeypatch, x, w, bad)
    assert str(fused.value) == str(general.value)
    del spy[:]
    t = rng.integers(0, c, n)
    for kw in ({"chunk_size": 0}, {"chunk_size": 1.5}, {"reduction": "avg"}):
        with pytest.raises((TypeError, ValueError)):  # before any product
            sc.linear_cross_entropy(x, w, t, backend="numba", **kw)
    with pytest.raises(ValueError, match="shape"):
        sc.linear_cross_entropy(x, w, t[:-1], backend="numba")
    assert spy == []
    # past the core's limit, and with gradients: the general path
    monkeypatch.setattr(_api, "_FUSED_MAX", n * c - 1)
    got = sc.linear_cross_entropy(x, w, t, backend="numba")
    sc.linear_cross_entropy_with_grad(x, w, t, backend="numba")
    assert spy == []
    monkeypatch.undo()
    np.testing.assert_allclose(
        got, sc.linear_cross_entropy(x, w, t, backend="numba"), rtol=1e-14
    )
