"""Reductions over the reduction primitives (composites): var_mean, std_mean, nansum, nanmean,
count_nonzero, aminmax; norms: ``norm``, ``linalg.vector_norm``, ``linalg.matrix_norm`` and
``linalg.norm``."""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np

from .. import dtypes
from ..tensor import _TYPE_NAMES, Tensor, _wrap_dim, apply
from . import prims as P
from .composites import _axes, _count, _sqrt_zero_grad, amax, amin, mean, std, sum, var
from .functions import _float, add, cast, div, isnan, where
from .prims import abs, eq, mul, ne, pow  # noqa: A004
from .registry import op
from .shape_ops import reshape
from .spec import Spec, arg

AminmaxResult = namedtuple("aminmax", ["min", "max"])
_R345 = (3, 4, 5)


def _spec(ref, shape=_R345, params=None, d=(0,), **kw) -> Spec:
    arg_kw = {k: kw.pop(k) for k in ("lo", "hi", "away_from", "margin", "kind") if k in kw}
    return Spec([arg(*shape, **arg_kw)], ref, params=params or {}, differentiable=d, **kw)


def _floating_only(name: str, x: Tensor) -> None:
    if not x.dtype.is_floating_point:
        raise RuntimeError(f"{name} only support floating point and complex dtypes")


def _variance_args(dim, unbiased, correction):
    """PyTorch's overloads: ``(dim, unbiased, keepdim)`` positionally, or ``unbiased`` alone
    in the place of ``dim`` (a bool), or ``correction=``."""
    if isinstance(dim, bool):
        dim, unbiased = None, dim
    if unbiased is not None and correction is not None:
        raise RuntimeError("var_mean(): pass either unbiased= or correction=, not both")
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    return dim, correction


@op(
    spec=_spec(
        lambda x, dim, correction: (x.var(axis=dim, ddof=correction), x.mean(axis=dim)),
        params={"dim": (0, 2), "correction": 0},
    ),
    method=False,
)
def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """(variance, mean) along ``dim`` (all elements when None), with ``correction``."""
    _floating_only("var_mean", input)
    dim, correction = _variance_args(dim, unbiased, correction)
    return (
        var(input, dim, correction=correction, keepdim=keepdim),
        mean(_float(input), dim, keepdim),
    )


@op(spec=_spec(lambda x, dim: (x.std(axis=dim, ddof=1), x.mean(axis=dim)), params={"dim": 1}))
def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """(standard deviation, mean) along ``dim``, with ``correction``."""
    _floating_only("std_mean", input)
    dim, correction = _variance_args(dim, unbiased, correction)
    return (
        std(input, dim, correction=correction, keepdim=keepdim),
        mean(_float(input), dim, keepdim),
    )


def _without_nan(x: Tensor) -> Tensor:
    return where(isnan(x), 0.0, x) if x.dtype.is_floating_point else x


@op(spec=_spec(lambda x, dim: np.nansum(x, axis=dim), params={"dim": 1}, linear=True))
def nansum(input, dim=None, keepdim=False, *, dtype=None):
    """The sum of the elements that are not NaN."""
    if dtype is not None:
        input = cast(input, dtype)
    return sum(_without_nan(input), dim, keepdim)


@op(spec=_spec(lambda x, dim: np.nanmean(x, axis=dim), params={"dim": (0, 1)}, linear=True))
def nanmean(input, dim=None, keepdim=False, *, dtype=None):
    """The mean of the elements that are not NaN (NaN where all are)."""
    if dtype is not None:
        input = cast(input, dtype)
    if not input.dtype.is_floating_point:
        raise RuntimeError(
            "nanmean(): expected input to have floating point or complex dtype but got "
            f"{_type_name(input.dtype)}"
        )
    axes = _axes(input, dim)
    nans = apply(P.sum_p, (ne(input, input),), {"axes": axes, "keepdim": bool(keepdim)})
    taken = add(mul(cast(nans, input.dtype), -1.0), float(_count(input, axes)))
    return div(sum(_without_nan(input), axes, keepdim), taken)


