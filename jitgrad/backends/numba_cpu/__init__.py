"""The Numba CPU backend: a tape lowered to fused loop kernels and one generated driver.

``lower(tape)`` plans which values are stored (see ``plan.Plan``), generates one kernel per
stored value, and pastes the kernels, in order, into one generated driver (a real file, see
``cache.load_module``, compiled with Numba's ``cache=True``; serial drivers with the lean
pipeline of ``pipeline.py``). One call of the executable is one call of the driver from
Python. Buffers that cross kernels live in a workspace allocated once per executable (as do
kernels' scratch buffers); outputs and new ``.grad`` arrays are allocated fresh per call, by
the caller, so the driver allocates nothing; parameter and optimizer-state updates are written
in place when no later kernel reads the old value.
"""

from __future__ import annotations

import functools
import keyword
import os
import re
import threading

import numba
import numpy as np
from numba import typeof

from ... import dtypes
from ...ir.tape import Tape, Var
from ...locks import new_lock
from . import cache, runtime
from .codegen import FASTMATH, numel
from .kernels import schedule
from .plan import Plan
from .source import HEADER

IN_PLACE = object()  # a write the executable already did in place

# NOTE: a driver's parallel loops are short (tens of microseconds), so the fork/join cost of the
# threading layer counts: with TBB the demo CNN step took 1.6 ms, with OpenMP 0.83 ms (TBB is
# Numba's first choice when installed). OpenMP is asked for first unless the user chose.
if not {"NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY"} & set(os.environ):
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]


def segment_tables(tape: Tape) -> tuple:
    """``tape`` with two more constants for each scatter_add whose index is a constant: for
    every target position ``p``, ``offsets[p]:offsets[p + 1]`` is the range of ``positions``
    listing the flat index entries that add into ``p``, in index order. The kernel then sums
    each target's contributions in a loop over targets (a gather: no store waits on the load
    of an earlier one, 2x faster than scattering a convolution's input gradient), in index
    order as np.add.at adds them. Indices out of range keep the plain scatter (the host checks
    those, see ``_index_checks``)."""
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


def _planned_kernels(tape: Tape, segments: dict) -> tuple:
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


_THREADED_LOCK = new_lock()


