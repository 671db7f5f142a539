"""Shared pieces of the asv suite.

The cases (inputs, calls, floors, peers) come from ``softcore._bench``, the module
behind ``python -m softcore bench``, so asv and the bench command time exactly the
same calls.  Nothing here builds data at import: arrays are made in ``setup``.

Conventions, as in NumPy's and SciPy's suites:

* ``params`` / ``param_names`` on every class; a combination that cannot run
  (backend or peer not installed, variant not offered by the op, output too large)
  raises ``NotImplementedError`` in ``setup`` and asv records it as skipped;
* ``setup`` seeds, builds the arrays and makes one warm-up call so a JIT compile
  is never timed;
* ``time_*`` time one call; ``track_ratio_*`` (``unit = "ratio"``) return a ratio
  of medians measured side by side in the same process, which stays comparable
  across noisy machines; ``peakmem_*`` / ``track_peak_extra_mib`` for memory.
"""

from __future__ import annotations

import importlib.util
from typing import Any

#: Shapes of the row-wise families, as ``NxC`` strings (asv shows params verbatim).
ROW_SHAPES = [
    "65536x128",
    "512x64",
    "8192x1000",
    "1024x32000",
    "64x262144",
    "32x10",
]
#: ``(N, C, C)`` outputs must fit in memory: the Jacobian gets its own shapes.
JACOBIAN_SHAPES = ["4096x128", "64x1000", "32x10"]
#: ``NxDxC`` (rows, features, classes); the last one is small, for smoke runs.
LINEAR_SHAPES = ["4096x512x32000", "2048x1024x50257", "256x64x1000"]
DTYPES = ["float32", "float64"]
#: The 16-bit dtypes, computed in float32 (their own classes: fewer shapes).
LOW_DTYPES = ["float16", "bfloat16"]
LOW_SHAPES = ["32x10", "512x64", "8192x1000", "1024x32000"]

#: Samples per ratio (median reported) and the minimum duration of one sample.
RATIO_REPEAT = 5
RATIO_TARGET_S = 0.01


def backend_names() -> list[str]:
    """Registered backends plus the built-in names, so params stay stable.

    Listing the registry is cheap (entry points only, no backend is imported).
    """
    names = ["numpy", "numba", "cupy"]
    try:
        import softcore as sc

        names += [b.name for b in sc.list_backends() if b.name not in names]
    except Exception:  # an old commit without the registry: setup will skip
        pass
    return names


BACKENDS = backend_names()


def require_backend(name: str) -> None:
    """Raise ``NotImplementedError`` (asv: skipped) unless ``name`` runs here."""
    import softcore as sc

    infos = {b.name: b for b in sc.list_backends()}
    if name not in infos:
        raise NotImplementedError(f"backend {name!r} is not installed")
    if infos[name].available is not True:
        raise NotImplementedError(f"backend {name!r}: {infos[name].available}")


def require_dtype(dtype: str) -> None:
    """Raise ``NotImplementedError`` (asv: skipped) where ``dtype`` has no NumPy
    dtype here: bfloat16 is ml_dtypes'."""
    if dtype == "bfloat16" and importlib.util.find_spec("ml_dtypes") is None:
        raise NotImplementedError("ml_dtypes (bfloat16's NumPy dtype) is not installed")


def require_peer(peer: str) -> None:
    module = "torch" if peer.startswith("torch") else peer
    if importlib.util.find_spec(module) is None:
        raise NotImplementedError(f"{module} is not installed")


def parse_shape(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in text.split("x"))


# The benchmarks most classes share, of the ``Case`` their ``setup`` leaves in
# ``self.case``. asv finds benchmarks a class inherits, under the class's own name;
# the leading underscore keeps these bases out of its discovery, here and where they
# are imported.


class _TimeOp:
    """``time_op``: one call."""

    def time_op(self, *params):
        self.case.call()


class _RatioToCopy:
    """``track_ratio_copy``: the call's time over its floor's (a copy of the array)."""

    def track_ratio_copy(self, *params):
        return self.case.ratio_to_floor()

    track_ratio_copy.unit = "ratio"


class _PeakExtraMemory:
    """``track_peak_extra_mib``: peak RSS above the warmed-up process during one
    call of the case, measured in a subprocess (asv's ``peakmem`` is the whole
    process's maximum, inputs included)."""

    def track_peak_extra_mib(self, *params):
        from softcore import _bench

        c = self.case
        mib, method = _bench.peak_extra_mib(
            c.op, c.variant, c.shape, c.dtype, c.backend, 0
        )
        if mib is None:
            raise RuntimeError(f"memory measurement failed: {method}")
        return mib

    track_peak_extra_mib.unit = "MiB"


