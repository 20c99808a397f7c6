"""Elementwise math with PyTorch's semantics: trigonometric and hyperbolic functions, logs and
exponentials, the special functions (erf, erfinv, lgamma, digamma, polygamma) and rounding,
then division and remainders (``elementwise_division``) and the composites built on them
(``elementwise_composites``: logaddexp, xlogy, sinc, lerp, isclose, nan_to_num, ...).

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
from .frontend import _binary, _float, _float_dtype
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


# (declared next, in this order: the op table lists the entries as they come)
from . import elementwise_division, elementwise_composites  # noqa: E402,F401  # isort: skip
