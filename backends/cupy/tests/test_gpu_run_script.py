"""tools/gpu_run.sh, the one command a GPU machine runs, driven by a stand-in Python.

The script's phases (install, availability gate, kit, tests, bench) are checked here
without a GPU: ``PYTHON`` points at a small shell script that records each call and
answers as the real interpreter would, with the exit codes a test asks for. What the
phases themselves compute is checked by the tests they run, on a GPU.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "gpu_run.sh"

if shutil.which("bash") is None or shutil.which("timeout") is None:
    pytest.skip("bash and timeout (coreutils) are needed", allow_module_level=True)

# The stand-in: logs its arguments, then exits with FAKE_<WHAT> (default 0).
FAKE_PY = r"""#!/usr/bin/env bash
echo "$*" >> "$FAKE_LOG"
case "$*" in
    *"import sys, setuptools"*) exit "${FAKE_SETUPTOOLS:-0}" ;;
    *"available()"*) echo "cupy: stand-in"; exit "${FAKE_AVAILABLE:-0}" ;;
    "-m pip install"*) exit "${FAKE_PIP:-0}" ;;
    "-m softcore check"*) echo "VERDICT: PASS"; exit "${FAKE_KIT:-0}" ;;
    "-m pytest"*) exit "${FAKE_TESTS:-0}" ;;
    *bench_gpu.py*) echo "targets"; exit "${FAKE_BENCH:-0}" ;;
    *) exit 0 ;;
esac
"""


def _run(tmp_path: Path, **codes: int) -> tuple[int, Path, list[str]]:
    fake = tmp_path / "python"
    fake.write_text(FAKE_PY)
    fake.chmod(0o755)
    log = tmp_path / "calls.log"
    log.write_text("")
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PYTHON": str(fake),
        "FAKE_LOG": str(log),
        "WHEELS": str(tmp_path / "no-wheels"),
        **{f"FAKE_{k.upper()}": str(v) for k, v in codes.items()},
    }
    res = subprocess.run(
        ["bash", str(SCRIPT), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return res.returncode, out, log.read_text().splitlines()


def _phases(out: Path) -> dict[str, str]:
    rows = {}
    for line in (out / "summary.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].startswith("rc="):
            rows[parts[0]] = parts[1][3:]
    return rows


def test_every_phase_runs_and_passes(tmp_path):
    rc, out, calls = _run(tmp_path)
    assert rc == 0
    assert _phases(out) == {
        "env": "0",
        "install": "0",
        "info": "0",
        "kit": "0",
        "tests": "0",
        "bench": "0",
    }
    assert {p.name for p in out.iterdir()} == {
        "summary.txt",
        "setup.txt",
        "kit.txt",
        "tests.txt",
        "bench.txt",
    }  # bench.json is written by bench_gpu.py itself
    joined = "\n".join(calls)
    assert "-m pip install -q --no-index --no-deps --no-build-isolation" in joined
    assert "-m softcore check cupy --accuracy --max-examples 25" in joined
    assert "--deselect backends/cupy/tests/test_cupy_gpu.py::test_conformance_kit" in (
        joined
    )
    assert f"bench_gpu.py --sweep --json {out}/bench.json" in joined


def test_a_failing_phase_fails_the_run_but_the_rest_still_run(tmp_path):
    rc, out, _ = _run(tmp_path, kit=1)
    assert rc == 1
    phases = _phases(out)
    assert phases["kit"] == "1"
    assert phases["tests"] == "0"
    assert phases["bench"] == "0"


def test_no_device_stops_after_the_report(tmp_path):
    rc, out, calls = _run(tmp_path, available=1)
    assert rc == 2
    assert "kit" not in _phases(out)
    assert "nothing to run" in (out / "summary.txt").read_text()
    assert not any("softcore check" in c for c in calls)


def test_old_setuptools_without_a_wheel_is_a_clear_failure(tmp_path):
    rc, out, calls = _run(tmp_path, setuptools=1)
    assert rc == 1
    assert _phases(out)["install"] == "1"
    assert "holds no setuptools wheel" in (out / "setup.txt").read_text()
    assert not any(c.startswith("-m pip install") for c in calls)


def test_old_setuptools_builds_with_a_carried_wheel(tmp_path):
    wheels = tmp_path / "no-wheels"
    wheels.mkdir()
    (wheels / "setuptools-80.0.0-py3-none-any.whl").write_text("")
    (wheels / "setuptools-77.0.3-py3-none-any.whl").write_text("")
    rc, _out, calls = _run(tmp_path, setuptools=1)
    assert rc == 0
    first_pip = next(c for c in calls if c.startswith("-m pip install"))
    assert "--target" in first_pip
    assert first_pip.endswith("setuptools-80.0.0-py3-none-any.whl")


def test_the_editable_install_falls_back_to_a_folder(tmp_path):
    # the stand-in refuses every pip install, so the fallback runs and fails too
    rc, out, calls = _run(tmp_path, pip=1)
    assert rc == 1
    pips = [c for c in calls if c.startswith("-m pip install")]
    assert len(pips) == 2
    assert "-e . -e backends/cupy" in pips[0]
    assert "--target" in pips[1]
    assert "refused" in (out / "setup.txt").read_text()
