"""Tracing: eager execution with a recorder switched on.

While a function runs once on real inputs, every ``apply`` appends an equation, in-place updates
and ``.grad`` assignments become writes, and tensors that were not passed in are captured by
identity (parameters, optimizer state) or, if they were made during the trace from nothing but
constants, folded in as constants.
"""

from __future__ import annotations

import os
import sys
import weakref

import numpy as np

from ..autograd.grad_mode import STATE
from .tape import Binding, Eqn, Tape, Var, freeze_params

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TraceError(RuntimeError):
    """Data-dependent Python control flow (or another untraceable step) inside a traced call."""


def user_frame() -> str:
    """``file:line: code`` of the innermost frame outside jitgrad (the user's line)."""
    f = sys._getframe(1)
    while f is not None:
        path = os.path.abspath(f.f_code.co_filename)
        if not path.startswith(_PKG_DIR + os.sep):
            import linecache

            code = linecache.getline(f.f_code.co_filename, f.f_lineno).strip()
            return f'File "{f.f_code.co_filename}", line {f.f_lineno}: {code}'
        f = f.f_back
    return "<unknown location>"


class Tracer:
    def __init__(self, name: str = "fn", names: dict | None = None):
        self.tape = Tape(name=name)
        self._next = 0
        self.env: dict = {}  # id(tensor) -> (tensor, Var): the current value of each tensor
        self.alias_root: dict = {}  # id(alias) -> (alias, root tensor)
        self.input_of: dict = {}  # id(root) -> (Binding, Var), for tensors bound as inputs
        self.buffers: dict = {}  # id(ndarray) -> (ndarray, Var) of apply outputs
        self.stale: dict = {}  # id(view) -> view whose base was written after it was made
        self.dynamic: set = set()  # Vars that depend on call-time inputs
        self.born: list = []  # weakrefs of tensors created during the trace
        self.born_ids: set = set()
        self.grad_state: dict = {}  # id(leaf) -> leaf: leaves whose .grad was read or set
        self.guards: list = []  # (kind, tensor): checked before each replay
        self.differentiated = False
        self.hypers: dict = {}  # key -> the 0-d tensor standing for a runtime number
        self.names = names or {}  # id(tensor) -> readable name for captures

    # -- values --------------------------------------------------------------------------------
    def new_var(self, shape, dtype) -> Var:
        v = Var(self._next, tuple(shape), dtype)
        self._next += 1
        return v

    def add_input(self, t, binding: Binding) -> Var:
        v = self.new_var(t._data.shape, t.dtype)
        self.tape.inputs.append(v)
        self.tape.bindings[v] = binding
        self.dynamic.add(v)
        self.env[id(t)] = (t, v)
        self.input_of[id(t)] = (binding, v)
        return v

    def _root(self, t):
        entry = self.alias_root.get(id(t))
        return entry[1] if entry is not None and entry[0] is t else t

    def var_of(self, t) -> Var:
        root = self._root(t)
        entry = self.env.get(id(root))
        if entry is not None and entry[0] is root:
            return entry[1]
        if self.stale.get(id(root)) is root:
            raise TraceError(
                "a view of a tensor was used after that tensor was updated in place; eager code "
                "would see the new values through the view, a compiled replay would not.\n"
                f"  at {user_frame()}\nTake the view again after the update."
            )
        buf = self.buffers.get(id(root._data))
        if buf is not None and buf[0] is root._data:
            # a new tensor around a traced output's buffer (a node's saved output)
            self.env[id(root)] = (root, buf[1])
            return buf[1]
        from ..ops.functions import is_cached_const

        if id(root) in self.born_ids or is_cached_const(root):
            v = self.new_var(root._data.shape, root.dtype)
            self.tape.consts[v] = np.array(root._data, copy=True)
            self.env[id(root)] = (root, v)
            return v
        name = self.names.get(id(root)) or f"c{len(self.tape.inputs)}"
        return self.add_input(root, Binding("capture", ref=root, name=name))

    # -- hooks called by the core --------------------------------------------------------------
    def record(self, prim, inputs, params, out) -> None:
        ins = tuple(self.var_of(t) for t in inputs)
        v = self.new_var(out._data.shape, out.dtype)
        self.tape.eqns.append(Eqn(prim, ins, freeze_params(params), v))
        if any(x in self.dynamic for x in ins):
            self.dynamic.add(v)
        self.env[id(out)] = (out, v)
        self.buffers[id(out._data)] = (out._data, v)
        self._born(out)

    def born_tensor(self, t) -> None:
        """A tensor made outside apply (factories, constants) during the trace."""
        self._born(t)

    def _born(self, t) -> None:
        self.born_ids.add(id(t))
        self.born.append(weakref.ref(t))

    def alias(self, src, alias) -> None:
        """``alias`` shares ``src``'s storage (``.data``, ``detach()``): it reads and writes
        whatever ``src`` holds at the time."""
        root = self._root(src)
        if alias is root:
            return
        self.var_of(root)
        self.alias_root[id(alias)] = (alias, root)

    def snapshot(self, src, copy) -> None:
        """``copy`` holds ``src``'s current value (in-place updates keep the old value there)."""
        self.env[id(copy)] = (copy, self.var_of(src))

    def write(self, x, new) -> None:
        root = self._root(x)
        self.var_of(root)
        v = self.var_of(new)
        # views made earlier share root's buffer: eagerly they would see the new values, a
        # replay would not, so they may not be used from here on
        for key, (t, _) in list(self.env.items()):
            if t is not root and t._base is not None and self._root(t._base) is root:
                del self.env[key]
                self.stale[key] = t
        self.buffers.pop(id(root._data), None)
        self.env[id(root)] = (root, v)

    def read_grad(self, leaf, value) -> None:
        """First read of ``leaf.grad``: bind it as an input (or guard that it is None). A leaf
        made during the trace (``x.clone().requires_grad_()``) starts each call without a
        gradient, so its ``.grad`` is an ordinary traced value, neither input nor state."""
        if id(leaf) in self.grad_state or id(leaf) in self.born_ids:
            return
        self.grad_state[id(leaf)] = leaf
        # an argument's .grad is that of the tensor passed on each call, not the traced one's
        arg = self._arg_position(leaf)
        kind = "grad_none" if value is None else "grad_like"
        self.guards.append((kind, leaf) if arg is None else (kind, arg, "arg"))
        if value is not None:
            name = (self.names.get(id(leaf)) or f"c{len(self.tape.inputs)}") + ".grad"
            if self.env.get(id(value), (None,))[0] is not value:
                self.add_input(value, self._grad_binding(leaf, arg, name))

    def _arg_position(self, leaf):
        """The argument position ``leaf`` was passed at, or None (a captured tensor)."""
        entry = self.input_of.get(id(leaf))
        return entry[0].key if entry is not None and entry[0].kind == "arg" else None

    @staticmethod
    def _grad_binding(leaf, arg, name: str) -> Binding:
        # ``ref``: a captured leaf; ``key``: an argument position, so no traced argument is kept
        if arg is None:
            return Binding("grad", ref=leaf, name=name)
        return Binding("grad", key=arg, name=name)

    def set_grad(self, leaf, value) -> None:
        # assigning without reading: the old value never matters, so no guard or input
        if id(leaf) not in self.born_ids:
            self.grad_state.setdefault(id(leaf), leaf)
        if value is not None:
            self.var_of(value)

    def on_concrete(self, t, what: str) -> None:
        if self.var_of(t) in self.dynamic:
            raise TraceError(
                f"{what} on a traced tensor reads its value while jitgrad.compile is tracing: "
                f"the result would be frozen into the compiled code.\n  at {user_frame()}\n"
                "Keep the decision in tensor ops (e.g. jitgrad.where(cond, a, b) instead of "
                "`if`), return the tensor and read it outside the compiled function, or do not "
                "compile this part."
            )

    def on_backward(self) -> None:
        self.differentiated = True

    def hyper(self, value: float, getter, name: str, key=None):
        """A number read afresh on every call (a learning rate): a 0-d float64 input. Reads
        with the same ``key`` (e.g. one optimizer group's lr) share one input."""
        from ..tensor import Tensor

        if key is not None and key in self.hypers:
            return self.hypers[key]
        t = Tensor._wrap(np.array(value, dtype=np.float64))
        self.add_input(t, Binding("hyper", ref=getter, name=name))
        if key is not None:
            self.hypers[key] = t
        return t

    # -- finishing -----------------------------------------------------------------------------
    def grad_writes(self) -> list:
        writes = []
        for leaf in self.grad_state.values():
            g = leaf._grad
            binding = self._grad_binding(leaf, self._arg_position(leaf), self._name(leaf) + ".grad")
            writes.append((binding, None if g is None else self.var_of(g)))
        return writes

    def state_writes(self) -> list:
        """Captured tensors whose value changed during the trace."""
        writes = []
        for key, (binding, original) in self.input_of.items():
            if binding.kind != "capture":
                continue
            current = self.env[key][1]
            if current is not original:
                writes.append((binding, current))
        return writes

    def _name(self, t) -> str:
        return self.names.get(id(t)) or "param"


class tracing:  # noqa: N801
    """Context manager installing a tracer as the recorder of ``apply``."""

    def __init__(self, tracer: Tracer):
        self.tracer = tracer

    def __enter__(self) -> Tracer:
        if STATE.tracer is not None:
            raise TraceError(
                "nested tracing is not supported: a compiled function called another "
                "compiled function while tracing; compile the outer one only."
            )
        STATE.tracer = self.tracer
        return self.tracer

    def __exit__(self, *exc):
        STATE.tracer = None
        return False


def hyper(value, getter, name: str = "hyper"):
    """A runtime number: the value itself when not tracing, a bound 0-d input when tracing."""
    tracer = STATE.tracer
    if tracer is None:
        return value
    return tracer.hyper(value, getter, name)
