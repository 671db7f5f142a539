"""softcore-cupy: the GPU backend of softcore, on CuPy arrays.

Importing this package is cheap and never imports CuPy: the registry loads
``softcore_cupy:backend`` through the ``softcore.backends`` entry point, and CuPy is
imported on first use (``available()``, ``xp`` or a kernel call).
"""

from __future__ import annotations

from softcore_cupy._backend import CupyBackend, backend

__version__ = "0.1.0"

__all__ = ["CupyBackend", "__version__", "backend"]
