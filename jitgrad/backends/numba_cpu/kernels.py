"""Kernel sources: maps (incl. permuted copies and flat groups) and matmul, and the schedule
that picks each stored value's kernel (reductions, scatters and coalesced maps live in their
own modules)."""

from __future__ import annotations

from ... import dtypes
from ...ir.tape import Var
from . import runtime
from .affine import _affine_leaves, _affine_map_kernel
from .codegen import (
    _NP,
    GEMM_SPLIT_MIN,
    PARALLEL_MIN,
    PARTS,
    Flat,
    Kernel,
    KernelGen,
    _Body,
    at,
    numel,
)
from .decompositions import linalg_kernel
from .plan import Plan
from .reductions import combine_kernel, emit_combine, emit_init, finalized, fold, reduce_kernel
from .scans import scan_kernel, sort_kernel
from .scatters import scatter_kernel
from .source import _finish, _loops, _store_cast


def _transpose_source(plan: Plan, e):
    """(eqns, stored buffer) when ``e`` copies a stored buffer through one permute (then
    perhaps copies and reshapes, which keep the permuted order), else None."""
    chain = [e]
    while chain[-1].prim.name in ("reshape", "copy"):
        p = plan.producer.get(chain[-1].inputs[0])
        if p is None:
            return None
        chain.append(p)
    if chain[-1].prim.name != "permute" or chain[-1].out.dtype is not e.out.dtype:
        return None
    m = chain[-1].inputs[0]
    if m not in plan.materialized or m in plan.scalars or m.ndim < 2:
        return None
    return chain, m


def _transpose_kernel(g: KernelGen, v: Var, chain: list, m: Var, parallel: bool) -> Kernel:
    """A permuted copy of a stored buffer. Dims that stay adjacent and in order under the
    permutation are merged, so the innermost loop runs over a contiguous run on both sides (an
    NCHW <-> CNHW transpose moves whole H*W rows) instead of over the last dim alone."""
    perm = chain[-1].kwargs["perm"]
    g.covers.extend(chain)
    body = _Body(g)
    groups: list = []  # runs of m's dims, in the order the output visits them
    for d in perm:
        if groups and groups[-1][-1] + 1 == d:
            groups[-1].append(d)
        else:
            groups.append([d])
    hoist = g.hoisted

    def product(dims):
        terms = [g.vdim(m, d) for d in dims]
        return hoist.temp(" * ".join(terms), "z") if len(terms) > 1 else terms[0] if terms else "1"

    sizes = [product(run) for run in groups]
    strides = [product(range(run[-1] + 1, m.ndim)) for run in groups]
    src, dst = [], "0"
    opened = 0
    for j, (run, n) in enumerate(zip(groups, sizes)):
        a = f"a{j}"
        if numel(m.shape[d] for d in run) == 1:
            body.emit(f"{a} = 0")
        else:
            body.emit(g.loop(a, n, body, parallel and opened == 0))
            body.indent += 1
            opened += 1
        src.append(a if strides[j] == "1" else f"{a} * {strides[j]}")
        dst = a if dst == "0" else f"({dst}) * {n} + {a}"
    off = " + ".join(src)
    g.loads_of.setdefault(m, set()).add(off)
    body.emit(f"{at(g.buf(v), dst)} = {at(g.buf(m), off)}")
    kernel = _finish(g, body.lines, parallel)
    kernel.flat_index = dst
    return kernel


def _cat_kernel(g: KernelGen, v: Var, e, parallel: bool) -> Kernel:
    """A stored concatenation: one loop nest per piece, over the piece's own domain, storing
    at its offset along the axis (the inline rule's per-element if/elif over the pieces keeps
    loops from vectorizing, and is as long as there are pieces)."""
    axis = e.kwargs["axis"]
    g.covers.append(e)
    out = g.buf(v)
    lines: list = []
    offset = "0"
    parts = [part for part in e.inputs if part.shape[axis] != 0]
    for j, part in enumerate(parts):
        if j:
            size = g.vdim(parts[j - 1], axis)
            offset = size if offset == "0" else g.hoisted.temp(f"{offset} + {size}", "z")
        body = _Body(g)
        idx = tuple(_loops(g, v, part, range(part.ndim), body, parallel))
        val = g.load(part, idx, body)
        dst = tuple(
            f"{i} + {offset}" if k == axis and offset != "0" else i for k, i in enumerate(idx)
        )
        body.emit(f"{at(out, g.ravel(v, dst))} = {val}")
        lines += body.lines
    return _finish(g, lines, parallel)


