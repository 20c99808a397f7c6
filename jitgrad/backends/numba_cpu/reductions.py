"""Reduction kernels over any axes, by rows or by columns, from each reduce primitive's fold
rules (``registry.Reduction``: init, combine, finalize); nothing here names a reduction."""

from __future__ import annotations

from ... import dtypes
from ...ir.tape import Var
from .codegen import (
    _NP,
    PARALLEL_MIN,
    PARTS,
    Flat,
    Kernel,
    KernelGen,
    _Body,
    at,
    numel,
)
from .plan import Plan
from .source import _finish, _loops, _store_cast, _vec


def fold(reduction, x: Var) -> dict:
    """The names ``reduction``'s templates use, for input ``x``: ``{A}``, ``{X}``, ``{lowest}``,
    ``{highest}`` (see ``registry.Reduction``)."""
    own = reduction.acc == "input" and x.dtype.is_floating_point
    floating = x.dtype.is_floating_point
    acc_t = _NP[x.dtype.name] if own else ("np.float64" if floating else "np.int64")
    if floating:
        lowest, highest = f"{acc_t}(-np.inf)", f"{acc_t}(np.inf)"
    elif x.dtype.name == "bool":
        lowest, highest = "np.int64(0)", "np.int64(1)"
    else:
        lowest, highest = "np.int64(-9223372036854775807 - 1)", "np.int64(9223372036854775807)"
    return {"A": acc_t, "X": _NP[x.dtype.name], "lowest": lowest, "highest": highest}


def emit_init(body: _Body, reduction, names: dict, acc: str = "acc") -> None:
    body.emit(f"{acc} = {reduction.init.format(**names)}")
    for line in reduction.state:
        body.emit(line.format(**names))


def emit_combine(body: _Body, reduction, names: dict, acc: str, x: str, i: str = "") -> None:
    """``reduction``'s combine of element ``x`` into ``acc``: an element read more than once is
    a local first, and a buffer accumulator read more than once too (then stored back)."""
    lines = (reduction.combine,) if isinstance(reduction.combine, str) else reduction.combine
    text = "\n".join(lines)
    if text.count("{x}") > 1 and not x.isidentifier():
        x = body.temp(x, "x")
    slot = None
    if text.count("{acc}") > 1 and not acc.isidentifier():
        slot, acc = acc, "a"
        body.emit(f"a = {slot}")
    fields = dict(names, acc=acc, x=x, i=i, t=body.gen.fresh("w") if "{t}" in text else "")
    out = [_vec(line.format(**fields)) for line in lines]
    if slot is not None:  # back into the buffer (straight from the last assignment to acc)
        if out[-1].startswith("a = "):
            out[-1] = f"{slot} = {out[-1][4:]}"
        else:
            out.append(f"{slot} = a")
    for line in out:
        body.emit(line)


def finalized(reduction, names: dict, acc: str = "acc") -> str | None:
    """The expression of ``reduction``'s result from its accumulator, None if it is the
    accumulator itself."""
    if reduction.finalize == "{acc}":
        return None
    return reduction.finalize.format(**names, acc=acc)


