"""Backend discovery and selection.

Backends are found through the ``softcore.backends`` entry-point group. The group is
listed on first use and each plugin object is loaded only when it is first needed, so
``import softcore`` stays cheap. Selection order for one call::

    backend= argument > use_backend(...) > set_backend(...) > $SOFTCORE_BACKEND
        > the highest-priority available backend that accepts the input array

Host data that no backend takes as it is but ``numpy.asarray`` converts (a list, a
pandas Series, a CPU tensor) is computed as that NumPy array, by any backend that
computes on NumPy arrays; data on a device is never moved to the host.

Naming a backend that is missing, unavailable, or cannot take the array is an error
that says what is installed; there is never a silent fallback.

``$SOFTCORE_BACKEND`` is read when a call first needs it and then kept, as other
libraries keep their environment settings: reading the environment on every call
cost about 1 us, a fifth of a small softmax. ``set_backend(None)`` and ``reset()``
read it again.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import numpy as np

from softcore._validate import host_array_like, on_device

ENTRY_POINT_GROUP = "softcore.backends"
ENV_VAR = "SOFTCORE_BACKEND"

__all__ = [
    "ENTRY_POINT_GROUP",
    "BackendError",
    "BackendInfo",
    "BackendNotFoundError",
    "BackendUnavailableError",
    "get_backend",
    "list_backends",
    "set_backend",
    "use_backend",
]


class BackendError(LookupError):
    """Base class of the registry's errors."""


class BackendNotFoundError(BackendError):
    """No backend of that name is registered."""


class BackendUnavailableError(BackendError):
    """The backend is registered but cannot run here (the message says why)."""


@dataclass(frozen=True)
class BackendInfo:
    """One row of :func:`list_backends`."""

    name: str
    version: str
    priority: int
    available: bool | str
    threaded: bool
    source: str

    def __str__(self) -> str:
        ok = self.available is True
        state = "available" if ok else f"unavailable: {self.available}"
        return f"{self.name} {self.version} (priority {self.priority}, {state})"


_lock = threading.RLock()
_entries: dict[str, Any] | None = None  # name -> EntryPoint (not yet loaded)
_loaded: dict[str, Any] = {}  # name -> backend object
_load_errors: dict[str, str] = {}  # name -> why it failed to load
_availability: dict[str, bool | str] = {}
_auto: dict[type, Any] = {}  # array type -> automatically selected backend
_ready: dict[str, Any] = {}  # name -> loaded and available backend
_default: str | None = None
_UNREAD = object()
_env_choice: Any = _UNREAD  # $SOFTCORE_BACKEND as last read (None: unset or empty)
_context: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "softcore_backend", default=None
)


