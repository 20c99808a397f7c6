"""Elementwise math with PyTorch's semantics: trigonometric and hyperbolic functions, logs and
exponentials, the special functions (erf, erfinv, lgamma, digamma, polygamma), rounding,
division and remainders, and the composites built on them (logaddexp, xlogy, sinc, lerp,
isclose, nan_to_num, ...).

Primitives with a ``math`` counterpart are rows (``prims.unary``/``binary``); the special
functions NumPy lacks use SciPy in ``impl`` and ``scalar_math`` in their templates.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.special as sps

from .. import dtypes
from ..tensor import Tensor, apply
from . import functions as F
from . import loops
from .frontend import _binary, _float, _float_dtype, as_tensor_operand, result_type
from .prims import _same, _spec1, _spec2, unary
from .registry import op, register
from .spec import Spec, arg

S34 = (3, 4)

# PyTorch's names of dtypes in its kernels' errors ("floor_vml_cpu" not implemented for 'Bool')
TYPE_NAMES = {
    "bool": "Bool",
    "uint8": "Byte",
    "int8": "Char",
    "int16": "Short",
    "int32": "Int",
    "int64": "Long",
    "uint64": "UInt64",
    "float16": "Half",
    "bfloat16": "BFloat16",
    "float32": "Float",
    "float64": "Double",
}


def not_implemented(kernel: str, dtype) -> NotImplementedError:
    """PyTorch's error for a kernel with no loop for ``dtype``."""
    return NotImplementedError(f"\"{kernel}\" not implemented for '{TYPE_NAMES[dtype.name]}'")


def _refuse(kernel: str, *xs, allow_int: bool = True) -> None:
    """Raise PyTorch's error when an input is bool (or an integer, unless ``allow_int``)."""
    for x in xs:
        if isinstance(x, Tensor):
            d = x.dtype
            if d is dtypes.bool_ or (not allow_int and not d.is_floating_point):
                raise not_implemented(kernel, d)


def _c(x, value):
    """``value`` as a constant of ``x``'s dtype."""
    return F.const(value, x.dtype)


# -- trigonometric and hyperbolic ---------------------------------------------------------------
# d tan(x) = (1 + tan(x)^2) dx
tan_p, tan = unary(
    "tan",
    np.tan,
    "math.tan({0})",
    lambda n, g: (F.mul(g, F.add(F.mul(n.out, n.out), 1.0)),),
    save_out=True,
    floats=True,
    inplace=True,
    spec=_spec1(np.tan, lo=-1.2, hi=1.2),
)
# d asin(x) = dx / sqrt(1 - x^2)
asin_p, asin = unary(
    "asin",
    np.arcsin,
    "math.asin({0})",
    lambda n, g: (F.div(g, F.sqrt(F.rsub(F.mul(n.inputs[0], n.inputs[0]), 1.0))),),
    floats=True,
    inplace=True,
    names=("arcsin",),
    spec=_spec1(np.arcsin, lo=-0.9, hi=0.9),
)
# d acos(x) = -dx / sqrt(1 - x^2)
acos_p, acos = unary(
    "acos",
    np.arccos,
    "math.acos({0})",
    lambda n, g: (F.neg(F.div(g, F.sqrt(F.rsub(F.mul(n.inputs[0], n.inputs[0]), 1.0)))),),
    floats=True,
    inplace=True,
    names=("arccos",),
    spec=_spec1(np.arccos, lo=-0.9, hi=0.9),
)
# d atan(x) = dx / (1 + x^2)
atan_p, atan = unary(
    "atan",
    np.arctan,
    "math.atan({0})",
    lambda n, g: (F.div(g, F.add(F.mul(n.inputs[0], n.inputs[0]), 1.0)),),
    floats=True,
    inplace=True,
    names=("arctan",),
    spec=_spec1(np.arctan),
)
sinh_p, sinh = unary(
    "sinh",
    np.sinh,
    "math.sinh({0})",
    lambda n, g: (F.mul(g, cosh(n.inputs[0])),),
    floats=True,
    inplace=True,
    spec=_spec1(np.sinh),
)
cosh_p, cosh = unary(
    "cosh",
    np.cosh,
    "math.cosh({0})",
    lambda n, g: (F.mul(g, sinh(n.inputs[0])),),
    floats=True,
    inplace=True,
    spec=_spec1(np.cosh),
)
# d asinh(x) = dx / sqrt(x^2 + 1)
asinh_p, asinh = unary(
    "asinh",
    np.arcsinh,
    "math.asinh({0})",
    lambda n, g: (F.div(g, F.sqrt(F.add(F.mul(n.inputs[0], n.inputs[0]), 1.0))),),
    floats=True,
    inplace=True,
    names=("arcsinh",),
    spec=_spec1(np.arcsinh),
)
# d acosh(x) = dx / sqrt((x - 1)(x + 1))
acosh_p, acosh = unary(
    "acosh",
    np.arccosh,
    "math.acosh({0})",
    lambda n, g: (F.div(g, F.sqrt(F.mul(F.sub(n.inputs[0], 1.0), F.add(n.inputs[0], 1.0)))),),
    floats=True,
    inplace=True,
    names=("arccosh",),
    spec=_spec1(np.arccosh, lo=1.2, hi=3.0),
)
# d atanh(x) = dx / (1 - x^2)
atanh_p, atanh = unary(
    "atanh",
    np.arctanh,
    "math.atanh({0})",
    lambda n, g: (F.div(g, F.rsub(F.mul(n.inputs[0], n.inputs[0]), 1.0)),),
    floats=True,
    inplace=True,
    names=("arctanh",),
    spec=_spec1(np.arctanh, lo=-0.9, hi=0.9),
)


