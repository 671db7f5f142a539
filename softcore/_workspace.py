"""Per-thread host scratch for the per-row vectors a call uses but never returns.

A class-index cross-entropy call hands its kernels two float64 weights per row
(``alpha``, ``beta``), sometimes an int64 copy of the targets, and takes back a
float64 loss per row: 32 bytes a row, 2 MiB for 65536 rows. Allocated afresh
each call, such arrays come from ``mmap`` and every one of their pages is a
page fault on first touch; at 65536 x 128 float32 that cost 13-27% of the whole
call. Reusing one buffer per thread removes it.

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


class _Slot(threading.local):
    buf: Any = None
    busy: bool = False
    shape: tuple = ()  # of the last view handed out, kept for the next call
    view: Any = None


_SLOT = _Slot()


def take(xp: Any, k: int, n: int) -> Any:
    """A ``(k, n)`` float64 scratch array (contents undefined), or None where the
    caller should allocate afresh: not NumPy, above :data:`LIMIT`, or the
    thread's buffer already in use. Hand it back with :func:`give_back`."""
    size = k * n
    if xp is not np or size * 8 > LIMIT:
        return None
    slot = _SLOT
    if slot.busy:
        return None
    if slot.shape == (k, n):  # the same batch again: the same view
        slot.busy = True
        return slot.view
    buf = slot.buf
    if buf is None or buf.shape[0] < size:
        # grow geometrically (up to LIMIT) so a growing batch allocates rarely
        buf = np.empty(
            min(max(size, 2 * (0 if buf is None else buf.shape[0])), LIMIT // 8)
        )
        slot.buf = buf
    slot.busy = True
    slot.shape, slot.view = (k, n), buf[:size].reshape(k, n)
    return slot.view


def give_back(scratch: Any) -> None:
    """Release what :func:`take` handed out (None: nothing was taken)."""
    if scratch is not None:
        _SLOT.busy = False
