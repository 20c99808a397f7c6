"""What generated drivers import: the counter-based random draw, vectorizable math, BLAS
products written as LLVM IR (``gemm``, ``gemm_swapped`` and their ``_part`` forms for threads),
BLAS's thread count (``blas_enter``/``blas_leave``) and the compiler pipeline."""

from __future__ import annotations

import ctypes
import functools
import os

import llvmlite.binding as _llvm
import numpy as np
from llvmlite import ir as _ir
from numba import cfunc, njit, types
from numba.core import cgutils as _cgutils
from numba.extending import get_cython_function_address
from numba.extending import intrinsic as _intrinsic

from ...ops.scalar_math import SCALAR_FUNCTIONS as _SCALAR_FUNCTIONS
from ..vecmath import *  # noqa: F401,F403  (vexp, vlog, vtanh, ... used by kernels)
from .abi import *  # noqa: F401,F403  (the kernels' signature, buffer views, part_range)
from .abi import KERNEL, Buffer
from .linalg_rt import *  # noqa: F401,F403  (the checks linear algebra kernels make)
from .pipeline import LeanPipeline  # noqa: F401  (named in the drivers' decorators)

# The special functions scalar templates call by name (erfinv, polygamma), compiled: generated
# modules import them with the rest of this module.
for _name, _fn in _SCALAR_FUNCTIONS.items():
    globals()[_name] = njit(cache=True)(_fn)

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


# OpenBLAS's thread count, when the BLAS is an OpenBLAS that exports its setter and getter: a
# driver with a product runs BLAS single-threaded (``blas_enter``), splitting large products
# across its own threads, since two thread pools spinning on the same cores slow each other down
# several times (and waking BLAS's threads costs small products more than they gain).
def _find_blas_threads():
    import scipy.linalg.cython_blas as cython_blas

    try:
        lib = ctypes.CDLL(cython_blas.__file__)  # its symbols and its dependencies' (the BLAS)
    except OSError:
        return None
    for prefix in ("scipy_openblas", "openblas"):
        try:
            found = (
                getattr(lib, f"{prefix}_set_num_threads"),
                getattr(lib, f"{prefix}_get_num_threads"),
            )
        except AttributeError:
            continue
        return tuple(ctypes.cast(f, ctypes.c_void_p).value for f in found)
    return None


_threads_fns = _find_blas_threads()
_I32, _I64 = _ir.IntType(32), _ir.IntType(64)
# whether generated code may call ``blas_enter``/``blas_leave`` (else BLAS keeps its own threads,
# and drivers with products run their loops serially)
BLAS_THREADS = _threads_fns is not None
# Shared by every driver in the process: a spin lock, how many drivers are between
# ``blas_enter`` and ``blas_leave``, and BLAS's thread count from before the first of them.
_BLAS_STATE = (ctypes.c_int64 * 3)()
# the same setter and getter, callable from Python (None where BLAS_THREADS is false)
set_blas_threads = get_blas_threads = None
if BLAS_THREADS:
    _llvm.add_symbol("jitgrad_blas_set_threads", _threads_fns[0])
    _llvm.add_symbol("jitgrad_blas_get_threads", _threads_fns[1])
    _llvm.add_symbol("jitgrad_blas_state", ctypes.addressof(_BLAS_STATE))
    set_blas_threads = ctypes.CFUNCTYPE(None, ctypes.c_int)(_threads_fns[0])
    get_blas_threads = ctypes.CFUNCTYPE(ctypes.c_int)(_threads_fns[1])


def _blas_state_after_fork() -> None:
    """A child forked while drivers ran in other threads has none of those threads: free the
    lock, and give BLAS back the count from before them (no driver of the child's own will)."""
    _, users, saved = _BLAS_STATE
    if users and BLAS_THREADS:
        set_blas_threads(int(saved))
    _BLAS_STATE[0] = _BLAS_STATE[1] = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_blas_state_after_fork)


def _blas_state_word(builder, i: int):
    module = builder.module
    state = module.globals.get("jitgrad_blas_state")
    if state is None:  # defined by the process (add_symbol above), not by the driver
        state = _ir.GlobalVariable(module, _ir.ArrayType(_I64, 3), "jitgrad_blas_state")
    return builder.gep(state, [_I32(0), _I32(i)])


