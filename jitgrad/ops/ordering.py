"""Scans, sorting and selection: cumsum, cumprod, cummax, cummin, logcumsumexp; sort, argsort,
msort, topk, kthvalue, median, nanmedian, mode, quantile, nanquantile; searchsorted,
bucketize; unique (eager only: its size depends on the data).

Everything sorted is a gather at the positions of the one stable ``argsort`` primitive, so the
gradient of a sorted value goes back to the element it came from, and every op here except
``unique`` compiles. Positions that depend on the data (a median past the NaNs, a quantile's
rank among the non-NaN elements) are computed as tensors, not read back into Python.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np

from .. import dtypes
from ..autograd.grad_mode import STATE
from ..ir.tracer import TraceError
from ..tensor import Tensor, _wrap_dim, apply
from . import prims as P
from .functions import (
    _float,
    add,
    cast,
    clamp,
    div,
    floor,
    gt,
    isnan,
    logical_and,
    logical_or,
    result_type,
    sub,
    where,
)
from .prims import eq, mul, ne, neg
from .prims_scan import scan
from .registry import op
from .shape_ops import cat, expand, gather, movedim, narrow, reshape, squeeze
from .spec import Spec, arg

SortResult = namedtuple("sort", ["values", "indices"])
TopkResult = namedtuple("topk", ["values", "indices"])
KthvalueResult = namedtuple("kthvalue", ["values", "indices"])
MedianResult = namedtuple("median", ["values", "indices"])
NanmedianResult = namedtuple("nanmedian", ["values", "indices"])
ModeResult = namedtuple("mode", ["values", "indices"])
CummaxResult = namedtuple("cummax", ["values", "indices"])
CumminResult = namedtuple("cummin", ["values", "indices"])

_TIE_FREE = {"lo": -3.0, "hi": 3.0}  # (continuous draws: no ties)


def _spec(ref, shape=(3, 5), params=None, d=(0,), **kw) -> Spec:
    arg_kw = {k: kw.pop(k) for k in ("lo", "hi", "away_from", "margin", "kind") if k in kw}
    return Spec([arg(*shape, **arg_kw)], ref, params=params or {}, differentiable=d, **kw)


def _line(input: Tensor, dim):
    """(``input`` with at least one dim, the wrapped dim, whether it was 0-d)."""
    if input.ndim == 0:
        _wrap_dim(dim, 1)
        return reshape(input, (1,)), 0, True
    return input, _wrap_dim(dim, input.ndim), False


def _back(t: Tensor, scalar: bool) -> Tensor:
    return reshape(t, ()) if scalar else t


# -- scans ----------------------------------------------------------------------------------------
def _scan_op(prim, input, dim, dtype, **params):
    if dtype is not None:
        input = cast(input, dtype)
    x, d, scalar = _line(input, dim)
    return _back(scan(prim, x, d, **params), scalar)


def _cumsum_ref(x, dim):
    return np.cumsum(x, axis=dim)


@op(spec=_spec(_cumsum_ref, params={"dim": -1}, linear=True), inplace=True)
def cumsum(input, dim, *, dtype=None):
    """Running sums along ``dim``; bool and integer inputs sum in int64, as PyTorch's."""
    return _scan_op(P.cumsum_p, input, dim, dtype, reverse=False)


@op(
    spec=_spec(
        lambda x, dim: np.cumprod(x, axis=dim),
        shape=(3, 4),
        params={"dim": 0},
        lo=-1.5,
        hi=1.5,
        away_from=(0.0,),
        margin=0.3,
    ),
    inplace=True,
)
def cumprod(input, dim, *, dtype=None):
    """Running products along ``dim`` (the gradient is exact where the input has zeros)."""
    return _scan_op(P.cumprod_p, input, dim, dtype)


def _running(prim, result, input, dim):
    x, d, scalar = _line(input, dim)
    indices = scan(prim, x, d)
    values = gather(x, d, indices)  # the gradient goes to the element each one came from
    return result(_back(values, scalar), _back(indices, scalar))


