"""pytest plugin of the conformance kit: options, backend choice, verdict table.

Load it with ``-p softcore.testing.pytest_plugin`` (or through the ``pytest11``
entry point ``softcore``), then::

    pytest --pyargs softcore.testing --softcore-backend NAME [--softcore-max-examples N]

Each test function of ``softcore/testing/suite`` is one *property*; the summary
prints one verdict per property (PASS / FAIL / SKIP, with the ops that failed and
the first line of each failure).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from softcore.testing import _runtime

SUITE_PACKAGE = "softcore.testing.suite"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("softcore", "softcore conformance kit")
    group.addoption(
        "--softcore-backend",
        default=None,
        metavar="NAME",
        help="backend the conformance kit checks (see softcore.list_backends())",
    )
    group.addoption(
        "--softcore-max-examples",
        type=int,
        default=None,
        metavar="N",
        help="hypothesis examples per property "
        f"(default {_runtime.DEFAULT_MAX_EXAMPLES})",
    )
    group.addoption(
        "--softcore-accuracy",
        action="store_true",
        default=False,
        help="print the largest error measured per op and dtype (and SciPy's)",
    )


def pytest_configure(config: pytest.Config) -> None:
    cfg = _runtime.CONFIG
    cfg.backend = config.getoption("softcore_backend")
    n = config.getoption("softcore_max_examples")
    cfg.max_examples = n if n else _runtime.DEFAULT_MAX_EXAMPLES
    cfg.report_accuracy = bool(config.getoption("softcore_accuracy"))
    config.stash[_verdicts_key] = _Verdicts()


_verdicts_key = pytest.StashKey["_Verdicts"]()


class _Verdicts:
    def __init__(self) -> None:
        self.where: dict[str, tuple[str, str]] = {}  # nodeid -> (property, case)
        self.order: list[str] = []
        self.outcomes: dict[str, dict[str, list[tuple[str, str]]]] = defaultdict(
            lambda: defaultdict(list)
        )

    def add_item(self, item: pytest.Item) -> None:
        mod = getattr(item, "module", None)
        if mod is None or not mod.__name__.startswith(SUITE_PACKAGE):
            return
        prop = item.originalname if hasattr(item, "originalname") else item.name
        prop = prop.removeprefix("test_")
        callspec = getattr(item, "callspec", None)
        case = ""
        if callspec is not None:
            case = ",".join(str(v) for v in callspec.params.values())
        self.where[item.nodeid] = (prop, case)
        if prop not in self.order:
            self.order.append(prop)

    def add_report(self, rep: pytest.TestReport) -> None:
        key = self.where.get(rep.nodeid)
        if key is None:
            return
        prop, case = key
        if rep.when == "call" or rep.outcome != "passed":
            if rep.skipped:
                reason = (
                    rep.longrepr[2]
                    if isinstance(rep.longrepr, tuple)
                    else str(rep.longrepr)
                )
                self.outcomes[prop]["skipped"].append(
                    (case, reason.removeprefix("Skipped: "))
                )
            elif rep.failed:
                self.outcomes[prop]["failed"].append((case, _first_lines(rep)))
            elif rep.when == "call":
                self.outcomes[prop]["passed"].append((case, ""))


def _first_lines(rep: pytest.TestReport) -> str:
    crash = getattr(rep.longrepr, "reprcrash", None)
    msg = crash.message if crash is not None else str(rep.longrepr)
    msg = msg.split("Falsifying example", 1)[0]  # hypothesis' repr of the call follows
    lines = [ln for ln in msg.splitlines() if ln.strip()]
    text = " ".join(lines[:3]) if lines else "(no message)"
    return text if len(text) <= 400 else text[:397] + "..."


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    verdicts = config.stash[_verdicts_key]
    for item in items:
        verdicts.add_item(item)
    if not verdicts.where:
        return  # no kit tests in this session: nothing to check, nothing to import
    reason = _backend_problem()
    if reason:
        for item in items:
            if item.nodeid in verdicts.where:
                item.add_marker(pytest.mark.skip(reason=reason))


def _backend_problem() -> str | None:
    name = _runtime.CONFIG.backend
    if name is None:
        return (
            "no backend chosen: pass --softcore-backend NAME "
            "(or run python -m softcore check NAME)"
        )
    import softcore

    try:
        obj = softcore.get_backend(name)
    except LookupError as exc:
        return f"backend {name!r} cannot be used: {exc}"
    avail = obj.available()
    if avail is not True:
        return f"backend {name!r} is not available here: {avail}"
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    outcome = yield
    rep = outcome.get_result()
    item.config.stash[_verdicts_key].add_report(rep)


def verdict_lines(config: pytest.Config) -> tuple[list[str], bool]:
    """The verdict table as lines, and whether every property passed or skipped."""
    v = config.stash[_verdicts_key]
    name = _runtime.CONFIG.backend
    lines = []
    head = f"softcore conformance kit: backend {name!r}"
    try:
        import softcore

        obj = softcore.get_backend(name)
        threaded = bool(getattr(obj, "threaded", False))
        head += f" {getattr(obj, 'version', '?')}, threaded={threaded}"
    except Exception:
        pass
    head += f", max_examples={_runtime.CONFIG.max_examples}"
    lines.append(head)
    width = max([len(p) for p in v.order] + [8])
    ok = True
    n_fail = 0
    for prop in v.order:
        o = v.outcomes.get(prop, {})
        failed, passed, skipped = (
            o.get("failed", []),
            o.get("passed", []),
            o.get("skipped", []),
        )
        if failed:
            verdict, ok = "FAIL", False
            n_fail += 1
            cases = sorted({c for c, _ in failed})
            detail = f"{len(failed)} failed ({', '.join(cases)}), {len(passed)} passed"
        elif passed:
            verdict = "PASS"
            detail = f"{len(passed)} passed" + (
                f", {len(skipped)} skipped" if skipped else ""
            )
        elif skipped:
            verdict = "SKIP"
            reasons = sorted({r for _, r in skipped})
            detail = "; ".join(reasons)
        else:
            continue  # deselected
        lines.append(f"  {verdict}  {prop:<{width}}  {detail}")
        for case, msg in failed[:3]:
            lines.append(f"          {case}: {msg}")
        if len(failed) > 3:
            lines.append(f"          ... and {len(failed) - 3} more")
    total = sum(1 for p in v.order if v.outcomes.get(p))
    ran = any(
        v.outcomes[p].get("passed") or v.outcomes[p].get("failed") for p in v.outcomes
    )
    if not ran:
        lines.append("VERDICT: NOT RUN (every property was skipped, reasons above)")
    elif ok:
        lines.append(f"VERDICT: PASS ({total} properties)")
    else:
        lines.append(f"VERDICT: FAIL ({n_fail} of {total} properties failed)")
    return lines, ok


def accuracy_lines() -> list[str]:
    from softcore.testing._tolerances import TOLERANCES

    acc = _runtime.ACCURACY
    lines = ["measured max error, ULPs at each op's metric (TOLERANCES), and SciPy's:"]
    lines.append(
        f"  {'op':<32} {'output':<16} {'dtype':<8} {'max':>9} {'scipy':>9} {'tol':>5}"
    )
    for key in sorted(acc.worst):
        op, out, dt = key
        sp = acc.scipy.get(key)
        tol = TOLERANCES[op][dt]
        sps = f"{sp:9.3g}" if sp is not None else f"{'-':>9}"
        lines.append(
            f"  {op:<32} {out:<16} {dt:<8} {acc.worst[key]:9.3g} {sps} {tol!s:>5}"
        )
    return lines


def pytest_terminal_summary(
    terminalreporter: Any, exitstatus: int, config: pytest.Config
) -> None:
    if not config.stash[_verdicts_key].order:
        return
    tr = terminalreporter
    lines, _ = verdict_lines(config)
    tr.section("softcore conformance verdict")
    for ln in lines:
        tr.write_line(ln)
    if _runtime.CONFIG.report_accuracy:
        tr.section("softcore measured accuracy")
        for ln in accuracy_lines():
            tr.write_line(ln)