def _blas_get_threads(builder):
    fnty = _ir.FunctionType(_I32, [])
    return builder.call(
        _cgutils.get_or_insert_function(builder.module, fnty, "jitgrad_blas_get_threads"), []
    )


def _blas_set_threads(builder, n) -> None:
    fnty = _ir.FunctionType(_ir.VoidType(), [_I32])
    fn = _cgutils.get_or_insert_function(builder.module, fnty, "jitgrad_blas_set_threads")
    builder.call(fn, [n])


def _blas_locked(builder, body) -> None:
    """IR running ``body(builder, users)`` (``users``: the count's address) under the spin lock.
    The lock is held only around BLAS's thread-count calls."""
    lock = _blas_state_word(builder, 0)
    spin = builder.append_basic_block("blas_lock_spin")
    held = builder.append_basic_block("blas_lock_held")
    builder.branch(spin)
    builder.position_at_end(spin)
    zero, one = _I64(0), _I64(1)
    swapped = builder.cmpxchg(lock, zero, one, "acquire", "monotonic")
    builder.cbranch(builder.extract_value(swapped, 1), held, spin)
    builder.position_at_end(held)
    body(builder, _blas_state_word(builder, 1))
    builder.store_atomic(zero, lock, "release", align=8)


@_intrinsic
def blas_enter(typingctx):
    """Before a driver's first product: BLAS on one thread. The first of concurrent drivers
    (Python threads) keeps the count it replaces; see ``blas_leave``."""

    def codegen(context, builder, signature, llargs):
        def body(builder, users):
            n = builder.load(users)
            with builder.if_then(builder.icmp_signed("==", n, _I64(0))):
                before = _blas_get_threads(builder)
                builder.store(builder.sext(before, _I64), _blas_state_word(builder, 2))
                _blas_set_threads(builder, _I32(1))
            builder.store(builder.add(n, _I64(1)), users)

        _blas_locked(builder, body)
        return context.get_dummy_value()

    return types.none(), codegen


@_intrinsic
def blas_leave(typingctx):
    """After a driver's last product: the last of concurrent drivers restores BLAS's count."""

    def codegen(context, builder, signature, llargs):
        def body(builder, users):
            n = builder.sub(builder.load(users), _I64(1))
            builder.store(n, users)
            with builder.if_then(builder.icmp_signed("==", n, _I64(0))):
                before = builder.trunc(builder.load(_blas_state_word(builder, 2)), _I32)
                _blas_set_threads(builder, before)

        _blas_locked(builder, body)
        return context.get_dummy_value()

    return types.none(), codegen


def _blas_enter_kernel(B, A, C, part, parts):
    blas_enter()


def _blas_leave_kernel(B, A, C, part, parts):
    blas_leave()


@functools.cache
def blas_kernel_addresses() -> tuple:
    """``blas_enter`` and ``blas_leave`` as kernels (abi.KERNEL) for the first and last calls
    of an executable's program (compiled once per machine: Numba caches them)."""
    return tuple(
        cfunc(KERNEL, cache=True)(fn).address for fn in (_blas_enter_kernel, _blas_leave_kernel)
    )


def _buffer(x) -> bool:
    """A flat buffer argument: a kernel's buffer (abi.Buffer) or a 1-D C array."""
    return isinstance(x, Buffer) or (isinstance(x, types.Array) and x.ndim == 1 and x.layout == "C")


def _gemm_typer(arrays, ints, flags):
    floats = (types.float32, types.float64)
    a = arrays[0]
    if not all(_buffer(x) for x in arrays):
        return None
    if a.dtype not in floats or any(x.dtype != a.dtype for x in arrays if x is not arrays[3]):
        return None
    if arrays[3].dtype != types.int32 or not all(isinstance(x, types.Integer) for x in ints):
        return None
    if not all(isinstance(x, types.Boolean) for x in flags):
        return None
    return types.void(*arrays[:4], *ints[:4], *flags, *arrays[4:], *ints[4:])


