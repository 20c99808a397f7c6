"""Loading generated Numba source from files in a cache directory.

Numba can only disk-cache (``@njit(cache=True)``) functions whose code comes from a real file:
it keys its cache on the file's path and stamp. Generated source is therefore written to
``cache_dir()/<prefix>_<hash>.py``, named by a hash of the source, and imported from there, so a
second process that generates the same source finds both the file and Numba's compiled code.

Generated source reads a module-level name ``_JG_CACHE`` that it does not define, e.g.
``@njit(cache=_JG_CACHE)``. The loader sets it before executing the module: ``True`` when the
module comes from a file in the cache directory, ``False`` for the in-memory fallback used when
the directory cannot be written (Numba refuses ``cache=True`` on code without a file).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.util
import os
import re
import stat
import sys
import tempfile
import types
import warnings
from collections.abc import Callable
from pathlib import Path

from ...locks import new_lock

__all__ = [
    "CACHE_DIR_ENV",
    "FORMAT_VERSION",
    "cache_dir",
    "clear_cache",
    "load_module",
    "module_name",
]

CACHE_DIR_ENV = "JITGRAD_CACHE_DIR"
# Bump when the layout of generated code changes incompatibly, so old files are not picked up.
FORMAT_VERSION = 1
# Parent package under which generated modules are registered in sys.modules.
PACKAGE = "jitgrad_generated"

_DIGEST_CHARS = 20
# <prefix>_<20 hex digits>.py; the prefix is an identifier so the name is a valid module name.
_NAME = rf"[A-Za-z_][A-Za-z0-9_]*_[0-9a-f]{{{_DIGEST_CHARS}}}"
_SOURCE_RE = re.compile(rf"{_NAME}\.py")
# Leftovers of an interrupted write (see _write_atomic).
_TEMP_RE = re.compile(rf"\.{_NAME}\.py\..*\.tmp")

_lock = new_lock(reentrant=False)
_modules: dict[str, types.ModuleType] = {}
_warned = False


def cache_dir() -> Path:
    """The directory that holds generated source files and Numba's compiled code for them.

    ``$JITGRAD_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME`` (or ``~/.cache``) /
    ``jitgrad/numba-v<FORMAT_VERSION>``. Only resolves the path; the directory is created (mode
    0o700) by the first ``load_module`` that needs it.
    """
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says relative paths in XDG_* are invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "jitgrad" / f"numba-v{FORMAT_VERSION}"


def load_module(source: str, prefix: str) -> types.ModuleType:
    """Import generated ``source`` as a module, via a file in ``cache_dir()`` when possible.

    The module is named ``jitgrad_generated.<prefix>_<sha256(source)[:20]>`` and memoised per
    process, so loading the same source again is a dict lookup. A file whose content does not
    match its name is never executed: it is rewritten. If the cache directory cannot be used, a
    ``RuntimeWarning`` is emitted once per process and the module is built in memory (its Numba
    functions then compile in every process).
    """
    if not prefix.isidentifier():
        raise ValueError(f"load_module: prefix must be a Python identifier, got {prefix!r}")
    data = source.encode("utf-8")
    name = module_name(source, prefix)
    module = _modules.get(name)
    if module is not None:
        return module
    with _lock:
        module = _modules.get(name)  # another thread may have loaded it meanwhile
        if module is None:
            module = _load_uncached(name, source, data)
            _modules[name] = module
    return module


def module_name(source: str, prefix: str) -> str:
    """The name ``load_module`` gives ``source``'s module (and its file): the prefix and a hash
    of the source."""
    return f"{prefix}_{hashlib.sha256(source.encode('utf-8')).hexdigest()[:_DIGEST_CHARS]}"


def exists(source: str, prefix: str) -> bool:
    """Whether ``source``'s module is loaded or its file is in the cache directory (so its
    compiled code most likely is too)."""
    name = module_name(source, prefix)
    return name in _modules or (cache_dir() / f"{name}.py").exists()


def clear_cache() -> None:
    """Remove jitgrad-generated files from ``cache_dir()`` and forget loaded modules.

    Only files named like generated modules are removed (with Numba's compiled code for them
    and leftover temporary files); anything else in the directory is left alone.
    """
    with _lock:
        for name in list(_modules):
            sys.modules.pop(f"{PACKAGE}.{name}", None)
        _modules.clear()
        directory = cache_dir()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return  # nothing to clear (missing or unreadable directory)
        for entry in entries:
            if _SOURCE_RE.fullmatch(entry.name) or _TEMP_RE.fullmatch(entry.name):
                _remove(entry.path)
        # Numba's cache files for a module "<name>" are __pycache__/<name>.<qualname>-<line>...
        try:
            compiled = list(os.scandir(directory / "__pycache__"))
        except OSError:
            return
        for entry in compiled:
            stem = entry.name.split(".", 1)[0]
            if _SOURCE_RE.fullmatch(stem + ".py"):
                _remove(entry.path)


# ---------------------------------------------------------------------------------------------


def _load_uncached(name: str, source: str, data: bytes) -> types.ModuleType:
    try:
        path = _ensure_file(name, data)
    except OSError as exc:
        _warn_no_cache(exc)
        return _load_in_memory(name, source)
    try:
        return _load_from_file(name, source, path)
    except RuntimeError as exc:
        # Raised by Numba at decoration time when it finds nowhere to write its cache.
        if "cannot cache function" not in str(exc):
            raise
        _warn_no_cache(exc)
        return _load_in_memory(name, source)


def _ensure_file(name: str, data: bytes) -> Path:
    """Path of a file holding exactly ``data``, writing it if missing or wrong (OSError if not)."""
    directory = cache_dir()
    _make_dirs(directory)
    path = directory / f"{name}.py"
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return path
    except FileNotFoundError:
        pass
    except OSError:
        _remove_compiled(directory, name)  # unreadable: replace it like a corrupted one
    else:
        # Content does not match the name: corrupted (e.g. a torn write) or tampered with.
        # Numba's compiled code next to it may come from that content, so drop it too; its
        # index is keyed on the file's stamp, which a same-size rewrite may not change.
        _remove_compiled(directory, name)
    _write_atomic(directory, path, data)
    return path


def _make_dirs(directory: Path) -> None:
    """Create ``directory`` and missing parents with mode 0o700; leave existing ones alone."""
    missing = []
    d = directory
    while not d.is_dir():
        missing.append(d)
        if d.parent == d:
            break
        d = d.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            if not d.is_dir():
                raise
            continue  # created concurrently by another process: not ours to chmod
        # The umask may have cleared owner bits; it can never add group/other ones.
        os.chmod(d, 0o700)


def _write_atomic(directory: Path, path: Path, data: bytes) -> None:
    # A temp file in the same directory then os.replace: readers see the old file or the whole
    # new one. No fsync: a torn file after a crash fails the content check and is rewritten.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o600)  # mkstemp asks for 0o600, but the umask may clear owner bits
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


class _VerifiedSourceLoader(importlib.abc.SourceLoader):
    """Executes the source already checked against the file, never a cached .pyc.

    A stock SourceFileLoader would trust ``__pycache__/*.pyc`` whenever the file's mtime (whole
    seconds) and size match, which a rewritten tampered file can do; compiling the verified
    text ourselves rules that out. Without ``path_stats`` no bytecode is written either.
    """

    def __init__(self, path: str, data: bytes) -> None:
        self._path = path
        self._data = data

    def get_filename(self, fullname: str) -> str:
        return self._path

    def get_data(self, path: str) -> bytes:
        if path != self._path:
            raise OSError(f"{path!r} is not {self._path!r}")
        return self._data


def _load_from_file(name: str, source: str, path: Path) -> types.ModuleType:
    modname = f"{PACKAGE}.{name}"
    loader = _VerifiedSourceLoader(str(path), source.encode("utf-8"))
    spec = importlib.util.spec_from_file_location(modname, path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module._JG_CACHE = True  # read by the generated decorators: @njit(cache=_JG_CACHE)
    return _register_and_run(modname, name, module, lambda: loader.exec_module(module))


def _load_in_memory(name: str, source: str) -> types.ModuleType:
    modname = f"{PACKAGE}.{name}"
    module = types.ModuleType(modname)
    module._JG_CACHE = False  # no file: Numba cannot cache it
    code = compile(source, f"<jitgrad {name}>", "exec", dont_inherit=True)
    return _register_and_run(modname, name, module, lambda: exec(code, module.__dict__))


def _register_and_run(
    modname: str, name: str, module: types.ModuleType, run: Callable[[], object]
) -> types.ModuleType:
    # Registered before running, like a normal import, so code that looks a function's module
    # up by __module__ (pickle, Numba) finds it.
    package = sys.modules.get(PACKAGE)
    if package is None:
        package = types.ModuleType(PACKAGE, "Modules generated by jitgrad's numba-cpu backend.")
        package.__path__ = []  # a package, so "jitgrad_generated.<name>" is a valid name
        sys.modules[PACKAGE] = package
    sys.modules[modname] = module
    try:
        run()
    except BaseException:
        sys.modules.pop(modname, None)
        raise
    setattr(package, name, module)
    return module


def _warn_no_cache(exc: BaseException) -> None:
    global _warned
    if _warned:
        return
    _warned = True
    warnings.warn(
        f"jitgrad cannot use its compile cache directory {str(cache_dir())!r} ({exc}). "
        "Compiled code is kept in memory only and will not persist across processes, so every "
        f"new process compiles again. To fix this, set {CACHE_DIR_ENV} to a writable directory.",
        RuntimeWarning,
        stacklevel=4,
    )


def _remove_compiled(directory: Path, name: str) -> None:
    try:
        entries = list(os.scandir(directory / "__pycache__"))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(name + "."):
            _remove(entry.path)


def _remove(path: str | os.PathLike) -> None:
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass  # already gone, or not ours to remove: clearing is best effort
