"""Tracing for ``jitgrad.compile``: one call of the function under a tracer, its tape, guards
and outputs; the backward tape of an inside-an-eager-graph use; and the warm-up rule (a call
that creates persistent state is traced again, up to MAX_WARMUPS times). A mixin of
``CompiledFunction``.
"""

from __future__ import annotations

import gc
import inspect
import time

import numpy as np

from .autograd.grad_mode import STATE
from .compile_host import _describe, _flatten, _make_runner, _unflatten
from .ir.tape import Binding
from .ir.tracer import TraceError, Tracer, tracing
from .tensor import Tensor

MAX_WARMUPS = 3


def _detached(o):
    """A whole-step call's output as it is returned: without a graph."""
    return o.detach() if isinstance(o, Tensor) and o._requires_grad else o


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


class TracingMixin:
    """``CompiledFunction``'s tracing (see the module docstring)."""

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