def _cum_ref(accumulate, arg_pick):
    def ref(x, dim):
        idx = np.zeros(x.shape, np.int64)
        for j in range(x.shape[dim]):
            idx[:, j] = arg_pick(x[:, : j + 1], axis=1)
        return accumulate(x, axis=dim), idx

    return ref


@op(spec=_spec(_cum_ref(np.maximum.accumulate, np.argmax), params={"dim": 1}, smooth=False))
def cummax(input, dim):
    """(values, indices) of the running maximum; the last of equal maxima, as PyTorch's."""
    return _running(P.cummax_p, CummaxResult, input, dim)


@op(spec=_spec(_cum_ref(np.minimum.accumulate, np.argmin), params={"dim": 1}, smooth=False))
def cummin(input, dim):
    return _running(P.cummin_p, CumminResult, input, dim)


@op(spec=_spec(lambda x, dim: np.log(np.cumsum(np.exp(x), axis=dim)), params={"dim": 1}))
def logcumsumexp(input, dim):
    x, d, scalar = _line(_float(input), dim)
    return _back(scan(P.logcumsumexp_p, x, d, reverse=False), scalar)


# -- sorting --------------------------------------------------------------------------------------
def _positions(x: Tensor, d: int, descending: bool) -> Tensor:
    return apply(P.argsort_p, (x,), {"axis": d, "descending": bool(descending)})


def _sort_ref(x, dim, descending):
    idx = np.argsort(-x if descending else x, axis=dim, kind="stable")
    return np.take_along_axis(x, idx, dim), idx


@op(spec=_spec(_sort_ref, params={"dim": 0, "descending": True}, smooth=False, **_TIE_FREE))
def sort(input, dim=-1, descending=False, *, stable=False):
    """(values, indices) sorted along ``dim``; always stable (equal elements keep their order;
    PyTorch promises that only with ``stable=True``); NaN sorts as the largest."""
    x, d, scalar = _line(input, dim)
    indices = _positions(x, d, descending)
    return SortResult(_back(gather(x, d, indices), scalar), _back(indices, scalar))


@op(spec=_spec(lambda x, dim: np.argsort(x, axis=dim, kind="stable"), params={"dim": 1}, d=()))
def argsort(input, dim=-1, descending=False, *, stable=False):
    x, d, scalar = _line(input, dim)
    return _back(_positions(x, d, descending), scalar)


@op(spec=_spec(lambda x: np.sort(x, axis=0), smooth=False, **_TIE_FREE))
def msort(input):
    return sort(input, 0).values


def _topk_ref(x, k, dim, largest):
    idx = np.argsort(-x if largest else x, axis=dim, kind="stable")
    idx = np.take(idx, np.arange(k), axis=dim)
    return np.take_along_axis(x, idx, dim), idx


@op(
    spec=Spec(
        [arg(3, 5, **_TIE_FREE), 2],
        _topk_ref,
        params={"dim": 1, "largest": False},
        differentiable=(0,),
        smooth=False,
    )
)
def topk(input, k, dim=-1, largest=True, sorted=True):  # noqa: A002
    """The ``k`` largest (or smallest) elements along ``dim`` and their positions, in order."""
    x, d, scalar = _line(input, dim)
    k = int(k)
    if k < 0 or k > x.shape[d]:
        raise RuntimeError("selected index k out of range")
    indices = narrow(_positions(x, d, largest), d, 0, k)
    return TopkResult(_back(gather(x, d, indices), scalar), _back(indices, scalar))


def _pick(x: Tensor, d: int, at, keepdim: bool, result, scalar: bool):
    """(values, indices) of the element at sorted position ``at`` (an int, or an int64 tensor
    of x's shape with dim ``d`` of size 1) of each line along ``d``."""
    order = _positions(x, d, False)
    if isinstance(at, int):
        idx = narrow(order, d, at, 1)
    else:
        idx = gather(order, d, at)
    values = gather(x, d, idx)
    if not keepdim or scalar:
        values, idx = squeeze(values, d), squeeze(idx, d)
    return result(values, idx)


