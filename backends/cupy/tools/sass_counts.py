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

``--path OP:DTYPE:C:T`` counts instead the code one thread runs for a row of ``C``
classes at ``T`` threads per row: a probe kernel calls the op's template with ``C``
and the launch's ``blockDim`` fixed at compile time and ``threadIdx`` at 0 (the row
pointer still differs per lane, so the shuffles stay), so every branch on them is
resolved, and the count runs from the entry to the first unconditional ``EXIT``. The
rare data-dependent branches that are left (subnormal windows, a division's slow
path) are mostly calls out of line; a few of their instructions are counted.

    python backends/cupy/tools/sass_counts.py sc_softmax_f32_v4 sc_softmax_f64_v2u
    python backends/cupy/tools/sass_counts.py --base HEAD~1 'sc_ce_grad_f32_*'
    python backends/cupy/tools/sass_counts.py --base HEAD~1 --path softmax:f32:1024:64
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
from softcore_cupy._kernels import (  # noqa: E402
    NVRTC_OPTIONS,
    kernel_source,
    max_threads_per_row,
)

OPCODES = ("MUFU", "F2F", "DFMA", "DADD", "DMUL", "BRA", "CALL", "STL", "LDL")
PATH_OPCODES = ("MUFU", "F2F", "DFMA", "DADD", "DMUL", "SHFL", "BAR", "STL", "LDL")

# --path: the template call per op (x, y: inputs, t: targets, o: the row output, d:
# per-row doubles; T, N and C are constants of the probe)
_PROBE_CALLS = {
    "softmax": "softmax_impl<T, N, 4, true, 0>(x, o, rows, C)",
    "log_softmax": "softmax_impl<T, N, 4, true, 1>(x, o, rows, C)",
    "logsumexp": "lse_impl<T, N, 4, true, 0, T>(x, o, rows, C)",
    "softmax_backward": "softmax_backward_impl<T, N, 4, true>(x, y, o, rows, C)",
    "log_softmax_backward": (
        "log_softmax_backward_impl<T, N, 4, true>(x, y, o, rows, C)"
    ),
    "ce": "ce_impl<T, N, 4, true, 0>(x, CeArrays{t, d, d, d, 1.0}, d, (T*)0, rows, C)",
    "ce_grad": (
        "ce_impl<T, N, 4, true, 1>(x, CeArrays{t, d, d, d, d[0]}, d, o, rows, C)"
    ),
    "ce_idx_grad": (
        "ce_impl<T, N, 4, true, 1>(x, CeTargets{t, d, d, t[0], t[1], d[1], d[2]}, d, "
        "o, rows, C)"
    ),
    "ce_prob": "ce_prob_impl<T, N, 4, true, 0>(x, y, 0.0, d, 1.0, d, (T*)0, rows, C)",
    "ce_prob_grad": "ce_prob_impl<T, N, 4, true, 1>(x, y, 0.0, d, 1.0, d, o, rows, C)",
}


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


def _parse_path(spec: str) -> tuple[str, str, int, int, int, int]:
    """(call, C type, vector width, C, T, launch bound) of ``OP:DTYPE:C:T``."""
    try:
        op, dtype, c, t = spec.split(":")
        c_, t_ = int(c), int(t)
        typ, vec = {"f32": ("float", 4), "f64": ("double", 2)}[dtype]
        call = _PROBE_CALLS[op]
    except (ValueError, KeyError):
        raise SystemExit(
            f"--path {spec!r}: expected OP:DTYPE:C:T, OP one of "
            f"{', '.join(_PROBE_CALLS)}, DTYPE f32 or f64"
        ) from None
    bound = max_threads_per_row(op)
    if c_ % vec or t_ not in (8, 16, 32, 64, 128, 256, 512, 1024) or t_ > bound:
        raise SystemExit(f"--path {spec!r}: C a multiple of {vec}, T from 8 to {bound}")
    return call, typ, vec, c_, t_, bound


