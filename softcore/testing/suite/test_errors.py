"""Bad input: the right exception, a message that says what, and no work done."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from softcore.testing import _cases
from softcore.testing._cases import OPS, Inputs


@dataclass(frozen=True)
class Bad:
    """One bad call: how to spoil good inputs, what must be raised and said."""

    label: str
    spoil: Callable[[Inputs, dict[str, Any]], Inputs]
    raises: tuple[type[Exception], ...]
    mentions: tuple[str, ...] = ()
    """Substrings the message must contain (``{C}`` etc. filled from the spec)."""


def _astype(dt: Any) -> Callable[[Inputs, dict[str, Any]], Inputs]:
    def spoil(inp: Inputs, spec: dict[str, Any]) -> Inputs:
        x = inp.x
        bad = x.astype(str) if dt is str else x.astype(dt)
        return inp.replace(inp.primary, bad)

    return spoil


def _kw(**kw: Any) -> Callable[[Inputs, dict[str, Any]], Inputs]:
    def spoil(inp: Inputs, spec: dict[str, Any]) -> Inputs:
        new = inp
        for k, v in kw.items():
            new = new.replace(k, v(inp, spec) if callable(v) else v)
        return new

    return spoil


def _arg(
    i: int, make: Callable[[Inputs, dict[str, Any]], Any]
) -> Callable[[Inputs, dict[str, Any]], Inputs]:
    return lambda inp, spec: inp.replace(i, make(inp, spec))


def _target_at(value: int) -> Callable[[Inputs, dict[str, Any]], Any]:
    def make(inp: Inputs, spec: dict[str, Any]) -> Any:
        t = inp.args[inp.target_pos].copy()
        t[(1,) * t.ndim] = spec["C"] + 2 if value > 0 else value
        return t

    return make


def _extra_class(i: int) -> Callable[[Inputs, dict[str, Any]], Any]:
    def make(inp: Inputs, spec: dict[str, Any]) -> Any:
        a = inp.args[i]
        pad = [(0, 0)] * a.ndim
        pad[inp.class_axis % a.ndim] = (0, 1)
        return np.pad(a, pad)

    return make


COMMON = [
    Bad("complex_input", _astype(np.complex128), (TypeError,), ("complex",)),
    Bad("object_input", _astype(object), (TypeError,)),
    Bad("string_input", _astype(str), (TypeError,)),
]
AXIS = [
    Bad(
        "axis_out_of_range",
        _kw(axis=lambda inp, s: inp.x.ndim),
        (ValueError,),
        ("axis",),
    )
]
CE_OPTIONS = [
    Bad("unknown_reduction", _kw(reduction="avg"), (ValueError,), ("avg",)),
    Bad("label_smoothing_above_1", _kw(label_smoothing=1.5), (ValueError,), ("1.5",)),
    Bad("label_smoothing_below_0", _kw(label_smoothing=-0.1), (ValueError,), ("-0.1",)),
    Bad("label_smoothing_string", _kw(label_smoothing="0.1"), (TypeError,), ("'0.1'",)),
    Bad(
        "weight_length",
        _kw(weight=lambda inp, s: np.ones(s["C"] + 1, inp.x.dtype)),
        (ValueError,),
        ("{C1}",),
    ),
]
TARGET = [
    Bad(
        "target_too_large",
        lambda inp, s: inp.replace(inp.target_pos, _target_at(1)(inp, s)),
        (ValueError,),
        ("{C2}", "{POS}"),
    ),
    Bad(
        "target_negative",
        lambda inp, s: inp.replace(inp.target_pos, _target_at(-1)(inp, s)),
        (ValueError,),
        ("-1", "{POS}"),
    ),
]
_TARGET_LABELS = frozenset(b.label for b in TARGET)
_CHECKS_TARGETS = ("cross_entropy_index_rows",)

FAMILY_CASES: dict[str, list[Bad]] = {
    "rows": COMMON + AXIS,
    "backward": COMMON
    + AXIS
    + [
        Bad(
            "shape_mismatch",
            lambda inp, s: inp.replace(1, _extra_class(1)(inp, s)),
            (ValueError,),
        ),
    ],
    "ce": COMMON
    + AXIS
    + CE_OPTIONS
    + TARGET
    + [
        Bad(
            "target_shape",
            lambda inp, s: inp.replace(1, np.zeros(inp.args[1].shape + (2,), np.int64)),
            (ValueError,),
        ),
        Bad(
            "prob_target_shape",
            lambda inp, s: inp.replace(
                1, np.full(tuple(d + 1 for d in inp.x.shape), 0.1, inp.x.dtype)
            ),
            (ValueError,),
        ),
    ],
    "linear": COMMON
    + CE_OPTIONS
    + TARGET
    + [
        Bad(
            "feature_mismatch",
            lambda inp, s: inp.replace(1, np.ones((s["C"], s["D"] + 1), inp.x.dtype)),
            (ValueError,),
        ),
        Bad(
            "bias_length",
            _kw(linear_bias=lambda inp, s: np.ones(s["C"] + 1, inp.x.dtype)),
            (ValueError,),
            ("{C1}",),
        ),
        Bad(
            "target_rows",
            lambda inp, s: inp.replace(2, np.zeros(s["N"] + 1, np.int64)),
            (ValueError,),
        ),
    ],
}
OUT_CASES = [
    Bad("out_shape", lambda inp, s: inp, (ValueError,)),
    Bad("out_dtype", lambda inp, s: inp, (ValueError, TypeError)),
]


def _all_cases() -> Iterator[Any]:
    for name, spec in OPS.items():
        cases = list(FAMILY_CASES[spec.family])
        if spec.has_out:
            cases += OUT_CASES
        for bad in cases:
            yield pytest.param(name, bad, id=f"{name}-{bad.label}")


BASE = {
    "rows": {
        "seed": 1,
        "regime": "normal",
        "C": 5,
        "batch": (3, 4),
        "axis": -1,
        "shape": (3, 4, 5),
    },
    "backward": {
        "seed": 1,
        "regime": "normal",
        "C": 5,
        "batch": (3, 4),
        "axis": -1,
        "shape": (3, 4, 5),
    },
    "ce": {
        "seed": 1,
        "regime": "normal",
        "C": 5,
        "batch": (3, 4),
        "axis": -1,
        "target": "index",
        "reduction": "mean",
    },
    "linear": {
        "seed": 1,
        "regime": "normal",
        "C": 5,
        "N": 6,
        "D": 3,
        "bias": True,
        "target": "index",
        "reduction": "mean",
    },
}


class _Spy:
    """The backend under test, recording kernel calls (registered under a new name)."""

    priority = -(10**9)

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.name = f"{inner.name}-kit-spy"
        self.calls: list[str] = []

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._inner, attr)
        if attr.endswith("_rows") and callable(value):

            def recorded(*args: Any, **kwargs: Any) -> Any:
                self.calls.append(attr)
                return value(*args, **kwargs)

            return recorded
        return value


@pytest.fixture(scope="module")
def spy(backend: Any) -> Iterator[_Spy]:
    try:
        from softcore import _registry

        register, unregister = _registry.register, _registry.unregister
    except (ImportError, AttributeError):
        pytest.skip("softcore._registry.register is missing: cannot watch kernel calls")
    s = _Spy(backend)
    register(s)
    try:
        yield s
    finally:
        unregister(s.name)


@pytest.mark.parametrize(("op", "bad"), list(_all_cases()))
def test_bad_input_raises(sc: Any, spy: _Spy, op: str, bad: Bad) -> None:
    """Each bad input raises ValueError/TypeError naming what was wrong, before any
    kernel runs, with nothing written to ``out``. A target outside ``[0, C)`` may
    reach a backend's optional ``cross_entropy_index_rows``, which checks the
    targets where they are; it must write nothing then."""
    fam = OPS[op].family
    spec = dict(BASE[fam])
    good = _cases.build(op, spec, "float64")
    inputs = bad.spoil(good, spec)
    kwargs: dict[str, Any] = {}
    out = None
    xp = spy.xp
    if OPS[op].has_out:
        shape, dt = good.x.shape, np.float64
        if bad.label == "out_shape":
            shape = shape[:-1] + (shape[-1] + 1,)
        if bad.label == "out_dtype":
            dt = np.float32
        out = xp.asarray(np.full(shape, 7.0, dt))
        kwargs["out"] = out
    spy.calls.clear()
    with pytest.raises(bad.raises) as info:
        OPS[op].call(sc, inputs, spy, **kwargs)
    msg = str(info.value)
    where = f"{op}[{spy._inner.name}] {bad.label}"
    # a backend's optional cross_entropy_index_rows checks class-index targets
    # itself, and must write nothing for a bad one (the check of out below)
    allowed = _CHECKS_TARGETS if bad.label in _TARGET_LABELS else ()
    ran = [c for c in spy.calls if c not in allowed]
    if ran:
        raise AssertionError(f"{where}: kernels ran before the error was raised: {ran}")
    if out is not None and not np.all(
        np.asarray(getattr(out, "get", lambda: out)()) == 7.0
    ):
        raise AssertionError(f"{where}: out was written before the error was raised")
    if len(msg) < 20:
        raise AssertionError(
            f"{where}: message too terse to say what was expected: {msg!r}"
        )
    fill = {"C": str(spec["C"]), "C1": str(spec["C"] + 1), "C2": str(spec["C"] + 2)}
    t = good.args[good.target_pos] if good.target_pos is not None else None
    for want in bad.mentions:
        if want == "{POS}":
            idx = (1,) * (t.ndim if t is not None else 1)
            flat = (
                int(np.ravel_multi_index(idx, t.shape))
                if t is not None and t.ndim
                else 0
            )
            pats = [", ".join(map(str, idx)), f"[{flat}]", f"({flat})"]
            if not any(p in msg for p in pats):
                raise AssertionError(
                    f"{where}: message does not name the position {idx} "
                    f"(or flat {flat}): {msg!r}"
                )
            continue
        text = want.format(**fill) if "{" in want else want
        if not re.search(re.escape(text), msg, re.IGNORECASE):
            raise AssertionError(f"{where}: message does not mention {text!r}: {msg!r}")


def test_unknown_backend_names_installed(sc: Any, backend: Any) -> None:
    """An unknown backend raises a LookupError subclass that lists what is installed."""
    x = np.zeros((2, 3))
    with pytest.raises(LookupError) as info:
        sc.softmax(x, backend="no-such-backend-kit")
    msg = str(info.value)
    if backend.name not in msg:
        raise AssertionError(
            f"unknown-backend error does not list installed {backend.name!r}: {msg!r}"
        )
