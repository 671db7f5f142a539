"""Accuracy never worse than scipy.special's on the same inputs."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pytest

from softcore.testing import _cases
from softcore.testing._assert import ulp_errors
from softcore.testing._cases import OPS, Inputs
from softcore.testing._runtime import ACCURACY

SLACK_ULP = 1.0
""""Never worse" allows one ULP: both sides round, and on a battery whose maxima are
each a fraction of an ULP a strict comparison would only measure luck."""

BATTERIES = {
    # name: (rows, C, regime)
    "normal": (64, 33, "normal"),
    "wide": (64, 33, "wide"),
    "ties": (64, 33, "ties"),
    "dominant": (64, 33, "dominant"),
    "tiny": (64, 33, "tiny"),
    "shifted": (64, 33, "shifted"),
    "near_1e4": (64, 33, "near_huge"),
    "huge": (64, 33, "huge"),
    "long_rows": (4, 20001, "normal"),
    "long_centred": (4, 20001, "centred"),  # lse near 0: m and log S cancel
    # lse near 0 where m is near 0 and dominates: SciPy's log1p is exact there
    "near_zero": (64, 33, "near_zero"),
    "long_near_zero": (4, 20001, "near_zero"),
}


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("battery", list(BATTERIES))
def test_never_worse_than_scipy(
    sc: Any, backend: Any, op: str, dtype: str, battery: str
) -> None:
    """On fixed batteries of rows, the backend's largest error (in the op's metric)
    is at most SciPy's plus one ULP."""
    try:
        import scipy.special as sps
    except ImportError:
        pytest.skip("scipy is not installed: nothing to compare with")
    rows, c, regime = BATTERIES[battery]
    rng = np.random.default_rng(zlib.crc32(f"{op} {dtype} {battery}".encode()))
    x = _cases._cast(_cases._values(rng, (rows, c), regime, c), dtype)
    inputs = Inputs([x], {"axis": -1})
    got = OPS[op].call(sc, inputs, backend)[0]
    with np.errstate(all="ignore"):
        theirs = getattr(sps, op)(x, axis=-1)
    ((exact, scale),) = OPS[op].reference(inputs)
    ours = ulp_errors(got, exact, scale, dtype)
    ref = ulp_errors(np.asarray(theirs), exact, scale, dtype)
    out = OPS[op].outputs[0]
    worst, worst_scipy = float(ours.max()), float(ref.max())
    if np.isfinite(worst):
        ACCURACY.note(op, out, dtype, worst)
    if np.isfinite(worst_scipy):
        ACCURACY.note_scipy(op, out, dtype, worst_scipy)
    if not worst <= worst_scipy + SLACK_ULP:
        idx = np.unravel_index(int(np.argmax(ours)), ours.shape)
        raise AssertionError(
            f"{op}[{backend.name}] {dtype} on the {battery!r} battery "
            f"({rows}x{c}): max error {worst:.4g} ULP, worse than "
            f"scipy.special.{op}'s {worst_scipy:.4g} ULP (+{SLACK_ULP:g}); "
            f"worst at {list(map(int, idx))}: exact "
            f"{float(exact[idx])!r}, received {float(got[idx])!r}, scipy "
            f"{float(np.asarray(theirs)[idx])!r}"
        )
