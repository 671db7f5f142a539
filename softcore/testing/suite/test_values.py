"""Values against the independent references, dtypes, promotion, special values."""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from softcore.testing import _cases, _oracle
from softcore.testing._assert import assert_identical
from softcore.testing._cases import OPS, Inputs, from_rows, ops_of, rows_view
from softcore.testing._check import check_against_reference
from softcore.testing._strategies import (
    FLOAT_DTYPES,
    PROMOTED_DTYPES,
    draw_spec,
    kit_settings,
)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@given(data=st.data())
@kit_settings()
def test_accuracy(
    sc: Any, backend: Any, op: str, dtype: str, data: st.DataObject
) -> None:
    """Every output within TOLERANCES[op][dtype] of the long double / mpmath oracle,
    in the input's float dtype, with the inputs left unmodified."""
    spec = draw_spec(data, op)
    inputs = _cases.build(op, spec, dtype)
    check_against_reference(sc, backend, op, inputs, ctx=spec)


def _check_rounded_from_float32(
    sc: Any, backend: Any, op: str, spec: dict, low_in: Inputs, low: np.dtype
) -> None:
    """Inputs ``low_in``, whose floating arrays are ``low`` (float16 or
    bfloat16), give ``low`` results bitwise the results of the same values in
    float32, rounded to ``low``."""
    f32_in = low_in
    for k, a in low_in.arrays():
        if a.dtype == low:
            f32_in = f32_in.replace(k, a.astype(np.float32))
    got_low = OPS[op].call(sc, low_in, backend)
    got32 = OPS[op].call(sc, f32_in, backend)
    for name, g_low, g32 in zip(OPS[op].outputs, got_low, got32, strict=True):
        if g32 is None:
            continue
        with np.errstate(over="ignore"):
            want = np.asarray(g32).astype(low)
        assert_identical(
            g_low,
            want,
            what=f"{op}[{backend.name}] {name}: {low} result vs float32 result "
            f"rounded to {low}",
            **spec,
        )


@given(data=st.data())
@kit_settings(0.5)
def test_float16_is_float32_rounded(
    sc: Any, backend: Any, op: str, data: st.DataObject
) -> None:
    """float16 inputs give float16 results equal to the float32 results rounded."""
    spec = draw_spec(data, op)
    inputs = _cases.build(op, spec, "float16")
    _check_rounded_from_float32(sc, backend, op, spec, inputs, np.dtype(np.float16))


def _bfloat16(backend: Any) -> np.dtype:
    """ml_dtypes' bfloat16, or a skip that says why it cannot be checked."""
    if backend.xp is not np:
        pytest.skip(
            f"bfloat16 arrays exist in NumPy only (ml_dtypes); {backend.name!r} "
            "takes other arrays"
        )
    try:
        import ml_dtypes
    except ImportError:
        pytest.skip(
            "ml_dtypes is not installed: bfloat16, its NumPy dtype, is not "
            "checked (pip install ml_dtypes)"
        )
    return np.dtype(ml_dtypes.bfloat16)


@given(data=st.data())
@kit_settings(0.5)
def test_bfloat16_is_float32_rounded(
    sc: Any, backend: Any, op: str, data: st.DataObject
) -> None:
    """bfloat16 inputs (ml_dtypes', as JAX hands its arrays to NumPy) give
    bfloat16 results equal to the float32 results of the same values, rounded
    once to bfloat16."""
    bf16 = _bfloat16(backend)
    spec = draw_spec(data, op)
    inputs = _cases.build(op, spec, "float32").map_floats(  # bfloat16's range
        lambda a: a.astype(bf16) if a.dtype == np.float32 else a
    )
    _check_rounded_from_float32(sc, backend, op, spec, inputs, bf16)


