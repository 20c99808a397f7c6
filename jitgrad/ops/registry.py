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
    ``elementwise``, ``reduce``, ``scan`` (a running reduction along one axis), ``sort`` (a
    stable ordering along one axis), ``movement``, ``matmul``, ``index`` (a gather),
    ``scatter`` (additions into a copy of a buffer), ``random``, ``linalg`` (decompositions),
    ``other``, or ``fused`` for a
    composite run as one eager step (see ``prims_fused``). Backends key their lowering by kind.
``shape``
    ``shape(avals, **params) -> (shape, dtype)``: the output's shape and dtype from the inputs'
    (anything with ``.shape`` and ``.dtype``), without computing anything.
``decompose``
    Fused primitives only: ``decompose(*tensors, **params) -> Tensor``, the composite over core
    primitives that the fused one stands for. ``apply`` runs it instead while tracing, so tapes
    and backends never meet a fused primitive.
``reduction``
    Reductions and scans only: how compiled backends fold the reduced elements (``Reduction``:
    init, combine, finalize; a scan stores the result after each element). Every reduction is
    an entry of that one table; backends hold no reduction of their own.
``spec``
    The test spec (``ops.spec.Spec``): how the shared per-op tests apply it.

The public ops (``jitgrad.X`` and ``Tensor.X``) are entries of the op table ``OPS``, declared
with ``op``: one declaration gives the function, its method, its keyword aliases and its test
spec. An op that is a primitive under a standard front end (``exp``, ``mul``, ``lt``) is one row
that declares both (see ``prims.unary``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass

from .spec import Spec

PRIMS: dict[str, Prim] = {}
OPS: dict[str, Op] = {}

KINDS = (
    "elementwise",
    "reduce",
    "scan",
    "sort",
    "movement",
    "matmul",
    "index",
    "scatter",
    "random",
    "linalg",  # matrix decompositions and solves (ops/linalg.py)
    "other",
    "fused",
)


@dataclass(frozen=True)
class Reduction:
    """How a reduce primitive folds the elements it reduces, for compiled backends: ``acc =
    init`` (and the ``state`` statements), ``combine`` for each element in order, then ``result``
    holds ``finalize``. Templates may name ``{acc}`` (the accumulator), ``{x}`` (the element),
    ``{i}`` (its position along the reduced axis), ``{t}`` (a fresh local), ``{A}`` and ``{X}``
    (the accumulator's and the input's scalar types), ``{lowest}`` and ``{highest}`` (the
    accumulator type's extremes). ``combine`` is one statement or several, and must stay right
    when partial results (of threads, say) are combined with it in order, unless the reduction
    has ``first`` or a ``result`` other than the accumulator."""

    init: str
    combine: str | tuple
    finalize: str = "{acc}"
    # "wide": float64 for floats, int64 otherwise; "input": the input's own type for floats
    acc: str = "wide"
    state: tuple = ()  # more locals' first values (statements)
    result: str = "acc"  # the local holding the result ("best": a position)
    # a reduction of the same elements run first, whose finalized result the combine reads as m
    first: Reduction | None = None

    @property
    def folds(self) -> bool:
        """Whether partial results combine with ``combine`` (one pass, the accumulator is the
        result): such reductions may run in threaded parts, over columns, and in groups."""
        return self.first is None and self.result == "acc"


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
    reduction: Reduction | None = None
    spec: Spec | None = None

    def __repr__(self) -> str:
        return f"<prim {self.name}>"


def register(name: str, **rules) -> Prim:
    """Declare a primitive once; raises if the name is taken or a rule is missing. (Its test
    spec is ``spec=``; ``tests/test_prims.py`` fails for a primitive without one.)"""
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
    if (kind in ("reduce", "scan")) != (rules.get("reduction") is not None):
        raise ValueError(
            f"primitive {name!r}: a reduction or scan, and only one, needs reduction rules"
        )
    if (kind == "fused") != (rules.get("decompose") is not None):
        raise ValueError(f"primitive {name!r}: a fused primitive, and only one, needs decompose")
    camel = "".join(part.capitalize() for part in name.split("_"))
    rules.setdefault("node_name", f"{camel}Backward0")
    prim = Prim(name=name, **rules)
    PRIMS[name] = prim
    return prim


# Keyword aliases PyTorch accepts wherever a parameter has the canonical name (NumPy's names).
KEYWORD_ALIASES = {"dim": ("axis",), "keepdim": ("keepdims",)}


@dataclass(frozen=True, eq=False)
class Op:
    """One public op: ``jitgrad.<name>`` (and each of ``names``), the same as a ``Tensor``
    method when ``method`` is set (and ``<name>_`` in place when ``inplace``), and the spec the
    shared tests call it with."""

    name: str
    fn: Callable
    spec: Spec | None
    names: tuple = ()
    method: bool = True
    inplace: bool = False
    prim: Prim | None = None  # the primitive it applies, when it is one under a front end
    # where its public names live: "jitgrad" (jitgrad.X), "nn.functional", "linalg", ...
    namespace: str = "jitgrad"

    @property
    def key(self) -> str:
        """Its key in ``OPS``: the name, qualified by the namespace outside ``jitgrad``
        (``nn.functional.pad``)."""
        return self.name if self.namespace == "jitgrad" else f"{self.namespace}.{self.name}"

    def __repr__(self) -> str:
        return f"<op {self.name}>"


def op(
    fn: Callable | None = None,
    *,
    spec: Spec | None = None,
    names: tuple = (),
    method: bool | None = None,
    inplace: bool = False,
    prim: Prim | None = None,
    name: str | None = None,
    namespace: str = "jitgrad",
):
    """Declare a public op (a decorator): ``@op(spec=Spec(...))`` over its function.

    ``names`` are other public names of the same op (``divide`` for ``div``); ``method=False``
    keeps it off ``Tensor`` (ops outside the ``jitgrad`` namespace are methods only with
    ``method=True``); ``inplace`` adds ``Tensor.<name>_``. ``namespace`` is the module its names
    live in: ``"jitgrad"``, ``"nn.functional"`` (``jitgrad.nn.functional.<name>``), ``"linalg"``
    ... (see ``export``), or ``"Tensor"`` for methods with no function (``Tensor.repeat``;
    with ``method=True``). A parameter named ``dim`` or
    ``keepdim`` also accepts PyTorch's aliases ``axis=`` and ``keepdims=``. Without a ``spec``,
    an op of ``prim`` is tested with the primitive's (the two take the same arguments).
    """

    def declare(fn: Callable) -> Callable:
        public = _with_keyword_aliases(fn)
        entry = Op(
            name or fn.__name__,
            public,
            spec if spec is not None or prim is None else prim.spec,
            tuple(names),
            (namespace == "jitgrad") if method is None else method,
            inplace,
            prim,
            namespace,
        )
        if entry.key in OPS:
            raise ValueError(f"op {entry.key!r} is already declared")
        OPS[entry.key] = entry
        return public

    return declare(fn) if fn is not None else declare


def export(namespace: str, into: dict) -> list:
    """Bind every op of ``namespace`` declared so far in the module dict ``into`` (names it
    already holds are kept); returns their public names, for ``__all__``."""
    names = []
    for entry in OPS.values():
        if entry.namespace == namespace:
            for public in (entry.name, *entry.names):
                into.setdefault(public, entry.fn)
                names.append(public)
    return names


def _with_keyword_aliases(fn: Callable) -> Callable:
    """``fn``, or a wrapper that renames alias keywords (``axis`` -> ``dim``) before calling it
    when ``fn`` has parameters that PyTorch gives aliases (only those ops pay for it)."""
    params = inspect.signature(fn).parameters
    renames = {a: p for p, aliases in KEYWORD_ALIASES.items() if p in params for a in aliases}
    if not renames:
        return fn

    @functools.wraps(fn)
    def public(*args, **kwargs):
        if kwargs:
            for alias, canonical in renames.items():
                if alias in kwargs:
                    if canonical in kwargs:
                        raise TypeError(
                            f"{fn.__name__}() got both {canonical!r} and its alias {alias!r}"
                        )
                    kwargs[canonical] = kwargs.pop(alias)
        return fn(*args, **kwargs)

    return public


def scalar_expr(prim: Prim, args: list[str], params: dict, half: str = "0.5") -> str:
    """The scalar template of ``prim`` filled in with argument expressions; ``{half}`` in it
    is ``half``, one half as the caller spells it in the result's dtype (a code generator:
    ``np.float32(0.5)``, so that float32 arithmetic is not widened by a Python float)."""
    template = prim.scalar
    if callable(template):
        template = template(**params)
    return template.format(*args, half=half)
