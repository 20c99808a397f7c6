"""Large elementwise primitives on every core, eagerly.

NumPy runs an elementwise loop on one thread; PyTorch splits a large one across its intra-op
threads, and so won the 1,000,000-element chain (W2) eagerly. An elementwise primitive computes
each element from the same elements of its inputs by the same loop, whichever part of the
array it is in, so cutting the arrays into contiguous pieces and running the NumPy loop on
each piece in its own thread (NumPy releases the GIL inside its loops) gives the same bits as
one call, in about half the time on two cores. ``tests/test_prims.py`` checks every
elementwise primitive both ways, to the bit.

Only C-contiguous inputs of one shape (or 0-d), with at least ``MIN_ELEMENTS`` elements, are
cut; smaller ones are not worth a thread hand-off (about 15 us). While the compile worker builds
in the background (``jitgrad.blas`` holds BLAS at one thread then), pieces stay on this thread,
leaving the other cores to the worker.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import blas
from ..locks import new_lock

MIN_ELEMENTS = 1 << 18
_ufunc = np.ufunc
_pool = None
_pool_pid = None
_lock = new_lock()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # (not Linux)
        return os.cpu_count() or 1


CORES = _cores()


def _executor():
    global _pool, _pool_pid
    with _lock:
        if _pool is None or _pool_pid != os.getpid():  # (a forked child makes its own)
            _pool = ThreadPoolExecutor(CORES - 1, thread_name_prefix="jitgrad-elementwise")
            _pool_pid = os.getpid()
        return _pool


def elementwise(impl, arrays: list, params: dict):
    """``impl(*arrays, **params)`` computed in pieces on every core, or None when the arrays
    are not worth it (too small, not contiguous, of other shapes, a single core, or a build in
    flight)."""
    if CORES < 2 or blas.holding():
        return None
    shape = None
    for a in arrays:
        if a.ndim == 0:
            continue
        if shape is None:
            shape = a.shape
        elif a.shape != shape:
            return None
        if not a.flags.c_contiguous:
            return None
    if shape is None:
        return None
    n = arrays[0].size if arrays[0].ndim else next(a.size for a in arrays if a.ndim)
    if n < MIN_ELEMENTS:
        return None
    flat = [a.reshape(-1) if a.ndim else a for a in arrays]
    bounds = [n * i // CORES for i in range(CORES + 1)]
    writes_out = getattr(impl, "writes_out", False)  # (an impl taking out=: prims_activation)
    if (type(impl) is _ufunc and not params and impl.nout == 1) or writes_out:
        # a ufunc writes each piece in place: no copies
        if writes_out:
            dtype = next(a.dtype for a in arrays if a.ndim)
        else:
            dtype = impl.resolve_dtypes(tuple(a.dtype for a in arrays) + (None,))[-1]
        out = np.empty(n, dtype)

        def piece(i):
            lo, hi = bounds[i], bounds[i + 1]
            impl(*[a[lo:hi] if a.ndim else a for a in flat], out=out[lo:hi])

        futures = [_executor().submit(piece, i) for i in range(1, CORES)]
        piece(0)
        for f in futures:
            f.result()
        return out.reshape(shape)

    def part(i):
        lo, hi = bounds[i], bounds[i + 1]
        return impl(*[a[lo:hi] if a.ndim else a for a in flat], **params)

    futures = [_executor().submit(part, i) for i in range(1, CORES)]
    first = np.asarray(part(0))
    out = np.empty(n, first.dtype)
    out[: bounds[1]] = first
    for i, f in enumerate(futures, 1):
        out[bounds[i] : bounds[i + 1]] = f.result()
    return out.reshape(shape)