def _gemm_args(context, builder, signature, llargs):
    """The call's values: data addresses of (a, b, out, args[, tmp]), the sizes (intp, then the
    part and the number of parts when given) and the two flags."""
    intp = context.get_value_type(types.intp)
    tys = signature.args
    ptrs = []
    for t, v in zip(tys, llargs):
        if isinstance(t, types.Array):
            ptrs.append(builder.ptrtoint(context.make_array(t)(context, builder, v).data, intp))
        elif isinstance(t, Buffer):
            ptrs.append(builder.ptrtoint(v, intp))
    ints = [(t, v) for t, v in zip(tys, llargs) if isinstance(t, types.Integer)]
    sizes = [context.cast(builder, v, t, types.intp) for t, v in ints]
    flags = [context.cast(builder, v, t, types.boolean) for t, v in zip(tys[8:10], llargs[8:10])]
    return ptrs, sizes, flags


# int32 words of BLAS arguments per call in flight (the driver's G holds one set per thread)
BLAS_WORDS = 12


class _Blas:
    """Emits BLAS calls whose by-pointer arguments live in BLAS_WORDS int32 words at
    ``words``."""

    def __init__(self, context, builder, size, words):
        self.builder, self.size, self.words = builder, size, words
        self.intp = context.get_value_type(types.intp)

    def _store(self, values):
        b = self.builder
        ptr = b.inttoptr(self.words, _I32.as_pointer())
        for i, value in enumerate(values):
            if value.type != _I32:
                value = b.trunc(value, _I32)
            b.store(value, b.gep(ptr, [_I32(i)]))

    def gemm(self, ta, tb, m, n, k, pa, lda, pb, ldb, pc, ldc):
        """Row-major ``C (m, n) = op(A) @ op(B)``, op a transpose when its flag is set.
        Row-major C is column-major C^T = op(B)^T op(A)^T, so BLAS gets B first."""
        b, i32, intp = self.builder, _I32, self.intp
        t, nt = i32(84), i32(78)  # 'T' / 'N' (little-endian first byte)
        one = (0x3F800000, 0) if self.size == 4 else (0, 0x3FF00000)  # alpha 1.0; beta is 0.0
        ops = (b.select(tb, t, nt), b.select(ta, t, nt))
        self._store((n, m, k, ldb, lda, ldc, *ops, i32(one[0]), i32(one[1]), i32(0), i32(0)))
        fnty = _ir.FunctionType(_ir.VoidType(), [intp] * 13)
        name = "jitgrad_sgemm" if self.size == 4 else "jitgrad_dgemm"
        fn = _cgutils.get_or_insert_function(b.module, fnty, name)
        at = [b.add(self.words, intp(4 * i)) for i in range(BLAS_WORDS)]
        # transa transb m n k alpha A lda B ldb beta C ldc, in BLAS's (column-major) terms
        b.call(
            fn, [at[6], at[7], at[0], at[1], at[2], at[8], pb, at[3], pa, at[4], at[10], pc, at[5]]
        )

    def copy_columns(self, src, rows, cols, dst, ld_dst):
        """``dst[i, :cols] = src[:, i]`` for i < rows, src being (cols, rows) row-major: one
        strided BLAS copy per row."""
        b, intp = self.builder, self.intp
        self._store((cols, rows, intp(1)))  # copy(n, x, incx, y, incy): n, incx, incy
        fnty = _ir.FunctionType(_ir.VoidType(), [intp] * 5)
        name = "jitgrad_scopy" if self.size == 4 else "jitgrad_dcopy"
        copy = _cgutils.get_or_insert_function(b.module, fnty, name)
        width = intp(self.size)
        incx, incy = b.add(self.words, intp(4)), b.add(self.words, intp(8))
        with _cgutils.for_range(b, rows) as row:
            x = b.add(src, b.mul(row.index, width))
            y = b.add(dst, b.mul(b.mul(row.index, ld_dst), width))
            b.call(copy, [self.words, x, incx, y, incy])


# multiply-adds: a part of a split product this small is two BLAS calls, on halves of its rows
# (or columns). OpenBLAS computes small products with kernels that skip packing, but takes
# them for A @ B^T only when the output is small: that of a 256x512 A and a 10x512 B took
# 33 us in halves on two threads, 15 us in quarters (64 rows each); the other small and skinny
# products measured took the same either way.
SMALL_PART_MACS = 1 << 21