@op(spec=_spec(lambda x, dim: np.count_nonzero(x, axis=dim), params={"dim": (0, 2)}, d=()))
def count_nonzero(input, dim=None):
    """How many elements are not zero (int64), of all or along ``dim`` (an int or a tuple)."""
    axes = _axes(input, dim)
    if isinstance(dim, (list, tuple)) and len(set(_wrap_dim(d, input.ndim) for d in dim)) < len(
        dim
    ):
        seen = [_wrap_dim(d, input.ndim) for d in dim]
        twice = next(d for d in seen if seen.count(d) > 1)
        raise RuntimeError(f"dim {twice} appears multiple times in the list of dims")
    return apply(P.sum_p, (ne(input, 0),), {"axes": axes, "keepdim": False})


@op(
    spec=_spec(
        lambda x, dim, keepdim: (
            x.min(axis=dim, keepdims=keepdim),
            x.max(axis=dim, keepdims=keepdim),
        ),
        params={"dim": 1, "keepdim": True},
        smooth=False,
    )
)
def aminmax(input, *, dim=None, keepdim=False):
    """(min, max) of all elements, or along ``dim``."""
    if input._data.size == 0 or (
        dim is not None and input.ndim and input.shape[_wrap_dim(dim, input.ndim)] == 0
    ):
        raise RuntimeError(
            "aminmax(): cannot compute aminmax over an empty dimension as the operation has no "
            "identity."
        )
    if dim is None:
        lo, hi = amin(input), amax(input)
        if keepdim:
            lo, hi = reshape(lo, (1,) * input.ndim), reshape(hi, (1,) * input.ndim)
        return AminmaxResult(lo, hi)
    return AminmaxResult(amin(input, dim, keepdim), amax(input, dim, keepdim))


# -- norms ----------------------------------------------------------------------------------------
def _type_name(dtype) -> str:
    return _TYPE_NAMES.get(dtype.name, {"bool": "Bool"}.get(dtype.name, dtype.name))


def _floating(name: str, x: Tensor, dtype) -> Tensor:
    if not x.dtype.is_floating_point:
        raise RuntimeError(
            f"{name}: Expected a floating point or complex tensor as input. Got "
            f"{_type_name(x.dtype)}"
        )
    if dtype is not None:
        dtype = dtypes.as_dtype(dtype)
        if not dtype.is_floating_point or dtype.np.itemsize < x._data.dtype.itemsize:
            raise RuntimeError(
                f"{name}: the dtype of the input ({_type_name(x.dtype)}) should be convertible "
                f"without narrowing to the specified dtype ({_type_name(dtype)})"
            )
        x = cast(x, dtype)
    return x


def _vector_norm(x: Tensor, ord, dim, keepdim) -> Tensor:
    """The ``ord``-norm of ``x`` along ``dim`` (all elements when None), x floating."""
    axes = _axes(x, dim)
    ord = float(ord)
    if ord == 2.0:
        return _sqrt_zero_grad(sum(mul(x, x), axes, keepdim))
    a = abs(x)
    if ord == math.inf:
        return amax(a, axes, keepdim)
    if ord == -math.inf:
        return amin(a, axes, keepdim)
    if ord == 0.0:
        return cast(apply(P.sum_p, (ne(x, 0),), {"axes": axes, "keepdim": bool(keepdim)}), x.dtype)
    if ord == 1.0:
        return sum(a, axes, keepdim)
    s = sum(pow(a, ord), axes, keepdim)
    # s^(1/p), whose gradient is taken as 0 where s == 0 (as PyTorch's norm backward)
    zero = eq(s, 0)
    return where(zero, 0.0, pow(where(zero, 1.0, s), 1.0 / ord))


