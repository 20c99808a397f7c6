"""Reduction kernels: sum, max, logsumexp and argmax over any axes, by rows or by columns."""

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


def reduce_kernel(plan: Plan, v: Var) -> Kernel:
    e = plan.producer[v]
    name = e.prim.name
    g = KernelGen(plan, "reduce", v)
    out = g.buf(v)
    x = e.inputs[0]
    p = e.kwargs
    axes = (p["axis"],) if name == "argmax" else tuple(p["axes"])
    source = x
    if name != "argmax" and plan.flat_ok(x, numel(x.shape)):
        # every load is at the flat position: loop over runs of reduced (or kept) axes merged
        # into one, so inner loops are long enough to vectorize (a conv bias gradient sums
        # (N, C, H, W) over N and H*W, not over N, H and W)
        x, axes = _merged_axes(x, axes)
    kept = [k for k in range(x.ndim) if k not in axes]
    body = _Body(g)
    floating = x.dtype.is_floating_point
    acc_t = "np.float64" if floating else "np.int64"
    rows = (x.ndim - 1) in axes or not kept or name in ("logsumexp", "argmax")
    big = plan.threads(numel(x.shape) >= PARALLEL_MIN)
    # kept rows split across threads; a full sum is a prange reduction
    parallel = big and rows and (bool(kept) or (name == "sum" and len(axes) == 1))

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
        if name == "sum":
            body.emit(f"acc = {acc_t}(0)")
        elif name == "max":
            body.emit(f"acc = {_lowest(x)}")
        elif name == "logsumexp":
            body.emit(f"acc = {_lowest(x)}")
        else:  # argmax: the running maximum in the input's own type (compares the same)
            lowest = f"{_NP[x.dtype.name]}(-np.inf)" if floating else _lowest(x)
            body.emit(f"acc = {lowest}")
            body.emit("best = np.int64(0)")
        depth = body.indent
        ridx = _loops(g, v, x, axes, body, parallel and not kept)
        full.update(zip(axes, ridx))
        idx = tuple(full[k] for k in range(x.ndim))
        val = inner(body, idx)
        if name == "sum":
            body.emit(f"acc += {val}")
        elif name in ("max", "logsumexp"):
            body.emit(f"acc = acc if (acc != acc or acc >= {val}) else {acc_t}({val})")
        else:  # the first maximum, or the first NaN; the first element if all are lowest
            # `not (x <= acc) and acc == acc`: x wins if greater or NaN, unless acc is NaN
            # already. The bitwise form, `(x > acc) | ((x != x) & (acc == acc))`, became AVX-512
            # mask-register arithmetic on the running maximum's dependency chain; this one
            # compiles to two compare-and-branch pairs, and took half the time on random,
            # ReLU-like and sorted pooling windows alike (the demo CNN's argmaxes: 65 -> 40 us).
            r = ridx[0]
            val = val if val.isidentifier() else body.temp(val, "x")
            if floating:
                wins = body.temp(f"not ({val} <= acc) and acc == acc", "w")
            else:
                wins = body.temp(f"{val} > acc", "w")
            body.emit(f"acc = {val} if {wins} else acc")
            body.emit(f"best = {r} if {wins} else best")
        body.indent = depth
        if name == "logsumexp":
            # m = 0 where the max is infinite: all -inf gives -inf, +inf gives +inf
            body.emit("m = acc if acc - acc == 0 else np.float64(0.0)")
            body.emit("acc = np.float64(0.0)")
            _loops(g, v, x, axes, body, False)
            val = inner(body, idx)
            # float32 data: float32 exp (terms within an ulp or two, summed in float64), twice
            # the SIMD width, and no float64 exp to compile for a float32 model. The log runs
            # once per result, outside the loop: the C library's, with nothing to compile.
            t = "np.float32" if x.dtype.name == "float32" else "np.float64"
            body.emit(_vec(f"acc += math.exp({t}({val}) - {t}(m))"))
            body.indent = depth
            body.emit("acc = math.log(acc) + m")
        off = _ravel_kept(g, x, kept, [full[k] for k in kept]) if kept else "0"
        result = "best" if name == "argmax" else "acc"
        if parallel and not kept:  # a threaded full sum: each part's, added up after
            name = g.scratch_buf(PARTS, dtypes.float64 if floating else dtypes.int64)
            body.emit(f"{name}[part] = acc")
            kernel = _finish(g, body.lines, parallel)
            kernel.roots = []
            kernel.then = combine_kernel(plan, [(g.scratch[-1], v)])
            return kernel
        body.emit(f"{at(out, off)} = {_store_cast(v, result)}")
        return _finish(g, body.lines, parallel)
    # columns: the innermost axis is kept, so accumulate rows of an output-sized buffer
    n_out = g.dim(("numel", v), numel(v.shape))
    init = f"{acc_t}(0)" if name == "sum" else _lowest(x)
    acc = g.scratch_buf(numel(v.shape), dtypes.float64 if floating else dtypes.int64)
    body.emit(f"for j in range({n_out}):")
    body.emit(f"    {at(acc, 'j')} = {init}")
    idx = tuple(_loops(g, v, x, range(x.ndim), body, False))
    val = inner(body, idx)
    off = body.temp(_ravel_kept(g, x, kept, [idx[k] for k in kept]), "o")
    if name == "sum":
        body.emit(f"{at(acc, off)} += {val}")
    else:
        body.emit(f"a = {at(acc, off)}")
        body.emit(f"{at(acc, off)} = a if (a != a or a >= {val}) else {acc_t}({val})")
    body.indent = 1
    body.emit(f"for j in range({n_out}):")
    body.emit(f"    {at(out, 'j')} = {_store_cast(v, at(acc, 'j'))}")
    return _finish(g, body.lines, False)


def combine_kernel(plan: Plan, partials: list) -> Kernel:
    """The sums of a threaded kernel: for each (partials, value) pair, the parts' sums added in
    part order (so the result does not depend on which thread ran which part) and stored."""
    g = KernelGen(plan, "combine", partials[-1][1])
    # the parts that ran: the executable sets it (1 where its loops run serially)
    n = g.dim(("parts",), PARTS)
    body = _Body(g)
    for p, v in partials:
        acc_t = "np.float64" if v.dtype.is_floating_point else "np.int64"
        src, out = g.buf(p), g.buf(v)
        body.emit(f"acc = {acc_t}(0)")
        body.emit(f"for t in range({n}):")
        body.emit(f"    acc += {src}[t]")
        body.emit(f"{out}[0] = {_store_cast(v, 'acc')}")
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


def _lowest(x: Var) -> str:
    if x.dtype.is_floating_point:
        return "np.float64(-np.inf)"
    if x.dtype.name == "bool":
        return "np.int64(0)"
    return "np.int64(-9223372036854775807 - 1)"
