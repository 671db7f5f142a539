"""The kit fails broken backends, naming the broken property; a loopback passes.

Each fake wraps the reference backend and breaks one thing.  It is registered in a
fresh process (``softcore._registry.register``) which then runs the kit on it with
``softcore.testing.main``; the test reads the verdict table.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest


class Wrapped:
    """The reference backend under another name; subclasses override kernels."""

    priority = -1000
    threaded = False

    def __init__(self, name: str) -> None:
        from softcore._reference import backend

        self._ref = backend
        self.name = name
        self.version = "0"
        self.xp = np

    def available(self) -> bool | str:
        return True

    def accepts(self, x: Any) -> bool:
        return isinstance(x, np.ndarray)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._ref, attr)


class NoMaxShift(Wrapped):
    """exp(x) / sum(exp(x)) without subtracting the row maximum."""

    def softmax_rows(self, x: Any, out: Any) -> None:
        with np.errstate(all="ignore"):
            e = np.exp(x)
            out[...] = e / e.sum(axis=1, keepdims=True)


class GradSign(Wrapped):
    """Cross-entropy gradient with the sign flipped."""

    def cross_entropy_grad_rows(self, *args: Any) -> None:
        self._ref.cross_entropy_grad_rows(*args)
        args[-1][...] *= -1


class NanLeak(Wrapped):
    """Special values are quietly replaced, so NaN rows come out as numbers."""

    def log_softmax_rows(self, x: Any, out: Any) -> None:
        self._ref.log_softmax_rows(
            np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=-1e30), out
        )


class ThreadDependent(Wrapped):
    """Claims threads, and the logsumexp's last bit depends on their number."""

    threaded = True
    _n = 2

    def set_num_threads(self, n: int) -> None:
        self._n = int(n)

    def get_num_threads(self) -> int:
        return self._n

    def logsumexp_rows(self, x: Any, out: Any) -> None:
        self._ref.logsumexp_rows(x, out)
        if self._n > 1:
            out[...] = np.nextafter(out, np.inf)


class MutatesInput(Wrapped):
    """Uses its input as scratch space."""

    def logsumexp_rows(self, x: Any, out: Any) -> None:
        self._ref.logsumexp_rows(x, out)
        x -= 1.0


class HalfPrecision(Wrapped):
    """Computes softmax in float16 whatever the dtype."""

    def softmax_rows(self, x: Any, out: Any) -> None:
        tmp = np.empty(x.shape, np.float32)
        self._ref.softmax_rows(x.astype(np.float32), tmp)
        out[...] = tmp.astype(np.float16)


class IgnoresWeight(Wrapped):
    """Probability-target cross-entropy that drops the class weights."""

    def cross_entropy_prob_rows(
        self, x: Any, target: Any, smoothing: Any, class_weight: Any, loss_out: Any
    ) -> None:
        self._ref.cross_entropy_prob_rows(
            x, target, smoothing, np.ones_like(class_weight), loss_out
        )


class FusedMeanOverRows(Wrapped):
    """A fused small loss (the optional ``cross_entropy_index_sum``) that divides
    the mean by the row count, forgetting ignored rows and class weights."""

    def cross_entropy_index_sum(
        self, x: Any, target: Any, cw: Any, ignore_index: int, smoothing: float
    ) -> Any:
        import softcore as sc

        c = x.shape[1]
        bad = (target != ignore_index) & ((target < 0) | (target >= c))
        if bad.any():
            return int(np.argmax(bad)), 0.0, 0.0
        total = sc.cross_entropy(
            x, target, weight=cw if cw.size else None, ignore_index=ignore_index,
            label_smoothing=smoothing, reduction="sum", backend="numpy",
        )  # fmt: skip
        return -1, float(total), float(len(target))


class FusedGrad(Wrapped):
    """A correct optional ``cross_entropy_index_grad_sum`` (the fused small
    loss with its gradient), from the reference's summed loss and gradient
    scaled by the mean's normaliser (the subclass below breaks it)."""

    def normaliser(self, target: Any, cw: Any, ignore_index: int) -> float:
        keep = target != ignore_index
        if not cw.size:
            return float(keep.sum())
        return float((cw[np.where(keep, target, 0)] * keep).sum())

    def cross_entropy_index_grad_sum(
        self, x: Any, target: Any, cw: Any, ignore_index: int, smoothing: float,
        mean: bool, grad_out: Any,
    ) -> Any:  # fmt: skip
        import softcore as sc

        c = x.shape[1]
        bad = (target != ignore_index) & ((target < 0) | (target >= c))
        if bad.any():
            return int(np.argmax(bad)), 0.0, 0.0  # nothing written
        total, g = sc.cross_entropy_with_grad(
            x, target, weight=cw if cw.size else None, ignore_index=ignore_index,
            label_smoothing=smoothing, reduction="sum", backend="numpy",
        )  # fmt: skip
        norm = self.normaliser(target, cw, ignore_index)
        if mean and norm:
            g = g / norm
        elif mean:  # a mean over no weight: kept rows NaN (0/0), as PyTorch's
            g = np.where((target != ignore_index)[:, None], np.nan, 0.0)
        grad_out[...] = g
        return -1, float(total), norm