class _RatioToPeer:
    """``track_ratio_peer``: softcore's time over the peer's, ``peer`` being the
    last parameter of every class that compares with one."""

    def track_ratio_peer(self, *params):
        return self.case.ratio_to_peer(params[-1])

    track_ratio_peer.unit = "ratio"


class _VariantOp(_TimeOp, _RatioToCopy):
    """Time and ratio to a copy of ``(op, backend, shape, dtype)`` cases of the
    input ``variant`` a subclass names (``params``: those four lists)."""

    variant = ""
    # asv reads param_names as a class attribute holding a list
    param_names = ["op", "backend", "shape", "dtype"]  # noqa: RUF012
    timeout = 300

    def setup(self, op, backend, shape, dtype):
        self.case = Case(op, self.variant, backend, shape, dtype)


class _VariantPeers(_RatioToPeer):
    """softcore / the peer on the same inputs of the subclass's ``variant``
    (``params``: op, backend, shape, dtype and peer lists)."""

    variant = ""
    param_names = ["op", "backend", "shape", "dtype", "peer"]  # noqa: RUF012
    timeout = 300

    def setup(self, op, backend, shape, dtype, peer):
        require_peer(peer)
        self.case = Case(op, self.variant, backend, shape, dtype)


class Case:
    """One op on one backend, with its floor, built in ``setup``."""

    def __init__(
        self, op: str, variant: str, backend: str, shape: str, dtype: str
    ) -> None:
        from softcore import _bench

        self.op = _bench.OPS[op]
        if variant not in self.op.variants:
            raise NotImplementedError(f"{op} has no variant {variant!r}")
        self.variant = variant
        self.shape = parse_shape(shape)
        self.dtype = dtype
        why = _bench.shape_fits(self.op, self.shape, dtype)
        if why is not None:
            raise NotImplementedError(why)
        require_backend(backend)
        self.backend = backend
        self.inputs = _bench.make_inputs(self.op, variant, self.shape, dtype)
        self.call = _bench.softcore_call(self.op, variant, self.inputs, backend)
        import numpy as np

        import softcore as sc

        xp = getattr(sc.get_backend(backend), "xp", np)
        self.floor = _bench.floor_call(self.op, self.inputs, xp)
        self.call()  # warm-up: the JIT compile is not timed

    def ratio(self, **others: Any) -> dict[str, float]:
        """Median times of the op, its floor and ``others``, interleaved."""
        from softcore import _bench

        fns = {"op": self.call, "floor": self.floor, **others}
        return _bench.time_interleaved(fns, RATIO_REPEAT, RATIO_TARGET_S)

    def ratio_to_floor(self) -> float:
        t = self.ratio()
        return t["op"] / t["floor"]

    def ratio_to_peer(self, peer: str) -> float:
        """softcore's time / the peer's time, for the same case.

        PyTorch is timed in this process, interleaved.  JAX brings its own thread
        pool, so it is timed in a subprocess against that process's own copy, and
        the ratio is taken between the two ratios to the floor.
        """
        from softcore import _bench

        if peer == "jax":
            got = _bench.run_jax(
                [
                    {
                        "op": self.op.name,
                        "variant": self.variant,
                        "shape": list(self.shape),
                        "dtype": self.dtype,
                    }
                ],
                0,
                RATIO_REPEAT,
                RATIO_TARGET_S,
            )[0]
            if got is None:
                raise RuntimeError("JAX run failed")
            t = self.ratio()
            return (t["op"] / t["floor"]) / (got["time_s"] / got["floor_s"])
        fn = _bench.torch_call(
            self.op, self.variant, self.inputs, chunked=peer == "torch-chunked"
        )
        if fn is None:
            raise RuntimeError(f"no {peer} equivalent of {self.op.name}")
        t = self.ratio(peer=fn)
        return t["op"] / t["peer"]


def peer_supported(op: str, variant: str, peer: str) -> None:
    """Raise ``NotImplementedError`` where the peer has no equivalent call."""
    from softcore import _bench

    o = _bench.OPS[op]
    if peer == "torch-chunked" and o.family != "linear_ce":
        raise NotImplementedError("chunking options exist for linear CE only")
    if peer == "jax" and variant not in ("plain", "alloc", "out"):
        raise NotImplementedError("no JAX equivalent of the CE options")