def _emit_gemm(context, builder, size, ptrs, sizes, flags, tmp=None):
    """IR for ``out[q] = A[q] @ B[q]`` (see ``gemm``), or for one part of it when ``sizes``
    ends with (part, parts): its share of the batch when the batch has at least a part each,
    else of the rows or of the columns, whichever are more (in two calls when the part is
    small, see SMALL_PART_MACS). With ``tmp`` (``gemm_swapped``), a part of the form A @ B^T
    with m < n and k >= 256 is computed as (B @ A^T)^T."""
    b = builder
    intp = context.get_value_type(types.intp)
    zero, one = intp(0), intp(1)
    pa, pb, pc, p = ptrs
    batch, m, n, k = sizes[:4]
    if len(sizes) == 4:
        _emit_block(context, b, size, ptrs, sizes, flags, tmp, (zero, batch, zero, m, zero, n))
        return
    part, parts = sizes[4:]
    p = b.add(p, b.mul(part, intp(4 * BLAS_WORDS)))  # each part its own argument words

    def share(mine, lo, hi, i, count):
        """Piece ``i`` of ``count`` of [lo, hi) when ``mine``, else [lo, hi)."""
        span = b.sub(hi, lo)
        start = b.add(lo, b.sdiv(b.mul(i, span), count))
        end = b.add(lo, b.sdiv(b.mul(b.add(i, one), span), count))
        return b.select(mine, start, lo), b.select(mine, end, hi)

    by_batch = b.icmp_signed(">=", batch, parts)
    by_rows = b.and_(b.not_(by_batch), b.icmp_signed(">=", m, n))
    by_cols = b.and_(b.not_(by_batch), b.not_(by_rows))
    q0, q1 = share(by_batch, zero, batch, part, parts)
    i0, i1 = share(by_rows, zero, m, part, parts)
    j0, j1 = share(by_cols, zero, n, part, parts)
    macs = b.mul(b.mul(b.sub(i1, i0), b.sub(j1, j0)), k)
    small = b.and_(b.not_(by_batch), b.icmp_signed("<=", macs, intp(SMALL_PART_MACS)))
    pieces = b.select(small, intp(2), one)
    with _cgutils.for_range(b, pieces) as piece:
        bounds = (q0, q1, *share(by_rows, i0, i1, piece.index, pieces))
        bounds += share(by_cols, j0, j1, piece.index, pieces)
        _emit_block(context, b, size, (pa, pb, pc, p), sizes, flags, tmp, bounds)


def _emit_block(context, builder, size, ptrs, sizes, flags, tmp, bounds):
    """IR for the block ``out[q0:q1, i0:i1, j0:j1]`` of ``_emit_gemm``'s product, BLAS's
    arguments in the words at ``ptrs[3]``."""
    b = builder
    intp = context.get_value_type(types.intp)
    width = intp(size)
    pa, pb, pc, p = ptrs
    m, n, k = sizes[1:4]
    ta, tb = flags
    q0, q1, i0, i1, j0, j1 = bounds
    mh, nh = b.sub(i1, i0), b.sub(j1, j0)
    blas = _Blas(context, b, size, p)
    lda, ldb = b.select(ta, m, k), b.select(tb, k, n)
    # where this part's rows of A, columns of B and block of out start
    oa = b.mul(b.select(ta, i0, b.mul(i0, k)), width)
    ob = b.mul(b.select(tb, b.mul(j0, k), j0), width)
    oc = b.mul(b.add(b.mul(i0, n), j0), width)
    step_a, step_b = b.mul(b.mul(m, k), width), b.mul(b.mul(k, n), width)
    step_c = b.mul(b.mul(m, n), width)
    with _cgutils.for_range(b, b.sub(q1, q0)) as loop:
        q = b.add(q0, loop.index)
        qa = b.add(b.add(pa, b.mul(q, step_a)), oa)
        qb = b.add(b.add(pb, b.mul(q, step_b)), ob)
        qc = b.add(b.add(pc, b.mul(q, step_c)), oc)
        if tmp is None:
            blas.gemm(ta, tb, mh, nh, k, qa, lda, qb, ldb, qc, n)
        else:
            swap = b.and_(tb, b.not_(ta))
            swap = b.and_(swap, b.icmp_signed("<", mh, nh))
            swap = b.and_(swap, b.icmp_signed(">=", k, intp(256)))
            with b.if_else(swap) as (swapped, direct):
                with swapped:
                    # this part's out^T, (nh, mh), in its own region of tmp
                    qt = b.add(tmp, b.mul(q, step_c))
                    qt = b.add(qt, b.mul(b.add(b.mul(i0, n), b.mul(j0, m)), width))
                    no, yes = _ir.IntType(1)(0), _ir.IntType(1)(1)
                    blas.gemm(no, yes, nh, mh, k, qb, k, qa, k, qt, mh)
                    blas.copy_columns(qt, mh, nh, qc, n)
                with direct:
                    blas.gemm(ta, tb, mh, nh, k, qa, lda, qb, ldb, qc, n)