def _atan2_vjp(n, g):
    # d atan2(y, x) = (x dy - y dx) / (x^2 + y^2)
    y, x = n.inputs
    r2 = F.add(F.mul(x, x), F.mul(y, y))
    gy = F.div(F.mul(g, x), r2) if n.needs[0] else None
    gx = F.div(F.mul(g, F.neg(y)), r2) if n.needs[1] else None
    return gy, gx


atan2_p = register(
    "atan2",
    impl=np.arctan2,
    vjp=_atan2_vjp,
    shape=_same,
    kind="elementwise",
    scalar="math.atan2({0}, {1})",
    spec=_spec2(np.arctan2, arg(*S34, lo=0.3, hi=2.0), arg(*S34, away_from=(0.0,))),
)


@op(prim=atan2_p, names=("arctan2",), inplace=True)
def atan2(input, other):
    return _binary(atan2_p, input, other, _float_dtype(input, other))


# -- exponentials and logs ----------------------------------------------------------------------
# d expm1(x) = (expm1(x) + 1) dx
expm1_p, expm1 = unary(
    "expm1",
    np.expm1,
    "math.expm1({0})",
    lambda n, g: (F.mul(g, F.add(n.out, 1.0)),),
    save_out=True,
    floats=True,
    inplace=True,
    spec=_spec1(np.expm1),
)
# d exp2(x) = exp2(x) log(2) dx
exp2_p, exp2 = unary(
    "exp2",
    np.exp2,
    "(2.0 ** {0})",
    lambda n, g: (F.mul(g, F.mul(n.out, math.log(2.0))),),
    save_out=True,
    floats=True,
    inplace=True,
    spec=_spec1(np.exp2),
)
# d log2(x) = dx / (x log 2)
log2_p, log2 = unary(
    "log2",
    np.log2,
    "math.log2({0})",
    lambda n, g: (F.div(g, F.mul(n.inputs[0], math.log(2.0))),),
    floats=True,
    inplace=True,
    spec=_spec1(np.log2, lo=0.3, hi=3.0),
)
log10_p, log10 = unary(
    "log10",
    np.log10,
    "math.log10({0})",
    lambda n, g: (F.div(g, F.mul(n.inputs[0], math.log(10.0))),),
    floats=True,
    inplace=True,
    spec=_spec1(np.log10, lo=0.3, hi=3.0),
)

# -- special functions --------------------------------------------------------------------------
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def _erf_grad(x):
    # d erf(x) = 2/sqrt(pi) e^(-x^2) dx
    return F.mul(F.exp(F.neg(F.mul(x, x))), _TWO_OVER_SQRT_PI)


