"""How compiled kernels are called: one C signature for every kernel, and the program that
calls them in order.

Every kernel is a C function ``kernel(B, A, C, part, parts)`` (``KERNEL``):

- ``B``: the executable's buffer table, two words per slot: a buffer's address and its
  length in elements. A kernel sees its buffers as typed pointers (``ptr_f32(B, slot)``, ...).
- ``A``: the kernel's integer arguments: the slots of its buffers, then its sizes.
- ``C``: its float constants (learning rates, eps, ...).
- ``part``, ``parts``: which piece of its outermost loop this call runs (``part_range``); a
  serial kernel is called with (0, 1) and ignores them.

A kernel's source therefore names no buffer, size or constant of a particular tape: two kernels
that compute the same thing on different tensors (every parameter's optimizer update, the same
layer twice, a new batch size, a second model) are one source, compiled once and cached on
disk by a hash of that source.

A program lists the calls of one executable: for each, the kernel's address, its ``A`` and
``C`` and whether it runs on threads (layout in ``_run_program``). ``run_program`` (compiled
once per machine, cached by Numba) calls them in order; a threaded call goes through
``launch``, which calls the kernel once per part on Numba's threads. Kernels are called
through function pointers, so a step's driver links none of their code: it only stores the
addresses of the buffers that change from call to call (arguments, and the blocks that
outputs and new gradients are views into) and calls the program (``driver_source``).
"""

from __future__ import annotations

import functools
import operator

from llvmlite import ir
from numba import cfunc, njit, prange, types  # noqa: F401  (njit: named in driver sources)
from numba.core.imputils import lower_builtin
from numba.core.typing.templates import AbstractTemplate, infer_global, signature
from numba.extending import intrinsic, models, register_model

_I64 = ir.IntType(64)
_P64 = ir.PointerType(_I64)
_PF64 = ir.PointerType(ir.DoubleType())
_KERNEL_IR = ir.FunctionType(ir.VoidType(), [_P64, _P64, _PF64, _I64, _I64])

# the kernels' C signature (see the module docstring)
KERNEL = types.void(
    types.CPointer(types.int64),
    types.CPointer(types.int64),
    types.CPointer(types.float64),
    types.int64,
    types.int64,
)
# words per call in a program, after its header
CALL_WORDS = 4


class Buffer(types.Type):
    """A typed pointer to a flat buffer, as kernels see their buffers (``ptr_f32(B, slot)``).
    Indexing it (``b0[i]``, ``b0[i] = x``) is one in-bounds address computation and a load or
    store: an array's indexing is several times the code for Numba and LLVM to compile, and
    Numba's own pointers index with a plain (not in-bounds) address computation, which kept
    LLVM from vectorizing gathers (an im2col over 147K elements: 197 us against 50)."""

    def __init__(self, dtype):
        self.dtype = dtype
        super().__init__(name=f"Buffer({dtype})")


register_model(Buffer)(models.PointerModel)  # a pointer to the dtype's data (bool: bytes)


@infer_global(operator.getitem)
class _BufferGetItem(AbstractTemplate):
    def generic(self, args, kws):
        buf, idx = args
        if isinstance(buf, Buffer) and isinstance(idx, types.Integer):
            return signature(buf.dtype, buf, types.intp)


@infer_global(operator.setitem)
class _BufferSetItem(AbstractTemplate):
    def generic(self, args, kws):
        buf, idx, _ = args
        if isinstance(buf, Buffer) and isinstance(idx, types.Integer):
            return signature(types.none, buf, types.intp, buf.dtype)


@lower_builtin(operator.getitem, Buffer, types.Integer)
def _buffer_getitem(context, builder, sig, args):
    ptr, idx = args
    return context.unpack_value(builder, sig.return_type, builder.gep(ptr, [idx], inbounds=True))


@lower_builtin(operator.setitem, Buffer, types.Integer, types.Any)
def _buffer_setitem(context, builder, sig, args):
    ptr, idx, value = args
    context.pack_value(builder, sig.args[2], value, builder.gep(ptr, [idx], inbounds=True))
    return context.get_dummy_value()


def _pointer(dtype):
    buf = Buffer(dtype)

    @intrinsic
    def pointer(typingctx, table, slot):
        """The buffer in slot ``slot`` of the buffer table ``table``."""
        if not isinstance(slot, types.Integer):
            return None

        def codegen(context, builder, signature, args):
            table, slot = args
            slot = context.cast(builder, slot, signature.args[1], types.int64)
            addr = builder.load(builder.gep(table, [builder.mul(slot, _I64(2))]))
            return builder.inttoptr(addr, context.get_value_type(buf))

        return buf(table, slot), codegen

    return pointer


