"""``python -m softcore demo``: softmax regression on scikit-learn's digits.

Trains a multinomial logistic-regression classifier (10 classes, 64 features) with
:func:`softcore.linear_cross_entropy_with_grad` and full-batch gradient descent with
momentum, once per available backend, and reports loss, test accuracy, time and
whether the backends agree. The digits data ship with scikit-learn: no download.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import softcore as sc


def _load(seed: int) -> tuple[np.ndarray, ...]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit(
            "the demo needs scikit-learn for its bundled digits data: "
            "pip install 'softcore[demo]'"
        ) from None
    data = load_digits()
    x = data.data.astype(np.float64) / 16.0
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = x[order], y[order]
    n_test = len(y) // 4
    x_train, y_train = x[n_test:], y[n_test:]
    x_test, y_test = x[:n_test], y[:n_test]
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0) + 1e-3
    return (x_train - mean) / std, y_train, (x_test - mean) / std, y_test


def train(
    backend: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    lr: float,
    l2: float,
    dtype: np.dtype,
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Full-batch gradient descent with momentum on the L2-regularised loss."""
    n_classes = int(y.max()) + 1
    x = x.astype(dtype)
    w = np.zeros((n_classes, x.shape[1]), dtype=dtype)
    b = np.zeros(n_classes, dtype=dtype)
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    history = []
    for _ in range(epochs):
        loss, (_, dw, db) = sc.linear_cross_entropy_with_grad(
            x, w, y, linear_bias=b, backend=backend
        )
        history.append(float(loss) + 0.5 * l2 * float((w * w).sum()))
        vw = 0.9 * vw + dw + l2 * w
        vb = 0.9 * vb + db
        w -= lr * vw
        b -= lr * vb
    return w, b, history


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m softcore demo",
        description="Softmax regression on scikit-learn's digits, on every backend.",
    )
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--l2", type=float, default=1e-3)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", action="append", help="only these backends")
    args = parser.parse_args(argv)

    x_train, y_train, x_test, y_test = _load(args.seed)
    print(
        f"digits: {len(y_train)} train / {len(y_test)} test images, "
        f"{x_train.shape[1]} features, 10 classes; {args.epochs} epochs of "
        f"full-batch gradient descent, {args.dtype}"
    )
    names = args.backend or [b.name for b in sc.list_backends() if b.available is True]
    skipped = [
        f"{b.name} ({b.available})"
        for b in sc.list_backends()
        if b.available is not True and not args.backend
    ]
    dtype = np.dtype(args.dtype)
    results = {}
    runnable = []
    for name in names:
        if sc.get_backend(name).xp is not np:
            skipped.append(f"{name} (computes on non-NumPy arrays)")
            continue
        runnable.append(name)
        # one short warm-up run so JIT compilation is not counted as training
        # time (and what a first compile prints comes before the table)
        train(
            name,
            x_train[:64],
            y_train[:64],
            epochs=1,
            lr=args.lr,
            l2=args.l2,
            dtype=dtype,
        )
    print(f"\n{'backend':<10} {'loss':>9} {'test acc':>9} {'time':>9}")
    for name in runnable:
        t0 = time.perf_counter()
        w, b, hist = train(
            name,
            x_train,
            y_train,
            epochs=args.epochs,
            lr=args.lr,
            l2=args.l2,
            dtype=dtype,
        )
        elapsed = time.perf_counter() - t0
        pred = np.argmax(x_test.astype(dtype) @ w.T + b, axis=1)
        acc = float((pred == y_test).mean())
        results[name] = (w, b, hist, acc)
        print(f"{name:<10} {hist[-1]:>9.4f} {acc:>8.2%} {elapsed:>8.3f}s")
    for line in skipped:
        print(f"skipped: {line}")
    if not results:
        print("no backend could run the demo", file=sys.stderr)
        return 1
    ref_name = next(iter(results))
    w_ref = results[ref_name][0]
    tol = 1e-3 if dtype == np.float32 else 1e-9
    agree = True
    for name, (w, _, _, _) in results.items():
        diff = float(np.max(np.abs(w - w_ref)) / max(1e-30, np.max(np.abs(w_ref))))
        same = diff <= tol
        agree &= same
        if name != ref_name:
            print(
                f"{name} vs {ref_name}: max relative weight difference {diff:.2e} "
                f"({'agree' if same else 'DISAGREE'}, tolerance {tol:g})"
            )
    best = max(r[3] for r in results.values())
    print(
        f"\nbackends agree: {'yes' if agree else 'NO'}; best test accuracy {best:.2%}"
    )
    return 0 if agree else 1
