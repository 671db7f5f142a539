"""Row kernels of the cupy backend: load ``kernels.cu``, pick a launch, launch.

Every function here follows the kernel contract of ``backends/README.md``: it gets
C-contiguous 2-D ``(rows, C)`` CuPy arrays of float32 or float64 (already validated
by the core), writes into the preallocated outputs on the current stream of the
arrays' device, and returns ``None``. Nothing is copied to the host.

CuPy is imported only inside functions, so importing this module is cheap and works
without CuPy (the compile check uses :func:`kernel_source` and :data:`KERNEL_NAMES`).
"""

from __future__ import annotations

import threading
from importlib import resources

# Options given to NVRTC (CuPy adds -arch, --device-as-default-execution-space and
# -ftz=true). -ftz only affects float arithmetic; sums are formed in double.
NVRTC_OPTIONS: tuple[str, ...] = ("--std=c++14",)

_ROW_OPS = (
    "softmax",
    "log_softmax",
    "logsumexp",
    "logsumexp_weighted",
    "row_shift",
    "softmax_backward",
    "log_softmax_backward",
    "ce",
    "ce_grad",
    "ce_idx",
    "ce_idx_grad",
    "ce_prob",
    "ce_prob_grad",
)
_ROW_VARIANTS = ("f32_v1", "f32_v4", "f32_v4u", "f64_v1", "f64_v2", "f64_v2u")
_JAC_OPS = ("softmax_jacobian", "log_softmax_jacobian")
_SPLIT_OPS = (
    "softmax",
    "log_softmax",
    "logsumexp",
    "ce_grad",
    "ce_idx_grad",
    "softmax_backward",
    "log_softmax_backward",
)
_SPLIT_VARIANTS = ("f32_v4", "f64_v2")
#: Blocks of a cluster that a split row may take (compiled instances, portable sizes).
CLUSTERS: tuple[int, ...] = (2, 4, 8)

#: Every entry point the backend may launch (the compile check asserts each exists).
KERNEL_NAMES: tuple[str, ...] = tuple(
    [f"sc_{op}_{v}" for op in _ROW_OPS for v in _ROW_VARIANTS]
    + [
        f"sc_{op}{k}_{d}"
        for op in _JAC_OPS
        for k in ("", "_rows")
        for d in ("f32", "f64")
    ]
    + ["sc_ce_target_stats", "sc_ce_target_finish", "sc_ce_loss_parts"]
    + ["sc_ce_total_f32", "sc_ce_total_f64"]
    + [
        f"sc_split_{op}_{v}_c{cl}"
        for op in _SPLIT_OPS
        for v in _SPLIT_VARIANTS
        for cl in CLUSTERS
    ]
)

# Per itemsize: elements per vector access, and elements a thread keeps in registers.
_VEC = {4: 4, 8: 2}
_CACHE = {4: 16, 8: 8}
# Elements of a row per thread in the launch rule: as many as a thread keeps in
# registers, so rows up to 16384 floats or 8192 doubles are read once. The threads-
# per-row sweep of tools/bench_gpu.py on an H200 (2026-12-04, C from 128 to 128256)
# put 16 per thread within 5% of the best launch at every swept shape and op for both
# dtypes (float32 cross-entropy at C = 32000: 1.08x its best), so float64 rows took
# 16, half of them past the registers. Since then a cached element takes one exp and
# an uncached one still two, and wholly cached rows take no per-thread rescale: the
# code thread 0 runs for a float64 softmax row of 1024 is 544 instructions at 128
# threads (8 each) against 1215 at 64 before (tools/sass_counts.py --path), so
# float64 takes 8. The H100 sweep (2026-12-05, two runs) found the rule's launch the
# best one at every swept shape from 256 classes in float64, and from 1000 to 4096
# and at 128256 in float32 (within 2%); at 1024 x 32000 float32, 512 threads took
# 0.90-0.92x the time of the rule's 1024, not taken from one shape.
_PER_THREAD = {4: 16, 8: 8}
# Fewest threads a row gets: 8. Rows of up to 256 floats or 128 doubles get 8 or 16
# (32 / T rows share a warp, and so its exp, log and shuffles). The sweep on an H100
# (2026-12-05) timed those launches best wherever the rule gives them: one warp per
# row of 32 classes took 2.6-3.2x (float32) and 2.0-2.6x (float64) the time of 8
# threads for softmax and the cross-entropy gradient.
_MIN_THREADS = 8
_GROUP_BLOCK = 128  # threads per block when a warp or less handles a row
# Ops that keep two operands in registers are compiled for at most 512 threads
# (SC_BOUNDS_2 in kernels.cu), the others for 1024 (SC_BOUNDS_1).
_TWO_OPERAND = frozenset(
    {"softmax_backward", "log_softmax_backward", "ce_prob", "ce_prob_grad"}
)