def _discover() -> dict[str, Any]:
    global _entries
    entries = _entries
    if entries is not None:
        return entries
    with _lock:
        if _entries is not None:
            return _entries
        found: dict[str, Any] = {}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in found or ep.name in _loaded:
                if getattr(found.get(ep.name), "value", None) != ep.value:
                    warnings.warn(
                        f"softcore backend {ep.name!r} is registered twice "
                        f"({found[ep.name].value if ep.name in found else 'in-process'}"
                        f" and {ep.value}); keeping the first",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                continue
            found[ep.name] = ep
        _entries = found
        return found


def _names() -> list[str]:
    return sorted(set(_discover()) | set(_loaded))


def _load(name: str) -> Any:
    obj = _loaded.get(name)
    if obj is not None:
        return obj
    entries = _discover()
    if name in _load_errors:
        raise BackendUnavailableError(
            f"softcore backend {name!r} failed to load: {_load_errors[name]}"
        )
    if name not in entries:
        raise BackendNotFoundError(
            f"no softcore backend named {name!r}; installed: {_installed_text()}"
        )
    ep = entries[name]
    with _lock:
        if name in _loaded:
            return _loaded[name]
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not break softcore
            why = f"{type(exc).__name__}: {exc}"
            _load_errors[name] = why
            warnings.warn(
                f"softcore backend entry point {name} = {ep.value!r} failed to load "
                f"({why}); it is unavailable",
                RuntimeWarning,
                stacklevel=3,
            )
            raise BackendUnavailableError(
                f"softcore backend {name!r} failed to load: {why}"
            ) from exc
        if getattr(obj, "name", name) != name:
            warnings.warn(
                f"softcore backend entry point {name!r} names its object "
                f"{obj.name!r}; using {name!r}",
                RuntimeWarning,
                stacklevel=3,
            )
        _loaded[name] = obj
        return obj


def _availability_of(name: str, obj: Any) -> bool | str:
    state = _availability.get(name)
    if state is None:
        try:
            state = obj.available()
        except Exception as exc:
            state = f"availability check raised {type(exc).__name__}: {exc}"
        if state is not True:
            state = str(state) if state else "unavailable (no reason given)"
        _availability[name] = state
    return state


def _installed_text() -> str:
    rows = []
    for name in _names():
        if name in _load_errors:
            rows.append(f"{name} (failed to load)")
            continue
        try:
            obj = _load(name)
        except BackendError:
            rows.append(f"{name} (failed to load)")
            continue
        state = _availability_of(name, obj)
        rows.append(name if state is True else f"{name} (unavailable: {state})")
    return ", ".join(rows) if rows else "none"


def list_backends() -> list[BackendInfo]:
    """Every registered backend, highest priority first.

    Returns
    -------
    list of BackendInfo
        ``name``, ``version``, ``priority``, ``available`` (``True`` or the reason it
        is not), ``threaded`` and ``source`` (the entry point, or ``"in-process"``).

    Examples
    --------
    >>> import softcore as sc
    >>> "numpy" in [b.name for b in sc.list_backends()]
    True
    """
    rows = []
    entries = _discover()
    for name in _names():
        source = entries[name].value if name in entries else "in-process"
        try:
            obj = _load(name)
        except BackendError:
            rows.append(
                BackendInfo(
                    name,
                    "?",
                    -1,
                    f"failed to load: {_load_errors[name]}",
                    False,
                    source,
                )
            )
            continue
        rows.append(
            BackendInfo(
                name=name,
                version=str(getattr(obj, "version", "?")),
                priority=int(getattr(obj, "priority", 0)),
                available=_availability_of(name, obj),
                threaded=bool(getattr(obj, "threaded", False)),
                source=source,
            )
        )
    rows.sort(key=lambda r: (-r.priority, r.name))
    return rows


def _named(name: str) -> Any:
    obj = _ready.get(name)
    if obj is not None:
        return obj
    obj = _load(name)
    state = _availability_of(name, obj)
    if state is not True:
        raise BackendUnavailableError(
            f"softcore backend {name!r} is unavailable: {state}; "
            f"installed: {_installed_text()}"
        )
    _ready[name] = obj
    return obj


def _automatic(x: Any) -> Any:
    t = type(x)
    obj = _auto.get(t)
    if obj is not None:
        return obj
    ranked = []
    for name in _names():
        try:
            cand = _load(name)
        except BackendError:
            continue
        ranked.append((-int(getattr(cand, "priority", 0)), name, cand))
    ranked.sort(key=lambda r: (r[0], r[1]))
    for _, name, cand in ranked:
        if _availability_of(name, cand) is True and cand.accepts(x):
            _auto[t] = cand
            return cand
    if host_array_like(x):  # computed as the NumPy array it converts to
        obj = _automatic(_NUMPY_LIKE)
        if t in _HOST_TYPES:  # not cached for others: a tensor may be on a device
            _auto[t] = obj
        return obj
    where = " on a device" if on_device(x) else ""
    raise TypeError(
        f"no available softcore backend accepts an array of type "
        f"{t.__module__}.{t.__qualname__}{where}; installed: {_installed_text()}"
    )


_NUMPY_LIKE = np.empty(0)
_HOST_TYPES = (list, tuple, int, float, bool)


def resolve(x: Any, backend: Any = None) -> Any:
    """The backend object that computes on ``x`` (the selection order above)."""
    choice = backend
    if choice is None:
        choice = _context.get()
        if choice is None:
            choice = _default
            if choice is None:
                choice = _env_choice
                if choice is _UNREAD:
                    choice = _read_env()
                if choice is None:
                    return _automatic(x)
    obj = _ready.get(choice) if type(choice) is str else None
    if obj is None:
        obj = _named(choice) if isinstance(choice, str) else choice
    if not obj.accepts(x) and not (
        getattr(obj, "xp", None) is np and host_array_like(x)
    ):
        t = type(x)
        raise TypeError(
            f"softcore backend {obj.name!r} cannot take an array of type "
            f"{t.__module__}.{t.__qualname__}; installed: {_installed_text()}"
        )
    return obj


def _read_env() -> str | None:
    global _env_choice
    _env_choice = os.environ.get(ENV_VAR) or None
    return _env_choice


def get_backend(name: str | None = None, *, like: Any = None) -> Any:
    """The backend object a call would use.

    Parameters
    ----------
    name : str, optional
        A registered backend's name. Without it, the selection order decides, for an
        array like ``like`` (a NumPy array when not given).
    like : array, optional
        An array of the type the call would receive.

    Raises
    ------
    BackendNotFoundError
        No backend has that name (the message lists what is installed).
    BackendUnavailableError
        It is registered but cannot run here (the message says why).
    """
    if name is not None:
        return _named(name)
    if like is None:
        import numpy as np

        like = np.empty(0)
    return resolve(like)


def set_backend(name: str | None) -> None:
    """Set (or, with ``None``, clear) the process-wide default backend.

    Clearing it also reads ``$SOFTCORE_BACKEND`` again, which is otherwise read
    once, when a call first needs it.
    """
    global _default
    if name is not None:
        _named(name)
    else:
        _read_env()
    _default = name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[Any]:
    """Use backend ``name`` inside a ``with`` block.

    The choice is context-local (a :mod:`contextvars` variable): other threads and
    other asyncio tasks keep their own selection.

    Examples
    --------
    >>> import numpy as np, softcore as sc
    >>> with sc.use_backend("numpy"):
    ...     float(sc.logsumexp(np.zeros(4)))
    1.3862943611198906
    """
    obj = _named(name)
    token = _context.set(name)
    try:
        yield obj
    finally:
        _context.reset(token)


def register(obj: Any) -> None:
    """Register a backend object in this process (tests, notebooks, embedding).

    Packaged plugins use the entry point instead.
    """
    with _lock:
        name = obj.name
        if name in _loaded or name in _discover():
            raise ValueError(f"a softcore backend named {name!r} is already registered")
        _loaded[name] = obj
        _forget_choices()


def unregister(name: str) -> None:
    """Remove a backend registered with :func:`register`."""
    with _lock:
        if name in (_entries or {}):
            raise ValueError(f"{name!r} comes from an entry point; uninstall it")
        _loaded.pop(name)
        _availability.pop(name, None)
        _forget_choices()


def _forget_choices() -> None:
    _auto.clear()
    _ready.clear()


def reset() -> None:
    """Forget everything discovered and loaded (tests; after installing a plugin)."""
    global _entries, _default, _env_choice
    with _lock:
        _env_choice = _UNREAD
        _entries = None
        _loaded.clear()
        _load_errors.clear()
        _availability.clear()
        _forget_choices()
        _default = None
