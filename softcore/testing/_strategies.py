"""Hypothesis strategies: specs of inputs for every op family, drawn with labels.

A *spec* is a small dict (shapes, axis, options, value regime, seed); ``_cases.build``
turns it into arrays.  Drawing specs rather than array elements keeps examples fast
and failures readable: the labelled draws are printed with a failing example.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from softcore.testing import _cases
from softcore.testing._runtime import CONFIG

FLOAT_DTYPES = ("float16", "float32", "float64")
WIDE_C = (64, 80, 128, 129, 257)
"""Class counts drawn beside the small ones: rows wide enough for a backend's
vectorised row kernels, some a whole number of 512-bit vectors wide and some
not (the numba backend's kernels change at 64 classes and at row widths of 320
and 512 bytes)."""
PROMOTED_DTYPES = ("int8", "int32", "int64", "uint8", "bool")


def kit_settings(scale: float = 1.0) -> settings:
    """Settings for one property: ``--softcore-max-examples`` times ``scale``."""
    return settings(
        max_examples=max(1, int(CONFIG.max_examples * scale)),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


def batch_shapes(
    *, min_dims: int = 0, max_dims: int = 3, max_side: int = 5, empty: bool = False
) -> st.SearchStrategy[tuple[int, ...]]:
    side = st.integers(0 if empty else 1, max_side)
    return st.lists(side, min_size=min_dims, max_size=max_dims).map(tuple)


def _classes(top: int, max_c: int | None) -> st.SearchStrategy[int]:
    """``C`` in ``[1, top]``, or (where the caller sets no ``max_c``) one of
    ``WIDE_C``."""
    small = st.integers(1, max_c or top)
    return small if max_c else st.one_of(small, st.sampled_from(WIDE_C))


def draw_spec(
    data: st.DataObject,
    op: str,
    *,
    max_c: int | None = None,
    regimes: tuple[str, ...] = _cases.REGIMES,
    empty: bool = False,
    n_classes: int | None = None,
    **fixed: Any,
) -> dict[str, Any]:
    """A labelled spec of inputs for ``op``; ``fixed`` keys override draws."""
    fam = _cases.OPS[op].family
    spec: dict[str, Any] = {}
    draw = data.draw

    def pick(key: str, strategy: st.SearchStrategy[Any]) -> Any:
        if key in fixed:
            spec[key] = fixed[key]
        else:
            spec[key] = draw(strategy, label=key)
        return spec[key]

    pick("seed", st.integers(0, 2**32 - 1))
    pick("regime", st.sampled_from(regimes))
    if fam in ("rows", "backward"):
        jac = "jacobian" in op
        top = max_c or (12 if jac else 40)
        # Jacobians are (C, C) a row: they keep to small C
        classes = st.integers(1, top) if jac else _classes(top, max_c)
        c = n_classes if n_classes is not None else pick("C", classes)
        spec["C"] = c
        batch = pick("batch", batch_shapes(max_side=3 if jac else 5, empty=empty))
        axis = pick("axis", st.integers(-(len(batch) + 1), len(batch)))
        ax = axis % (len(batch) + 1)
        spec["shape"] = tuple(batch[:ax]) + (c,) + tuple(batch[ax:])
        if op == "logsumexp":
            pick("keepdims", st.sampled_from([None, False, True]))
        if fam == "backward":
            pick("grad_scale", st.sampled_from([1.0, 1e-3, 1e3]))
        return spec
    c = n_classes if n_classes is not None else pick("C", _classes(24, max_c))
    spec["C"] = c
    if fam == "ce":
        batch = pick("batch", batch_shapes(max_dims=2, max_side=6, empty=empty))
        pick("axis", st.integers(-(len(batch) + 1), len(batch)))
        pick("target", st.sampled_from(["index", "prob"]))
    else:
        pick("N", st.integers(0 if empty else 1, 24))
        pick("D", st.integers(1, 16))
        pick("bias", st.booleans())
        pick("chunk_size", st.sampled_from([None, 1, 3, 7, 64]))
        spec["target"] = "index"
    pick("weighted", st.booleans())
    if spec["weighted"]:
        pick("zero_weight", st.booleans())
    pick("reduction", st.sampled_from(["mean", "sum", "none"]))
    pick("label_smoothing", st.sampled_from([0.0, 0.0, 0.1, 0.5, 1.0]))
    if spec["target"] == "index":
        pick(
            "target_dtype",
            st.sampled_from(["int64", "int32", "uint8"])
            if c <= 255
            else st.just("int64"),
        )
        pick("ignore_frac", st.sampled_from([0.0, 0.0, 0.3, 1.0]))
        if spec["ignore_frac"]:
            unsigned = spec["target_dtype"] == "uint8"
            pick(
                "ignore_index",
                st.sampled_from([0, c - 1] if unsigned else [-100, -1, 0]),
            )
    for k, v in fixed.items():
        spec.setdefault(k, v)
    return spec
