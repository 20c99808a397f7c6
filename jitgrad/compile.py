"""``jitgrad.compile``: trace once per signature, optimise the tape, lower it, replay it.

Two uses, both first class:

1. Whole step: ``fn`` runs zero_grad, forward, loss, ``backward()``/``autograd.grad`` and the
   optimizer step. Everything is one tape; a call replays it and applies its writes (parameters,
   ``.grad``, optimizer state) exactly as eager execution would.
2. Inside an eager graph: ``fn`` does not differentiate, but its inputs or captured parameters
   require grad. The outputs get a ``grad_fn`` whose backward runs a backward tape derived from the
   forward one (its residuals saved by the forward).

``CompiledFunction`` is the call path (cache lookup, guards, eager calls while code is built,
writes) and introspection here; tracing is ``compile_trace.TracingMixin``, lowering and
building ``compile_build.BuildingMixin``; pytrees, guards and the generated host code are in
``compile_host``, the backward of an inside use in ``compile_backward``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
import warnings

import numpy as np

from . import backends
from .autograd.grad_mode import STATE
from .compile_backward import CompiledBackward
from .compile_build import _BUILDING, BuildingMixin, _Entry
from .compile_host import (
    _CONTAINERS,
    _OPAQUE,
    MISS,
    _apply_writes,
    _fetch,
    _flat_tree,
    _flatten,
    _leaf_key,
    _result,
    _unflatten,
)
from .compile_trace import TracingMixin, _detached
from .ir.tape import Tape
from .locks import new_lock
from .tensor import Tensor

# Agreement tolerances of compiled backends against the reference interpreter, per dtype:
# (rtol, atol). float32 kernels reorder sums and use polynomial transcendental functions.
TOLERANCES = {"float32": (1e-4, 1e-5), "float64": (1e-9, 1e-12)}
# the process-wide default of compile(wait=...): "1" waits for the compiler
WAIT_ENV = "JITGRAD_COMPILE_WAIT"


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


class CompiledFunction(TracingMixin, BuildingMixin):
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
            with entry.exe.lock or contextlib.nullcontext():
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
        got = entry.exe.values(inputs)
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
                kernel = entry.exe.kernel_of(v)
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