ptr_f32 = _pointer(types.float32)
ptr_f64 = _pointer(types.float64)
ptr_i64 = _pointer(types.int64)
ptr_i32 = _pointer(types.int32)
ptr_u64 = _pointer(types.uint64)
ptr_i16 = _pointer(types.int16)
ptr_i8 = _pointer(types.int8)
ptr_u8 = _pointer(types.uint8)
ptr_bool = _pointer(types.boolean)
# the pointer generated code uses for a buffer of each dtype
POINTERS = {
    "float32": "ptr_f32",
    "float64": "ptr_f64",
    "int64": "ptr_i64",
    "int32": "ptr_i32",
    "uint64": "ptr_u64",
    "int16": "ptr_i16",
    "int8": "ptr_i8",
    "uint8": "ptr_u8",
    "bool": "ptr_bool",
}


@intrinsic
def advance(typingctx, ptr, n):
    """``ptr + n`` (elements), for a pointer argument such as ``A``."""
    if not isinstance(ptr, types.CPointer) or not isinstance(n, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        ptr, n = args
        return builder.gep(ptr, [context.cast(builder, n, signature.args[1], types.int64)])

    return ptr(ptr, n), codegen


@njit(inline="always", cache=True)
def part_range(n, part, parts):
    """The rows ``[lo, hi)`` of ``range(n)`` that part ``part`` of ``parts`` runs."""
    return n * part // parts, n * (part + 1) // parts


def _as(builder, value, ty):
    return builder.inttoptr(value, ty) if value.type != ty else value


@intrinsic
def call_kernel(typingctx, fn, table, args, consts, part, parts):
    """Call the kernel at address ``fn`` (all arguments are integers: addresses, and the
    part)."""
    if not all(isinstance(t, types.Integer) for t in (fn, table, args, consts, part, parts)):
        return None

    def codegen(context, builder, signature, llargs):
        fn, table, args, consts, part, parts = llargs
        target = builder.inttoptr(fn, ir.PointerType(_KERNEL_IR))
        builder.call(
            target,
            [
                _as(builder, table, _P64),
                _as(builder, args, _P64),
                _as(builder, consts, _PF64),
                part,
                parts,
            ],
        )
        return context.get_dummy_value()

    return types.void(fn, table, args, consts, part, parts), codegen


_LAUNCH_IR = ir.FunctionType(ir.VoidType(), [_I64] * 5)


@intrinsic
def call_launch(typingctx, launcher, fn, table, args, consts, parts):
    """Call ``launch`` (at address ``launcher``) for one threaded kernel call."""
    if not all(isinstance(t, types.Integer) for t in (launcher, fn, table, args, consts, parts)):
        return None

    def codegen(context, builder, signature, llargs):
        launcher, *rest = llargs
        builder.call(builder.inttoptr(launcher, ir.PointerType(_LAUNCH_IR)), rest)
        return context.get_dummy_value()

    return types.void(launcher, fn, table, args, consts, parts), codegen


def _launch(fn, table, args, consts, parts):
    # one part per thread of Numba's pool (parts is the pool's size)
    for part in prange(parts):
        call_kernel(fn, table, args, consts, part, parts)


def _run_program(table, prog):
    # prog: run_program's address, launch's, parts, the number of calls, the number of new
    # arrays; (slot, its block's slot, byte offset) per new array; (kernel address, A, C,
    # threaded) per call
    launcher = prog[1]
    parts = prog[2]
    # the new arrays of this call: views into its blocks (a block's address plus an offset)
    for j in range(prog[4]):
        at = 5 + 3 * j
        table[2 * prog[at]] = table[2 * prog[at + 1]] + prog[at + 2]
    calls = 5 + 3 * prog[4]
    address = table_address(table)
    for j in range(prog[3]):
        at = calls + CALL_WORDS * j
        if prog[at + 3]:
            call_launch(launcher, prog[at], address, prog[at + 1], prog[at + 2], parts)
        else:
            call_kernel(prog[at], address, prog[at + 1], prog[at + 2], 0, 1)


@intrinsic
def cycle_counter(typingctx):
    """The processor's cycle counter (``llvm.readcyclecounter``): for ``profile`` only."""

    def codegen(context, builder, signature, llargs):
        fn = builder.module.declare_intrinsic(
            "llvm.readcyclecounter", fnty=ir.FunctionType(_I64, [])
        )
        return builder.call(fn, [])

    return types.int64(), codegen


def _run_program_timed(table, prog):
    # _run_program, adding each call's cycles to an array whose address is the word after
    # the calls (see Executable.profile)
    launcher = prog[1]
    parts = prog[2]
    for j in range(prog[4]):
        at = 5 + 3 * j
        table[2 * prog[at]] = table[2 * prog[at + 1]] + prog[at + 2]
    calls = 5 + 3 * prog[4]
    address = table_address(table)
    times = prog[calls + CALL_WORDS * prog[3]]
    for j in range(prog[3]):
        at = calls + CALL_WORDS * j
        t0 = cycle_counter()
        if prog[at + 3]:
            call_launch(launcher, prog[at], address, prog[at + 1], prog[at + 2], parts)
        else:
            call_kernel(prog[at], address, prog[at + 1], prog[at + 2], 0, 1)
        add_cycles(times, j, cycle_counter() - t0)


@intrinsic
def add_cycles(typingctx, times, j, n):
    """``times[j] += n`` for the int64 array at address ``times``."""

    def codegen(context, builder, signature, llargs):
        times, j, n = llargs
        ptr = builder.gep(builder.inttoptr(times, _P64), [j])
        builder.store(builder.add(builder.load(ptr), n), ptr)
        return context.get_dummy_value()

    return types.void(types.int64, types.int64, types.int64), codegen


@functools.cache
def run_program_timed_address() -> int:
    """``_run_program_timed``, compiled (once per machine)."""
    return cfunc(types.void(_WORDS, _WORDS), cache=True)(_run_program_timed).address


@functools.cache
def cycles_address() -> int:
    """A C function returning the cycle counter (to relate cycles to seconds)."""
    return cfunc(types.int64(), cache=True)(_cycles).address


def _cycles():
    return cycle_counter()


@intrinsic
def table_address(typingctx, table):
    """A pointer's address, as an integer."""
    if not isinstance(table, types.CPointer):
        return None

    def codegen(context, builder, signature, llargs):
        return builder.ptrtoint(llargs[0], _I64)

    return types.int64(table), codegen


_WORDS = types.CPointer(types.int64)


@functools.cache
def run_program_address() -> int:
    """``run_program(table, prog)``, compiled (once per machine: Numba caches it)."""
    return cfunc(types.void(_WORDS, _WORDS), cache=True)(_run_program).address


@functools.cache
def launch_address() -> int:
    """``launch(fn, table, args, consts, parts)``: the kernel at ``fn`` once per part, on
    Numba's threads (compiled once per machine, like ``run_program``)."""
    sig = types.void(types.int64, types.int64, types.int64, types.int64, types.int64)
    return cfunc(sig, cache=True, parallel=True)(_launch).address


@intrinsic
def run(typingctx, table, prog, arrays):
    """Store the address and length of each of ``arrays`` (a tuple of 1-D arrays) in slots
    0, 1, ... of the buffer table, then call ``run_program`` (its address is the program's
    first word)."""
    if not isinstance(arrays, types.BaseTuple) or not all(
        isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" for a in arrays
    ):
        return None

    def codegen(context, builder, signature, llargs):
        table, prog, arrays = llargs
        table_ty, prog_ty, arrays_ty = signature.args
        tab = context.make_array(table_ty)(context, builder, table)
        words = tab.data
        for i, ty in enumerate(arrays_ty):
            ary = context.make_array(ty)(context, builder, builder.extract_value(arrays, i))
            addr = builder.ptrtoint(ary.data, _I64)
            builder.store(addr, builder.gep(words, [_I64(2 * i)]))
            builder.store(ary.nitems, builder.gep(words, [_I64(2 * i + 1)]))
        pro = context.make_array(prog_ty)(context, builder, prog)
        entry = builder.load(pro.data)
        fnty = ir.FunctionType(ir.VoidType(), [_P64, _P64])
        target = builder.inttoptr(entry, ir.PointerType(fnty))
        builder.call(target, [_as(builder, words, _P64), _as(builder, pro.data, _P64)])
        return context.get_dummy_value()

    return types.void(table, prog, arrays), codegen


def driver_source(n: int, header: str) -> str:
    """A driver for executables with ``n`` per-call buffers: one source per ``n``, compiled
    once per signature (the buffers' dtypes) and cached by Numba."""
    names = [f"a{i}" for i in range(n)]
    packed = f"({', '.join(names)},)" if names else "()"
    return (
        header
        + "\n\n@njit(cache=_JG_CACHE, nogil=True, pipeline_class=LeanPipeline)\n"
        + f"def driver({', '.join([*names, 'B', 'P'])}):\n"
        + f"    run(B, P, {packed})\n"
    )


__all__ = [
    "CALL_WORDS",
    "KERNEL",
    "POINTERS",
    "call_kernel",
    "part_range",
    "run",
    *POINTERS.values(),
]
