"""What linear algebra kernels call besides NumPy's ``np.linalg`` in Numba: the checks that
find a failure before LAPACK would raise (an exception cannot leave a kernel, so a kernel
records the failure in its status buffer and the executable raises it after the call)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def lu_zero_pivot(a):
    """The 1-based index of the first zero pivot of ``a``'s LU factorization with partial
    pivoting (as LAPACK's getrf reports it), or 0 when there is none."""
    n = a.shape[0]
    m = a.copy()
    for k in range(n):
        p = k
        best = abs(m[k, k])
        for i in range(k + 1, n):
            if abs(m[i, k]) > best:
                best = abs(m[i, k])
                p = i
        if best == 0 or best != best:
            return k + 1
        if p != k:
            for j in range(n):
                m[k, j], m[p, j] = m[p, j], m[k, j]
        for i in range(k + 1, n):
            f = m[i, k] / m[k, k]
            for j in range(k + 1, n):
                m[i, j] -= f * m[k, j]
    return 0


@njit(cache=True)
def cholesky_fail_order(a):
    """The order of the first leading minor of ``a``'s lower triangle that is not positive
    definite (as LAPACK's potrf reports it), or 0 when the factorization exists."""
    n = a.shape[0]
    lo = np.zeros_like(a)
    for j in range(n):
        d = a[j, j]
        for k in range(j):
            d -= lo[j, k] * lo[j, k]
        if not d > 0:
            return j + 1
        lo[j, j] = np.sqrt(d)
        for i in range(j + 1, n):
            s = a[i, j]
            for k in range(j):
                s -= lo[i, k] * lo[j, k]
            lo[i, j] = s / lo[j, j]
    return 0


@njit(cache=True)
def symmetric_from(a, lower):
    """The symmetric matrix of ``a``'s lower (or upper) triangle."""
    n = a.shape[0]
    out = np.empty_like(a)
    for i in range(n):
        for j in range(n):
            hi, lo = (i, j) if i >= j else (j, i)
            out[i, j] = a[hi, lo] if lower else a[lo, hi]
    return out


@njit(cache=True)
def all_finite(a):
    for x in a.ravel():
        if not np.isfinite(x):
            return False
    return True
