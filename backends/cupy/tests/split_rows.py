"""Cases of the split-row kernels ("Split rows" in kernels.cu), shared by the
emulated tests and the tests on a device."""

from __future__ import annotations

import numpy as np

from softcore_cupy import _kernels as K

#: (dtype, blocks of the cluster): every float32 cluster, float64 at the smallest
#: and the largest.
CASES = [(np.float32, cl) for cl in K.CLUSTERS] + [(np.float64, 2), (np.float64, 8)]
IDS = [f"f{np.dtype(d).itemsize * 8}-c{cl}" for d, cl in CASES]


def width(cl: int, itemsize: int, threads: int) -> int:
    """A row width whose split launch at ``threads`` a block takes ``cl`` blocks: a
    multiple of the vector, short of filling them (the last block's segment is
    shorter than the others)."""
    cap = threads * K._CACHE[itemsize]
    c = cl * cap - cap // 2 - K._VEC[itemsize]
    assert c % K._VEC[itemsize] == 0
    return c
