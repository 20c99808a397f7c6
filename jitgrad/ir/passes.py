"""Tape -> Tape passes: dead code, common subexpressions, constant folding, simplification.

Each pass returns a new tape and leaves its argument untouched.
"""

from __future__ import annotations

import numpy as np

from .tape import Eqn, Tape, Var


def _substitute(tape: Tape, eqns: list, mapping: dict) -> Tape:
    """A copy of ``tape`` with ``eqns`` whose inputs, the outputs and the writes are renamed."""
    if not mapping:
        return tape.copy(eqns=eqns)

    def m(v):
        while v in mapping:
            v = mapping[v]
        return v

    new_eqns = [
        e
        if not any(x in mapping for x in e.inputs)
        else Eqn(e.prim, tuple(m(x) for x in e.inputs), e.params, e.out)
        for e in eqns
    ]
    return tape.copy(
        eqns=new_eqns,
        outputs=[m(v) for v in tape.outputs],
        writes=[(b, None if v is None else m(v)) for b, v in tape.writes],
    )


def dce(tape: Tape) -> Tape:
    """Drop equations and constants that no output or write depends on."""
    live = set(tape.outputs) | {v for _, v in tape.writes if v is not None}
    kept = []
    for e in reversed(tape.eqns):
        if e.out in live:
            kept.append(e)
            live.update(e.inputs)
    kept.reverse()
    consts = {v: a for v, a in tape.consts.items() if v in live}
    return tape.copy(eqns=kept, consts=consts)


def cse(tape: Tape) -> Tape:
    """Reuse the first of several equations with the same primitive, inputs and params."""
    seen: dict = {}
    mapping: dict = {}
    kept = []
    for e in tape.eqns:
        ins = tuple(mapping.get(x, x) for x in e.inputs)
        key = (e.prim.name, ins, e.params)
        try:
            prev = seen.get(key)
        except TypeError:  # unhashable params: keep as is
            kept.append(e)
            continue
        if prev is not None:
            mapping[e.out] = prev
            continue
        seen[key] = e.out
        kept.append(e if ins == e.inputs else Eqn(e.prim, ins, e.params, e.out))
    return _substitute(tape, kept, mapping)


# Folding a constant that would be larger than this stays an equation (keeps tapes small).
FOLD_LIMIT = 1 << 16


def fold_constants(tape: Tape) -> Tape:
    """Evaluate equations whose inputs are all constants."""
    consts = dict(tape.consts)
    kept = []
    for e in tape.eqns:
        if e.prim.kind != "random" and all(x in consts for x in e.inputs):
            size = int(np.prod(e.out.shape, dtype=np.int64))
            # (not one that enlarges its constants, e.g. a broadcast: kernels compute those
            # values for free, and a stored copy costs memory traffic on every call)
            if size <= FOLD_LIMIT and size <= max((consts[x].size for x in e.inputs), default=size):
                value = np.asarray(e.prim.impl(*[consts[x] for x in e.inputs], **e.kwargs))
                consts[e.out] = np.array(value, copy=True)
                continue
        kept.append(e)
    return dce(tape.copy(eqns=kept, consts=consts))


def _const_value(tape: Tape, v):
    arr = tape.consts.get(v)
    if arr is None or arr.size == 0:
        return None
    first = arr.flat[0]
    return first if np.all(arr == first) else None


class _Context:
    """What simplification rules read: the tape's constants, the kept equation computing each
    value, how many times each value of the input tape is read, and fresh values."""

    def __init__(self, tape: Tape):
        self.tape = tape
        self.producer: dict = {}
        self.uses: dict = {}
        for e in tape.eqns:
            for x in e.inputs:
                self.uses[x] = self.uses.get(x, 0) + 1
        for v in tape.outputs + [v for _, v in tape.writes if v is not None]:
            self.uses[v] = self.uses.get(v, 0) + 1
        self._next = tape.next_id()

    def new_var(self, shape, dtype) -> Var:
        self._next += 1
        return Var(self._next - 1, tuple(shape), dtype)

    def const(self, v):
        return _const_value(self.tape, v)

    def made_by(self, v, name: str):
        """The kept equation computing ``v`` if its primitive is ``name``, else None."""
        prev = self.producer.get(v)
        return prev if prev is not None and prev.prim.name == name else None


def _same_type(a, b) -> bool:
    return a.shape == b.shape and a.dtype is b.dtype


# Algebraic identities, one rule per primitive: ``rule(ctx, e)`` returns a value that ``e.out``
# equals (the equation goes), an equation or a list of them computing ``e.out`` instead, or None.
SIMPLIFY: dict = {}


