"""The GPU benchmark's summary lines, from results made up here (no GPU)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "bench_gpu.py"


def _bench_gpu():
    spec = importlib.util.spec_from_file_location("bench_gpu", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_targets_and_the_threads_per_row_sweep():
    b = _bench_gpu()
    big = [65536, 128]  # 32 MiB of float32: counted against the targets
    results = [
        ("rows", {"shape": big, "dtype": "float32", "softmax": 1.5}),
        ("rows", {"shape": [32, 10], "dtype": "float32", "softmax": 9.0}),
        (
            "sweep",
            {
                "shape": big,
                "dtype": "float32",
                "op": "softmax",
                "rule_threads": 32,
                # JSON keys come back as strings
                "ratio_by_threads": {"8": 1.2, "16": 1.3, "32": 2.0, "64": 2.1},
            },
        ),
    ]
    lines = b.summary(results)
    (softmax,) = [ln for ln in lines if ln.startswith("softmax kernel")]
    assert "MISSED" in softmax
    assert "worst 1.50" in softmax
    assert "9.00" not in softmax  # a small call is not held to the target
    assert any(ln.endswith(": not measured") for ln in lines)
    sweep = [ln for ln in lines if ln.startswith("threads per row")]
    assert sweep == [
        "threads per row, softmax [65536, 128] float32: rule 32 2.00, "
        "best 8 1.20 (0.60x)"
    ]


def test_jacobian_kernels_side_by_side():
    b = _bench_gpu()
    row = {"shape": [4096, 64], "dtype": "float32", "softmax_jacobian": 1.5}
    wide = {**row, "shape": [16, 4096], "softmax_jacobian": 4.0}  # one kernel only
    results = [
        ("jacobian", {**row, "softmax_jacobian_wide_kernel": 6.0}),
        ("jacobian", wide),
    ]
    jac = [ln for ln in b.summary(results) if ln.startswith("softmax_jacobian")]
    assert jac == [
        "softmax_jacobian [4096, 64] float32: 1.50 a fill, the wide-row kernel 6.00 "
        "(0.25x)"
    ]


def test_public_cross_entropy_against_the_core_plan():
    b = _bench_gpu()
    row = {
        "shape": [32, 10],
        "dtype": "float32",
        "ce_loss_grad_api": 9.0,
        "ce_loss_grad_plan_api": 20.0,
        "ce_padded_api": 9.5,
        "ce_padded_plan_api": 30.0,
    }
    lines = [ln for ln in b.summary([("rows", row)]) if ln.startswith("sc.cross")]
    assert lines == [
        "sc.cross_entropy_with_grad [32, 10] float32: 9.00 a copy (20.00 through "
        "the core's plan), one row in 8 ignored 9.50 (30.00)"
    ]


def test_staged_tails_against_tails_read_again():
    b = _bench_gpu()
    row = {"shape": [4096, 32768], "dtype": "float32"}
    for op, staged, again in (
        ("softmax", 1.5, 2.0),
        ("log_softmax", 1.2, 1.5),
        ("ce_loss_grad", 1.8, 2.4),
        ("softmax_backward", 2.0, 2.5),
        ("log_softmax_backward", 1.6, 2.0),
    ):
        row[op], row[op + "_reread"] = staged, again
    narrow = {"shape": [65536, 128], "dtype": "float32", "softmax": 2.0}
    lines = [
        ln
        for ln in b.summary([("rows", row), ("rows", narrow)])
        if ln.startswith("staged")
    ]
    assert lines == [
        "staged tails [4096, 32768] float32: softmax 1.50 (2.00, 0.75x), "
        "log_softmax 1.20 (1.50, 0.80x), ce_loss_grad 1.80 (2.40, 0.75x), "
        "softmax_backward 2.00 (2.50, 0.80x), log_softmax_backward 1.60 (2.00, "
        "0.80x) a copy (read again; staged / read again)"
    ]


def test_tail_batches_side_by_side():
    """One line a case: each op at one slot at a time, then each batch beside it
    (keys as ints in memory, as strings from a JSON file)."""
    b = _bench_gpu()
    row = {
        "shape": [1024, 128256],
        "dtype": "float32",
        "ratio_by_batch": {
            "softmax": {1: 1.6, 2: 1.2, 4: 1.28},
            "logsumexp": {"1": 0.8, "2": 0.6, "4": 0.56},
        },
    }
    (line,) = [ln for ln in b.summary([("tail_batch", row)]) if "tail batch" in ln]
    assert line == (
        "tail batch [1024, 128256] float32: softmax 1.60 (b2 1.20 (0.75x), "
        "b4 1.28 (0.80x)); logsumexp 0.80 (b2 0.60 (0.75x), b4 0.56 (0.70x)) a copy"
    )
