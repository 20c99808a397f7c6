"""Elementwise composites: ordinary jitgrad code over the primitives (logaddexp, xlogy, sinc,
nan_to_num, clamp_min/max, heaviside, lerp, addcmul/addcdiv, the isnan/isinf/isclose
family), with no rules of their own."""

from __future__ import annotations

import math

import numpy as np

from .. import dtypes
from ..tensor import Tensor
from . import functions as F
from .elementwise import S34, TYPE_NAMES, _refuse, exp2
from .frontend import _float, _float_dtype, as_tensor_operand, result_type
from .prims import _spec1, _spec2
from .registry import op
from .spec import Spec, arg


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
