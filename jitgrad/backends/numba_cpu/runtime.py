"""What generated drivers import: the counter-based random draw, vectorizable math, BLAS
products written as LLVM IR (``gemm``, ``gemm_swapped``) and the compiler pipeline."""

from __future__ import annotations

import llvmlite.binding as _llvm
import numpy as np
from llvmlite import ir as _ir
from numba import njit, types
from numba.core import cgutils as _cgutils
from numba.extending import get_cython_function_address
from numba.extending import intrinsic as _intrinsic

from ..vecmath import *  # noqa: F401,F403  (vexp, vlog, vtanh, ... used by kernels)
from .pipeline import LeanPipeline  # noqa: F401  (named in the drivers' decorators)

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
for _name in ("sgemm", "dgemm", "scopy", "dcopy"):
    _llvm.add_symbol(
        f"jitgrad_{_name}", get_cython_function_address("scipy.linalg.cython_blas", _name)
    )


def _gemm_typer(arrays, ints, flags):
    floats = (types.float32, types.float64)
    a = arrays[0]
    if not all(isinstance(x, types.Array) and x.ndim == 1 and x.layout == "C" for x in arrays):
        return None
    if a.dtype not in floats or any(x.dtype != a.dtype for x in arrays if x is not arrays[3]):
        return None
    if arrays[3].dtype != types.int32 or not all(isinstance(x, types.Integer) for x in ints):
        return None
    if not all(isinstance(x, types.Boolean) for x in flags):
        return None
    return types.void(*arrays[:4], *ints, *flags, *arrays[4:])


def _gemm_args(context, builder, signature, llargs):
    """The call's values: data addresses of (a, b, out, args[, tmp]), the sizes (intp) and
    the two flags."""
    intp = context.get_value_type(types.intp)
    tys = signature.args
    arrays = [(t, v) for t, v in zip(tys, llargs) if isinstance(t, types.Array)]
    ptrs = [
        builder.ptrtoint(context.make_array(t)(context, builder, v).data, intp) for t, v in arrays
    ]
    sizes = [context.cast(builder, v, t, types.intp) for t, v in zip(tys[4:8], llargs[4:8])]
    flags = [context.cast(builder, v, t, types.boolean) for t, v in zip(tys[8:10], llargs[8:10])]
    return ptrs, sizes, flags


def _emit_gemm(context, builder, size, ptrs, sizes, flags):
    """IR for ``out[q] = A[q] @ B[q]`` (see ``gemm``): the argument words, the batch loop and
    the BLAS call."""
    intp = context.get_value_type(types.intp)
    i32 = _ir.IntType(32)
    pa, pb, pc, p = ptrs
    batch_, m_, n_, k_ = sizes
    ta_, tb_ = flags
    words = builder.inttoptr(p, i32.as_pointer())

    def word(i, value):
        builder.store(value, builder.gep(words, [i32(i)]))

    # Row-major out is column-major out^T = B^T A^T, so BLAS gets B first.
    # words: [n, m, k, ldb, lda, ldc, op B, op A, alpha (2 words), beta (2 words)]
    n32, m32, k32 = (builder.trunc(x, i32) for x in (n_, m_, k_))
    for i, value in enumerate((n32, m32, k32)):
        word(i, value)
    word(3, builder.select(tb_, k32, n32))  # leading dimension of B's buffer
    word(4, builder.select(ta_, m32, k32))  # leading dimension of A's buffer
    word(5, n32)
    word(6, builder.select(tb_, i32(84), i32(78)))  # 'T' / 'N' (little-endian first byte)
    word(7, builder.select(ta_, i32(84), i32(78)))
    word(8, i32(0x3F800000 if size == 4 else 0))  # alpha 1.0: float32's word, float64's low
    word(9, i32(0 if size == 4 else 0x3FF00000))  # and high words
    word(10, i32(0))  # beta 0.0
    word(11, i32(0))
    fnty = _ir.FunctionType(_ir.VoidType(), [intp] * 13)
    name = "jitgrad_sgemm" if size == 4 else "jitgrad_dgemm"
    fn = _cgutils.get_or_insert_function(builder.module, fnty, name)
    at = [builder.add(p, intp(off)) for off in range(0, 48, 4)]
    step_a = builder.mul(builder.mul(m_, k_), intp(size))
    step_b = builder.mul(builder.mul(k_, n_), intp(size))
    step_c = builder.mul(builder.mul(m_, n_), intp(size))
    with _cgutils.for_range(builder, batch_) as loop:
        q = loop.index
        qa = builder.add(pa, builder.mul(q, step_a))
        qb = builder.add(pb, builder.mul(q, step_b))
        qc = builder.add(pc, builder.mul(q, step_c))
        # transa transb m n k alpha A lda B ldb beta C ldc (B and A swapped, see above)
        builder.call(
            fn, [at[6], at[7], at[0], at[1], at[2], at[8], qb, at[3], qa, at[4], at[10], qc, at[5]]
        )


