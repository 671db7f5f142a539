"""Install every backend plugin of a softcore checkout into asv's environment.

asv installs exactly one wheel per commit (softcore's own); the plugins under
``backends/`` are separate distributions, so they are installed here, each from
the checkout of the commit being benchmarked.  Their third-party dependencies
(numba, ...) come from the ``matrix`` of ``asv.conf.json``; ``--no-deps`` keeps
pip from replacing the softcore wheel asv just built.

Usage: python install_backends.py BUILD_DIR
"""

from __future__ import annotations

import pathlib
import subprocess
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    root = pathlib.Path(argv[0]) / "backends"
    plugins = sorted(p.parent for p in root.glob("*/pyproject.toml"))
    if not plugins:
        print(f"no backend plugins under {root}", file=sys.stderr)
        return 0
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--force-reinstall"]
    cmd += ["--no-build-isolation", *map(str, plugins)]
    print(" ".join(cmd), flush=True)
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
