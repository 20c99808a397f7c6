"""``jitgrad.compile``: trace once per signature, optimise the tape, lower it, replay it.

Two uses, both first class:

1. Whole step: ``fn`` runs zero_grad, forward, loss, ``backward()``/``autograd.grad`` and the
   optimizer step. Everything is one tape; a call replays it and applies its writes (parameters,
   ``.grad``, optimizer state) exactly as eager execution would.
2. Inside an eager graph: ``fn`` does not differentiate, but its inputs or captured parameters
   require grad. The outputs get a ``grad_fn`` whose backward runs a backward tape derived from the
   forward one (its residuals saved by the forward).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import inspect
import os
import time
import traceback
import warnings

import numpy as np

from . import backends
from .autograd.grad_mode import STATE
from .compile_backward import CompiledBackward, _split
from .compile_host import (
    _CONTAINERS,
    _OPAQUE,
    MISS,
    _apply_writes,
    _describe,
    _fetch,
    _flat_tree,
    _flatten,
    _leaf_key,
    _make_runner,
    _result,
    _unflatten,
    guard_check,
)
from .ir import passes
from .ir.tape import Binding, Tape
from .ir.tracer import TraceError, Tracer, tracing
from .locks import new_lock
from .tensor import Tensor

# Agreement tolerances of compiled backends against the reference interpreter, per dtype:
# (rtol, atol). float32 kernels reorder sums and use polynomial transcendental functions.
TOLERANCES = {"float32": (1e-4, 1e-5), "float64": (1e-9, 1e-12)}
MAX_WARMUPS = 3
# the process-wide default of compile(wait=...): "1" waits for the compiler
WAIT_ENV = "JITGRAD_COMPILE_WAIT"
_BUILDING = object()  # a cached trace whose compiled code is not built yet: run eagerly
# seconds a call spends loading a background build's code (then it runs eagerly, once more)
LOAD_SLICE_S = 0.01
# a waited-for build shares its jobs with the compile worker from this many new kernels on
SHARE_MIN = 3


class AgreementError(AssertionError):
    """A compiled backend disagreed with the reference interpreter."""


# -- pytrees of arguments and results -------------------------------------------------------------
# -- the compiled function -----------------------------------------------------------------------
class Stats:
    """What compile did: calls on each path (``traces``: traced, eagerly; ``eager_calls``: run
    eagerly while their compiled code was being built; ``cache_hits``: run compiled), compiles,
    seconds, and why each retrace happened."""

    def __init__(self):
        self.calls = 0
        self.traces = 0
        self.compiles = 0
        self.cache_hits = 0
        self.eager_calls = 0
        self.trace_seconds = 0.0
        self.compile_seconds = 0.0  # on the calling thread: planning, and compiling if waited
        self.build_seconds = 0.0  # background builds, from hand-off to ready (wall time)
        self.backend_compiles = 0  # machine-code compilations (0 when a cache had the code)
        self.retrace_reasons: list = []

    def __repr__(self) -> str:
        return (
            f"Stats(calls={self.calls}, traces={self.traces}, eager_calls={self.eager_calls}, "
            f"cache_hits={self.cache_hits}, compiles={self.compiles}, trace_seconds="
            f"{self.trace_seconds:.3f}, compile_seconds={self.compile_seconds:.3f}, "
            f"build_seconds={self.build_seconds:.3f}, backend_compiles="
            f"{self.backend_compiles}, retraces={self.retrace_reasons})"
        )


class _Entry:
    """One traced signature: tapes, executables, guards and how to bind and write back."""

    def __init__(self, mode, tape, exe, out_tree, guards, bwd=None):
        self.mode = mode  # "step" | "inside"
        self.tape = tape
        self.exe = exe
        self.out_tree = out_tree
        self.guards = guards
        self.bwd = bwd  # (tape, exe, diff_inputs, out_slots) for inside mode
        self.n_outputs = 0  # user outputs; an inside-mode forward returns residuals after them
        self.fetch = None  # the input bindings in order (filled on first run)
        self.runner = None  # generated straight-line host code for a whole-step call
        self.guards_hold = guard_check(guards)  # (leaves) -> bool
        self.ready = True  # False while a background build of its code is in flight
        self.loading = None  # once the worker has built it: the steps loading its code
        self.failed = None  # why its background build failed (it then stays eager)
        self.warned = False


def _collect_names(fn, args=()) -> dict:
    """Readable names for captured tensors: module parameters and optimizer state in reach of
    ``fn`` (its globals, closure, ``self``) or passed to it as arguments."""
    from .nn.module import Module

    names: dict = {}
    found = {}
    try:
        arg_names = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        arg_names = []
    for i, a in enumerate(args):
        if isinstance(a, Module) or hasattr(a, "param_groups"):
            found[arg_names[i] if i < len(arg_names) else f"arg{i}"] = a
    target = getattr(fn, "__self__", None)
    if isinstance(fn, Module):
        found["self"] = fn
    elif target is not None:
        found["self"] = target
    code = getattr(fn, "__code__", None)
    if code is not None:
        g = getattr(fn, "__globals__", {})
        for name in code.co_names:
            if name in g:
                found[name] = g[name]
        for name, cell in zip(code.co_freevars, getattr(fn, "__closure__", None) or ()):
            try:
                found[name] = cell.cell_contents
            except ValueError:
                pass
    param_names = {}
    for name, obj in found.items():
        if isinstance(obj, Tensor):
            names[id(obj)] = name
            param_names[id(obj)] = name
        elif isinstance(obj, Module):
            prefix = "" if name == "self" else name + "."
            for pname, p in obj.named_parameters():
                names[id(p)] = prefix + pname
                param_names[id(p)] = prefix + pname
            for bname, b in obj.named_buffers():
                names[id(b)] = prefix + bname
    for name, obj in found.items():
        state = getattr(obj, "state", None)
        if isinstance(state, dict) and hasattr(obj, "param_groups"):
            for p, st in state.items():
                base = param_names.get(id(p), "param")
                for k, v in st.items() if isinstance(st, dict) else ():
                    if isinstance(v, Tensor):
                        names[id(v)] = f"{name}.{base}.{k}"
    from .random import default_generator

    names[id(default_generator.state)] = "rng"
    return names


def _detached(o):
    """A whole-step call's output as it is returned: without a graph."""
    return o.detach() if isinstance(o, Tensor) and o._requires_grad else o


