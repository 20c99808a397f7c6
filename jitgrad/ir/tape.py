"""The tape: an SSA list of equations ``out = prim(inputs, params)`` over typed values.

A tape has inputs (function arguments, runtime scalars, captured state - each with a
``Binding`` saying where its value comes from at call time), constants, equations, outputs, and
writes (in-place updates of captured state and ``.grad`` assignments).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import dtypes

_SHORT = {
    "float32": "f32",
    "float64": "f64",
    "int64": "i64",
    "int32": "i32",
    "bool": "bool",
    "uint64": "u64",
    "int16": "i16",
    "int8": "i8",
    "uint8": "u8",
    "float16": "f16",
    "bfloat16": "bf16",
}


@dataclass(frozen=True, eq=False, slots=True)
class Var:
    """One SSA value: an id, a shape and a dtype."""

    id: int
    shape: tuple
    dtype: dtypes.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def type_str(self) -> str:
        return f"{_SHORT[self.dtype.name]}[{','.join(map(str, self.shape))}]"

    def __repr__(self) -> str:
        return f"%{self.id}"


@dataclass(frozen=True, eq=False, slots=True)
class Eqn:
    """``out = prim(*inputs, **params)``; params are a sorted tuple of items (hashable)."""

    prim: Any
    inputs: tuple
    params: tuple
    out: Var

    @property
    def kwargs(self) -> dict:
        return dict(self.params)


@dataclass(frozen=True, eq=False, slots=True)
class Binding:
    """Where an input's value comes from on each call.

    kind: ``arg`` (tensor argument at ``key``), ``scalar`` (Python number argument at ``key``),
    ``hyper`` (a number read by ``ref()`` each call, e.g. an optimizer's learning rate),
    ``capture`` (the tensor ``ref`` read by identity), ``grad`` (``ref.grad`` of a leaf),
    ``cotangent`` (incoming gradient of output ``key`` in a backward tape), ``residual``
    (forward value ``key`` saved for a backward tape).
    """

    kind: str
    key: Any = None
    ref: Any = None
    name: str = ""


def freeze_params(params: dict) -> tuple:
    return tuple(sorted(params.items()))


def _fmt_param(v) -> str:
    if isinstance(v, dtypes.dtype):
        return v.name
    if isinstance(v, tuple):
        return (
            "(" + ",".join(_fmt_param(x) for x in v) + ")"
            if len(v) != 1
            else f"({_fmt_param(v[0])},)"
        )
    return repr(v)


@dataclass(eq=False)
class Tape:
    name: str = "fn"
    inputs: list = field(default_factory=list)  # Vars bound at call time, in order
    bindings: dict = field(default_factory=dict)  # Var -> Binding
    consts: dict = field(default_factory=dict)  # Var -> np.ndarray
    eqns: list = field(default_factory=list)
    outputs: list = field(default_factory=list)  # Vars returned
    writes: list = field(default_factory=list)  # (Binding, Var): store Var into the target

    # -- construction helpers ----------------------------------------------------------------
    def next_id(self) -> int:
        """An id no value of this tape has (passes that add values count up from it)."""
        ids = [v.id for v in self.inputs] + [v.id for v in self.consts]
        return max(ids + [e.out.id for e in self.eqns], default=-1) + 1

    def copy(self, **changes) -> Tape:
        t = Tape(
            name=self.name,
            inputs=list(self.inputs),
            bindings=dict(self.bindings),
            consts=dict(self.consts),
            eqns=list(self.eqns),
            outputs=list(self.outputs),
            writes=list(self.writes),
        )
        for k, v in changes.items():
            setattr(t, k, v)
        return t

    def name_of(self, v: Var) -> str:
        b = self.bindings.get(v)
        if b is not None and b.name:
            return b.name
        return repr(v)

    # -- checks and views --------------------------------------------------------------------
    def verify(self) -> None:
        """Raise ValueError unless the tape is well formed (SSA, defined before use, typed)."""
        defined = set()
        for v in self.inputs:
            if v in defined:
                raise ValueError(f"input {v} listed twice")
            if v not in self.bindings:
                raise ValueError(f"input {v} has no binding")
            defined.add(v)
        for v in self.consts:
            if v in defined:
                raise ValueError(f"constant {v} is also an input")
            arr = self.consts[v]
            if tuple(arr.shape) != v.shape or arr.dtype != v.dtype.np:
                raise ValueError(f"constant {v} does not match its type {v.type_str()}")
            defined.add(v)
        for i, e in enumerate(self.eqns):
            for x in e.inputs:
                if x not in defined:
                    raise ValueError(f"equation {i} ({e.prim.name}) uses {x} before it is defined")
            if e.out in defined:
                raise ValueError(f"equation {i} redefines {e.out} (not SSA)")
            shape, dtype = e.prim.shape(e.inputs, **e.kwargs)
            if tuple(shape) != e.out.shape or dtype is not e.out.dtype:
                raise ValueError(
                    f"equation {i} ({e.prim.name}): declared {e.out.type_str()} but the shape rule "
                    f"gives {dtype.name}{list(shape)}"
                )
            defined.add(e.out)
        for v in self.outputs:
            if v not in defined:
                raise ValueError(f"output {v} is not defined")
        for b, v in self.writes:
            if v not in defined:
                raise ValueError(f"write to {b.name or b.kind} uses undefined {v}")

    def __str__(self) -> str:
        names = {v: self.name_of(v) for v in self.inputs}

        def n(v):
            return names.get(v, repr(v))

        args = [v for v in self.inputs if self.bindings[v].kind in ("arg", "scalar", "cotangent")]
        others = [v for v in self.inputs if v not in args]
        head = f"tape {self.name}(" + ", ".join(f"{n(v)}: {v.type_str()}" for v in args) + ")"
        if others:
            head += " captures " + ", ".join(f"{n(v)}: {v.type_str()}" for v in others)
        lines = [head]
        for v, arr in self.consts.items():
            shown = np.array2string(arr, threshold=6, precision=6, separator=",").replace("\n", "")
            lines.append(f"  {v} = const {v.type_str()} {shown}")
        for e in self.eqns:
            params = " ".join(f"{k}={_fmt_param(val)}" for k, val in e.params)
            ins = " ".join(n(x) for x in e.inputs)
            lines.append(
                f"  {e.out} = {e.prim.name} {ins}{' ' + params if params else ''}"
                f"  : {e.out.type_str()}"
            )
        for b, v in self.writes:
            target = b.name or b.kind
            lines.append(f"  write {target} <- {n(v)}")
        lines.append("  return " + ", ".join(n(v) for v in self.outputs))
        return "\n".join(lines)

    __repr__ = __str__

    def to_dot(self) -> str:
        """Graphviz text: inputs and constants as boxes, equations as ellipses."""
        out = [f'digraph "{self.name}" {{', "  rankdir=TB;"]
        for v in self.inputs:
            out.append(f'  v{v.id} [shape=box, label="{self.name_of(v)}\\n{v.type_str()}"];')
        for v in self.consts:
            out.append(f'  v{v.id} [shape=box, style=dashed, label="const\\n{v.type_str()}"];')
        for e in self.eqns:
            out.append(f'  v{e.out.id} [label="{e.prim.name}\\n{e.out.type_str()}"];')
            for x in e.inputs:
                out.append(f"  v{x.id} -> v{e.out.id};")
        for i, v in enumerate(self.outputs):
            out.append(f'  out{i} [shape=doublecircle, label="out{i}"];')
            out.append(f"  v{v.id} -> out{i};")
        for k, (b, v) in enumerate(self.writes):
            out.append(f'  w{k} [shape=box, style=bold, label="write {b.name or b.kind}"];')
            out.append(f"  v{v.id} -> w{k};")
        out.append("}")
        return "\n".join(out)
