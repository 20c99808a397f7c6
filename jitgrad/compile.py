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

import builtins
import functools
import gc
import time

import numpy as np

from . import backends
from .autograd.grad_mode import STATE
from .autograd.graph import Node, edge_of
from .backends.numba_cpu import IN_PLACE
from .ir import passes
from .ir.tape import Binding, Tape, Var
from .ir.tracer import TraceError, Tracer, tracing
from .tensor import Tensor

# Agreement tolerances of compiled backends against the reference interpreter, per dtype:
# (rtol, atol). float32 kernels reorder sums and use polynomial transcendental functions.
TOLERANCES = {"float32": (1e-4, 1e-5), "float64": (1e-9, 1e-12)}
MAX_WARMUPS = 3


class AgreementError(AssertionError):
    """A compiled backend disagreed with the reference interpreter."""


# -- pytrees of arguments and results -------------------------------------------------------------
def _flatten(obj, leaves: list):
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return (type(obj), tuple(_flatten(x, leaves) for x in obj))
    if isinstance(obj, tuple):  # namedtuple
        return (type(obj), tuple(_flatten(x, leaves) for x in obj))
    if isinstance(obj, dict):
        keys = tuple(obj)
        return (dict, keys, tuple(_flatten(obj[k], leaves) for k in keys))
    leaves.append(obj)
    return None


def _unflatten(tree, leaves):
    return _build(tree, iter(leaves))


def _build(t, it):
    # a module-level function: a recursive closure would be a reference cycle per call
    if t is None:
        return next(it)
    if t[0] is dict:
        return {k: _build(s, it) for k, s in zip(t[1], t[2])}
    items = [_build(s, it) for s in t[1]]
    kind = t[0]
    if kind in (list, tuple):
        return kind(items)
    return kind(*items)


_CONTAINERS = (list, tuple, dict)


@functools.lru_cache(maxsize=64)
def _flat_tree(n: int):
    """The tree of ``(args, {})`` for ``n`` positional leaves (what _flatten would build)."""
    return (tuple, ((tuple, (None,) * n), (dict, (), ())))


def _describe(key) -> str:
    """A leaf's cache key for people: ``float32(4, 3)`` or the baked value."""
    if len(key) == 3 and isinstance(key[0], tuple):
        return f"{key[1]}{key[0]}" + (" requires_grad" if key[2] else "")
    return repr(key[-1])


def _leaf_key(x):
    if type(x) is Tensor:
        return (x._data.shape, x._data.dtype, x._requires_grad)
    if isinstance(x, Tensor):
        return ("T", x._data.shape, x._data.dtype.str, x._requires_grad)
    if isinstance(x, float):
        return ("f",)
    if isinstance(x, (bool, int, str, type(None))):
        return ("s", type(x), x)
    return ("o", id(x))


