"""Process-level set-up, done once before the first kernel runs.

* **On-disk cache.** Kernels are compiled lazily (per op, dtype and mode) and
  cached in a user cache directory, never in the install directory (which may be
  read-only): ``$SOFTCORE_NUMBA_CACHE_DIR``, else ``$NUMBA_CACHE_DIR/softcore-numba``,
  else ``$XDG_CACHE_HOME/softcore-numba`` (``~/.cache/softcore-numba``). A cache
  entry is keyed on every source file of the package, so editing one helper
  recompiles everything that may have inlined it.
* **Threading layer.** numba's ``workqueue`` layer aborts when two Python threads
  launch parallel kernels at once and GNU OpenMP kills a forked child, so the
  plugin asks for the TBB layer (``tbb`` from PyPI installs ``libtbb.so.12``
  where the loader does not look; it is preloaded from the environment's
  ``lib/``). If TBB cannot be loaded, or the process already chose another
  layer, or the user chose one with ``NUMBA_THREADING_LAYER``, parallel launches
  are serialised by a lock instead (re-created in a forked child).
* **A first compile says so.** A kernel compiled on its first call takes
  seconds, with nothing else to show for it; the first compile of this
  package's code in a process logs one line (``logging``, logger
  ``softcore_numba``, level WARNING: on stderr unless logging is configured)
  that names the warmup. Cache loads and the warmup's own compiles say nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import threading

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))
_ready = False
_setup_lock = threading.Lock()
_launch_lock: threading.Lock | None = threading.Lock()  # until the layer is known
_layer_known = False


def cache_dir() -> str:
    """The directory the compiled kernels are cached in."""
    d = os.environ.get("SOFTCORE_NUMBA_CACHE_DIR")
    if d:
        return d
    d = os.environ.get("NUMBA_CACHE_DIR")
    if d:
        return os.path.join(d, "softcore-numba")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    return os.path.join(base, "softcore-numba")


def _package_stamp() -> tuple:
    stamp = []
    for name in sorted(os.listdir(_PKG_DIR)):
        if name.endswith(".py"):
            st = os.stat(os.path.join(_PKG_DIR, name))
            stamp.append((name, st.st_mtime_ns, st.st_size))
    return tuple(stamp)


def _install_cache_locator() -> None:
    """Put this package's kernels in :func:`cache_dir` (first locator tried)."""
    try:
        from numba.core import caching
    except ImportError:  # pragma: no cover - numba too old or too new
        return
    base = getattr(caching, "_CacheLocator", None)
    mixin = getattr(caching, "_SourceFileBackedLocatorMixin", None)
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    if base is None or mixin is None or impl is None:  # pragma: no cover
        return
    if any(getattr(c, "_softcore", False) for c in impl._locator_classes):
        return
    stamp = _package_stamp()

    class SoftcoreCacheLocator(mixin, base):
        _softcore = True

        def __init__(self, py_func, py_file):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            self._cache_path = _cache_folder()  # from_function: py_file is ours

        def get_cache_path(self):
            return self._cache_path

        def get_source_stamp(self):
            return stamp

        @classmethod
        def from_function(cls, py_func, py_file):
            if os.path.dirname(os.path.abspath(py_file)) != _PKG_DIR:
                return None
            self = cls(py_func, py_file)
            try:
                self.ensure_cache_path()
            except OSError:
                return None  # numba's own locators are tried next
            return self

    impl._locator_classes.insert(0, SoftcoreCacheLocator)
    _mark_folder()
    _drop_stale_kernels(stamp)


SOURCE_MARK = "softcore-source.txt"
"""The file in this install's cache folder that names the package folder it
caches: a folder whose package is gone (a deleted environment or clone) is
removed by the next warmup (:func:`prune_folders`)."""


def _cache_folder() -> str:
    """This install's folder in :func:`cache_dir`: numba names it by the
    package folder's name and a hash of its path."""
    from numba.core import caching

    sub = caching._CacheLocator.get_suitable_cache_subpath(
        os.path.join(_PKG_DIR, "_kernels.py")
    )
    return os.path.join(cache_dir(), sub)


