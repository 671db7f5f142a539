#!/usr/bin/env bash
# Benchmark smoke test, run by CI and by `tox -e bench`.
#
# 1. `asv check`: every benchmark module imports and every benchmark is well formed.
# 2. A quick asv run (each benchmark once, nothing saved) in the current
#    environment, on one small parameter combination per benchmark of every class:
#    reference backend, smallest shape, float64 (float16 for the 16-bit classes),
#    and PyTorch as the peer where the class has peers (a class whose only peer is
#    JAX, which CI does not install, is left to `asv check`). asv exits non-zero
#    if any benchmark raises.
# 3. The bench command on tiny shapes, its JSON and the regression guard.
#
# Timing numbers from this script mean nothing; it only proves the suite runs.
set -euo pipefail

PY=${PYTHON:-python}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/../asv_bench"

"$PY" -m asv --version
"$PY" -m asv machine --yes --machine ci-smoke > /dev/null
"$PY" -m asv check --python=same

lead="('(softmax|logsumexp|softmax_backward|softmax_jacobian|cross_entropy_with_grad"
lead+="|linear_cross_entropy_with_grad|all)', )('(out|plain)', )?"
regex="\\(($lead)?'numpy', '(32x10|256x64x1000)', '(float64|float16)'"
regex+="(, '(torch|torch-chunked)')?\\)\$"
"$PY" -m asv run --python=same --machine ci-smoke --quick --dry-run --show-stderr \
    --bench "$regex"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$PY" -m softcore bench --quick --no-progress --no-memory --backend numpy \
    --op softmax,cross_entropy_with_grad,linear_cross_entropy_with_grad \
    --dtype float64 --json "$tmp/run.json"
"$PY" -m softcore bench --baseline "$tmp/run.json" --compare "$tmp/run.json"
echo "bench smoke: OK"
