"""Run the conformance kit on every installed backend, as a third party would.

Each backend gets ``python -m softcore.testing NAME`` in a fresh process (the same
command as ``python -m softcore check NAME``); unavailable backends are skipped with
the reason the registry gives.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import softcore


def _backends() -> list[object]:
    params = []
    for info in softcore.list_backends():
        marks = []
        if info.available is not True:
            marks.append(
                pytest.mark.skip(
                    reason=f"backend {info.name!r} unavailable: {info.available}"
                )
            )
        params.append(pytest.param(info.name, id=info.name, marks=marks))
    return params


@pytest.mark.parametrize("name", _backends())
def test_backend_passes_the_kit(name: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "softcore.testing", name],
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = proc.stdout + proc.stderr
    verdict = (
        out[out.find("softcore conformance kit:") :]
        if "softcore conformance kit:" in out
        else out[-4000:]
    )
    assert proc.returncode == 0, f"the kit failed backend {name!r}:\n{verdict}"
    assert "VERDICT: PASS" in out, verdict