def _large_spec(data: st.DataObject, op: str) -> dict:
    """A spec whose arrays have thousands of elements (the drawn ones seldom
    reach a thousand): where a backend converts 16-bit floats itself (its
    ``cast`` hook, from ``CAST_MIN`` elements), it is these that reach it; the
    row ops more than 32768 elements, a size a threaded backend splits."""
    fam = OPS[op].family
    if fam in ("rows", "backward"):
        if "jacobian" in op:
            return draw_spec(data, op, n_classes=40, batch=(30,))
        return draw_spec(data, op, n_classes=4100, batch=(9,))
    if fam == "ce":
        return draw_spec(data, op, n_classes=2000, batch=(9,))
    return draw_spec(data, op, n_classes=40, N=80, D=40)


@pytest.mark.parametrize("low", ["float16", "bfloat16"])
@given(data=st.data())
@kit_settings(0.1)
def test_large_16bit_arrays_are_float32_rounded(
    sc: Any, backend: Any, op: str, low: str, data: st.DataObject
) -> None:
    """``float16_is_float32_rounded`` and ``bfloat16_is_float32_rounded`` at
    sizes where a backend may convert the arrays with its own ``cast`` hook:
    the same bits as NumPy's and ml_dtypes' casts."""
    dt = _bfloat16(backend) if low == "bfloat16" else np.dtype(np.float16)
    spec = _large_spec(data, op)
    inputs = _cases.build(op, spec, "float32" if low == "bfloat16" else low)
    inputs = inputs.map_floats(lambda a: a.astype(dt) if a.dtype.kind == "f" else a)
    _check_rounded_from_float32(sc, backend, op, spec, inputs, dt)


@pytest.mark.parametrize("dtype", PROMOTED_DTYPES)
@given(data=st.data())
@kit_settings(0.2)
def test_ints_and_bool_promote_to_float64(
    sc: Any, backend: Any, op: str, dtype: str, data: st.DataObject
) -> None:
    """Integer and bool data give float64 results equal to those of a float64 copy."""
    spec = draw_spec(data, op, regimes=("ties",))
    base = _cases.build(op, spec, "float64")
    cast = base
    for i, a in enumerate(base.args):
        if i != base.target_pos and isinstance(a, np.ndarray) and a.dtype.kind == "f":
            if dtype == "bool":
                v = a > 0
            else:
                info = np.iinfo(dtype)
                v = np.clip(np.round(a), info.min, info.max).astype(dtype)
            cast = cast.replace(i, v)
    as_float = cast.map_floats(
        lambda a: a.astype(np.float64) if a.dtype.kind in "biu" else a
    )
    got = OPS[op].call(sc, cast, backend)
    want = OPS[op].call(sc, as_float, backend)
    for name, g, w in zip(OPS[op].outputs, got, want, strict=True):
        if w is None:
            continue
        assert_identical(
            g,
            w,
            what=f"{op}[{backend.name}] {name}: {dtype} input vs its float64 copy",
            **spec,
        )