@_intrinsic
def gemm(typingctx, a, b, out, args, batch, m, n, k, ta, tb):
    """``out[q] = A[q] @ B[q]`` for row-major flat buffers: A is (m, k), or stored as (k, m) when
    ``ta``; B is (k, n), or stored as (n, k) when ``tb``; out is (m, n). BLAS takes every
    argument by pointer: ``args`` (12 int32 words, the caller's scratch) holds them.

    Written as LLVM IR at each call site (a few stores, a loop, the BLAS call) rather than as
    a jitted function: nothing extra for a cold start to compile, and nothing allocated."""
    sig = _gemm_typer((a, b, out, args), (batch, m, n, k), (ta, tb))
    if sig is None:
        return None
    size = a.dtype.bitwidth // 8

    def codegen(context, builder, signature, llargs):
        _emit_gemm(context, builder, size, *_gemm_args(context, builder, signature, llargs))
        return context.get_dummy_value()

    return sig, codegen


@_intrinsic
def gemm_swapped(typingctx, a, b, out, args, batch, m, n, k, ta, tb, tmp):
    """``gemm``, except that A @ B^T with fewer rows than columns and a long inner dimension
    (``m < n`` and ``k >= 256``) is computed as (B @ A^T)^T, through ``tmp`` (``batch * m * n``
    elements). OpenBLAS is up to 2x slower on the first form (a convolution's weight gradient,
    32x1024 @ (144x1024)^T: 200 against 126 us); the transpose costs m*n against m*n*k.

    Generated code calls it for every product of that form (B stored transposed, A not), and
    the sizes decide here, at run time: the source stays the same for every batch size, so a
    new one compiles nothing. IR, like ``gemm``."""
    sig = _gemm_typer((a, b, out, args, tmp), (batch, m, n, k), (ta, tb))
    if sig is None:
        return None
    size = a.dtype.bitwidth // 8

    def codegen(context, builder, signature, llargs):
        (pa, pb, pc, p, pt), sizes, (ta_, tb_) = _gemm_args(context, builder, signature, llargs)
        batch_, m_, n_, k_ = sizes
        intp = context.get_value_type(types.intp)
        swap = builder.and_(tb_, builder.not_(ta_))
        swap = builder.and_(swap, builder.icmp_signed("<", m_, n_))
        swap = builder.and_(swap, builder.icmp_signed(">=", k_, intp(256)))
        with builder.if_else(swap) as (swapped, direct):
            with swapped:
                no, yes = _ir.IntType(1)(0), _ir.IntType(1)(1)
                _emit_gemm(
                    context, builder, size, (pb, pa, pt, p), (batch_, n_, m_, k_), (no, yes)
                )  # out^T per batch, in tmp
                # out[q, i, :] = tmp[q, :, i]: one strided BLAS copy per row (the argument
                # words are free again once the product is done)
                i32 = _ir.IntType(32)
                words = builder.inttoptr(p, i32.as_pointer())
                for w, value in enumerate((n_, m_, intp(1))):
                    builder.store(builder.trunc(value, i32), builder.gep(words, [i32(w)]))
                fnty = _ir.FunctionType(_ir.VoidType(), [intp] * 5)
                name = "jitgrad_scopy" if size == 4 else "jitgrad_dcopy"
                copy = _cgutils.get_or_insert_function(builder.module, fnty, name)
                width = intp(size)
                plane = builder.mul(builder.mul(m_, n_), width)
                # copy(n, x, incx, y, incy): n, incx (m) and incy (1) are words 0-2
                incx, incy = builder.add(p, intp(4)), builder.add(p, intp(8))
                with _cgutils.for_range(builder, batch_) as qq:
                    at_t = builder.add(pt, builder.mul(qq.index, plane))
                    at_c = builder.add(pc, builder.mul(qq.index, plane))
                    with _cgutils.for_range(builder, m_) as ii:
                        src = builder.add(at_t, builder.mul(ii.index, width))
                        dst = builder.add(at_c, builder.mul(builder.mul(ii.index, n_), width))
                        builder.call(copy, [p, src, incx, dst, incy])
            with direct:
                _emit_gemm(context, builder, size, (pa, pb, pc, p), sizes, (ta_, tb_))
        return context.get_dummy_value()

    return sig, codegen
