"""Scan and sort kernels: one pass along an axis per line of the other axes. A scan folds the
line's elements in order with its primitive's fold rules (``registry.Reduction``, as a
reduction does) and stores the result after each element; nothing here names a scan. A sort
orders the line's positions by a stable bottom-up merge sort over scratch buffers."""

from __future__ import annotations

from ... import dtypes
from ...ir.tape import Var
from .codegen import PARALLEL_MIN, Kernel, KernelGen, _Body, at, numel
from .plan import Plan
from .reductions import emit_combine, emit_init, finalized, fold
from .source import _finish, _loops, _store_cast


def scan_kernel(plan: Plan, v: Var) -> Kernel:
    e = plan.producer[v]
    red = e.prim.reduction
    x = e.inputs[0]
    axis, reverse = e.kwargs["axis"], e.kwargs.get("reverse", False)
    g = KernelGen(plan, "scan", v)
    out = g.buf(v)
    kept = [k for k in range(x.ndim) if k != axis]
    # lines are independent: split across threads when there is enough to scan
    parallel = plan.threads(bool(kept) and numel(x.shape) >= PARALLEL_MIN)
    body = _Body(g)
    full = dict(zip(kept, _loops(g, v, x, kept, body, parallel)))
    names = fold(red, x)
    emit_init(body, red, names)
    n = g.vdim(x, axis)
    body.emit(f"for j in range({n}):")
    body.indent += 1
    full[axis] = body.temp(f"{n} - 1 - j", "r") if reverse else "j"
    idx = tuple(full[k] for k in range(x.ndim))
    emit_combine(body, red, names, "acc", g.load(x, idx, body), full[axis])
    result = finalized(red, names) or red.result
    body.emit(f"{at(out, g.ravel(v, idx))} = {_store_cast(v, result)}")
    return _finish(g, body.lines, parallel)


def _precedes(descending: bool, a: str, b: str) -> str:
    """Whether value ``a`` goes strictly before ``b``: NaN counts as the largest."""
    if descending:
        return f"({a} > {b} or ({a} != {a} and {b} == {b}))"
    return f"({a} < {b} or ({a} == {a} and {b} != {b}))"


def sort_kernel(plan: Plan, v: Var) -> Kernel:
    """The positions that order each line of the input, equal elements in their order: the
    line's values and positions are copied into scratch buffers, runs of width 1, 2, 4, ...
    are merged (taking from the left run unless the right's element goes strictly before), and
    the positions are stored."""
    e = plan.producer[v]
    x = e.inputs[0]
    axis = e.kwargs["axis"]
    size = x.shape[axis]
    g = KernelGen(plan, "sort", v)
    out = g.buf(v)
    vals = g.scratch_buf(max(size, 1), x.dtype)
    order = g.scratch_buf(max(size, 1), dtypes.int64)
    merged = g.scratch_buf(max(size, 1), dtypes.int64)
    kept = [k for k in range(x.ndim) if k != axis]
    body = _Body(g)
    full = dict(zip(kept, _loops(g, v, x, kept, body, False)))
    n = g.vdim(x, axis)
    depth = body.indent
    full[axis] = "j"
    idx = tuple(full[k] for k in range(x.ndim))
    body.emit(f"for j in range({n}):")
    body.indent += 1
    body.emit(f"{at(vals, 'j')} = {g.load(x, idx, body)}")
    body.emit(f"{at(order, 'j')} = j")
    body.indent = depth
    first = _precedes(e.kwargs["descending"], at(vals, at(order, "b")), at(vals, at(order, "a")))
    for line in (
        "width = 1",
        f"while width < {n}:",
        "    lo = 0",
        f"    while lo < {n}:",
        f"        mid = min(lo + width, {n})",
        f"        hi = min(lo + 2 * width, {n})",
        "        a = lo",
        "        b = mid",
        "        for k in range(lo, hi):",
        f"            if a < mid and (b >= hi or not {first}):",
        f"                {at(merged, 'k')} = {at(order, 'a')}",
        "                a += 1",
        "            else:",
        f"                {at(merged, 'k')} = {at(order, 'b')}",
        "                b += 1",
        "        lo = hi",
        f"    for k in range({n}):",
        f"        {at(order, 'k')} = {at(merged, 'k')}",
        "    width *= 2",
        f"for j in range({n}):",
        f"    {at(out, g.ravel(v, idx))} = {at(order, 'j')}",
    ):
        body.emit(line)
    return _finish(g, body.lines, False)
