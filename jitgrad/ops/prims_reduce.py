"""The reductions: sum, prod, max, min, argmax and logsumexp over sorted, non-negative axes.

Each is a primitive like any other (impl, vjp, shape, spec) whose ``reduction`` rules say how
compiled backends fold its elements: an entry of the one table below, so a new reduction is a
registration here and nothing in any backend (see ``registry.Reduction``).
"""

from __future__ import annotations

import numpy as np

from .. import dtypes
from . import functions as F
from .registry import Reduction, register
from .spec import Spec, arg

# -- the table: how each reduction folds its elements ---------------------------------------------

# The larger of acc and x; NaN wins and stays (acc != acc), as in NumPy and PyTorch.
_MAX = "{acc} = {acc} if ({acc} != {acc} or {acc} >= {x}) else {A}({x})"
_MIN = "{acc} = {acc} if ({acc} != {acc} or {acc} <= {x}) else {A}({x})"

SUM = Reduction(init="{A}(0)", combine="{acc} += {x}")
PROD = Reduction(init="{A}(1)", combine="{acc} *= {x}")
MAX = Reduction(init="{lowest}", combine=_MAX)
MIN = Reduction(init="{highest}", combine=_MIN)
# The first maximum, or the first NaN; the first element if all are lowest. In the input's own
# type, so that it compares as the input does. `not (x <= acc) and acc == acc`: x wins if
# greater or NaN, unless acc is NaN already. The bitwise form, `(x > acc) | ((x != x) & (acc ==
# acc))`, became AVX-512 mask-register arithmetic on the running maximum's dependency chain; this
# one compiles to two compare-and-branch pairs, and took half the time on random, ReLU-like and
# sorted pooling windows alike (the demo CNN's argmaxes: 65 -> 40 us).
ARGMAX = Reduction(
    init="{lowest}",
    combine=(
        "{t} = not ({x} <= {acc}) and {acc} == {acc}",
        "{acc} = {x} if {t} else {acc}",
        "best = {i} if {t} else best",
    ),
    acc="input",
    state=("best = np.int64(0)",),
    result="best",
)
# m + log sum exp(x - m), m the maximum, or 0 where it is infinite (all -inf gives -inf, +inf
# gives +inf). float32 data: float32 exp (terms within an ulp or two, summed in float64), twice
# the SIMD width, and no float64 exp to compile for a float32 model. The log runs once per
# result, outside the loop: the C library's, with nothing to compile.
LOGSUMEXP = Reduction(
    init="{A}(0.0)",
    combine="{acc} += math.exp({X}({x}) - {X}(m))",
    finalize="math.log({acc}) + m",
    first=Reduction(
        init="{lowest}", combine=_MAX, finalize="{acc} if {acc} - {acc} == 0 else np.float64(0.0)"
    ),
)


# -- shape rules ----------------------------------------------------------------------------------


def _reduced(shape, axes, keepdim):
    if keepdim:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def _sum_shape(avals, axes, keepdim):
    x = avals[0]
    dt = x.dtype if x.dtype.is_floating_point else dtypes.int64
    return _reduced(tuple(x.shape), axes, keepdim), dt


def _max_shape(avals, axes, keepdim):
    return _reduced(tuple(avals[0].shape), axes, keepdim), avals[0].dtype


def _argmax_shape(avals, axis, keepdim):
    return _reduced(tuple(avals[0].shape), (axis,), keepdim), dtypes.int64


def _kept(n, g, *values):
    """``g`` and ``values`` (results of ``n``) with the reduced axes kept as size 1."""
    x = n.inputs[0]
    if n.params["keepdim"]:
        return (g, *values)
    kept = _reduced(tuple(x.shape), n.params["axes"], True)
    return tuple(F.reshape(v, kept) for v in (g, *values))


_REDUCE = {"axes": (0, 2), "keepdim": False}


def _ref(fn):
    return lambda x, axes, keepdim: fn(x, axis=axes, keepdims=keepdim)


# -- sum and prod ---------------------------------------------------------------------------------


def _int64_if_small(reduce):
    """A NumPy reduction whose bool and narrower integer inputs accumulate in int64, and whose
    16-bit float inputs in float32 (rounded once at the end), as PyTorch's."""

    def impl(x, axes, keepdim):
        kind = x.dtype.kind
        if (kind == "f" and x.itemsize > 2) or (kind == "u" and x.itemsize == 8):
            return reduce(x, axis=axes, keepdims=keepdim)
        if kind in "biu":
            return reduce(x, axis=axes, keepdims=keepdim, dtype=np.int64)
        out = reduce(x.astype(np.float32), axis=axes, keepdims=keepdim)  # float16, bfloat16
        return np.asarray(out).astype(x.dtype)

    return impl


def _sum_vjp(n, g):
    (g,) = _kept(n, g)
    return (F.expand(g, tuple(n.inputs[0].shape)),)


