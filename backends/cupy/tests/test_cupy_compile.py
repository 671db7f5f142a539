"""Every CUDA kernel compiles with NVRTC: no GPU and no CuPy needed.

Needs the NVRTC library (``pip install nvidia-cuda-nvrtc-cu12``); without it the
tests skip and say so.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from softcore_cupy import _kernels, _nvrtc

TOOL = Path(__file__).resolve().parents[1] / "tools" / "compile_check.py"


@pytest.fixture(scope="module")
def nvrtc():
    try:
        lib = _nvrtc.load_nvrtc()
    except OSError as exc:
        pytest.skip(f"NVRTC not installed, kernels not compiled: {exc}")
    print(f"NVRTC {_nvrtc.nvrtc_version(lib)} at {_nvrtc.find_nvrtc()}")
    return lib


_compiled: dict[str, tuple[bool, str, str]] = {}


def _compile(lib, arch):
    if arch not in _compiled:
        _compiled[arch] = _nvrtc.compile_source(
            lib, _kernels.kernel_source(), arch, _kernels.NVRTC_OPTIONS
        )
    return _compiled[arch]


@pytest.mark.parametrize("arch", _nvrtc.DEFAULT_ARCHS)
def test_kernels_compile(nvrtc, arch):
    ok, log, ptx = _compile(nvrtc, arch)
    assert ok, log
    warnings = [
        ln
        for ln in log.splitlines()
        if "warning" in ln and "Architectures prior to" not in ln
    ]
    assert not warnings, log
    for name in _kernels.KERNEL_NAMES:
        assert f".entry {name}(" in ptx, f"{name} missing from the PTX"


def test_tail_batch_modules_compile(nvrtc):
    """The modules ``tools/bench_gpu.py`` builds to time tail batches (``_kernels.
    TAIL_BATCH``): every kernel, no warning, and code other than the shipped
    module's (the defines reach the source)."""
    options = _kernels.compile_options((4, 2))
    assert options[-2:] == ("-DSC_TAIL_BATCH_F32=4", "-DSC_TAIL_BATCH_F64=2")
    assert _kernels.compile_options((1, 1)) == _kernels.NVRTC_OPTIONS
    src = _kernels.kernel_source()
    ok, log, ptx = _nvrtc.compile_source(nvrtc, src, "90", options)
    assert ok, log
    assert not [ln for ln in log.splitlines() if "warning" in ln], log
    for name in _kernels.KERNEL_NAMES:
        assert f".entry {name}(" in ptx, f"{name} missing from the PTX"
    assert ptx != _compile(nvrtc, "90")[2]


def test_float_conversions_keep_subnormals(nvrtc):
    # CuPy compiles with -ftz=true: float results must not be flushed on the way out
    ok, log, ptx = _compile(nvrtc, "90")
    assert ok, log
    assert "cvt.rn.f32.f64" in ptx
    assert "cvt.ftz.f64.f32" not in ptx


def test_nan_propagating_max_by_architecture(nvrtc):
    """sm_80 and later find a float maximum with max.NaN (one instruction); compute_75,
    which lacks it, with the comparisons."""
    for arch, has in (("75", False), ("90", True)):
        ok, log, ptx = _compile(nvrtc, arch)
        assert ok, log
        assert ("max.NaN.f32" in ptx) == has, arch


def _entries(ptx):
    """Each entry point's PTX text (its directives and body, up to the body's closing
    brace: the out-of-line functions NVVM places after the last entry are not that
    entry's), by name."""
    out = {}
    for part in ptx.split(".entry ")[1:]:
        out[part.split("(", 1)[0]] = part.split("\n}\n", 1)[0]
    return out


