"""Smoke tests of ``python -m softcore bench`` (softcore._bench).

Tiny shapes, one sample: these check that the command runs, filters, writes JSON,
plots and guards against regressions.  They never assert anything about speed.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from softcore import _bench

TINY = ["--quick", "--repeat", "1", "--no-progress", "--no-peers"]


def run_json(tmp_path, *args: str) -> list[dict]:
    path = tmp_path / "run.json"
    assert _bench.main([*TINY, *args, "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert data["softcore_bench"] == 1
    assert "numpy" in data["environment"]
    return data["results"]


def test_json_written_and_parsed(tmp_path, capsys):
    rows = run_json(
        tmp_path,
        "--op",
        "softmax,logsumexp",
        "--backend",
        "numpy",
        "--shape",
        "16x8",
        "--dtype",
        "float64",
    )
    assert {(r["op"], r["variant"]) for r in rows} == {
        ("softmax", "out"),
        ("softmax", "alloc"),
        ("softmax", "masked"),
        ("softmax", "confident"),
        ("logsumexp", "alloc"),
        ("logsumexp", "masked"),
        ("logsumexp", "confident"),
        ("logsumexp", "weights"),
        ("logsumexp", "class_weights"),
        ("logsumexp", "signed"),
    }
    for r in rows:
        assert r["backend"] == "numpy"
        assert r["shape"] == [16, 8]
        assert r["dtype"] == "float64"
        assert r["floor"] == "copy"
        assert r["time_s"] > 0
        assert math.isfinite(r["ratio_floor"])
        assert r["ratio_floor"] > 0
        assert r["ratio_ref"] == pytest.approx(1.0)  # numpy is the reference
    table = capsys.readouterr().out
    assert "/floor" in table
    assert "softmax" in table
    assert "logsumexp" in table


def test_filters_select_variant_dtype_and_threads(tmp_path):
    rows = run_json(
        tmp_path,
        "--op",
        "cross_entropy_with_grad",
        "--variant",
        "weight,prob",
        "--backend",
        "numpy",
        "--shape",
        "12x5",
        "--dtype",
        "f32",
        "--threads",
        "1",
    )
    assert {r["variant"] for r in rows} == {"weight", "prob"}
    assert {r["dtype"] for r in rows} == {"float32"}
    assert {r["threads"] for r in rows} == {1}


def test_every_op_runs_on_every_installed_backend(tmp_path):
    import softcore as sc

    available = {b.name for b in sc.list_backends() if b.available is True}
    cpu = {n for n in available if getattr(sc.get_backend(n), "xp", np) is np}
    rows = run_json(
        tmp_path,
        "--shape",
        "6x4",
        "--shape",
        "5x3x7",
        "--dtype",
        "float64",
        "--variant",
        "alloc,plain,all,prob",
        "--no-memory",
    )
    seen = {(r["op"], r["backend"]) for r in rows}
    for op in _bench.OPS:
        for name in cpu:
            assert (op, name) in seen, (op, name)


def test_jacobian_floor_and_size_limit(tmp_path):
    op = _bench.OPS["softmax_jacobian"]
    assert _bench.shape_fits(op, (4096, 128), "float64") is None
    assert "GiB" in _bench.shape_fits(op, (1024, 32000), "float32")
    rows = run_json(
        tmp_path,
        "--op",
        "softmax_jacobian",
        "--backend",
        "numpy",
        "--shape",
        "4x3",
        "--shape",
        "1024x32000",
        "--dtype",
        "float32",
    )
    assert [r["shape"] for r in rows] == [[4, 3]]  # the huge one is skipped
    assert rows[0]["floor"] == "fill"


def test_linear_ce_memory_in_subprocess(tmp_path):
    rows = run_json(
        tmp_path,
        "--op",
        "linear_cross_entropy_with_grad",
        "--backend",
        "numpy",
        "--shape",
        "8x4x16",
        "--dtype",
        "float64",
    )
    # the gradients allocated per call, and into out= arrays kept across calls
    assert sorted(r["variant"] for r in rows) == ["out", "plain"]
    for row in rows:
        assert row["floor"] == "gemm3"
        assert row["peak_extra_mib"] is not None
        assert row["peak_extra_mib"] >= 0
        assert row["extra"]["memory_method"] in (
            "VmHWM after clear_refs reset",
            "ru_maxrss delta",
        )


def test_naive_numpy_peer(tmp_path):
    path = tmp_path / "peer.json"
    argv = [
        "--quick",
        "--repeat",
        "1",
        "--no-progress",
        "--op",
        "softmax",
        "--backend",
        "numpy,numpy-naive",
        "--shape",
        "9x7",
        "--dtype",
        "float64",
        "--json",
        str(path),
    ]
    assert _bench.main(argv) == 0
    rows = json.loads(path.read_text())["results"]
    assert {r["backend"] for r in rows} == {"numpy", "numpy-naive"}
    ref = [r for r in rows if r["backend"] == "numpy"]
    assert all(r["ratio_naive"] is not None for r in ref)


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "bench.png"
    assert (
        _bench.main(
            [
                *TINY,
                "--op",
                "softmax,softmax_jacobian",
                "--backend",
                "numpy",
                "--shape",
                "8x4",
                "--dtype",
                "float64",
                "--no-table",
                "--plot",
                str(png),
            ]
        )
        == 0
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _synthetic(path, ratio: float) -> None:
    rows = [
        {
            "op": "softmax",
            "variant": "out",
            "backend": b,
            "shape": [64, 10],
            "dtype": "float32",
            "threads": 2,
            "time_s": ratio * 1e-6,
            "floor": "copy",
            "floor_s": 1e-6,
            "ratio_floor": ratio if b != "torch" else 9.0,
        }
        for b in ("numpy", "numba", "torch")
    ]
    path.write_text(json.dumps({"softcore_bench": 1, "results": rows}))


def test_compare_flags_a_20_percent_regression(tmp_path, capsys):
    base, cur = tmp_path / "base.json", tmp_path / "cur.json"
    _synthetic(base, 1.0)
    _synthetic(cur, 1.2)
    assert _bench.main(["--baseline", str(base), "--compare", str(cur)]) == 1
    out = capsys.readouterr().out
    assert out.count("REGRESSION") == 2  # numpy and numba; the torch peer is context
    assert "softmax/out numba 64x10 float32 threads=2" in out


def test_compare_passes_an_equal_or_slightly_noisier_run(tmp_path, capsys):
    base, cur = tmp_path / "base.json", tmp_path / "cur.json"
    _synthetic(base, 1.0)
    _synthetic(cur, 1.0)
    assert _bench.main(["--baseline", str(base), "--compare", str(cur)]) == 0
    _synthetic(cur, 1.05)
    assert _bench.main(["--baseline", str(base), "--compare", str(cur)]) == 0
    assert "REGRESSION" not in capsys.readouterr().out
    _synthetic(cur, 1.05)
    argv = ["--baseline", str(base), "--compare", str(cur), "--threshold", "0.02"]
    assert _bench.main(argv) == 1


def test_bad_arguments_are_rejected():
    with pytest.raises(SystemExit) as err:
        _bench.main(["--op", "softmaxx"])
    assert err.value.code == 2
    with pytest.raises(SystemExit):
        _bench.main(["--shape", "8by4"])
    with pytest.raises(SystemExit, match="--baseline"):
        _bench.main(["--compare"])
    with pytest.raises(SystemExit, match="unknown backend"):
        _bench.main([*TINY, "--backend", "nope", "--shape", "4x3"])


def test_module_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "softcore", "bench", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--compare" in proc.stdout
    assert "--plot" in proc.stdout


def test_load_merges_stored_runs(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    _synthetic(a, 1.0)
    _synthetic(b, 2.0)
    merged = tmp_path / "merged.json"
    assert _bench.main(["--load", str(a), "--load", str(b), "--json", str(merged)]) == 0
    rows = json.loads(merged.read_text())["results"]
    assert len(rows) == 6
    assert "numba" in capsys.readouterr().out
    md = tmp_path / "table.md"
    assert _bench.main(["--load", str(a), "--no-table", "--markdown", str(md)]) == 0
    head, _rule, line = md.read_text().splitlines()
    assert head == "| op | variant | shape | dtype | numba 2t | numpy 2t | torch 2t |"
    assert line == "| softmax | out | 64x10 | float32 | 1.00 | 1.00 | 9.00 |"


def test_sixteen_bit_dtypes_run_and_round_the_float32_inputs(tmp_path):
    """float16 and bfloat16 (by name or alias) time like the others, on inputs
    that are the float32 case's values rounded once."""
    pytest.importorskip("ml_dtypes", reason="bfloat16's NumPy dtype is not installed")
    rows = run_json(
        tmp_path,
        "--op",
        "softmax,cross_entropy_with_grad",
        "--backend",
        "numpy",
        "--shape",
        "16x8",
        "--dtype",
        "f16,bfloat16",
        "--variant",
        "alloc,prob",
    )
    assert {r["dtype"] for r in rows} == {"float16", "bfloat16"}
    op = _bench.OPS["cross_entropy_with_grad"]
    wide = _bench.make_inputs(op, "prob", (16, 8), "float32")
    for name in ("float16", "bfloat16"):
        low = _bench.make_inputs(op, "prob", (16, 8), name)
        for a, b in zip(low["args"], wide["args"], strict=True):
            assert a.dtype == _bench.bench_dtype(name)
            assert a.tobytes() == b.astype(a.dtype).tobytes()
    with pytest.raises(SystemExit):
        _bench.main([*TINY, "--dtype", "float8"])


