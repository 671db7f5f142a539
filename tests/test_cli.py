"""``python -m softcore info | demo``."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "softcore", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_info_lists_backends_with_availability():
    proc = run("info")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"numpy\s+\S+\s+priority\s+0\s+available", proc.stdout)
    assert "default for NumPy arrays:" in proc.stdout


def test_unknown_command():
    proc = run("frobnicate")
    assert proc.returncode == 2
    assert "unknown command" in proc.stderr


def test_demo_reaches_logistic_regression_accuracy():
    pytest.importorskip("sklearn", reason="the demo's data ship with scikit-learn")
    proc = run("demo", "--backend", "numpy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    acc = float(re.search(r"best test accuracy ([\d.]+)%", proc.stdout).group(1))
    # multinomial logistic regression on the 8x8 digits scores about 95-97%
    # (scikit-learn's LogisticRegression on the same split: see the README)
    assert acc >= 94.0, proc.stdout
