"""Tape -> Numba source: one kernel body per stored value, index arithmetic for views.

Which values are stored (*materialized*: a flat, C-ordered buffer) and which are *virtual*
(an expression inlined into each kernel that reads it) is the ``Plan``'s decision (plan.py).
Here, elementwise primitives paste their scalar templates, and movement primitives (reshape,
permute, expand, slice, pad, cat) and take become index arithmetic over their input (the rules of
``inline.py``, one per primitive). A kernel
materializes one value: a map (elementwise loop nest, a single flat loop when every load is at
the same flat index, or merged loops when every load is an affine offset), a reduction,
logsumexp, argmax, a matmul (BLAS, see ``runtime.gemm``) or a scatter-add (summed per target
when its index is a constant, see ``prepare.segment_tables``). Buffer offsets are cast to
unsigned (``at``): Numba's wraparound test on signed indices would keep LLVM from vectorizing.

Sizes, slice starts and non-trivial constants are runtime values read from ``dims``/``consts``
arrays, so kernel bodies, and the driver they are pasted into, depend on the tape's structure
only: a new batch size reuses the compiled driver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numba

from ...ir.tape import Var
from ...ops.registry import scalar_expr

if TYPE_CHECKING:
    from .plan import Plan

try:  # vectorizable exp/log/tanh (pip's llvmlite has no SVML)
    from ..vecmath import REPLACEMENTS as _VEC
except ImportError:  # pragma: no cover
    _VEC = {}

# Constants pasted into source as literals; any other value is a runtime input.
_LITERALS = {0.0, 1.0, -1.0, 2.0, 0.5, 3.0}
_NP = {
    "float32": "np.float32",
    "float64": "np.float64",
    "int64": "np.int64",
    "int32": "np.int32",
    "int16": "np.int16",
    "int8": "np.int8",
    "uint8": "np.uint8",
    "uint64": "np.uint64",
    "bool": "np.bool_",
}
# elements: smaller loops run serially. OpenMP's fork/join costs a few microseconds, but each
# threaded loop costs Numba about 0.7 s to compile: at 2^16 the CNN step threads 10 loops (its
# pooling argmax, 64x16x16 outputs of 4 taps: 70-90 us against 130-150), 2^14 would thread 18.
PARALLEL_MIN = 1 << 16
# multiply-adds: a larger product is split across a parallel driver's threads (each calling
# BLAS on one thread, see runtime.blas_enter). Splitting the small MLP's 64x64x128 products
# (2^19) gained nothing, and its driver would need Numba's slower parallel pipeline to compile.
GEMM_SPLIT_MIN = 1 << 20
# the parts a threaded kernel's loop is cut into: one per thread of Numba's pool (the launch
# runs them all at once)
PARTS = numba.config.NUMBA_NUM_THREADS
# NOTE: "reassoc" lets LLVM vectorize reductions (and so whole fused loops); never add "nsz":
# with it LLVM folds (x + C) - C to x in the inlined vecmath code, whose range reduction rounds
# exactly there (exp came out wrong by up to 0.7). tests/test_numba_backend.py checks exp and
# tanh in one fresh driver against the interpreter.
FASTMATH = '{"reassoc", "contract"}'


# Templates whose result already has the operands' dtype in Numba (no cast needed).
_SAME_DTYPE = {"neg", "add", "sub", "mul", "div", "copy", "where"}


# Integers narrower than Numba's machine integer: Numba computes their arithmetic in int64, so a
# result is cast back to wrap around as NumPy's (and PyTorch's) does.
_NARROW = {"int8", "uint8", "int16", "int32"}


def _keeps_dtype(e, text: str) -> bool:
    if e.out.dtype.name in _NARROW:
        return False
    if e.prim.name in _SAME_DTYPE:
        return all(x.dtype is e.out.dtype for x in e.inputs if x.dtype.name != "bool")
    # the vectorized transcendental functions return their argument's type
    return e.prim.name in ("exp", "log", "log1p", "tanh") and "math." not in text


def _cast_text(np_name: str, text: str) -> str:
    """``np_name(text)``, unless ``text`` is already one call of ``np_name`` (a cast's template):
    every extra call is more for Numba to type and lower."""
    if text.startswith(np_name + "(") and text.endswith(")"):
        depth = 0
        for i, ch in enumerate(text[len(np_name) :], len(np_name)):
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth == 0:
                if i == len(text) - 1:
                    return text
                break
    return f"{np_name}({text})"


def at(buf: str, off: str) -> str:
    """``buf[off]``: buffers are typed pointers, indexed with no wraparound or bounds test
    (generated offsets are never negative: gathers wrap theirs explicitly)."""
    return f"{buf}[{off}]"


def numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


@dataclass
class Kernel:
    """One fused loop nest: a body over buffers ``b0, b1, ...``, sizes ``n0, n1, ...`` (from
    ``dims``) and ``consts``, pasted into the driver with the driver's names for them."""

    kind: str
    root: Var
    buffers: list  # Vars it reads and writes, in the order of their names (the output first)
    dims: list  # concrete ints for the dims array
    consts: list  # concrete floats for the consts array
    in_place: Var | None = None  # a captured input buffer this kernel writes into
    covers: list = field(default_factory=list)  # equations computed inside (for reports)
    loads: dict = field(default_factory=dict)  # buffer Var -> offsets it is read at
    flat_index: str | None = None  # the offset a map kernel stores at
    body: list = field(default_factory=list)  # the function body's lines (for inlining)
    parallel: bool = False
    roots: list = field(default_factory=list)  # every value it stores (a group has several)
    member_loads: dict = field(default_factory=dict)  # root -> {buffer Var: offsets}
    dim_keys: list = field(default_factory=list)  # what each entry of ``dims`` is
    uses_blas: bool = False  # reads G, the int32 scratch BLAS reads its arguments from
    scratch: list = field(default_factory=list)  # buffers (Vars) of its own, in the workspace
    # a float product, run by a kernel of products.py: (form, dtype, [(its buffers: out, a, b,
    # BLAS's words, tmp; its sizes: batch, m, n, k, ta, tb) per product])
    product: tuple | None = None
    then: Kernel | None = None  # a kernel to run right after this one (a threaded sum's combine)
    # a linear algebra kernel's status: (its scratch buffer, message(code), batched), checked
    # after each call (see decompositions.raise_failures)
    status: tuple | None = None


class _Body:
    """Lines of one kernel body with per-kernel symbol tables."""

    def __init__(self, gen: KernelGen):
        self.gen = gen
        self.lines: list = []
        self.cse: dict = {}
        self.indent = 1

    def emit(self, line: str) -> None:
        self.lines.append("    " * self.indent + line)

    def temp(self, expr: str, prefix: str = "t") -> str:
        """A local holding ``expr`` (shared when the same expression recurs)."""
        name = self.cse.get(expr)
        if name is None:
            name = self.gen.fresh(prefix)
            self.cse[expr] = name
            self.emit(f"{name} = {expr}")
        return name


class Flat:
    """Index of an element by its flat (C-order) position in the loop's domain."""

    __slots__ = ("i",)

    def __init__(self, i: str):
        self.i = i


class KernelGen:
    """Builds one kernel: argument lists, dims/consts slots, and expressions for values."""

    def __init__(self, plan: Plan, kind: str, root: Var):
        self.plan = plan
        self.kind = kind
        self.root = root
        self.buffers: list = []
        self.uses_blas = False  # whether the body calls gemm (which reads the scratch G)
        self.buf_names: dict = {}
        self.dim_slots: dict = {}
        self.dims: list = []
        self.dim_keys: list = []  # what each dims slot is (shared by kernels of one driver)
        self.consts: list = []
        self.const_slots: dict = {}
        self.prologue: list = []
        # values with one element are the same in every iteration: computed once, before the
        # loops (in-place writes elsewhere in a loop keep LLVM from hoisting such loads itself;
        # Adam's bias corrections cost two pow calls per element without this)
        self.hoisted = _Body(self)
        self.hoisted.lines = self.prologue
        self.hoisted.indent = 0
        self.own: set = set() if root is None else {root}  # values this kernel stores
        self.stored: dict = {}  # value -> (flat index, local) already stored in this iteration
        self.loads_of: dict = {}  # buffer Var -> set of index strings (for in-place checks)
        self.affine: dict = {}  # value -> (stored buffer, offset): see affine.py
        self.covers: list = []
        self.scratch: list = []  # buffers only this kernel uses (see scratch_buf())
        self._counter = 0

    def fresh(self, prefix: str) -> str:
        """A local name unique within the kernel."""
        self._counter += 1
        return f"{prefix}{self._counter}"

    def loop(self, var: str, n: str, body: _Body, parallel: bool = False) -> str:
        """The header of a loop of ``var`` over ``range(n)``; in a threaded kernel, over the
        rows of it that this call's part runs (see abi.part_range: each thread of the launch
        calls the kernel with its own part)."""
        if not parallel:
            return f"for {var} in range({n}):"
        lo, hi = self.fresh("lo"), self.fresh("hi")
        body.emit(f"{lo}, {hi} = part_range({n}, part, parts)")
        return f"for {var} in range({lo}, {hi}):"

    # -- symbols -------------------------------------------------------------------------------
    def buf(self, v: Var) -> str:
        name = self.buf_names.get(v)
        if name is None:
            name = f"b{len(self.buffers)}"
            self.buf_names[v] = name
            self.buffers.append(v)
        return name

    def scratch_buf(self, size: int, dtype) -> str:
        """A buffer of ``size`` elements for this kernel's own use (e.g. a column reduction's
        accumulators): the executable allocates it once, as it does its workspace."""
        v = self.plan.new_var((size,), dtype)
        self.scratch.append(v)
        return self.buf(v)

    def dim(self, key, value: int) -> str:
        """A runtime integer (a size, a start), loaded once from ``dims``."""
        name = self.dim_slots.get(key)
        if name is None:
            name = f"n{len(self.dims)}"
            self.dim_slots[key] = name
            self.prologue.append(f"{name} = dims[{len(self.dims)}]")
            self.dims.append(int(value))
            self.dim_keys.append(key)
        return name

    def vdim(self, v: Var, k: int) -> str:
        return self.dim(("d", v, k), v.shape[k])

    def const(self, value, dtype) -> str:
        v = float(value) if dtype.is_floating_point else value
        np_name = _NP[dtype.name]
        if dtype.name == "bool":
            return "True" if value else "False"
        if not dtype.is_floating_point:
            return f"{np_name}({int(value)})"
        if math.isnan(v):
            return f"{np_name}(np.nan)"
        if math.isinf(v):
            return f"{np_name}({'-' if v < 0 else ''}np.inf)"
        if v in _LITERALS:
            return f"{np_name}({v!r})"
        key = (v, dtype.name)
        name = self.const_slots.get(key)
        if name is None:
            name = f"c{len(self.consts)}"
            self.const_slots[key] = name
            self.prologue.append(f"{name} = {np_name}(consts[{len(self.consts)}])")
            self.consts.append(v)
        return name

    def read(self, v: Var, off: str) -> str:
        """The element of stored value ``v`` at flat offset ``off``."""
        return at(self.buf(v), off)

    # -- addressing ----------------------------------------------------------------------------
    def ravel(self, v: Var, idx: tuple) -> str:
        if not idx:
            return "0"
        expr = idx[0]
        for k in range(1, len(idx)):
            expr = f"({expr}) * {self.vdim(v, k)} + {idx[k]}" if expr != "0" else idx[k]
        return expr

    def unravel(self, v: Var, flat: str, body: _Body) -> tuple:
        out = []
        rest = body.temp(flat, "f")
        for k in range(v.ndim - 1, 0, -1):
            n = self.vdim(v, k)
            out.append(body.temp(f"{rest} % {n}", "u"))
            rest = body.temp(f"{rest} // {n}", "f")
        out.append(rest)
        return tuple(reversed(out))

    def load(self, v: Var, idx, body: _Body) -> str:
        """The expression for value ``v`` at index ``idx`` (a tuple of strings, or Flat)."""
        plan = self.plan
        if v in plan.scalars:
            return self.const(plan.scalars[v], v.dtype)
        if v in self.affine:
            buf, off = self.affine[v]
            self.loads_of.setdefault(buf, set()).add(off)
            return body.temp(self.read(buf, off), "x")
        if body is not self.hoisted and numel(v.shape) == 1 and not self._reads_own(v):
            return self.load(v, ("0",) * v.ndim, self.hoisted)
        if v in self.stored and isinstance(idx, Flat) and self.stored[v][0] == idx.i:
            return self.stored[v][1]  # a group member computed earlier in this iteration
        if v is self.root and self.root is not None:
            return self.expr(plan.producer[v], idx, body)
        if v.ndim == 0 and v in plan.materialized:
            return body.temp(self.read(v, "0"), "s")
        if v in plan.materialized:
            off = idx.i if isinstance(idx, Flat) else self.ravel(v, idx)
            self.loads_of.setdefault(v, set()).add(off)
            return body.temp(self.read(v, off), "x")
        return self.expr(plan.producer[v], idx, body)

    def _reads_own(self, v: Var) -> bool:
        """Whether ``v``'s value comes from a value this kernel stores (itself, or a view of
        one computed inline): such a load may not move before the loop that stores it."""
        plan = self.plan
        if v in self.own:
            return True
        if v in plan.scalars or v in plan.materialized or v in self.affine:
            return False
        e = plan.producer.get(v)
        return e is not None and any(self._reads_own(a) for a in e.inputs)

    def expr(self, e, idx, body: _Body) -> str:
        """The expression of ``e``'s value at ``idx``: its scalar template for an elementwise
        primitive, else its inline rule (``inline.INLINE``: index arithmetic for views and
        gathers, the counter-based draw)."""
        self.covers.append(e)
        p = e.kwargs
        if e.prim.kind == "elementwise":
            args = [self.load(a, idx, body) for a in e.inputs]
            text = scalar_expr(e.prim, args, p, half=self.const(0.5, e.out.dtype))
            for old, new in _VEC.items():
                text = text.replace(old + "(", new + "(")
            if e.out.dtype.name != "bool" and not _keeps_dtype(e, text):
                text = _cast_text(_NP[e.out.dtype.name], text)
            return body.temp(text)
        rule = INLINE.get(e.prim.name)
        if rule is None:
            raise NotImplementedError(f"numba backend: no inline rule for {e.prim.name}")
        if isinstance(idx, Flat) and not rule.flat:  # (see Plan.flat_ok: few keep a flat index)
            idx = self.unravel(e.out, idx.i, body)
        return rule.fn(self, e, idx, body)

    def wrap_index(self, index: Var, pos: str, n: str, body: _Body) -> str:
        """A gathered position as np.take reads it: negative ones count from the end. (Bounds
        are checked before the call: see ``_index_checks``.) Constant indices that are all
        non-negative need nothing."""
        const = self.plan.tape.consts.get(index)
        if const is not None and (const >= 0).all():
            return pos
        return body.temp(f"({pos} + {n} if {pos} < 0 else {pos})", "w")


from .inline import INLINE  # noqa: E402  (its rules use this module's generator)
