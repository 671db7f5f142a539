"""``python -m softcore info | demo | check NAME | bench | warmup``."""

from __future__ import annotations

import sys

USAGE = """usage: python -m softcore COMMAND [ARGS]

commands:
  info            backends, versions, availability with reasons, thread settings
  demo            train a softmax-regression classifier on every available backend
  check NAME      run the conformance kit on backend NAME (python -m softcore check -h)
  bench           benchmark matrix with ratios (python -m softcore bench -h)
  warmup [NAME]   compile the backends' kernels ahead of first use (-j N processes)
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if args else 2
    cmd, rest = args[0], args[1:]
    if cmd == "info":
        from softcore._info import main as run
    elif cmd == "demo":
        from softcore._demo import main as run
    elif cmd == "check":
        from softcore.testing import main as run
    elif cmd == "bench":
        from softcore._bench import main as run
    elif cmd == "warmup":
        from softcore._warmup import main as run
    else:
        print(f"unknown command {cmd!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    return int(run(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