erf_p, erf = unary(
    "erf",
    loops.erf,
    "math.erf({0})",
    lambda n, g: (F.mul(g, _erf_grad(n.inputs[0])),),
    floats=True,
    inplace=True,
    spec=_spec1(np.vectorize(math.erf)),
)
erfc_p, erfc = unary(
    "erfc",
    dtypes.via_float32(sps.erfc),
    "math.erfc({0})",
    lambda n, g: (F.neg(F.mul(g, _erf_grad(n.inputs[0]))),),
    floats=True,
    inplace=True,
    spec=_spec1(np.vectorize(math.erfc)),
)
# d erfinv(y) = sqrt(pi)/2 e^(erfinv(y)^2) dy
erfinv_p, erfinv = unary(
    "erfinv",
    dtypes.via_float32(sps.erfinv),
    "erfinv({0})",
    lambda n, g: (F.mul(g, F.mul(F.exp(F.mul(n.out, n.out)), math.sqrt(math.pi) / 2.0)),),
    save_out=True,
    floats=True,
    inplace=True,
    spec=_spec1(sps.erfinv, lo=-0.9, hi=0.9),
)


def _polygamma_impl(x, n):
    if n == 0:
        # PyTorch's digamma: -inf at +0, +inf at -0 (SciPy gives NaN at both ... or -inf)
        out = sps.digamma(x)
        zero = x == 0
        if zero.any():
            out = np.where(zero, -np.copysign(np.inf, x), out).astype(x.dtype)
        return out
    return sps.polygamma(n, x).astype(x.dtype)


# d polygamma(n, x) = polygamma(n + 1, x) dx
polygamma_p = register(
    "polygamma",
    impl=dtypes.via_float32(_polygamma_impl),
    vjp=lambda nd, g: (F.mul(g, apply(polygamma_p, nd.inputs, {"n": nd.params["n"] + 1})),),
    shape=_same,
    kind="elementwise",
    scalar=lambda n: f"polygamma({n}, {{0}})",
    spec=Spec(
        [arg(*S34, lo=0.3, hi=3.0)],
        lambda x, n: sps.polygamma(n, x),
        params={"n": 1},
        differentiable=(0,),
        ref_tol=1e-11,
    ),
)


@op(spec=Spec([arg(*S34, lo=0.3, hi=3.0)], sps.digamma, differentiable=(0,), ref_tol=1e-11))
def digamma(input):
    return apply(polygamma_p, (_float(input),), {"n": 0})


@op(
    spec=Spec([1, arg(*S34, lo=0.3, hi=3.0)], sps.polygamma, differentiable=(1,), ref_tol=1e-11),
    method=False,
)
def polygamma(n, input):
    if not isinstance(n, int) or n < 0:
        raise RuntimeError("polygamma(n, x) does not support negative n.")
    return apply(polygamma_p, (_float(input),), {"n": n})


def _polygamma_method(self, n):
    return polygamma(n, self)


Tensor.polygamma = _polygamma_method  # (the method takes n second: x.polygamma(n))


# d lgamma(x) = digamma(x) dx
lgamma_p, lgamma = unary(
    "lgamma",
    dtypes.via_float32(sps.gammaln),
    "math.lgamma({0})",
    lambda n, g: (F.mul(g, apply(polygamma_p, (n.inputs[0],), {"n": 0})),),
    floats=True,
    inplace=True,
    spec=_spec1(sps.gammaln, lo=0.3, hi=3.0),
)


# -- rounding -------------------------------------------------------------------------------------
def _rounding(name, impl, template, kernel, names=()):
    """A rounding primitive (a zero gradient, as PyTorch's) and its op: integers pass through,
    bools are refused as PyTorch refuses them."""
    prim = register(
        name,
        impl=impl,
        vjp=lambda n, g: (F.zeros_like(g),),
        shape=_same,
        kind="elementwise",
        scalar=template,
        saves=False,
        spec=_spec1(
            impl, away_from=(-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5), margin=0.05, smooth=False
        ),
    )

    def fn(input):
        _refuse(kernel, input)
        return apply(prim, (input,)) if input.dtype.is_floating_point else input

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise {name} (integers are returned as they are)."
    return prim, (op(fn, prim=prim, inplace=True, names=names) if name != "round" else fn)