class Executable:
    backend = "numba"

    def __init__(self, tape: Tape):
        tape, segments = segment_tables(tape)
        self.tape = tape
        plan, self.kernels = _planned_kernels(tape, segments)
        self.index_checks = _index_checks(tape)
        self._layout(plan)
        # Held by every call: the workspace (and BLAS's argument words) serve one call at a
        # time. Threaded drivers share one lock, since they use every core anyway and Numba's
        # workqueue threading layer aborts the process on concurrent launches.
        self.lock = _THREADED_LOCK if self.parallel else new_lock()
        self._load()
        self._prepare_call()

    # -- buffers and the driver ----------------------------------------------------------------
    def _layout(self, plan: Plan) -> None:
        tape = self.tape
        produced = {r: i for i, k in enumerate(self.kernels) for r in k.roots}
        fresh = [v for v in tape.outputs if v in produced]
        fresh += [v for b, v in tape.writes if b.kind == "grad" and v in produced]
        fresh = list(dict.fromkeys(fresh))
        self.fresh = fresh
        self.const_vars = [v for v in tape.consts if v not in plan.scalars]
        # in-place parameter updates
        self.in_place: dict = {}  # write Var -> capture input Var
        outputs = set(tape.outputs)
        for b, v in tape.writes:
            if b.kind != "capture" or v not in produced or v in outputs or v in fresh:
                continue
            target = next(x for x, bb in tape.bindings.items() if bb is b)
            k = self.kernels[produced[v]]
            if k.kind not in ("map", "group") or target in self.in_place.values():
                continue
            if target in outputs:
                continue
            own = getattr(k, "flat_index", None)
            loads = plan_loads(k, target)
            if k.kind == "group":  # only this member may read the old value
                others = [m for r, m in k.member_loads.items() if r is not v]
                if any(m.get(target) for m in others):
                    continue
                loads = k.member_loads[v].get(target, set())
            later = any(target in kk.buffers for kk in self.kernels[produced[v] + 1 :])
            if loads <= {own} and not later:
                self.in_place[v] = target
                k.in_place = target
        self.workspace = [v for v in produced if v not in fresh and v not in self.in_place]
        self.workspace += [v for k in self.kernels for v in k.scratch]
        # driver source
        names = {}
        args = []
        for i, v in enumerate(tape.inputs):
            names[v] = f"in{i}"
            args.append(f"in{i}")
        for i, v in enumerate(fresh):  # allocated by the caller, per call
            names[v] = f"f{i}"
            args.append(f"f{i}")
        for i, v in enumerate(self.const_vars):
            names[v] = f"k{i}"
            args.append(f"k{i}")
        for i, v in enumerate(self.workspace):
            names[v] = f"w{i}"
            args.append(f"w{i}")
        for v, target in self.in_place.items():
            names[v] = names[target]
        dims, consts, lines = [], [], []
        shared: dict = {}  # a size's key -> its driver local, read from D once per call

        def header(j: int, k) -> tuple:
            """Kernel ``j``'s comment and size reads; (its names for inline_body, where its
            constants start)."""
            c = len(consts)
            consts.extend(k.consts)
            # no sizes in the source: a new batch size must reuse the compiled code
            lines.append(
                f"    # kernel {j}: {k.kind} -> {k.root} ({k.root.dtype.name}, rank {k.root.ndim})"
            )
            bufs = {f"b{i}": names[x] for i, x in enumerate(k.buffers)}
            for i, key in enumerate(k.dim_keys):
                if key not in shared:
                    shared[key] = f"d{len(shared)}"
                    lines.append(f"    {shared[key]} = D[{len(dims)}]")
                    dims.append(k.dims[i])
                bufs[f"n{i}"] = shared[key]
            return bufs, c

        paired = _paired_products(self.kernels)
        for j, k in enumerate(self.kernels):
            if j - 1 in paired:
                continue  # run beside kernel j - 1
            bufs, c = header(j, k)
            if j in paired:
                nxt = self.kernels[j + 1]
                calls = [(k, bufs, c, f"k{j}_"), (nxt, *header(j + 1, nxt), f"k{j + 1}_")]
                lines.append(f"    # kernels {j} and {j + 1}: one parallel loop")
                lines += _concurrent_parts(calls, f"k{j}_")
                continue
            body = [line for line in k.body if not _DIM_LOAD.fullmatch(line.strip())]
            lines += inline_body(body, f"k{j}_", bufs, c)
        self.dims = np.array(dims, dtype=np.int64)
        self.consts = np.array(consts, dtype=np.float64)
        # the words BLAS reads its arguments from (runtime.gemm), BLAS_WORDS per thread
        blas = any(k.uses_blas for k in self.kernels)
        words = runtime.BLAS_WORDS * numba.config.NUMBA_NUM_THREADS
        self.blas_args = (np.zeros(words, np.int32),) if blas else ()
        # NOTE: Numba's thread pool and OpenBLAS's threads on the same cores slowed the BLAS calls
        # of a wide MLP step 5x (17 ms vs 3.5 ms). A driver with a product sets BLAS to one
        # thread for its run and splits large products across its own threads instead (smaller
        # ones lost more to waking BLAS's threads than they gained: the demo MLP step took
        # 105 us instead of 97); where it cannot set BLAS's threads, BLAS keeps them and the
        # loops run serially.
        parallel = any(k.parallel for k in self.kernels)
        if blas and runtime.BLAS_THREADS:
            lines = ["    blas_enter()", *lines, "    blas_leave()"]
        elif blas:
            parallel = False
        self.parallel = parallel
        tail = ["D", "C"] + ["G"] * len(self.blas_args)
        self.driver_source = (
            HEADER
            + f"\n\n@njit(cache=_JG_CACHE, fastmath={FASTMATH}, error_model='numpy', nogil=True"
            + (", parallel=True" if parallel else ", pipeline_class=LeanPipeline")
            + ")\n"
            + f"def driver({', '.join(args + tail)}):\n"
            + "\n".join(lines)
            + "\n"
        )
        self._names = names

    def _load(self) -> None:
        driver_mod = cache.load_module(self.driver_source, "jgd")
        self.name = driver_mod.__name__.rsplit(".", 1)[-1]
        self.driver = driver_mod.driver
        tape = self.tape
        self.const_arrays = [
            np.ascontiguousarray(tape.consts[v]).reshape(-1) for v in self.const_vars
        ]
        self.work_arrays = [np.empty(numel(v.shape), v.dtype.np) for v in self.workspace]
        sig = [typeof(np.empty(0, v.dtype.np)) for v in tape.inputs + self.fresh]
        sig += [typeof(a) for a in self.const_arrays + self.work_arrays]
        sig += [typeof(a) for a in (self.dims, self.consts, *self.blas_args)]
        misses = sum(self.driver.stats.cache_misses.values())
        self.driver.compile(tuple(sig))
        # 1 when Numba compiled (no disk or memory cache had this driver), else 0
        self.compiled = int(sum(self.driver.stats.cache_misses.values()) > misses)

    # -- calling -------------------------------------------------------------------------------
    def _value_plans(self) -> tuple:
        """Where each output and each write comes from after a driver call: ``(kind, key, var)``
        with kind ``none``, ``in_place`` (already written), ``fresh`` (a driver result),
        ``work`` (a workspace array, copied out), ``input`` (copied) or ``const`` (copied)."""
        tape = self.tape
        pos = {v: i for i, v in enumerate(tape.inputs)}
        fresh_pos = {v: i for i, v in enumerate(self.fresh)}
        work = {v: a for v, a in zip(self.workspace, self.work_arrays)}

        def plan(v):
            if v is None:
                return ("none", None, None)
            if v in self.in_place:
                return ("in_place", None, v)
            if v in fresh_pos:
                return ("fresh", fresh_pos[v], v)
            if v in work:
                return ("work", work[v], v)
            if v in pos:
                return ("input", pos[v], v)
            return ("const", np.array(tape.consts[v]), v)

        return [plan(v) for v in tape.outputs], [plan(v) for _, v in tape.writes]

    def new_fresh(self) -> list:
        """New flat arrays for the outputs and ``.grad`` values a call returns (the driver
        fills them)."""
        return [np.empty(n, dt) for n, dt in self._fresh_specs]

    def _prepare_call(self) -> None:
        """One getter per output and write (from ``_value_plans``), so a call does no lookups."""
        pos = {v: i for i, v in enumerate(self.tape.inputs)}
        self._in_place_inputs = {pos[t] for t in self.in_place.values()}

        def getter(plan):
            kind, key, v = plan
            if kind == "none":
                return None
            if kind == "in_place":
                return IN_PLACE
            shape = v.shape
            if kind == "fresh":
                return lambda flats, fresh: fresh[key].reshape(shape)
            if kind == "work":
                return lambda flats, fresh: key.reshape(shape).copy()
            if kind == "input":
                return lambda flats, fresh: flats[key].reshape(shape).copy()
            return lambda flats, fresh: key.copy()

        outs, writes = self._value_plans()
        self._out_get = [getter(p) for p in outs]
        self._write_get = [getter(p) for p in writes]
        self._args_tail = (*self.const_arrays, *self.work_arrays, self.dims, self.consts)
        self._args_tail += self.blas_args
        self._fresh_specs = [(numel(v.shape), v.dtype.np) for v in self.fresh]

    def direct_call(self, fetch: list, ns: dict, stable: dict, numbers: dict):
        """Source for calling the driver inline from generated host code: statements, and one
        expression per output and per write (``"_IN_PLACE"`` for writes already done).

        ``stable`` maps input positions to the (shape, dtype) of buffers that usually stay the
        same object from call to call (captured tensors): the code keeps their flat views and
        checks only identity; a new buffer is checked against that shape and dtype (``_MISS``
        when it differs) and, when C-contiguous, becomes the one kept. ``numbers`` maps input
        positions to expressions of Python numbers (hyperparameters, float arguments): each
        call writes them into a float64 buffer of one element that the code keeps (calls of an
        executable take turns, so one buffer serves them all)."""
        ns["_drv"], ns["_tail"] = self.driver, self._args_tail
        ns["_bind"] = functools.partial(_bind, ns)
        ns["_check_index"] = _check_index
        checked = dict(self.index_checks)
        lines = []
        for i, f in enumerate(fetch):
            if i in numbers:
                ns[f"_n{i}"] = np.empty(1, np.float64)
                lines += [f"    _n{i}[0] = {numbers[i]}", f"    a{i} = _n{i}"]
                continue
            lines.append(f"    a{i} = {f}")
            if i in checked:
                lines.append(f"    _check_index(a{i}, {checked[i]})")
            if i in stable:
                ns[f"_d{i}"], ns[f"_m{i}"], ns[f"_f{i}"] = None, stable[i], None
                lines += [
                    f"    if a{i} is _d{i}:",
                    f"        v{i} = _f{i}",
                    "    else:",
                    f"        v{i} = _bind({i}, a{i})",
                    f"        if v{i} is None:",
                    "            return _MISS",
                ]
        moving = [i for i in range(len(fetch)) if i not in stable and i not in numbers]
        cond = [f"a{i}.flags.c_contiguous" for i in moving] + [f"v{i} is not False" for i in stable]
        if cond:  # a non-contiguous input takes the general path
            lines += [f"    if not ({' and '.join(cond)}):", "        return _slow(leaves)"]
        # (a contiguous 1-D input is its own flat view)
        one_d = {i for i, v in enumerate(self.tape.inputs) if v.ndim == 1} | set(numbers)
        flat = "".join(
            f"v{i}, " if i in stable else f"a{i}, " if i in one_d else f"a{i}.reshape(-1), "
            for i in range(len(fetch))
        )
        ns["_empty"] = np.empty
        made = []
        for i, (n, dt) in enumerate(self._fresh_specs):  # (new_fresh, inline)
            ns[f"_ft{i}"] = dt
            made.append(f"_empty({n}, _ft{i})")
        lines.append(f"    fresh = [{', '.join(made)}]")
        lines.append(f"    _drv({flat}*fresh, *_tail)")

        def expr(plan):
            kind, key, v = plan
            if kind == "none":
                return "None"
            if kind == "in_place":
                return "_IN_PLACE"
            if kind == "fresh":  # (the driver's fresh arrays are flat)
                return f"fresh[{key}]" if v.ndim == 1 else f"fresh[{key}].reshape({v.shape!r})"
            if kind == "input":
                return f"a{key}.reshape({v.shape!r}).copy()"
            ns[f"_v{v.id}"] = key  # a workspace array or a constant
            suffix = f".reshape({v.shape!r}).copy()" if kind == "work" else ".copy()"
            return f"_v{v.id}{suffix}"

        outs, writes = self._value_plans()
        return lines, [expr(p) for p in outs], [expr(p) for p in writes]

    def __call__(self, inputs: list):
        with self.lock:
            return self._call(inputs)

    def _call(self, inputs: list):
        for i, n in self.index_checks:
            _check_index(inputs[i], n)
        flats = []
        copied = None
        for a in inputs:
            if a.flags.c_contiguous:
                flats.append(a.reshape(-1))
            else:
                if copied is None:
                    copied = []
                copied.append((len(flats), a))
                flats.append(np.ascontiguousarray(a).reshape(-1))
        fresh = self.new_fresh()
        self.driver(*flats, *fresh, *self._args_tail)
        self._last_call = (flats, fresh)
        if copied:  # a non-contiguous captured buffer written in place: copy the result back
            for i, original in copied:
                if i in self._in_place_inputs:
                    np.copyto(original, flats[i].reshape(original.shape))
        outs = [g(flats, fresh) for g in self._out_get]
        writes = [g if g is None or g is IN_PLACE else g(flats, fresh) for g in self._write_get]
        return outs, writes

    def values(self, inputs=None) -> dict:
        """The stored values of the last call (for agreement checks)."""
        flats, fresh = self._last_call
        out = {}
        for i, v in enumerate(self.fresh):
            out[v] = fresh[i].reshape(v.shape)
        for i, v in enumerate(self.workspace):
            out[v] = self.work_arrays[i].reshape(v.shape)
        pos = {v: i for i, v in enumerate(self.tape.inputs)}
        for v, target in self.in_place.items():
            out[v] = flats[pos[target]].reshape(v.shape)
        return out

    def kernel_of(self, var) -> str | None:
        for j, k in enumerate(self.kernels):
            if var in k.roots or any(e.out is var for e in k.covers):
                return f"kernel {j} ({k.kind} -> {k.root}) of {self.name}"
        return None

    def source(self) -> str:
        """The generated driver: one function, each fused kernel a commented block in it."""
        return self.driver_source