class FusedGradMeanOverRows(FusedGrad):
    """``cross_entropy_index_grad_sum`` whose mean divides by the row count,
    forgetting ignored rows and class weights."""

    def normaliser(self, target: Any, cw: Any, ignore_index: int) -> float:
        return float(len(target))


class IndexRows(Wrapped):
    """A correct optional ``cross_entropy_index_rows`` on NumPy arrays: the
    reference's (the subclasses below break it)."""

    def cross_entropy_index_rows(self, *args: Any) -> Any:
        from softcore._reference import index_rows

        return index_rows(*args)


class IndexRowsWritesFirst(IndexRows):
    """``cross_entropy_index_rows`` that zeroes the gradient before it checks the
    targets, so a bad target leaves ``out`` written."""

    def cross_entropy_index_rows(self, *args: Any) -> Any:
        grad_out = args[-1]
        if grad_out is not None:
            grad_out[...] = 0.0
        return super().cross_entropy_index_rows(*args)


class IndexRowsMeanOverRows(IndexRows):
    """``cross_entropy_index_rows`` whose gradient divides by the row count,
    forgetting ignored rows and class weights (the loss is right)."""

    def cross_entropy_index_rows(
        self, x: Any, target: Any, cw: Any, ignore_index: int, smoothing: float,
        mean: bool, loss_rows: Any, loss_out: Any, grad_out: Any,
    ) -> Any:  # fmt: skip
        from softcore._reference import index_rows

        check = index_rows(
            x, target, cw, ignore_index, smoothing, mean, loss_rows, loss_out, None
        )
        if grad_out is not None and check[0] < 0:
            index_rows(
                x, target, cw, ignore_index, smoothing, False, loss_rows, None, grad_out
            )
            if mean:
                grad_out /= len(target)
        return check


class BackwardNoDot(Wrapped):
    """softmax_backward as p * g, the sum(g * p) term forgotten."""

    def softmax_backward_rows(self, grad: Any, probs: Any, out: Any) -> None:
        out[...] = probs * grad


def _plain_log_s(x: Any) -> tuple[Any, Any]:
    """``(x - m, log S)`` with ``S`` rounded before its log, as SciPy's
    ``log_softmax`` and PyTorch's take it: ``log S`` is 0 where the row
    maximum dominates (``S - 1`` below an ULP of 1)."""
    with np.errstate(all="ignore"):
        z = x - x.max(axis=1, keepdims=True)
        return z, np.log(np.exp(z).sum(axis=1, keepdims=True))


class RoundedLogS(Wrapped):
    """log_softmax of the rounded sum: its largest entry is 0 where the maximum
    dominates (``[0, -40]``: -4.2e-18)."""

    def log_softmax_rows(self, x: Any, out: Any) -> None:
        z, log_s = _plain_log_s(x)
        out[...] = z - log_s


class RoundedLogSLoss(Wrapped):
    """The class-index loss from the rounded sum's log: a confident row's loss
    (its target the dominating class) is 0."""

    def cross_entropy_rows(
        self, x: Any, target: Any, alpha: Any, beta: Any, cw: Any, loss_out: Any
    ) -> None:
        z, log_s2 = _plain_log_s(x)
        log_s = log_s2[:, 0]
        with np.errstate(all="ignore"):
            loss = alpha * (log_s - z[np.arange(z.shape[0]), target])
            loss += np.where(beta != 0, beta * (cw.sum() * log_s - z @ cw), 0.0)
        loss_out[...] = np.where((alpha != 0) | (beta != 0), loss, 0.0)


class RoundedArgumentJacobian(Wrapped):
    """Within the contract, not broken: a softmax Jacobian from p = exp((x - m) - ls)
    (in float64, as the reference), the argument rounded, which puts |x - lse| / 2
    ulps on p, where the reference's exp(x - m) / S does not: the Jacobian's tolerance
    (scaled by exp's condition number) allows that."""

    def softmax_jacobian_rows(self, x: Any, out: Any) -> None:
        from softcore._reference import _shifted

        c = x.shape[1]
        sh = _shifted(x)
        with np.errstate(all="ignore"):
            p = np.exp(sh.z - sh.log_s)
        jb = -p[:, :, None] * p[:, None, :]
        jb.reshape(-1, c * c)[:, :: c + 1] += p
        out[...] = jb