sum_p = register(
    "sum",
    impl=_int64_if_small(np.add.reduce),
    vjp=_sum_vjp,
    shape=_sum_shape,
    kind="reduce",
    saves=False,
    reduction=SUM,
    spec=Spec([arg(3, 4, 5)], _ref(np.sum), params=_REDUCE, differentiable=(0,), linear=True),
)


def _prod_vjp(n, g):
    # d prod(x) / dx_i is the product of the others: prod / x_i in a slice without zeros; at
    # the zero of a slice with one, the product of the rest; 0 where a slice has two zeros or more
    x = n.inputs[0]
    axes, shape = n.params["axes"], tuple(x.shape)
    (g,) = _kept(n, g)
    zero = F.eq(x, 0)
    nonzero = F.where(zero, 1.0, x)
    rest = F.expand(F.prod(nonzero, axes, keepdim=True), shape)  # of the non-zero elements
    zeros = F.expand(F.sum(zero, axes, keepdim=True), shape)
    the_zero = F.logical_and(zero, F.eq(zeros, 1))
    share = F.where(F.eq(zeros, 0), F.div(rest, nonzero), F.where(the_zero, rest, 0.0))
    return (F.mul(F.expand(g, shape), share),)


prod_p = register(
    "prod",
    impl=_int64_if_small(np.multiply.reduce),
    vjp=_prod_vjp,
    shape=_sum_shape,
    kind="reduce",
    reduction=PROD,
    spec=Spec(
        [arg(3, 4, 5, lo=-1.5, hi=1.5, away_from=(0.0,), margin=0.3)],
        _ref(np.prod),
        params=_REDUCE,
        differentiable=(0,),
    ),
)

# -- max and min ----------------------------------------------------------------------------------


def _extreme_vjp(n, g):
    # amax, amin: the gradient is shared evenly among the elements equal to the result
    x = n.inputs[0]
    shape = tuple(x.shape)
    g, out = _kept(n, g, n.out)
    mask = F.cast(F.eq(x, F.expand(out, shape)), g.dtype)
    count = F.sum(mask, n.params["axes"], keepdim=True)
    return (F.mul(mask, F.expand(F.div(g, count), shape)),)


def _extreme(name: str, ufunc, reduction: Reduction, ref):
    """amax or amin: ``ufunc.reduce`` (NaN wins), the gradient shared among ties."""
    return register(
        name,
        impl=lambda x, axes, keepdim: ufunc.reduce(x, axis=axes, keepdims=keepdim),
        vjp=_extreme_vjp,
        shape=_max_shape,
        kind="reduce",
        save_out=True,
        reduction=reduction,
        spec=Spec([arg(3, 4, 5)], _ref(ref), params=_REDUCE, differentiable=(0,), smooth=False),
    )


max_p = _extreme("max", np.maximum, MAX, np.max)
min_p = _extreme("min", np.minimum, MIN, np.min)


def _argmax_impl(x, axis, keepdim):
    out = np.argmax(x, axis=axis, keepdims=keepdim)
    return np.asarray(out, dtype=np.int64)


argmax_p = register(
    "argmax",
    impl=_argmax_impl,
    vjp=None,
    shape=_argmax_shape,
    kind="reduce",
    differentiable=False,
    saves=False,
    reduction=ARGMAX,
    spec=Spec(
        [arg(3, 4, 5)],
        lambda x, axis, keepdim: np.argmax(x, axis=axis, keepdims=keepdim),
        params={"axis": 1, "keepdim": True},
    ),
)

# -- logsumexp ------------------------------------------------------------------------------------


def _lse_impl(x, axes, keepdim):
    # m + log sum exp(x - m) with m the max; m = 0 where it is infinite so that all -inf gives -inf
    m = np.maximum.reduce(x, axis=axes, keepdims=True)
    if np.isfinite(m).all():  # every sum is then at least 1: no log of 0 to silence
        out = np.log(np.add.reduce(np.exp(x - m), axis=axes, keepdims=True)) + m
    else:
        m = np.where(np.isfinite(m), m, np.zeros((), x.dtype))
        with np.errstate(divide="ignore"):
            out = np.log(np.add.reduce(np.exp(x - m), axis=axes, keepdims=True)) + m
    return out if keepdim else out.reshape(_reduced(x.shape, axes, False))


def _lse_vjp(n, g):
    # d logsumexp(x) = softmax(x) dx = exp(x - logsumexp(x)) dx
    g, out = _kept(n, g, n.out)
    return (F.mul(g, F.exp(F.sub(n.inputs[0], out))),)


logsumexp_p = register(
    "logsumexp",
    impl=_lse_impl,
    vjp=_lse_vjp,
    shape=_max_shape,
    kind="reduce",
    save_out=True,
    reduction=LOGSUMEXP,
    spec=Spec(
        [arg(3, 4, 5, lo=-30.0, hi=30.0)],
        _ref(lambda x, axis, keepdims: np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims))),
        params=_REDUCE,
        differentiable=(0,),
    ),
)