@op(
    spec=Spec(
        [arg(3, 5, **_TIE_FREE), 2],
        lambda x, k, dim: (np.sort(x, dim)[:, k - 1], np.argsort(x, dim)[:, k - 1]),
        params={"dim": 1},
        differentiable=(0,),
        smooth=False,
    )
)
def kthvalue(input, k, dim=-1, keepdim=False):
    """The ``k``-th smallest element (from 1) along ``dim``, and its position."""
    x, d, scalar = _line(input, dim)
    if not 1 <= int(k) <= x.shape[d]:
        raise RuntimeError(f"kthvalue(): selected number k out of range for dimension {d}")
    return _pick(x, d, int(k) - 1, keepdim, KthvalueResult, scalar)


def _median(input, dim, keepdim, skip_nan: bool):
    name = "nanmedian" if skip_nan else "median"
    whole = dim is None
    x = reshape(input, (-1,)) if whole else input
    x, d, scalar = _line(x, 0 if whole else dim)
    n = x.shape[d]
    if n == 0:
        if whole:  # (PyTorch's median of no elements)
            return Tensor._wrap(np.array(np.nan, dtype=_float(input)._data.dtype))
        raise IndexError(f"{name}(): Expected reduction dim {d} to have non-zero size.")
    if x.dtype.is_floating_point:
        # NaNs sort last: median takes the first of them where a line has one, nanmedian the
        # lower median of the others
        nans = apply(P.sum_p, (isnan(x),), {"axes": (d,), "keepdim": True})
        if skip_nan:
            at = clamp(floor(div(add(neg(nans), n - 1), 2)), min=0)  # (n - nans - 1) // 2
            at = cast(at, dtypes.int64)
        else:
            at = where(gt(nans, 0), add(neg(nans), n), (n - 1) // 2)
        result = _pick(x, d, at, keepdim, NanmedianResult if skip_nan else MedianResult, scalar)
    else:
        result = _pick(x, d, (n - 1) // 2, keepdim, MedianResult, scalar)
        if skip_nan:
            result = NanmedianResult(*result)
    return result.values if whole else result


@op(spec=_spec(lambda x: np.sort(x, axis=None)[(x.size - 1) // 2], smooth=False, **_TIE_FREE))
def median(input, dim=None, keepdim=False):
    """The lower median of all elements, or (values, indices) along ``dim``; NaN if the line
    holds one (its first), as PyTorch's."""
    return _median(input, dim, keepdim, False)


@op(
    spec=_spec(
        lambda x, dim: (np.sort(x, dim)[:, 2], np.argsort(x, dim)[:, 2]),
        params={"dim": 1},
        smooth=False,
        **_TIE_FREE,
    )
)
def nanmedian(input, dim=None, keepdim=False):
    """``median`` of the elements that are not NaN (NaN where all are)."""
    return _median(input, dim, keepdim, True)


def _mode_ref(x, dim):
    vals, idx = [], []
    for row in np.moveaxis(x, dim, -1).reshape(-1, x.shape[dim]):
        u, c = np.unique(row, return_counts=True)
        v = u[np.argmax(c)]
        vals.append(v)
        idx.append(np.nonzero(row == v)[0][-1])
    shape = tuple(s for k, s in enumerate(x.shape) if k != dim)
    return np.array(vals).reshape(shape), np.array(idx, np.int64).reshape(shape)


@op(
    spec=_spec(
        _mode_ref,
        shape=(3, 6),
        params={"dim": 1},
        kind="int",
        lo=0,
        hi=3,
        d=(),
        dtypes=("float64",),
    )
)
def mode(input, dim=-1, keepdim=False):
    """(values, indices): the most frequent value along ``dim`` (the smallest of equally
    frequent ones) and the last position holding it, as PyTorch's. From the sorted line: each
    run of equal values is scored by its length (from a running maximum of run starts)."""
    x, d, scalar = _line(input, dim)
    n = x.shape[d]
    if n == 0:
        raise IndexError(f"mode(): Expected reduction dim {d} to have non-zero size.")
    xm = movedim(x, d, -1)
    order = _positions(xm, xm.ndim - 1, False)
    s = gather(xm, -1, order)
    # runs of equal values in sorted order: each scored at its last element by its length
    lead = tuple(xm.shape[:-1])
    edge = Tensor._wrap(np.ones(lead + (1,), dtype=bool))
    differs = ne(narrow(s, -1, 1, n - 1), narrow(s, -1, 0, n - 1))  # s_j != s_{j-1}
    starts = cat([edge, differs], -1)
    last = cat([differs, edge], -1)
    pos = Tensor._wrap(np.arange(n, dtype=np.int64))
    at_start = where(starts, pos, 0)
    first = gather(at_start, -1, scan(P.cummax_p, at_start, xm.ndim - 1))  # its run's start
    score = where(last, add(sub(pos, first), 1), 0)
    best = apply(P.argmax_p, (score,), {"axis": xm.ndim - 1, "keepdim": True})
    idx = movedim(gather(order, -1, best), -1, d)
    values = gather(x, d, idx)
    if not keepdim or scalar:
        values, idx = squeeze(values, d), squeeze(idx, d)
    return ModeResult(values, idx)


# -- quantiles ------------------------------------------------------------------------------------
_INTERPOLATIONS = ("linear", "lower", "higher", "midpoint", "nearest")


def _quantile(name, input, q, dim, keepdim, interpolation, skip_nan):
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"{name}() input tensor must be either float or double dtype")
    if interpolation not in _INTERPOLATIONS:
        raise RuntimeError(
            f"{name}() interpolation must be one of linear, lower, higher, midpoint or nearest, "
            f"but got {interpolation}"
        )
    q_is_tensor = isinstance(q, Tensor)
    qt = q if q_is_tensor else Tensor._wrap(np.array(q, dtype=input._data.dtype))
    if qt.ndim > 1:
        raise RuntimeError(f"{name}() q must be a scalar or 1D tensor")
    if q_is_tensor and qt.dtype is not input.dtype:
        raise RuntimeError(
            f"{name}() q tensor must be same dtype as the input tensor, got {qt.dtype}"
        )
    q_values = np.asarray(qt._data)
    if q_values.size and not ((q_values >= 0) & (q_values <= 1)).all():
        bad = q_values[~((q_values >= 0) & (q_values <= 1))].flat[0]
        raise RuntimeError(f"{name}() q must be in the range [0, 1] but got {float(bad)}")
    if dim is None:
        x, d = reshape(input, (-1,)), 0
        reduced = (1,) * input.ndim if keepdim else ()
    else:
        x, d, scalar = _line(input, dim)
        reduced = (
            tuple(1 if k == d else s for k, s in enumerate(x.shape))
            if keepdim
            else (tuple(s for k, s in enumerate(x.shape) if k != d))
        )
        if scalar:
            reduced = ()
    n = x.shape[d]
    if n == 0:
        raise IndexError(f"{name}() input tensor must be non-empty")
    xm = movedim(x, d, -1)  # (..., n)
    s = gather(xm, -1, _positions(xm, xm.ndim - 1, False))  # sorted, NaN last
    lead = tuple(xm.shape[:-1])
    nq = tuple(qt.shape)
    # ranks in [0, m - 1], m the count of elements taken (all, or the non-NaN ones): (q, ..., 1)
    nans = apply(P.sum_p, (isnan(xm),), {"axes": (xm.ndim - 1,), "keepdim": True})
    m = add(neg(cast(nans, x.dtype)), float(n)) if skip_nan else None
    q_col = reshape(qt, nq + (1,) * xm.ndim)
    rank = mul(q_col, sub(m, 1.0)) if skip_nan else mul(q_col, float(n - 1))
    rank = clamp(rank, min=0.0)
    below = floor(rank)
    above = neg(floor(neg(rank)))
    if interpolation == "nearest":  # round half to even, as torch.round
        frac = sub(rank, below)
        odd = ne(sub(below, mul(floor(mul(below, 0.5)), 2.0)), 0.0)
        up = logical_or(gt(frac, 0.5), logical_and(eq(frac, 0.5), odd))
        below = above = where(up, above, below)
    full = nq + lead + (n,)
    sq = expand(reshape(s, (1,) * len(nq) + tuple(s.shape)), full)
    shape_at = nq + lead + (1,)

    def at(r):
        return gather(sq, -1, expand(cast(r, dtypes.int64), shape_at))

    lo_v, hi_v = at(below), at(above)
    if interpolation in ("lower", "nearest"):
        out = lo_v
    elif interpolation == "higher":
        out = hi_v
    elif interpolation == "midpoint":
        out = mul(add(lo_v, hi_v), 0.5)
    else:
        weight = expand(sub(rank, below), shape_at)
        out = add(lo_v, mul(sub(hi_v, lo_v), weight))
    if skip_nan:
        out = where(expand(eq(m, 0.0), shape_at), math.nan, out)  # all NaN
    else:
        out = where(expand(gt(nans, 0), shape_at), math.nan, out)  # NaN propagates
    return reshape(out, nq + reduced)


def _quantile_ref(x, q, dim):
    return np.quantile(x, q, axis=dim)


@op(
    spec=Spec(
        [arg(3, 5, **_TIE_FREE), 0.3],
        _quantile_ref,
        params={"dim": 1},
        differentiable=(0,),
        smooth=False,
    )
)
def quantile(input, q, dim=None, keepdim=False, *, interpolation="linear"):
    """The ``q``-th quantiles (a number, or a 1-D tensor: its dim comes first) of all elements
    or along ``dim``; NaN where a line holds one."""
    return _quantile("quantile", input, q, dim, keepdim, interpolation, False)


@op(
    spec=Spec(
        [arg(3, 5, **_TIE_FREE), 0.7],
        lambda x, q, dim: np.nanquantile(x, q, axis=dim),
        params={"dim": 0},
        differentiable=(0,),
        smooth=False,
    )
)
def nanquantile(input, q, dim=None, keepdim=False, *, interpolation="linear"):
    """``quantile`` of the elements that are not NaN (NaN where all are)."""
    return _quantile("nanquantile", input, q, dim, keepdim, interpolation, True)


# -- searching ------------------------------------------------------------------------------------
def _searchsorted_ref(seq, values, right):
    side = "right" if right else "left"
    return np.stack([np.searchsorted(np.sort(s), v, side=side) for s, v in zip(seq, values)])


@op(
    spec=Spec(
        [arg(2, 5, lo=-3.0, hi=3.0), arg(2, 4, lo=-4.0, hi=4.0)],
        _searchsorted_ref,
        params={"right": True},
        call=lambda fn, seq, values, right: fn(seq.sort(-1).values, values, right=right),
    ),
    method=False,
)
def searchsorted(sorted_sequence, values, *, out_int32=False, right=False, side=None, sorter=None):
    """For each value, the number of elements of the sorted innermost dim before it (``right``:
    also those equal to it), by binary search; NaN counts as the largest."""
    if side is not None:
        if side not in ("left", "right"):
            raise RuntimeError(
                f"torch.searchsorted(): side can only be 'left' or 'right' but got {side}"
            )
        if right and side == "left":
            raise RuntimeError(
                "torch.searchsorted(): side and right can't be set to opposites, got side of "
                "left while right was True"
            )
        right = side == "right"
    seq = sorted_sequence
    if sorter is not None:
        seq = gather(seq, -1, sorter)
    scalar = not isinstance(values, Tensor)
    v = Tensor._wrap(np.array(values, dtype=seq._data.dtype)) if scalar else values
    if scalar:
        v = reshape(v, (1,))
    if seq.ndim > 1 and tuple(seq.shape[:-1]) != tuple(v.shape[:-1]):
        raise RuntimeError(
            "torch.searchsorted(): boundaries tensor should be 1 dimension or the first N-1 "
            "dimensions of boundaries tensor and input value tensor must match, but we got "
            f"boundaries tensor {list(seq.shape)} and input value tensor {list(v.shape)}"
        )
    if seq._data.dtype != v._data.dtype:
        dtype = result_type(seq, v)
        seq, v = cast(seq, dtype), cast(v, dtype)
    out = apply(P.searchsorted_p, (seq, v), {"right": bool(right)})
    if out_int32:
        out = cast(out, dtypes.int32)
    return reshape(out, ()) if scalar else out


@op(
    spec=Spec(
        [arg(3, 4, lo=-4.0, hi=4.0), arg(6, lo=-3.0, hi=3.0)],
        lambda x, b, right: np.searchsorted(np.sort(b), x, side="right" if right else "left"),
        params={"right": False},
        call=lambda fn, x, b, right: fn(x, b.sort(-1).values, right=right),
    ),
    method=False,
)
def bucketize(input, boundaries, *, out_int32=False, right=False):
    """The bucket of each element among 1-D ``boundaries`` (``searchsorted`` of the input)."""
    if boundaries.ndim != 1:
        raise RuntimeError(f"boundaries tensor must be 1 dimension, but got dim({boundaries.ndim})")
    return searchsorted(boundaries, input, out_int32=out_int32, right=right)


# -- unique ---------------------------------------------------------------------------------------
def _eager_only(name: str) -> None:
    if STATE.tracer is not None:
        raise TraceError(
            f"{name}() cannot be compiled: the size of its result depends on the values of its "
            "input, which a compiled call does not know ahead. Call it outside the compiled "
            "function."
        )


def _unique_ref(x):
    return np.unique(x)


@op(spec=Spec([arg(3, 5, kind="int", lo=0, hi=4)], None))
def unique(input, sorted=True, return_inverse=False, return_counts=False, dim=None):  # noqa: A002
    """The distinct elements (sorted), and optionally the inverse and the counts; eager only,
    since the size of the result depends on the values."""
    _eager_only("unique")
    data = input._data
    if dim is None:
        values, inverse, counts = np.unique(data, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(data.shape)
    else:
        d = _wrap_dim(dim, input.ndim)
        values, inverse, counts = np.unique(data, return_inverse=True, return_counts=True, axis=d)
        inverse = inverse.reshape(-1)
    out = [Tensor._wrap(np.ascontiguousarray(values))]
    if return_inverse:
        out.append(Tensor._wrap(inverse.astype(np.int64)))
    if return_counts:
        out.append(Tensor._wrap(counts.astype(np.int64)))
    return out[0] if len(out) == 1 else tuple(out)


@op(spec=Spec([arg(3, 5, kind="int", lo=0, hi=2)], None))
def unique_consecutive(input, return_inverse=False, return_counts=False, dim=None):
    """Each run of equal consecutive elements (or slices along ``dim``) once, and optionally
    the inverse and the run lengths; eager only, as ``unique``."""
    _eager_only("unique_consecutive")
    data = input._data
    d = None if dim is None else _wrap_dim(dim, input.ndim)
    lines = data.reshape(-1) if d is None else np.moveaxis(data, d, 0)
    n = lines.shape[0]
    if n == 0:
        starts = np.zeros(0, np.int64)
    else:
        differs = lines[1:] != lines[:-1]
        if differs.ndim > 1:
            differs = differs.reshape(n - 1, -1).any(axis=1)
        starts = np.concatenate([[0], np.nonzero(differs)[0] + 1]).astype(np.int64)
    values = lines[starts]
    if d is not None:
        values = np.moveaxis(values, 0, d)
    out = [Tensor._wrap(np.ascontiguousarray(values))]
    if return_inverse:
        inverse = np.cumsum(np.isin(np.arange(n), starts)) - 1
        out.append(Tensor._wrap(inverse.reshape(data.shape if d is None else -1).astype(np.int64)))
    if return_counts:
        out.append(Tensor._wrap(np.diff(np.append(starts, n)).astype(np.int64)))
    return out[0] if len(out) == 1 else tuple(out)