def test_linear_floor_of_16bit_inputs_is_the_float32_gemms():
    """softcore computes 16-bit linear cross-entropy in float32, so the floor it
    is measured against is the three float32 GEMMs, not NumPy's float16 GEMM
    (a scalar loop: the ratio to it read 0.00)."""
    op = _bench.OPS["linear_cross_entropy_with_grad"]
    fn = _bench.floor_call(op, _bench.make_inputs(op, "plain", (8, 4, 6), "float16"))
    arrays = [
        c.cell_contents
        for c in fn.__closure__ or ()
        if isinstance(c.cell_contents, np.ndarray)
    ]
    assert len(arrays) == 5  # x, w and the three products
    assert {a.dtype for a in arrays} == {np.dtype(np.float32)}


def test_masked_variant_is_a_causal_mask_with_reachable_targets(tmp_path):
    """``masked``: row i keeps classes 0..i % C and holds -inf after them; the
    class-index targets are kept classes (a finite loss), the backward ops get
    the masked softmax's zeros or ``-inf`` log-probabilities; every op that has
    the variant runs it."""
    n, c = 12, 5
    keep = np.arange(c)[None, :] <= (np.arange(n) % c)[:, None]
    x = _bench.make_inputs(_bench.OPS["softmax"], "masked", (n, c), "float64")
    (xm,) = x["args"]
    np.testing.assert_array_equal(np.isneginf(xm), ~keep)
    assert np.isfinite(xm[keep]).all()
    ce = _bench.make_inputs(_bench.OPS["cross_entropy"], "masked", (n, c), "float64")
    logits, t = ce["args"]
    np.testing.assert_array_equal(logits, xm)
    assert (t <= np.arange(n) % c).all()
    assert len(set(t.tolist())) > 1
    bw = _bench.OPS["log_softmax_backward"]
    _, lp = _bench.make_inputs(bw, "masked", (n, c), "float64")["args"]
    np.testing.assert_array_equal(np.isneginf(lp), ~keep)
    _, p = _bench.make_inputs(
        _bench.OPS["softmax_backward"], "masked", (n, c), "float64"
    )["args"]
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert (p[~keep] == 0).all()
    with_masked = _every_op_runs(tmp_path, "masked")
    assert {"softmax", "softmax_backward", "cross_entropy_with_grad"} <= with_masked


