"""nn.functional activations declared in the op table (``namespace="nn.functional"``)."""

from __future__ import annotations

import numpy as np

from .. import random as _random
from ..ops import functions as _F
from ..ops.registry import op
from ..ops.spec import Spec, arg
from ..tensor import Tensor


def _inplace(input: Tensor, out: Tensor, inplace: bool) -> Tensor:
    return input.copy_(out) if inplace else out


@op(
    namespace="nn.functional",
    spec=Spec(
        [arg(3, 4, away_from=(-1.0, 1.0))], lambda x: np.clip(x, -1.0, 1.0), differentiable=(0,)
    ),
)
def hardtanh(
    input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False
) -> Tensor:
    """``clamp(input, min_val, max_val)``, with PyTorch's gradient: 1 strictly inside the range,
    0 from the bounds on (clamp's is 1 at the bounds)."""
    if min_val > max_val:
        raise ValueError("min_val cannot be greater than max_val")
    return _inplace(input, _clipped(input, min_val, max_val), inplace)


def _clipped(x: Tensor, lo: float, hi: float) -> Tensor:
    # the bounds are constants where they are reached; NaN stays NaN (both tests fail)
    inner = _F.where(_F.ge(x, hi), _F.const(hi, x.dtype), x)
    return _F.where(_F.le(x, lo), _F.const(lo, x.dtype), inner)


@op(
    namespace="nn.functional",
    spec=Spec(
        [arg(3, 4, lo=-1.0, hi=7.0, away_from=(0.0, 6.0))],
        lambda x: np.clip(x, 0.0, 6.0),
        differentiable=(0,),
    ),
)
def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    """``min(max(0, x), 6)`` (hardtanh's gradient: 0 at 0 and at 6)."""
    return _inplace(input, _clipped(input, 0.0, 6.0), inplace)


@op(
    namespace="nn.functional",
    spec=Spec([arg(3, 4, away_from=(0.0,))], lambda x: x / (1 + np.abs(x)), differentiable=(0,)),
)
def softsign(input: Tensor) -> Tensor:
    """``x / (1 + |x|)``."""
    return input / (input.abs() + 1)


@op(
    namespace="nn.functional",
    spec=Spec([arg(3, 4)], lambda x: x - np.tanh(x), differentiable=(0,)),
)
def tanhshrink(input: Tensor) -> Tensor:
    """``x - tanh(x)``."""
    return input - input.tanh()


# SELU's constants (Klambauer et al.), as PyTorch spells them
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _elu_ref(x, alpha=1.0, scale=1.0, input_scale=1.0):
    return scale * np.where(x > 0, x, alpha * np.expm1(x * input_scale))


def _elu_branches(input: Tensor, alpha: float, scale: float, input_scale: float) -> Tensor:
    """``scale * (x if x > 0 else alpha * (exp(x * input_scale) - 1))``: PyTorch's ELU family.
    The negative branch includes 0 (its slope there is PyTorch's); the exponent sees 0 where
    x > 0, so large inputs cannot overflow it."""
    neg_side = _F.le(input, 0)
    inner = _F.where(neg_side, input, 0.0)
    if input_scale != 1.0:
        inner = _F.mul(inner, input_scale)
    out = _F.where(neg_side, _F.mul(_F.expm1(inner), alpha), input)
    return _F.mul(out, scale) if scale != 1.0 else out


@op(
    namespace="nn.functional",
    spec=Spec(
        [arg(3, 4, away_from=(0.0,))],
        lambda x: _elu_ref(x, _SELU_ALPHA, _SELU_SCALE),
        differentiable=(0,),
    ),
)
def selu(input: Tensor, inplace: bool = False) -> Tensor:
    """``scale * elu(x, alpha)`` with SELU's fixed constants."""
    return _inplace(input, _elu_branches(input, _SELU_ALPHA, _SELU_SCALE, 1.0), inplace)