# -- the compiled function -----------------------------------------------------------------------
class Stats:
    """What compile did: traces, compiles, cache hits, seconds, and why each retrace happened."""

    def __init__(self):
        self.calls = 0
        self.traces = 0
        self.compiles = 0
        self.cache_hits = 0
        self.trace_seconds = 0.0
        self.compile_seconds = 0.0
        self.backend_compiles = 0  # machine-code compilations (0 when a cache had the code)
        self.retrace_reasons: list = []

    def __repr__(self) -> str:
        return (
            f"Stats(calls={self.calls}, traces={self.traces}, compiles={self.compiles}, "
            f"cache_hits={self.cache_hits}, trace_seconds={self.trace_seconds:.3f}, "
            f"compile_seconds={self.compile_seconds:.3f}, backend_compiles="
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

    def guards_hold(self) -> bool:
        for kind, t, meta in self.guards:
            if kind == "capture":
                if t._data.shape != meta[0] or t._data.dtype != meta[1]:
                    return False
            elif kind == "grad_none":
                if t._grad is not None:
                    return False
            elif kind == "option":
                name, value = meta
                if t.get(name) != value:
                    return False
            elif kind == "grad_like":
                g = t._grad
                if g is None or g._data.shape != t._data.shape:
                    return False
        return True


def _fetch(binding: Binding, leaves: list):
    kind = binding.kind
    if kind == "arg":
        return leaves[binding.key]._data
    if kind == "capture":
        return binding.ref._data
    if kind == "scalar":
        return np.asarray(leaves[binding.key], dtype=np.float64)
    if kind == "hyper":
        return np.asarray(binding.ref(), dtype=np.float64)
    if kind == "grad":
        return binding.ref._grad._data
    raise AssertionError(f"cannot fetch a {kind} input")


def _tree_source(tree, counter: list) -> str:
    """Python source rebuilding an output tree from ``outs`` (see _flatten)."""
    if tree is None:
        counter[0] += 1
        return f"_result(outs[{counter[0] - 1}])"
    if tree[0] is dict:
        items = ", ".join(f"{k!r}: {_tree_source(s, counter)}" for k, s in zip(tree[1], tree[2]))
        return "{" + items + "}"
    parts = [_tree_source(s, counter) for s in tree[1]]
    if tree[0] is tuple:
        return "(" + "".join(p + ", " for p in parts) + ")"
    if tree[0] is list:
        return "[" + ", ".join(parts) + "]"
    return f"_kinds[{id(tree[0])}](" + ", ".join(parts) + ")"


def _make_runner(entry: _Entry):
    """Straight-line host code for one cached whole-step call: fetch the inputs, run, apply the
    writes, wrap the outputs - no per-call interpretation of bindings."""
    tape = entry.tape
    ns = {
        "np": np,
        "_result": _result,
        "_grad_write": _grad_write,
        "_IN_PLACE": IN_PLACE,
        "_exe": entry.exe,
        "_kinds": {},
    }
    fetch = []
    for j, v in enumerate(tape.inputs):
        b = tape.bindings[v]
        if b.kind == "arg":
            fetch.append(f"leaves[{b.key}]._data")
        elif b.kind == "capture":
            ns[f"_c{j}"] = b.ref
            fetch.append(f"_c{j}._data")
        elif b.kind == "grad":
            ns[f"_c{j}"] = b.ref
            fetch.append(f"_c{j}._grad._data")
        elif b.kind == "hyper":
            ns[f"_h{j}"] = b.ref
            fetch.append(f"np.asarray(_h{j}(), np.float64)")
        elif b.kind == "scalar":
            fetch.append(f"np.asarray(leaves[{b.key}], np.float64)")
        else:
            return None
    lines = ["def run(leaves):", f"    outs, writes = _exe([{', '.join(fetch)}])"]
    if any(b.kind == "grad" for b, _ in tape.writes):
        lines.append("    given = set()")
    for w, (b, _) in enumerate(tape.writes):
        ns[f"_w{w}"] = b.ref
        if b.kind == "grad":
            lines.append(f"    _grad_write(_w{w}, writes[{w}], given)")
            continue
        target = f"leaves[{b.key}]" if b.kind == "arg" else f"_w{w}"
        lines.append(f"    if writes[{w}] is not _IN_PLACE:")
        lines.append(f"        np.copyto({target}._data, writes[{w}], casting='unsafe')")
        lines.append(f"    {target}._vc[0] += 1")
    lines.append("    return " + _tree_source(entry.out_tree, [0]))
    tree = entry.out_tree
    stack = [tree]
    while stack:  # namedtuple output types, looked up by id in the generated code
        t = stack.pop()
        if t is None:
            continue
        if t[0] is dict:
            stack.extend(t[2])
            continue
        ns["_kinds"][id(t[0])] = t[0]
        stack.extend(t[1])
    source = "\n".join(lines) + "\n"
    code = builtins.compile(source, f"<jitgrad runner {tape.name}>", "exec")
    exec(code, ns)  # noqa: S102
    run = ns["run"]
    run.source = source
    return run


def _grad_write(leaf, arr, given: set) -> None:
    if arr is None:
        leaf._grad = None
        return
    if id(arr) in given or not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.array(arr)
    given.add(id(arr))
    leaf._grad = _result(arr)


def _result(data) -> Tensor:
    """A plain tensor around a result buffer (the hot path of every compiled call)."""
    t = Tensor.__new__(Tensor)
    t._data = data
    t._grad = t._grad_fn = t._acc = t._base = t._hooks = None
    t._output_nr = 0
    t._requires_grad = t._retains_grad = False
    t._vc = [0]
    return t


def _apply_writes(writes, values, leaves) -> None:
    given = set()  # arrays already handed to a .grad: a second leaf gets its own copy
    for (binding, _), arr in zip(writes, values):
        kind = binding.kind
        if arr is IN_PLACE:  # the backend already wrote into the captured buffer
            binding.ref._vc[0] += 1
            continue
        if kind == "grad":
            leaf = binding.ref
            if arr is None:
                leaf._grad = None
            else:
                if id(arr) in given or not arr.flags.writeable or not arr.flags.c_contiguous:
                    arr = np.array(arr)
                given.add(id(arr))
                leaf._grad = _result(arr)
            continue
        target = binding.ref if kind == "capture" else leaves[binding.key]
        np.copyto(target._data, arr, casting="unsafe")
        target._vc[0] += 1


def _collect_names(fn) -> dict:
    """Readable names for captured tensors: module parameters and optimizer state in reach."""
    from .nn.module import Module

    names: dict = {}
    found = {}
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


class CompiledFunction:
    """What ``jitgrad.compile(fn)`` returns: call it like ``fn``."""

    def __init__(self, fn, *, backend=None, check=False, optimize=True, name=None):
        self.fn = fn
        self.backend = backend
        self.check = check
        self.optimize = optimize
        self.name = name or getattr(fn, "__name__", None) or type(fn).__name__
        self.stats = Stats()
        self._cache: dict = {}
        self._warmups: dict = {}
        self._last_key = None
        functools.update_wrapper(self, fn, updated=())

    # -- calling -------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        self.stats.calls += 1
        if not kwargs and not any(isinstance(a, _CONTAINERS) for a in args):
            # the common case, flattened without recursion: positional leaves
            leaves = list(args)
            tree = _flat_tree(len(args))
            key = (
                tree,
                tuple(
                    [
                        (a._data.shape, a._data.dtype, a._requires_grad)
                        if type(a) is Tensor
                        else _leaf_key(a)
                        for a in args
                    ]
                ),
                STATE.grad_enabled,
            )
        else:
            leaves = []
            tree = _flatten((args, kwargs), leaves)
            key = (tree, tuple(_leaf_key(x) for x in leaves), STATE.grad_enabled)
        for entry in self._cache.get(key, ()):
            if entry.guards_hold():
                self.stats.cache_hits += 1
                if entry.runner is not None and not self.check:
                    return entry.runner(leaves)
                return self._run(entry, leaves)
        return self._trace_and_call(key, tree, leaves, args, kwargs)

    def _run(self, entry: _Entry, leaves: list):
        tape = entry.tape
        fetch = entry.fetch
        if fetch is None:
            fetch = entry.fetch = [tape.bindings[v] for v in tape.inputs]
        inputs = [
            leaves[b.key]._data
            if b.kind == "arg"
            else b.ref._data
            if b.kind == "capture"
            else _fetch(b, leaves)
            for b in fetch
        ]
        if self.check:
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
            outs, writes = entry.exe(inputs)
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
        tracer = Tracer(self.name, _collect_names(self.fn))
        call_leaves = []
        with tracing(tracer):
            for i, x in enumerate(leaves):
                if isinstance(x, Tensor):
                    tracer.add_input(x, Binding("arg", key=i, name=f"arg{i}"))
                    call_leaves.append(x)
                elif isinstance(x, float):
                    t = Tensor._wrap(np.array(x, dtype=np.float64))
                    tracer.add_input(t, Binding("scalar", key=i, name=f"arg{i}"))
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
        if not inside:
            entry.runner = _make_runner(entry)
        self._cache.setdefault(key, []).append(entry)
        self._last_key = key
        if inside:
            return result
        detached = [o.detach() if o._requires_grad else o for o in out_leaves]
        return _unflatten(out_tree, detached)

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
        stack = [o._grad_fn for o in out_leaves if o._grad_fn is not None]
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

    def _lower(self, tape: Tape, bwd_info, out_tree, guards, inside) -> _Entry:
        t0 = time.perf_counter()
        backend = self._backend_module()
        bwd = None
        if bwd_info is not None:
            tape, bwd_tape, diff_inputs, out_slots = _split(tape, *bwd_info)
            if self.optimize:
                bwd_tape = passes.optimize(bwd_tape)
            bwd = (bwd_tape, backend.lower(bwd_tape), diff_inputs, out_slots)
        if self.optimize:
            tape = passes.optimize(tape)
        tape.verify()
        exe = backend.lower(tape)
        self.stats.compiles += 1
        self.stats.backend_compiles += getattr(exe, "compiled", 0)
        if bwd is not None:
            self.stats.backend_compiles += getattr(bwd[1], "compiled", 0)
        self.stats.compile_seconds += time.perf_counter() - t0
        return _Entry("inside" if inside else "step", tape, exe, out_tree, guards, bwd)

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

    # -- introspection -------------------------------------------------------------------------
    def _entry_for(self, args, kwargs) -> _Entry:
        leaves: list = []
        tree = _flatten((args, kwargs), leaves)
        key = (tree, tuple(_leaf_key(x) for x in leaves), STATE.grad_enabled)
        for entry in self._cache.get(key, ()):
            if entry.guards_hold():
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

    def explain(self) -> str:
        s = self.stats
        lines = [
            f"{self.name}: {s.calls} calls, {s.traces} traces, {s.compiles} compiles, "
            f"{s.cache_hits} cache hits; trace {s.trace_seconds:.3f}s, compile "
            f"{s.compile_seconds:.3f}s"
        ]
        lines += [f"  retrace: {r}" for r in s.retrace_reasons]
        return "\n".join(lines)


def _split(tape: Tape, split, diff_inputs, diff_outs, grad_vars):
    """Cut a traced forward+backward tape into a forward tape (returning residuals too) and a
    backward tape (cotangents and residuals in, input gradients out)."""
    fwd_eqns, bwd_eqns = tape.eqns[:split], tape.eqns[split:]
    bwd_defined = {e.out for e in bwd_eqns}
    cot_vars = [v for v, b in tape.bindings.items() if b.kind == "cotangent"]
    needed = []
    seen = set()
    for e in bwd_eqns:
        for x in e.inputs:
            if (
                x not in bwd_defined
                and x not in cot_vars
                and x not in tape.consts
                and x not in seen
            ):
                seen.add(x)
                needed.append(x)
    for g in grad_vars:
        if g is not None and g not in bwd_defined and g not in cot_vars and g not in seen:
            seen.add(g)
            needed.append(g)
    fwd_inputs = [v for v in tape.inputs if tape.bindings[v].kind != "cotangent"]
    fwd = tape.copy(
        inputs=fwd_inputs,
        bindings={v: tape.bindings[v] for v in fwd_inputs},
        eqns=fwd_eqns,
        outputs=list(tape.outputs) + needed,
    )
    fwd = passes.dce(fwd)
    res_bindings = {v: Binding("residual", key=i, name=f"res{i}") for i, v in enumerate(needed)}
    bindings = {v: tape.bindings[v] for v in cot_vars}
    bindings.update(res_bindings)
    zero_consts = {}
    outputs = []
    next_id = max([e.out.id for e in tape.eqns] + [v.id for v in tape.inputs] + [-1]) + 1
    for (v, _b, _t), g in zip(diff_inputs, grad_vars):
        if g is None:
            z = Var(next_id, v.shape, v.dtype)
            next_id += 1
            zero_consts[z] = np.zeros(v.shape, v.dtype.np)
            outputs.append(z)
        else:
            outputs.append(g)
    consts = {v: a for v, a in tape.consts.items()}
    consts.update(zero_consts)
    bwd = Tape(
        name=tape.name + "_backward",
        inputs=cot_vars + needed,
        bindings=bindings,
        consts=consts,
        eqns=bwd_eqns,
        outputs=outputs,
        writes=[],
    )
    bwd = passes.dce(bwd)
    out_slots = [k for k, _ in diff_outs]
    diff = [(v, b) for v, b, _ in diff_inputs]
    return fwd, bwd, diff, out_slots


class CompiledBackward(Node):
    """grad_fn of a compiled function's outputs: runs the compiled backward tape."""

    __slots__ = ("_cfn", "_entry", "_sources", "_inputs", "_residuals", "_freed")

    def __init__(self, cfn, entry, sources, inputs, residuals, results):
        Node.__init__(self, tuple(edge_of(t) for t in sources))
        self._cfn = cfn
        self._entry = entry
        self._sources = sources
        self._inputs = inputs
        self._residuals = residuals
        self._freed = False

    def name(self) -> str:
        return f"CompiledFunctionBackward[{self._cfn.name}]"

    def num_outputs(self) -> int:
        return len(self._entry.bwd[3])

    def backward(self, grads):
        from .autograd.graph import SECOND_BACKWARD
        from .backends.interpreter import replay

        if self._freed:
            raise RuntimeError(SECOND_BACKWARD)
        bwd_tape, bwd_exe, _, out_slots = self._entry.bwd
        fwd_tape = self._entry.tape
        shapes = [fwd_tape.outputs[k] for k in out_slots]
        grads = [
            g if g is not None else Tensor._wrap(np.zeros(v.shape, v.dtype.np))
            for g, v in zip(grads, shapes)
        ]
        if STATE.grad_enabled:
            # create_graph: recompute the forward and run the backward through apply, so the
            # gradients carry a graph of their own
            fwd_inputs = []
            src_by_var = {}
            for (v, _b), t in zip(self._entry.bwd[2], self._sources):
                src_by_var[v] = t
            for v, arr in zip(fwd_tape.inputs, self._inputs):
                t = src_by_var.get(v)
                fwd_inputs.append(t if t is not None else Tensor._wrap(arr))
            env = replay(fwd_tape, fwd_inputs)
            n_user = self._entry.n_outputs
            residuals = [env[v] for v in fwd_tape.outputs[n_user:]]
            out_env = replay(bwd_tape, list(grads) + residuals)
            return tuple(out_env[v] for v in bwd_tape.outputs)
        outs, _ = bwd_exe([g._data for g in grads] + list(self._residuals))
        return tuple(Tensor._wrap(a) for a in outs)

    def release(self) -> None:
        self._residuals = None
        self._inputs = None
        self._freed = True


def compile(fn=None, *, backend=None, check=False, optimize=True, name=None):  # noqa: A001
    """Compile ``fn`` (a function or an ``nn.Module``); also usable as ``@compile(...)``."""
    if fn is None:
        return lambda f: compile(f, backend=backend, check=check, optimize=optimize, name=name)
    if backend is not None:
        backends.get(backend)
    return CompiledFunction(fn, backend=backend, check=check, optimize=optimize, name=name)
