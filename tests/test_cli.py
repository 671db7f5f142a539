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


DESCRIBED_PLUGIN = """
    from softcore._reference import ReferenceBackend

    class Described(ReferenceBackend):
        name = "{name}"
        priority = -5

        def available(self):
            return True

        def describe(self):
            if "{name}" == "broken":
                raise RuntimeError("no driver")
            return {{"device": "widget 3", "cache": "/tmp/widgets"}}

    backend = Described()
"""


def test_info_prints_what_backends_describe(install_plugin, capsys, monkeypatch):
    """A backend's optional describe() goes under its line; one that fails is
    reported there, and the report goes on."""
    import softcore
    from softcore._info import main

    for name in ("described", "broken"):
        src = DESCRIBED_PLUGIN.format(name=name)
        install_plugin(
            f"{name}-dist", {name: f"{name}_mod:backend"}, {f"{name}_mod": src}
        )
    rows = [r for r in softcore.list_backends() if r.name in ("described", "broken")]
    monkeypatch.setattr(softcore, "list_backends", lambda: rows)
    assert main([]) == 0
    out = capsys.readouterr().out
    assert re.search(
        r"described .*\n\s+device: widget 3\n\s+cache: /tmp/widgets\n", out
    )
    assert re.search(r"broken .*\n\s+\(describe failed: RuntimeError: no driver\)", out)


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


WARM_PLUGIN = """
    from softcore._reference import ReferenceBackend

    class Warm(ReferenceBackend):
        name = "warm"
        priority = -5
        calls = []

        def available(self):
            return True

        def precompile(self, jobs=None):
            type(self).calls.append(jobs)
            if jobs == 3:
                raise OSError("disk full")
            return "2 kernels compiled"

    backend = Warm()
"""


def test_warmup_calls_each_backends_precompile(
    install_plugin, fake_source, capsys, monkeypatch
):
    import softcore
    from softcore._warmup import main

    install_plugin("warm-dist", {"warm": "warm_mod:backend"}, {"warm_mod": WARM_PLUGIN})
    install_plugin(
        "off-dist",
        {"off": "off_mod:backend"},
        {"off_mod": fake_source(name="off", available="'no widget attached'")},
    )
    import warm_mod

    calls = warm_mod.Warm.calls
    # only these three: the installed plugins' own precompile is not for this test
    rows = [r for r in softcore.list_backends() if r.name in ("warm", "off", "numpy")]
    monkeypatch.setattr(softcore, "list_backends", lambda: rows)
    assert main(["warm", "numpy", "-j", "2"]) == 0
    out = capsys.readouterr().out
    assert calls == [2]
    assert re.search(r"^warm: 2 kernels compiled \(\d+\.\d s\)$", out, re.M)
    assert "numpy: nothing to compile ahead" in out
    # by default every available backend, the unavailable one left out quietly
    assert main([]) == 0
    assert calls == [2, None]
    assert "off" not in capsys.readouterr().out
    # named but unavailable: the reason, and a failing status after the others
    assert main(["off", "warm"]) == 2
    res = capsys.readouterr()
    assert "off: unavailable: no widget attached" in res.err
    assert "warm: 2 kernels" in res.out
    # a backend whose precompile fails is reported, and the status says so
    assert main(["warm", "-j", "3"]) == 1
    assert "warm: precompiling failed: OSError: disk full" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [(["nope"], "unknown backend 'nope'"), (["-j", "0"], "--jobs must be at least 1")],
)
def test_warmup_refuses_bad_arguments_before_compiling(args, message):
    proc = run("warmup", *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stdout == ""