def _gemm_define(arrays, ints, flags):
    """(signature, codegen) of a product intrinsic: ``arrays`` are (a, b, out, args[, tmp]),
    ``ints`` (batch, m, n, k[, part, parts])."""
    sig = _gemm_typer(arrays, ints, flags)
    if sig is None:
        return None
    size = arrays[0].dtype.bitwidth // 8
    swapped = len(arrays) == 5

    def codegen(context, builder, signature, llargs):
        ptrs, sizes, flags_ = _gemm_args(context, builder, signature, llargs)
        _emit_gemm(context, builder, size, ptrs[:4], sizes, flags_, ptrs[4] if swapped else None)
        return context.get_dummy_value()

    return sig, codegen


@_intrinsic
def gemm(typingctx, a, b, out, args, batch, m, n, k, ta, tb):
    """``out[q] = A[q] @ B[q]`` for row-major flat buffers: A is (m, k), or stored as (k, m) when
    ``ta``; B is (k, n), or stored as (n, k) when ``tb``; out is (m, n). BLAS takes every
    argument by pointer: ``args`` (BLAS_WORDS int32 words, the caller's scratch) holds them.

    Written as LLVM IR at each call site (a few stores, a loop, the BLAS call) rather than as
    a jitted function: nothing extra for a cold start to compile, and nothing allocated."""
    return _gemm_define((a, b, out, args), (batch, m, n, k), (ta, tb))


@_intrinsic
def gemm_swapped(typingctx, a, b, out, args, batch, m, n, k, ta, tb, tmp):
    """``gemm``, except that A @ B^T with fewer rows than columns and a long inner dimension
    (``m < n`` and ``k >= 256``) is computed as (B @ A^T)^T, through ``tmp`` (``batch * m * n``
    elements). OpenBLAS is up to 2x slower on the first form (a convolution's weight gradient,
    32x1024 @ (144x1024)^T: 200 against 126 us); the transpose costs m*n against m*n*k.

    Generated code calls it for every product of that form (B stored transposed, A not), and
    the sizes decide here, at run time: the source stays the same for every batch size, so a
    new one compiles nothing. IR, like ``gemm``."""
    return _gemm_define((a, b, out, args, tmp), (batch, m, n, k), (ta, tb))


@_intrinsic
def gemm_part(typingctx, a, b, out, args, batch, m, n, k, ta, tb, part, parts):
    """Part ``part`` of ``parts`` of ``gemm``'s product, for the threads of a parallel loop
    (each with single-threaded BLAS, see ``blas_enter``): its share of the batch, or else of
    the rows or the columns of out. ``args`` holds BLAS_WORDS words per part."""
    return _gemm_define((a, b, out, args), (batch, m, n, k, part, parts), (ta, tb))


@_intrinsic
def gemm_swapped_part(typingctx, a, b, out, args, batch, m, n, k, ta, tb, tmp, part, parts):
    """``gemm_swapped`` split like ``gemm_part``: each part picks its form by its own sizes and
    uses its own region of ``tmp``."""
    return _gemm_define((a, b, out, args, tmp), (batch, m, n, k, part, parts), (ta, tb))
