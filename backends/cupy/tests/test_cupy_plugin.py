"""The plugin without a GPU: cheap import, clear unavailability, type predicate."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import softcore_cupy
from softcore._backend import KERNELS  # the contract's kernel names
from softcore_cupy import _kernels
from softcore_cupy._backend import _check_available


def _run(code: str) -> str:
    # the child finds softcore_cupy where this process found it, installed or not
    root = str(Path(softcore_cupy.__file__).resolve().parents[1])
    path = os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])
    res = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": path},
    )
    return res.stdout.strip()


def test_import_does_not_import_cupy():
    out = _run(
        """
        import sys
        import softcore_cupy
        b = softcore_cupy.backend
        b.accepts(object())
        print(sorted(m for m in sys.modules if m.split('.')[0] in ('cupy', 'cupyx')))
        """
    )
    assert out == "[]"


def test_reports_cupy_not_installed():
    # a None entry in sys.modules makes `import cupy` raise ImportError
    out = _run(
        """
        import sys
        sys.modules['cupy'] = None
        import softcore_cupy
        print(softcore_cupy.backend.available())
        """
    )
    assert out == "cupy not installed"


def test_available_is_true_or_a_reason():
    got = softcore_cupy.backend.available()
    print(f"cupy backend available(): {got!r}")
    assert got is True or (
        isinstance(got, str)
        and got.startswith(("cupy not installed", "no CUDA device", "cupy failed"))
    )
    assert _check_available() == got


def test_backend_attributes():
    b = softcore_cupy.backend
    assert b.name == "cupy"
    assert b.priority == 100
    assert b.threaded is False
    assert b.version == softcore_cupy.__version__
    for k in KERNELS:
        assert callable(getattr(b, k)), k


class _FakeCupyArray:
    pass


_FakeCupyArray.__module__ = "cupy"


class _FakeCupyxArray:
    pass


_FakeCupyxArray.__module__ = "cupyx.scipy.sparse"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.zeros(3), False),
        (np.float32(1.0), False),
        ([1.0, 2.0], False),
        (1.5, False),
        (_FakeCupyArray(), True),
        (_FakeCupyxArray(), False),
    ],
    ids=["ndarray", "numpy-scalar", "list", "float", "cupy-type", "cupyx-type"],
)
def test_accepts(value, expected):
    assert softcore_cupy.backend.accepts(value) is expected


def test_registered_through_the_entry_point():
    from importlib.metadata import entry_points

    eps = {ep.name: ep for ep in entry_points(group="softcore.backends")}
    if "cupy" not in eps:
        pytest.skip("softcore-cupy is not installed (pip install -e backends/cupy)")
    assert eps["cupy"].value == "softcore_cupy:backend"
    assert eps["cupy"].load() is softcore_cupy.backend


def test_listed_by_the_registry():
    softcore = pytest.importorskip("softcore")
    from importlib.metadata import entry_points

    if "cupy" not in {ep.name for ep in entry_points(group="softcore.backends")}:
        pytest.skip("softcore-cupy is not installed (pip install -e backends/cupy)")
    rows = softcore.list_backends()
    text = repr(rows)
    assert "cupy" in text


@pytest.mark.parametrize("itemsize", [4, 8])
@pytest.mark.parametrize("n_classes", [1, 10, 32000, 128256])
@pytest.mark.parametrize("n_features", [16, 4096])
def test_linear_chunk_rows_bounds_the_buffer(n_classes, n_features, itemsize):
    rows = softcore_cupy.backend.linear_chunk_rows(n_classes, n_features, itemsize)
    assert isinstance(rows, int)
    assert 128 <= rows <= 16384
    assert rows * n_classes * itemsize <= max(256 << 20, 128 * n_classes * itemsize)


@pytest.mark.parametrize("least", [32, 8])
@pytest.mark.parametrize("itemsize", [4, 8])
@pytest.mark.parametrize("op", ["softmax", "ce_grad", "softmax_backward", "ce_prob"])
def test_threads_per_row(op, itemsize, least, monkeypatch):
    """The shipped rule (8 lanes of a warp at least), and one warp at least."""
    monkeypatch.setattr(_kernels, "_MIN_THREADS", least)
    cap = 512 if op in _kernels._TWO_OPERAND else 1024
    assert _kernels.max_threads_per_row(op) == cap
    per = _kernels._PER_THREAD[itemsize]
    last = 0
    for c in [1, 2, 31, 32, 33, 100, 511, 512, 513, 1000, 4096, 32000, 10**6]:
        t = _kernels.threads_per_row(c, itemsize, op)
        assert t in _kernels.THREADS_PER_ROW
        assert least <= t <= cap
        assert t >= last  # wider rows never get fewer threads
        last = t
        if t < cap:  # about per elements per thread: at most per, more than per / 2
            assert c <= t * per
            assert t == least or c > t * per // 2


def test_a_launch_the_kernels_do_not_take_is_refused(monkeypatch):
    """threads_per_row is patched by the sweep; a count no kernel is built for (not a
    power of two from 8, or over the launch bound) fails before anything launches."""
    launched = []
    monkeypatch.setattr(_kernels, "_function", lambda *a: launched.append(a))

    class X:  # what _row_launch reads of an array
        shape, dtype = (4, 64), np.dtype(np.float32)
        data = type("D", (), {"ptr": 0})()

    bad_launches = [(4, "softmax"), (48, "softmax"), (2048, "ce"), (1024, "ce_prob")]
    for bad, op in bad_launches:
        monkeypatch.setattr(_kernels, "threads_per_row", lambda *a, _t=bad: _t)
        with pytest.raises(ValueError, match="threads per row"):
            _kernels._row_launch(op, X(), (X(),), ())
    assert launched == []


def test_every_launched_name_is_an_entry_point():
    names = set(_kernels.KERNEL_NAMES)
    for op in _kernels._ROW_OPS:
        for itemsize in (4, 8):
            d = "f32" if itemsize == 4 else "f64"
            for v in (
                "v1",
                f"v{_kernels._VEC[itemsize]}",
                f"v{_kernels._VEC[itemsize]}u",
            ):
                assert f"sc_{op}_{d}_{v}" in names
    for op in _kernels._JAC_OPS:
        assert {f"sc_{op}_f32", f"sc_{op}_f64"} <= names
    src = re.sub(r"//[^\n]*", "", _kernels.kernel_source())
    assert "INFINITY" not in src  # NVRTC has no INFINITY macro
    assert "#include" not in src


class _FakeFunction:
    """A kernel as CuPy's RawKernel answers for shared memory and registers."""

    shared_size_bytes = 512

    def __init__(self, regs=64, refuse=False):
        self.num_regs, self.refuse, self.sets = regs, refuse, []

    @property
    def max_dynamic_shared_size_bytes(self):
        return self.sets[-1] if self.sets else 48 * 1024 - 512

    @max_dynamic_shared_size_bytes.setter
    def max_dynamic_shared_size_bytes(self, value):
        if self.refuse:
            raise RuntimeError("CUDA_ERROR_INVALID_VALUE")
        self.sets.append(value)