@op(
    namespace="nn.functional",
    spec=Spec(
        [arg(3, 4, away_from=(0.0,))],
        lambda x, alpha: _elu_ref(x, alpha, 1.0, 1.0 / alpha),
        params={"alpha": 1.5},
        differentiable=(0,),
    ),
)
def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``."""
    if alpha == 0:
        raise RuntimeError("ZeroDivisionError: alpha cannot be 0 for CELU")
    return _inplace(input, _elu_branches(input, alpha, 1.0, 1.0 / alpha), inplace)


def _glu_ref(x, dim=-1):
    a, b = np.split(x, 2, axis=dim)
    return a / (1.0 + np.exp(-b))


@op(
    namespace="nn.functional",
    spec=Spec([arg(3, 4)], _glu_ref, params={"dim": 1}, differentiable=(0,)),
)
def glu(input: Tensor, dim: int = -1) -> Tensor:
    """``a * sigmoid(b)``, ``a`` and ``b`` the two halves of ``input`` along ``dim``."""
    if input.ndim == 0:
        raise RuntimeError("glu does not support scalars because halving size must be even")
    d = dim % input.ndim if -input.ndim <= dim < input.ndim else dim
    size = input.shape[d]
    if size % 2:
        raise RuntimeError(f"Halving dimension must be even, but dimension {d} is size {size}")
    a, b = _F.chunk(input, 2, d)
    return _F.mul(a, _F.sigmoid(b))


def _hardsigmoid_ref(x):
    return np.clip(x + 3.0, 0.0, 6.0) / 6.0


@op(
    namespace="nn.functional",
    spec=Spec(
        [arg(3, 4, lo=-4.0, hi=4.0, away_from=(-3.0, 3.0))],
        lambda x: x * _hardsigmoid_ref(x),
        differentiable=(0,),
    ),
)
def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    """``x * relu6(x + 3) / 6``; slope 0 up to -3, 1 from 3 on (PyTorch's at the kinks)."""
    inside = _F.logical_and(_F.gt(input, -3.0), _F.lt(input, 3.0))
    mid = _F.mul(_F.mul(input, _F.add(input, 3.0)), 1.0 / 6.0)
    out = _F.where(inside, mid, _F.where(_F.ge(input, 3.0), input, 0.0))
    return _inplace(input, out, inplace)


@op(
    namespace="nn.functional",
    spec=Spec(
        [arg(3, 4, lo=-4.0, hi=4.0, away_from=(-3.0, 3.0))],
        _hardsigmoid_ref,
        differentiable=(0,),
    ),
)
def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    """``relu6(x + 3) / 6``; slope 1/6 strictly inside (-3, 3), else 0."""
    inside = _F.logical_and(_F.gt(input, -3.0), _F.lt(input, 3.0))
    mid = _F.add(_F.mul(input, 1.0 / 6.0), 0.5)
    out = _F.where(inside, mid, _F.where(_F.ge(input, 3.0), 1.0, 0.0))
    return _inplace(input, _F.cast(out, input.dtype), inplace)


def _prelu_ref(x, w):
    shape = (1, w.size) + (1,) * (x.ndim - 2) if x.ndim >= 2 else ()
    return np.where(x > 0, x, w.reshape(shape) * x)


@op(
    namespace="nn.functional",
    spec=Spec(
        [arg(2, 3, 4, away_from=(0.0,)), arg(3, lo=0.1, hi=0.5)],
        _prelu_ref,
        differentiable=(0, 1),
        smooth=False,
    ),
)
def prelu(input: Tensor, weight: Tensor) -> Tensor:
    """``x if x > 0 else weight * x``: one weight, or one per channel (dim 1)."""
    n = weight.numel()
    if weight.ndim > 1:
        raise RuntimeError(
            f"prelu: Expected `weight` to be a scalar or 1D tensor, but got: ndim = {weight.ndim}"
        )
    w = weight
    if n != 1:
        channels = input.shape[1] if input.ndim >= 2 else 1
        if n != channels:
            raise RuntimeError(
                "Mismatch of parameter numbers and input channel size. Found parameter numbers "
                f"= {n} and channel size = {channels}."
            )
        if input.ndim >= 2:
            w = _F.reshape(weight, (1, n) + (1,) * (input.ndim - 2))
    elif input.ndim == 0:
        w = _F.reshape(weight, ())
    return _F.where(_F.gt(input, 0), input, _F.mul(w, input))


@op(
    namespace="nn.functional",
    spec=Spec(
        [arg(3, 4, away_from=(0.0,))],
        lambda x, lower, upper: np.where(x >= 0, x, x * (lower + upper) / 2),
        params={"lower": 0.1, "upper": 0.3},
        differentiable=(0,),
        smooth=False,
    ),
)
def rrelu(
    input: Tensor,
    lower: float = 1.0 / 8,
    upper: float = 1.0 / 3,
    training: bool = False,
    inplace: bool = False,
) -> Tensor:
    """Leaky ReLU whose negative slope is drawn from U(lower, upper) per element in training,
    and is (lower + upper) / 2 in evaluation."""
    if lower > upper:
        raise RuntimeError("Lower bound should be less than or equal to the upper bound")
    if training:
        u = _random.rand(tuple(input.shape), dtype=input.dtype)
        slope = _F.add(_F.mul(u, upper - lower), lower)
    else:
        slope = (lower + upper) / 2
    out = _F.where(_F.le(input, 0), _F.mul(input, slope), input)
    return _inplace(input, out, inplace)


@op(
    namespace="nn.functional",
    spec=Spec(
        [arg(3, 4, lo=-3.0, hi=3.0)],
        lambda x: x * np.tanh(np.log1p(np.exp(x))),
        differentiable=(0,),
    ),
)
def mish(input: Tensor, inplace: bool = False) -> Tensor:
    """``x * tanh(softplus(x))``."""
    return _inplace(input, _F.mul(input, _F.tanh(_F.softplus(input))), inplace)


def _softmin_ref(x, dim):
    e = np.exp(-x - (-x).max(axis=dim, keepdims=True))
    return e / e.sum(axis=dim, keepdims=True)


@op(
    namespace="nn.functional",
    spec=Spec([arg(3, 4)], _softmin_ref, params={"dim": 1}, differentiable=(0,)),
)
def softmin(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    """``softmax(-input, dim)``."""
    if dim is None:
        from .functional import _softmax_dim

        dim = _softmax_dim("softmin", input.ndim)
    x = input if dtype is None else _F.cast(input, dtype)
    return _F.softmax(_F.neg(x), dim)


def _check_lambd(input: Tensor, lambd: float) -> None:
    if lambd < 0:
        kind = input._data.dtype
        top = np.finfo(kind).max if kind.kind == "f" else np.finfo(np.float32).max
        name = {"float32": "Float", "float64": "Double", "float16": "Half"}.get(kind.name, "Float")
        raise RuntimeError(
            f"lambda must be in range [0, {top:g}] for input dtype {name}, but found {lambd:g}"
        )


@op(
    namespace="nn.functional",
    spec=Spec(
        [arg(3, 4, away_from=(-0.5, 0.5))],
        lambda x, lambd: np.where(x > lambd, x - lambd, np.where(x < -lambd, x + lambd, 0.0)),
        params={"lambd": 0.5},
        differentiable=(0,),
        smooth=False,
    ),
)
def softshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """``x - lambd`` above ``lambd``, ``x + lambd`` below ``-lambd``, else 0."""
    _check_lambd(input, lambd)
    shrunk = _F.sub(input, _F.mul(_F.sign(input), lambd))
    return _F.where(_F.gt(_F.abs(input), lambd), shrunk, 0.0)


@op(
    namespace="nn.functional",
    spec=Spec(
        [arg(3, 4, away_from=(-0.5, 0.5))],
        lambda x, lambd: np.where(np.abs(x) > lambd, x, 0.0),
        params={"lambd": 0.5},
        differentiable=(0,),
        smooth=False,
    ),
)
def hardshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """``x`` where ``|x| > lambd``, else 0."""
    return _F.where(_F.gt(_F.abs(input), lambd), input, 0.0)


@op(
    namespace="nn.functional",
    spec=Spec(
        [arg(3, 4, away_from=(0.3,)), 0.3, -2.0],
        lambda x, threshold, value: np.where(x > threshold, x, value),
        differentiable=(0,),
        smooth=False,
    ),
)
def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:
    """``x`` where ``x > threshold``, else ``value``."""
    out = _F.where(_F.gt(input, threshold), input, value)
    return _inplace(input, _F.cast(out, input.dtype), inplace)


_threshold = threshold  # (threshold_'s parameter of that name hides the function)


# PyTorch's in-place function forms (``F.elu_``): the op with ``inplace=True``
def celu_(input: Tensor, alpha: float = 1.0) -> Tensor:
    return celu(input, alpha, inplace=True)


def elu_(input: Tensor, alpha: float = 1.0) -> Tensor:
    from .functional import elu

    return elu(input, alpha, inplace=True)


def hardtanh_(input: Tensor, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
    return hardtanh(input, min_val, max_val, inplace=True)


def leaky_relu_(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    from .functional import leaky_relu

    return leaky_relu(input, negative_slope, inplace=True)


def relu_(input: Tensor) -> Tensor:
    return input.relu_()


def rrelu_(
    input: Tensor, lower: float = 1.0 / 8, upper: float = 1.0 / 3, training: bool = False
) -> Tensor:
    return rrelu(input, lower, upper, training, inplace=True)


def selu_(input: Tensor) -> Tensor:
    return selu(input, inplace=True)


def threshold_(input: Tensor, threshold: float, value: float) -> Tensor:
    return _threshold(input, threshold, value, inplace=True)


INPLACE_FORMS = [
    "celu_", "elu_", "hardtanh_", "leaky_relu_", "relu_", "rrelu_", "selu_", "threshold_",
]  # fmt: skip