def _mark_folder() -> None:
    """Write :data:`SOURCE_MARK` into this install's cache folder, once."""
    try:
        mark = os.path.join(_cache_folder(), SOURCE_MARK)
        if not os.path.exists(mark):
            os.makedirs(os.path.dirname(mark), exist_ok=True)
            with open(mark, "w") as f:
                f.write(_PKG_DIR)
    except (OSError, AttributeError):  # read-only cache, or numba's layout moved
        pass


STAMP_MARK = "softcore-stamp.txt"
"""The file in this install's cache folder that names, as a hash, the sources
(and numba and Python versions) its kernels were compiled from."""


def _stamp_text(stamp: tuple) -> str:
    import hashlib

    import numba

    key = repr((stamp, numba.__version__, sys.version_info[:2]))
    return hashlib.sha256(key.encode()).hexdigest()


def _drop_stale_kernels(stamp: tuple) -> int:
    """Remove this install's cached kernels where :data:`STAMP_MARK` says they
    were compiled from other sources (an upgrade in place, an edited checkout,
    another numba), then record the current ones; the files removed. numba
    never loads such entries again, and it names their files by function and
    line, so most would never be overwritten either: each upgrade left its
    predecessor's tens of MiB behind. Once per process, at set-up: a process
    that loses a race here only compiles again (numba reads a missing file as
    a cache miss)."""
    try:
        folder = _cache_folder()
        mark = os.path.join(folder, STAMP_MARK)
        want = _stamp_text(stamp)
        try:
            with open(mark) as f:
                if f.read().strip() == want:
                    return 0
        except OSError:
            pass
        removed = 0
        for entry in os.scandir(folder):
            if entry.name.endswith((".nbi", ".nbc")):
                try:
                    os.unlink(entry.path)
                    removed += 1
                except OSError:
                    pass
        tmp = f"{mark}.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(want)
        os.replace(tmp, mark)
        return removed
    except (OSError, AttributeError):  # read-only cache, or numba's layout moved
        return 0


def _gone_folders() -> list[str]:
    """The folders in :func:`cache_dir` whose :data:`SOURCE_MARK` names a package
    folder that no longer exists (folders without one are not counted)."""
    gone = []
    try:
        entries = [e for e in os.scandir(cache_dir()) if e.is_dir()]
    except OSError:
        return gone
    for entry in entries:
        try:
            with open(os.path.join(entry.path, SOURCE_MARK)) as f:
                source = f.read().strip()
        except OSError:
            continue
        if source and not os.path.isdir(source):
            gone.append(entry.path)
    return gone


def prune_folders() -> list[str]:
    """Remove the cache folders of installs whose package folder is gone
    (:func:`_gone_folders`); the folders removed."""
    import shutil

    gone = _gone_folders()
    for path in gone:
        shutil.rmtree(path, ignore_errors=True)
    return gone


def _load_tbb() -> bool:
    """Make numba's TBB pool importable; preload ``libtbb`` if needed."""
    try:
        from numba.np.ufunc import tbbpool

        return True
    except ImportError:
        pass
    candidates = []
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix, sys.exec_prefix)):
        candidates.append(os.path.join(prefix, "lib", "libtbb.so.12"))
    found = ctypes.util.find_library("tbb")
    if found:
        candidates.append(found)
    for path in candidates:
        if os.sep in path and not os.path.exists(path):
            continue
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        try:
            from numba.np.ufunc import tbbpool  # noqa: F401

            return True
        except ImportError:
            continue
    return False


def _choose_layer() -> None:
    import numba
    from numba.np.ufunc import parallel

    if getattr(parallel, "_is_initialized", False):
        return  # another library launched first: keep its layer (and the lock)
    if os.environ.get("NUMBA_THREADING_LAYER"):
        return  # the user's explicit choice
    if numba.config.THREADING_LAYER not in ("default", "tbb", "safe", "threadsafe"):
        return
    if _load_tbb():
        numba.config.THREADING_LAYER = "tbb"
    else:
        numba.config.THREADING_LAYER = "forksafe"


COMPILE_NOTICE = (
    "softcore-numba: compiling kernels on their first use, seconds each (cached "
    "on disk for later processes); `python -m softcore warmup` compiles them all "
    "ahead"
)
_notice_due = True  # until said once, or the warmup (which says what it does)