class CompiledFunction:
    """What ``jitgrad.compile(fn)`` returns: call it like ``fn``."""

    def __init__(self, fn, *, backend=None, check=False, optimize=True, name=None, wait=None):
        self.fn = fn
        self.backend = backend
        self.check = check
        self.optimize = optimize
        if wait is None:
            wait = os.environ.get(WAIT_ENV, "0").strip().lower() in ("1", "true", "yes")
        # an agreement check compares with the compiled code: it waits for it
        self.waits = bool(wait) or check
        self.name = name or getattr(fn, "__name__", None) or type(fn).__name__
        self.stats = Stats()
        self._cache: dict = {}
        self._warmups: dict = {}
        self._last_key = None
        self._trace_lock = new_lock()
        functools.update_wrapper(self, fn, updated=())

    # -- calling -------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        self.stats.calls += 1
        sig = None
        if not kwargs:  # the common case, flattened without recursion: positional leaves
            sig = []
            for a in args:
                kind = type(a)
                if kind is Tensor:
                    sig.append((a._data.shape, a._data.dtype, a._requires_grad))
                elif kind in _OPAQUE:  # a model, a loss, an optimizer: keyed by identity
                    sig.append(("o", id(a)))
                elif isinstance(a, _CONTAINERS):
                    sig = None
                    break
                else:
                    leaf = _leaf_key(a)
                    if leaf[0] == "o":
                        _OPAQUE.add(kind)
                    sig.append(leaf)
        if sig is not None:
            leaves = list(args)
            tree = _flat_tree(len(args))
            key = (tree, tuple(sig), STATE.grad_enabled)
        else:
            leaves = []
            tree = _flatten((args, kwargs), leaves)
            key = (tree, tuple(_leaf_key(x) for x in leaves), STATE.grad_enabled)
        out = self._cached(key, leaves)
        if out is MISS:
            with self._trace_lock:  # one trace at a time: another thread may have just traced
                out = self._cached(key, leaves)
                if out is MISS:
                    out = self._trace_and_call(key, tree, leaves, args, kwargs)
        if type(out) is tuple and out and out[0] is _BUILDING:
            return self._eager(out[1], args, kwargs)
        return out

    def _cached(self, key, leaves: list):
        """The call run by a trace of ``key`` whose guards hold, ``(_BUILDING, entry)`` when
        that trace's code is still being built, or ``MISS``."""
        for entry in self._cache.get(key, ()):
            if entry.runner is not None and not self.check:
                out = entry.runner(leaves)  # checks the guards itself
                if out is not MISS:
                    self.stats.cache_hits += 1
                    return out
            elif entry.guards_hold(leaves):
                if entry.loading is not None:
                    self._load(entry)
                if not entry.ready or entry.failed:
                    return (_BUILDING, entry)
                self.stats.cache_hits += 1
                return self._run(entry, leaves)
        return MISS

    def _eager(self, entry: _Entry, args, kwargs):
        """The call run eagerly, as the traced one was (outputs detached in whole-step use),
        while the trace's compiled code is being built (or after its build failed)."""
        self.stats.eager_calls += 1
        if entry.failed and not entry.warned:
            entry.warned = True
            warnings.warn(
                f"jitgrad.compile: building the compiled code of {self.name!r} failed, so it "
                f"keeps running eagerly: {entry.failed}",
                RuntimeWarning,
                stacklevel=3,
            )
        result = self.fn(*args, **kwargs)
        if entry.mode == "inside":
            return result
        out_leaves: list = []
        tree = _flatten(result, out_leaves)
        return _unflatten(tree, [_detached(o) for o in out_leaves])

    def _run(self, entry: _Entry, leaves: list):
        tape = entry.tape
        fetch = entry.fetch
        if fetch is None:
            fetch = entry.fetch = [tape.bindings[v] for v in tape.inputs]
        inputs = [_fetch(b, leaves) for b in fetch]  # the slow path: runners inline this
        if self.check:
            # The check reads the backend's stored values of this call (the Numba driver's
            # workspace) and may restore the inputs: no other call of the executable in between
            # (its own call takes the same lock, re-entrantly).
            with getattr(entry.exe, "lock", None) or contextlib.nullcontext():
                # the backend may update captured buffers in place: keep the inputs as they were
                snapshot = [np.array(a, copy=True) for a in inputs]
                outs, writes = entry.exe(inputs)
                try:
                    self._check_agreement(entry, snapshot, outs, writes)
                except AgreementError:
                    for a, old in zip(inputs, snapshot):
                        np.copyto(a, old)
                    raise
        else:
            outs, writes = entry.exe(inputs)  # (one call at a time: the executable's own lock)
        _apply_writes(tape.writes, writes, leaves)
        n_user = entry.n_outputs
        results = [_result(a) for a in outs[:n_user]]
        if entry.mode == "inside" and STATE.grad_enabled:
            self._attach_backward(entry, leaves, inputs, results, outs[n_user:])
        return _unflatten(entry.out_tree, results)

    # -- tracing -------------------------------------------------------------------------------
    def _trace_and_call(self, key, tree, leaves, args, kwargs):
        reason = self._retrace_reason(key, leaves)
        if reason:
            self.stats.retrace_reasons.append(reason)
        t0 = time.perf_counter()
        tracer = Tracer(self.name, _collect_names(self.fn, args))
        call_leaves = []
        plain = not kwargs and len(leaves) == len(args)  # leaves are the positional arguments
        try:
            params = list(inspect.signature(self.fn).parameters)
        except (TypeError, ValueError):
            params = []

        def arg_name(i):
            return params[i] if plain and i < len(params) else f"arg{i}"

        with tracing(tracer):
            for i, x in enumerate(leaves):
                if isinstance(x, Tensor):
                    tracer.add_input(x, Binding("arg", key=i, name=arg_name(i)))
                    call_leaves.append(x)
                elif isinstance(x, float):
                    t = Tensor._wrap(np.array(x, dtype=np.float64))
                    tracer.add_input(t, Binding("scalar", key=i, name=arg_name(i)))
                    call_leaves.append(t)
                else:
                    call_leaves.append(x)
            cargs, ckwargs = _unflatten(tree, call_leaves)
            result = self.fn(*cargs, **ckwargs)
            out_leaves: list = []
            out_tree = _flatten(result, out_leaves)
            for o in out_leaves:
                if not isinstance(o, Tensor):
                    raise TraceError(
                        f"compiled functions must return tensors (or tuples/lists/dicts of them); "
                        f"got {type(o).__name__}. Return a tensor and convert it outside."
                    )
            inside = (
                not tracer.differentiated
                and STATE.grad_enabled
                and any(o._requires_grad for o in out_leaves)
            )
            tape = tracer.tape
            tape.outputs = [tracer.var_of(o) for o in out_leaves]
            bwd_info = None
            if inside:
                bwd_info = self._trace_backward(tracer, out_leaves, leaves)
            tape.writes = tracer.state_writes() + tracer.grad_writes()
        guards = [
            ("capture", b.ref, (b.ref._data.shape, b.ref._data.dtype))
            for b in tape.bindings.values()
            if b.kind == "capture"
        ]
        guards += [g if len(g) == 3 else (g[0], g[1], None) for g in tracer.guards]
        # one check per distinct guard (each parameter of a group records its group's options)
        guards = list({(g[0], id(g[1]), repr(g[2])): g for g in guards}.values())
        survivors = self._survivors(tracer, out_leaves, call_leaves)
        self.stats.traces += 1
        self.stats.trace_seconds += time.perf_counter() - t0
        if survivors:
            n = self._warmups.get(key, 0) + 1
            self._warmups[key] = n
            if n >= MAX_WARMUPS:
                raise TraceError(
                    f"{self.name} creates new tensors that outlive each call ({survivors}) on "
                    f"every one of {n} traced calls, so no trace can be replayed. Keep state in "
                    "tensors created once and updated in place (e.g. buf.mul_(m).add_(g))."
                )
            self.stats.retrace_reasons.append(
                f"warm-up: the call created persistent state ({survivors}); tracing again"
            )
            return result if inside else _unflatten(out_tree, [o.detach() for o in out_leaves])
        entry = self._lower(tape, bwd_info, out_tree, guards, inside)
        entry.n_outputs = len(out_leaves)
        if not inside and entry.ready:
            entry.runner = _make_runner(entry, lambda leaves, e=entry: self._run(e, leaves))
        self._cache.setdefault(key, []).append(entry)
        self._last_key = key
        if inside:
            return result
        return _unflatten(out_tree, [_detached(o) for o in out_leaves])

    def _retrace_reason(self, key, leaves) -> str:
        if not self._cache and not self._warmups:
            return ""
        if key in self._cache:
            return "guard failed: a captured tensor changed shape or dtype, or a .grad changed"
        if key in self._warmups:
            return ""
        last = self._last_key
        if last is None or last[0] != key[0]:
            return "new argument structure"
        diffs = []
        for i, (a, b) in enumerate(zip(last[1], key[1])):
            if a != b:
                diffs.append(f"arg{i}: {_describe(a)} -> {_describe(b)}")
        if last[2] != key[2]:
            diffs.append(f"grad mode {last[2]} -> {key[2]}")
        return "new signature: " + "; ".join(diffs)

    def _trace_backward(self, tracer: Tracer, out_leaves: list, leaves: list):
        """Record the backward of the outputs into the same tape and split it off."""
        from .autograd.engine import grad

        tape = tracer.tape
        split = len(tape.eqns)
        diff_inputs = []
        for v, b in list(tape.bindings.items()):
            if b.kind in ("arg", "capture"):
                t = leaves[b.key] if b.kind == "arg" else b.ref
                if t._requires_grad:
                    diff_inputs.append((v, b, t))
        diff_outs = [(k, o) for k, o in enumerate(out_leaves) if o._requires_grad]
        cotangents = []
        for k, o in diff_outs:
            c = Tensor._wrap(np.zeros(o._data.shape, o._data.dtype))
            tracer.add_input(c, Binding("cotangent", key=k, name=f"grad_out{k}"))
            cotangents.append(c)
        was = tracer.differentiated
        grads = grad(
            [o for _, o in diff_outs],
            [t for _, _, t in diff_inputs],
            cotangents,
            retain_graph=True,
            allow_unused=True,
        )
        tracer.differentiated = was
        grad_vars = [None if g is None else tracer.var_of(g) for g in grads]
        return split, diff_inputs, diff_outs, grad_vars

    @staticmethod
    def _survivors(tracer: Tracer, out_leaves: list, call_leaves: list) -> str:
        """Tensors made during the trace that something outside still holds (new state)."""
        kept = list(out_leaves) + [x for x in call_leaves if isinstance(x, Tensor)]
        kept += [leaf._grad for leaf in tracer.grad_state.values() if leaf._grad is not None]
        # an output's base (``loss.detach()`` shares ``loss``) holds its graph as well
        held = list(out_leaves) + [o._base for o in out_leaves if o._base is not None]
        kept += held
        stack = [o._grad_fn for o in held if o._grad_fn is not None]
        seen = set()
        while stack:  # tensors the outputs' autograd graph holds
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            kept.extend(t for t in getattr(node, "inputs", None) or () if isinstance(t, Tensor))
            ctx = getattr(node, "ctx", None)
            kept.extend(t for t in (getattr(ctx, "_saved", None) or ()) if t is not None)
            stack.extend(e[0] for e in node._edges if e is not None)
        kept += [o._base for o in kept if o._base is not None]  # views keep their bases
        keep = {id(o) for o in kept}
        born = tracer.born
        tracer.env.clear()
        tracer.alias_root.clear()
        tracer.buffers.clear()
        tracer.stale.clear()
        tracer.hypers.clear()
        del kept, stack

        def alive():
            from .ops.functions import is_cached_const

            out = []
            for ref in born:
                t = ref()
                if t is not None and id(t) not in keep and not is_cached_const(t):
                    out.append(f"{t.dtype.name}{list(t.shape)}")
            return out

        found = alive()
        if found:  # reference cycles may hold some: collect them and look again
            gc.collect()
            found = alive()
        return ", ".join(found[:6]) + (" ..." if len(found) > 6 else "")

    # -- lowering ------------------------------------------------------------------------------
    def _backend_module(self):
        return backends.get(self.backend or backends.default_for("cpu"))

    def _lower_tape(self, backend, tape: Tape):
        """``backend.lower(tape, build=False)``; if the backend cannot compile the tape, the
        reference interpreter runs it instead (with a warning): the traced call already
        happened, so failing here would leave its effects without a result."""
        try:
            return backend.lower(tape, build=False)
        except Exception as exc:  # noqa: BLE001 - any backend failure has the same remedy
            if backend is backends.interpreter:
                raise
            return self._fall_back(backend, tape, exc)

    def _fall_back(self, backend, tape: Tape, exc: Exception):
        """The interpreter's executable for ``tape``, which ``backend`` could not compile."""
        warnings.warn(
            f"jitgrad.compile: the {backend.__name__.rsplit('.', 1)[-1]} backend could not "
            f"compile {tape.name!r} ({type(exc).__name__}: {exc}); running it with the "
            "reference interpreter instead. Please report this with the tape "
            "(cfn.tape(*args)).",
            RuntimeWarning,
            stacklevel=5,
        )
        self.stats.retrace_reasons.append(f"backend fell back to the interpreter: {exc}")
        return backends.interpreter.lower(tape)

    def _lower(self, tape: Tape, bwd_info, out_tree, guards, inside) -> _Entry:
        t0 = time.perf_counter()
        backend = self._backend_module()
        bwd = None
        if bwd_info is not None:
            tape, bwd_tape, diff_inputs, out_slots = _split(tape, *bwd_info)
            if self.optimize:
                bwd_tape = passes.optimize(bwd_tape)
            bwd = (bwd_tape, self._lower_tape(backend, bwd_tape), diff_inputs, out_slots)
        if self.optimize:
            tape = passes.optimize(tape)
        tape.verify()
        exe = self._lower_tape(backend, tape)
        self.stats.compiles += 1
        entry = _Entry("inside" if inside else "step", tape, exe, out_tree, guards, bwd)
        exes = [exe] + ([bwd[1]] if bwd is not None else [])
        jobs = [job for x in exes for job in x.jobs()]
        if jobs and not self.waits:  # the build goes to another process (compile_worker)
            entry.ready = False
            self._build_in_background(entry, exes, jobs)
        else:
            try:
                self._build_now(exes, jobs)
            except Exception as exc:  # noqa: BLE001 - as in _lower_tape
                if backend is backends.interpreter:
                    raise
                entry.exe = self._fall_back(backend, tape, exc)
                if bwd is not None:
                    entry.bwd = (bwd[0], backends.interpreter.lower(bwd[0]), *bwd[2:])
        self.stats.compile_seconds += time.perf_counter() - t0
        return entry

    def _build_now(self, exes: list, jobs: list) -> None:
        """Build ``exes`` before returning: with the compile worker's help when there is much
        to compile (it takes the jobs from the last, this process from the first)."""
        shared = None
        if sum(x.new_modules() for x in exes) >= SHARE_MIN:
            from . import compile_worker

            shared = compile_worker.service().share(self._backend_name(), jobs)
        first = 0
        for x in exes:
            for _ in x.build_steps(shared, first):
                pass
            first += len(x.jobs())
        self.stats.backend_compiles += sum(x.compiled for x in exes)
        self.stats.backend_compiles += shared.compiled if shared is not None else 0

    def _backend_name(self) -> str:
        return self._backend_module().__name__.rsplit(".", 1)[-1]

    def _build_in_background(self, entry: _Entry, exes: list, jobs: list) -> None:
        """Hand ``jobs`` to the compile worker. When it has built them (its result thread calls
        ``done``), the entry's calls load the code from the caches, a slice at a time
        (``_load``), then switch to it."""
        from . import compile_worker

        t0 = time.perf_counter()

        def steps(compiled):
            for x in exes:
                yield from x.build_steps()
            self.stats.backend_compiles += compiled + sum(x.compiled for x in exes)

        def done(error, compiled):
            self.stats.build_seconds += time.perf_counter() - t0
            if error is not None:
                self._build_failed(entry, error)
            else:
                entry.loading = steps(compiled)

        try:
            compile_worker.service().submit(self._backend_name(), jobs, done)
        except compile_worker.BuildError as exc:
            done(exc, 0)

    def _load(self, entry: _Entry, budget: float | None = LOAD_SLICE_S) -> None:
        """Advance the loading of ``entry``'s built code for up to LOAD_SLICE_S; when it is
        loaded, make its runner and mark it ready. (On the calling thread: a thread of its own
        would wait for the GIL after each of LLVM's many short calls, for minutes behind a
        busy training loop.)"""
        deadline = None if budget is None else time.perf_counter() + budget
        try:
            for _ in entry.loading:
                if deadline is not None and time.perf_counter() > deadline:
                    return
            if entry.mode == "step":
                entry.runner = _make_runner(entry, lambda leaves, e=entry: self._run(e, leaves))
        except Exception as exc:  # noqa: BLE001  (the function stays eager, see _eager)
            self._build_failed(entry, exc)
        entry.loading = None
        entry.ready = True

    def _build_failed(self, entry: _Entry, exc: Exception) -> None:
        """Record why ``entry``'s background build failed; its next call warns (``_eager``)."""
        entry.failed = str(exc) if hasattr(exc, "details") else f"{type(exc).__name__}: {exc}"
        details = getattr(exc, "details", "") or traceback.format_exc(limit=8)
        self.stats.retrace_reasons.append(f"background build failed:\n{details}")
        entry.ready = True

    # -- inside an eager graph -----------------------------------------------------------------
    def _attach_backward(self, entry, leaves, inputs, results, residuals) -> None:
        bwd_tape, bwd_exe, diff_inputs, out_slots = entry.bwd
        sources = []
        for _v, b in diff_inputs:
            t = leaves[b.key] if b.kind == "arg" else b.ref
            sources.append(t)
        if not any(t._requires_grad for t in sources):
            return
        node = CompiledBackward(self, entry, sources, inputs, residuals, results)
        for k in out_slots:
            r = results[k]
            r._grad_fn, r._output_nr, r._requires_grad = node, out_slots.index(k), True

    # -- checking ------------------------------------------------------------------------------
    def _check_agreement(self, entry, inputs, outs, writes) -> None:
        from .backends.interpreter import evaluate

        tape = entry.tape
        ref = evaluate(tape, inputs)
        got = entry.exe.values(inputs) if hasattr(entry.exe, "values") else None
        checks = []
        if got is not None:
            checks = [(e.out, got.get(e.out)) for e in tape.eqns if e.out in got]
        checks += list(zip(tape.outputs, outs))
        checks += [
            (v, a)
            for (_, v), a in zip(tape.writes, writes)
            if v is not None and isinstance(a, np.ndarray)
        ]
        for v, value in checks:
            if value is None:
                continue
            expected = ref[v]
            rtol, atol = TOLERANCES.get(v.dtype.name, (0.0, 0.0))
            if v.dtype.is_floating_point:
                bad = not np.allclose(value, expected, rtol=rtol, atol=atol, equal_nan=True)
            else:
                bad = not np.array_equal(value, expected)
            if bad:
                eqn = next((e for e in tape.eqns if e.out is v), None)
                diff = np.abs(np.asarray(value, np.float64) - np.asarray(expected, np.float64))
                rel = diff / np.maximum(np.abs(np.asarray(expected, np.float64)), 1e-30)
                where = (
                    f"{eqn.out} = {eqn.prim.name} {' '.join(map(repr, eqn.inputs))}"
                    if eqn
                    else repr(v)
                )
                kernel = entry.exe.kernel_of(v) if hasattr(entry.exe, "kernel_of") else None
                raise AgreementError(
                    f"backend {entry.exe.backend!r} disagrees with the reference interpreter at "
                    f"{where}" + (f" (kernel {kernel})" if kernel else "") + ": max abs error "
                    f"{np.nanmax(diff):.3g}, max rel error {np.nanmax(rel):.3g} (tolerance rtol="
                    f"{rtol}, atol={atol}). Nothing was written back."
                )

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the compiled code of every trace so far is built and loaded (for one
        built in the background, see ``compile(wait=...)``); True when it is, False if
        ``timeout`` seconds passed first. Later calls of those traces run compiled."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        for entries in list(self._cache.values()):
            for entry in entries:
                while not entry.ready:
                    if entry.loading is not None:
                        with self._trace_lock:
                            if entry.loading is not None:
                                self._load(entry, budget=None)
                        continue
                    if deadline is not None and time.perf_counter() > deadline:
                        return False
                    time.sleep(0.005)
        return True

    # -- introspection -------------------------------------------------------------------------
    def _entry_for(self, args, kwargs) -> _Entry:
        leaves: list = []
        tree = _flatten((args, kwargs), leaves)
        key = (tree, tuple(_leaf_key(x) for x in leaves), STATE.grad_enabled)
        for entry in self._cache.get(key, ()):
            if entry.guards_hold(leaves):
                return entry
        raise RuntimeError(
            f"{self.name} has not been traced for these arguments yet: call it once first "
            "(tracing runs the function, with its side effects)."
        )

    def tape(self, *args, **kwargs) -> Tape:
        """The (optimised) tape that runs for these arguments."""
        return self._entry_for(args, kwargs).tape

    def backward_tape(self, *args, **kwargs) -> Tape | None:
        entry = self._entry_for(args, kwargs)
        return entry.bwd[0] if entry.bwd else None

    def source(self, *args, **kwargs) -> str:
        """The generated source (the tape itself for the interpreter)."""
        return self._entry_for(args, kwargs).exe.source()

    def profile(self, *args, repeat: int = 10, top: int | None = 20, **kwargs) -> str:
        """Where a compiled call's time goes: calls the compiled code traced for these
        arguments ``repeat`` times — as calls, with their updates of parameters and state —
        timing each of its kernel calls (each equation, on the interpreter). Returns a table of
        the ``top`` slowest (all with None), with their share of the total."""
        entry = self._entry_for(args, kwargs)
        if not entry.ready:
            self.wait()
        leaves: list = []
        _flatten((args, kwargs), leaves)
        fetch = entry.fetch or [entry.tape.bindings[v] for v in entry.tape.inputs]
        seconds: list = []
        for _ in range(repeat):
            rows, _outs, writes = entry.exe.profile([_fetch(b, leaves) for b in fetch])
            _apply_writes(entry.tape.writes, writes, leaves)
            seconds = (
                [t for t, _ in rows] if not seconds else [a + t for a, (t, _) in zip(seconds, rows)]
            )
        total = sum(seconds) / repeat or 1e-12
        lines = [
            f"{self.name}: {len(rows)} calls, {1e6 * total:.0f} us per call of the step "
            f"({entry.exe.backend}, {repeat} calls)",
            f"{'us':>9} {'share':>6}  call",
        ]
        ranked = sorted(range(len(rows)), key=lambda j: -seconds[j])
        for j in ranked[:top]:
            t = seconds[j] / repeat
            lines.append(f"{1e6 * t:9.1f} {100 * t / total:5.1f}%  {j}: {rows[j][1]}")
        return "\n".join(lines)

    def explain(self) -> str:
        s = self.stats
        lines = [
            f"{self.name}: {s.calls} calls, {s.traces} traces, {s.compiles} compiles, "
            f"{s.cache_hits} cache hits; trace {s.trace_seconds:.3f}s, compile "
            f"{s.compile_seconds:.3f}s"
        ]
        lines += [f"  retrace: {r}" for r in s.retrace_reasons]
        return "\n".join(lines)


def compile(fn=None, *, backend=None, check=False, optimize=True, name=None, wait=None):  # noqa: A001
    """Compile ``fn`` (a function or an ``nn.Module``); also usable as ``@compile(...)``.

    ``wait``: with ``False`` (the default, see ``WAIT_ENV``), calls never wait for the
    compiler: the code of a new trace is built in another process while calls run eagerly,
    and they switch to the compiled code when it is ready. With ``True`` each new trace is
    compiled before its next call, so every call after a trace runs compiled (benchmarks,
    bitwise reproducible runs). ``check=True`` waits."""
    opts = dict(backend=backend, check=check, optimize=optimize, name=name, wait=wait)
    if fn is None:
        return lambda f: compile(f, **opts)
    if backend is not None:
        backends.get(backend)
    return CompiledFunction(fn, **opts)
