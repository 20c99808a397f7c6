"""Inline rules: how a kernel computes the value of a primitive that is not elementwise at an
index of its output, one rule per primitive, looked up by ``KernelGen.expr``. Movement
primitives (views) are index arithmetic over their input, ``take`` reads its input at a gathered
position, and ``rand`` draws from the counter-based generator. A rule gets the generator, the
equation, the output index (a tuple of index expressions, or a ``Flat`` position when the rule
says it takes one) and the body to emit into, and returns the value's expression.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ...ir.tape import Var
from .codegen import Flat, KernelGen, _Body, numel


@dataclass(frozen=True)
class Rule:
    fn: Callable
    flat: bool = False  # takes a flat output position as it is (else it gets it unravelled)


INLINE: dict[str, Rule] = {}


def rule(name: str, flat: bool = False):
    def register(fn: Callable) -> Callable:
        INLINE[name] = Rule(fn, flat)
        return fn

    return register


@rule("reshape", flat=True)
def _reshape(g: KernelGen, e, idx, body: _Body) -> str:
    x = e.inputs[0]
    if isinstance(idx, Flat):  # the same flat position in the input
        return g.load(x, idx, body)
    if x in g.plan.materialized and x not in g.plan.scalars and x.ndim:
        # a stored buffer is flat: read it at the same flat position (no unravelling)
        return g.load(x, Flat(g.ravel(e.out, idx)), body)
    return g.load(x, _reshape_index(g, x, e.out, idx, body), body)


@rule("permute")
def _permute(g: KernelGen, e, idx, body: _Body) -> str:
    perm = e.kwargs["perm"]
    src = [None] * len(perm)
    for k, d in enumerate(perm):
        src[d] = idx[k]
    return g.load(e.inputs[0], tuple(src), body)


@rule("expand", flat=True)
def _expand(g: KernelGen, e, idx, body: _Body) -> str:
    x = e.inputs[0]
    if isinstance(idx, Flat):
        if numel(x.shape) == 1:  # one value broadcast: every position reads it
            return g.load(x, ("0",) * x.ndim, body)
        idx = g.unravel(e.out, idx.i, body)
    lead = e.out.ndim - x.ndim
    src = tuple(
        "0" if x.shape[k] == 1 and e.out.shape[lead + k] != 1 else idx[lead + k]
        for k in range(x.ndim)
    )
    return g.load(x, src, body)


@rule("slice")
def _slice(g: KernelGen, e, idx, body: _Body) -> str:
    x, p = e.inputs[0], e.kwargs
    src = []
    for k in range(x.ndim):
        step = p["steps"][k]
        term = idx[k] if step == 1 else f"{idx[k]} * {step}"
        if p["starts"][k] == 0:  # (a start of 0 is structure, like a pad width of 0)
            src.append(term)
            continue
        start = g.dim(("start", e.out, k), p["starts"][k])
        src.append(f"({start} + {term})")
    return g.load(x, tuple(src), body)


@rule("pad")
def _pad(g: KernelGen, e, idx, body: _Body) -> str:
    # Widths are part of the tape's structure: a side padded by 0 needs no test (the loop index
    # is already in range), and an unpadded dim needs no arithmetic at all.
    x = e.inputs[0]
    conds, src = [], []
    for k, (lo, hi, interior) in enumerate(e.kwargs["widths"]):
        if lo:
            lo_n = g.dim(("lo", e.out, k), lo)
            rel = body.temp(f"{idx[k]} - {lo_n}", "r")
            conds.append(f"{rel} >= 0")
        else:
            rel = idx[k]
        stride = interior + 1
        if stride == 1:
            if hi:
                conds.append(f"{rel} < {g.vdim(x, k)}")
            src.append(rel)
        else:
            # (the index may be an expression, e.g. a reshape's: parenthesized for % and //)
            conds.append(f"({rel}) % {stride} == 0")
            if hi:
                conds.append(f"({rel}) // {stride} < {g.vdim(x, k)}")
            src.append(f"({rel}) // {stride}")
    inner = _Body(g)
    inner.indent = body.indent + 1
    value = g.load(x, tuple(src), inner)
    res = g.fresh("p")
    body.emit(f"{res} = {g.const(0, e.out.dtype)}")
    body.emit(f"if {' and '.join(conds) or 'True'}:")
    body.lines.extend(inner.lines)
    body.emit(f"    {res} = {value}")
    return res


@rule("cat")
def _cat(g: KernelGen, e, idx, body: _Body) -> str:
    axis = e.kwargs["axis"]
    res = g.fresh("q")
    offset = "0"
    body.emit(f"{res} = {g.const(0, e.out.dtype)}")
    for j, part in enumerate(e.inputs):
        size = g.vdim(part, axis)
        hi = f"{offset} + {size}" if offset != "0" else size
        kw = "if" if j == 0 else "elif"
        body.emit(f"{kw} {idx[axis]} < {hi}:")
        inner = _Body(g)
        inner.indent = body.indent + 1
        sub = tuple(f"({idx[axis]} - ({offset}))" if k == axis else idx[k] for k in range(len(idx)))
        value = g.load(part, sub, inner)
        body.lines.extend(inner.lines)
        body.emit(f"    {res} = {value}")
        offset = hi
    return res


@rule("take")
def _take(g: KernelGen, e, idx, body: _Body) -> str:
    x, index = e.inputs
    axis = e.kwargs["axis"]
    r = index.ndim
    pos = g.load(index, tuple(idx[axis : axis + r]), body)
    pos = g.wrap_index(index, pos, g.vdim(x, axis), body)
    src = tuple(idx[:axis]) + (pos,) + tuple(idx[axis + r :])
    return g.load(x, src, body)


@rule("rand", flat=True)
def _rand(g: KernelGen, e, idx, body: _Body) -> str:
    flat = idx.i if isinstance(idx, Flat) else g.ravel(e.out, idx)
    state = e.inputs[0]
    s0 = g.load(state, ("0",), body)
    s1 = g.load(state, ("1",), body)
    fn = "rand_f64" if e.kwargs["dtype"].name == "float64" else "rand_f32"
    return body.temp(f"{fn}({s0}, {s1}, {flat})", "g")


def _reshape_index(g: KernelGen, x: Var, out: Var, idx: tuple, body: _Body) -> tuple:
    # unit dims inserted or removed: a direct mapping; anything else goes through the flat
    # position
    xs = [k for k, s in enumerate(x.shape) if s != 1]
    os_ = [k for k, s in enumerate(out.shape) if s != 1]
    if [x.shape[k] for k in xs] == [out.shape[k] for k in os_]:
        src = ["0"] * x.ndim
        for a, b in zip(xs, os_):
            src[a] = idx[b]
        return tuple(src)
    if 0 in x.shape:
        return g.unravel(x, g.ravel(out, idx), body)
    # Runs of dims with equal element counts map onto each other (a split, a merge, or both):
    # only a run of several input dims needs division, and only within the run.
    # NOTE: integer division by runtime sizes dominated gather-heavy loops (im2col).
    src = ["0"] * x.ndim
    i = j = 0
    while i < len(xs):
        a, b = [xs[i]], [os_[j]]
        na, nb = x.shape[xs[i]], out.shape[os_[j]]
        i, j = i + 1, j + 1
        while na != nb:
            if na < nb:
                a.append(xs[i])
                na, i = na * x.shape[xs[i]], i + 1
            else:
                b.append(os_[j])
                nb, j = nb * out.shape[os_[j]], j + 1
        flat = idx[b[0]]
        for k in b[1:]:
            flat = f"({flat}) * {g.vdim(out, k)} + {idx[k]}"
        if len(a) == 1:
            src[a[0]] = flat
            continue
        rest = body.temp(flat, "f")
        for k in reversed(a[1:]):
            n = g.vdim(x, k)
            src[k] = body.temp(f"{rest} % {n}", "u")
            rest = body.temp(f"{rest} // {n}", "f")
        src[a[0]] = rest
    return tuple(src)


@rule("searchsorted")
def _searchsorted(g: KernelGen, e, idx, body: _Body) -> str:
    # a binary search of the value's line of the sequence (its leading dims are the value's)
    seq, values = e.inputs
    value = g.load(values, idx, body)
    n = g.vdim(seq, seq.ndim - 1)
    lo, hi, mid = g.fresh("lo"), g.fresh("hi"), g.fresh("mid")
    body.emit(f"{lo} = 0")
    body.emit(f"{hi} = {n}")
    body.emit(f"while {lo} < {hi}:")
    inner = _Body(g)
    inner.indent = body.indent + 1
    inner.emit(f"{mid} = ({lo} + {hi}) // 2")
    lead = tuple(idx[:-1]) if seq.ndim > 1 else ()
    s = g.load(seq, lead + (mid,), inner)
    inner.emit(f"if not ({s} {'>' if e.kwargs['right'] else '>='} {value}):")
    inner.emit(f"    {lo} = {mid} + 1")
    inner.emit("else:")
    inner.emit(f"    {hi} = {mid}")
    body.lines.extend(inner.lines)
    return lo
