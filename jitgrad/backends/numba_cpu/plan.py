"""Which values of a tape the Numba backend stores, and which it recomputes where read.

Every value is either *materialized* (a flat, C-ordered buffer: inputs, constants, reduction
and matmul results, outputs, and values worth storing) or *virtual*: an expression that each
kernel reading it computes inline (see codegen.py). Loops are memory-bound, so recomputing a
cheap expression beats storing it and loading it back; expensive ones, broadcast ones and the
operands of gathers are stored.
"""

from __future__ import annotations

from ...ir.tape import Tape, Var
from .codegen import numel

_TRANSCENDENTAL = ("exp", "log", "tanh", "sin", "cos", "pow", "log1p", "sqrt")
RECOMPUTE_LIMIT = 40  # cost units (1 per arithmetic op, 6 per transcendental)
# a value read by several kernels is stored when recomputing it loads more than this many
# stored buffers (a residual stream's branches). (Not scaled by the number of readers: a deeper
# model's kernels would then differ from a shallower one's, and compile again.)
READS_LIMIT = 4
# a computed gather/scatter index is stored unless it is about one op on stored values
INDEX_RECOMPUTE_LIMIT = 2


def _stored(e) -> bool:
    """Whether ``e``'s value is stored whatever reads it: reductions, scans, sorts, products,
    scatters, decompositions (kind linalg), copies (``.contiguous()``/``.clone()`` ask for
    memory in order, e.g. a transposed result read by several kernels is transposed once
    instead of in each) and concatenations (stored piece by piece, one loop each: read inline,
    every element would choose its piece, a branch per piece that keeps loops scalar)."""
    kinds = ("reduce", "scan", "sort", "matmul", "scatter", "linalg")
    return e.prim.kind in kinds or e.prim.name in ("copy", "cat")