def _every_op_runs(tmp_path, variant: str) -> set[str]:
    """The ops that have ``variant``, after checking that a run of it times
    every one of them (and only them)."""
    rows = run_json(
        tmp_path, "--variant", variant, "--backend", "numpy", "--shape", "12x5",
        "--dtype", "float64", "--no-memory",
    )  # fmt: skip
    having = {name for name, op in _bench.OPS.items() if variant in op.variants}
    assert {r["op"] for r in rows} == having
    return having


def test_confident_variant_rows_lead_by_20_with_the_target_on_top(tmp_path):
    """``confident``: every row's other logits are 20-45 below its maximum,
    the class-index target is that maximum (rows of a trained model's
    confident predictions, whose float32 sums fall within ``C 2^-26`` of 1),
    the rows are not all shifted alike, and every op that has the variant
    runs it."""
    n, c = 40, 7
    ce = _bench.make_inputs(_bench.OPS["cross_entropy"], "confident", (n, c), "float32")
    x, t = ce["args"]
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x.argmax(axis=1), t)
    top = x[np.arange(n), t]
    rest = np.where(np.arange(c)[None, :] == t[:, None], -np.inf, x)
    gap = top - rest.max(axis=1)
    assert (gap >= 20 - 1e-4).all()
    assert (top[:, None] - x <= 45 + 1e-4).all()
    assert top.std() > 1.0  # shifted per row
    assert len(set(t.tolist())) > 1
    s = np.exp((x - top[:, None]).astype(np.float64)).sum(axis=1)
    assert (s - 1 < c * 2.0**-26).all()  # the numba backend's second sum
    (xs,) = _bench.make_inputs(_bench.OPS["softmax"], "confident", (n, c), "float32")[
        "args"
    ]
    np.testing.assert_array_equal(xs, x)
    with_it = _every_op_runs(tmp_path, "confident")
    assert {"logsumexp", "cross_entropy", "cross_entropy_with_grad"} <= with_it


@pytest.mark.parametrize("variant", ["weights", "class_weights", "signed"])
def test_logsumexp_factor_variants(tmp_path, variant):
    """``weights``, ``class_weights`` and ``signed``: SciPy's factors ``b``
    (non-negative, one a class, or signed with ``return_sign``) for logsumexp
    alone; softcore's call and the naive peer (SciPy's formula) agree, and
    PyTorch, which has no signed logsumexp, has no peer for ``signed``."""
    op = _bench.OPS["logsumexp"]
    case = _bench.make_inputs(op, variant, (30, 6), "float64")
    b = case["kwargs"]["b"]
    assert b.shape == ((6,) if variant == "class_weights" else (30, 6))
    if variant != "signed":
        assert (b >= 0).all()
        assert (b < 2).all()
        assert "return_sign" not in case["kwargs"]
    else:
        assert (b < 0).any()
        assert (b > 0).any()
        assert case["kwargs"]["return_sign"] is True
    got = _bench.softcore_call(op, variant, case, "numpy")()
    want = _bench.naive_call(op, variant, case)()
    if variant != "signed":
        want = want[0]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    if _bench.torch_available():
        assert (_bench.torch_call(op, variant, case) is None) == (variant == "signed")
    assert _every_op_runs(tmp_path, variant) == {"logsumexp"}
