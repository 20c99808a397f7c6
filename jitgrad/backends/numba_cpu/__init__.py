"""The Numba CPU backend: a tape lowered to fused loop kernels, called in order by a program.

``lower(tape)`` plans which values are stored (see ``plan.Plan``) and generates one kernel per
stored value (``kernels.schedule``). Each kernel is a module of its own, named by a hash of its
source (``cache.load_module``), holding one C function with the signature every kernel shares
(``abi.KERNEL``): its buffers, sizes and constants are arguments, so kernels that compute the
same thing on other tensors or sizes are the same source, compiled once per machine and cached
on disk by Numba. Compile time follows the number of distinct kernels, not of kernels.

An executable lays out a buffer table (an address and a length per buffer) and a program (each
call's kernel address and arguments, see ``abi``). One call of the executable is one call of a
small driver from Python, which stores the addresses of that call's inputs and new arrays and
runs the program. Buffers that cross kernels live in a workspace allocated once per executable
(as do kernels' scratch buffers); outputs and new ``.grad`` arrays are allocated fresh per
call, by the caller, so nothing compiled allocates; parameter and optimizer-state updates are
written in place when no later kernel reads the old value.

``Executable`` lays out and builds here; its call path is ``calls.CallingMixin``, its source,
values and profile ``describe.DescribingMixin``.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass

import numba
import numpy as np
from numba import typeof

from ... import blas as numpy_blas
from ...ir.tape import Tape, Var
from ...locks import new_lock
from . import cache, products, runtime
from .abi import driver_source, launch_address, run_program_address
from .calls import IN_PLACE, CallingMixin, _check_index  # noqa: F401  (IN_PLACE: compile_host)
from .codegen import PARTS, Kernel, numel
from .decompositions import raise_failures
from .describe import DescribingMixin
from .kernels import paired, schedule
from .plan import Plan
from .prepare import planned_kernels, segment_tables
from .source import HEADER, kernel_source

# NOTE: a driver's parallel loops are short (tens of microseconds), so the fork/join cost of the
# threading layer counts: with TBB the demo CNN step took 1.6 ms, with OpenMP 0.83 ms (TBB is
# Numba's first choice when installed). OpenMP is asked for first unless the user chose.
if not {"NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY"} & set(os.environ):
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]


_THREADED_LOCK = new_lock()
# inputs whose buffers usually stay from call to call: captured tensors, and the one-element
# buffers host code keeps for Python numbers (see Executable.direct_call)
_KEPT = ("capture", "hyper", "scalar")


@dataclass
class Call:
    """One call of an executable's program: ``kernel``'s function (from its module ``source``,
    or at ``address`` for the runtime's own) with its buffers' slots and sizes (``words``) and
    its constants, on threads or not."""

    kernel: Kernel
    source: str | None
    words: list
    consts: list
    threaded: bool
    address: int = 0


# BLAS on one thread around an executable's calls (see runtime.blas_kernel_addresses)
_BLAS = Kernel("blas", None, [], [], [])
_COMPILED: set = set()  # generated modules whose code this process compiled


def _first_compile(module, compiled: bool) -> int:
    """1 the first time this process sees ``module`` compiled (not loaded from a cache)."""
    name = module.__name__
    if not compiled or name in _COMPILED:
        return 0
    _COMPILED.add(name)
    return 1


class Executable(CallingMixin, DescribingMixin):
    backend = "numba"

    def __init__(self, tape: Tape, build: bool = True):
        _check_dtypes(tape)
        tape, segments = segment_tables(tape)
        self.tape = tape
        plan, kernels = planned_kernels(tape, segments)
        self.kernels = paired(kernels)
        self.index_checks = _index_checks(tape)
        self._layout(plan)
        # Held by every call: the workspace and the buffer table serve one call at a time.
        # Threaded executables share one lock, since they use every core anyway and Numba's
        # workqueue threading layer aborts the process on concurrent launches.
        self.lock = _THREADED_LOCK if self.parallel else new_lock()
        self.compiled = 0
        if build:
            self.build()

    # -- buffers, calls and the program --------------------------------------------------------
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
        # A call's new arrays (outputs, new gradients) are views into one block per dtype,
        # each view starting on a 64-byte boundary.
        blocks: dict = {}
        self.fresh_at = []  # per fresh value: (its block, its offset in elements)
        for v in fresh:
            item = v.dtype.np.itemsize
            b = blocks.setdefault(v.dtype.name, [len(blocks), 0, v.dtype.np])
            self.fresh_at.append((b[0], b[1]))
            b[1] += -(-max(numel(v.shape), 1) * item // 64) * 64 // item
        self.blocks = [(n, dt) for _, n, dt in sorted(blocks.values(), key=lambda b: b[0])]
        # Slots of the buffer table. First what the driver stores on every call: the inputs
        # that change from call to call (arguments, .grad values) and the blocks; then inputs
        # whose buffers stay (captured tensors, numbers: stored when a buffer changes, see
        # ``bind``), the new arrays (block addresses plus offsets, see abi.run_program), the
        # constants and the workspace (stored once).
        kinds = [tape.bindings[v].kind for v in tape.inputs]
        self.moving = [i for i, kind in enumerate(kinds) if kind not in _KEPT]
        self.kept = [i for i, kind in enumerate(kinds) if kind in _KEPT]
        order = [("input", i) for i in self.moving] + [("block", b) for b in range(len(blocks))]
        order += [("input", i) for i in self.kept] + [("fresh", v) for v in fresh]
        order += [("buffer", v) for v in self.const_vars + self.workspace]
        self.slot_of = {key: s for s, key in enumerate(order)}
        slot = {v: self.slot_of["input", i] for i, v in enumerate(tape.inputs)}
        slot.update({v: self.slot_of["fresh", v] for v in fresh})
        slot.update({v: self.slot_of["buffer", v] for v in self.const_vars + self.workspace})
        for v, target in self.in_place.items():
            slot[v] = slot[target]
        self.n_slots = len(order)
        blas = any(k.uses_blas for k in self.kernels)
        # NOTE: Numba's thread pool and OpenBLAS's threads on the same cores slowed the BLAS
        # calls of a wide MLP step 5x (17 ms vs 3.5 ms). An executable with a product sets BLAS
        # to one thread for its run and splits large products across Numba's threads instead
        # (smaller ones lost more to waking BLAS's threads than they gained: the demo MLP step
        # took 105 us instead of 97); where it cannot set BLAS's threads, BLAS keeps them and
        # every loop runs serially.
        threads = not blas or runtime.BLAS_THREADS
        self.parallel = any(k.parallel and threads for k in self.kernels)
        parts = PARTS if self.parallel else 1
        self.calls = []
        for k in self.kernels:
            threaded = k.parallel and threads
            if k.product is not None:  # a kernel of products.py
                words = [w for bufs, sizes in k.product[2] for w in (*map(slot.get, bufs), *sizes)]
                self.calls.append(Call(k, None, words, [], threaded))
                continue
            dims = [parts if key == ("parts",) else d for key, d in zip(k.dim_keys, k.dims)]
            slots = [slot[v] for v in k.buffers]
            src = kernel_source(k, slots)
            self.calls.append(Call(k, src, slots + dims, list(k.consts), threaded))
        self.blas = blas and runtime.BLAS_THREADS
        self.name = cache.module_name(self.sources()[-1], "jgd")  # the driver's module
        if self.blas:  # (addresses filled in by build)
            self.calls = [Call(_BLAS, None, [], [], False), *self.calls]
            self.calls.append(Call(_BLAS, None, [], [], False))
        self.parts = parts

    def sources(self) -> list:
        """The generated modules this executable runs: each distinct kernel, then the driver."""
        kernels = list(dict.fromkeys(c.source for c in self.calls if c.source is not None))
        return kernels + [driver_source(len(self.moving) + len(self.blocks), HEADER)]

    def new_modules(self) -> int:
        """How many of this executable's kernels no cache directory holds yet (to compile)."""
        return sum(not cache.exists(src, "jgk") for src in self.sources()[:-1])

    def _driver_dtypes(self) -> list:
        """The dtypes of the driver's arrays: the moving inputs', then the blocks'."""
        dts = [self.tape.inputs[i].dtype.np for i in self.moving] + [dt for _, dt in self.blocks]
        return [np.dtype(dt).name for dt in dts]

    def jobs(self) -> list:
        """What another process compiles so that ``build`` finds everything in the caches
        (see ``run_jobs``): plain data, one job per kernel, then the driver's and the
        runtime's."""
        sources = self.sources()
        jobs = [{"source": src, "prefix": "jgk"} for src in sources[:-1]]
        jobs.append({"source": sources[-1], "prefix": "jgd", "driver": self._driver_dtypes()})
        forms = sorted({c.kernel.product[:2] for c in self.calls if c.kernel.product})
        jobs.append({"runtime": {"blas": self.blas, "launch": self.parallel, "products": forms}})
        return jobs

    def build(self) -> None:
        """Compile (or load from the caches) every kernel and the driver, and lay out the
        buffer table and the program."""
        for _ in self.build_steps():
            pass

    def build_steps(self, shared=None, first: int = 0):
        """``build``, one generated module (or runtime function) per step: a generator, so a
        caller can spread loading a background build's code over several calls. With
        ``shared`` (compile_worker.Shared) the worker builds some of the jobs (``jobs()``, the
        build's from ``first`` on): this builds those it claims first, then loads the rest
        from the caches as the worker finishes them."""
        compiled = 0
        fns = {}
        sources = self.sources()
        n = len(sources) + 1  # (the jobs: the kernels, the driver, the runtime's functions)
        theirs: list = []  # jobs the worker started first: loaded once it has finished them

        def order():
            for j in range(n):  # (claimed one at a time, as this process reaches each)
                if shared is None or shared.claim(first + j):
                    yield j
                else:
                    theirs.append(j)
            for j in theirs:
                shared.wait(first + j)  # (then loaded from the caches; built here if it failed)
                yield j

        for j in order():
            if j == n - 1:  # the runtime's functions (see jobs())
                run_jobs(self.jobs()[-1:])
            elif j == n - 2:
                driver_mod = cache.load_module(sources[-1], "jgd")
                self.driver = driver_mod.driver
                misses = sum(self.driver.stats.cache_misses.values())
                self.driver.compile(_driver_signature(self._driver_dtypes()))
                compiled += int(sum(self.driver.stats.cache_misses.values()) > misses)
            else:
                mod = cache.load_module(sources[j], "jgk")
                fns[sources[j]] = mod.kernel.address
                compiled += _first_compile(mod, mod.kernel.cache_hits == 0)
            yield
        if self.blas:
            self.calls[0].address, self.calls[-1].address = runtime.blas_kernel_addresses()
        for c in self.calls:
            if c.source is not None:
                c.address = fns[c.source]
            elif c.kernel.product is not None:
                c.address = products.address(*c.kernel.product[:2])
        prog = [run_program_address(), launch_address() if self.parallel else 0, self.parts]
        if self.parallel:  # (NumPy's BLAS threads would spin on the cores its loops wait for)
            numpy_blas.keep_one_thread()
        self.compiled = compiled
        tape = self.tape
        self.const_arrays = [
            np.ascontiguousarray(tape.consts[v]).reshape(-1) for v in self.const_vars
        ]
        self.work_arrays = [np.empty(numel(v.shape), v.dtype.np) for v in self.workspace]
        work = dict(zip(self.workspace, self.work_arrays))
        self.status_checks = [
            (work[k.status[0]], *k.status[1:]) for k in self.kernels if k.status is not None
        ]
        table = np.zeros(2 * max(self.n_slots, 1), np.int64)
        for v, a in zip(self.const_vars + self.workspace, self.const_arrays + self.work_arrays):
            s = self.slot_of["buffer", v]
            table[2 * s], table[2 * s + 1] = a.ctypes.data, a.size
        derived = []  # (slot, the block's slot, byte offset) of each new array
        for v, (b, at) in zip(self.fresh, self.fresh_at):
            s = self.slot_of["fresh", v]
            table[2 * s + 1] = numel(v.shape)
            derived += [s, self.slot_of["block", b], at * v.dtype.np.itemsize]
        words = np.array([w for c in self.calls for w in c.words] or [0], np.int64)
        consts = np.array([x for c in self.calls for x in c.consts] or [0.0], np.float64)
        prog += [len(self.calls), len(self.fresh), *derived]
        at_w = at_c = 0
        for c in self.calls:
            prog += [c.address, words.ctypes.data + 8 * at_w, consts.ctypes.data + 8 * at_c]
            prog.append(int(c.threaded))
            at_w, at_c = at_w + len(c.words), at_c + len(c.consts)
        prog.append(0)  # (where ``profile`` has the timed program add up each call's cycles)
        # (the table and the program hold addresses: the arrays live as long as the executable)
        self.table, self.program = table, np.array(prog, np.int64)
        self._words, self._consts = words, consts
        self._prepare_call()


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


def plan_loads(kernel, target) -> set:
    """Flat offsets at which ``kernel`` reads ``target`` (recorded while generating it)."""
    return getattr(kernel, "loads", {}).get(target, set())


def _driver_signature(dtypes: list) -> tuple:
    """The driver's argument types: flat arrays of ``dtypes``, then the table and program."""
    arrays = tuple(typeof(np.empty(0, dt)) for dt in dtypes)
    return arrays + (typeof(np.empty(0, np.int64)),) * 2


# NOTE: Numba's CPU targets have no 16-bit floats: their loops would have to compute in float32
# and round every stored value, which no template does yet.
_UNLOWERED_DTYPES = {"float16", "bfloat16"}


def _check_dtypes(tape: Tape) -> None:
    """Refuse a tape holding a value of a dtype the generated code cannot hold."""
    values = [*tape.inputs, *tape.consts, *(e.out for e in tape.eqns)]
    for v in values:
        if v.dtype.name in _UNLOWERED_DTYPES:
            raise NotImplementedError(
                f"numba backend: {tape.name!r} holds {v.dtype} values, which Numba's CPU code "
                "cannot compute with; compile it with backend='interpreter', or cast to float32 "
                "inside the function (x.float())"
            )


def lowers(prim) -> bool:
    """Whether this backend lowers ``prim``: an elementwise template, a kernel for its kind (a
    reduction from its fold rules), or an inline rule. (Fused primitives never reach a tape:
    tracing decomposes them.)"""
    from .inline import INLINE
    from .kernels import KERNELS

    if prim.kind == "fused":
        return True
    if prim.kind == "elementwise":
        return prim.scalar is not None
    if prim.kind == "reduce":
        return prim.reduction is not None
    return prim.kind in KERNELS or prim.name in INLINE


def lower(tape: Tape, build: bool = True) -> Executable:
    """``tape`` as an executable; with ``build=False`` its code is neither compiled nor
    loaded yet: ``exe.jobs()`` says what to compile (in another process, ``run_jobs``), then
    ``exe.build()`` loads it."""
    return Executable(tape, build=build)


def compile_runtime() -> None:
    """Compile (or load) every function of the runtime a program may call: run_program, the
    threaded launch, BLAS's thread count, the product kernels (each compiled once per machine
    on first use; this compiles them ahead, e.g. when building an image)."""
    run_program_address()
    launch_address()
    if runtime.BLAS_THREADS:
        runtime.blas_kernel_addresses()
    for form in ("product", "split", "pair"):
        for dtype in ("float32", "float64"):
            products.address(form, dtype)


def run_jobs(jobs: list) -> int:
    """Compile ``jobs`` (from ``Executable.jobs``) into the caches; how many modules no cache
    had."""
    compiled = 0
    for job in jobs:
        if "runtime" in job:
            run_program_address()
            if job["runtime"]["blas"]:
                runtime.blas_kernel_addresses()
            if job["runtime"]["launch"]:
                launch_address()
            for form in job["runtime"]["products"]:
                products.address(*form)
            continue
        module = cache.load_module(job["source"], job["prefix"])
        if "driver" in job:
            misses = sum(module.driver.stats.cache_misses.values())
            module.driver.compile(_driver_signature(job["driver"]))
            compiled += int(sum(module.driver.stats.cache_misses.values()) > misses)
        else:
            compiled += _first_compile(module, module.kernel.cache_hits == 0)
    return compiled
