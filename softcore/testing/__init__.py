"""softcore's conformance kit: what "a backend works" means.

Run it against any registered backend::

    python -m softcore check NAME [--max-examples N] [--accuracy]
    pytest --pyargs softcore.testing.suite -p softcore.testing.pytest_plugin \\
        --softcore-backend NAME

Each property of the numerical contract (``DESIGN.md``) is one test function of
:mod:`softcore.testing.suite`, run over every op of :data:`OPS`; the run ends with a
PASS/FAIL verdict per property.  Accuracy bounds are in :data:`TOLERANCES`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from softcore.testing._runtime import DEFAULT_MAX_EXAMPLES
from softcore.testing._tolerances import TOLERANCES

__all__ = ["OPS", "TOLERANCES", "check", "main", "pytest_args"]

PLUGIN = "softcore.testing.pytest_plugin"


def __getattr__(name: str) -> object:
    if name == "OPS":  # keep `import softcore.testing` light
        from softcore.testing._cases import OPS

        return OPS
    raise AttributeError(name)


def _needs_plugin_arg() -> bool:
    """Whether ``-p softcore.testing.pytest_plugin`` must be passed to pytest.

    Not when a ``pytest11`` entry point under another name autoloads the module
    (pytest would refuse to register it twice); always when autoloading is off or
    the entry point is named after the module (``-p`` then resolves to it).
    """
    from importlib.metadata import entry_points

    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return True
    eps = [ep for ep in entry_points(group="pytest11") if ep.value == PLUGIN]
    return not eps or any(ep.name == PLUGIN for ep in eps)


def pytest_args(
    name: str,
    *,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    verbose: bool = False,
    accuracy: bool = False,
    select: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The pytest command line that :func:`check` runs (for ``pytest.main``)."""
    from softcore.testing import suite

    args = [os.path.dirname(suite.__file__)]
    if _needs_plugin_arg():
        args += ["-p", PLUGIN]
    args += [
        "--softcore-backend",
        name,
        "--softcore-max-examples",
        str(max_examples),
        # the kit's own configuration, whatever the calling project's pytest.ini says
        "-c",
        os.devnull,
        "--rootdir",
        os.path.dirname(suite.__file__),
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    ]
    args += ["-v", "--tb=short"] if verbose else ["-q", "--tb=no", "--no-header"]
    if accuracy:
        args.append("--softcore-accuracy")
    if select:
        args += ["-k", select]
    args += list(extra)
    return args


def check(
    name: str,
    *,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    verbose: bool = False,
    accuracy: bool = False,
    select: str | None = None,
    extra: Sequence[str] = (),
) -> int:
    """Run the conformance kit on backend ``name``; print a verdict per property.

    Parameters
    ----------
    name : str
        A registered backend (``softcore.list_backends()``).
    max_examples : int
        Hypothesis examples per property; larger digs deeper.
    verbose : bool
        Show every test and the tracebacks of failures.
    accuracy : bool
        Also print the largest error measured per op and dtype, and SciPy's.
    select : str, optional
        A pytest ``-k`` expression choosing properties or ops.
    extra : sequence of str
        More pytest arguments.

    Returns
    -------
    int
        0 when every property passed (or was skipped with its reason), pytest's
        exit code otherwise (2 when the backend is unknown or unavailable).
    """
    import pytest

    import softcore

    try:
        obj = softcore.get_backend(name)
    except LookupError as exc:
        print(f"softcore check: {exc}", file=sys.stderr)
        return 2
    avail = obj.available()
    if avail is not True:
        print(
            f"softcore check: backend {name!r} is not available here: {avail}",
            file=sys.stderr,
        )
        return 2
    args = pytest_args(
        name,
        max_examples=max_examples,
        verbose=verbose,
        accuracy=accuracy,
        select=select,
        extra=extra,
    )
    code = pytest.main(args)
    return int(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m softcore check NAME [--max-examples N] ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m softcore check",
        description="Run softcore's conformance kit on one backend and print a "
        "PASS/FAIL verdict per property of the numerical contract.",
    )
    parser.add_argument(
        "name", metavar="NAME", help="backend name (python -m softcore info)"
    )
    parser.add_argument(
        "--max-examples",
        type=int,
        default=DEFAULT_MAX_EXAMPLES,
        metavar="N",
        help=f"hypothesis examples per property (default {DEFAULT_MAX_EXAMPLES})",
    )
    parser.add_argument(
        "-k",
        dest="select",
        default=None,
        metavar="EXPR",
        help="only properties/ops matching this pytest -k expression",
    )
    parser.add_argument(
        "--accuracy",
        action="store_true",
        help="print the largest error measured per op and dtype, and SciPy's",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="list every test and show tracebacks",
    )
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "check":
        args = args[1:]
    ns, extra = parser.parse_known_args(args)
    return check(
        ns.name,
        max_examples=ns.max_examples,
        verbose=ns.verbose,
        accuracy=ns.accuracy,
        select=ns.select,
        extra=extra,
    )