class Plan:
    """Which values are materialized, and in what order kernels compute them."""

    def __init__(self, tape: Tape, segments: dict | None = None, threaded: tuple | None = None):
        self.tape = tape
        # which loops run on threads (see ``threads``): given, or decided by size and logged
        self.forced, self.threaded = threaded, []
        # scatter_add output -> (offsets, positions) constants: its additions grouped by target
        # (see prepare.segment_tables)
        self.segments = segments or {}
        self.producer = {e.out: e for e in tape.eqns}
        self.consumers: dict = {}
        for e in tape.eqns:
            for x in e.inputs:
                self.consumers.setdefault(x, []).append(e)
        self.scalars = {v: a.item() for v, a in tape.consts.items() if a.ndim == 0}
        self._next_id = tape.next_id()  # for values of the plan's own (scratch buffers)
        self.materialized = set(tape.inputs) | {v for v in tape.consts if v not in self.scalars}
        must = set(tape.outputs) | {v for _, v in tape.writes if v is not None}
        for e in tape.eqns:
            if _stored(e):
                must.add(e.out)
            if e.prim.name == "expand" and e.inputs[0] not in self.scalars:
                # broadcasting a computed value would recompute it per copy
                src = e.inputs[0]
                if src in self.producer and self.producer[src].prim.kind != "movement":
                    must.add(src)
            if e.prim.name == "take":
                # likewise a gather (im2col reads every element once per kernel tap): store the
                # computed values under its movement ops
                self._store_below_views(e.inputs[0], must)
        for e in tape.eqns:
            if e.prim.name in ("take", "scatter_add"):
                # a computed index is read once per element moved, and computing it usually
                # takes gathers or divisions of its own (e.g. max pooling's argmax positions);
                # a few arithmetic ops on stored values are recomputed instead
                self._store_below_views(e.inputs[1], must, INDEX_RECOMPUTE_LIMIT)
        # A value read by several kernels is recomputed in each (loops are memory-bound, so
        # recomputing beats a store and reloads) unless it is expensive or reads many buffers:
        # a residual stream (x + f(x) + g(...)) read by a layer norm's three loops and the next
        # addition would reload every branch and recompute every gather, in each.
        for e in tape.eqns:
            v = e.out
            uses = len(self.consumers.get(v, ()))
            if uses > 1 and e.prim.kind != "movement" and v not in self.scalars:
                if self.cost(v) > RECOMPUTE_LIMIT:
                    must.add(v)
                elif len(self.reads(v, stored=must)) > READS_LIMIT:
                    must.add(v)
        self.materialized |= {v for v in must if v not in self.scalars}
        # matmul reads stored matrices (or transposed views of them, a BLAS flag): the
        # transpose of a computed matrix stores the matrix, in order, rather than its transpose
        # (strided loads: a ReLU gradient's transpose for a weight gradient took 8 us of the
        # small MLP's 45 us step)
        for e in tape.eqns:
            if e.prim.kind == "matmul":
                for x in e.inputs:
                    if self._matmul_operand_ok(x):
                        continue
                    src = self._transposed(x)
                    if src is not None and self.producer[src].prim.kind != "movement":
                        self.materialized.add(src)
                    else:
                        self.materialized.add(x)
        # linear algebra kernels read their matrices from stored buffers, in order
        for e in tape.eqns:
            if e.prim.kind == "linalg":
                self.materialized |= {x for x in e.inputs if x not in self.scalars}
        # A stored permuted copy (NCHW <-> CNHW for a convolution's weight gradient) moves
        # whole runs of a stored source (kernels._transpose_kernel); of a computed one it
        # recomputes each element at strided positions (a ReLU gradient's: 58 us against 32 in
        # the demo CNN's step): its source is stored.
        for v in list(self.materialized):
            src = self._permuted(v)
            if src is not None and src in self.producer and src not in self.scalars:
                if self.producer[src].prim.kind != "movement":
                    self.materialized.add(src)

    def threads(self, big: bool) -> bool:
        """Whether the next candidate for threads, in generation order, gets them: when it is
        ``big``, unless the plan was given its choices (``Executable`` passes an earlier
        batch size's, so that a new batch size generates the same source)."""
        i = len(self.threaded)
        chosen = big if self.forced is None or i >= len(self.forced) else self.forced[i]
        self.threaded.append(chosen)
        return chosen

    def new_var(self, shape: tuple, dtype) -> Var:
        """A value that is not in the tape (its id is past the tape's)."""
        self._next_id += 1
        return Var(self._next_id - 1, shape, dtype)

    def _store_below_views(self, v: Var, must: set, cheap: float = -1.0) -> None:
        """Add to ``must`` the computed values that ``v`` is a view (movement ops) of, except
        those whose expression over values stored (or in ``must``) costs at most ``cheap``."""
        stack = [v]
        while stack:
            src = stack.pop()
            if src in self.scalars or src not in self.producer:
                continue
            p = self.producer[src]
            if p.prim.kind != "movement":
                if self.cost(src, stored=must) > cheap:
                    must.add(src)
            elif p.prim.name == "reshape" and self._is_view(p.inputs[0]):
                # a reshape merging dims of a view (e.g. a transpose) would unravel every
                # gathered position with divisions: store it once, in order
                must.add(src)
            else:
                stack.extend(p.inputs)

    def _is_view(self, x: Var) -> bool:
        p = self.producer.get(x)
        return p is not None and p.prim.kind == "movement"

    def _matmul_operand_ok(self, x: Var) -> bool:
        if x in self.materialized or x not in self.producer:
            return True
        src = self._transposed(x)
        return src is not None and (src not in self.producer or src in self.materialized)

    def _permuted(self, v: Var):
        """The value that ``v`` copies through one permute (then perhaps reshapes and copies,
        which keep the permuted order), or None (as kernels._transpose_source reads it)."""
        e = self.producer.get(v)
        while e is not None and e.prim.name in ("reshape", "copy"):
            e = self.producer.get(e.inputs[0])
        if e is None or e.prim.name != "permute" or e.out.dtype is not v.dtype:
            return None
        return e.inputs[0] if e.inputs[0].ndim >= 2 else None

    def _transposed(self, x: Var):
        """The value ``x`` is the transpose of (its last two dims swapped), or None."""
        e = self.producer.get(x)
        if e is None or e.prim.name != "permute":
            return None
        n = len(e.kwargs["perm"])
        return e.inputs[0] if e.kwargs["perm"] == tuple(range(n - 2)) + (n - 1, n - 2) else None

    def cost(self, v: Var, depth: int = 0, stored: set = frozenset()) -> float:
        """Cost units of computing ``v`` inline: a load (0.5) for stored values (and those
        in ``stored``), else its op plus its inputs'."""
        if (
            v in self.materialized
            or v in stored
            or v in self.scalars
            or v not in self.producer
            or depth > 20
        ):
            return 0.5
        e = self.producer[v]
        if _stored(e):  # always stored (a load), however much computing it took
            return 0.5
        own = 6.0 if any(t in e.prim.name for t in _TRANSCENDENTAL) else 1.0
        if e.prim.kind == "movement":
            own = 0.0
        return own + sum(self.cost(x, depth + 1, stored) for x in e.inputs)

    def groupable(self, v: Var):
        """The flat domain size if ``v``'s kernel can share one flat loop with others: an
        elementwise map whose loads are all at the loop index, or a full reduction of one that
        folds (a sum, a product, a maximum: see ``Reduction.folds``)."""
        e = self.producer[v]
        size = numel(v.shape)
        if e.prim.kind == "elementwise" and v.ndim:
            if all(x.ndim == 0 or self.flat_ok(x, size) for x in e.inputs):
                return size
        full = e.prim.kind == "reduce" and e.prim.reduction.folds and v.ndim == 0
        if full and len(e.kwargs["axes"]) == e.inputs[0].ndim:
            x = e.inputs[0]
            if x.ndim and self.flat_ok(x, numel(x.shape)):
                return numel(x.shape)
        return None

    def reads(self, v: Var, stored: set = frozenset()) -> set:
        """The stored values (and those in ``stored``) ``v``'s inlined expression reads."""
        out, stack, seen = set(), [v], set()
        while stack:
            x = stack.pop()
            if x in seen or x in self.scalars:
                continue
            seen.add(x)
            if x is not v and (x in self.materialized or x in stored or x not in self.producer):
                out.add(x)
                continue
            if x in self.producer:
                stack.extend(self.producer[x].inputs)
        return out

    def flat_ok(self, v: Var, size: int) -> bool:
        """Every load under ``v`` is at the same flat position (or a scalar)."""
        if v in self.scalars:
            return True
        if v in self.materialized:
            return v.ndim == 0 or numel(v.shape) == size
        e = self.producer[v]
        if e.prim.kind == "elementwise":
            return all(x.ndim == 0 or self.flat_ok(x, size) for x in e.inputs)
        if e.prim.name == "reshape":
            return self.flat_ok(e.inputs[0], size)
        if e.prim.name == "rand":
            return numel(e.out.shape) == size
        if e.prim.name == "expand":  # a single value broadcast: every position reads it
            return numel(e.inputs[0].shape) == 1
        return False