def probe_source(source: str, *specs: str) -> str:
    """``source`` with a probe kernel per ``OP:DTYPE:C:T`` (all at one T): ``sc_probe``
    for a single spec, ``sc_probe0``, ``sc_probe1``, ... for several."""
    parsed = [_parse_path(spec) for spec in specs]
    t_ = parsed[0][4]
    if any(p[4] != t_ for p in parsed):
        raise SystemExit("probe_source: every spec at the same threads per row")
    rows_per_block = 128 // t_ if t_ < 32 else (4 if t_ == 32 else 1)
    pre = (
        "struct ScProbeDim {\n"
        f"    static constexpr unsigned x = {t_}, y = {rows_per_block}, z = 1;\n"
        "};\n"
        "struct ScProbeTid { static constexpr unsigned x = 0, y = 0, z = 0; };\n"
        "#define blockDim ScProbeDim()\n#define threadIdx ScProbeTid()\n"
    )
    probes = []
    for i, (call, typ, vec, c_, _, bound) in enumerate(parsed):
        name = "sc_probe" if len(parsed) == 1 else f"sc_probe{i}"
        probes.append(  # the op's launch bound, as its entry points have it
            f'extern "C" __global__ void __launch_bounds__({bound})\n'
            f"{name}(const void* a, const void* b, void* c, double* d,\n"
            "        long long rows) {\n"
            f"    typedef {typ} T;\n"
            f"    constexpr int N = {vec};\n"
            f"    constexpr long long C = {c_};\n"
            "    unsigned lane;  // a per-lane row pointer: the lanes' values differ\n"
            '    asm volatile("mov.u32 %0, %%laneid;" : "=r"(lane));\n'
            "    const T* x = (const T*)((const char*)a + lane * rows);\n"
            "    const T* y = (const T*)b;\n"
            "    const i64* t = (const i64*)b;\n"
            "    T* o = (T*)c;\n"
            f"    {call};\n}}\n"
        )
    return pre + source + "\n" + "".join(probes)


def path_counts(source: str, arch: str, ptxas: str, nvdisasm: str) -> dict[str, int]:
    """Instructions of ``sc_probe`` from its entry to its first unconditional EXIT."""
    with tempfile.TemporaryDirectory() as tmp:
        cubin, _ = compile_cubin(source, arch, Path(tmp), ptxas)
        sass = subprocess.run(
            [nvdisasm, "-c", str(cubin)], capture_output=True, text=True, check=True
        ).stdout
    counts: collections.Counter = collections.Counter()
    inside = False
    for line in sass.splitlines():
        m = re.match(r"\s*\.text\.(\w+):", line)
        if m:
            inside = m.group(1) == "sc_probe"
            continue
        if not inside:
            continue
        m = re.search(r"/\*[0-9a-f]{4,}\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", line)
        if m:
            counts[m.group(2)] += 1
            if m.group(2) == "EXIT" and not m.group(1):
                break
    row = {"path": sum(counts.values())}
    for op in PATH_OPCODES:
        row[op] = counts[op]
    return row


def _path_row(d: dict[str, int]) -> str:
    return " ".join(f"{k}={d[k]}" for k in ("path", *PATH_OPCODES))


def _row(d: dict[str, int]) -> str:
    keys = ("regs", "spill_st", "spill_ld", "total", *OPCODES)
    return " ".join(f"{k}={d.get(k, '-')}" for k in keys)


def _source_at(rev: str) -> str:
    """``kernels.cu`` as it was at git revision ``rev``."""
    rel = "backends/cupy/softcore_cupy/kernels.cu"
    top = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"],
        capture_output=True,
        text=True,
        check=True,
        cwd=HERE,
    ).stdout.strip()
    return subprocess.run(
        ["git", "show", f"{rev}:{rel}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=top,
    ).stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kernels", nargs="*", default=["sc_*"], help="names or globs")
    ap.add_argument("--arch", default="90", help="sm_ architecture (default 90)")
    ap.add_argument("--base", help="a git revision to compare with")
    ap.add_argument(
        "--path",
        action="append",
        metavar="OP:DTYPE:C:T",
        help="the code one thread runs for a row (repeatable): softmax:f32:1024:64",
    )
    ap.add_argument(
        "--define",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a macro for the source counted as 'now' (repeatable): SC_TAIL_BATCH=4",
    )
    args = ap.parse_args(argv)
    defines = "".join(
        "#define {} {}\n".format(*(d.split("=", 1) + ["1"])[:2]) for d in args.define
    )
    now_src = defines + kernel_source()
    ptxas, nvdisasm = find_tool("ptxas"), find_tool("nvdisasm")
    if ptxas is None or nvdisasm is None:
        print("needs ptxas and nvdisasm (a CUDA toolkit, or the copies Triton ships)")
        return 2
    if args.path:
        base_src = _source_at(args.base) if args.base else None
        tools = (args.arch, ptxas, nvdisasm)
        for spec in args.path:
            print(spec)
            if base_src is not None:
                old_p = path_counts(probe_source(base_src, spec), *tools)
                print(f"  {args.base:>8}: {_path_row(old_p)}")
            new_p = path_counts(probe_source(now_src, spec), *tools)
            print(f"  {'now':>8}: {_path_row(new_p)}")
        return 0
    new = measure(now_src, args.arch, ptxas, nvdisasm)
    old = None
    if args.base:
        old = measure(_source_at(args.base), args.arch, ptxas, nvdisasm)
    names = sorted(n for n in new if any(fnmatch.fnmatch(n, p) for p in args.kernels))
    for name in names:
        print(name)
        if old is not None:
            print(f"  {args.base:>8}: {_row(old.get(name, {}))}")
        print(f"  {'now':>8}: {_row(new[name])}")
    return 0 if names else 1


if __name__ == "__main__":
    sys.exit(main())
