"""``precompile`` (``python -m softcore warmup``): every driver ``_ops`` picks, with
the argument types it passes, compiled into the cache a later process loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from softcore_numba import _warmup

# In a fresh process: call every kernel of _ops at shapes that take each mode (short
# rows, grouped, a row at a time, split rows; serial and threaded), for both dtypes,
# with the writeable inputs the core hands over; then every op of the public API
# with read-only inputs (the core hands the kernels writeable views of them, so
# they compile nothing more), and the conformance kit (whose read-only layout
# passes every array read-only); report the jitted drivers' signatures, and those
# of them that were compiled rather than loaded from the cache.
USED = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from numba.core.registry import CPUDispatcher
    from softcore_numba import _ops
    import softcore as sc
    import softcore.testing

    def ro(a):
        a = a.copy()
        a.setflags(write=False)
        return a

    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        for n, c in [(4, 8), (6000, 8), (4, 40), (6000, 40), (4, 64), (400, 64),
                     (512, 64), (2000, 64),
                     (6, 300), (300, 300), (9, 1500), (40, 2000), (3, 20000)]:
            x = rng.standard_normal((n, c)).astype(dtype)
            g = rng.standard_normal((n, c)).astype(dtype)
            p = np.full_like(x, 1.0 / c)
            y = rng.integers(0, c, n)
            w = np.ones(n)
            cw = np.ones(c)
            loss = np.empty(n)
            _ops.cross_entropy_index_sum(x, y, cw, -100, 0.0)
            out, lse = np.empty_like(x), np.empty(n, dtype)
            _ops.softmax_rows(x, out)
            _ops.log_softmax_rows(x, out)
            _ops.logsumexp_rows(x, lse)
            _ops.logsumexp_weighted_rows(x, g, lse, np.empty(n, dtype))
            _ops.cross_entropy_rows(x, y, w, np.zeros(n), cw, loss)
            _ops.cross_entropy_grad_rows(x, y, w, np.zeros(n), cw, 1.0, loss,
                                         np.empty_like(x))
            _ops.cross_entropy_index_grad_sum(x, y, cw, -100, 0.0, True,
                                              np.empty_like(x))
            _ops.cross_entropy_prob_rows(x, p, 0.0, cw, loss)
            _ops.cross_entropy_prob_grad_rows(x, p, 0.0, cw, 1.0, loss,
                                              np.empty_like(x))
            if c <= 300:
                _ops.softmax_jacobian_rows(x[:2], np.empty((2, c, c), dtype))
                _ops.softmax_jacobian_rows(x, np.empty((n, c, c), dtype))
            _ops.softmax_backward_rows(g, out, np.empty_like(x))
            _ops.log_softmax_backward_rows(g, out, np.empty_like(x))
    for n in (2000, 200000):  # the float16 conversions, serial and threaded
        h = rng.standard_normal(n).astype(np.float16)
        f = np.empty(n, np.float32)
        assert _ops.cast(h, f)
        assert _ops.cast(f, np.empty(n, np.float16))
    for n in (20, 400):  # 16-bit rows, serial and threaded
        h = rng.standard_normal((n, 1000)).astype(np.float16)
        assert _ops.low_precision_rows("softmax_rows", (h,), np.empty_like(h))
        lse = np.empty(n, np.float16)
        assert _ops.low_precision_rows("logsumexp_rows", (h,), lse)
        assert _ops.low_precision_rows(
            "softmax_backward_rows", (h, h), np.empty_like(h)
        )
        y, cw = rng.integers(0, 1000, n), np.ones(1000)
        ce = (h, y, np.ones(n), np.zeros(n), cw)
        loss = np.empty(n)
        assert _ops.low_precision_rows("cross_entropy_rows", ce, loss)
        assert _ops.low_precision_rows(
            "cross_entropy_grad_rows", (*ce, 1.0, loss), np.empty_like(h)
        )
        th = np.full_like(h, 1e-3)
        for t in (th, th.astype(np.float32)):
            assert _ops.low_precision_rows(
                "cross_entropy_prob_rows", (h, t, 0.0, cw), loss
            )
            assert _ops.low_precision_rows(
                "cross_entropy_prob_grad_rows", (h, t, 0.0, cw, 1.0, loss),
                np.empty_like(h),
            )
    # the public API with read-only inputs, plain calls and general ones
    for dtype in (np.float32, np.float64, np.float16):
        for n, c in [(4, 64), (400, 64), (6, 300), (40, 2000), (3, 20000)]:
            x = rng.standard_normal((n, c)).astype(dtype)
            xr, xt = ro(x), ro(np.asfortranarray(x))
            t, tr = rng.integers(0, c, n), ro(rng.integers(0, c, n))
            pr = ro(sc.softmax(rng.standard_normal((n, c)).astype(dtype)))
            for a in (xr, xt):
                sc.softmax(a, backend="numba")
                sc.log_softmax(a, backend="numba")
                sc.logsumexp(a, backend="numba")
                sc.softmax_backward(a, xr, backend="numba")
                sc.log_softmax_backward(xr, a, backend="numba")
                for tgt in (t, tr, pr):
                    sc.cross_entropy(a, tgt, backend="numba")
                    sc.cross_entropy_with_grad(a, tgt, backend="numba")
                    sc.cross_entropy(a, tgt, reduction="none", backend="numba",
                                     weight=ro(np.ones(c)), label_smoothing=0.1)
            sc.softmax(xr, axis=None, backend="numba")
            sc.logsumexp(xr, axis=(0, 1), backend="numba")
            if c <= 300:
                sc.softmax_jacobian(xr[:2], backend="numba")
    assert softcore.testing.check("numba", max_examples=2) == 0

    used, compiled = [], []
    modules = (_ops.K, _ops.C, _ops.R)
    drivers = [e for m in modules for e in vars(m).items()]
    for name, d in sorted(drivers, key=lambda e: e[0]):
        if not isinstance(d, CPUDispatcher) or name.startswith("_"):
            continue
        if d.py_func.__module__ not in [m.__name__ for m in modules]:
            continue  # the exp and log of _vexp, compiled inside the drivers
        for sig in d.signatures:
            used.append([name, str(tuple(sig))])
            if d.stats.cache_misses.get(tuple(sig)):
                compiled.append(f"{name}{tuple(sig)}")
    print("USED " + json.dumps({"used": used, "compiled": compiled}))
    """
)


