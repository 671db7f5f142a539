"""Host scratch a call uses but never returns: per-thread per-row vectors, and
linear cross-entropy's chunk buffer (see :func:`take_chunk`).

A class-index cross-entropy call hands its kernels two float64 weights per row
(``alpha``, ``beta``), sometimes an int64 copy of the targets, and takes back a
float64 loss per row: 32 bytes a row, 2 MiB for 65536 rows. Allocated afresh
each call, such arrays come from ``mmap`` and every one of their pages is a
page fault on first touch; at 65536 x 128 float32 that cost 13-27% of the whole
call. Reusing one buffer per thread removes it. The views into it are kept too,
so a small call of the same batch size again makes no new array objects.

The buffer is only for NumPy (host) arrays: a device library's kernels run
asynchronously, and a buffer reused by the next call on another stream would
race. A call that finds the buffer busy (a backend calling softcore from inside a
kernel call, say) gets fresh arrays, so nested calls stay correct. At most
:data:`LIMIT` bytes are kept per thread; a larger request allocates afresh.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

LIMIT = 16 << 20
"""Bytes of scratch kept per thread (a request above it is not pooled)."""

_K = 4  # float64 rows of scratch per batch row


class Rows:
    """The per-row arrays of one call, each ``(n,)``, views of the thread's buffer:
    ``alpha``, ``beta`` and ``loss`` (float64) and ``target`` (int64). Contents
    undefined when handed out."""

    __slots__ = ("alpha", "base", "beta", "loss", "target")

    def __init__(self, base: Any) -> None:
        self.base = base  # the (4, n) float64 view the others are rows of
        self.alpha, self.beta, self.loss = base[0], base[1], base[2]
        self.target = base[3].view(np.int64)


class _Slot(threading.local):
    buf: Any = None
    busy: bool = False
    n: int = -1  # batch rows of the last Rows handed out, kept for the next call
    rows: Any = None


_SLOT = _Slot()


def take(xp: Any, n: int) -> Rows | None:
    """The thread's :class:`Rows` for a batch of ``n`` rows, or None where the
    caller should allocate afresh: not NumPy, above :data:`LIMIT`, or the thread's
    buffer already in use. Hand it back with :func:`give_back`."""
    size = _K * n
    if xp is not np or size * 8 > LIMIT:
        return None
    slot = _SLOT
    if slot.busy:
        return None
    if slot.n == n:  # the same batch again: the same views
        slot.busy = True
        return slot.rows
    buf = slot.buf
    if buf is None or buf.shape[0] < size:
        # grow geometrically (up to LIMIT) so a growing batch allocates rarely
        buf = np.empty(
            min(max(size, 2 * (0 if buf is None else buf.shape[0])), LIMIT // 8)
        )
        slot.buf = buf
    slot.busy = True
    slot.n, slot.rows = n, Rows(buf[:size].reshape(_K, n))
    return slot.rows


def give_back(rows: Rows | None) -> None:
    """Release what :func:`take` handed out (None: nothing was taken)."""
    if rows is not None:
        _SLOT.busy = False


# ------------------------------------------------ linear cross-entropy's chunk

CHUNK_ENV = "SOFTCORE_KEEP_CHUNK_MIB"
"""Environment variable: MiB of linear cross-entropy chunk buffer kept between
calls (default :data:`CHUNK_DEFAULT_MIB`; 0 keeps none)."""

CHUNK_DEFAULT_MIB = 128


class _Kept:
    """The process's one kept chunk buffer (raw bytes), and whether a call holds it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.buf: Any = None
        self.busy = False


_KEPT = _Kept()


def chunk_limit() -> int:
    """Bytes of chunk buffer that may be kept, from :data:`CHUNK_ENV`."""
    text = os.environ.get(CHUNK_ENV)
    if not text:
        return CHUNK_DEFAULT_MIB << 20
    try:
        mib = float(text)
    except ValueError:
        mib = -1.0
    if not 0 <= mib < float("inf"):  # also NaN
        raise ValueError(f"{CHUNK_ENV} must be a number of MiB >= 0; received {text!r}")
    return int(mib * (1 << 20))


def take_chunk(
    xp: Any, shape: tuple[int, int], dtype: Any, limit: int | None = None
) -> tuple[Any, bool]:
    """An uninitialised ``shape`` array of ``dtype`` for linear cross-entropy's
    chunk of logits, and whether it is the kept buffer (then hand it back with
    :func:`give_back_chunk`).

    A chunk of 128 MiB allocated afresh on every call is paged in afresh on
    every call; where freed memory goes back to a hypervisor that cost 3-9% of
    a 4096 x 512 x 32000 float32 call. So one buffer is kept for the process
    (NumPy only; at most :func:`chunk_limit` bytes) and reused by the next call;
    a call that finds it in use, or needs more than the limit, allocates afresh.
    It only ever holds the chunk's logits and gradient, which no result shares.
    ``limit``: :func:`chunk_limit`'s value where the caller has read it already.
    """
    dt = np.dtype(dtype)
    nbytes = shape[0] * shape[1] * dt.itemsize
    if limit is None and xp is np:
        limit = chunk_limit()
    if xp is not np or nbytes == 0 or nbytes > limit:
        return xp.empty(shape, dtype=dt), False
    kept = _KEPT
    with kept.lock:
        if kept.busy:
            return np.empty(shape, dtype=dt), False
        buf = kept.buf
        if buf is None or buf.nbytes < nbytes:
            kept.buf = None  # the old one is freed before the new one is made
            buf = kept.buf = np.empty(nbytes, dtype=np.uint8)
        kept.busy = True
    return buf[:nbytes].view(dt).reshape(shape), True


def give_back_chunk(kept_buffer: bool) -> None:
    """Release what :func:`take_chunk` handed out (False: nothing was kept)."""
    if kept_buffer:
        with _KEPT.lock:
            _KEPT.busy = False


def release_scratch() -> int:
    """Free the linear cross-entropy chunk buffer softcore keeps between calls
    (see :data:`CHUNK_ENV`); returns the bytes freed (0 if none was kept or a
    call on another thread is using it). Per-thread cross-entropy row scratch
    (at most 16 MiB a thread) is freed with its thread."""
    with _KEPT.lock:
        if _KEPT.busy or _KEPT.buf is None:
            return 0
        freed = int(_KEPT.buf.nbytes)
        _KEPT.buf = None
    return freed
