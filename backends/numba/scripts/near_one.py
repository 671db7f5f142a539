"""log S near 1: rows whose maximum dominates, so that ``S = 1 + t`` with ``t``
below an ULP of 1 (logsumexp near 0, a confident row's loss near 0).

Accuracy (the default): per shape, the largest error of logsumexp, of the
maximum's log_softmax entry and of the class-index loss, against a long double
reference that takes ``log1p`` of the sum without the maximum's term. Rows: the
maximum 0 in even rows and +-1e-6 in odd ones, the rest 18-45 below it.

    python backends/numba/scripts/near_one.py [--backend numba] [--dtype float64]

Timing (``--time``): the API on ordinary rows (normal, sd 3) and on such
dominated rows (the maximum N(0, 1), the rest 20-45 below; float32 sums of
these are taken a second time), medians of 7 samples of 5 calls, printed as
JSON seconds keyed ``dtype|rows|classes|kind|op``: run it on two trees and
divide (``--compare OLD.json NEW.json`` prints the ratios).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import softcore as sc

LD = np.longdouble
ACCURACY_SHAPES = (
    (1, 2),
    (300, 16),
    (7, 40),
    (600, 64),
    (300, 1000),
    (3, 20000),
    (2, 300000),
)
TIME_SHAPES = ((65536, 16), (16384, 128), (4096, 1000), (256, 32000))


def reference(x):
    """``(lse, log S, max(|lse|, sum p |x|))`` per row, in long double."""
    x = x.astype(LD)
    top = x.argmax(-1)[:, None]
    m = np.take_along_axis(x, top, -1)
    e = np.exp(x - m)
    np.put_along_axis(e, top, 0, -1)
    log_s = np.log1p(e.sum(-1))
    lse = m[:, 0] + log_s
    p = np.exp(x - lse[:, None])
    return lse, log_s, np.maximum(np.abs(lse), (p * np.abs(x)).sum(-1))


def accuracy(backend: str, dtype: str) -> None:
    dt = np.dtype(dtype)
    rng = np.random.default_rng(3)

    def ulps(got, want, scale):
        spacing = np.spacing(np.abs(scale).astype(dt)).astype(LD)
        return np.abs(got.astype(LD) - want) / spacing

    for n, c in ACCURACY_SHAPES:
        x = -rng.uniform(18, 45, (n, c))
        x[:, 0] = 0.0
        x[1::2, 0] = rng.uniform(-1e-6, 1e-6, len(x[1::2]))
        x = x.astype(dt)
        lse, log_s, scale = reference(x)
        with sc.use_backend(backend):
            got = sc.logsumexp(x, axis=-1)
            lp = sc.log_softmax(x, axis=-1)[:, 0]
            loss = sc.cross_entropy(x, np.zeros(n, np.int64), reduction="none")
        zero = x[:, 0] == 0
        print(
            f"{n}x{c} {dtype}: logsumexp {ulps(got, lse, lse)[zero].max():.3g} ULP "
            f"of itself (rows of maximum 0), {ulps(got, lse, scale).max():.3g} of "
            f"max(|lse|, sum p|x|); -log p of the maximum "
            f"{ulps(-lp, log_s, log_s).max():.3g} and the loss "
            f"{ulps(loss, log_s, log_s).max():.3g} of themselves"
        )


def timing(backend: str) -> dict[str, float]:
    rng = np.random.default_rng(0)
    out = {}
    with sc.use_backend(backend):
        for dt in ("float32", "float64"):
            for n, c in TIME_SHAPES:
                for kind in ("normal", "dominated"):
                    if kind == "normal":
                        x = rng.standard_normal((n, c)) * 3
                    else:
                        x = -rng.uniform(20, 45, (n, c))
                        x[:, 0] = rng.standard_normal(n)
                    x = x.astype(dt)
                    y = np.zeros(n, np.int64)
                    ops = {
                        "logsumexp": lambda x=x: sc.logsumexp(x, axis=-1),
                        "log_softmax": lambda x=x: sc.log_softmax(x, axis=-1),
                        "softmax": lambda x=x: sc.softmax(x, axis=-1),
                        "cross_entropy": lambda x=x, y=y: sc.cross_entropy(x, y),
                        "ce_with_grad": lambda x=x, y=y: sc.cross_entropy_with_grad(
                            x, y
                        ),
                    }
                    for name, f in ops.items():
                        f()
                        samples = []
                        for _ in range(7):
                            t0 = time.perf_counter()
                            for _ in range(5):
                                f()
                            samples.append((time.perf_counter() - t0) / 5)
                        key = f"{dt}|{n}|{c}|{kind}|{name}"
                        out[key] = statistics.median(samples)
    return out


def compare(old_files: list[str], new_files: list[str]) -> None:
    """Median over the runs of new / old, per key."""
    olds = [json.load(open(f)) for f in old_files]
    news = [json.load(open(f)) for f in new_files]
    for key in olds[0]:
        ratios = [n[key] / o[key] for o, n in zip(olds, news, strict=True)]
        print(f"{key:45s} " + " ".join(f"{r:.3f}" for r in ratios))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="numba")
    ap.add_argument("--dtype", default="float64,float32")
    ap.add_argument("--time", metavar="FILE.json", help="time, write JSON here")
    ap.add_argument(
        "--compare",
        nargs=2,
        metavar=("OLD", "NEW"),
        help="comma-separated JSON files of --time runs, paired in order",
    )
    a = ap.parse_args()
    if a.compare:
        compare(a.compare[0].split(","), a.compare[1].split(","))
    elif a.time:
        with open(a.time, "w") as f:
            json.dump(timing(a.backend), f)
    else:
        for dt in a.dtype.split(","):
            accuracy(a.backend, dt)


if __name__ == "__main__":
    main()