_GLOBAL_NAMES = {
    "np",
    "math",
    "range",
    "prange",
    "abs",
    "max",
    "min",
    "float",
    "int",
    "True",
    "False",
    "None",
    "D",
    "C",
    "G",
}


_NAME = re.compile(r"(?<![.\w])([A-Za-z_]\w*)")
_DIM_LOAD = re.compile(r"n(\d+) = dims\[\1\]")
_CONSTS = re.compile(r"\bconsts\[(\d+)\]")


def _index_checks(tape: Tape) -> list:
    """(input position, axis size) for each input that a gather indexes with: compiled loops do
    not check bounds, so the host checks those indices before every call. (Indices built in the
    tape from constants were checked when traced; computed ones are in range by construction.)"""
    producer = {e.out: e for e in tape.eqns}
    position = {v: i for i, v in enumerate(tape.inputs)}
    checks: dict = {}
    for e in tape.eqns:
        if e.prim.name not in ("take", "scatter_add"):
            continue
        v = e.inputs[1]
        while v in producer and producer[v].prim.name in ("reshape", "expand", "permute"):
            v = producer[v].inputs[0]  # views that keep every element
        if v in position:
            n = e.inputs[0].shape[e.kwargs["axis"]]
            i = position[v]
            checks[i] = min(n, checks.get(i, n))
    return sorted(checks.items())


