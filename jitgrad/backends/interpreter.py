"""The reference interpreter: runs a tape equation by equation with each primitive's ``impl``.

It is the spec. Eager execution calls the same ``impl`` on the same arrays in the same order, so
eager CPU results and the interpreter's agree bit for bit.
"""

from __future__ import annotations

import time

import numpy as np

from ..ir.tape import Tape

_ndarray = np.ndarray


def evaluate(tape: Tape, inputs: list) -> dict:
    """Every value of the tape (a dict Var -> array) for the given input arrays."""
    env = dict(tape.consts)
    env.update(zip(tape.inputs, inputs))
    for e in tape.eqns:
        out = e.prim.impl(*[env[x] for x in e.inputs], **e.kwargs)
        if type(out) is not _ndarray:
            out = np.asarray(out)
        env[e.out] = out
    return env


class Executable:
    """``exe(inputs) -> (outputs, write_values)``, all NumPy arrays."""

    backend = "interpreter"
    compiled = 0  # (nothing to compile)
    lock = None  # (it keeps no state between calls)
    direct_call = None  # (the general call path)

    def __init__(self, tape: Tape):
        self.tape = tape
        self.kernels: list = []
        self._const_ids = {id(a) for a in tape.consts.values()}

    def jobs(self) -> list:
        """Nothing for another process to build."""
        return []

    def build(self) -> None:
        pass

    def build_steps(self, shared=None, first: int = 0):
        return iter(())

    def new_modules(self) -> int:
        return 0

    def __call__(self, inputs: list):
        env = evaluate(self.tape, inputs)
        shared = self._const_ids | {id(a) for a in inputs}
        outs = [_own(env[v], shared) for v in self.tape.outputs]
        writes = [None if v is None else _own(env[v], shared) for _, v in self.tape.writes]
        return outs, writes

    def values(self, inputs: list) -> dict:
        """All intermediate values (for agreement checks)."""
        return evaluate(self.tape, inputs)

    def profile(self, inputs: list) -> tuple:
        """One call, timing each equation: ([(seconds, what it computes)] in tape order,
        outputs, writes) — the outputs and writes of a plain call."""
        env = dict(self.tape.consts)
        env.update(zip(self.tape.inputs, inputs))
        rows = []
        for e in self.tape.eqns:
            t0 = time.perf_counter()
            env[e.out] = np.asarray(e.prim.impl(*[env[x] for x in e.inputs], **e.kwargs))
            rows.append((time.perf_counter() - t0, str(e)))
        shared = self._const_ids | {id(a) for a in inputs}
        outs = [_own(env[v], shared) for v in self.tape.outputs]
        writes = [None if v is None else _own(env[v], shared) for _, v in self.tape.writes]
        return rows, outs, writes

    def kernel_of(self, var) -> str | None:
        return None

    def source(self) -> str:
        return str(self.tape)


def _own(arr: np.ndarray, shared: set) -> np.ndarray:
    """``arr``, or a copy when the caller must not get it as is: a constant of the tape or an
    input (the next call reads it), or a view or broadcast of one (e.g. a returned ``zeros``)."""
    if id(arr) in shared or arr.base is not None or not arr.flags.writeable:
        return np.array(arr)
    return arr


def lower(tape: Tape, build: bool = True) -> Executable:
    return Executable(tape)


def replay(tape: Tape, inputs: list) -> dict:
    """Run a tape through ``apply`` on tensors: eager, so autograd records a graph."""
    from ..tensor import Tensor, apply

    env = {v: Tensor._wrap(a) for v, a in tape.consts.items()}
    env.update(zip(tape.inputs, inputs))
    for e in tape.eqns:
        env[e.out] = apply(e.prim, tuple(env[x] for x in e.inputs), e.kwargs)
    return env