@op(
    spec=_spec(
        lambda x, ord, dim: np.sum(np.abs(x) ** ord, axis=dim) ** (1.0 / ord),
        params={"ord": 3, "dim": (0, 2)},
        lo=0.3,
        hi=2.0,
    ),
    namespace="linalg",
)
def vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None):
    x = _floating("linalg.vector_norm", x, dtype)
    return _vector_norm(x, ord, dim, keepdim)


def _matrix_norm(x: Tensor, ord, dim, keepdim) -> Tensor:
    if x.ndim < 2:
        raise RuntimeError(
            "linalg.matrix_norm: The input tensor A must have at least 2 dimensions."
        )
    rows, cols = (_wrap_dim(d, x.ndim) for d in dim)
    if ord == "fro":
        return _sqrt_zero_grad(sum(mul(x, x), (rows, cols), keepdim))
    if ord == "nuc" or ord in (2, -2):
        raise NotImplementedError(
            f"linalg.matrix_norm: ord={ord!r} needs singular values, which jitgrad does not "
            "compute yet; use 'fro', 1, -1, inf or -inf."
        )
    if ord not in (1, -1, math.inf, -math.inf):
        raise RuntimeError(f"linalg.matrix_norm: Order {ord} not supported.")
    # 1: the largest column sum of |x|; inf: the largest row sum (min for the negatives)
    summed, over = (rows, cols) if ord in (1, -1) else (cols, rows)
    sums = sum(abs(x), summed, True)
    pick = amax if ord > 0 else amin
    out = pick(sums, over, True)
    if not keepdim:
        out = reshape(out, tuple(s for k, s in enumerate(out.shape) if k not in (rows, cols)))
    return out


# (linalg.matrix_norm itself is declared in ops/linalg.py; linalg.norm uses _matrix_norm)


@op(
    spec=_spec(
        lambda x, ord: np.linalg.norm(x, ord), shape=(3, 4), params={"ord": math.inf}, smooth=False
    ),
    name="norm",
    namespace="linalg",
)
def linalg_norm(A, ord=None, dim=None, keepdim=False, *, dtype=None):
    """A vector norm (``dim`` an int, or ``A`` 1-D) or a matrix norm (``dim`` a pair, or ``A``
    2-D with ``ord`` given); with neither, the 2-norm of all elements."""
    A = _floating("linalg.norm", A, dtype)
    if isinstance(dim, int):
        dim = (dim,)
    matrix = (dim is not None and len(dim) == 2) or (
        dim is None and ord is not None and A.ndim == 2
    )
    if dim is None and ord is not None and A.ndim not in (1, 2):
        raise RuntimeError(
            "linalg.norm: If dim is not specified but ord is, the input must be 1D or 2D. "
            f"Got {A.ndim}D."
        )
    if matrix:
        return _matrix_norm(
            A, "fro" if ord is None else ord, (-2, -1) if dim is None else dim, keepdim
        )
    return _vector_norm(A, 2 if ord is None else ord, dim, keepdim)


@op(spec=_spec(lambda x: np.sqrt((x * x).sum()), shape=(3, 4)))
def norm(input, p="fro", dim=None, keepdim=False, dtype=None):
    """PyTorch's ``norm``: ``p`` a number (a vector norm over ``dim``, all elements when None),
    or "fro" (the 2-norm of all elements, or of the matrices over a pair of dims)."""
    x = _floating("linalg.vector_norm", input, dtype)
    if isinstance(dim, int):
        dim = (dim,)
    if p == "fro":
        return _sqrt_zero_grad(sum(mul(x, x), dim, keepdim))
    if p == "nuc":
        return _matrix_norm(x, "nuc", (-2, -1) if dim is None else dim, keepdim)
    if isinstance(p, str):
        if p not in ("inf", "-inf"):
            raise RuntimeError(f"norm(): p must be a number, 'fro' or 'nuc', got {p!r}")
        p = float(p)
    return _vector_norm(x, p, dim, keepdim)