def _install_compile_notice() -> None:
    """Log :data:`COMPILE_NOTICE` at the first compile of this package's code:
    numba announces a compile (not a cache load) as a ``numba:compile`` event."""
    from numba.core import event

    package = __name__.rpartition(".")[0]
    log = logging.getLogger(package)

    class _Notice(event.Listener):
        def on_start(self, ev: event.Event) -> None:
            global _notice_due
            if not _notice_due:
                return
            fn = getattr((ev.data or {}).get("dispatcher"), "py_func", None)
            module = getattr(fn, "__module__", None) or ""
            if module.partition(".")[0] == package:
                _notice_due = False
                log.warning(COMPILE_NOTICE)

        def on_end(self, ev: event.Event) -> None:
            pass

    event.register("numba:compile", _Notice())


def _reinit_after_fork() -> None:
    global _launch_lock, _setup_lock
    _setup_lock = threading.Lock()
    if _launch_lock is not None:
        _launch_lock = threading.Lock()


def ensure() -> None:
    """Install the cache locator and choose the threading layer (idempotent)."""
    global _ready
    if _ready:
        return
    with _setup_lock:
        if _ready:
            return
        _install_cache_locator()
        _install_compile_notice()
        _choose_layer()
        os.register_at_fork(after_in_child=_reinit_after_fork)
        _ready = True


def launch(kernel, *args) -> None:
    """Run a parallel kernel; serialised unless the layer is thread-safe."""
    global _launch_lock, _layer_known
    lock = _launch_lock
    if lock is None:
        kernel(*args)
        return
    with lock:
        kernel(*args)
        if not _layer_known:
            _layer_known = True
            import numba

            try:
                layer = numba.threading_layer()
            except ValueError:  # pragma: no cover
                layer = None
            if layer == "tbb":
                _launch_lock = None


def threading_layer() -> str | None:
    """The layer numba runs parallel kernels on, once one has run."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:
        return None


def set_num_threads(n: int) -> None:
    ensure()
    import numba

    numba.set_num_threads(int(n))


def get_num_threads() -> int:
    ensure()
    import numba

    return int(numba.get_num_threads())


def _cache_files() -> tuple[str, int, int, int, int]:
    """This install's folder in :func:`cache_dir`, the count and total bytes of
    its files, how many other installs' folders there are, and how many of those
    are of installs that are gone."""
    path = _cache_folder()
    n = size = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            if name == SOURCE_MARK:
                continue
            try:
                size += os.path.getsize(os.path.join(root, name))
            except OSError:
                continue
            n += 1
    try:
        others = sum(e.is_dir() and e.path != path for e in os.scandir(cache_dir()))
    except OSError:
        others = 0
    return path, n, size, others, len(_gone_folders())


def describe() -> dict[str, str]:
    """How kernels will run here, for ``python -m softcore info``: numba's
    version, the threading layer (in use, or asked for until the first parallel
    call starts one), the kernel cache and this backend's settings. Compiles
    nothing."""
    ensure()
    import numba

    layer = threading_layer()
    if layer is None:
        asked = numba.config.THREADING_LAYER
        how = f"{asked} (asked for; the first parallel call starts it)"
    elif layer == "tbb":  # launch() drops its lock at the first launch
        how = f"{layer} (threads may launch kernels at once)"
    else:
        how = f"{layer} (parallel launches from several threads take turns)"
    path, n, size, others, gone = _cache_files()
    cache = f"{path}, {n} file{'' if n == 1 else 's'}, {size / 2**20:.1f} MiB"
    if n == 0:
        cache += " (empty: python -m softcore warmup compiles ahead)"
    if others > 0:
        cache += f"; other installs' folders beside it: {others}"
        if gone:
            cache += f" ({gone} of installs that are gone: the warmup removes them)"
    out = {"numba": numba.__version__, "threading layer": how, "kernel cache": cache}
    for var in (
        "SOFTCORE_NUMBA_CACHE_DIR",
        "SOFTCORE_NUMBA_CHUNK_ROWS",
        "SOFTCORE_NUMBA_SERIAL_MAX",
    ):
        if os.environ.get(var):
            out[var] = os.environ[var]
    return out
