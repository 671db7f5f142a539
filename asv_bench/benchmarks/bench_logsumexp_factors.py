"""logsumexp with SciPy's factors ``b``: non-negative (``weights``), one a
class (``class_weights``: ``b`` of shape ``(C,)``, a mixture's weights), and
signed with ``return_sign`` (``signed``).

The numba backend computes it in its own kernel (``logsumexp_weighted_rows``,
one read of ``x`` and of ``b``); a backend without one gets SciPy's formula
from the core. These cases time it against a copy of the logits, PyTorch's
``logsumexp(x + log(b))`` (not ``signed``: PyTorch has no signed
logsumexp) and JAX's ``jax.nn.logsumexp(b=...)``.
"""

# asv reads params / param_names as class attributes holding lists.
# ruff: noqa: RUF012

from __future__ import annotations

from .common import BACKENDS, DTYPES, _VariantOp, _VariantPeers

FACTOR_SHAPES = ["4096x1000", "1024x32000", "65536x16", "32x10"]


class LogSumExpWeights(_VariantOp):
    variant = "weights"
    params = [["logsumexp"], BACKENDS, FACTOR_SHAPES, DTYPES]


class LogSumExpWeightsPeers(_VariantPeers):
    """softcore / the peer, non-negative factors."""

    variant = "weights"
    params = [["logsumexp"], BACKENDS, FACTOR_SHAPES, DTYPES, ["torch", "jax"]]


class LogSumExpClassWeights(_VariantOp):
    variant = "class_weights"
    params = [["logsumexp"], BACKENDS, FACTOR_SHAPES, DTYPES]


class LogSumExpClassWeightsPeers(_VariantPeers):
    """softcore / the peer, one non-negative factor a class."""

    variant = "class_weights"
    params = [["logsumexp"], BACKENDS, FACTOR_SHAPES, DTYPES, ["torch", "jax"]]


class LogSumExpSigned(_VariantOp):
    variant = "signed"
    params = [["logsumexp"], BACKENDS, FACTOR_SHAPES, DTYPES]


class LogSumExpSignedPeers(_VariantPeers):
    """softcore / JAX, signed factors with the sign returned."""

    variant = "signed"
    params = [["logsumexp"], BACKENDS, FACTOR_SHAPES, DTYPES, ["jax"]]
