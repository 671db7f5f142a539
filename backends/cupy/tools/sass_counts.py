"""What the CUDA kernels compile to, without a GPU: registers, spills and SASS counts.

Compiles ``kernels.cu`` the way CuPy does (NVRTC, the backend's options) to PTX for
one architecture, assembles it with ``ptxas`` and disassembles it with ``nvdisasm``,
then prints per kernel its registers, spill bytes and instruction counts (all, and
the opcodes that matter here: ``MUFU`` special functions, ``F2F`` float/double
conversions, double arithmetic, local-memory traffic). ``--base REV`` prints the
same for the source at a git revision beside it.

These are static counts of the compiled code, rare branches included: a proxy for
the work per element, not a timing (the driver's JIT may also allocate registers
differently). ``ptxas`` and ``nvdisasm`` come from a CUDA toolkit, or from the
Triton package that PyTorch installs.

    python backends/cupy/tools/sass_counts.py sc_softmax_f32_v4 sc_softmax_f64_v2u
    python backends/cupy/tools/sass_counts.py --base HEAD~1 'sc_ce_grad_f32_*'
"""

from __future__ import annotations

import argparse
import collections
import fnmatch
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from softcore_cupy import _nvrtc  # noqa: E402
from softcore_cupy._kernels import NVRTC_OPTIONS, kernel_source  # noqa: E402

OPCODES = ("MUFU", "F2F", "DFMA", "DADD", "DMUL", "BRA", "CALL", "STL", "LDL")


def find_tool(name: str) -> str | None:
    """``name`` (ptxas, nvdisasm) on the PATH, else the copy Triton ships."""
    found = shutil.which(name)
    if found:
        return found
    spec = importlib.util.find_spec("triton")
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        cand = Path(base, "backends", "nvidia", "bin", name)
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return None


def compile_cubin(
    source: str, arch: str, workdir: Path, ptxas: str
) -> tuple[Path, str]:
    """(cubin path, ptxas -v log) of ``source`` for ``sm_<arch>``."""
    lib = _nvrtc.load_nvrtc()
    ok, log, ptx = _nvrtc.compile_source(lib, source, arch, NVRTC_OPTIONS)
    if not ok:
        raise RuntimeError("NVRTC failed:\n" + log)
    (workdir / "k.ptx").write_text(ptx)
    cubin = workdir / "k.cubin"
    res = subprocess.run(
        [ptxas, f"-arch=sm_{arch}", "-v", str(workdir / "k.ptx"), "-o", str(cubin)],
        capture_output=True,
        text=True,
        check=True,
    )
    return cubin, res.stderr


def resources(ptxas_log: str) -> dict[str, dict[str, int]]:
    """Registers and spill bytes per entry point, from ``ptxas -v``."""
    out: dict[str, dict[str, int]] = {}
    cur = None
    for line in ptxas_log.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'", line)
        if m:
            cur = out.setdefault(m.group(1), {})
            continue
        if cur is None:
            continue
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            cur["spill_st"], cur["spill_ld"] = int(m.group(1)), int(m.group(2))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            cur["regs"] = int(m.group(1))
    return out


def opcode_counts(sass: str) -> dict[str, collections.Counter]:
    """Instruction counts by opcode per kernel, from ``nvdisasm -c`` output."""
    out: dict[str, collections.Counter] = {}
    cur = None
    for line in sass.splitlines():
        m = re.match(r"\.text\.(\w+):", line)
        if m:
            cur = out.setdefault(m.group(1), collections.Counter())
            continue
        m = re.search(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", line)
        if m and cur is not None:
            cur[m.group(1)] += 1
    return out


def measure(
    source: str, arch: str, ptxas: str, nvdisasm: str
) -> dict[str, dict[str, int]]:
    with tempfile.TemporaryDirectory() as tmp:
        cubin, log = compile_cubin(source, arch, Path(tmp), ptxas)
        sass = subprocess.run(
            [nvdisasm, "-c", str(cubin)], capture_output=True, text=True, check=True
        ).stdout
    res = resources(log)
    for name, counts in opcode_counts(sass).items():
        row = res.setdefault(name, {})
        row["total"] = sum(counts.values())
        for op in OPCODES:
            row[op] = counts[op]
    return res


def _row(d: dict[str, int]) -> str:
    keys = ("regs", "spill_st", "spill_ld", "total", *OPCODES)
    return " ".join(f"{k}={d.get(k, '-')}" for k in keys)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kernels", nargs="*", default=["sc_*"], help="names or globs")
    ap.add_argument("--arch", default="90", help="sm_ architecture (default 90)")
    ap.add_argument("--base", help="a git revision to compare with")
    args = ap.parse_args(argv)
    ptxas, nvdisasm = find_tool("ptxas"), find_tool("nvdisasm")
    if ptxas is None or nvdisasm is None:
        print("needs ptxas and nvdisasm (a CUDA toolkit, or the copies Triton ships)")
        return 2
    new = measure(kernel_source(), args.arch, ptxas, nvdisasm)
    old = None
    if args.base:
        rel = "backends/cupy/softcore_cupy/kernels.cu"
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            check=True,
            cwd=HERE,
        ).stdout.strip()
        src = subprocess.run(
            ["git", "show", f"{args.base}:{rel}"],
            capture_output=True,
            text=True,
            check=True,
            cwd=top,
        ).stdout
        old = measure(src, args.arch, ptxas, nvdisasm)
    names = sorted(n for n in new if any(fnmatch.fnmatch(n, p) for p in args.kernels))
    for name in names:
        print(name)
        if old is not None:
            print(f"  {args.base:>8}: {_row(old.get(name, {}))}")
        print(f"  {'now':>8}: {_row(new[name])}")
    return 0 if names else 1


if __name__ == "__main__":
    sys.exit(main())
