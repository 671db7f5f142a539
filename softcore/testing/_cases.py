"""The op table: every public op with its reference, its input builder, its call.

One entry per op (numbagg style): the suite's properties run over ``OPS``'s keys, and
what differs between ops lives here, in data, not in the tests.  Inputs are built as
NumPy arrays from a *spec* (a small dict drawn by ``_strategies``) and a seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from softcore.testing import _oracle
from softcore.testing._runtime import to_backend, to_host

LD = np.longdouble


@dataclass
class Inputs:
    """Arguments of one call: positional arrays, then keywords (arrays or scalars)."""

    args: list[Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    primary: int = 0
    """Index in ``args`` of the logits-like array (dtype, layout, special values)."""
    class_axis: int = -1
    """The class axis of the primary array (for ``linear``: its feature axis)."""
    target_pos: int | None = None
    """Index in ``args`` of the cross-entropy target, if any."""

    def arrays(self) -> list[tuple[str | int, np.ndarray]]:
        out: list[tuple[str | int, np.ndarray]] = [
            (i, a) for i, a in enumerate(self.args) if isinstance(a, np.ndarray)
        ]
        out += [(k, v) for k, v in self.kwargs.items() if isinstance(v, np.ndarray)]
        return out

    def float_arrays(self) -> list[tuple[str | int, np.ndarray]]:
        return [
            (k, a)
            for k, a in self.arrays()
            if a.dtype.kind in "fbiu"
            and not (k == self.target_pos and a.dtype.kind in "iu")
        ]

    def replace(self, key: str | int, value: Any) -> Inputs:
        args = list(self.args)
        kwargs = dict(self.kwargs)
        if isinstance(key, int):
            args[key] = value
        else:
            kwargs[key] = value
        return Inputs(args, kwargs, self.primary, self.class_axis, self.target_pos)

    def map_floats(self, fn: Callable[[np.ndarray], Any]) -> Inputs:
        new = self
        for k, a in self.float_arrays():
            new = new.replace(k, fn(a))
        return new

    def copy(self) -> Inputs:
        return Inputs(
            [a.copy() if isinstance(a, np.ndarray) else a for a in self.args],
            {
                k: v.copy() if isinstance(v, np.ndarray) else v
                for k, v in self.kwargs.items()
            },
            self.primary,
            self.class_axis,
            self.target_pos,
        )

    @property
    def x(self) -> np.ndarray:
        return self.args[self.primary]


@dataclass(frozen=True)
class OpSpec:
    """One public op: how to call it and what it must return."""

    name: str
    family: str
    """``rows`` (x -> ...), ``backward`` (grad, probs), ``ce`` or ``linear``."""
    outputs: tuple[str, ...]
    reference: Callable[[Inputs], list[tuple[np.ndarray, np.ndarray] | None]]
    has_out: bool = False
    specials: tuple[str, ...] = ("nan", "posinf", "neginf_row")
    """Special values that make a row NaN for this op."""
    reduces: bool = False
    """Whether the op takes ``reduction=``."""
    fn_name: str = ""

    def function(self, sc: Any) -> Callable[..., Any]:
        return getattr(sc, self.fn_name or self.name)

    def call(
        self, sc: Any, inputs: Inputs, backend: Any, **extra: Any
    ) -> tuple[Any, ...]:
        """Call the op on ``backend`` (an object); results as host NumPy arrays."""
        args = [to_backend(backend, a) for a in inputs.args]
        kwargs = {k: to_backend(backend, v) for k, v in inputs.kwargs.items()}
        kwargs.update(extra)
        res = self.function(sc)(*args, backend=backend.name, **kwargs)
        return flatten(res)


def flatten(res: Any) -> tuple[Any, ...]:
    if isinstance(res, tuple):
        out: list[Any] = []
        for r in res:
            out.extend(flatten(r))
        return tuple(out)
    return (to_host(res),)


# ------------------------------------------------------------------ references


def _last(a: np.ndarray, axis: int) -> np.ndarray:
    return np.moveaxis(np.asarray(a), axis, -1)


def _ref_rows(fn: Callable[..., Any], kind: str) -> Callable[[Inputs], Any]:
    def ref(inp: Inputs) -> Any:
        axis = inp.kwargs.get("axis", -1)
        x = np.asarray(inp.args[0])
        ((exact, scale),) = fn(_last(x, axis))
        if kind == "same":
            return [(np.moveaxis(exact, -1, axis), np.moveaxis(scale, -1, axis))]
        if kind == "reduce":
            if inp.kwargs.get("keepdims", False):
                ax = axis % x.ndim
                return [(np.expand_dims(exact, ax), np.expand_dims(scale, ax))]
            return [(exact, scale)]
        return [(exact, scale)]  # jacobian: batch + (C, C)

    return ref


def _ref_backward(fn: Callable[..., Any]) -> Callable[[Inputs], Any]:
    def ref(inp: Inputs) -> Any:
        axis = inp.kwargs.get("axis", -1)
        ((exact, scale),) = fn(_last(inp.args[0], axis), _last(inp.args[1], axis))
        return [(np.moveaxis(exact, -1, axis), np.moveaxis(scale, -1, axis))]

    return ref


def _ce_kwargs(inp: Inputs) -> dict[str, Any]:
    keys = ("weight", "ignore_index", "reduction", "label_smoothing")
    return {k: inp.kwargs[k] for k in keys if k in inp.kwargs}


def ce_parts(inp: Inputs) -> dict[str, np.ndarray]:
    axis = inp.kwargs.get("axis", -1)
    logits, target = np.asarray(inp.args[0]), np.asarray(inp.args[1])
    if target.dtype.kind == "f":
        target = _last(target, axis)
    parts = _oracle.cross_entropy_parts(_last(logits, axis), target, **_ce_kwargs(inp))
    parts["grad"] = np.moveaxis(parts["grad"], -1, axis)
    parts["grad_scale"] = np.moveaxis(parts["grad_scale"], -1, axis)
    return parts


def _ref_ce(which: tuple[str, ...]) -> Callable[[Inputs], Any]:
    def ref(inp: Inputs) -> Any:
        p = ce_parts(inp)
        return [(p[w], p[w + "_scale"]) for w in which]

    return ref


def linear_parts(inp: Inputs) -> dict[str, np.ndarray]:
    kw = _ce_kwargs(inp)
    dt = np.asarray(inp.args[0]).dtype
    work = np.float64 if dt.kind in "biu" else np.promote_types(dt, np.float32)
    return _oracle.linear_cross_entropy_parts(
        inp.args[0],
        inp.args[1],
        inp.args[2],
        linear_bias=inp.kwargs.get("linear_bias"),
        tiny=float(np.finfo(work).tiny),
        **kw,
    )


def _ref_linear(which: tuple[str, ...]) -> Callable[[Inputs], Any]:
    def ref(inp: Inputs) -> Any:
        p = linear_parts(inp)
        out: list[Any] = []
        for w in which:
            if w == "d_linear_bias" and inp.kwargs.get("linear_bias") is None:
                out.append(None)
            else:
                out.append((p[w], p[w + "_scale"]))
        return out

    return ref


_LIN_GRADS = ("loss", "d_input", "d_linear_weight", "d_linear_bias")

OPS: dict[str, OpSpec] = {
    s.name: s
    for s in [
        OpSpec(
            "softmax",
            "rows",
            ("probs",),
            _ref_rows(_oracle.softmax, "same"),
            has_out=True,
        ),
        OpSpec(
            "log_softmax",
            "rows",
            ("log_probs",),
            _ref_rows(_oracle.log_softmax, "same"),
            has_out=True,
        ),
        OpSpec("logsumexp", "rows", ("lse",), _ref_rows(_oracle.logsumexp, "reduce")),
        OpSpec(
            "softmax_jacobian",
            "rows",
            ("jacobian",),
            _ref_rows(_oracle.softmax_jacobian, "jac"),
        ),
        OpSpec(
            "log_softmax_jacobian",
            "rows",
            ("jacobian",),
            _ref_rows(_oracle.log_softmax_jacobian, "jac"),
        ),
        OpSpec(
            "softmax_backward",
            "backward",
            ("grad_in",),
            _ref_backward(_oracle.softmax_backward),
            specials=("nan",),
        ),
        OpSpec(
            "log_softmax_backward",
            "backward",
            ("grad_in",),
            _ref_backward(_oracle.log_softmax_backward),
            specials=("nan",),
        ),
        OpSpec("cross_entropy", "ce", ("loss",), _ref_ce(("loss",)), reduces=True),
        OpSpec(
            "cross_entropy_grad",
            "ce",
            ("grad",),
            _ref_ce(("grad",)),
            has_out=True,
            reduces=True,
        ),
        OpSpec(
            "cross_entropy_with_grad",
            "ce",
            ("loss", "grad"),
            _ref_ce(("loss", "grad")),
            has_out=True,
            reduces=True,
        ),
        OpSpec(
            "linear_cross_entropy",
            "linear",
            ("loss",),
            _ref_linear(("loss",)),
            specials=("nan",),
            reduces=True,
        ),
        OpSpec(
            "linear_cross_entropy_with_grad",
            "linear",
            _LIN_GRADS,
            _ref_linear(_LIN_GRADS),
            specials=("nan",),
            reduces=True,
        ),
    ]
}
"""Every public op, by name."""

FAMILIES = ("rows", "backward", "ce", "linear")


def ops_of(*families: str, where: Callable[[OpSpec], bool] | None = None) -> list[str]:
    return [
        k
        for k, s in OPS.items()
        if s.family in families and (where is None or where(s))
    ]


# -------------------------------------------------------------------- builders


def _values(
    rng: np.random.Generator, shape: tuple[int, ...], regime: str, n_classes: int = 1
) -> np.ndarray:
    """Logit values (float64) of a named regime (``n_classes``: the row width,
    which "centred" needs)."""
    if regime == "normal":
        return rng.standard_normal(shape) * 3
    if regime == "wide":
        return rng.standard_normal(shape) * 60
    if regime == "ties":
        return rng.integers(-2, 3, shape).astype(np.float64)
    if regime == "dominant":
        x = rng.standard_normal(shape)
        if x.size:
            x.reshape(-1, shape[-1])[:, 0] += 40
        return x
    if regime == "tiny":
        return rng.standard_normal(shape) * 1e-3
    if regime == "centred":
        # lse near 0: the row max and log(sum) cancel
        return rng.standard_normal(shape) * 0.5 - np.log(max(n_classes, 1))
    if regime == "near_zero":
        # lse near 0 without cancelling: the row max near 0 (exactly 0 in some
        # rows) leads the rest by 15-45, so lse is log1p of a tiny sum
        x = -rng.uniform(15, 45, shape)
        if x.size:
            rows = x.reshape(-1, shape[-1])
            top = rng.standard_normal(rows.shape[0]) * 1e-4
            top[rng.random(rows.shape[0]) < 0.5] = 0.0
            rows[:, 0] = top
        return x
    if regime == "shifted":
        return rng.standard_normal(shape) * 2 + rng.choice([-700.0, 500.0, 1e4])
    if regime == "huge":
        base = rng.choice([1e4, -1e4, 3e38, -3e38])
        return base * rng.uniform(0.5, 1.0, shape) * rng.choice([-1.0, 1.0], shape)
    if regime == "near_huge":
        return rng.choice([1e4, -1e4]) + rng.standard_normal(shape) * 4
    raise ValueError(regime)


REGIMES = (
    "normal",
    "wide",
    "ties",
    "dominant",
    "tiny",
    "shifted",
    "centred",
    "near_zero",
)
EXTREME_REGIMES = ("huge", "near_huge")


def _cast(x: np.ndarray, dtype: Any) -> np.ndarray:
    with np.errstate(over="ignore"):
        dt = np.dtype(dtype)
        if dt.kind == "f":
            fmax = float(np.finfo(dt).max)
            x = np.clip(x, -fmax, fmax)
        return np.asarray(x).astype(dt)


def build(op: str, spec: dict[str, Any], dtype: Any) -> Inputs:
    """Inputs of ``op`` for ``spec`` (from ``_strategies``), in ``dtype``."""
    s = OPS[op]
    rng = np.random.default_rng(spec.get("seed", 0))
    regime = spec.get("regime", "normal")
    if s.family in ("rows", "backward"):
        axis = spec["axis"]
        shape = spec["shape"]
        x = _cast(_values(rng, shape, regime, spec["C"]), dtype)
        kwargs: dict[str, Any] = {"axis": axis}
        if op == "logsumexp" and spec.get("keepdims") is not None:
            kwargs["keepdims"] = spec["keepdims"]
        if s.family == "rows":
            return Inputs([x], kwargs, 0, axis)
        if regime in EXTREME_REGIMES:  # huge gradients: no overflow either
            grad = _cast(_values(rng, shape, "huge"), dtype)
        else:
            grad = rng.standard_normal(shape) * spec.get("grad_scale", 1.0)
            grad = _cast(grad, dtype)
        logits = _last(x.astype(np.float64), axis)
        with np.errstate(all="ignore"):
            ((lp, _),) = _oracle.log_softmax(logits)
            second = np.exp(lp) if op == "softmax_backward" else lp
        second = _cast(np.moveaxis(np.asarray(second, np.float64), -1, axis), dtype)
        return Inputs([grad, second], kwargs, 0, axis)
    if s.family == "ce":
        batch, n_classes, axis = spec["batch"], spec["C"], spec["axis"]
        ndim = len(batch) + 1
        ax = axis % ndim
        shape = batch[:ax] + (n_classes,) + batch[ax:]
        x = _cast(_values(rng, shape, regime, n_classes), dtype)
        target = _target(rng, spec, batch, n_classes, shape, ax, dtype)
        kwargs = _ce_options(rng, spec, n_classes, dtype)
        kwargs["axis"] = axis
        return Inputs([x, target], kwargs, 0, axis, 1)
    # linear
    n, d, n_classes = spec["N"], spec["D"], spec["C"]
    if regime == "huge":
        # finite logits: |z| <= sum_d |x_d| |w_cd| <= 3e38 / 4
        xin = _cast(_values(rng, (n, d), regime) / (4 * d), dtype)
        wl = _cast(rng.uniform(-1, 1, (n_classes, d)), dtype)
    elif regime == "centred":
        # logits near -log(C), so that lse is near 0 as in the row ops: a
        # constant first feature whose weight is -log(C), the rest small
        xin = rng.standard_normal((n, d)) * 0.5
        wl = rng.standard_normal((n_classes, d)) * (0.5 / np.sqrt(d))
        if d:
            xin[:, 0] = 1.0
            wl[:, 0] -= np.log(max(n_classes, 1))
        xin, wl = _cast(xin, dtype), _cast(wl, dtype)
    else:
        xin = _cast(_values(rng, (n, d), regime), dtype)
        wl = _cast(rng.standard_normal((n_classes, d)) * 3 / np.sqrt(d), dtype)
    target = _target(rng, spec, (n,), n_classes, (n, n_classes), 1, dtype)
    kwargs = _ce_options(rng, spec, n_classes, dtype)
    if spec.get("bias"):
        kwargs["linear_bias"] = _cast(rng.standard_normal(n_classes), dtype)
    if spec.get("chunk_size") is not None:
        kwargs["chunk_size"] = spec["chunk_size"]
    return Inputs([xin, wl, target], kwargs, 0, -1, 2)


def _target(
    rng: np.random.Generator,
    spec: dict[str, Any],
    batch: tuple[int, ...],
    n_classes: int,
    shape: tuple[int, ...],
    ax: int,
    dtype: Any,
) -> np.ndarray:
    if spec.get("target", "index") == "prob":
        u = rng.uniform(0, 1, shape)
        # some zeros, but never a row without mass (its value for NaN logits is
        # left open by the contract)
        keep = (rng.uniform(0, 1, shape) < 0.8) | (u == u.max(ax, keepdims=True))
        t = u * keep
        t = t / t.sum(ax, keepdims=True)
        return _cast(t, dtype)
    t = rng.integers(0, n_classes, batch).astype(spec.get("target_dtype", "int64"))
    frac = spec.get("ignore_frac", 0.0)
    if frac and t.size:
        ignore = spec.get("ignore_index", -100)
        mask = rng.uniform(0, 1, batch) < frac
        t[mask] = ignore
    return t


def _ce_options(
    rng: np.random.Generator, spec: dict[str, Any], n_classes: int, dtype: Any
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if spec.get("weighted"):
        w = rng.uniform(0.1, 2.0, n_classes)
        if spec.get("zero_weight") and n_classes > 1:
            w[rng.integers(0, n_classes)] = 0.0
        kwargs["weight"] = _cast(w, dtype)
    for key in ("ignore_index", "reduction", "label_smoothing"):
        if key in spec:
            kwargs[key] = spec[key]
    return kwargs


# --------------------------------------------------------------- row selection


def rows_view(a: np.ndarray, axis: int) -> np.ndarray:
    """A copy of ``a`` as ``(rows, C)`` with the class axis last."""
    return np.ascontiguousarray(np.moveaxis(a, axis, -1)).reshape(-1, a.shape[axis])


def from_rows(rows: np.ndarray, like: np.ndarray, axis: int) -> np.ndarray:
    moved = np.moveaxis(like, axis, -1).shape
    return np.moveaxis(rows.reshape(moved), -1, axis)