def reduce_kernel(plan: Plan, v: Var) -> Kernel:
    e = plan.producer[v]
    red = e.prim.reduction
    g = KernelGen(plan, "reduce", v)
    out = g.buf(v)
    x = e.inputs[0]
    p = e.kwargs
    axes = tuple(p["axes"]) if "axes" in p else (p["axis"],)
    source = x
    if red.result == "acc" and plan.flat_ok(x, numel(x.shape)):
        # every load is at the flat position: loop over runs of reduced (or kept) axes merged
        # into one, so inner loops are long enough to vectorize (a conv bias gradient sums
        # (N, C, H, W) over N and H*W, not over N, H and W)
        x, axes = _merged_axes(x, axes)
    kept = [k for k in range(x.ndim) if k not in axes]
    body = _Body(g)
    names = fold(red, x)
    rows = (x.ndim - 1) in axes or not kept or not red.folds
    big = plan.threads(numel(x.shape) >= PARALLEL_MIN)
    # kept rows split across threads; a full reduction over one (merged) axis in parts, whose
    # results the combine kernel folds
    parallel = big and rows and (bool(kept) or (red.folds and len(axes) == 1))

    def inner(level_body: _Body, idx) -> str:
        b = _Body(g)
        b.indent = level_body.indent
        if x is not source:
            idx = Flat(b.temp(g.ravel(x, idx), "f"))
        val = g.load(source, idx, b)
        level_body.lines.extend(b.lines)
        return val

    if rows:
        kidx = _loops(g, v, x, kept, body, parallel)
        full = {k: n for k, n in zip(kept, kidx)}
        depth = body.indent
        passes = [red.first, red] if red.first is not None else [red]
        for j, r in enumerate(passes):
            r_names = fold(r, x)
            emit_init(body, r, r_names)
            ridx = _loops(g, v, x, axes, body, parallel and not kept and j == 0)
            full.update(zip(axes, ridx))
            idx = tuple(full[k] for k in range(x.ndim))
            emit_combine(body, r, r_names, "acc", inner(body, idx), ridx[0] if ridx else "0")
            body.indent = depth
            if r is not red:  # a first pass: its result is m
                body.emit(f"m = {finalized(r, r_names) or 'acc'}")
        off = _ravel_kept(g, x, kept, [full[k] for k in kept]) if kept else "0"
        if parallel and not kept:  # a threaded full reduction: each part's, folded after
            name = g.scratch_buf(
                PARTS, dtypes.float64 if x.dtype.is_floating_point else dtypes.int64
            )
            body.emit(f"{name}[part] = acc")
            kernel = _finish(g, body.lines, parallel)
            kernel.roots = []
            kernel.then = combine_kernel(plan, [(g.scratch[-1], v)])
            return kernel
        result = finalized(red, names)
        if result is not None:
            body.emit(f"acc = {result}")
        body.emit(f"{at(out, off)} = {_store_cast(v, red.result)}")
        return _finish(g, body.lines, parallel)
    # columns: the innermost axis is kept, so accumulate rows of an output-sized buffer
    n_out = g.dim(("numel", v), numel(v.shape))
    acc = g.scratch_buf(
        numel(v.shape), dtypes.float64 if x.dtype.is_floating_point else dtypes.int64
    )
    body.emit(f"for j in range({n_out}):")
    body.indent += 1
    emit_init(body, red, names, at(acc, "j"))
    body.indent -= 1
    idx = tuple(_loops(g, v, x, range(x.ndim), body, False))
    val = inner(body, idx)
    off = body.temp(_ravel_kept(g, x, kept, [idx[k] for k in kept]), "o")
    emit_combine(body, red, names, at(acc, off), val)
    body.indent = 1
    body.emit(f"for j in range({n_out}):")
    result = finalized(red, names, at(acc, "j")) or at(acc, "j")
    body.emit(f"    {at(out, 'j')} = {_store_cast(v, result)}")
    return _finish(g, body.lines, False)


def combine_kernel(plan: Plan, partials: list) -> Kernel:
    """The results of a threaded kernel's parts: for each (partials, value) pair, the parts'
    results folded in part order (so the result does not depend on which thread ran which
    part), finalized and stored."""
    g = KernelGen(plan, "combine", partials[-1][1])
    # the parts that ran: the executable sets it (1 where its loops run serially)
    n = g.dim(("parts",), PARTS)
    body = _Body(g)
    for p, v in partials:
        e = plan.producer[v]
        red, x = e.prim.reduction, e.inputs[0]
        names = fold(red, x)
        src, out = g.buf(p), g.buf(v)
        emit_init(body, red, names)
        body.emit(f"for t in range({n}):")
        body.indent += 1
        emit_combine(body, red, names, "acc", f"{src}[t]")
        body.indent -= 1
        body.emit(f"{out}[0] = {_store_cast(v, finalized(red, names) or 'acc')}")
    kernel = _finish(g, body.lines, False)
    kernel.roots = [v for _, v in partials]
    return kernel


def _merged_axes(x: Var, axes: tuple) -> tuple:
    """A stand-in for ``x`` (same elements in the same order) whose consecutive reduced axes,
    and consecutive kept ones, are merged; and its reduced axes. Size-1 axes join either."""
    shape: list = []
    merged: list = []
    last = None
    for k, n in enumerate(x.shape):
        reduced = k in axes
        if n == 1 and shape:
            reduced = last
        if shape and reduced == last:
            shape[-1] *= n
        else:
            shape.append(n)
            if reduced:
                merged.append(len(shape) - 1)
            last = reduced
    if len(shape) == x.ndim:
        return x, axes
    return Var(-1 - x.id, tuple(shape), x.dtype), tuple(merged)


def _ravel_kept(g: KernelGen, x: Var, kept: list, names: list) -> str:
    expr = names[0]
    for k, name in zip(kept[1:], names[1:]):
        expr = f"({expr}) * {g.vdim(x, k)} + {name}"
    return expr
