"""The primitive registry: every primitive is one record holding all of its rules.

A primitive's rules, side by side:

``impl``
    NumPy semantics, the reference meaning: ``impl(*arrays, **params) -> array``. Eager CPU
    execution and the reference interpreter both call it, so they agree bit for bit.
``vjp``
    The backward rule, written in jitgrad ops: ``vjp(node, g) -> tuple`` with one gradient (or
    ``None``) per input. ``node.inputs``, ``node.out``, ``node.params`` and ``node.needs`` (which
    inputs want a gradient) are available. Because the rule is ordinary jitgrad code, higher-order
    gradients and tracing of the backward need nothing extra.
``scalar``
    For elementwise primitives: a per-element expression template over ``{0}``, ``{1}``, ...
    (the inputs) using ``math`` functions only; the compiled backends paste it into fused loops.
``kind``
    ``elementwise``, ``reduce``, ``movement``, ``matmul``, ``index``, ``random``, ``other``, or
    ``fused`` for a composite run as one eager step (see ``prims_fused``).
``shape``
    ``shape(avals, **params) -> (shape, dtype)``: the output's shape and dtype from the inputs'
    (anything with ``.shape`` and ``.dtype``), without computing anything.
``decompose``
    Fused primitives only: ``decompose(*tensors, **params) -> Tensor``, the composite over core
    primitives that the fused one stands for. ``apply`` runs it instead while tracing, so tapes
    and backends never meet a fused primitive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

PRIMS: dict[str, Prim] = {}

KINDS = ("elementwise", "reduce", "movement", "matmul", "index", "random", "other", "fused")


@dataclass(frozen=True, eq=False, slots=True)
class Prim:
    name: str
    impl: Callable
    vjp: Callable | None
    shape: Callable
    kind: str
    scalar: str | Callable | None = None
    # Whether PyTorch's node for this op keeps tensors for backward: a second backward through
    # a freed graph only fails for nodes that saved something (add/reshape nodes never do). A
    # tuple names the saved inputs: changing another one in place before backward is allowed.
    saves: bool | tuple = True
    # Whether vjp reads ``node.out`` (the primal result), so the node keeps the output's buffer.
    save_out: bool = False
    # Whether impl returns (output, residual): eagerly, the node keeps the residual for vjp
    # (``node.residual``: e.g. the positions max pooling picked, so its gradient need not
    # find them again)
    residual: bool = False
    # Outputs of non-differentiable prims (comparisons, argmax, random draws) never require grad.
    differentiable: bool = True
    node_name: str = ""
    decompose: Callable | None = None

    def __repr__(self) -> str:
        return f"<prim {self.name}>"


def register(name: str, **rules) -> Prim:
    """Declare a primitive once; raises if the name is taken or a rule is missing."""
    if name in PRIMS:
        raise ValueError(f"primitive {name!r} is already registered")
    kind = rules.get("kind")
    if kind not in KINDS:
        raise ValueError(f"primitive {name!r}: kind must be one of {KINDS}, got {kind!r}")
    if kind == "elementwise" and rules.get("scalar") is None:
        raise ValueError(f"elementwise primitive {name!r} needs a scalar template")
    differentiable = rules.get("differentiable", True)
    if differentiable and rules.get("vjp") is None:
        raise ValueError(f"differentiable primitive {name!r} needs a vjp rule")
    if (kind == "fused") != (rules.get("decompose") is not None):
        raise ValueError(f"primitive {name!r}: a fused primitive, and only one, needs decompose")
    camel = "".join(part.capitalize() for part in name.split("_"))
    rules.setdefault("node_name", f"{camel}Backward0")
    prim = Prim(name=name, **rules)
    PRIMS[name] = prim
    return prim


def scalar_expr(prim: Prim, args: list[str], params: dict) -> str:
    """The scalar template of ``prim`` filled in with argument expressions."""
    template = prim.scalar
    if callable(template):
        template = template(**params)
    return template.format(*args)
