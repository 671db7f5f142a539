"""Fixtures of the suite: the backend under test and the op table."""

from __future__ import annotations

from typing import Any

import pytest

from softcore.testing._cases import OPS
from softcore.testing._runtime import CONFIG


@pytest.fixture(scope="session")
def sc() -> Any:
    import softcore

    return softcore


@pytest.fixture(scope="session")
def backend(sc: Any) -> Any:
    """The backend object under test (``--softcore-backend``)."""
    if CONFIG.backend is None:
        pytest.skip("no backend chosen: pass --softcore-backend NAME")
    obj = sc.get_backend(CONFIG.backend)
    avail = obj.available()
    if avail is not True:
        pytest.skip(f"backend {CONFIG.backend!r} is not available here: {avail}")
    return obj


@pytest.fixture(params=list(OPS))
def op(request: pytest.FixtureRequest) -> str:
    """Every public op, by name (numbagg style: one table, one fixture)."""
    return request.param