ceil_p, ceil = _rounding("ceil", np.ceil, "np.ceil({0})", "ceil_vml_cpu")
trunc_p, trunc = _rounding("trunc", np.trunc, "np.trunc({0})", "trunc_vml_cpu", names=("fix",))
# (half to even, as PyTorch's and NumPy's; the op, which takes ``decimals``, is below)
round_p, _round_plain = _rounding("round", np.rint, "np.rint({0})", "round_vml_cpu")


@op(
    spec=_spec1(np.round, away_from=(-1.5, -0.5, 0.5, 1.5), margin=0.05, smooth=False), inplace=True
)
def round(input, *, decimals=0):  # noqa: A001
    """Round half to even; ``decimals`` digits after the point (negative: before it)."""
    if decimals == 0:
        return _round_plain(input)
    _refuse("round_cpu", input, allow_int=False)
    if decimals > 0:
        scale = 10.0**decimals
        return F.div(_round_plain(F.mul(input, scale)), scale)
    scale = 10.0 ** (-decimals)
    return F.mul(_round_plain(F.div(input, scale)), scale)


@op(spec=_spec1(lambda x: x - np.trunc(x), away_from=(-1.0, 0.0, 1.0), margin=0.05), inplace=True)
def frac(input):
    """``input - trunc(input)`` (its gradient is 1, as PyTorch's)."""
    _refuse("frac_cpu", input, allow_int=False)
    return F.sub(input, trunc(input))


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


# -- composites -----------------------------------------------------------------------------------
@op(spec=_spec2(np.logaddexp))
def logaddexp(input, other):
    """``log(e^a + e^b)`` without overflow: max(a, b) + log1p(e^-|a - b|). (At a tie both
    terms split their gradient, 1/2 each, the true derivative.)"""
    _refuse("logaddexp_cpu", input, other, allow_int=False)
    a, b = input, other
    out = F.add(F.maximum(a, b), F.log1p(F.exp(F.neg(F.abs(F.sub(a, b))))))
    # equal infinities: a - b is NaN, the result is the infinity
    same_inf = F.logical_and(F.isinf(a), F.eq(a, b))
    return F.where(same_inf, a, out)


@op(spec=_spec2(np.logaddexp2))
def logaddexp2(input, other):
    """``log2(2^a + 2^b)``: max(a, b) + log1p(2^-|a - b|) / log(2)."""
    _refuse("logaddexp2_cpu", input, other, allow_int=False)
    a, b = input, other
    tail = F.div(F.log1p(exp2(F.neg(F.abs(F.sub(a, b))))), math.log(2.0))
    out = F.add(F.maximum(a, b), tail)
    same_inf = F.logical_and(F.isinf(a), F.eq(a, b))
    return F.where(same_inf, a, out)


def _xlogy_ref(x, y):
    return np.where(x == 0, 0.0, x * np.log(np.where(x == 0, 1.0, y)))


@op(spec=_spec2(_xlogy_ref, second=arg(*S34, lo=0.3, hi=3.0)))
def xlogy(input, other):
    """``x * log(y)``, 0 where x == 0 (unless y is NaN), as PyTorch's (and SciPy's)."""
    dtype = _float_dtype(input, other)
    x, y = F._operand(input, dtype), F._operand(other, dtype)
    zero = F.logical_and(F.eq(x, 0), F.logical_not(F.isnan(y)))
    # y's gradient is x / y, so where x == 0 the log must not see y (0 / 0 would be NaN)
    return F.where(zero, 0.0, F.mul(x, F.log(F.where(zero, 1.0, y))))


def _sinc_ref(x):
    return np.sinc(x)


@op(spec=_spec1(_sinc_ref), inplace=True)
def sinc(input):
    """``sin(pi x) / (pi x)``, 1 at 0."""
    x = _float(input)
    zero = F.eq(x, 0)
    px = F.mul(F.where(zero, 1.0, x), math.pi)
    return F.where(zero, 1.0, F.div(F.sin(px), px))


@op(spec=_spec1(np.deg2rad, linear=True))
def deg2rad(input):
    return F.mul(_float(input), math.pi / 180.0)