def map_kernel(plan: Plan, v: Var) -> Kernel:
    g = KernelGen(plan, "map", v)
    out = g.buf(v)
    e = plan.producer[v]
    size = numel(v.shape)
    parallel = plan.threads(size >= PARALLEL_MIN)
    body = _Body(g)
    if v.ndim == 0:
        val = g.expr(e, (), body)
        body.emit(f"{out}[0] = {val}")
        return _finish(g, body.lines, False)
    flat = e.prim.kind == "elementwise" and all(
        x.ndim == 0 or plan.flat_ok(x, size) for x in e.inputs
    )
    flat = flat or (e.prim.name == "reshape" and plan.flat_ok(e.inputs[0], size))
    if flat:
        n = g.dim(("numel", v), size)
        body.emit(g.loop("i", n, body, parallel))
        body.indent += 1
        val = g.expr(e, Flat("i"), body)
        body.emit(f"{at(out, 'i')} = {val}")
        kernel = _finish(g, body.lines, parallel)
        kernel.flat_index = "i"
        return kernel
    moved = _transpose_source(plan, e)
    if moved is not None:
        return _transpose_kernel(g, v, *moved, parallel)
    if e.prim.name == "cat":
        return _cat_kernel(g, v, e, parallel)
    if e.prim.name == "reshape" and e.inputs[0].ndim > v.ndim:
        # A reshape that merges dims keeps every element's flat position: loop over the finer
        # input domain and store at its flat offset, so no index is unravelled (divisions by
        # runtime sizes dominated im2col-style gathers).
        x = e.inputs[0]
        g.covers.append(e)
        idx = tuple(_loops(g, v, x, range(x.ndim), body, parallel))
        val, off = g.load(x, idx, body), g.ravel(x, idx)
    else:
        affine = _affine_leaves(plan, e, v)
        if affine is not None:
            return _affine_map_kernel(g, v, affine, parallel)
        idx = tuple(_loops(g, v, v, range(v.ndim), body, parallel))
        val, off = g.expr(e, idx, body), g.ravel(v, idx)
    body.emit(f"{at(out, off)} = {val}")
    kernel = _finish(g, body.lines, parallel)
    kernel.flat_index = off
    return kernel


def _product(g: KernelGen, plan: Plan, v: Var, operands: list) -> Kernel:
    """A float product as a call of one of products.py's kernels: its operands' slots, sizes
    and transpose flags are its arguments, so it compiles nothing of its own."""
    e = plan.producer[v]
    g.covers.append(e)
    stored = []
    for x in e.inputs:
        if x in plan.materialized:
            stored.append((x, 0))
        else:  # a transposed view of a stored matrix: BLAS's transpose flag
            g.covers.append(plan.producer[x])
            stored.append((plan.producer[x].inputs[0], 1))
    (xa, ta), (xb, tb) = stored
    a = e.inputs[0]
    sizes = (numel(v.shape[:-2]), v.shape[-2], v.shape[-1], a.shape[-1], ta, tb)
    # the words BLAS reads its by-pointer arguments from, BLAS_WORDS per part
    words = plan.new_var((runtime.BLAS_WORDS * PARTS,), dtypes.int32)
    # A @ B^T may be computed as (B @ A^T)^T (see runtime.gemm_swapped), through a buffer
    tmp = plan.new_var((numel(v.shape),), v.dtype) if tb and not ta else v
    scratch = [words] + ([tmp] if tmp is not v else [])
    # a large product is split across threads, each calling BLAS (on one thread) for a part
    split = runtime.BLAS_THREADS and plan.threads(numel(v.shape) * a.shape[-1] >= GEMM_SPLIT_MIN)
    kernel = Kernel(
        "matmul", v, [v, xa, xb, *scratch], [], [], covers=g.covers, parallel=split,
        roots=[v], uses_blas=True, scratch=scratch,
    )  # fmt: skip
    kernel.product = ("split" if split else "product", v.dtype.name, [((v, xa, xb, words, tmp),
                                                                      sizes)])  # fmt: skip
    return kernel


def matmul_kernel(plan: Plan, v: Var) -> Kernel:
    e = plan.producer[v]
    g = KernelGen(plan, "matmul", v)
    out = g.buf(v)
    body = _Body(g)
    a, b = e.inputs
    m = g.vdim(v, v.ndim - 2)
    n = g.vdim(v, v.ndim - 1)
    k = g.vdim(a, a.ndim - 1)
    batch = g.dim(("batch", v), numel(v.shape[:-2]))
    operands = []
    for x, (rows, cols) in ((a, (m, k)), (b, (k, n))):
        if x in plan.materialized:
            operands.append((g.buf(x), rows, cols, False))
        else:  # a transposed view of a stored matrix
            src = plan.producer[x].inputs[0]
            operands.append((g.buf(src), cols, rows, True))
    if v.dtype.is_floating_point:  # BLAS, through a product kernel of the runtime
        return _product(g, plan, v, operands)
    # integer matmul: plain loops; an operand stored transposed is read across its rows
    (ba, _, _, ta), (bb, _, _, tb) = operands
    ia = f"q * {m} * {k} + " + (f"t * {m} + r" if ta else f"r * {k} + t")
    ib = f"q * {k} * {n} + " + (f"c * {k} + t" if tb else f"t * {n} + c")
    body.emit(f"for q in range({batch}):")
    body.emit(f"    for r in range({m}):")
    body.emit(f"        for c in range({n}):")
    body.emit(f"            s = {_NP[v.dtype.name]}(0)")
    body.emit(f"            for t in range({k}):")
    body.emit(f"                s += {ba}[{ia}] * {bb}[{ib}]")
    body.emit(f"            {out}[(q * {m} + r) * {n} + c] = s")
    return _finish(g, body.lines, False)


