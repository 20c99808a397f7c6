"""Elementwise division and its relatives with PyTorch's semantics: floor division, remainder
and fmod (integers included, with PyTorch's errors for a zero divisor), ``div`` with a
rounding mode, and sign and magnitude (copysign, signbit, hypot)."""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..tensor import apply
from . import functions as F
from .elementwise import S34, _c, _refuse, trunc
from .frontend import _binary, _float_dtype, result_type
from .prims import _same, _spec2
from .registry import op, register
from .spec import Spec, arg


# -- division and remainders ----------------------------------------------------------------------
def _check_int_divisor(a, b):
    if a.dtype.kind in "iub" and (b == 0).any():
        raise RuntimeError("ZeroDivisionError")


def _floor_divide_impl(a, b):
    _check_int_divisor(a, b)
    return np.floor_divide(a, b)


# rounded divisions have a zero gradient, as PyTorch's div(rounding_mode=...)
floor_divide_p = register(
    "floor_divide",
    impl=_floor_divide_impl,
    vjp=lambda n, g: (F.zeros_like(g), F.zeros_like(g)),
    shape=_same,
    kind="elementwise",
    scalar="({0} // {1})",
    saves=False,
    spec=Spec(
        [arg(*S34, lo=-3.0, hi=3.0), arg(*S34, lo=0.5, hi=2.0)],
        np.floor_divide,
        differentiable=(0, 1),
        smooth=False,
    ),
)


# (PyTorch's floor_divide has no derivative, div(rounding_mode="floor") a zero one: its spec is
# forward only)
@op(
    spec=Spec(
        [arg(*S34, lo=-3.0, hi=3.0), arg(*S34, lo=0.5, hi=2.0)], np.floor_divide, smooth=False
    ),
    inplace=True,
)
def floor_divide(input, other):
    """Python's ``//``: the quotient rounded down (NumPy's and PyTorch's)."""
    _refuse("div_floor_cpu", input, other)
    return _binary(floor_divide_p, input, other)


def _remainder_impl(a, b):
    _check_int_divisor(a, b)
    return np.remainder(a, b)


def _remainder_vjp(n, g):
    # remainder(a, b) = a - floor(a / b) b
    a, b = n.inputs
    gb = F.neg(F.mul(g, apply(floor_divide_p, (a, b)))) if n.needs[1] else None
    return g, gb


remainder_p = register(
    "remainder",
    impl=_remainder_impl,
    vjp=_remainder_vjp,
    shape=_same,
    kind="elementwise",
    scalar="({0} % {1})",
    spec=Spec(
        [arg(*S34, lo=-3.0, hi=3.0), arg(*S34, lo=0.5, hi=2.0)],
        np.remainder,
        differentiable=(0, 1),
        smooth=False,
    ),
)


@op(prim=remainder_p, inplace=True)
def remainder(input, other):
    """Python's ``%``: the remainder with the divisor's sign."""
    _refuse("remainder_cpu", input, other)
    return _binary(remainder_p, input, other)


def _fmod_impl(a, b):
    _check_int_divisor(a, b)
    return np.fmod(a, b)


def _fmod_template(integral=False):
    if not integral:
        return "np.fmod({0}, {1})"
    # C's remainder (the dividend's sign) from Python's (the divisor's)
    return "(({0} % {1}) - {1} if ({0} % {1}) != 0 and ({0} < 0) != ({1} < 0) else ({0} % {1}))"


def _fmod_vjp(n, g):
    # fmod(a, b) = a - trunc(a / b) b
    a, b = n.inputs
    gb = F.neg(F.mul(g, trunc(F.div(a, b)))) if n.needs[1] else None
    return g, gb


fmod_p = register(
    "fmod",
    impl=lambda a, b, integral=False: _fmod_impl(a, b),
    vjp=_fmod_vjp,
    shape=_same,
    kind="elementwise",
    scalar=_fmod_template,
    spec=Spec(
        [arg(*S34, lo=-3.0, hi=3.0), arg(*S34, lo=0.5, hi=2.0)],
        np.fmod,
        differentiable=(0, 1),
        smooth=False,
    ),
)


@op(spec=fmod_p.spec, inplace=True)
def fmod(input, other):
    """C's ``fmod``: the remainder with the dividend's sign."""
    _refuse("fmod_cpu", input, other)
    dtype = result_type(input, other)
    a, b = F._align([F._operand(input, dtype), F._operand(other, dtype)])
    return apply(fmod_p, (a, b), {"integral": not dtype.is_floating_point})


def div_rounded(input, other, rounding_mode):
    """``div(input, other, rounding_mode=...)``: "trunc" rounds toward zero, "floor" down."""
    if rounding_mode == "floor":
        return floor_divide(input, other)
    if rounding_mode != "trunc":
        raise RuntimeError(
            "div expected rounding_mode to be one of None, 'trunc', or 'floor' but found "
            f"'{rounding_mode}'"
        )
    _refuse("div_trunc_cpu", input, other)
    dtype = result_type(input, other)
    if dtype.is_floating_point:
        return trunc(F.div(input, other))
    # integers: (a - fmod(a, b)) is a multiple of b, so floor division of it is exact
    return floor_divide(F.sub(input, fmod(input, other)), other)


# -- sign and magnitude ---------------------------------------------------------------------------
def _copysign_vjp(n, g):
    # |a| takes b's sign: d/da = sign of a times that of the result (0 where a == 0)
    a, _ = n.inputs
    ga = F.mul(g, F.where(F.eq(a, 0.0), 0.0, F.div(n.out, a))) if n.needs[0] else None
    return ga, (F.zeros_like(g) if n.needs[1] else None)


copysign_p = register(
    "copysign",
    impl=np.copysign,
    vjp=_copysign_vjp,
    shape=_same,
    kind="elementwise",
    scalar="math.copysign({0}, {1})",
    save_out=True,
    spec=_spec2(np.copysign, arg(*S34, away_from=(0.0,)), arg(*S34, away_from=(0.0,))),
)


@op(prim=copysign_p, inplace=True)
def copysign(input, other):
    return _binary(copysign_p, input, other, _float_dtype(input, other))


@op(spec=Spec([arg(*S34)], np.signbit))
def signbit(input):
    """Whether the sign bit is set (True for -0.0 and negative NaNs' sign, as PyTorch)."""
    if input.dtype is dtypes.bool_:
        return F.ne(input, input)
    if not input.dtype.is_floating_point:
        return F.lt(input, 0)
    return F.lt(apply(copysign_p, (_c(input, 1.0), input)), 0.0)


def _hypot_vjp(n, g):
    # d hypot(a, b) = (a da + b db) / hypot(a, b)
    a, b = n.inputs
    ga = F.mul(g, F.div(a, n.out)) if n.needs[0] else None
    gb = F.mul(g, F.div(b, n.out)) if n.needs[1] else None
    return ga, gb


hypot_p = register(
    "hypot",
    impl=np.hypot,
    vjp=_hypot_vjp,
    shape=_same,
    kind="elementwise",
    scalar="math.hypot({0}, {1})",
    save_out=True,
    spec=_spec2(np.hypot, arg(*S34, away_from=(0.0,)), arg(*S34, away_from=(0.0,))),
)


@op(prim=hypot_p, inplace=True)
def hypot(input, other):
    _refuse("hypot_cpu", input, other, allow_int=False)
    return _binary(hypot_p, input, other)
