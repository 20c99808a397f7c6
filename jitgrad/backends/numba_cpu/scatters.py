"""scatter_add kernels: additions at gathered positions, or, with a constant index, a sum per
target (see ``prepare.segment_tables``)."""

from __future__ import annotations

from ...ir.tape import Var
from .codegen import (
    PARALLEL_MIN,
    Flat,
    Kernel,
    KernelGen,
    _Body,
    at,
    numel,
)
from .plan import Plan
from .source import _finish, _loops, _store_cast


def scatter_kernel(plan: Plan, v: Var) -> Kernel:
    e = plan.producer[v]
    if v in plan.segments and plan.flat_ok(e.inputs[2], numel(e.inputs[2].shape)):
        return _segment_kernel(plan, v)
    g = KernelGen(plan, "scatter_add", v)
    out = g.buf(v)
    x, index, src = e.inputs
    axis = e.kwargs["axis"]
    body = _Body(g)
    # first the base values, then the additions (duplicates add up, as np.add.at)
    idx = tuple(_loops(g, v, v, range(v.ndim), body, False))
    b = _Body(g)
    b.indent = body.indent
    val = g.load(x, idx, b)
    body.lines.extend(b.lines)
    body.emit(f"{at(out, g.ravel(v, idx))} = {val}")
    body.indent = 1
    b = _Body(g)
    r = index.ndim
    merged = plan.producer.get(src)
    if src.ndim == 1 and src not in plan.materialized and merged.prim.name == "reshape":
        # a flat source merging the dims of a view (e.g. a transpose): loop over the view's
        # dims, so its elements are read without unravelling the flat position
        y = merged.inputs[0]
        g.covers.append(merged)
        fine = tuple(_loops(g, y, y, range(y.ndim), body, False))
        b.indent = body.indent
        sidx = (b.temp(g.ravel(y, fine), "flat"),)
        val = g.load(y, fine, b)
    else:
        sidx = tuple(_loops(g, src, src, range(src.ndim), body, False))
        b.indent = body.indent
        val = g.load(src, sidx, b)
    pos = g.wrap_index(index, g.load(index, sidx[axis : axis + r], b), g.vdim(v, axis), b)
    body.lines.extend(b.lines)
    target = sidx[:axis] + (pos,) + sidx[axis + r :]
    body.emit(f"{at(out, g.ravel(v, target))} += {val}")
    return _finish(g, body.lines, False)


def _segment_kernel(plan: Plan, v: Var) -> Kernel:
    """scatter_add with a constant index, as a loop over targets that each sum their
    contributions (listed by ``plan.segments``) onto the base value. The source is read at flat
    positions (``Plan.flat_ok``)."""
    e = plan.producer[v]
    g = KernelGen(plan, "scatter_add", v)
    out = g.buf(v)
    x, index, src = e.inputs
    axis = e.kwargs["axis"]
    offsets, positions = (g.buf(t) for t in plan.segments[v])
    body = _Body(g)
    # targets are independent: split across threads when there is enough to add up
    parallel = plan.threads(numel(src.shape) >= PARALLEL_MIN)
    idx = tuple(_loops(g, v, v, range(v.ndim), body, parallel))
    body.emit(f"acc = {_store_cast(v, g.load(x, idx, body))}")
    pre = g.ravel(v, idx[:axis]) if axis else "0"
    post = "0"
    for k in range(axis + 1, v.ndim):
        post = idx[k] if post == "0" else f"({post}) * {g.vdim(v, k)} + {idx[k]}"
    n_index = g.dim(("numel", index), numel(index.shape))
    n_post = g.dim(("numel", "after", v, axis), numel(v.shape[axis + 1 :]))
    p = idx[axis]
    body.emit(f"for seg in range({at(offsets, p)}, {at(offsets, f'{p} + 1')}):")
    body.indent += 1
    row = at(positions, "seg") if pre == "0" else f"({pre}) * {n_index} + {at(positions, 'seg')}"
    flat = row if v.ndim == axis + 1 else f"({row}) * {n_post} + {post}"
    body.emit(f"acc += {g.load(src, Flat(body.temp(flat, 'f')), body)}")
    body.indent -= 1
    body.emit(f"{at(out, g.ravel(v, idx))} = acc")
    return _finish(g, body.lines, parallel)
