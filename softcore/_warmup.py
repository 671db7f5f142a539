"""``python -m softcore warmup``: compile backends' kernels before their first call.

A backend that compiles on first use (numba's JIT, CuPy's NVRTC) offers an optional
``precompile(jobs)`` (see ``backends/README.md``) that fills its on-disk cache, so a
first call in a later process only loads the code: for a container image, a cluster
job's first step, or CI.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import softcore


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m softcore warmup",
        description="Compile every kernel of the named backends (default: every "
        "available one) into their on-disk caches, ahead of first use.",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="backends to warm up")
    p.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=None,
        help="processes compiling at once (default: the backend's choice, about "
        "one per CPU)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    if args.jobs is not None and args.jobs < 1:
        print("softcore warmup: --jobs must be at least 1", file=sys.stderr)
        return 2
    known = {r.name: r for r in softcore.list_backends()}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        print(
            f"softcore warmup: unknown backend {unknown[0]!r} "
            f"(registered: {', '.join(sorted(known))})",
            file=sys.stderr,
        )
        return 2
    names = args.names or [n for n, r in known.items() if r.available is True]
    status = 0
    for name in names:
        if known[name].available is not True:  # named, so say why it is skipped
            print(f"{name}: unavailable: {known[name].available}", file=sys.stderr)
            status = 2
            continue
        precompile = getattr(softcore.get_backend(name), "precompile", None)
        if precompile is None:
            print(f"{name}: nothing to compile ahead")
            continue
        t0 = time.perf_counter()
        try:
            what = precompile(jobs=args.jobs)
        except Exception as exc:  # report per backend, go on with the next
            print(f"{name}: precompiling failed: {type(exc).__name__}: {exc}")
            status = 1
            continue
        print(f"{name}: {what} ({time.perf_counter() - t0:.1f} s)", flush=True)
    return status
