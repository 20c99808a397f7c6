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


def simplify(tape: Tape) -> Tape:
    """Algebraic identities: x*1, 1*x, x+0, 0+x, x-0, x/1, x**1, --x, where(const, a, b), no-op
    movement and casts, reshape of reshape, permute of permute, copies nothing else reads."""
    mapping: dict = {}
    producer: dict = {}
    kept = []
    uses: dict = {}
    for e in tape.eqns:
        for x in e.inputs:
            uses[x] = uses.get(x, 0) + 1
    for v in tape.outputs + [v for _, v in tape.writes if v is not None]:
        uses[v] = uses.get(v, 0) + 1
    fresh = [tape.next_id()]

    def new_var(shape, dtype):
        fresh[0] += 1
        return Var(fresh[0] - 1, tuple(shape), dtype)

    def same_type(a, b):
        return a.shape == b.shape and a.dtype is b.dtype

    for e in tape.eqns:
        ins = tuple(mapping.get(x, x) for x in e.inputs)
        e = Eqn(e.prim, ins, e.params, e.out) if ins != e.inputs else e
        name = e.prim.name
        replacement = None
        if name in ("mul", "add", "sub", "div") and len(ins) == 2:
            a, b = ins
            ca, cb = _const_value(tape, a), _const_value(tape, b)
            unit = 1 if name in ("mul", "div") else 0
            if cb is not None and cb == unit and same_type(a, e.out):
                replacement = a
            elif ca is not None and ca == unit and name in ("mul", "add") and same_type(b, e.out):
                replacement = b
        elif name in ("reshape", "expand") and same_type(ins[0], e.out):
            replacement = ins[0]
        elif name == "cast" and same_type(ins[0], e.out):
            replacement = ins[0]
        elif name == "permute":
            perm = e.kwargs["perm"]
            if perm == tuple(range(len(perm))):
                replacement = ins[0]
            else:
                prev = producer.get(ins[0])
                n = len(perm)
                swap = tuple(range(n - 2)) + (n - 1, n - 2)
                if (
                    perm == swap
                    and prev is not None
                    and prev.prim.name == "matmul"
                    and uses.get(prev.out, 0) == 1
                ):
                    # (A B)^T = B^T A^T: the transposes become operand flags of the matmul
                    a, b = prev.inputs
                    bt = new_var(b.shape[:-2] + (b.shape[-1], b.shape[-2]), b.dtype)
                    at = new_var(a.shape[:-2] + (a.shape[-1], a.shape[-2]), a.dtype)
                    kept.append(Eqn(e.prim, (b,), (("perm", swap),), bt))
                    kept.append(Eqn(e.prim, (a,), (("perm", swap),), at))
                    producer[bt] = kept[-2]
                    producer[at] = kept[-1]
                    e = Eqn(prev.prim, (bt, at), (), e.out)
                    producer[e.out] = e
                    kept.append(e)
                    continue
                if prev is not None and prev.prim.name == "permute":
                    inner = prev.kwargs["perm"]
                    combined = tuple(inner[p] for p in perm)
                    if combined == tuple(range(len(combined))):
                        replacement = prev.inputs[0]
                    else:
                        e = Eqn(e.prim, prev.inputs, (("perm", combined),), e.out)
        elif name == "where":
            c = _const_value(tape, ins[0])
            if c is not None:
                pick = ins[1] if c else ins[2]
                if same_type(pick, e.out):
                    replacement = pick
        elif name == "pow":
            c = _const_value(tape, ins[1])
            if c is not None and c == 1 and same_type(ins[0], e.out):
                replacement = ins[0]
        elif name == "copy":
            # a copy of a value computed here and read by nothing else (a gradient handed to
            # .grad) is that value; a copy of a view stays: it asks for memory in order
            prev = producer.get(ins[0])
            if prev is not None and prev.prim.kind != "movement" and uses.get(e.inputs[0]) == 1:
                replacement = ins[0]
        elif name == "neg":
            prev = producer.get(ins[0])
            if prev is not None and prev.prim.name == "neg":
                replacement = prev.inputs[0]
        if name == "reshape" and replacement is None:
            prev = producer.get(ins[0])
            if prev is not None and prev.prim.name == "reshape":
                if prev.inputs[0].shape == e.out.shape:
                    replacement = prev.inputs[0]
                else:
                    e = Eqn(e.prim, prev.inputs, e.params, e.out)
        if replacement is not None:
            mapping[e.out] = replacement
            continue
        producer[e.out] = e
        kept.append(e)
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
