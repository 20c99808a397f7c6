"""Compiled loops behind primitives' NumPy definitions, where NumPy's own is slow.

``window_first_max`` is max pooling's window scan (fused max_pool2d): an exact selection, as
``np.argmax`` over gathered windows makes it, without the gather.

``np.add.at`` adds one element at a time through a generic indexed loop (about 10 ns an
element); the demo CNN's backward spent 1.5 ms a step in it (the gradients of its im2col and
pooling gathers). ``scatter_add_flat`` is the same additions in the same order (element by
element, in index order, each rounded to the buffer's dtype; no fast-math), so results are
bit for bit ``np.add.at``'s, in a tenth of the time.

Each loop is compiled by Numba once per machine and dtype (``cache=True``), about a third of a
second each, which a fresh install's first eager steps waited for in the training thread. So
eager code asks ``ready(loop, dtype)`` before calling one: True when the loop is compiled in
this process or Numba's cache holds it (the call loads it); otherwise the compile worker
(``jitgrad.compile_worker``) is asked to compile it, and the caller takes its NumPy path, which
computes the same results bit for bit, until it has. With ``JITGRAD_COMPILE_WAIT=1`` (as for
``jitgrad.compile``) the first call compiles it in place instead. The loops of other modules
(``optim.fused``) register the same way (``warmed_by``).
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Callable

import numpy as np
import scipy.special as sps
from numba import njit

from .. import dtypes
from ..backends.vecmath import erf32_numpy, verf
from ..locks import new_lock

# -- when eager code may call a loop ---------------------------------------------------------------
_WARM: dict = {}  # "module:name" -> (the loop, a function compiling it for a dtype)
_state: dict = {}  # (the loop, dtype) -> _READY, _BUILDING or _NUMPY
_READY, _BUILDING, _NUMPY = "ready", "building", "numpy"
_state_lock = new_lock()


def warmed_by(warm: Callable) -> Callable:
    """Register the decorated loop, with ``warm(dtype)``, which compiles it for a dtype (by
    calling it on tiny arrays), for ``ready``."""

    def register(loop):
        _WARM[f"{loop.py_func.__module__}:{loop.py_func.__name__}"] = (loop, warm)
        return loop

    return register


def ready(loop, dtype) -> bool:
    """Whether eager code may call ``loop`` for arrays of ``dtype`` now without compiling it
    (see the module's docstring); if not, its build is under way in the compile worker."""
    dtype = np.dtype(dtype)
    if dtypes.is_half_np(dtype):  # (Numba's CPU code has no 16-bit floats: NumPy's path)
        return False
    state = _state.get((loop, dtype))
    if state is not None:
        return state is _READY
    with _state_lock:
        if (loop, dtype) not in _state:
            _state[(loop, dtype)] = _check(loop, dtype)
        return _state[(loop, dtype)] is _READY


def wait(timeout: float | None = None) -> bool:
    """Block until every loop asked for so far is compiled (or its build failed); True when
    none is still building, False if ``timeout`` seconds passed first. (For timings of eager
    code: its first calls may take the NumPy paths.)"""
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    while any(state is _BUILDING for state in list(_state.values())):
        if deadline is not None and time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _check(loop, dtype) -> str:
    """The state of a loop not asked about before: ready, or its build handed to the worker."""
    from .. import compile_worker
    from ..compile import WAIT_ENV

    if os.environ.get(WAIT_ENV, "0").strip().lower() in ("1", "true", "yes"):
        return _READY
    if _compiled_for(loop, dtype) or _cached_for(loop, dtype):
        return _READY
    name = f"{loop.py_func.__module__}:{loop.py_func.__name__}"

    def done(error, compiled):
        if error is not None:
            warnings.warn(
                f"jitgrad: compiling the eager loop {name} for {dtype} failed, so eager code "
                f"keeps its NumPy path (same results, slower): {error}",
                RuntimeWarning,
                stacklevel=2,
            )
        with _state_lock:
            _state[(loop, dtype)] = _NUMPY if error is not None else _READY

    try:
        job = {"loop": name, "dtype": dtype.str}
        compile_worker.service().submit(__name__, [job], done)
    except compile_worker.BuildError:
        return _READY  # (no worker: the call compiles it)
    return _BUILDING


def _compiled_for(loop, dtype) -> bool:
    """Whether ``loop`` is compiled in this process for a first argument of ``dtype``."""
    return any(getattr(sig[0], "dtype", None) == _numba_dtype(dtype) for sig in loop.overloads)


def _cached_for(loop, dtype) -> bool:
    """Whether Numba's disk cache holds ``loop`` for a first argument of ``dtype`` (its index,
    read without compiling anything; True where it cannot be read: the call will tell)."""
    try:
        index = loop._cache._cache_file._load_index()
        want = _numba_dtype(dtype)
        return any(getattr(key[0][0], "dtype", None) == want for key in index)
    except Exception:  # noqa: BLE001  (another Numba's cache layout)
        return True


def _numba_dtype(dtype):
    from numba.np.numpy_support import from_dtype

    return from_dtype(dtype)


def run_jobs(jobs: list) -> int:
    """The compile worker's side: compile each job's loop for its dtype into Numba's cache;
    how many no cache had."""
    compiled = 0
    for job in jobs:
        module, name = job["loop"].split(":")
        importlib.import_module(module)  # (registers its loops)
        loop, warm = _WARM[job["loop"]]
        misses = sum(loop.stats.cache_misses.values())
        warm(np.dtype(job["dtype"]))
        compiled += int(sum(loop.stats.cache_misses.values()) > misses)
    return compiled


def _zeros(dtype):
    return np.zeros(1, dtype)


_INDEX = np.zeros(1, np.int64)


@warmed_by(lambda t: scatter_add_flat(_zeros(t), _INDEX, _zeros(t), 1, 1, 1))
@njit(cache=True, nogil=True)
def scatter_add_flat(out, index, src, pre, n, post) -> int:
    """``out.reshape(pre, n, post)[:, index] += src.reshape(pre, index.size, post)`` as
    ``np.add.at`` does it: element by element, in the order of src's flat positions (negative
    indices count from the end). Returns the first index out of range, if any, having
    changed nothing; else ``n``."""
    m = index.size
    for j in range(m):
        t = index[j]
        if t < -n or t >= n:
            return t
    for i in range(pre):
        for j in range(m):
            t = index[j]
            if t < 0:
                t += n
            o = (i * n + t) * post
            s = (i * m + j) * post
            for q in range(post):
                out[o + q] += src[s + q]
    return n


@warmed_by(lambda t: scatter_add_skipping(_zeros(t), _INDEX, _zeros(t), 1, 1, -1))
@njit(cache=True, nogil=True)
def scatter_add_skipping(out, index, src, pre, n, skip) -> None:
    """``scatter_add_flat`` with ``post`` 1 for an index known to be in range except for the
    entries equal to ``skip``, which add nowhere (a convolution's padding reads a zero appended
    to its input, whose gradient nothing reads; its thousands of additions into one place
    waited on each other: 291 -> 96 us for the demo CNN's second layer)."""
    m = index.size
    for i in range(pre):
        for j in range(m):
            t = index[j]
            if t != skip:
                out[i * n + t] += src[i * m + j]


def _warm_window(t):
    one = _zeros(t)
    window_first_max(one, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, one[0], one, _INDEX.copy())


@warmed_by(_warm_window)
@njit(cache=True, nogil=True)
def window_first_max(x, planes, h, w, kh, kw, sh, sw, dh, dw, oh, ow, top, left, lowest, out, at):
    """Max pooling of ``planes`` flat (h, w) planes: for each window, the element
    ``np.argmax`` picks over its taps in (kh, kw) order, padding reading ``lowest`` (the first
    maximum, or the first NaN), into ``out``, and its flat position into ``at``. A window whose
    maximum is padding reports its first tap inside (as max_pool2d's composite does)."""
    size = h * w
    for p in range(planes):
        base = p * size
        for oy in range(oh):
            for ox in range(ow):
                acc = lowest
                best = -1
                first = -1
                have = False
                for i in range(kh):
                    y = oy * sh - top + i * dh
                    for j in range(kw):
                        xx = ox * sw - left + j * dw
                        q = -1
                        v = lowest
                        if 0 <= y < h and 0 <= xx < w:
                            q = y * w + xx
                            if first < 0:
                                first = q
                            v = x[base + q]
                        if not have:
                            acc, best, have = v, q, True
                        elif acc == acc and (v > acc or v != v):
                            acc, best = v, q
                if best < 0:
                    best = first
                k = (p * oh + oy) * ow + ox
                at[k] = base + best
                out[k] = x[base + best]


@warmed_by(lambda t: windows_first_max(_zeros(t), 1, 1, _INDEX, _INDEX, _zeros(t), _INDEX.copy()))
@njit(cache=True, nogil=True)
def windows_first_max(x, planes, size, starts, offsets, out, at):
    """``window_first_max`` for windows inside their planes (no padding): window ``l`` of plane
    ``p`` reads ``x[p * size + starts[l] + offsets[t]]`` for its taps ``t``. One flat loop over
    the taps with the choice made without branches (runtime-sized nested loops and an
    unpredictable branch per tap cost 5x as much: 320 against 65 us for the demo CNN's first
    pooling)."""
    n = starts.size
    k = offsets.size
    for p in range(planes):
        base = p * size
        for i in range(n):
            q0 = base + starts[i]
            best = q0 + offsets[0]
            acc = x[best]
            for t in range(1, k):
                q = q0 + offsets[t]
                v = x[q]
                # x wins if greater or NaN, unless the running maximum is NaN already
                wins = not (v <= acc) and acc == acc
                acc = v if wins else acc
                best = q if wins else best
            at[p * n + i] = best
            out[p * n + i] = acc


def _warm_erf(t):
    if t == np.float32:
        erf_f32(np.zeros(1, np.float32), np.zeros(1, np.float32))


@warmed_by(_warm_erf)
@njit(cache=True, nogil=True)
def erf_f32(x, out) -> None:
    """erf of a flat float32 array (``vecmath.verf``, vectorized): SciPy's float32 erf takes
    17 ns an element, a GELU's 131K elements 2.2 ms. ``vecmath.erf32_numpy`` is its twin."""
    for i in range(x.size):
        out[i] = verf(x[i])


_scipy_erf = dtypes.via_float32(sps.erf)


def erf(x: np.ndarray) -> np.ndarray:
    """erf for eager code: float32 through ``erf_f32`` (or its NumPy twin, bit for bit the
    same, while that compiles), other dtypes SciPy's (16-bit floats computed in float32)."""
    if x.dtype == np.float32:
        if ready(erf_f32, x.dtype):
            flat = np.ascontiguousarray(x).reshape(-1)
            out = np.empty_like(flat)
            erf_f32(flat, out)
            return out.reshape(x.shape)
        return erf32_numpy(x)
    return _scipy_erf(x)


def compile_all() -> None:
    """Compile (or load from Numba's cache) the loops for the dtypes eager code uses."""
    for _, warm in [_WARM[k] for k in list(_WARM) if k.startswith(__name__ + ":")]:
        for dtype in (np.float32, np.float64, np.int64, np.int32):
            warm(np.dtype(dtype))
