"""Every float product of a step as one of six kernels (abi.KERNEL), compiled once per machine.

A product's kernel depends on nothing but its dtype and how it runs (in one call, split into
parts across threads, or beside a second independent product), never on the tape: its
operands' slots, sizes and transpose flags are its arguments (``A``, laid out by
``words``). So, like ``run_program``, they are compiled once per machine (Numba caches them)
rather than as part of a model's kernels. Each calls ``runtime.gemm_swapped``, which takes the
faster form of ``A @ B^T`` by the sizes at run time and calls BLAS directly otherwise.
"""

from __future__ import annotations

import functools

from numba import cfunc, njit

from .abi import KERNEL, advance, ptr_f32, ptr_f64, ptr_i32
from .runtime import gemm_swapped, gemm_swapped_part

# A: out, a, b, BLAS's argument words, tmp (slots); batch, m, n, k, ta, tb; for a pair, the
# second product's eleven words follow
WORDS = 11
SIDE_BY_SIDE_MIN_DIM = 32  # see _share


def words(slots: tuple, sizes: tuple) -> list:
    """A product's integer arguments: ``slots`` (out, a, b, words, tmp) and ``sizes`` (batch,
    m, n, k, ta, tb)."""
    return [*slots, *sizes]


# (the operands of the product at A: typed pointers to its buffers)
@njit(inline="always")
def _f32(B, A):
    return ptr_f32(B, A[1]), ptr_f32(B, A[2]), ptr_f32(B, A[0]), ptr_i32(B, A[3]), ptr_f32(B, A[4])


@njit(inline="always")
def _f64(B, A):
    return ptr_f64(B, A[1]), ptr_f64(B, A[2]), ptr_f64(B, A[0]), ptr_i32(B, A[3]), ptr_f64(B, A[4])


@njit(inline="always")
def _split32(B, A, part, parts):
    a, b, out, w, tmp = _f32(B, A)
    gemm_swapped_part(a, b, out, w, A[5], A[6], A[7], A[8], A[9] != 0, A[10] != 0, tmp, part, parts)


@njit(inline="always")
def _split64(B, A, part, parts):
    a, b, out, w, tmp = _f64(B, A)
    gemm_swapped_part(a, b, out, w, A[5], A[6], A[7], A[8], A[9] != 0, A[10] != 0, tmp, part, parts)


@njit(inline="always")
def _share(A, parts):
    """How two products split the parts: side by side, each on half of them, when both are
    large in every dim and alike in multiply-adds (neither over 5/4 of the other's); else each
    part runs its piece of both. On two threads the two gradients of a 256x512x512 product took
    1.35 ms side by side against 1.49 ms one after the other; those of a 256x512x10 product,
    76 us side by side against 48 us split (a skinny product gains from both cores' memory
    bandwidth). Returns (parts of the first, parts of the second)."""
    low = min(min(A[6], A[7]), min(A[8], A[WORDS + 6]), min(A[WORDS + 7], A[WORDS + 8]))
    macs0 = A[5] * A[6] * A[7] * A[8]
    macs1 = A[WORDS + 5] * A[WORDS + 6] * A[WORDS + 7] * A[WORDS + 8]
    side = low >= SIDE_BY_SIDE_MIN_DIM and 4 * max(macs0, macs1) <= 5 * min(macs0, macs1)
    first = max(parts // 2, 1) if side else parts
    return first, (max(parts - first, 1) if side else parts)


def _product_f32(B, A, C, part, parts):
    a, b, out, w, tmp = _f32(B, A)
    gemm_swapped(a, b, out, w, A[5], A[6], A[7], A[8], A[9] != 0, A[10] != 0, tmp)


def _product_f64(B, A, C, part, parts):
    a, b, out, w, tmp = _f64(B, A)
    gemm_swapped(a, b, out, w, A[5], A[6], A[7], A[8], A[9] != 0, A[10] != 0, tmp)


def _split_f32(B, A, C, part, parts):
    _split32(B, A, part, parts)


def _split_f64(B, A, C, part, parts):
    _split64(B, A, part, parts)


def _pair_f32(B, A, C, part, parts):
    na, nb = _share(A, parts)
    if part < na:
        _split32(B, A, part, na)
    if part >= parts - nb:
        _split32(B, advance(A, WORDS), part - (parts - nb), nb)


def _pair_f64(B, A, C, part, parts):
    na, nb = _share(A, parts)
    if part < na:
        _split64(B, A, part, na)
    if part >= parts - nb:
        _split64(B, advance(A, WORDS), part - (parts - nb), nb)


_FUNCTIONS = {
    ("product", "float32"): _product_f32,
    ("product", "float64"): _product_f64,
    ("split", "float32"): _split_f32,
    ("split", "float64"): _split_f64,
    ("pair", "float32"): _pair_f32,
    ("pair", "float64"): _pair_f64,
}


@functools.cache
def address(form: str, dtype: str) -> int:
    """The compiled kernel of ``form`` ("product", "split" or "pair") for ``dtype``."""
    return cfunc(KERNEL, cache=True)(_FUNCTIONS[form, dtype]).address
