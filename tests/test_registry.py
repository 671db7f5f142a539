"""The backend registry: discovery, selection order, errors, context-locality."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import softcore as sc
from softcore import _registry

X = np.array([[0.0, 1.0, 2.0]])


def test_reference_registers_through_its_entry_point(fresh_registry):
    rows = {r.name: r for r in sc.list_backends()}
    assert rows["numpy"].available is True
    assert rows["numpy"].source == "softcore._reference:backend"
    assert rows["numpy"].version == sc.__version__


def test_import_is_lazy():
    code = (
        "import sys, softcore\n"
        "heavy = [m for m in ('numba', 'cupy', 'softcore_numba', 'softcore_cupy', "
        "'scipy', 'torch') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]", f"import softcore imported {out}"


def test_installed_plugin_is_found_and_selected(install_plugin, fake_source):
    install_plugin(
        "fake-dist", {"fake": "fake_mod:backend"}, {"fake_mod": fake_source()}
    )
    names = [r.name for r in sc.list_backends()]
    assert names[0] == "fake", "highest priority first"
    assert sc.get_backend().name == "fake"
    sc.softmax(X)
    assert type(sc.get_backend("fake")).calls == 1
    np.testing.assert_allclose(sc.softmax(X), sc.softmax(X, backend="numpy"))


def test_unavailable_plugin_is_listed_with_reason_and_skipped(
    install_plugin, fake_source
):
    install_plugin(
        "fake-dist",
        {"fake": "fake_mod:backend"},
        {"fake_mod": fake_source(available="'no widget attached'")},
    )
    row = next(r for r in sc.list_backends() if r.name == "fake")
    assert row.available == "no widget attached"
    assert sc.get_backend().name != "fake", "automatic selection skips it"
    with pytest.raises(sc.BackendUnavailableError, match="no widget attached"):
        sc.softmax(X, backend="fake")


def test_broken_plugin_warns_and_never_breaks_softcore(install_plugin):
    install_plugin(
        "broken-dist",
        {"broken": "broken_mod:backend"},
        {"broken_mod": "raise ImportError('libwidget.so not found')"},
    )
    with pytest.warns(RuntimeWarning, match=r"broken = 'broken_mod:backend'"):
        rows = {r.name: r for r in sc.list_backends()}
    assert "libwidget.so not found" in rows["broken"].available
    np.testing.assert_allclose(sc.softmax(X).sum(), 1.0)
    with pytest.raises(sc.BackendUnavailableError, match=r"libwidget\.so not found"):
        sc.softmax(X, backend="broken")


def test_duplicate_entry_point_name_warns(install_plugin, fake_source):
    install_plugin("dup-a", {"dup": "dup_a:backend"}, {"dup_a": fake_source("dup", 5)})
    install_plugin("dup-b", {"dup": "dup_b:backend"}, {"dup_b": fake_source("dup", 6)})
    with pytest.warns(RuntimeWarning, match="registered twice"):
        sc.list_backends()


def test_unknown_backend_names_what_is_installed(fresh_registry):
    with pytest.raises(sc.BackendNotFoundError, match=r"'nope'.*installed: .*numpy"):
        sc.softmax(X, backend="nope")
    assert issubclass(sc.BackendNotFoundError, LookupError)
    with pytest.raises(sc.BackendNotFoundError):
        sc.set_backend("nope")
    with pytest.raises(sc.BackendNotFoundError), sc.use_backend("nope"):
        pass


def test_backend_that_cannot_take_the_array_is_an_error(fresh_registry):
    class Foreign:
        pass

    with pytest.raises(
        TypeError,
        match=r"no available softcore backend accepts.*"
        r"Foreign.*installed: .*numpy",
    ):
        sc.softmax(Foreign())
    with pytest.raises(TypeError, match=r"backend 'numpy' cannot take"):
        sc.softmax(Foreign(), backend="numpy")


class _HostLike:
    """Host data with NumPy's array protocol (a pandas Series, a CPU tensor):
    ``cuda`` says what ``__cuda_array_interface__`` does (absent; raising
    AttributeError, as a CPU tensor's; raising another error; giving one, as a
    CUDA tensor's), ``dlpack`` the ``__dlpack_device__`` kind, if any."""

    def __init__(self, a, cuda=None, dlpack=None):
        self._a, self._cuda, self._dlpack = np.asarray(a), cuda, dlpack

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)

    def __getattr__(self, name):
        if name == "__cuda_array_interface__" and self._cuda is not None:
            if self._cuda == "gives":
                return {"shape": self._a.shape, "data": (1, False), "version": 3}
            raise self._cuda("no CUDA data here")
        raise AttributeError(name)

    def __dlpack_device__(self):
        if self._dlpack is None:
            raise AttributeError("__dlpack_device__")
        return (self._dlpack, 0)


