"""Compiled loops behind primitives' NumPy definitions, where NumPy's own is slow.

``window_first_max`` is max pooling's window scan (fused max_pool2d): an exact selection, as
``np.argmax`` over gathered windows makes it, without the gather.

``np.add.at`` adds one element at a time through a generic indexed loop (about 10 ns an
element); the demo CNN's backward spent 1.5 ms a step in it (the gradients of its im2col and
pooling gathers). ``scatter_add_flat`` is the same additions in the same order (element by
element, in index order, each rounded to the buffer's dtype; no fast-math), so results are
bit for bit ``np.add.at``'s, in a tenth of the time. Compiled by Numba once per machine
(``cache=True``), on first use.
"""

from __future__ import annotations

import numpy as np
from numba import njit


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


def compile_all() -> None:
    """Compile (or load from Numba's cache) the loops for the dtypes eager code uses."""
    index = np.zeros(1, np.int64)
    for dtype in (np.float32, np.float64, np.int64, np.int32):
        scatter_add_flat(np.zeros(1, dtype), index, np.zeros(1, dtype), 1, 1, 1)
        scatter_add_skipping(np.zeros(1, dtype), index, np.zeros(1, dtype), 1, 1, -1)
        one = np.zeros(1, dtype)
        window_first_max(one, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, one[0], one, index)
        windows_first_max(one, 1, 1, index, index, one, index.copy())
