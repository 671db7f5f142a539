"""Results do not depend on the number of threads (threaded backends only)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from softcore.testing import _cases
from softcore.testing._assert import assert_identical
from softcore.testing._cases import OPS

# Shapes that take a row-parallel path (many short rows) and a split-row path (few
# very long rows); Jacobians are (rows, C, C), so theirs stay smaller.
THREAD_SHAPES = {
    "rows": [(4097, 33), (3, 200003)],
    "jacobian": [(4097, 9), (3, 701)],
    "ce": [(4097, 33), (3, 200003)],
    "linear": [(4097, 16, 33), (3, 8, 200003)],
}


def _spec(op: str, shape: tuple[int, ...], seed: int) -> dict[str, Any]:
    fam = OPS[op].family
    base: dict[str, Any] = {"seed": seed, "regime": "wide"}
    if fam in ("rows", "backward"):
        return {**base, "shape": shape, "axis": -1, "C": shape[-1]}
    opts = {
        "weighted": True,
        "reduction": "mean",
        "label_smoothing": 0.1,
        "ignore_frac": 0.3,
        "ignore_index": -100,
        "target": "index",
    }
    if fam == "ce":
        return {**base, **opts, "batch": shape[:1], "C": shape[1], "axis": -1}
    return {**base, **opts, "N": shape[0], "D": shape[1], "C": shape[2], "bias": True}


def _cases_for() -> Iterator[Any]:
    for name, s in OPS.items():
        kind = (
            "jacobian"
            if "jacobian" in name
            else {"backward": "rows"}.get(s.family, s.family)
        )
        for shape in THREAD_SHAPES[kind]:
            yield pytest.param(name, shape, id=f"{name}-{'x'.join(map(str, shape))}")
    yield pytest.param(
        "cross_entropy_with_grad", (4097, 33), "prob", id="cross_entropy_with_grad-prob"
    )


@pytest.fixture(scope="module")
def thread_counts(backend: Any) -> Iterator[tuple[int, int]]:
    if not getattr(backend, "threaded", False):
        pytest.skip(f"backend {backend.name!r} is not threaded (threaded=False)")
    for attr in ("set_num_threads", "get_num_threads"):
        if not callable(getattr(backend, attr, None)):
            pytest.fail(
                f"backend {backend.name!r} says threaded=True but has no {attr}()"
            )
    initial = int(backend.get_num_threads())
    most = initial if initial > 1 else 2
    try:
        backend.set_num_threads(most)
    except Exception as exc:
        pytest.skip(f"backend {backend.name!r} cannot run {most} threads here: {exc}")
    try:
        yield 1, most
    finally:
        backend.set_num_threads(initial)


@pytest.mark.parametrize(
    ("op", "shape", "target"),
    [(p.values + ("index",))[:3] for p in _cases_for()],
    ids=[p.id for p in _cases_for()],
)
def test_thread_invariance(
    sc: Any,
    backend: Any,
    thread_counts: tuple[int, int],
    op: str,
    shape: tuple[int, ...],
    target: str,
) -> None:
    """Bitwise the same results with one thread and with all of them."""
    one, most = thread_counts
    spec = _spec(op, shape, 7)
    if target == "prob":
        spec["target"] = "prob"
    inputs = _cases.build(op, spec, "float32")
    results = {}
    for n in (one, most):
        backend.set_num_threads(n)
        results[n] = OPS[op].call(sc, inputs, backend)
    backend.set_num_threads(most)
    for name, a, b in zip(OPS[op].outputs, results[one], results[most], strict=True):
        if b is None:
            continue
        assert_identical(
            a,
            b,
            what=f"{op}[{backend.name}] {name}: {one} thread vs {most} threads",
            shape=shape,
            target=target,
        )


@pytest.mark.parametrize("op", ["softmax", "cross_entropy_with_grad", "logsumexp"])
def test_concurrent_calls(sc: Any, backend: Any, op: str) -> None:
    """Calls from several Python threads at once give bitwise the results of the
    same calls made one after another (no shared scratch, no crash)."""
    from concurrent.futures import ThreadPoolExecutor

    specs = [_spec(op, (257 + 64 * i, 33), 100 + i) for i in range(8)]
    inputs = [_cases.build(op, s, "float32") for s in specs]
    serial = [OPS[op].call(sc, inp, backend) for inp in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            concurrent = list(
                pool.map(lambda inp: OPS[op].call(sc, inp, backend), inputs)
            )
            for k, (a, b) in enumerate(zip(concurrent, serial, strict=True)):
                for name, x, y in zip(OPS[op].outputs, a, b, strict=True):
                    assert_identical(
                        x,
                        y,
                        what=f"{op}[{backend.name}] {name}: call {k} from 4 threads at "
                        "once vs alone",
                    )
