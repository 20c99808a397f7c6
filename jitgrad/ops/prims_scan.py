"""Scans (running sums, products, extremes and log-sum-exps along one axis) and the stable
argsort, each a primitive along one non-negative axis.

A scan is an entry of the one reduction table (``registry.Reduction``): compiled backends fold
the elements of each line in order and store the result after each one, so a new scan is a
registration here and nothing in any backend. ``cummax``/``cummin`` scan for the position of
the running extreme (PyTorch's: the last of equal maxima, NaN wins); their values are a gather
at those positions, whose gradient goes back through them. ``argsort`` is the one ``sort``
primitive: sorted values, ``topk``, medians and quantiles are gathers at its positions.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..tensor import apply
from . import functions as F
from .registry import Reduction, register
from .spec import Spec, arg

# -- the table: how each scan folds its elements (in the input's own type for floats, as
# NumPy's accumulate: compiled and eager results agree bit for bit) -------------------------------

CUMSUM = Reduction(init="{A}(0)", combine="{acc} += {A}({x})", acc="input")
CUMPROD = Reduction(init="{A}(1)", combine="{acc} *= {A}({x})", acc="input")
# the position of the running maximum: a later equal element, or a NaN, takes over
_RUNNING = (
    "{t} = {x} {cmp} {acc} or {x} != {x}",
    "{acc} = {A}({x}) if {t} else {acc}",
    "best = {i} if {t} else best",
)
CUMMAX = Reduction(
    init="{lowest}",
    combine=tuple(line.replace("{cmp}", ">=") for line in _RUNNING),
    acc="input",
    state=("best = np.int64(0)",),
    result="best",
)
CUMMIN = Reduction(
    init="{highest}",
    combine=tuple(line.replace("{cmp}", "<=") for line in _RUNNING),
    acc="input",
    state=("best = np.int64(0)",),
    result="best",
)
# log(e^acc + e^x) as np.logaddexp computes it: equal terms (two -inf included) give acc + log 2
LOGCUMSUMEXP = Reduction(
    init="{lowest}",
    combine=(
        "{t} = {acc} - {x}",
        "{acc} = ({acc} + {A}(0.6931471805599453) if {acc} == {x} else ({acc} + "
        "math.log1p(math.exp(-{t})) if {t} > 0 else {A}({x}) + math.log1p(math.exp({t}))))",
    ),
    acc="input",
)


def _along(fn, x, axis, reverse=False):
    """``fn(x, axis=axis)`` run from the end of ``axis`` when ``reverse``."""
    if not reverse:
        return fn(x, axis=axis)
    return np.flip(fn(np.flip(x, axis), axis=axis), axis)


def _int64_if_not_float(x):
    return x if dtypes.is_float_np(x.dtype) else x.astype(np.int64)


def _scan_shape(avals, axis, reverse=False):
    x = avals[0]
    return tuple(x.shape), x.dtype if x.dtype.is_floating_point else dtypes.int64


def _index_shape(avals, axis, **_):
    return tuple(avals[0].shape), dtypes.int64


def scan(prim, x, axis: int, **params):
    return apply(prim, (x,), {"axis": axis, **params})


# -- cumsum and cumprod ---------------------------------------------------------------------------


def _cumsum_impl(x, axis, reverse):
    if dtypes.is_half_np(x.dtype):  # (a float32 running sum, as PyTorch's)
        return _along(np.cumsum, x.astype(np.float32), axis, reverse).astype(x.dtype)
    return _along(np.cumsum, _int64_if_not_float(x), axis, reverse)


def _cumsum_vjp(n, g):
    # out_j = sum_{i <= j} x_i: dx_i = sum_{j >= i} g_j, a scan from the other end
    p = n.params
    return (scan(cumsum_p, g, p["axis"], reverse=not p["reverse"]),)


_SCAN = {"axis": 1}
cumsum_p = register(
    "cumsum",
    impl=_cumsum_impl,
    vjp=_cumsum_vjp,
    shape=_scan_shape,
    kind="scan",
    saves=False,
    reduction=CUMSUM,
    spec=Spec(
        [arg(3, 4, 2)],
        lambda x, axis, reverse: np.cumsum(x[:, ::-1], axis)[:, ::-1] if reverse else None,
        params={"axis": 1, "reverse": True},
        differentiable=(0,),
        linear=True,
    ),
)


def _cumprod_grad(x, out, g, axis):
    """The gradient of cumprod's ``out`` at ``x``: out_j = prod_{k <= j} x_k. Before the first
    zero z of a line, dx_i = sum_{j >= i} g_j out_j / x_i (the out_j past z are 0); at z, dx_z =
    prod_{k < z} x_k * sum_{j >= z} g_j prod_{z < k <= j} x_k; past it 0 (every product there
    holds x_z). Also (the masks and the first zero's value) what ``_cumprod_vjp`` adds to."""
    zero = F.eq(x, 0)
    zeros = scan(cumsum_p, zero, axis, reverse=False)  # zeros at or before each position
    before = F.eq(zeros, 0)
    first = F.logical_and(zero, F.eq(zeros, 1))
    safe = F.where(before, x, 1.0)
    part_before = F.div(scan(cumsum_p, F.mul(g, out), axis, reverse=True), safe)
    after = scan(cumprod_p, F.where(F.logical_or(before, first), 1.0, x), axis)
    part_first = F.mul(
        scan(cumprod_p, safe, axis), scan(cumsum_p, F.mul(g, after), axis, reverse=True)
    )
    grad = F.where(before, part_before, F.where(first, part_first, 0.0))
    return grad, before, first


def _cumprod_vjp(n, g):
    # Past the first zero z the gradient is 0, but its derivative in x_z is not (PyTorch's
    # double backward has it): there dx_i = x_z * S_i with S_i = sum_{j >= i} g_j prod_{k <= j,
    # k != i, k != z} x_k, the gradient of the cumprod of x with x_z set to 1 (y). So the
    # second order is exact; S's own derivative is multiplied by x_z = 0.
    x, out = n.inputs[0], n.out
    axis = n.params["axis"]
    grad, before, first = _cumprod_grad(x, out, g, axis)
    y = F.where(first, 1.0, x)
    rest, _, _ = _cumprod_grad(y, scan(cumprod_p, y, axis), g, axis)
    x_z = F.sum(F.where(first, x, 0.0), axis, keepdim=True)  # 0, as a function of x_z
    past = F.logical_not(F.logical_or(before, first))
    return (F.add(grad, F.where(past, F.mul(F.expand(x_z, tuple(x.shape)), rest), 0.0)),)


cumprod_p = register(
    "cumprod",
    impl=lambda x, axis: np.cumprod(_int64_if_not_float(x), axis=axis),
    vjp=_cumprod_vjp,
    shape=_scan_shape,
    kind="scan",
    save_out=True,
    reduction=CUMPROD,
    spec=Spec(
        [arg(3, 4, lo=-1.5, hi=1.5, away_from=(0.0,), margin=0.3)],
        lambda x, axis: np.cumprod(x, axis=axis),
        params=_SCAN,
        differentiable=(0,),
    ),
)

# -- positions of the running extremes ------------------------------------------------------------


def _running_position(accumulate):
    """The position of the running extreme along ``axis``: the last element equal to it (or
    the last NaN once there is one), as PyTorch's cummax/cummin report it."""

    def impl(x, axis):
        if x.size == 0:
            return np.zeros(x.shape, np.int64)
        running = accumulate(x, axis=axis)
        takes = x == running
        if dtypes.is_float_np(x.dtype):
            takes |= np.isnan(x)
        shape = [1] * x.ndim
        shape[axis] = x.shape[axis]
        at = np.where(takes, np.arange(x.shape[axis], dtype=np.int64).reshape(shape), 0)
        return np.maximum.accumulate(at, axis=axis)

    return impl


cummax_p = register(
    "cummax",
    impl=_running_position(np.maximum.accumulate),
    vjp=None,
    shape=_index_shape,
    kind="scan",
    differentiable=False,
    saves=False,
    reduction=CUMMAX,
    spec=Spec(
        [arg(3, 5)],
        lambda x, axis: np.array([[int(np.argmax(r[: j + 1])) for j in range(5)] for r in x]),
        params=_SCAN,
    ),
)
cummin_p = register(
    "cummin",
    impl=_running_position(np.minimum.accumulate),
    vjp=None,
    shape=_index_shape,
    kind="scan",
    differentiable=False,
    saves=False,
    reduction=CUMMIN,
    spec=Spec(
        [arg(3, 5)],
        lambda x, axis: np.array([[int(np.argmin(r[: j + 1])) for j in range(5)] for r in x]),
        params=_SCAN,
    ),
)

# -- logcumsumexp ---------------------------------------------------------------------------------


def _log_part(g, sign: float, out):
    """log(max(sign g, 0)) - out, -inf where that part of g is 0 or out is -inf (a double
    where: no log of 0 and no -inf - -inf, in the values or in their gradients)."""
    part = F.gt(F.mul(g, sign), 0)
    log_g = F.where(part, F.log(F.where(part, F.mul(g, sign), 1.0)), -np.inf)
    finite = F.gt(out, -np.inf)
    return F.where(F.logical_and(part, finite), F.sub(log_g, F.where(finite, out, 0.0)), -np.inf)


def _lcse_vjp(n, g):
    # out_j = log sum_{i <= j} e^{x_i}: dx_i = sum_{j >= i} g_j e^{x_i - out_j}. Split g by sign:
    # sum_{j >= i} g+_j e^{-out_j} = exp(logcumsumexp from the end of (log g+ - out)), so
    # dx_i = exp(x_i + that) - (the same for g-); every exponent is at most log sum |g| (out_j
    # >= x_i), and it is linear in the line. (From the end, reverse: the other way round.)
    x, out = n.inputs[0], n.out
    axis, reverse = n.params["axis"], n.params["reverse"]
    terms = []
    for sign in (1.0, -1.0):
        acc = scan(logcumsumexp_p, _log_part(g, sign, out), axis, reverse=not reverse)
        terms.append(F.exp(F.add(x, acc)))
    return (F.sub(*terms),)


def _lcse_ref(x, axis, reverse):
    e = np.exp(x[:, ::-1] if reverse else x)
    out = np.log(np.cumsum(e, axis=axis))
    return out[:, ::-1] if reverse else out


logcumsumexp_p = register(
    "logcumsumexp",
    impl=lambda x, axis, reverse: _along(np.logaddexp.accumulate, x, axis, reverse),
    vjp=_lcse_vjp,
    shape=lambda avals, axis, reverse: (tuple(avals[0].shape), avals[0].dtype),
    kind="scan",
    save_out=True,
    reduction=LOGCUMSUMEXP,
    spec=Spec(
        [arg(3, 4, lo=-5.0, hi=5.0)],
        _lcse_ref,
        params={"axis": 1, "reverse": True},
        differentiable=(0,),
    ),
)

# -- the stable argsort ---------------------------------------------------------------------------


def _argsort_impl(x, axis, descending):
    """Positions that sort ``x`` along ``axis``, equal elements in their order; NaN counts as
    the largest (last ascending, first descending), as in PyTorch."""
    if not descending:
        return np.argsort(x, axis=axis, kind="stable").astype(np.int64)
    # ascending over the reversed line, reversed back: larger first, equal ones in order
    back = np.flip(np.argsort(np.flip(x, axis), axis=axis, kind="stable"), axis)
    return (x.shape[axis] - 1 - back).astype(np.int64)


argsort_p = register(
    "argsort",
    impl=_argsort_impl,
    vjp=None,
    shape=_index_shape,
    kind="sort",
    differentiable=False,
    saves=False,
    spec=Spec(
        [arg(3, 6, 2)],
        lambda x, axis, descending: np.argsort(-x, axis=axis, kind="stable"),
        params={"axis": 1, "descending": True},
    ),
)

__all__ = [
    "argsort_p",
    "cummax_p",
    "cummin_p",
    "cumprod_p",
    "cumsum_p",
    "logcumsumexp_p",
    "scan",
]


# -- binary search --------------------------------------------------------------------------------


def _searchsorted_impl(seq, values, right):
    """For each value, the binary search of its line of ``seq`` (the innermost dim; one line
    for all when ``seq`` is 1-D): ``lo`` moves past ``mid`` while seq[mid] is not >= the value
    (not > for ``right``), so a NaN value goes past everything. The steps are the compiled
    kernel's, so both give the same positions even on a sequence that is not sorted."""
    n = seq.shape[-1]
    lines = seq.reshape(1, n) if seq.ndim == 1 else seq.reshape(-1, n)
    flat = values.reshape(1, -1) if seq.ndim == 1 else values.reshape(lines.shape[0], -1)
    lo = np.zeros(flat.shape, np.int64)
    hi = np.full(flat.shape, n, np.int64)
    for _ in range(int(n).bit_length()):
        active = lo < hi
        mid = (lo + hi) // 2
        s = np.take_along_axis(lines, np.minimum(mid, max(n - 1, 0)), 1) if n else flat
        with np.errstate(invalid="ignore"):
            past = ~(s > flat) if right else ~(s >= flat)
        lo = np.where(active & past, mid + 1, lo)
        hi = np.where(active & ~past, mid, hi)
    return lo.reshape(values.shape)


def _searchsorted_shape(avals, right):
    return tuple(avals[1].shape), dtypes.int64


def _bisect_ref(seq, values, right):
    import bisect

    find = bisect.bisect_right if right else bisect.bisect_left
    return np.array([[find(list(s), v) for v in row] for s, row in zip(seq, values)])


searchsorted_p = register(
    "searchsorted",
    impl=_searchsorted_impl,
    vjp=None,
    shape=_searchsorted_shape,
    kind="other",
    differentiable=False,
    saves=False,
    spec=Spec([arg(2, 6), arg(2, 5, lo=-3.0, hi=3.0)], _bisect_ref, params={"right": True}),
)
__all__.append("searchsorted_p")
