"""Shared checks of the suite: call an op and hold every output to its reference."""

from __future__ import annotations

from typing import Any

import numpy as np

from softcore.testing._assert import assert_identical, assert_ulp
from softcore.testing._cases import OPS, Inputs
from softcore.testing._tolerances import tolerance


def result_dtype(inputs: Inputs) -> np.dtype[Any]:
    dt = inputs.x.dtype
    return np.dtype(np.float64) if dt.kind in "biu" else np.dtype(dt)


def check_against_reference(
    sc: Any,
    backend: Any,
    op: str,
    inputs: Inputs,
    *,
    ctx: dict[str, Any] | None = None,
    record: bool = True,
    got: tuple[Any, ...] | None = None,
) -> tuple[Any, ...]:
    """Call ``op`` (unless ``got`` is given) and compare each output with the oracle.

    Also checks the result dtype and that the inputs were left as they were.
    """
    spec = OPS[op]
    ctx = dict(ctx or {})
    ctx.setdefault("shape", inputs.x.shape)
    want_dtype = result_dtype(inputs)
    if got is None:
        before = inputs.copy()
        got = spec.call(sc, inputs, backend)
        for (k, a), (_, b) in zip(inputs.arrays(), before.arrays(), strict=True):
            assert_identical(
                a, b, what=f"{op}[{backend.name}] modified its input {k!r}", **ctx
            )
    refs = spec.reference(inputs)
    names = spec.outputs
    if len(got) != len(refs):
        raise AssertionError(
            f"{op}[{backend.name}]: expected {len(refs)} results {names}, "
            f"received {len(got)}"
        )
    tol = tolerance(op, want_dtype)
    for name, g, ref in zip(names, got, refs, strict=True):
        if ref is None:
            if g is not None:
                raise AssertionError(
                    f"{op}[{backend.name}] {name}: expected None (no bias given), "
                    f"received {g!r}"
                )
            continue
        if g is None:
            raise AssertionError(
                f"{op}[{backend.name}] {name}: expected an array, received None"
            )
        if g.dtype != want_dtype:
            raise AssertionError(
                f"{op}[{backend.name}] {name}: wrong dtype for {inputs.x.dtype} input: "
                f"expected {want_dtype}, received {g.dtype} ({ctx})"
            )
        exact, scale = ref
        assert_ulp(
            g,
            exact,
            scale,
            tol=tol,
            op=op,
            output=name,
            backend=backend.name,
            dtype=want_dtype,
            record=record,
            **ctx,
        )
    return got