def test_entries_are_the_drivers_of_ops_for_both_dtypes():
    """Every name is a jitted driver of _kernels, _casts or _rows16, and every
    driver _ops binds is among them."""
    from numba.core.registry import CPUDispatcher

    from softcore_numba import _ops

    entries = _warmup.entries()
    names = {name for name, _, _ in entries}
    for name in names:
        assert isinstance(_warmup.driver(name), CPUDispatcher), name
    assert {d for _, d, _ in entries} == set(_warmup.DTYPES)
    assert len(entries) == len(set(map(str, entries)))
    bound = set()
    for table in [v for k, v in vars(_ops).items() if k.isupper() and k[0] == "_"]:
        for driver in table if isinstance(table, tuple) else ():
            fn = getattr(driver, "args", (driver,))[0]  # launch partials: the driver
            if isinstance(fn, CPUDispatcher):
                bound.add(fn.__name__)
    assert bound, "no driver tables found in _ops"
    assert bound <= names, sorted(bound - names)
    assert {"jacobian_ser", "jacobian_par", "cross_entropy_index_sum_rows"} <= names
    fused = {"cross_entropy_index_grad_sum_short", "cross_entropy_index_sum_grouped"}
    assert fused <= names
    assert {"widen_ser", "widen_par", "narrow_ser", "narrow_par"} <= names
    assert {"rows16_ser", "rows16_par", "back16_ser", "back16_par"} <= names
    assert {"lse16_ser", "lse16_par"} <= names
    assert {"ce16_ser", "ce16_par", "cep16_ser", "cep16_par"} <= names
    # the jobs take the drivers in this order, each once
    grouped = _warmup.by_driver()
    assert list(grouped) == list(dict.fromkeys(n for n, _, _ in entries))
    assert next(iter(grouped)) == "cross_entropy_grad_ser"  # the dearest first
    assert [(n, s) for n, sigs in grouped.items() for s in sigs] == sorted(
        ((n, s) for n, _, s in entries), key=lambda e: list(grouped).index(e[0])
    )


