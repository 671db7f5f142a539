"""float32 rows that reach every branch of the kernels' float32 exp, and their ULP
measure: shared by the emulated tests and the tests on a device (where -ftz, which
the host emulation cannot show, is in force)."""

from __future__ import annotations

import numpy as np


def ulps32(got, want, floor=0.0):
    """|got - want| in float32 ULPs of max(|want|, floor) (2^-149 at subnormals)."""
    got = np.asarray(got, dtype=np.float64)
    want32 = np.maximum(np.abs(want), floor).astype(np.float32)
    ulp = np.spacing(want32).astype(np.float64)
    diff = np.where(got == want, 0.0, np.abs(got - want))
    return diff / ulp


def branch_rows():
    """float32 rows whose probabilities reach every branch of the float32 exp.

    Row 0: shifts from 0 down past -87 (subnormal results, from double exp) and past
    -104 (zero), plus a -inf entry. Row 1: logits near 1e4, so x - m is exact only as a
    pair. Row 2: +-3e38 beside subnormal inputs. Row 3: tiny logits around 1e-40.
    Row 4: one logit 95 above the rest, so that every other thread's factor
    exp(mc - lse) is a float subnormal (about 5e-42) and its products are too.
    """
    c = 64
    x = np.zeros((5, c), np.float32)
    x[0] = -np.linspace(0.0, 110.0, c, dtype=np.float32)
    x[0, 5] = -np.inf
    x[1] = 1e4 + np.linspace(-30.0, 0.0, c, dtype=np.float32) * np.float32(1.37)
    x[2] = np.float32(1e-40)
    x[2, :4] = [3e38, -3e38, 2.9e38, -1e-41]
    x[3] = np.linspace(-1e-40, 1e-40, c, dtype=np.float32)
    x[4] = np.linspace(-3.0, 0.0, c, dtype=np.float32)
    x[4, 40] = 95.0
    return x


def softmax64(x):
    """softmax and log_softmax of float32 rows in float64 math, as (x - m) - log(s)."""
    x64 = np.asarray(x, dtype=np.float64)
    m = x64.max(axis=1, keepdims=True)
    logp = (x64 - m) - np.log(np.exp(x64 - m).sum(axis=1, keepdims=True))
    return np.exp(logp), logp