def _with_special_rows(
    inputs: Inputs, rng: np.random.Generator, kinds: tuple[str, ...]
) -> tuple[Inputs, list[str]]:
    x = inputs.x
    rows = rows_view(x, inputs.class_axis)
    notes = []
    n = rows.shape[0]
    chosen = rng.choice(n, size=max(1, n // 2), replace=False) if n else []
    for r in chosen:
        kind = kinds[int(rng.integers(len(kinds)))]
        c = rows.shape[1]
        if kind == "nan":
            rows[r, rng.integers(c)] = np.nan
        elif kind == "posinf":
            rows[r, rng.integers(c)] = np.inf
        else:
            rows[r, :] = -np.inf
        notes.append(f"row {int(r)}: {kind}")
    return inputs.replace(
        inputs.primary, from_rows(rows, x, inputs.class_axis).copy()
    ), notes


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@given(data=st.data())
@kit_settings()
def test_special_rows_isolated(
    sc: Any, backend: Any, op: str, dtype: str, data: st.DataObject
) -> None:
    """A row with a NaN, a +inf, or only -inf is NaN throughout its results; every
    other row is as accurate as without it (ignored cross-entropy rows stay 0)."""
    spec = draw_spec(data, op)
    inputs = _cases.build(op, spec, dtype)
    rng = np.random.default_rng(spec["seed"] + 1)
    inputs, notes = _with_special_rows(inputs, rng, OPS[op].specials)
    check_against_reference(
        sc, backend, op, inputs, ctx={**spec, "special": notes}, record=False
    )


@pytest.mark.parametrize("op", ops_of("rows", "ce"))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@given(data=st.data())
@kit_settings()
def test_neg_inf_entries(
    sc: Any, backend: Any, op: str, dtype: str, data: st.DataObject
) -> None:
    """-inf entries of an otherwise finite row: probability 0, log-probability -inf,
    the rest of the row as if they were absent. Cross-entropy draws zero class
    weights and label smoothing of 1 too: a class-index row takes PyTorch's
    formula as it is (``0 * inf`` is NaN), but a row that carries no weight is
    0; a probability-target term with a zero coefficient adds 0 (``_oracle``)."""
    spec = draw_spec(data, op, max_c=12)
    inputs = _cases.build(op, spec, dtype)
    rows = rows_view(inputs.x, inputs.class_axis)
    rng = np.random.default_rng(spec["seed"] + 2)
    if rows.shape[1] > 1:
        mask = rng.uniform(size=rows.shape) < 0.3
        mask[
            np.arange(rows.shape[0]), rng.integers(0, rows.shape[1], rows.shape[0])
        ] = False
        rows[mask] = -np.inf
    inputs = inputs.replace(0, from_rows(rows, inputs.x, inputs.class_axis).copy())
    check_against_reference(sc, backend, op, inputs, ctx=spec, record=False)


@pytest.mark.parametrize("regime", _cases.EXTREME_REGIMES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@given(data=st.data())
@kit_settings(0.5)
def test_extreme_logits(
    sc: Any, backend: Any, op: str, dtype: str, regime: str, data: st.DataObject
) -> None:
    """Logits of +-1e4 and +-3e38 (and gradients of +-1e4 and +-3e38 for the
    backward ops): no overflow, no NaN, as accurate as anywhere (an exact
    result beyond the dtype's range must be the matching infinity)."""
    spec = draw_spec(data, op, regimes=(regime,))
    inputs = _cases.build(op, spec, dtype)
    check_against_reference(sc, backend, op, inputs, ctx=spec)


WIDE_ROWS_C = (4096, 100_000)
"""Class counts of :func:`test_wide_rows`: vocabulary-sized rows, whose sums the
drawn shapes (at most 257 classes) never reach."""


@pytest.mark.parametrize(
    "op", [o for o in ops_of("rows", "backward", "ce") if "jacobian" not in o]
)
@pytest.mark.parametrize("regime", ["normal", "centred", "dominant", "near_zero"])
@pytest.mark.parametrize("n_classes", WIDE_ROWS_C)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_wide_rows(
    sc: Any, backend: Any, op: str, dtype: str, n_classes: int, regime: str
) -> None:
    """Three rows of 4096 and of 100000 classes (sums of that many terms; in
    "centred", ``lse`` near 0 where the row max and ``log S`` cancel; in
    "near_zero", ``lse`` near 0 where the row max is near 0 and dominates),
    cross-entropy with class weights, label smoothing 0.1 and a mean, against
    the oracle. The seed's centred
    rows of 100000 classes took the reference backend's float64 logsumexp (and
    SciPy's) to 4.36 ULPs of ``max(|lse|, 1)``, past the tolerance of 4 that
    metric had before it counted ``|max x|`` (``_oracle.lse_scale``)."""
    fixed: dict[str, Any] = {"seed": 26, "regime": regime, "C": n_classes}
    if OPS[op].family == "ce":
        fixed.update(
            batch=(3,), axis=-1, target="index", weighted=True, zero_weight=False,
            reduction="mean", label_smoothing=0.1, target_dtype="int64",
            ignore_frac=0.0,
        )  # fmt: skip
    else:
        fixed.update(batch=(3,), axis=-1, shape=(3, n_classes), grad_scale=1.0)
    inputs = _cases.build(op, fixed, dtype)
    check_against_reference(sc, backend, op, inputs, ctx=fixed, record=False)


# Rows whose exact results are computed here with mpmath at 100 digits (enough for
# the 39 integer digits of 3e38 and 60 more).
LITERAL_ROWS = {
    "one class": [5.0],
    "ties": [2.0, 2.0, 2.0, 2.0],
    "log of a sum near 1": [0.0, -40.0],
    "float64 underflow edge": [745.0, 0.0, -745.0],
    "1e4 close": [1e4, 1e4 - 1.0, 0.0],
    "-1e4 close": [-1e4, -1e4 + 0.5, -1e4 + 0.25],
    "3e38 spread": [3e38, -3e38, 3e38, 0.0],
    "tiny spread": [1e-20, -1e-20, 0.0],
}


def _mp_exact(row: list[float]) -> tuple[Any, list[Any], list[Any]]:
    with mpmath.workdps(100):
        vals = [mpmath.mpf(v) for v in row]
        m = max(vals)
        lse = m + mpmath.log(mpmath.fsum(mpmath.exp(v - m) for v in vals))
        return lse, [v - lse for v in vals], [mpmath.exp(v - lse) for v in vals]


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(LITERAL_ROWS))
def test_mpmath_literals(sc: Any, backend: Any, op: str, dtype: str, case: str) -> None:
    """Hand-picked rows against mpmath at 100 digits, under the same tolerances."""
    from softcore.testing._assert import assert_ulp
    from softcore.testing._tolerances import tolerance

    row = LITERAL_ROWS[case]
    x = np.array(row, dtype=dtype)
    if not np.all(np.isfinite(x)):
        pytest.skip(f"{case!r} is not representable in {dtype}")
    lse, log_p, p = _mp_exact([float(v) for v in x])
    got = OPS[op].call(sc, Inputs([x], {}), backend)[0]
    with mpmath.workdps(100):
        if op == "softmax":
            exact = np.array([_oracle._mp_to_ld(v) for v in p])
            scale = exact * np.maximum(
                1, np.abs(np.array([_oracle._mp_to_ld(v) for v in log_p]))
            )
        elif op == "log_softmax":
            exact = np.array([_oracle._mp_to_ld(v) for v in log_p])
            lse_ld = np.array(_oracle._mp_to_ld(lse))
            scale = np.maximum(np.abs(exact), _oracle.lse_scale(lse_ld, x))
        else:
            exact = np.array(_oracle._mp_to_ld(lse))
            scale = _oracle.lse_scale(exact, x)
    assert_ulp(
        got,
        exact,
        scale,
        tol=tolerance(op, dtype),
        op=op,
        output=OPS[op].outputs[0],
        backend=backend.name,
        dtype=dtype,
        case=case,
    )


@pytest.mark.parametrize("op", ["cross_entropy", "cross_entropy_with_grad"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(LITERAL_ROWS))
def test_mpmath_literal_losses(
    sc: Any, backend: Any, op: str, dtype: str, case: str
) -> None:
    """Each hand-picked row once for every class as its target (``reduction=
    "none"``), so every ``-log p`` goes through the loss, against the oracle
    (mpmath). A confident row's loss is known to its own precision: ``[0,
    -40]`` with target 0 loses ``4.2e-18``, which ``log`` of the rounded sum
    gives as 0."""
    x = np.array(LITERAL_ROWS[case], dtype=dtype)
    if not np.all(np.isfinite(x)):
        pytest.skip(f"{case!r} is not representable in {dtype}")
    c = x.shape[0]
    inputs = Inputs(
        [np.tile(x, (c, 1)), np.arange(c, dtype=np.int64)],
        {"reduction": "none"},
        target_pos=1,
    )
    check_against_reference(sc, backend, op, inputs, ctx={"case": case}, record=False)
