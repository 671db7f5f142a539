"""softcore-numba: the Numba-JIT, parallel, batched CPU backend of softcore.

Registered under the ``softcore.backends`` entry point as ``numba``. Importing this
package is cheap: numba is imported, and kernels compiled (or loaded from the
on-disk cache), on first use.
"""

from __future__ import annotations

from ._backend import NumbaBackend, backend

__all__ = ["NumbaBackend", "__version__", "backend"]
__version__ = "0.1.0"
