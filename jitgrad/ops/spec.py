"""Test specs: how the shared per-op tests exercise a primitive or an op.

Every op-table entry carries one (``register(..., spec=)`` for a primitive, ``op(spec=)`` for
an op): inputs drawn from a safe range, a NumPy reference of the forward, which inputs are
differentiable, whether the result is smooth (second order checked) and linear, and the dtypes
the forward is checked in. ``tests/test_prims.py`` reads them from the registry, so a new entry
is covered by the forward, first- and second-order and backend tests with nothing else written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Arg:
    """How to draw one tensor input: floats in [lo, hi], or ints in [lo, hi) (of ``dtype``), or
    bools; or matrices over the last two dims: ``sym`` (symmetric, (X + X^T) / 2) or ``spd``
    (symmetric positive definite, X X^T / n + I), X's entries in [lo, hi]."""

    shape: tuple
    lo: float = -2.0
    hi: float = 2.0
    kind: str = "float"  # float | int | bool | sym | spd
    away_from: tuple = ()  # values (kinks, poles) to keep at least `margin` away from
    margin: float = 0.2
    dtype: str = "int64"  # the NumPy dtype of an int input ("int8", "uint8", ...)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        if self.kind == "bool":
            return rng.random(self.shape) < 0.5
        if self.kind == "int":
            return rng.integers(int(self.lo), int(self.hi), self.shape).astype(self.dtype)
        x = rng.uniform(self.lo, self.hi, self.shape)
        if self.kind in ("sym", "spd"):
            xt = np.swapaxes(x, -1, -2)
            n = self.shape[-1]
            return (x + xt) / 2 if self.kind == "sym" else x @ xt / n + np.eye(n)
        for v in self.away_from:
            close = np.abs(x - v) < self.margin
            x = np.where(close, v + np.sign(x - v + 1e-300) * self.margin * 1.5, x)
        return x


def arg(*shape, **kw) -> Arg:
    """``arg(3, 4, lo=0.5)``: a float input of shape (3, 4) drawn from [0.5, 2]."""
    return Arg(shape, **kw)


@dataclass(frozen=True)
class Spec:
    """How the shared tests call one entry and what they expect.

    A primitive is applied as ``apply(prim, inputs, params)``; an op is called as
    ``op(*inputs, **params)``, or ``call(op, *inputs, **params)`` when it takes its tensors
    otherwise (a list, say). ``args`` holds an ``Arg`` per tensor input; anything else in it is
    passed as it is (a dim, a shape), to the op and to ``ref`` alike.
    """

    args: list
    ref: Callable | None  # NumPy reference of the forward (None: the entry has its own test)
    params: dict = field(default_factory=dict)
    differentiable: tuple = ()  # positions in ``args`` of the inputs gradients are checked for
    smooth: bool = True  # check second order too
    # Linear in its differentiable inputs together: f(x + y) = f(x) + f(y), so its first-order
    # gradient does not depend on them (tested both ways)
    linear: bool = False
    dtypes: tuple = ("float64", "float32")  # the dtypes float inputs are checked in (forward)
    tol: float = 1e-6  # relative tolerance of first-order gradients against finite differences
    ref_tol: float = 1e-12  # how closely the float64 forward matches ``ref``
    call: Callable | None = None
    # fused primitives: more (args, params) on which eager and the decomposition agree bit for bit
    cases: tuple = ()
    # PyTorch's counterpart, for the agreement tests: True (the same name in the op's namespace:
    # torch.X, torch.nn.functional.X, torch.linalg.X), a dotted path under torch
    # ("special.erfinv", "Tensor.addcmul_"), or False (none, or it is called otherwise)
    torch: bool | str = True

    def draw(self, seed: int = 0, args: list | None = None) -> list:
        """The inputs for one run: arrays for ``Arg`` entries, the rest as given."""
        rng = np.random.default_rng(seed)
        args = self.args if args is None else args
        return [a.draw(rng) if isinstance(a, Arg) else a for a in args]