def test_split_kernels_by_architecture(nvrtc):
    """The split-row kernels ("Split rows" in kernels.cu): on compute_90 each names
    its cluster (``.reqnctapercluster``, the ``_c<CL>`` of its name) and reads the
    other blocks' shared memory (``mapa``); before sm_90 they compile to a trap, and
    no other kernel of the module touches a cluster (the module still loads there)."""
    for arch in ("80", "90"):
        ok, log, ptx = _compile(nvrtc, arch)
        assert ok, log
        entries = _entries(ptx)
        split = {n: t for n, t in entries.items() if n.startswith("sc_split_")}
        want = len(_kernels._SPLIT_OPS) * len(_kernels.CLUSTERS) * 2  # f32, f64
        assert len(split) == want, sorted(split)
        for name, text in split.items():
            cl = name.rsplit("_c", 1)[1]
            if arch == "90":
                assert f".reqnctapercluster {cl}, 1, 1" in text, name
                assert "mapa.shared::cluster" in text, name
                assert "barrier.cluster.arrive" in text, name
            else:
                assert "trap;" in text, name
                assert "cluster" not in text, name
        others = [t for n, t in entries.items() if not n.startswith("sc_split_")]
        assert not any("cluster" in t for t in others), arch


def test_a_syntax_error_is_reported(nvrtc):
    bad = _kernels.kernel_source().replace("__shfl_xor_sync", "__shfl_xor_sync_typo", 1)
    ok, log, _ = _nvrtc.compile_source(nvrtc, bad, "90", _kernels.NVRTC_OPTIONS)
    assert not ok
    assert "error" in log


def test_compile_check_tool(nvrtc):
    res = subprocess.run(
        [sys.executable, str(TOOL), "--arch", "90"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "all compiled" in res.stdout


def _sass_counts():
    sys.path.insert(0, str(TOOL.parent))
    try:
        import sass_counts
    finally:
        sys.path.pop(0)
    return sass_counts


def test_path_probes_compile(nvrtc):
    """sass_counts.py --path: every op's probe kernel compiles (its template calls
    follow the kernels' signatures), in both dtypes."""
    sass_counts = _sass_counts()
    ops = sass_counts._PROBE_CALLS
    specs = [f"{op}:{d}:64:32" for op in ops for d in ("f32", "f64")]
    src = sass_counts.probe_source(_kernels.kernel_source(), *specs)
    ok, log, ptx = _nvrtc.compile_source(nvrtc, src, "90", _kernels.NVRTC_OPTIONS)
    assert ok, log
    for i in range(len(specs)):
        assert f".entry sc_probe{i}(" in ptx, specs[i]
    with pytest.raises(SystemExit):
        sass_counts.probe_source("", "softmax:f32:64:48")  # no such launch


def test_path_counts(nvrtc):
    """--path counts one thread's code: a warp's row has its shuffles and no barrier,
    a block's row its barriers too."""
    sass_counts = _sass_counts()
    ptxas, nvdisasm = sass_counts.find_tool("ptxas"), sass_counts.find_tool("nvdisasm")
    if None in (ptxas, nvdisasm):
        pytest.skip("ptxas or nvdisasm not found (CUDA toolkit): SASS not counted")
    src = _kernels.kernel_source()
    warp = sass_counts.path_counts(
        sass_counts.probe_source(src, "softmax:f32:128:32"), "90", ptxas, nvdisasm
    )
    block = sass_counts.path_counts(
        sass_counts.probe_source(src, "softmax:f32:1024:64"), "90", ptxas, nvdisasm
    )
    assert warp["SHFL"] >= 10  # a maximum and a sum, 5 steps each
    assert warp["BAR"] == 0
    assert block["SHFL"] >= 10
    assert block["BAR"] >= 2
    assert 0 < warp["path"] < block["path"]  # 4 floats a thread against 16
    assert warp["MUFU"] >= 4  # an exp per element


def test_sass_counts_tool(nvrtc):
    """The static-count tool (registers, spills, SASS opcodes) on one kernel."""
    sass_counts = _sass_counts()
    if None in (sass_counts.find_tool("ptxas"), sass_counts.find_tool("nvdisasm")):
        pytest.skip("ptxas or nvdisasm not found (CUDA toolkit): SASS not counted")
    res = subprocess.run(
        [sys.executable, str(TOOL.parent / "sass_counts.py"), "sc_softmax_f32_v4"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    line = res.stdout.splitlines()[1]
    counts = dict(kv.split("=") for kv in line.split(":", 1)[1].split())
    assert 0 < int(counts["regs"]) <= 64  # __launch_bounds__(1024)
    assert int(counts["MUFU"]) > 0  # expf's ex2
