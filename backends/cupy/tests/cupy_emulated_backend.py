"""The cupy backend's kernels on the host emulation, as a registrable backend.

``xp`` is NumPy; each kernel call views its arrays as :class:`EmuArray` and runs
the real launch code of ``softcore_cupy._kernels`` on the host build of
``kernels.cu``. Registering it lets the conformance kit judge the CUDA kernels'
numerics on a machine without a GPU:

    python backends/cupy/tests/cupy_emulated_backend.py [--reverse] [kit options]

``--reverse``: every block's threads take turns last to first (see host_cuda.h).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cupy_emulation as _emu

from softcore_cupy import _kernels

NAME = "cupy-emulated"


def _wrap(fn):
    def kernel(*args):
        conv = [
            _emu.dev(a) if isinstance(a, np.ndarray) and a.ndim > 0 else a for a in args
        ]
        with _emu.emulated(_emu.build()):
            return fn(*conv)

    kernel.__name__ = fn.__name__
    return kernel


class EmulatedCupyBackend:
    name = NAME
    version = "emulated"
    priority = -100
    threaded = False
    xp = np

    def available(self):
        return True if _emu.compiler() else "no C++ compiler for the host emulation"

    def accepts(self, x):
        # NumPy arrays; automatic selection never picks it (lowest priority)
        return isinstance(x, np.ndarray | np.generic | list | tuple | int | float)

    softmax_rows = staticmethod(_wrap(_kernels.softmax_rows))
    log_softmax_rows = staticmethod(_wrap(_kernels.log_softmax_rows))
    logsumexp_rows = staticmethod(_wrap(_kernels.logsumexp_rows))
    logsumexp_weighted_rows = staticmethod(_wrap(_kernels.logsumexp_weighted_rows))
    softmax_jacobian_rows = staticmethod(_wrap(_kernels.softmax_jacobian_rows))
    log_softmax_jacobian_rows = staticmethod(_wrap(_kernels.log_softmax_jacobian_rows))
    softmax_backward_rows = staticmethod(_wrap(_kernels.softmax_backward_rows))
    log_softmax_backward_rows = staticmethod(_wrap(_kernels.log_softmax_backward_rows))
    cross_entropy_rows = staticmethod(_wrap(_kernels.cross_entropy_rows))
    cross_entropy_grad_rows = staticmethod(_wrap(_kernels.cross_entropy_grad_rows))
    cross_entropy_prob_rows = staticmethod(_wrap(_kernels.cross_entropy_prob_rows))
    cross_entropy_prob_grad_rows = staticmethod(
        _wrap(_kernels.cross_entropy_prob_grad_rows)
    )
    cross_entropy_index_rows = staticmethod(_wrap(_kernels.cross_entropy_index_rows))


backend = EmulatedCupyBackend()


def main(argv=None) -> int:
    import softcore
    from softcore import _registry
    from softcore.testing import main as kit

    if NAME not in [b.name for b in softcore.list_backends()]:
        _registry.register(backend)
    args = list(sys.argv[1:] if argv is None else argv)
    if "--reverse" in args:
        args.remove("--reverse")
        _emu.build().sc_emulate_reverse(1)  # the library every launch here uses
    return kit([NAME, *args])


if __name__ == "__main__":
    sys.exit(main())
