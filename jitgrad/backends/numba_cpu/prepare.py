"""What lowering decides about a tape before it generates kernels: the segment tables of
scatter-adds with constant indices, and which loops get threads (remembered across batch
sizes so that a new batch size generates the same source)."""

from __future__ import annotations

import numpy as np

from ... import dtypes
from ...ir.tape import Tape, Var
from .kernels import schedule
from .plan import Plan


def segment_tables(tape: Tape) -> tuple:
    """``tape`` with two more constants for each scatter_add whose index is a constant: for
    every target position ``p``, ``offsets[p]:offsets[p + 1]`` is the range of ``positions``
    listing the flat index entries that add into ``p``, in index order. The kernel then sums
    each target's contributions in a loop over targets (a gather: no store waits on the load
    of an earlier one, 2x faster than scattering a convolution's input gradient), in index
    order as np.add.at adds them. Indices out of range keep the plain scatter (the host checks
    those, see ``numba_cpu._index_checks``)."""
    consts = dict(tape.consts)
    fresh = tape.next_id()
    segments = {}
    for e in tape.eqns:
        if e.prim.name != "scatter_add" or e.inputs[1] not in consts:
            continue
        n = e.out.shape[e.kwargs["axis"]]
        flat = consts[e.inputs[1]].reshape(-1).astype(np.int64)
        flat = np.where(flat < 0, flat + n, flat)
        if flat.size == 0 or flat.min() < 0 or flat.max() >= n:
            continue
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(flat, minlength=n), out=offsets[1:])
        positions = np.argsort(flat, kind="stable").astype(np.int64)
        pair = []
        for arr in (offsets, positions):
            var = Var(fresh, arr.shape, dtypes.int64)
            fresh += 1
            consts[var] = arr
            pair.append(var)
        segments[e.out] = tuple(pair)
    if not segments:
        return tape, segments
    return tape.copy(consts=consts), segments


# kernels' structure (as generated without threads) -> which loops got threads
_THREADED: dict = {}


def planned_kernels(tape: Tape, segments: dict) -> tuple:
    """(plan, kernels) of ``tape``. Which loops get threads is decided by size, so a new batch
    size could make a new source, and a compile (the demo's last, partial batch): a tape whose
    kernels match an earlier one's but for that choice reuses it (with any loop either one
    threads)."""
    plan = Plan(tape, segments)
    order = [e.out for e in tape.eqns if e.out in plan.materialized]
    kernels = schedule(plan, order)
    chosen = tuple(plan.threaded)
    serial = kernels
    if any(chosen):
        serial = schedule(Plan(tape, segments, (False,) * len(chosen)), order)
    key = hash(tuple((k.kind, tuple(k.body)) for k in serial))
    before = _THREADED.get(key, chosen)
    if len(before) == len(chosen) and before != chosen:
        chosen = tuple(a or b for a, b in zip(chosen, before))
        plan = Plan(tape, segments, chosen)
        kernels = schedule(plan, order)
    _THREADED[key] = chosen
    return plan, kernels
