"""Shared fixtures for the core's tests."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from softcore import _registry


@pytest.fixture
def fresh_registry(monkeypatch):
    """A registry that rediscovers entry points, restored afterwards."""
    monkeypatch.delenv("SOFTCORE_BACKEND", raising=False)
    _registry.reset()
    yield _registry
    _registry.reset()


@pytest.fixture
def install_plugin(tmp_path, monkeypatch, fresh_registry):
    """Install a plugin distribution into a temporary path, entry point and all.

    ``install_plugin(dist, {name: "module:attr"}, {module: source})`` writes the
    modules and a ``.dist-info`` with ``entry_points.txt``, puts the folder on
    ``sys.path`` and makes the registry rediscover, exactly as after ``pip install``.
    """

    def install(dist: str, entries: dict[str, str], modules: dict[str, str]) -> Path:
        root = tmp_path / f"site-{dist}"
        root.mkdir()
        for module, source in modules.items():
            (root / f"{module}.py").write_text(textwrap.dedent(source))
        info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n"
        )
        lines = "".join(f"{k} = {v}\n" for k, v in entries.items())
        (info / "entry_points.txt").write_text(f"[softcore.backends]\n{lines}")
        monkeypatch.syspath_prepend(str(root))
        for module in modules:
            sys.modules.pop(module, None)
        _registry.reset()
        return root

    return install


FAKE_BACKEND = """
    import numpy as np
    from softcore._reference import ReferenceBackend

    class Fake(ReferenceBackend):
        name = "{name}"
        priority = {priority}
        version = "9.9"
        calls = 0

        def available(self):
            return {available}

        def softmax_rows(self, x, out):
            type(self).calls += 1
            super().softmax_rows(x, out)

    backend = Fake()
"""


@pytest.fixture
def fake_source():
    """Source of a plugin module: the reference backend under another name."""

    def make(name: str = "fake", priority: int = 1000, available: str = "True"):
        return FAKE_BACKEND.format(name=name, priority=priority, available=available)

    return make


@pytest.fixture
def rng():
    return np.random.default_rng(20261125)
