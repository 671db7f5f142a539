"""Per-thread host scratch for the per-row vectors a call uses but never returns.

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
