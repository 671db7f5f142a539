"""Threads, fork, thread counts, lazy import and the on-disk cache."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from softcore_numba import backend as nb

SHAPES = [(4096, 64), (64, 2000), (3, 40000)]  # parallel rows and split rows


def _run_all(x, y, alpha, beta, cw):
    n = x.shape[0]
    outs = {}
    for op in ("softmax_rows", "log_softmax_rows"):
        out = np.empty_like(x)
        getattr(nb, op)(x, out)
        outs[op] = out
    lse = np.empty(n, x.dtype)
    nb.logsumexp_rows(x, lse)
    outs["lse"] = lse
    loss, grad = np.empty(n), np.empty_like(x)
    nb.cross_entropy_grad_rows(x, y, alpha, beta, cw, 0.5, loss, grad)
    outs["ce_loss"], outs["ce_grad"] = loss, grad
    return outs


def _inputs(shape, dtype):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    n, c = shape
    y = rng.integers(0, c, n)
    alpha = np.ones(n)
    beta = np.full(n, 0.1 / c)
    cw = rng.uniform(0.5, 1.5, c)
    return x, y, alpha, beta, cw


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_bitwise_equal_for_any_thread_count(shape, dtype):
    args = _inputs(shape, dtype)
    default = nb.get_num_threads()
    counts = sorted({1, 2, default})
    try:
        results = []
        for n in counts:
            nb.set_num_threads(n)
            assert nb.get_num_threads() == n
            results.append(_run_all(*args))
    finally:
        nb.set_num_threads(default)
    for res in results[1:]:
        for k, v in res.items():
            np.testing.assert_array_equal(v, results[0][k], err_msg=k)


def test_concurrent_calls_from_python_threads():
    args = _inputs((2048, 100), np.float32)
    expected = _run_all(*args)
    errors = []

    def work():
        try:
            for _ in range(15):
                got = _run_all(*args)
                for k, v in got.items():
                    np.testing.assert_array_equal(v, expected[k], err_msg=k)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "deadlock"
    assert not errors, errors[0]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
# Python 3.12+ warns of fork() in a process with threads: this test forks one
# on purpose, after parallel kernels ran, to show the child still computes
@pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)
def test_fork_child_computes_correctly():
    args = _inputs((2048, 100), np.float64)
    expected = _run_all(*args)  # the parent has launched parallel kernels
    pid = os.fork()
    if pid == 0:  # child: must neither crash nor hang
        code = 1
        try:
            got = _run_all(*args)
            ok = all(np.array_equal(got[k], expected[k]) for k in expected)
            code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status), f"child died: status {status}"
    assert os.WEXITSTATUS(status) == 0, "child got different results"


def _python(code, env=None):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
        check=False,
    )


def test_import_is_lazy():
    r = _python(
        "import sys, softcore_numba as s; b = s.backend; "
        "print('numba' in sys.modules, b.name, b.priority, b.accepts(1.0))"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "numba", "50", "False"]


def test_cache_goes_to_user_dir_and_layer_is_tbb(tmp_path):
    code = (
        "import numpy as np, softcore_numba as s, numba;"
        "x = np.ones((64, 1000)); o = np.empty_like(x);"
        "s.backend.softmax_rows(x, o); print(numba.threading_layer())"
    )
    r = _python(code, {"SOFTCORE_NUMBA_CACHE_DIR": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    files = [f for _, _, fs in os.walk(tmp_path) for f in fs]
    assert any(f.endswith(".nbi") for f in files), files
    if "NUMBA_THREADING_LAYER" not in os.environ:
        from softcore_numba import _runtime

        if _runtime._load_tbb():
            assert r.stdout.strip() == "tbb"


def test_a_first_compile_says_so_once_and_a_cache_load_does_not(tmp_path):
    # a cold cache: the first compile of the package's code logs the notice
    # once, on stderr (logging unconfigured), however many kernels follow; the
    # same calls in a later process load them and say nothing
    from softcore_numba import _runtime

    code = (
        "import numpy as np; from softcore_numba import _ops;"
        "_ops.K._wsum(np.ones(3)); _ops.K._wsum(np.ones(3, np.float32));"
        "print('ran')"
    )
    env = {"SOFTCORE_NUMBA_CACHE_DIR": str(tmp_path)}
    cold, warm = _python(code, env), _python(code, env)
    assert cold.returncode == 0, cold.stderr
    assert warm.returncode == 0, warm.stderr
    assert cold.stdout.split() == warm.stdout.split() == ["ran"]
    assert cold.stderr.count(_runtime.COMPILE_NOTICE) == 1, cold.stderr
    assert "python -m softcore warmup" in _runtime.COMPILE_NOTICE
    assert _runtime.COMPILE_NOTICE not in warm.stderr, warm.stderr


def test_kernels_cached_from_other_sources_are_removed(tmp_path):
    # what an upgrade in place leaves: entries numba will never load again,
    # under names (function and line) that are never overwritten either
    from softcore_numba import _runtime

    code = (
        "import numpy as np; from softcore_numba import _ops;"
        "_ops.K._wsum(np.ones(3)); print('ran')"
    )
    env = {"SOFTCORE_NUMBA_CACHE_DIR": str(tmp_path)}
    first = _python(code, env)
    assert first.returncode == 0, first.stderr
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    mark = folder / _runtime.STAMP_MARK
    current = mark.read_text()
    fresh = {p.name for p in folder.glob("*.nb?")}
    assert any(n.endswith(".nbi") for n in fresh), fresh
    old = [folder / f"_kernels.gone-12.py311.{e}" for e in ("nbi", "1.nbc")]
    for p in old:
        p.write_bytes(b"from an older version")
    same = _python(code, env)  # the same sources: nothing removed, nothing compiled
    assert same.returncode == 0, same.stderr
    assert all(p.exists() for p in old)
    assert _runtime.COMPILE_NOTICE not in same.stderr, same.stderr
    mark.write_text("the stamp of an older version")
    upgraded = _python(code, env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.split() == ["ran"]
    assert not any(p.exists() for p in old)
    assert mark.read_text() == current
    assert (folder / _runtime.SOURCE_MARK).exists()
    assert {p.name for p in folder.glob("*.nb?")} == fresh  # compiled again
    assert upgraded.stderr.count(_runtime.COMPILE_NOTICE) == 1, upgraded.stderr


def test_the_compile_notice_is_for_this_package_only(caplog, monkeypatch):
    import logging

    from numba import njit

    from softcore_numba import _ops, _runtime

    assert _ops.K is not None  # the listener is installed with the kernels
    monkeypatch.setattr(_runtime, "_notice_due", True)

    def users(a):
        return a + 1

    def ours(a):
        return a + 2

    users.__module__ = "someones_model"
    ours.__module__ = "softcore_numba._probe"
    with caplog.at_level(logging.WARNING, logger="softcore_numba"):
        assert njit(users)(1) == 2  # a user's numba function compiles quietly
        assert not caplog.records
        assert njit(ours)(1) == 3
        assert njit(ours)(1.5) == 3.5  # a second compile: said once only
    said = [r for r in caplog.records if r.name == "softcore_numba"]
    assert [r.getMessage() for r in said] == [_runtime.COMPILE_NOTICE]
    assert said[0].levelno == logging.WARNING
    assert not _runtime._notice_due


def test_the_warmup_says_what_it_compiles_instead(monkeypatch):
    from softcore_numba import _runtime, _warmup

    monkeypatch.setattr(_runtime, "_notice_due", True)
    monkeypatch.setattr(_warmup, "by_driver", lambda: {})
    assert _warmup.compile_drivers() == 0
    assert not _runtime._notice_due


def test_linear_chunk_rows_follows_the_documented_budget(monkeypatch):
    # the README's rule: rows of logits within max(L3 / 2, 128 MiB), 256..8192
    # rows, a multiple of 64; the environment variable overrides it
    from softcore_numba import _backend

    monkeypatch.delenv("SOFTCORE_NUMBA_CHUNK_ROWS", raising=False)
    monkeypatch.setattr(_backend, "_l3_bytes", lambda: 32 << 20)
    assert nb.linear_chunk_rows(32000, 512, 4) == 1024
    assert nb.linear_chunk_rows(50257, 1024, 8) == 320
    assert nb.linear_chunk_rows(1000, 512, 4) == 8192  # the ceiling
    assert nb.linear_chunk_rows(1 << 20, 64, 4) == 256  # the floor
    monkeypatch.setattr(_backend, "_l3_bytes", lambda: 1 << 30)  # half: 512 MiB
    assert nb.linear_chunk_rows(32000, 512, 4) == 4160
    monkeypatch.setenv("SOFTCORE_NUMBA_CHUNK_ROWS", "77")
    assert nb.linear_chunk_rows(32000, 512, 4) == 77