def _check_index(a: np.ndarray, n: int) -> None:
    if a.size and (a.min() < -n or a.max() >= n):
        bad = a[(a < -n) | (a >= n)].flat[0]
        raise IndexError(
            f"index out of range in self: index {int(bad)} is outside [-{n}, {n}) for a gather "
            f"over a dimension of size {n} in a compiled call; check the indices (labels, "
            "token ids) against the size of what they index."
        )


def _bind(ns: dict, i: int, a: np.ndarray):
    """A captured input's new buffer: None if its shape or dtype is not the traced one (a guard
    fails), False if it is not C-contiguous (the general path copies it), else its flat view,
    kept with the buffer for the next calls."""
    if (a.shape, a.dtype) != ns[f"_m{i}"]:
        return None
    if not a.flags.c_contiguous:
        return False
    ns[f"_d{i}"], ns[f"_f{i}"] = a, a.reshape(-1)
    return ns[f"_f{i}"]


def inline_body(lines: list, prefix: str, buffers: dict, consts_at: int) -> list:
    """A kernel's body for pasting into the driver: buffer arguments (and any other names in
    ``buffers``, such as its sizes) renamed to the driver's, ``consts[i]`` read from the
    driver's ``C`` at the kernel's offset, and every other local name prefixed (attributes and
    globals kept)."""
    lines = [_CONSTS.sub(lambda m: f"C[{consts_at + int(m.group(1))}]", line) for line in lines]
    import jitgrad.backends.numba_cpu.runtime as rt

    keep = _GLOBAL_NAMES | set(keyword.kwlist) | {n for n in dir(rt) if not n.startswith("_")}

    def rename(m):
        name = m.group(1)
        if name in keep:
            return name
        return buffers.get(name, prefix + name)

    return [_NAME.sub(rename, line) for line in lines]