class WeightedNoMask(Wrapped):
    """A ``logsumexp_weighted_rows`` hook that takes ``x + log(b)`` through
    the logsumexp kernel for each sign, so that a zero factor's ``log 0``
    meets a NaN or +inf ``x`` as NaN instead of removing it."""

    def logsumexp_weighted_rows(self, x: Any, b: Any, out: Any, sign: Any) -> None:
        with np.errstate(all="ignore"):
            parts = []
            for keep, f in ((b > 0, b), (b < 0, -b)):
                y = (x + np.log(np.maximum(f, 0))).astype(x.dtype)
                lse = np.empty(x.shape[0], dtype=x.dtype)
                self._ref.logsumexp_rows(y, lse)
                parts.append(np.where(keep.any(axis=1), lse, -np.inf))
            hi, lo = np.maximum(*parts), np.minimum(*parts)
            out[...] = hi + np.log1p(-np.exp(lo - hi))
            sign[...] = np.sign(parts[0] - parts[1])


class WeightedSign(Wrapped):
    """A ``logsumexp_weighted_rows`` hook whose sign is always 1."""

    def logsumexp_weighted_rows(self, x: Any, b: Any, out: Any, sign: Any) -> None:
        with np.errstate(all="ignore"):
            m = np.where(b != 0, x, -np.inf).max(axis=1, keepdims=True)
            s = (np.where(b != 0, b * np.exp(x - m), 0.0)).sum(axis=1)
            out[...] = m[:, 0] + np.log(np.abs(s))
            sign[...] = 1.0


FAKES = {
    "kit-weighted-no-mask": WeightedNoMask,
    "kit-weighted-sign": WeightedSign,
    "kit-no-max-shift": NoMaxShift,
    "kit-grad-sign": GradSign,
    "kit-nan-leak": NanLeak,
    "kit-thread-dependent": ThreadDependent,
    "kit-mutates-input": MutatesInput,
    "kit-half-precision": HalfPrecision,
    "kit-ignores-weight": IgnoresWeight,
    "kit-fused-mean-over-rows": FusedMeanOverRows,
    "kit-fused-grad": FusedGrad,
    "kit-fused-grad-mean-over-rows": FusedGradMeanOverRows,
    "kit-index-rows": IndexRows,
    "kit-index-rows-writes-first": IndexRowsWritesFirst,
    "kit-index-rows-mean-over-rows": IndexRowsMeanOverRows,
    "kit-loopback": Wrapped,
    "kit-backward-no-dot": BackwardNoDot,
    "kit-rounded-argument-jacobian": RoundedArgumentJacobian,
    "kit-rounded-log-s": RoundedLogS,
    "kit-rounded-log-s-loss": RoundedLogSLoss,
}


# The kit's settings inherit the phases of the profile loaded before its
# properties are imported.
_NO_SHRINK = """
        from hypothesis import Phase, settings
        settings.register_profile(
            "no-shrink", phases=[Phase.explicit, Phase.reuse, Phase.generate]
        )
        settings.load_profile("no-shrink")"""


def _run_kit(name: str, *args: str, shrink: bool = True) -> tuple[int, str]:
    """Register fake ``name`` in a fresh process and run the kit on it;
    ``shrink=False`` loads a Hypothesis profile without the shrink phase (a
    broken fake's failures are reported as first found: the minimal example a
    user would want costs 3-4 s a failing property here)."""
    here = Path(__file__).resolve()
    profile = "" if shrink else _NO_SHRINK
    code = textwrap.dedent(f"""
        import importlib.util, sys{profile}
        spec = importlib.util.spec_from_file_location("kit_fakes", {str(here)!r})
        fakes = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(fakes)
        from softcore import _registry
        _registry.register(fakes.FAKES[{name!r}]({name!r}))
        import softcore.testing
        sys.exit(softcore.testing.main({[name, *args]!r}))
    """)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600
    )
    return proc.returncode, proc.stdout + proc.stderr


