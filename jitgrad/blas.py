"""NumPy's BLAS thread count: one thread while the compile worker builds in the background.

Eager code multiplies with NumPy's own OpenBLAS (not SciPy's, which compiled code calls, see
``backends.numba_cpu.runtime``). OpenBLAS's threads spin on their cores for a while after each
call, so on a machine whose cores the training fills, a compile worker at the lowest priority
got none: the demo CNN's background build took minutes. While builds are in flight
(``compile_worker``), eager products run on one thread instead (the CNN's eager step took 2.8 ms
that way against 3.1 with two), and the worker compiles on the core that frees.

Once compiled code runs loops on Numba's threads (``backends.numba_cpu``), NumPy's BLAS stays
on one thread for good (``keep_one_thread``): OpenBLAS's threads, spinning after an eager
product, took the cores those loops wait for. The demo CNN, whose eager evaluation runs between
compiled steps, took 2.3 ms a step instead of 1.0 (and a step followed by a 400 x 64 x 400
product 12 ms instead of 0.9).

Where NumPy's BLAS is not an OpenBLAS this module finds (a NumPy wheel bundles one), nothing
changes.
"""

from __future__ import annotations

import ctypes
import glob
import os

from .locks import new_lock

_lock = new_lock()
_holders = 0
_kept = False  # keep_one_thread was called: releases leave BLAS on one thread
_saved = None


def _numpy_openblas():
    """(set, get) of the thread count of the OpenBLAS a NumPy wheel bundles, or None."""
    import numpy

    libs = os.path.join(os.path.dirname(os.path.dirname(numpy.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for stem, suffix in (("scipy_openblas", "64_"), ("scipy_openblas", ""), ("openblas", "")):
            try:
                setter = getattr(lib, f"{stem}_set_num_threads{suffix}")
                getter = getattr(lib, f"{stem}_get_num_threads{suffix}")
            except AttributeError:
                continue
            setter.argtypes, setter.restype = (ctypes.c_int,), None
            getter.argtypes, getter.restype = (), ctypes.c_int
            return setter, getter
    return None


_fns = None
_found = False


def _functions():
    global _fns, _found
    if not _found:
        _fns, _found = _numpy_openblas(), True
    return _fns


def hold_one_thread() -> None:
    """NumPy's BLAS on one thread until a matching ``release`` (counted, thread-safe)."""
    global _holders, _saved
    with _lock:
        fns = _functions()
        if fns is None:
            return
        if _holders == 0 and not _kept:
            _saved = fns[1]()
            fns[0](1)
        _holders += 1


def keep_one_thread() -> None:
    """NumPy's BLAS on one thread from now on (while this process runs threaded compiled
    code)."""
    global _kept
    with _lock:
        fns = _functions()
        if fns is None or _kept:
            return
        if _holders == 0:
            fns[0](1)
        _kept = True


def release() -> None:
    """The last release gives NumPy's BLAS back its thread count."""
    global _holders
    with _lock:
        fns = _functions()
        if fns is None or _holders == 0:
            return
        _holders -= 1
        if _holders == 0 and not _kept:
            fns[0](_saved)


def holding() -> bool:
    """Whether a hold is on (a background build is in flight)."""
    return _holders > 0


def threads() -> int | None:
    """NumPy's BLAS thread count now (None where it cannot be read)."""
    fns = _functions()
    return None if fns is None else fns[1]()