def kernel_source() -> str:
    """The CUDA source shipped with the package."""
    return resources.files("softcore_cupy").joinpath("kernels.cu").read_text()


#: Tail slots a thread loads before it uses them, by itemsize ("Tail loops" in
#: kernels.cu: SC_TAIL_BATCH_F32, SC_TAIL_BATCH_F64): the same bits for every batch.
#: 1 as shipped; ``tools/bench_gpu.py`` times others beside it, each a module of its
#: own (compiled on first use, like the shipped one).
TAIL_BATCH: dict[int, int] = {4: 1, 8: 1}


def tail_batch() -> tuple[int, int]:
    """The batches in force, (float32, float64): part of every module's key."""
    return TAIL_BATCH[4], TAIL_BATCH[8]


def compile_options(batch: tuple[int, int] | None = None) -> tuple[str, ...]:
    """NVRTC options of the module for ``batch`` (default: the batches in force)."""
    f32, f64 = tail_batch() if batch is None else batch
    defines = []
    if f32 != 1:
        defines.append(f"-DSC_TAIL_BATCH_F32={f32}")
    if f64 != 1:
        defines.append(f"-DSC_TAIL_BATCH_F64={f64}")
    return NVRTC_OPTIONS + tuple(defines)


_modules: dict[tuple[int, tuple[int, int]], object] = {}
_lock = threading.Lock()


def _module(device_id: int):
    key = (device_id, tail_batch())
    mod = _modules.get(key)
    if mod is None:
        import cupy

        with _lock:
            mod = _modules.get(key)
            if mod is None:
                options = compile_options(key[1])
                with cupy.cuda.Device(device_id):
                    mod = cupy.RawModule(code=kernel_source(), options=options)
                    mod.compile()
                _modules[key] = mod
    return mod


_functions: dict[tuple[int, tuple[int, int], str], object] = {}


def _function(name: str, device_id: int):
    key = (device_id, tail_batch(), name)
    fn = _functions.get(key)
    if fn is None:
        fn = _functions[key] = _module(device_id).get_function(name)
    return fn


def threads_per_row(n_classes: int, itemsize: int, op: str = "softmax") -> int:
    """Threads that share a row: a power of two from ``_MIN_THREADS`` (8 as shipped) to
    the kernel's launch bound, about ``_PER_THREAD`` elements each.

    A function of the op, the row length and the dtype alone, so the order in which
    a row's sums are formed (and therefore every result bit) never depends on the
    number of rows, on the other rows or on the array's address.
    """
    cap = max_threads_per_row(op)
    t = _MIN_THREADS
    while t < cap and t * _PER_THREAD[itemsize] < n_classes:
        t *= 2
    return t


def max_threads_per_row(op: str) -> int:
    """The launch bound of the op's row kernels (two operands in registers: 512)."""
    return 512 if op in _TWO_OPERAND else 1024


#: Every threads-per-row count a row kernel accepts (up to its ``max_threads_per_row``).
THREADS_PER_ROW: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512, 1024)