@pytest.mark.parametrize(
    "like",
    [
        [[0.0, 1.0]],
        (0.0, 1.0),
        np.float64(1.0),
        _HostLike(X),
        _HostLike(X, cuda=AttributeError, dlpack=1),
        _HostLike(X, cuda=ValueError),
        _HostLike(X, dlpack=3),  # pinned host memory
    ],
    ids=["list", "tuple", "numpy_scalar", "array", "cpu_tensor", "raises", "pinned"],
)
def test_host_array_likes_select_as_numpy_arrays(install_plugin, fake_source, like):
    """Host data no backend takes as it is goes to the backend a NumPy array
    would (not only to one that lists Python lists, as the reference once did),
    automatically and by name, and computes as the array it converts to."""
    install_plugin("np2", {"np2": "mod_np2:backend"}, {"mod_np2": fake_source("np2")})
    assert sc.get_backend(like=like).name == "np2"
    assert _registry.resolve(like, "numpy").name == "numpy"
    assert _registry.resolve(like).name == "np2"  # again, from the cache where kept
    a = np.asarray(like, dtype=np.float64)
    if a.ndim:
        got = sc.softmax(like, backend="numpy")
        assert type(got) is np.ndarray
        np.testing.assert_array_equal(got, sc.softmax(a, backend="numpy"))


@pytest.mark.parametrize(
    "like",
    [_HostLike(X, cuda="gives"), _HostLike(X, dlpack=2), _HostLike(X, dlpack=13)],
    ids=["cuda_array_interface", "dlpack_cuda", "dlpack_oneapi"],
)
def test_device_array_likes_are_refused(fresh_registry, like):
    """Data on a device is never copied to the host: with no backend for its
    type, a clear error, automatically and by name."""
    with pytest.raises(TypeError, match=r"accepts an array of type .*_HostLike on a"):
        sc.softmax(like)
    with pytest.raises(TypeError, match=r"backend 'numpy' cannot take"):
        sc.softmax(like, backend="numpy")


def test_selection_order(install_plugin, fake_source, monkeypatch):
    install_plugin(
        "order",
        {"a": "mod_a:backend", "b": "mod_b:backend", "c": "mod_c:backend"},
        {
            "mod_a": fake_source("a", 1),
            "mod_b": fake_source("b", 2),
            "mod_c": fake_source("c", 1003),
        },
    )
    assert sc.get_backend().name == "c"  # highest priority
    monkeypatch.setenv("SOFTCORE_BACKEND", "numpy")
    assert sc.get_backend().name == "c"  # the variable was read on first use
    sc.set_backend(None)  # reads it again
    assert sc.get_backend().name == "numpy"  # env beats priority
    sc.set_backend("a")
    assert sc.get_backend().name == "a"  # set_backend beats env
    with sc.use_backend("b") as obj:
        assert obj.name == "b"
        assert sc.get_backend().name == "b"  # use_backend beats set_backend
        assert _registry.resolve(X, "numpy").name == "numpy"  # argument beats all
    assert sc.get_backend().name == "a"
    sc.set_backend(None)
    assert sc.get_backend().name == "numpy"  # the environment variable again
    monkeypatch.delenv("SOFTCORE_BACKEND")
    _registry.reset()  # so does reset()
    assert sc.get_backend().name == "c"


def test_use_backend_is_thread_local(install_plugin, fake_source):
    install_plugin(
        "th",
        {"t1": "m1:backend", "t2": "m2:backend"},
        {"m1": fake_source("t1", -1), "m2": fake_source("t2", -2)},
    )
    default = sc.get_backend().name
    barrier = threading.Barrier(4)
    seen: dict[int, list[str]] = {}

    def work(i: int) -> None:
        name = ("t1", "t2", "numpy", "t1")[i]
        with sc.use_backend(name):
            barrier.wait()
            seen[i] = [sc.get_backend().name for _ in range(50)]
            barrier.wait()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {i: [n] * 50 for i, n in enumerate(("t1", "t2", "numpy", "t1"))}
    assert sc.get_backend().name == default


def test_use_backend_is_task_local(install_plugin, fake_source):
    install_plugin("as", {"t1": "m1:backend"}, {"m1": fake_source("t1", -1)})

    async def task(name: str) -> list[str]:
        with sc.use_backend(name):
            out = []
            for _ in range(5):
                await asyncio.sleep(0)
                out.append(sc.get_backend().name)
            return out

    async def both():
        return await asyncio.gather(task("t1"), task("numpy"))

    a, b = asyncio.run(both())
    assert a == ["t1"] * 5
    assert b == ["numpy"] * 5


def test_env_var_selects_in_a_fresh_process():
    code = "import softcore; print(softcore.get_backend().name)"
    env = {**os.environ, "SOFTCORE_BACKEND": "numpy"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.strip()
    assert out == "numpy"
    env["SOFTCORE_BACKEND"] = "missing-one"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env
    )
    assert proc.returncode != 0
    assert "no softcore backend named 'missing-one'" in proc.stderr


def test_in_process_register_and_unregister(fresh_registry):
    from softcore._reference import ReferenceBackend

    class Loop(ReferenceBackend):
        name = "loopback"
        priority = -5

    fresh_registry.register(Loop())
    assert "loopback" in [r.name for r in sc.list_backends()]
    np.testing.assert_array_equal(
        sc.softmax(X, backend="loopback"), sc.softmax(X, backend="numpy")
    )
    with pytest.raises(ValueError, match="already registered"):
        fresh_registry.register(Loop())
    fresh_registry.unregister("loopback")
    assert "loopback" not in [r.name for r in sc.list_backends()]