BROKEN = [
    # fake, the properties to run (-k), the property that must FAIL, a message phrase
    (
        "kit-no-max-shift",
        "extreme_logits and softmax",
        "extreme_logits",
        "softmax[kit-no-max-shift] probs",
    ),
    (
        "kit-grad-sign",
        "cross_entropy_grad_finite_differences",
        "cross_entropy_grad_finite_differences",
        "disagrees with central finite differences",
    ),
    (
        "kit-nan-leak",
        "special_rows_isolated and log_softmax",
        "special_rows_isolated",
        "expected nan",
    ),
    (
        "kit-thread-dependent",
        "thread_invariance and logsumexp",
        "thread_invariance",
        "1 thread vs 2 threads",
    ),
    ("kit-mutates-input", "accuracy and logsumexp", "accuracy", "modified its input"),
    (
        "kit-half-precision",
        "accuracy and softmax and not log",
        "accuracy",
        "ULP > tolerance",
    ),
    (
        "kit-ignores-weight",
        "cross_entropy_matches_torch or (accuracy and cross_entropy)",
        "accuracy",
        "cross_entropy[kit-ignores-weight] loss",
    ),
    (
        "kit-backward-no-dot",
        "backward_is_vector_jacobian_product",
        "backward_is_vector_jacobian_product",
        "vs g.J",
    ),
    (
        "kit-fused-mean-over-rows",
        "zero_total_weight or all_ignored",
        "zero_total_weight",
        "expected loss nan",
    ),
    (
        "kit-fused-grad-mean-over-rows",
        "cross_entropy_grad_finite_differences",
        "cross_entropy_grad_finite_differences",
        "disagrees with central finite differences",
    ),
    (
        "kit-index-rows-writes-first",
        "bad_input_raises",
        "bad_input_raises",
        "out was written before the error",
    ),
    (
        "kit-rounded-log-s",
        "mpmath_literals and log_softmax",
        "mpmath_literals",
        "log_softmax[kit-rounded-log-s] log_probs",
    ),
    (
        "kit-rounded-log-s-loss",
        "mpmath_literal_losses and not with_grad",
        "mpmath_literal_losses",
        "cross_entropy[kit-rounded-log-s-loss] loss",
    ),
    (
        "kit-weighted-no-mask",
        "logsumexp_factors_special_rows",
        "logsumexp_factors_special_rows",
        "logsumexp[kit-weighted-no-mask] lse with b",
    ),
    (
        "kit-weighted-no-mask",
        "logsumexp_factors_against_mpmath and sparse",
        "logsumexp_factors_against_mpmath",
        "logsumexp[kit-weighted-no-mask] lse with b",
    ),
    (
        "kit-weighted-sign",
        "logsumexp_factors_against_mpmath and signed",
        "logsumexp_factors_against_mpmath",
        "logsumexp(b=)[kit-weighted-sign] sign",
    ),
    (
        "kit-index-rows-mean-over-rows",
        "cross_entropy_grad_finite_differences",
        "cross_entropy_grad_finite_differences",
        "disagrees with central finite differences",
    ),
]


@pytest.mark.parametrize(
    ("name", "select", "prop", "phrase"), BROKEN, ids=[b[0] for b in BROKEN]
)
def test_kit_fails_broken_backend(
    name: str, select: str, prop: str, phrase: str
) -> None:
    code, out = _run_kit(name, "-k", select, "--max-examples", "10", shrink=False)
    table = out[out.find("softcore conformance kit:") :]
    assert code != 0, f"the kit passed the broken backend {name!r}:\n{table}"
    assert f"FAIL  {prop}" in out, (
        f"property {prop!r} not reported FAIL for {name!r}:\n{table}"
    )
    assert phrase in out, f"failure message for {name!r} lacks {phrase!r}:\n{table}"
    assert "VERDICT: FAIL" in out, table


def test_kit_passes_loopback() -> None:
    """The reference backend under another name passes every property."""
    code, out = _run_kit("kit-loopback", "--max-examples", "10")
    table = out[out.find("softcore conformance kit:") :]
    assert code == 0, f"the kit failed the loopback backend:\n{table}"
    assert "VERDICT: PASS" in out, table
    assert "FAIL  " not in table, table


def test_kit_passes_a_jacobian_within_its_tolerance() -> None:
    """A Jacobian whose probabilities carry exp's condition number (allowed by its
    tolerance) passes every property that uses the Jacobian: the vector-Jacobian check
    measures the Jacobian's share of the error on the Jacobian's own scale."""
    code, out = _run_kit(
        "kit-rounded-argument-jacobian", "-k", "jacobian", "--max-examples", "25"
    )
    table = out[out.find("softcore conformance kit:") :]
    assert code == 0, f"the kit failed a Jacobian within its tolerance:\n{table}"
    assert "PASS  backward_is_vector_jacobian_product" in table, table


@pytest.mark.parametrize("name", ["kit-index-rows", "kit-fused-grad"])
def test_kit_passes_a_correct_optional_cross_entropy_hook(name: str) -> None:
    """A correct optional ``cross_entropy_index_rows`` (which sees bad targets
    itself), or ``cross_entropy_index_grad_sum``, passes the cross-entropy
    properties and the bad-input one."""
    code, out = _run_kit(
        name,
        "-k",
        "cross_entropy or bad_input or zero_total or ignored",
        "--max-examples",
        "10",
    )
    table = out[out.find("softcore conformance kit:") :]
    assert code == 0, f"the kit failed a correct hook ({name}):\n{table}"
    assert "PASS  bad_input_raises" in table, table