def test_a_warmed_cache_leaves_nothing_to_compile(tmp_path):
    """precompile in two processes, then a fresh process that calls every kernel in
    every mode, every op with read-only inputs, and the conformance kit: the
    jitted signatures it used are exactly those precompile lists (none of them
    read-only), and were loaded from the cache, not compiled.
    Runs in the default cache, so after ``python -m softcore warmup`` (as CI runs
    it) it only loads; on a cold cache it compiles everything once (minutes)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    warm = subprocess.run(
        [sys.executable, "-m", "softcore", "warmup", "numba", "-j", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    assert warm.returncode == 0, warm.stdout + warm.stderr
    assert f"numba: {len(_warmup.entries())} kernels" in warm.stdout, warm.stdout
    res = subprocess.run(
        [sys.executable, "-c", USED],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-5000:]
    line = next(x for x in res.stdout.splitlines() if x.startswith("USED "))
    report = json.loads(line[5:])
    listed = {(name, str(sig)) for name, _, sig in _warmup.entries()}
    used = {tuple(u) for u in report["used"]}
    assert report["compiled"] == [], "compiled after the warmup"
    assert used <= listed, sorted(used - listed)  # compiled on a first call
    assert listed <= used, sorted(listed - used)  # compiled for nothing


@pytest.mark.parametrize("jobs", [None, 1, 3])
def test_precompile_says_what_it_did(monkeypatch, jobs):
    """The job count (default one per CPU, at most 4) and the line it returns,
    without compiling: one job compiles in the process, more start processes that
    share a counter file, removed afterwards."""
    n_entries = len(_warmup.entries())  # imports numba's set-up before Popen is faked
    ran = []
    monkeypatch.setattr(_warmup, "compile_drivers", lambda *a: ran.append(a))

    class Proc:
        def __init__(self, args):
            self.args = args
            assert os.path.exists(args[-3])
            ran.append(tuple(args[-3:]))

        def wait(self):
            return 0

    monkeypatch.setattr(_warmup.subprocess, "Popen", Proc)
    line = _warmup.precompile(jobs)
    n = jobs or min(4, os.cpu_count() or 1)
    if n == 1:
        assert ran == [()]
    else:
        queue = ran[0][0]
        assert ran == [(queue, str(i), str(n)) for i in range(n)]
        assert not os.path.exists(queue)
    assert line.startswith(f"{n_entries} kernels")
    assert line.endswith(f"{n} job" + ("s" if n > 1 else ""))


def test_a_failing_job_fails_precompile(monkeypatch):
    _warmup.entries()  # numba's set-up, before Popen is faked

    class Proc:
        def __init__(self, args):
            self.args = args

        def wait(self):
            return 1

    monkeypatch.setattr(_warmup.subprocess, "Popen", Proc)
    with pytest.raises(RuntimeError, match="failed in 2 of 2 jobs"):
        _warmup.precompile(2)


def test_jobs_take_each_driver_once(tmp_path, monkeypatch, capsys):
    """Jobs sharing a counter file compile every driver once between them, each
    with all its signatures, a line on stderr per driver; one job alone takes
    them in order."""
    pytest.importorskip("fcntl", reason="no fcntl: the jobs run one at a time")
    import types as pytypes

    from softcore_numba import _ops

    compiled = []

    class Fake:
        def __init__(self, name):
            self.name = name

        def compile(self, sig):
            compiled.append((self.name, sig))

    entries = [("a_ser", "float32", (1,)), ("a_ser", "float64", (2,))]
    entries += [("b_par", "float32", (3,)), ("c_par", "float32", (4,))]
    monkeypatch.setattr(_warmup, "entries", lambda: entries)
    monkeypatch.setattr(_warmup, "_lock_cache_saves", lambda: None)
    fakes = {n: Fake(n) for n in ("a_ser", "b_par", "c_par")}
    monkeypatch.setattr(_ops, "K", pytypes.SimpleNamespace(**fakes))
    assert _warmup.compile_drivers() == 4
    assert compiled == [(n, s) for n, _, s in entries]
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0].strip() for line in err] == [
        "numba a_ser",
        "numba b_par",
        "numba c_par",
    ]
    assert err[0].endswith("2 kernels, 0.0 s (driver 1 of 3)")
    # two jobs, one after the other here, sharing the counter: the first takes
    # the next driver after each, so it takes all; then the second finds none
    compiled.clear()
    queue = tmp_path / "next"
    queue.write_text("1")  # another job has taken driver 0
    assert _warmup.compile_drivers(str(queue), 0, 2) == 2
    assert _warmup.compile_drivers(str(queue), 1, 2) == 0
    assert compiled == [("b_par", (3,)), ("c_par", (4,))]
    assert (
        capsys.readouterr().err.splitlines()[-1].endswith("(job 1 of 2, driver 3 of 3)")
    )


@pytest.mark.parametrize("writable", [True, False])
def test_jobs_save_to_the_cache_under_a_lock(tmp_path, monkeypatch, writable):
    """A job's numba cache saves hold an exclusive lock file: in the cache
    directory, or in the temporary directory where that cannot be written."""
    fcntl = pytest.importorskip("fcntl", reason="no fcntl: the jobs run one at a time")
    import tempfile

    from numba.core import caching

    if writable:
        cache = tmp_path / "cache"
        lock = cache / ".softcore-warmup.lock"
    else:
        (tmp_path / "file").write_text("")
        cache = tmp_path / "file" / "cache"  # below a file: cannot be made
        lock = Path(tempfile.gettempdir()) / f"softcore-warmup-{os.getuid()}.lock"
    monkeypatch.setenv("SOFTCORE_NUMBA_CACHE_DIR", str(cache))
    held = []

    def save(self, key, data):  # numba's save, as the lock wraps it
        with open(lock) as f, pytest.raises(BlockingIOError):
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.append((key, data))

    monkeypatch.setattr(caching.IndexDataCacheFile, "save", save)  # restored after
    _warmup._lock_cache_saves()
    caching.IndexDataCacheFile.save(None, "key", "data")
    assert held == [("key", "data")]
    with open(lock) as f:  # released after the save
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_describe_says_how_kernels_will_run(tmp_path, monkeypatch):
    """numba's version, the threading layer and this install's kernel cache
    folder with its files, the settings that are set; nothing compiled."""
    import numba

    from softcore_numba import _runtime, backend

    monkeypatch.setenv("SOFTCORE_NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("SOFTCORE_NUMBA_CHUNK_ROWS", "512")
    facts = backend.describe()
    assert facts["numba"] == numba.__version__
    layer = _runtime.threading_layer() or numba.config.THREADING_LAYER
    assert facts["threading layer"].startswith(layer)
    cache = facts["kernel cache"]
    folder = cache.split(",")[0]
    assert os.path.dirname(folder) == str(tmp_path)
    assert "0 files, 0.0 MiB (empty: python -m softcore warmup" in cache
    assert facts["SOFTCORE_NUMBA_CHUNK_ROWS"] == "512"
    assert "SOFTCORE_NUMBA_SERIAL_MAX" not in facts
    os.makedirs(os.path.join(folder, "sub"))
    Path(folder, "sub", "k.nbc").write_bytes(b"x" * 2**20)
    (tmp_path / "another_install").mkdir()
    cache = backend.describe()["kernel cache"]
    assert "1 file, 1.0 MiB; other installs' folders beside it: 1" in cache


def test_the_warmup_removes_the_cache_folders_of_installs_that_are_gone(
    tmp_path, monkeypatch
):
    """Each install marks its cache folder with its package folder; a warmup
    removes the folders whose package folder no longer exists (a deleted
    environment or clone), and leaves live and unmarked ones alone; info counts
    them first."""
    from softcore_numba import _runtime, backend

    cache = tmp_path / "cache"
    monkeypatch.setenv("SOFTCORE_NUMBA_CACHE_DIR", str(cache))
    _runtime._mark_folder()
    mine = Path(_runtime._cache_folder())
    assert (mine / _runtime.SOURCE_MARK).read_text() == _runtime._PKG_DIR
    live_src = tmp_path / "live-env" / "softcore_numba"
    live_src.mkdir(parents=True)
    for name, source in [("live", live_src), ("gone", tmp_path / "deleted-env")]:
        (cache / name).mkdir()
        (cache / name / _runtime.SOURCE_MARK).write_text(str(source))
        (cache / name / "k.nbi").write_bytes(b"index")
    (cache / "unmarked").mkdir()
    facts = backend.describe()["kernel cache"]
    assert "other installs' folders beside it: 3 (1 of installs that are gone" in facts
    monkeypatch.setattr(_warmup, "compile_drivers", lambda *a: 0)
    line = _warmup.precompile(1)
    assert line.endswith("; removed 1 folders of installs that are gone")
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        ["live", "unmarked", mine.name]
    )
    assert _runtime.prune_folders() == []  # nothing more to remove
