"""Helpers that generated kernels import: the counter-based random draw, vectorizable math."""

from __future__ import annotations

import llvmlite.binding as _llvm
import numpy as np
from numba import njit, types
from numba.extending import get_cython_function_address, register_jitable

from ..vecmath import *  # noqa: F401,F403  (vexp, vlog, vtanh, ... used by kernels)

# the cast generated kernels put on buffer offsets (see codegen.at)
u64 = types.uint64

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_COUNTER_MUL = np.uint64(0xD1B54A32D192ED03)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_S40, _S11 = np.uint64(40), np.uint64(11)
_ONE = np.uint64(1)


@njit(inline="always", cache=True)
def _bits(s0, s1, i):
    # the same splitmix64 mix of (seed, counter, index) as the rand primitive's impl
    z = np.uint64(i) + ((s0 + _ONE) * _GOLDEN + s1 * _COUNTER_MUL)
    z = z ^ (z >> _S30)
    z = z * _MIX1
    z = z ^ (z >> _S27)
    z = z * _MIX2
    return z ^ (z >> _S31)


@njit(inline="always", cache=True)
def rand_f32(s0, s1, i):
    return np.float32(_bits(s0, s1, i) >> _S40) * np.float32(1.0 / 16777216.0)


@njit(inline="always", cache=True)
def rand_f64(s0, s1, i):
    return np.float64(_bits(s0, s1, i) >> _S11) * (1.0 / 9007199254740992.0)


# -- matmul through BLAS ---------------------------------------------------------------------------
# SciPy's BLAS (the one np.dot uses inside Numba), called through its function pointers: far less
# for Numba to compile than np.dot's overloads, and operands stored transposed cost nothing.
# The functions are registered with LLVM under names of our own and called as external symbols
# (pointer arguments as integers): unlike ctypes pointers, that keeps callers disk-cacheable.
for _name in ("sgemm", "dgemm"):
    _llvm.add_symbol(
        f"jitgrad_{_name}", get_cython_function_address("scipy.linalg.cython_blas", _name)
    )
_GEMM_SIG = types.void(*([types.intp] * 13))
_sgemm = types.ExternalFunction("jitgrad_sgemm", _GEMM_SIG)
_dgemm = types.ExternalFunction("jitgrad_dgemm", _GEMM_SIG)


# gemm and gemm_swapped are called only from jitted code: no CPython wrapper to compile
# (calling them from Python is not supported).
@njit(cache=True, nogil=True, no_cpython_wrapper=True)
def gemm(a, b, out, args, batch, m, n, k, ta, tb):
    """``out[q] = A[q] @ B[q]`` for row-major flat buffers: A is (m, k), or stored as (k, m) when
    ``ta``; B is (k, n), or stored as (n, k) when ``tb``; out is (m, n). BLAS takes every
    argument by pointer: ``args`` (12 int32 words, the caller's scratch) holds them. Nothing here
    allocates, which keeps this function quick to compile (a cold start compiles it)."""
    # Row-major out is column-major out^T = B^T A^T, so BLAS gets B first.
    # args: [n, m, k, ldb, lda, ldc, op B, op A, alpha (2 words), beta (2 words)]
    args[0] = n
    args[1] = m
    args[2] = k
    args[3] = k if tb else n  # leading dimension of B's buffer, read column-major
    args[4] = m if ta else k  # leading dimension of A's buffer
    args[5] = n
    args[6] = 84 if tb else 78  # 'T' / 'N' (the word's first byte: little-endian)
    args[7] = 84 if ta else 78
    size = a.itemsize
    args[8] = 0x3F800000 if size == 4 else 0  # alpha 1.0: float32's word, float64's low word
    args[9] = 0 if size == 4 else 0x3FF00000  # float64's high word
    args[10] = args[11] = 0  # beta 0.0
    pa, pb, pc, p = a.ctypes.data, b.ctypes.data, out.ctypes.data, args.ctypes.data
    for q in range(batch):
        qa = pa + q * m * k * size
        qb = pb + q * k * n * size
        qc = pc + q * m * n * size
        if size == 4:
            _sgemm(
                p + 24, p + 28, p, p + 4, p + 8, p + 32, qb, p + 12, qa, p + 16, p + 40, qc, p + 20
            )
        else:
            _dgemm(
                p + 24, p + 28, p, p + 4, p + 8, p + 32, qb, p + 12, qa, p + 16, p + 40, qc, p + 20
            )


@register_jitable
def gemm_swaps(m, n, k, ta, tb):
    """Whether ``gemm_swapped`` transposes a product of these sizes (also asked at trace time)."""
    return tb and not ta and m < n and k >= 256


@njit(cache=True, nogil=True, no_cpython_wrapper=True)
def gemm_swapped(a, b, out, args, batch, m, n, k, ta, tb):
    """``gemm``, except that A @ B^T with fewer rows than columns and a long inner dimension is
    computed as (B @ A^T)^T. OpenBLAS is up to 2x slower on the first form (a convolution's
    weight gradient, 32x1024 @ (144x1024)^T: 200 against 126 us); the transpose costs m*n
    against m*n*k. Generated code calls it only where the traced shapes have that form."""
    if not gemm_swaps(m, n, k, ta, tb):
        gemm(a, b, out, args, batch, m, n, k, ta, tb)
        return
    dst = np.empty(batch * m * n, out.dtype)  # out^T, (n, m) per batch
    gemm(b, a, dst, args, batch, n, m, k, np.bool_(False), np.bool_(True))
    for q in range(batch):
        for i in range(m):
            for j in range(n):
                out[q * m * n + i * n + j] = dst[q * m * n + j * m + i]