def _paired_products(kernels: list) -> set:
    """Positions ``j`` of split products that share one parallel loop with product ``j + 1``
    (see ``_concurrent_parts``): the next product is split too and reads nothing the first
    writes. Structure alone decides, so every batch size gets the same source."""
    paired: set = set()
    for j in range(len(kernels) - 1):
        a, b = kernels[j], kernels[j + 1]
        if j - 1 not in paired and a.part and b.part and a.root not in b.buffers:
            paired.add(j)
    return paired


# Two products run side by side when each has every dim at least this and neither has over
# 5/4 of the other's multiply-adds. On two threads the two gradients of a 256x512x512 product
# took 1.35 ms side by side against 1.49 ms one after the other, each split in two; those of a
# 256x512x10 product, 76 us side by side against 48 us split (a skinny product gains from both
# cores' memory bandwidth).
SIDE_BY_SIDE_MIN_DIM = 32


def _concurrent_parts(calls: list, prefix: str) -> list:
    """Driver lines for two independent split products in one parallel loop. When both are
    large and alike (decided at run time, from the sizes) the first runs on ``na`` of the
    ``nt`` threads and the second on the other ``nb``, each thread calling BLAS once on a
    larger part; else every thread runs its part of the first, then of the second. The second
    takes BLAS argument words from ``G[gb * BLAS_WORDS :]`` (0 when a thread runs both). ``calls``:
    per product, (kernel, its names, where its constants start, its prefix)."""
    t, nt, na, nb, gb, side = (prefix + x for x in ("t", "nt", "na", "nb", "gb", "side"))
    # each product's arguments in the driver's names
    named = [(k.part[0], inline_body(k.part[1], own, bufs, c)) for k, bufs, c, own in calls]
    # (batch, m, n, k) of each: its arguments after (a, b, out, G), see kernels.matmul_kernel
    dims = [args[4:8] for _, args in named]
    sizes = [d[1:] for d in dims]
    macs = [" * ".join(d) for d in dims]
    lines = [
        f"    {nt} = G.size // {runtime.BLAS_WORDS}",
        f"    {side} = min({', '.join(sizes[0] + sizes[1])}) >= {SIDE_BY_SIDE_MIN_DIM}",
        f"    {side} = {side} and 4 * max({macs[0]}, {macs[1]}) <= 5 * min({macs[0]}, {macs[1]})",
        f"    {na} = max({nt} // 2, 1) if {side} else {nt}",
        f"    {nb} = max({nt} - {na}, 1) if {side} else {nt}",
        f"    {gb} = {na} % {nt}",
        f"    for {t} in prange({nt}):",
    ]
    parts = [  # (which threads, the part, of how many, BLAS's argument words)
        (f"{t} < {na}", t, na, "G"),
        (f"{t} >= {nt} - {nb}", f"{t} - ({nt} - {nb})", nb, f"G[{gb} * {runtime.BLAS_WORDS} :]"),
    ]
    for (fn, args), (cond, part, count, words) in zip(named, parts):
        args = [words if a == "G" else a for a in args]
        lines += [f"        if {cond}:", f"            {fn}({', '.join(args)}, {part}, {count})"]
    return lines


def plan_loads(kernel, target) -> set:
    """Flat offsets at which ``kernel`` reads ``target`` (recorded while generating it)."""
    return getattr(kernel, "loads", {}).get(target, set())


def lower(tape: Tape) -> Executable:
    return Executable(tape)