@op(spec=_spec1(np.rad2deg, linear=True))
def rad2deg(input):
    return F.mul(_float(input), 180.0 / math.pi)


def _finite_limits(dtype) -> tuple:
    info = np.finfo(dtype.np)
    return float(info.max), float(info.min)


def _nan_to_num_ref(x, nan=0.0, posinf=None, neginf=None):
    return np.nan_to_num(x, nan=nan, posinf=posinf, neginf=neginf)


@op(spec=Spec([arg(*S34)], _nan_to_num_ref, params={"nan": 0.5}, differentiable=(0,), linear=True))
def nan_to_num(input, nan=0.0, posinf=None, neginf=None):
    """NaN -> ``nan``, +-inf -> ``posinf``/``neginf`` (the dtype's largest finite values by
    default); integers are returned as they are."""
    if not input.dtype.is_floating_point:
        return F.clone(input)
    big, low = _finite_limits(input.dtype)
    posinf = big if posinf is None else posinf
    neginf = low if neginf is None else neginf
    out = F.where(F.isnan(input), nan, input)
    out = F.where(F.eq(input, math.inf), posinf, out)
    return F.where(F.eq(input, -math.inf), neginf, out)


def _clamp_bound(input, bound, pick):
    if isinstance(bound, Tensor) or not isinstance(bound, (int, float)):
        bound = as_tensor_operand(bound)
    out = F.where(pick(input, bound), bound, input)
    return F.cast(out, result_type(input, bound))


@op(spec=Spec([arg(*S34, away_from=(0.2,)), 0.2], np.maximum, differentiable=(0,), smooth=False))
def clamp_min(input, min):  # noqa: A002
    """``max(input, min)``; NaN passes through, the gradient goes to input where input >= min."""
    return _clamp_bound(input, min, F.lt)


@op(spec=Spec([arg(*S34, away_from=(0.2,)), 0.2], np.minimum, differentiable=(0,), smooth=False))
def clamp_max(input, max):  # noqa: A002
    """``min(input, max)``; NaN passes through, the gradient goes to input where input <= max."""
    return _clamp_bound(input, max, F.gt)


def _heaviside_ref(x, values):
    return np.heaviside(x, values)


@op(
    spec=Spec(
        [arg(*S34, kind="int", lo=-2, hi=3), arg(*S34, kind="int", lo=0, hi=3)], _heaviside_ref
    )
)
def heaviside(input, values):
    """0 where input < 0, ``values`` where input == 0, 1 where input > 0."""
    values = as_tensor_operand(values)
    if input.dtype is not values.dtype:
        raise RuntimeError("heaviside is not yet implemented for tensors with different dtypes.")
    step = F.cast(F.gt(input, 0), input.dtype)
    return F.where(F.eq(input, 0), values, step)


def _lerp_ref(x, end, w):
    return np.where(np.abs(w) < 0.5, x + w * (end - x), end - (end - x) * (1 - w))


@op(
    spec=Spec(
        [arg(*S34), arg(*S34), arg(*S34, lo=0.0, hi=1.0)], _lerp_ref, differentiable=(0, 1, 2)
    ),
    inplace=True,
)
def lerp(input, end, weight):
    """``input + weight (end - input)``, as PyTorch computes it: from ``end`` when
    |weight| >= 0.5, so weight 1 gives ``end`` exactly."""
    _refuse("lerp_kernel_scalar", input, allow_int=False)
    end = as_tensor_operand(end)
    if end.dtype is not input.dtype:
        raise RuntimeError(
            f"expected dtype {F._C_NAMES.get(input.dtype.name, input.dtype.name)} for `end` but "
            f"got dtype {F._C_NAMES.get(end.dtype.name, end.dtype.name)}"
        )
    diff = F.sub(end, input)
    if not isinstance(weight, Tensor):
        if abs(weight) < 0.5:
            return F.add(input, F.mul(diff, weight))
        return F.sub(end, F.mul(diff, 1.0 - weight))
    low = F.add(input, F.mul(weight, diff))
    high = F.sub(end, F.mul(diff, F.rsub(weight, 1.0)))
    return F.where(F.lt(F.abs(weight), 0.5), low, high)


