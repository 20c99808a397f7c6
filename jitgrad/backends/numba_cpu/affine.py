"""Maps over coalesced loops: loads through views as affine offsets, and dims merged where
every buffer's strides allow."""

from __future__ import annotations

import numpy as np

from ...ir.tape import Var
from .codegen import (
    Kernel,
    KernelGen,
    _Body,
    at,
    numel,
)
from .plan import Plan
from .source import _finish

# An elementwise map whose every load reads a stored buffer through reshapes, permutes, expands
# and slices reads each buffer at an affine offset: base + sum(index[d] * stride[d]). Found by
# pushing the buffer's own offsets (an arange) through those ops with their NumPy impls, at
# lowering time. Then neighbouring dims whose strides line up in every buffer and in the output
# are one loop: a bias-add and ReLU over (N, C, 4, 4) read from a (C, N, 16) matmul result loops
# over (N, C, 16), long enough an inner loop to vectorize, where 4x4 was not.

_AFFINE_MOVES = ("reshape", "permute", "expand", "slice")


def _affine_leaves(plan: Plan, e, v: Var):
    """{value: (stored buffer, base, strides, eqns)} for every load of ``e``'s expression, or
    None when one is not affine, or when no two dims of ``v`` merge (nothing to gain)."""
    if e.prim.kind != "elementwise" or v.ndim < 2:
        return None
    leaves: dict = {}
    stack, seen = list(e.inputs), set()
    while stack:
        x = stack.pop()
        if x in seen or x in plan.scalars or numel(x.shape) <= 1:
            continue  # (one-element values are loaded once, before the loops)
        seen.add(x)
        p = plan.producer.get(x)
        if x not in plan.materialized and p is not None and p.prim.kind == "elementwise":
            stack.extend(p.inputs)
            continue
        chain, src = [], x
        while src not in plan.materialized:
            p = plan.producer.get(src)
            if p is None or p.prim.name not in _AFFINE_MOVES:
                return None
            chain.append(p)
            src = p.inputs[0]
        if x.shape != v.shape or src in plan.scalars:
            return None
        off = np.arange(numel(src.shape), dtype=np.int64).reshape(src.shape)
        for p in reversed(chain):
            off = np.asarray(p.prim.impl(off, **p.kwargs))
        form = _affine_form(off)
        if form is None:
            return None
        leaves[x] = (src, *form, chain)
    shape = [n for n in v.shape if n != 1]
    contiguous = _affine_form(np.arange(numel(v.shape)).reshape(v.shape))[1]
    groups = _merge_dims(v.shape, [contiguous] + [s for _, _, s, _ in leaves.values()])
    if len(groups) == len(shape):
        return None
    return leaves, groups


def _affine_form(off: np.ndarray):
    """(base, strides) with ``off[i] == base + i . strides`` everywhere, else None."""
    base = int(off.flat[0])
    strides = []
    expect = np.full(off.shape, base, dtype=np.int64)
    for d, n in enumerate(off.shape):
        step = 0
        if n > 1:
            step = int(off[(0,) * d + (1,) + (0,) * (off.ndim - d - 1)]) - base
            expect = expect + (np.arange(n, dtype=np.int64) * step).reshape(
                (1,) * d + (n,) + (1,) * (off.ndim - d - 1)
            )
        strides.append(step)
    return (base, strides) if np.array_equal(off, expect) else None


def _merge_dims(shape: tuple, all_strides: list) -> list:
    """Runs of dims (lists of axes, size-1 axes left out) that loop as one: each axis's stride is
    the next one's times its size, for every buffer."""
    groups: list = []
    for d in range(len(shape) - 1, -1, -1):
        if shape[d] == 1:
            continue
        if groups:
            inner = groups[0][0]
            if all(s[d] == s[inner] * shape[inner] for s in all_strides):
                groups[0].insert(0, d)
                continue
        groups.insert(0, [d])
    return groups


def _affine_map_kernel(g: KernelGen, v: Var, affine, parallel: bool) -> Kernel:
    leaves, groups = affine
    e = g.plan.producer[v]
    body = _Body(g)
    names = [f"m{j}" for j in range(len(groups))]
    sizes = [
        g.dim(("merged", v, j), numel(v.shape[a] for a in axes)) for j, axes in enumerate(groups)
    ]
    for j, (name, n) in enumerate(zip(names, sizes)):
        body.emit(g.loop(name, n, body, parallel and j == 0))
        body.indent += 1
    for x, (src, base, strides, chain) in leaves.items():
        g.covers.extend(chain)
        terms = [] if base == 0 else [g.dim(("base", x), base)]
        for j, axes in enumerate(groups):
            step = strides[axes[-1]]  # a run's innermost stride
            if step == 1:
                terms.append(names[j])
            elif step:
                terms.append(f"{names[j]} * {g.dim(('stride', x, j), step)}")
        g.affine[x] = (src, " + ".join(terms) or "0")
    val = g.expr(e, None, body)
    off = names[0]
    for name, n in zip(names[1:], sizes[1:]):
        off = f"({off}) * {n} + {name}"
    body.emit(f"{at(g.buf(v), off)} = {val}")
    kernel = _finish(g, body.lines, parallel)
    kernel.flat_index = off
    return kernel
