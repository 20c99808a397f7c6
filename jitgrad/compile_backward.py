"""Inside-an-eager-graph use of compiled functions: a traced forward+backward tape split into a
forward tape (returning residuals) and a backward tape, and the graph node that runs the latter."""

from __future__ import annotations

import numpy as np

from .autograd.grad_mode import STATE
from .autograd.graph import Node, edge_of
from .ir import passes
from .ir.tape import Binding, Tape, Var
from .tensor import Tensor


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