# Staged tails ("Staged tails" in kernels.cu): in block mode, the slots of a row past
# the register cache are kept in dynamic shared memory between the statistics pass and
# the write pass, which then reads them from there instead of from global memory. Same
# bits either way. Only ops whose write pass reads the row again take it (the loss
# alone of class-index targets reads it again only with label smoothing);
# softmax_backward stages both of its operands, half the bytes each, in float32 only
# (in float64 the code would cost registers that ptxas finds only by spilling).
STAGE = True
#: Upper bound on a block's staged bytes (None: the block's share of the SM, see
#: _stage_capacity). The tests set small bounds to stage part of a tail.
STAGE_LIMIT: int | None = None
_STAGED = frozenset(
    {
        "softmax",
        "log_softmax",
        "ce_grad",
        "ce_idx",
        "ce_idx_grad",
        "ce_prob",
        "ce_prob_grad",
        "softmax_backward",
        "log_softmax_backward",
    }
)
_STAGED_OPERANDS = {"softmax_backward": 2}
# cudaDevAttr numbers (driver_types.h): threads, shared memory and registers per SM,
# and the most shared memory one block may opt in to
_ATTR_THREADS_SM, _ATTR_SHARED_SM, _ATTR_REGS_SM, _ATTR_OPTIN = 39, 81, 82, 97
_DEFAULT_SHARED = 48 * 1024  # what a block may use without opting in
_RESERVED_SHARED = 1024  # shared memory the system takes per block (sm_80 and later)
_stage_caps: dict[tuple[int, str, int, tuple[int, int]], int] = {}