def _rule(*names: str):
    def register(fn):
        for name in names:
            SIMPLIFY[name] = fn
        return fn

    return register


@_rule("mul", "sub", "div")
def _unit(ctx: _Context, e):
    # x*1, 1*x, x+0, 0+x, x-0, x/1
    a, b = e.inputs
    unit = 1 if e.prim.name in ("mul", "div") else 0
    ca, cb = ctx.const(a), ctx.const(b)
    if cb is not None and cb == unit and _same_type(a, e.out):
        return a
    if ca is not None and ca == unit and e.prim.name in ("mul", "add") and _same_type(b, e.out):
        return b
    return None


@_rule("add")
def _add(ctx: _Context, e):
    return _unit(ctx, e) or _disjoint_pads(ctx, e)


def _pad_region(ctx: _Context, v, n_out):
    """(pad equation, axis, start, stop) when ``v`` (read once) is a zero pad of a value along
    one axis only, without interior padding."""
    p = ctx.made_by(v, "pad")
    if p is None or ctx.uses.get(v, 0) != 1:
        return None
    axes = [d for d, w in enumerate(p.kwargs["widths"]) if w != (0, 0, 0)]
    if len(axes) != 1 or p.kwargs["widths"][axes[0]][2] != 0:
        return None
    d = axes[0]
    lo, hi, _ = p.kwargs["widths"][d]
    return p, d, lo, n_out[d] - hi


def _disjoint_pads(ctx: _Context, e):
    """pad(a) + pad(b) where the two fill disjoint ranges of one axis = one pad of cat(a, b)
    (zeros between them padded onto a): the gradient of a tensor split into pieces (the
    pieces' slices each pad their gradient to the whole) is then one concatenation, not a sum
    of as many full-size pads as there are pieces. A piece that is itself such a cat made here
    is spliced in, so n pieces make one cat of n."""
    from ..ops.registry import PRIMS  # (the IR does not import ops at module level)

    a, b = e.inputs
    if not (_same_type(a, e.out) and _same_type(b, e.out)):
        return None
    ra, rb = _pad_region(ctx, a, e.out.shape), _pad_region(ctx, b, e.out.shape)
    if ra is None or rb is None or ra[1] != rb[1]:
        return None
    (p1, d, lo1, hi1), (p2, _, lo2, hi2) = sorted((ra, rb), key=lambda r: r[2])
    if hi1 > lo2:
        return None  # the ranges overlap
    eqns = []
    x1 = p1.inputs[0]
    if lo2 > hi1:  # zeros between the two pieces
        widths = tuple((0, lo2 - hi1, 0) if k == d else (0, 0, 0) for k in range(x1.ndim))
        shape = tuple(n + (lo2 - hi1 if k == d else 0) for k, n in enumerate(x1.shape))
        gap = ctx.new_var(shape, x1.dtype)
        eqns.append(Eqn(PRIMS["pad"], (x1,), (("widths", widths),), gap))
        x1 = gap
    pieces = []
    for x in (x1, p2.inputs[0]):
        inner = ctx.made_by(x, "cat")
        if inner is not None and inner.kwargs["axis"] == d and ctx.uses.get(x, 0) == 0:
            pieces.extend(inner.inputs)  # a cat made by this rule, read by nothing else
        else:
            pieces.append(x)
    shape = tuple(hi2 - lo1 if k == d else n for k, n in enumerate(e.out.shape))
    joined = ctx.new_var(shape, e.out.dtype)
    eqns.append(Eqn(PRIMS["cat"], tuple(pieces), (("axis", d),), joined))
    widths = tuple(
        (lo1, e.out.shape[d] - hi2, 0) if k == d else (0, 0, 0) for k in range(e.out.ndim)
    )
    if widths == ((0, 0, 0),) * e.out.ndim:
        return [*eqns[:-1], Eqn(PRIMS["cat"], tuple(pieces), (("axis", d),), e.out)]
    eqns.append(Eqn(PRIMS["pad"], (joined,), (("widths", widths),), e.out))
    return eqns


@_rule("expand", "cast")
def _no_op(ctx: _Context, e):
    return e.inputs[0] if _same_type(e.inputs[0], e.out) else None


@_rule("reshape")
def _reshape(ctx: _Context, e):
    # a no-op, or a reshape of a reshape
    x = e.inputs[0]
    if _same_type(x, e.out):
        return x
    prev = ctx.made_by(x, "reshape")
    if prev is None:
        return None
    if prev.inputs[0].shape == e.out.shape:
        return prev.inputs[0]
    return Eqn(e.prim, prev.inputs, e.params, e.out)