def group_kernel(plan: Plan, roots: list, size: int) -> Kernel:
    """Several values over one flat domain in one loop: maps store at the loop index, full
    reductions fold; shared subexpressions are computed once per element."""
    g = KernelGen(plan, "group", None)
    g.own = set(roots)
    for r in roots:
        g.buf(r)
    body = _Body(g)
    n = g.dim(("numel", roots[0]), size)
    accs = {}
    for j, r in enumerate(roots):
        e = plan.producer[r]
        if e.prim.kind == "reduce":  # a full reduction that folds (see Plan.groupable)
            accs[r] = f"acc{j}"
            emit_init(body, e.prim.reduction, fold(e.prim.reduction, e.inputs[0]), accs[r])
    parallel = plan.threads(size >= PARALLEL_MIN)
    body.emit(g.loop("i", n, body, parallel))
    body.indent += 1
    member_loads = {}
    for r in roots:
        before = {k: set(s) for k, s in g.loads_of.items()}
        e = plan.producer[r]
        if r in accs:
            val = g.load(e.inputs[0], Flat("i"), body)
            red = e.prim.reduction
            emit_combine(body, red, fold(red, e.inputs[0]), accs[r], val)
        else:
            val = g.expr(e, Flat("i"), body)
            body.emit(f"{at(g.buf_names[r], 'i')} = {val}")
            g.stored[r] = ("i", val)
        member_loads[r] = {k: s - before.get(k, set()) for k, s in g.loads_of.items()}
    body.indent = 1
    partials = []
    for r, acc in accs.items():
        if parallel:  # each part's result, folded by the combine kernel after the launch
            floating = plan.producer[r].inputs[0].dtype.is_floating_point
            name = g.scratch_buf(PARTS, dtypes.float64 if floating else dtypes.int64)
            body.emit(f"{name}[part] = {acc}")
            partials.append((g.scratch[-1], r))
        else:
            e = plan.producer[r]
            names = fold(e.prim.reduction, e.inputs[0])
            result = finalized(e.prim.reduction, names, acc) or acc
            body.emit(f"{g.buf_names[r]}[0] = {_store_cast(r, result)}")
    kernel = _finish(g, body.lines, parallel)
    kernel.root = roots[-1]
    kernel.roots = [r for r in roots if not parallel or r not in accs]
    kernel.flat_index = "i"
    kernel.member_loads = member_loads
    if partials:
        kernel.then = combine_kernel(plan, partials)
    return kernel


def schedule(plan: Plan, order: list) -> list:
    """Kernels for the stored values in ``order``: runs of consecutive values over the same flat
    domain share one loop, unless one reads a sum computed in the same run."""
    kernels, run, run_size = [], [], None

    def add(k: Kernel) -> None:
        kernels.append(k)
        if k.then is not None:  # a threaded sum's combine step runs right after it
            add(k.then)

    def flush():
        if len(run) > 1:
            add(group_kernel(plan, list(run), run_size))
        elif run:
            add(build(plan, run[0]))
        run.clear()

    for v in order:
        size = plan.groupable(v)
        sums = {r for r in run if plan.producer[r].prim.kind == "reduce"}
        if size is not None and size == run_size and not (plan.reads(v) & sums):
            run.append(v)
            continue
        flush()
        run_size = size
        if size is None:
            add(build(plan, v))
        else:
            run.append(v)
    flush()
    return kernels


# The kernel of a stored value, by its primitive's kind: reductions, scans, sorts, products,
# scatters and decompositions have kernels of their own; everything else (elementwise,
# movement, gathers, draws) is a map, whose loop computes the value inline
# (codegen.KernelGen.expr).
KERNELS = {
    "reduce": reduce_kernel,
    "scan": scan_kernel,
    "sort": sort_kernel,
    "matmul": matmul_kernel,
    "scatter": scatter_kernel,
    "linalg": linalg_kernel,
}


def build(plan: Plan, v: Var) -> Kernel:
    return KERNELS.get(plan.producer[v].prim.kind, map_kernel)(plan, v)


def paired(kernels: list) -> list:
    """``kernels`` with each split product that the next split product does not read merged
    with it into one threaded call (products.py's pair kernel: side by side when both are large
    and alike, decided at run time). Structure alone decides, so every batch size gets the same
    calls."""
    out: list = []
    for k in kernels:
        last = out[-1] if out else None
        if _split(last) and _split(k) and last.product[1] == k.product[1]:
            if last.root not in k.buffers:
                merged = Kernel(
                    "pair", k.root, last.buffers + k.buffers, [], [],
                    covers=last.covers + k.covers, parallel=True, roots=last.roots + k.roots,
                    uses_blas=True, scratch=last.scratch + k.scratch,
                )  # fmt: skip
                merged.product = ("pair", k.product[1], last.product[2] + k.product[2])
                out[-1] = merged
                continue
        out.append(k)
    return out


def _split(k) -> bool:
    return k is not None and k.product is not None and k.product[0] == "split"
