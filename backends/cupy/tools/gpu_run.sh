#!/usr/bin/env bash
# Everything softcore-cupy owes on a GPU, in one command with bounded phases:
#
#     bash backends/cupy/tools/gpu_run.sh OUTDIR
#
# run from the repository root on a machine with a CUDA device, CuPy, NumPy, pytest,
# hypothesis, mpmath and setuptools (torch too, if it is to be compared). Nothing is
# fetched from the network: softcore and softcore-cupy are installed from this tree.
#
# Phases, each under its own time limit, each writing its log into OUTDIR as it goes
# (so a run cut short still leaves what it measured), six files in all:
#   env      GPU, driver, Python and package versions            setup.txt
#   install  softcore + softcore-cupy from the tree, no deps      setup.txt
#   info     python -m softcore info (is cupy available?)         setup.txt
#   kit      the conformance kit on cupy, with accuracy           kit.txt
#   tests    backends/cupy/tests on the device (kit deselected:   tests.txt
#            it ran above)
#   bench    tools/bench_gpu.py --sweep: ratios to a device copy, bench.txt, bench.json
#            to the GEMMs, to torch; tail batches and split rows
#            beside the shipped launch; threads-per-row sweep; the
#            design's targets with the worst ratio for each
# summary.txt lists each phase's exit status and seconds. The exit status is 0 when
# every phase passed, 1 otherwise (2 when cupy is not available: nothing to run).
#
# Limits can be set per phase: KIT_S, TESTS_S, BENCH_S (seconds), and
# KIT_EXAMPLES (hypothesis examples per property, default 25). On two H100 machines
# with 20 examples the kit took 42 and 78 s, the tests 78 and over 100 s (where the
# CUDA toolkit's ptxas and nvdisasm are installed, the SASS-counting tests compile
# the whole module: --durations names them), the bench 36-39 s, setup 5-10 s. The default
# limits (200, 240, 120 s) keep a run whose setup takes seconds under 10 minutes.
#
# The pyprojects need setuptools >= 77 to build (SPDX license strings). Where the
# machine's is older and cannot be upgraded from an index, put a setuptools wheel in
# the folder WHEELS (default .whl, relative to the repository root) beforehand, e.g.
#     pip download --no-deps -d .whl "setuptools>=77"
# and it is used for the build alone.
set -uo pipefail

out=${1:?usage: gpu_run.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)  # build tools and a fallback install: not results
trap 'rm -rf "$work"' EXIT
cd "$(dirname "$0")/../../.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
: > "$out/summary.txt"
status=0

phase() {  # phase NAME LIMIT_S LOGFILE COMMAND...
    local name=$1 limit=$2 log=$3
    shift 3
    echo "== $name (at most ${limit} s)"
    local t0=$SECONDS rc
    # through bash, so that a phase may be one of the functions below
    timeout --kill-after=10 "$limit" bash -c '"$@"' phase "$@" 2>&1 | tee -a "$out/$log"
    rc=${PIPESTATUS[0]}
    printf '%-8s rc=%-3s %4d s\n' "$name" "$rc" $((SECONDS - t0)) | tee -a "$out/summary.txt"
    [ "$rc" = 0 ] || status=1
    return "$rc"
}

env_report() {
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm \
        --format=csv 2>&1 || echo "nvidia-smi: not available"
    "$PY" --version
    "$PY" -m pip list 2>/dev/null \
        | grep -iE '^(cupy|numpy|torch|hypothesis|mpmath|pytest|scipy|setuptools) ' || true
    nproc
}

install_tree() {
    if ! "$PY" -c 'import sys, setuptools as s; sys.exit(int(s.__version__.split(".")[0]) < 77)' 2>/dev/null; then
        local whl
        whl=$(ls "${WHEELS:-.whl}"/setuptools-*.whl 2>/dev/null | sort -V | tail -n 1)
        if [ -z "$whl" ]; then
            echo "setuptools >= 77 is needed to build softcore, and ${WHEELS:-.whl}/ holds no setuptools wheel"
            return 1
        fi
        echo "this setuptools is older than 77: building with $whl"
        "$PY" -m pip install -q --no-index --no-deps --target "$work/buildtools" "$whl" || return 1
        export PYTHONPATH="$work/buildtools${PYTHONPATH:+:$PYTHONPATH}"
    fi
    # Editable into the interpreter's environment when it is writable; otherwise into
    # a folder on PYTHONPATH (the entry points travel with the dist-info either way).
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation \
        -e . -e backends/cupy && return 0
    echo "editable install refused; installing into a folder on PYTHONPATH instead"
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation \
        --target "$work/site" . ./backends/cupy
}

export out work PY
export -f env_report install_tree
phase env 60 setup.txt env_report
if ! phase install 180 setup.txt install_tree; then
    echo "install failed: see $out/setup.txt"
    exit 1
fi
[ -d "$work/site" ] && export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}"
phase info 60 setup.txt "$PY" -m softcore info
if ! "$PY" -c 'import sys, softcore_cupy as c; a = c.backend.available(); print("cupy:", a); sys.exit(a is not True)'; then
    echo "cupy backend unavailable here: nothing to run" | tee -a "$out/summary.txt"
    exit 2
fi

phase kit "${KIT_S:-200}" kit.txt \
    "$PY" -m softcore check cupy --accuracy --max-examples "${KIT_EXAMPLES:-25}"
phase tests "${TESTS_S:-240}" tests.txt \
    "$PY" -m pytest backends/cupy/tests/test_cupy_gpu.py \
    backends/cupy/tests/test_cupy_plugin.py backends/cupy/tests/test_cupy_compile.py \
    --deselect backends/cupy/tests/test_cupy_gpu.py::test_conformance_kit \
    -rs -q -p no:cacheprovider --durations=8
phase bench "${BENCH_S:-120}" bench.txt \
    "$PY" backends/cupy/tools/bench_gpu.py --sweep --json "$out/bench.json"

echo "== summary"
cat "$out/summary.txt"
exit "$status"
