"""Compile every CUDA kernel of softcore-cupy with NVRTC; no GPU or CuPy needed.

    pip install nvidia-cuda-nvrtc-cu12
    python backends/cupy/tools/compile_check.py [--arch 75 --arch 90]

Exits 0 when the source compiles for every architecture without a warning and
defines every entry point the backend launches; 1 on a compile error, a warning or
a missing entry point; 2 when no NVRTC library can be found.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from softcore_cupy import _nvrtc

# NVRTC's own note that an old architecture is deprecated is not about our source.
_BENIGN = ("Architectures prior to",)


def _warnings(log: str) -> list[str]:
    return [
        line
        for line in log.splitlines()
        if "warning" in line and not any(b in line for b in _BENIGN)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--arch",
        action="append",
        help="compute capability without the dot, e.g. 90 (repeatable; "
        f"default {' '.join(_nvrtc.DEFAULT_ARCHS)})",
    )
    args = parser.parse_args(argv)
    archs = tuple(args.arch or _nvrtc.DEFAULT_ARCHS)
    try:
        lib = _nvrtc.load_nvrtc()
    except OSError as exc:
        print(f"compile check: cannot run: {exc}", file=sys.stderr)
        return 2
    major, minor = _nvrtc.nvrtc_version(lib)
    print(f"NVRTC {major}.{minor} from {_nvrtc.find_nvrtc()}")
    failed = False
    for arch in archs:
        t0 = time.perf_counter()
        (res,) = _nvrtc.check((arch,))
        dt = time.perf_counter() - t0
        warns = _warnings(res.log)
        status = "ok" if res.ok and not warns else "FAILED"
        print(f"compute_{arch}: {status} ({dt:.1f} s)")
        if not res.ok or warns:
            failed = True
            if res.log:
                print(res.log)
            if res.missing:
                print("missing entry points: " + ", ".join(res.missing))
    n = len(_nvrtc.KERNEL_NAMES)
    print(f"{n} entry points; {'FAILED' if failed else 'all compiled'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
