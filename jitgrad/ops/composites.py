"""Composite ops: activations and reductions written over primitives (no rules of their own)."""

from __future__ import annotations

import builtins
import math
from collections import namedtuple

import numpy as np

from .. import dtypes
from ..tensor import Tensor, _wrap_dim, apply
from . import prims as P
from .elementwise import erf, expm1
from .functions import (
    _float,
    add,
    cast,
    div,
    gt,
    logical_not,
    ne,
    sub,
    where,
)
from .prims import (  # the elementwise rows  # noqa: A004
    eq,
    exp,
    le,
    log1p,
    maximum,
    minimum,
    mul,
    neg,
    pow,
    sqrt,
    tanh,
)
from .registry import op
from .shape_ops import gather, reshape, squeeze
from .spec import Spec, arg

S34 = (3, 4)


def _s1(ref, *, d=(0,), params=None, shape=S34, **kw) -> Spec:
    """A spec with one float input of ``shape`` (options of its ``Arg`` among ``kw``)."""
    arg_kw = {k: kw.pop(k) for k in ("lo", "hi", "away_from", "margin", "kind") if k in kw}
    return Spec([arg(*shape, **arg_kw)], ref, params=params or {}, differentiable=d, **kw)


def _sigmoid_ref(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softmax_ref(x, dim):
    e = np.exp(x - x.max(axis=dim, keepdims=True))
    return e / e.sum(axis=dim, keepdims=True)


_erf_ref = np.vectorize(math.erf)
_REDUCED = {"dim": (0, 2), "keepdim": False}
_R345 = (3, 4, 5)


# -- activations (composites) ---------------------------------------------------------------------
@op(spec=_s1(_sigmoid_ref), inplace=True)
def sigmoid(input):
    # 1/(1+e^-x) = (1 + tanh(x/2)) / 2: no overflow for any x, and a finite gradient everywhere.
    return apply(P.sigmoid_p, (_float(input),))


@op(spec=_s1(lambda x: np.maximum(x, 0.0), away_from=(0.0,), smooth=False), inplace=True)
def relu(input):
    # where(x <= 0, 0, x), as PyTorch's: NaN passes through (forward and gradient), and the
    # gradient at 0 is 0 (maximum would split it). (-0.0 gives +0.0; PyTorch keeps -0.0.)
    return where(le(input, 0), 0, input)


@op(spec=_s1(lambda x: np.log1p(np.exp(x)), away_from=(0.0,)))
def softplus(input, beta=1.0, threshold=20.0):
    x = mul(input, beta) if beta != 1 else input
    # log(1 + e^x) = max(x, 0) + log1p(e^-|x|), with -|x| = min(x, -x). At x = 0 both ties
    # split their gradient: 1/2 + 0, the true derivative sigmoid(0) (relu and abs give 0).
    out = add(maximum(x, 0.0), log1p(exp(minimum(x, neg(x)))))
    out = div(out, beta) if beta != 1 else out
    return where(gt(x, threshold), input, out)


@op(spec=_s1(lambda x: x * (1.0 + _erf_ref(x / math.sqrt(2.0))) / 2.0))
def gelu(input, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise RuntimeError("approximate argument must be either none or tanh.")
    if approximate == "tanh":
        inner = mul(add(input, mul(pow(input, 3.0), 0.044715)), math.sqrt(2.0 / math.pi))
        return mul(mul(input, 0.5), add(tanh(inner), 1.0))
    # x * Phi(x)
    return mul(input, mul(add(erf(mul(input, 1.0 / math.sqrt(2.0))), 1.0), 0.5))


@op(spec=_s1(lambda x: x * _sigmoid_ref(x)))
def silu(input):
    return mul(input, sigmoid(input))


@op(spec=_s1(lambda x: np.where(x > 0, x, 0.01 * x), away_from=(0.0,), smooth=False), method=False)
def leaky_relu(input, negative_slope=0.01):
    return where(gt(input, 0), input, mul(input, negative_slope))


@op(spec=_s1(lambda x: np.where(x > 0, x, np.expm1(x)), away_from=(0.0,)), method=False)
def elu(input, alpha=1.0):
    # as PyTorch's: the negative branch up to and including 0 (gradient alpha at 0), NaN
    # passes through; the exponent sees 0 where x > 0, so large x cannot overflow it
    neg_side = le(input, 0)
    return where(neg_side, mul(expm1(where(neg_side, input, 0.0)), alpha), input)


# -- reductions -----------------------------------------------------------------------------------
def _axes(x: Tensor, dim) -> tuple:
    n = x._data.ndim
    if dim is None:
        return tuple(range(n))
    if isinstance(dim, (list, tuple)):
        axes = sorted({_wrap_dim(d, n) for d in dim})
        return tuple(a for a in axes if n)
    return (_wrap_dim(dim, n),) if n else ()


@op(
    spec=_s1(
        lambda x, dim, keepdim: x.sum(axis=dim, keepdims=keepdim),
        shape=_R345,
        params=_REDUCED,
        linear=True,
    ),
)
def sum(input, dim=None, keepdim=False, *, dtype=None):  # noqa: A001
    if dtype is not None:
        input = cast(input, dtype)
    return apply(P.sum_p, (input,), {"axes": _axes(input, dim), "keepdim": bool(keepdim)})


# (the product of a slice with zeros has its own test: test_prod_gradient_with_zeros)
@op(
    spec=_s1(
        lambda x, dim, keepdim: x.prod(axis=dim, keepdims=keepdim),
        shape=_R345,
        params={"dim": 1, "keepdim": False},
        lo=-1.5,
        hi=1.5,
        away_from=(0.0,),
        margin=0.3,
    ),
)
def prod(input, dim=None, keepdim=False, *, dtype=None):
    """The product of all elements, or along ``dim`` (an int, or a tuple of them)."""
    if dtype is not None:
        input = cast(input, dtype)
    return apply(P.prod_p, (input,), {"axes": _axes(input, dim), "keepdim": bool(keepdim)})


def _count(x: Tensor, axes: tuple) -> int:
    n = 1
    for a in axes:
        n *= x._data.shape[a]
    return n


@op(
    spec=_s1(
        lambda x, dim, keepdim: x.mean(axis=dim, keepdims=keepdim),
        shape=_R345,
        params=_REDUCED,
        linear=True,
    ),
)
def mean(input, dim=None, keepdim=False, *, dtype=None):
    if dtype is not None:
        input = cast(input, dtype)
    if not input.dtype.is_floating_point:
        raise RuntimeError(
            "mean(): could not infer output dtype. Input dtype must be either a floating point "
            f"or complex dtype. Got: {input.dtype}. Cast first, e.g. x.float().mean()."
        )
    axes = _axes(input, dim)
    return div(sum(input, axes, keepdim), float(_count(input, axes)))


@op(spec=_s1(lambda x, dim: x.var(axis=dim, ddof=1), shape=_R345, params={"dim": 1}))
def var(input, dim=None, *, correction=1, keepdim=False, unbiased=None):
    if unbiased is not None:
        correction = 1 if unbiased else 0
    x = _float(input)
    axes = _axes(x, dim)
    centered = sub(x, mean(x, axes, keepdim=True))
    n = _count(x, axes)
    return div(sum(mul(centered, centered), axes, keepdim), float(builtins.max(0, n - correction)))


def _sqrt_zero_grad(s):
    """sqrt(s) whose gradient is 0 where s == 0 (not inf, which times 0 gives nan), as PyTorch's
    std and norm backward define it; the inner where keeps sqrt away from 0."""
    zero = eq(s, 0)
    return where(zero, 0.0, sqrt(where(zero, 1.0, s)))


@op(spec=_s1(lambda x, dim: x.std(axis=dim, ddof=1), shape=_R345, params={"dim": 1}))
def std(input, dim=None, *, correction=1, keepdim=False, unbiased=None):
    v = var(input, dim, correction=correction, keepdim=keepdim, unbiased=unbiased)
    return _sqrt_zero_grad(v)


@op(
    spec=_s1(
        lambda x, dim, keepdim: x.max(axis=dim, keepdims=keepdim),
        shape=_R345,
        params={"dim": (0, 2), "keepdim": True},
        smooth=False,
    ),
)
def amax(input, dim=(), keepdim=False):
    axes = _axes(input, None if dim == () else dim)
    return apply(P.max_p, (input,), {"axes": axes, "keepdim": bool(keepdim)})


@op(
    spec=_s1(
        lambda x, dim, keepdim: x.min(axis=dim, keepdims=keepdim),
        shape=_R345,
        params={"dim": (0, 2), "keepdim": True},
        smooth=False,
    ),
)
def amin(input, dim=(), keepdim=False):
    axes = _axes(input, None if dim == () else dim)
    return apply(P.min_p, (input,), {"axes": axes, "keepdim": bool(keepdim)})


@op(spec=_s1(lambda x, dim: np.argmax(x, axis=dim), d=(), shape=_R345, params={"dim": 1}))
def argmax(input, dim=None, keepdim=False):
    if dim is None:
        out = apply(P.argmax_p, (reshape(input, (-1,)),), {"axis": 0, "keepdim": False})
        return reshape(out, (1,) * input.ndim) if keepdim else out
    return apply(P.argmax_p, (input,), {"axis": _wrap_dim(dim, input.ndim), "keepdim": keepdim})


@op(spec=_s1(lambda x, dim: np.argmin(x, axis=dim), d=(), shape=_R345, params={"dim": 1}))
def argmin(input, dim=None, keepdim=False):
    flipped = neg(input) if input.dtype is not dtypes.bool_ else logical_not(input)
    return argmax(flipped, dim, keepdim)


MaxResult = namedtuple("max", ["values", "indices"])
MinResult = namedtuple("min", ["values", "indices"])


def _extreme(input, dim, keepdim, other, pairwise, whole, arg_extreme, result):
    """max/min: of a whole tensor, along ``dim`` as (values, indices), or pairwise."""
    if isinstance(dim, Tensor):
        return pairwise(input, dim)
    if other is not None:
        return pairwise(input, other)
    if dim is None:
        return whole(input)
    indices = arg_extreme(input, dim, keepdim=True)
    values = gather(input, dim, indices)  # the gradient goes to the chosen element only
    if not keepdim:
        d = _wrap_dim(dim, input.ndim)
        values, indices = squeeze(values, d), squeeze(indices, d)
    return result(values, indices)


@op(
    spec=_s1(
        lambda x, dim: (x.max(axis=dim), x.argmax(axis=dim)),
        shape=_R345,
        params={"dim": 1},
        smooth=False,
    ),
)
def max(input, dim=None, keepdim=False, *, other=None):  # noqa: A001
    """``max(x)``: the maximum; ``max(x, dim)``: (values, indices); ``max(x, y)``: maximum."""
    return _extreme(input, dim, keepdim, other, maximum, amax, argmax, MaxResult)


@op(
    spec=_s1(
        lambda x, dim: (x.min(axis=dim), x.argmin(axis=dim)),
        shape=_R345,
        params={"dim": 1},
        smooth=False,
    ),
)
def min(input, dim=None, keepdim=False, *, other=None):  # noqa: A001
    """``min(x)``, ``min(x, dim)`` -> (values, indices), ``min(x, y)``, as ``max``."""
    return _extreme(input, dim, keepdim, other, minimum, amin, argmin, MinResult)


@op(spec=_s1(lambda x, dim: np.log(np.exp(x).sum(axis=dim)), shape=_R345, params={"dim": 1}))
def logsumexp(input, dim, keepdim=False):
    # a primitive of its own: the stable form needs the max, which a composite would have to
    # hold constant by hand
    x = _float(input)
    return apply(P.logsumexp_p, (x,), {"axes": _axes(x, dim), "keepdim": bool(keepdim)})


@op(spec=_s1(_softmax_ref, params={"dim": 1}))
def softmax(input, dim, dtype=None):
    x = _float(input if dtype is None else cast(input, dtype))
    m = amax(x, dim, keepdim=True).detach()
    e = exp(sub(x, m))
    return div(e, sum(e, dim, keepdim=True))


@op(spec=_s1(lambda x, dim: np.log(_softmax_ref(x, dim)), params={"dim": 1}))
def log_softmax(input, dim, dtype=None):
    x = _float(input if dtype is None else cast(input, dtype))
    return sub(x, logsumexp(x, dim, keepdim=True))


@op(spec=_s1(lambda x, dim: x.all(axis=dim), d=(), kind="bool", params={"dim": 1}))
def all(input, dim=None, keepdim=False):  # noqa: A001
    return eq(sum(logical_not(input), dim, keepdim), 0)


@op(spec=_s1(lambda x, dim: x.any(axis=dim), d=(), kind="bool", params={"dim": 1}))
def any(input, dim=None, keepdim=False):  # noqa: A001
    return gt(sum(ne(input, 0), dim, keepdim), 0)