# an H100's or H200's answers: threads, shared memory and registers per SM, opt-in
_H100 = {39: 2048, 81: 233472, 82: 65536, 97: 232448}


@pytest.mark.parametrize(
    ("threads", "regs", "refuse", "want", "sets"),
    [
        # one block of 1024 threads fills the registers: it may have the opt-in
        (1024, 64, False, 232448 - 512, [232448 - 512]),
        (1024, 64, True, 48 * 1024 - 512, []),  # the device refuses the opt-in
        # 512 threads at 60 registers (64 allocated): 2 blocks share the SM
        (512, 60, False, 233472 // 2 - 1024 - 512, [233472 // 2 - 1024 - 512]),
        # 128 threads at 40: 12 blocks, within the default; nothing to opt in to
        (128, 40, False, (233472 // 12 - 1024 - 512) // 16 * 16, []),
    ],
)
def test_stage_capacity_keeps_every_resident_block(
    monkeypatch, threads, regs, refuse, want, sets
):
    """A block stages at most its share of the SM's shared memory among the blocks
    that its registers and threads let run at once (so staging costs no resident
    block), within what one block may opt in to, less its static shared memory and
    the system's; the opt-in is set once per kernel, device and launch, and where the
    device refuses it the 48 KiB default is the bound."""
    import types

    asked = []

    def attribute(attr, device):
        asked.append(device)
        return _H100[attr]

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(deviceGetAttribute=attribute),
        driver=types.SimpleNamespace(CUDADriverError=RuntimeError),
    )
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(_kernels, "_stage_caps", {})
    fn = _FakeFunction(regs, refuse)
    for _ in range(3):
        assert _kernels._stage_capacity(fn, "sc_softmax_f32_v4", 1, threads) == want
    assert asked == [1] * 4  # four attributes of this device, asked once
    assert fn.sets == sets


@pytest.mark.parametrize(
    ("op", "c", "itemsize", "threads", "variant", "want"),
    [
        # float32 slots of 4 hold 16 a thread: 1024 threads cache 16384 classes
        ("softmax", 16384, 4, 1024, "f32_v4", 0),
        ("softmax", 16388, 4, 1024, "f32_v4", 16),
        ("softmax", 128256, 4, 1024, "f32_v4", (32064 - 4096) * 16),
        ("ce_grad", 16385, 4, 1024, "f32_v1", 4),
        ("softmax", 8194, 8, 1024, "f64_v2", 16),
        ("log_softmax", 8193, 8, 1024, "f64_v1", 8),
        # group mode (a block holds several rows), ops that read a row once
        ("softmax", 2000, 4, 32, "f32_v4", 0),
        ("logsumexp", 128256, 4, 1024, "f32_v4", 0),
        ("ce", 128256, 4, 1024, "f32_v4", 0),
        # two operands read again: both staged; one read again, one read once
        ("softmax_backward", 16392, 4, 512, "f32_v4", (4098 - 2048) * 16 * 2),
        ("log_softmax_backward", 16392, 4, 512, "f32_v4", (4098 - 2048) * 16),
        ("log_softmax_backward", 8194, 8, 512, "f64_v2", (4097 - 2048) * 16),
        ("softmax_backward", 8194, 8, 512, "f64_v2", 0),  # float32 only
    ],
)
def test_stage_bytes(op, c, itemsize, threads, variant, want):
    assert _kernels.stage_bytes(op, c, itemsize, threads, variant) == want