@op(
    spec=Spec(
        [arg(*S34), arg(*S34), arg(*S34)],
        lambda x, a, b, value: x + value * a * b,
        params={"value": 0.5},
        differentiable=(0, 1, 2),
    ),
    inplace=True,
)
def addcmul(input, tensor1, tensor2, *, value=1):
    """``input + value * tensor1 * tensor2``."""
    return F.add(input, F.mul(F.mul(tensor1, tensor2), value))


_ADDCDIV_INT = (
    "Integer division with addcdiv is no longer supported, and in a future  release addcdiv "
    "will perform a true division of tensor1 and tensor2. The historic addcdiv behavior can be "
    "implemented as (input + value * torch.trunc(tensor1 / tensor2)).to(input.dtype) for "
    "integer inputs and as (input + value * tensor1 / tensor2) for float inputs. The future "
    "addcdiv behavior is just the latter implementation: (input + value * tensor1 / tensor2), "
    "for all dtypes."
)


@op(
    spec=Spec(
        [arg(*S34), arg(*S34), arg(*S34, lo=0.5)],
        lambda x, a, b, value: x + value * a / b,
        params={"value": 0.5},
        differentiable=(0, 1, 2),
    ),
    inplace=True,
)
def addcdiv(input, tensor1, tensor2, *, value=1):
    """``input + value * tensor1 / tensor2``."""
    t1, t2 = as_tensor_operand(tensor1), as_tensor_operand(tensor2)
    if not t1.dtype.is_floating_point and not t2.dtype.is_floating_point:
        raise RuntimeError(_ADDCDIV_INT)
    return F.add(input, F.mul(F.div(tensor1, tensor2), value))


# -- classification -------------------------------------------------------------------------------
@op(spec=Spec([arg(*S34)], np.isnan))
def isnan(input):
    return F.ne(input, input)


@op(spec=Spec([arg(*S34)], np.isinf))
def isinf(input):
    if not input.dtype.is_floating_point:
        return F.ne(input, input)
    return F.eq(F.abs(input), math.inf)


@op(spec=Spec([arg(*S34)], np.isfinite))
def isfinite(input):
    if not input.dtype.is_floating_point:
        return F.eq(input, input)
    # x - x is 0 for finite x, NaN for infinities and NaNs
    return F.eq(F.sub(input, input), 0.0)


def _isclose_ref(a, b, rtol=1e-5, atol=1e-8, equal_nan=False):
    return np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)


def _isclose_args(input, other):
    other = as_tensor_operand(other)
    if input.dtype is not other.dtype:
        n1 = TYPE_NAMES[input.dtype.name]
        n2 = TYPE_NAMES[other.dtype.name]
        raise RuntimeError(f"{n1} did not match {n2}")
    return other


@op(spec=Spec([arg(*S34), arg(*S34)], _isclose_ref, params={"rtol": 0.5}))
def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """``|input - other| <= atol + rtol |other|`` elementwise; equal values (infinities too)
    are close, NaNs only with ``equal_nan``."""
    other = _isclose_args(input, other)
    if rtol < 0:
        raise RuntimeError(f"rtol must be greater than or equal to zero, but got {rtol}")
    if atol < 0:
        raise RuntimeError(f"atol must be greater than or equal to zero, but got {atol}")
    close = F.eq(input, other)
    if equal_nan and input.dtype.is_floating_point:
        close = F.logical_or(close, F.logical_and(isnan(input), isnan(other)))
    if input.dtype is dtypes.bool_ or (rtol == 0 and atol == 0):
        return close
    a, b = input, other
    if not input.dtype.is_floating_point:
        a, b = _float(a), _float(b)
    err = F.abs(F.sub(a, b))
    allowed = F.add(F.abs(F.mul(b, rtol)), atol)
    return F.logical_or(close, F.logical_and(isfinite(err), F.le(err, allowed)))


@op(spec=Spec([arg(*S34), arg(*S34)], None))  # (a Python bool: tests of its own)
def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> bool:
    """Whether every element is close (``isclose``): a Python bool, so not under compile."""
    return bool(F.all(isclose(input, other, rtol, atol, equal_nan)).item())