def _stage_capacity(fn, name: str, device_id: int, threads: int) -> int:
    """Dynamic shared memory a block of ``threads`` may stage without costing the SM a
    resident block: the SM's shared memory shared by as many blocks as its registers
    and threads let run at once (one at 1024 threads with 64 registers each, so up to
    the per-block opt-in, 227 KiB on an H100 or H200), less what each block has
    already. Opts the kernel in past the 48 KiB default, once per device and size;
    where the device refuses, the default is the bound."""
    key = (device_id, name, threads, tail_batch())
    cap = _stage_caps.get(key)
    if cap is None:
        import cupy

        def attr(a):
            return int(cupy.cuda.runtime.deviceGetAttribute(a, device_id))

        static = int(fn.shared_size_bytes)
        regs = -(-int(fn.num_regs) // 8) * 8  # allocated in units of 8 a thread
        resident = min(
            attr(_ATTR_REGS_SM) // max(1, regs * threads),
            attr(_ATTR_THREADS_SM) // threads,
        )
        share = attr(_ATTR_SHARED_SM) // max(1, resident)
        cap = max(0, min(attr(_ATTR_OPTIN), share - _RESERVED_SHARED) - static)
        cap -= cap % 16
        if cap > _DEFAULT_SHARED - static and cap > fn.max_dynamic_shared_size_bytes:
            try:
                fn.max_dynamic_shared_size_bytes = cap
            except cupy.cuda.driver.CUDADriverError:  # the device keeps the default
                cap = max(0, _DEFAULT_SHARED - static)
        _stage_caps[key] = cap
    return cap


def _stage_unit(op: str, itemsize: int, variant: str) -> tuple[int, int]:
    """(elements a slot holds, bytes a staged slot takes: one slot of each operand)."""
    n = 1 if variant.endswith("_v1") else _VEC[itemsize]
    return n, n * itemsize * _STAGED_OPERANDS.get(op, 1)


def stage_bytes(
    op: str, n_classes: int, itemsize: int, threads: int, variant: str
) -> int:
    """Bytes of a row's tail a block of ``threads`` stages (0: none), before the cap."""
    if not STAGE or op not in _STAGED or threads <= 32:
        return 0
    if op == "softmax_backward" and itemsize != 4:
        return 0
    n, unit = _stage_unit(op, itemsize, variant)
    tail = n_classes // n - _CACHE[itemsize] // n * threads
    return max(0, tail) * unit


# Split rows ("Split rows" in kernels.cu): softmax, log_softmax, logsumexp, their
# backward passes and cross-entropy gradient rows wider than a block's registers hold,
# over the blocks of a thread-block cluster (sm_90 and later), each block caching its
# segment of the row. Off as shipped until a GPU has timed them beside the one-block
# kernels (tools/bench_gpu.py, "split rows" lines); the tests run them on the host
# emulation and, on a GPU, against the references. SPLIT_THREADS: threads a block of a
# split row.
SPLIT = False
SPLIT_THREADS = 1024
_split_capable: dict[int, bool] = {}


def split_threads(op: str) -> int:
    """Threads a block of a split row: :data:`SPLIT_THREADS`, at most the op's launch
    bound (512 for the backward passes, which cache two operands)."""
    return min(SPLIT_THREADS, max_threads_per_row(op))


def split_launch(op: str, n_classes: int, itemsize: int) -> int:
    """Blocks of the cluster that shares each row (0: the row is not split): the
    fewest of :data:`CLUSTERS` whose blocks of :func:`split_threads` cache the row,
    where one block does not. A function of the op, C and the dtype alone."""
    if op not in _SPLIT_OPS:
        return 0
    per = split_threads(op) * _CACHE[itemsize]
    if n_classes <= per:
        return 0
    for cl in CLUSTERS:
        if cl * per >= n_classes:
            return cl
    return 0


def _device_splits(device_id: int) -> bool:
    """Whether the device runs thread-block clusters (compute capability 9.0 on)."""
    ok = _split_capable.get(device_id)
    if ok is None:
        import cupy

        cc = str(cupy.cuda.Device(device_id).compute_capability)
        ok = _split_capable[device_id] = int(cc) >= 90
    return ok


def _split_blocks(op: str, x, variant: str) -> int:
    """Blocks of the cluster each row of ``x`` takes where the split-row kernel
    applies (``SPLIT`` on, rows of ``_SPLIT_VARIANTS``, a device with clusters);
    else 0."""
    if not SPLIT or variant not in _SPLIT_VARIANTS:
        return 0
    cl = split_launch(op, x.shape[1], x.dtype.itemsize)
    return cl if cl and _device_splits(x.device.id) else 0


def _row_variant(n_classes: int, itemsize: int, *arrays) -> str:
    d = "f32" if itemsize == 4 else "f64"
    n = _VEC[itemsize]
    if n_classes % n:
        return f"{d}_v1"
    aligned = all(a.data.ptr % (n * itemsize) == 0 for a in arrays)
    return f"{d}_v{n}" if aligned else f"{d}_v{n}u"


def _row_launch(op: str, x, arrays, args, staged: bool = True) -> None:
    """Launch a row kernel: ``arrays`` are the (rows, C) operands (for alignment);
    ``staged=False`` keeps the tail out of shared memory (an op of ``_STAGED`` whose
    call will not read it again)."""
    import numpy as np

    rows, n_classes = x.shape
    if rows == 0 or n_classes == 0:  # the core never sends these; nothing to launch
        return
    itemsize = x.dtype.itemsize
    variant = _row_variant(n_classes, itemsize, *arrays)
    cl = _split_blocks(op, x, variant)
    t = split_threads(op) if cl else threads_per_row(n_classes, itemsize, op)
    if t not in THREADS_PER_ROW or t > max_threads_per_row(op):
        raise ValueError(f"{t} threads per row is not a launch of sc_{op}")
    want = 0
    if cl:  # split mode: cl blocks of a cluster per row
        name = f"sc_split_{op}_{variant}_c{cl}"
        block = (t, 1, 1)
        grid = (rows * cl, 1, 1)
    else:
        name = f"sc_{op}_{variant}"
        if t <= 32:  # group mode: _GROUP_BLOCK // t rows per block
            per_block = _GROUP_BLOCK // t
            block = (t, per_block, 1)
            grid = (-(-rows // per_block), 1, 1)
        else:
            block = (t, 1, 1)
            grid = (rows, 1, 1)
        if staged:
            want = stage_bytes(op, n_classes, itemsize, t, variant)
    with x.device:
        fn = _function(name, x.device.id)
        shared = 0
        if want:
            unit = _stage_unit(op, itemsize, variant)[1]
            cap = _stage_capacity(fn, name, x.device.id, t)
            if STAGE_LIMIT is not None:
                cap = min(cap, STAGE_LIMIT)
            shared = min(want, cap // unit * unit)
        args = (*args, np.int64(rows), np.int64(n_classes))
        if shared:
            fn(grid, block, args, shared_mem=shared)
        else:
            fn(grid, block, args)


# ---------------------------------------------------------------------------
# The kernels of the contract


def softmax_rows(x, out):
    _row_launch("softmax", x, (x, out), (x, out))


def log_softmax_rows(x, out):
    _row_launch("log_softmax", x, (x, out), (x, out))


def logsumexp_rows(x, out):
    _row_launch("logsumexp", x, (x,), (x, out))


def logsumexp_weighted_rows(x, b, out, sign):
    """The optional hook: ``log|sum(b exp(x))|`` of each row into ``out``, its sign
    into ``sign`` (``sc_logsumexp_weighted``: two passes over ``x`` and ``b``);
    ``b`` of shape ``(1, C)``: the same factors for every row."""
    import numpy as np

    bstride = np.int64(0 if b.shape[0] == 1 else b.shape[1])
    args = (x, b, bstride, out, sign)
    _row_launch("logsumexp_weighted", x, (x, b), args, staged=False)


def softmax_backward_rows(grad, probs, out):
    _row_launch("softmax_backward", grad, (grad, probs, out), (grad, probs, out))


def log_softmax_backward_rows(grad, log_probs, out):
    _row_launch(
        "log_softmax_backward", grad, (grad, log_probs, out), (grad, log_probs, out)
    )


#: Widest rows whose Jacobian takes the shared-memory kernel (``SC_JAC_ROWS`` in
#: kernels.cu: it holds that many doubles of probabilities); wider rows take the
#: kernel that forms both probabilities of each output from the row shift.
JAC_ROWS_MAX = 1024
_JAC_BLOCK = 256
_JAC_GRID = 65535  # blocks of the shared-memory kernel; each loops over its groups


def _jacobian(op, x, out):
    import cupy
    import numpy as np

    rows, n_classes = x.shape
    if rows == 0 or n_classes == 0:
        return
    with x.device:
        shift = cupy.empty((rows, 2), dtype=cupy.float64)  # (max, log-sum) per row
        _row_launch("row_shift", x, (x,), (x, shift))
        sfx = "f32" if x.dtype.itemsize == 4 else "f64"
        args = (x, shift, out, np.int64(rows), np.int64(n_classes))
        if n_classes <= JAC_ROWS_MAX:  # JAC_ROWS_MAX // C rows per group
            groups = -(-rows // (JAC_ROWS_MAX // n_classes))
            fn = _function(f"sc_{op}_rows_{sfx}", x.device.id)
            fn((min(groups, _JAC_GRID), 1, 1), (_JAC_BLOCK, 1, 1), args)
            return
        bx = min(128, -(-n_classes // 32) * 32)
        by = 256 // bx
        nq = rows * n_classes
        grid = (-(-n_classes // bx), min(65535, -(-nq // by)), 1)
        fn = _function(f"sc_{op}_{sfx}", x.device.id)
        fn(grid, (bx, by, 1), args)


def softmax_jacobian_rows(x, out):
    _jacobian("softmax_jacobian", x, out)


def log_softmax_jacobian_rows(x, out):
    _jacobian("log_softmax_jacobian", x, out)


def cross_entropy_rows(x, target, alpha, beta, class_weight, loss_out):
    _row_launch("ce", x, (x,), (x, target, alpha, beta, class_weight, loss_out))


def cross_entropy_grad_rows(
    x, target, alpha, beta, class_weight, grad_scale, loss_out, grad_out
):
    import numpy as np

    args = (
        x,
        target,
        alpha,
        beta,
        class_weight,
        np.float64(grad_scale),
        loss_out,
        grad_out,
    )
    _row_launch("ce_grad", x, (x, grad_out), args)


def cross_entropy_prob_rows(x, target, smoothing, class_weight, loss_out):
    import numpy as np

    args = (x, target, np.float64(smoothing), class_weight, loss_out)
    _row_launch("ce_prob", x, (x, target), args)


def cross_entropy_prob_grad_rows(
    x, target, smoothing, class_weight, grad_scale, loss_out, grad_out
):
    import numpy as np

    args = (
        x,
        target,
        np.float64(smoothing),
        class_weight,
        np.float64(grad_scale),
        loss_out,
        grad_out,
    )
    _row_launch("ce_prob_grad", x, (x, target, grad_out), args)


#: Rows of class-index targets per block of the device statistics (sc_ce_target_stats):
#: calls up to this many rows take one launch for them, longer ones two.
STATS_ROWS = 16384
_STATS_THREADS = 256


def cross_entropy_index_rows(
    x,
    target,
    class_weight,
    ignore_index,
    smoothing,
    mean,
    loss_rows,
    loss_out,
    grad_out,
):
    """The optional class-index cross-entropy of backends/README.md, on the device.

    Launches: the targets' statistics (one kernel, two past ``STATS_ROWS`` rows), the
    row kernel, and for a scalar loss ``sc_ce_total`` (after ``sc_ce_loss_parts``
    past ``STATS_ROWS`` rows): 3 to 5 raw kernels, no CuPy reduction. Returns the
    statistics array, whose element 0 is the first bad row or -1; the core reads it
    once, after all of these are queued.
    """
    import cupy
    import numpy as np

    rows, n_classes = x.shape
    nparts = -(-rows // STATS_ROWS)
    with x.device:
        # the 5 statistics, then the blocks' parts where there are several
        stats = cupy.empty(5 + (3 * nparts if nparts > 1 else 0), dtype=cupy.float64)
        weighted = class_weight is not None
        part = stats[5:] if nparts > 1 else stats
        mean_flag = np.int64(1 if mean else 0)
        _function("sc_ce_target_stats", x.device.id)(
            (nparts, 1, 1),
            (_STATS_THREADS, 1, 1),
            (
                target,
                class_weight if weighted else stats,
                np.int64(weighted),
                np.int64(rows),
                np.int64(n_classes),
                np.int64(ignore_index),
                np.int64(STATS_ROWS),
                mean_flag,
                part,
            ),
        )
        if nparts > 1:
            _function("sc_ce_target_finish", x.device.id)(
                (1, 1, 1),
                (_STATS_THREADS, 1, 1),
                (part, np.int64(nparts), mean_flag, stats),
            )
        # without weights every class's is stats[4] = 1, at stride 0
        cw, wstride = (class_weight, 1) if weighted else (stats[4:5], 0)
        plan = (
            target,
            cw,
            np.int64(wstride),
            stats,
            np.int64(ignore_index),
            np.float64(1.0 - smoothing),
            np.float64(smoothing / n_classes),
            loss_rows,
        )
        if grad_out is None:  # the loss alone reads a row twice only with smoothing
            _row_launch("ce_idx", x, (x,), (x, *plan), staged=smoothing > 0)
        else:
            _row_launch("ce_idx_grad", x, (x, grad_out), (x, *plan, grad_out))
        if loss_out is not None:  # the rows' losses summed in order, then the total
            sums, n = loss_rows, rows
            if rows > STATS_ROWS:
                sums, n = cupy.empty(nparts, dtype=cupy.float64), nparts
                _function("sc_ce_loss_parts", x.device.id)(
                    (nparts, 1, 1),
                    (_STATS_THREADS, 1, 1),
                    (loss_rows, np.int64(rows), np.int64(STATS_ROWS), sums),
                )
            sfx = "f32" if loss_out.dtype.itemsize == 4 else "f64"
            _function(f"sc_ce_total_{sfx}", x.device.id)(
                (1, 1, 1),
                (_STATS_THREADS, 1, 1),
                (sums, np.int64(n), stats, mean_flag, loss_out),
            )
    return stats
