"""Compiled loops behind primitives' NumPy definitions, where NumPy's own is slow.

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


def compile_all() -> None:
    """Compile (or load from Numba's cache) the loops for the dtypes eager code uses."""
    index = np.zeros(1, np.int64)
    for dtype in (np.float32, np.float64, np.int64, np.int32):
        scatter_add_flat(np.zeros(1, dtype), index, np.zeros(1, dtype), 1, 1, 1)