@_rule("permute")
def _permute(ctx: _Context, e):
    x, perm = e.inputs[0], e.kwargs["perm"]
    n = len(perm)
    if perm == tuple(range(n)):
        return x
    swap = tuple(range(n - 2)) + (n - 1, n - 2)
    prev = ctx.made_by(x, "matmul")
    if perm == swap and prev is not None and ctx.uses.get(prev.out, 0) == 1:
        # (A B)^T = B^T A^T: the transposes become operand flags of the matmul
        a, b = prev.inputs
        bt = ctx.new_var(b.shape[:-2] + (b.shape[-1], b.shape[-2]), b.dtype)
        at = ctx.new_var(a.shape[:-2] + (a.shape[-1], a.shape[-2]), a.dtype)
        return [
            Eqn(e.prim, (b,), (("perm", swap),), bt),
            Eqn(e.prim, (a,), (("perm", swap),), at),
            Eqn(prev.prim, (bt, at), (), e.out),
        ]
    prev = ctx.made_by(x, "permute")
    if prev is not None:
        combined = tuple(prev.kwargs["perm"][p] for p in perm)
        if combined == tuple(range(len(combined))):
            return prev.inputs[0]
        return Eqn(e.prim, prev.inputs, (("perm", combined),), e.out)
    return None


@_rule("where")
def _where(ctx: _Context, e):
    c = ctx.const(e.inputs[0])
    if c is None:
        return None
    pick = e.inputs[1] if c else e.inputs[2]
    return pick if _same_type(pick, e.out) else None


@_rule("pow")
def _pow(ctx: _Context, e):
    c = ctx.const(e.inputs[1])
    return e.inputs[0] if c is not None and c == 1 and _same_type(e.inputs[0], e.out) else None


@_rule("copy")
def _copy(ctx: _Context, e):
    # a copy of a value computed here and read by nothing else (a gradient handed to .grad) is
    # that value; a copy of a view stays: it asks for memory in order
    prev = ctx.producer.get(e.inputs[0])
    if prev is not None and prev.prim.kind != "movement" and ctx.uses.get(e.inputs[0]) == 1:
        return e.inputs[0]
    return None


@_rule("neg")
def _neg(ctx: _Context, e):
    prev = ctx.made_by(e.inputs[0], "neg")
    return prev.inputs[0] if prev is not None else None


def simplify(tape: Tape) -> Tape:
    """Algebraic identities (the rules of ``SIMPLIFY``): x*1, 1*x, x+0, 0+x, x-0, x/1, x**1,
    --x, where(const, a, b), no-op movement and casts, reshape of reshape, permute of permute,
    the transpose of a product, copies nothing else reads, sums of pads of disjoint ranges
    (one pad of a concatenation)."""
    ctx = _Context(tape)
    mapping: dict = {}
    kept = []
    for e in tape.eqns:
        ins = tuple(mapping.get(x, x) for x in e.inputs)
        e = Eqn(e.prim, ins, e.params, e.out) if ins != e.inputs else e
        rule = SIMPLIFY.get(e.prim.name)
        result = rule(ctx, e) if rule is not None else None
        if isinstance(result, Var):
            mapping[e.out] = result
            continue
        for new in [e] if result is None else [result] if isinstance(result, Eqn) else result:
            ctx.producer[new.out] = new
            kept.append(new)
    return dce(_substitute(tape, kept, mapping))


def broadcast_uniform_constants(tape: Tape) -> Tape:
    """A constant array whose elements are all equal (the zeros a gradient is scattered into,
    say) becomes a scalar constant expanded: backends read the scalar instead of the array."""
    from ..ops.registry import PRIMS  # (the IR does not import ops at module level)

    fresh = tape.next_id()
    # (not what the caller receives: a returned or written constant stays a real array)
    kept = set(tape.outputs) | {v for _, v in tape.writes if v is not None}
    consts, head = {}, []
    for v, arr in tape.consts.items():
        if v in kept or arr.ndim == 0 or arr.size <= 1 or not np.all(arr == arr.flat[0]):
            consts[v] = arr
            continue
        scalar = Var(fresh, (), v.dtype)
        fresh += 1
        consts[scalar] = np.array(arr.flat[0], dtype=arr.dtype)
        head.append(Eqn(PRIMS["expand"], (scalar,), (("shape", tuple(v.shape)),), v))
    if not head:
        return tape
    return tape.copy(eqns=head + list(tape.eqns), consts=consts)


# simplify runs twice: its rewrites (a transposed product) open up others (permute of permute)
DEFAULT_PASSES = (fold_constants, simplify, simplify, broadcast_uniform_constants, cse, dce)


def optimize(tape: Tape, passes=DEFAULT_PASSES) -> Tape:
    for p in passes:
        tape = p(tape)
    return tape
