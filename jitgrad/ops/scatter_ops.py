"""PyTorch's scatter family and the other writes at integer or boolean positions: scatter,
scatter_add, scatter_reduce, index_add/copy/fill, masked_fill/scatter, put, take_along_dim, and
the ops whose output shape depends on values (masked_select, nonzero, argwhere).

Each is a composite over the take/scatter_add primitives and ``where``: a write is a
scatter_add into zeros at flat positions, kept where a position was hit. Overwrites with
repeated positions keep the last write, as PyTorch's CPU kernels do; while tracing with an index
that is a traced value the positions are unknown, so repeated positions there add up (PyTorch
leaves which write wins unspecified).
"""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..autograd.grad_mode import STATE
from ..ir.tracer import TraceError, user_frame
from ..tensor import Tensor, _wrap_dim
from .indexing import _as_index, gather, scatter_add_axis, take_axis
from .registry import op
from .shape_ops import broadcast_shapes, broadcast_to, reshape, slice_
from .spec import Arg, Spec, arg


def _traced(t: Tensor) -> bool:
    """Whether ``t``'s values are a traced value (they may change from call to call)."""
    tracer = STATE.tracer
    return tracer is not None and tracer.var_of(t) in tracer.dynamic


def data_dependent(what: str, *tensors: Tensor) -> None:
    """Ops whose output shape depends on their input's values run eagerly only."""
    if any(_traced(t) for t in tensors):
        raise TraceError(
            f"{what} has a data-dependent output shape (it depends on the values of a traced "
            f"tensor), which jitgrad.compile cannot trace.\n  at {user_frame()}\nRun it "
            "outside the compiled function, or keep the shape fixed (where(mask, x, 0), "
            "masked_fill) instead."
        )


def _needs_values(what: str, t: Tensor) -> None:
    if _traced(t):
        raise TraceError(
            f"{what} needs the index values while tracing (they decide how elements are "
            f"grouped), and the index is a traced tensor.\n  at {user_frame()}\nPass the index "
            "as a constant, or do not compile this part."
        )


def _ref_scatter(x, dim, idx, src, reduce="set", include_self=True):
    """Written-out PyTorch scatter semantics, for the specs."""
    out = x.copy()
    groups: dict = {}
    for pos in np.ndindex(*idx.shape):
        target = list(pos)
        target[dim] = idx[pos]
        groups.setdefault(tuple(target), []).append(src[pos] if np.ndim(src) else src)
    for target, vals in groups.items():
        if reduce == "set":
            out[target] = vals[-1]
            continue
        vals = ([x[target]] if include_self else []) + vals
        fold = {"sum": np.sum, "prod": np.prod, "amax": np.max, "amin": np.min, "mean": np.mean}
        out[target] = fold[reduce](vals)
    return out


def _int_index(name: str, index) -> Tensor:
    index = _as_index(index)
    if index.dtype not in (dtypes.int64, dtypes.int32):
        raise RuntimeError(f"{name}(): Expected dtype int32/int64 for index")
    return index


def _check_scatter(name: str, input: Tensor, d: int, index: Tensor, src) -> None:
    shape, ishape = input._data.shape, index._data.shape
    if index.ndim != input.ndim:
        raise RuntimeError("Index tensor must have the same number of dimensions as self tensor")
    if isinstance(src, Tensor):
        if src.dtype is not input.dtype:
            raise RuntimeError(f"{name}(): Expected self.dtype to be equal to src.dtype")
        if src.ndim != input.ndim:
            raise RuntimeError("Index tensor must have the same number of dimensions as src tensor")
    sshape = src._data.shape if isinstance(src, Tensor) else ishape
    if any(ishape[k] > sshape[k] or (k != d and ishape[k] > shape[k]) for k in range(len(ishape))):
        raise RuntimeError(
            f"Expected index {list(ishape)} to be no larger than self {list(shape)} apart from "
            f"dimension {d} and to be no larger size than src {list(sshape)}"
        )
    data, n = index._data, shape[d] if shape else 1
    if data.size and (data.min() < 0 or data.max() >= n):
        bad = data[(data < 0) | (data >= n)].flat[0]
        raise RuntimeError(f"index {bad} is out of bounds for dimension {d} with size {n}")


def flat_positions(index: Tensor, shape: tuple, d: int) -> Tensor:
    """The flat (C-order) positions in a tensor of ``shape`` that ``index``'s elements name
    along ``d``, the other coordinates being their own (gather's and scatter's addressing)."""
    from .functions import add, cast, mul

    n = len(shape)
    index = cast(index, dtypes.int64)
    if n <= 1:
        return index
    strides = [1] * n
    for k in range(n - 2, -1, -1):
        strides[k] = strides[k + 1] * shape[k + 1]
    offsets = np.zeros(index._data.shape, dtype=np.int64)
    for k in range(n):
        if k != d:
            ar = np.arange(index._data.shape[k], dtype=np.int64) * strides[k]
            offsets = offsets + ar.reshape([-1 if j == k else 1 for j in range(n)])
    return add(mul(index, strides[d]), Tensor._wrap(offsets))


def _fit(src: Tensor, shape: tuple) -> Tensor:
    """The leading ``shape`` block of ``src`` (scatter reads only as much of src as index)."""
    if src._data.shape == tuple(shape):
        return src
    return slice_(src, (0,) * len(shape), tuple(shape), (1,) * len(shape))


def _zeros(n: int, dtype) -> Tensor:
    return Tensor._wrap(np.zeros(n, dtype=dtype.np))


def overwrite(flat: Tensor, pos: Tensor, vals: Tensor) -> Tensor:
    """``flat`` (1-D) with ``vals`` written at positions ``pos`` (1-D, in range)."""
    from .functions import gt, where

    n = flat._data.size
    if not _traced(pos):
        p = pos._data.reshape(-1)
        # the last write to a position wins
        _, last = np.unique(p[::-1], return_index=True)
        keep = np.sort(p.size - 1 - last)
        if keep.size != p.size:
            vals = take_axis(vals, Tensor._wrap(keep.astype(np.int64)), 0)
        mask = np.zeros(n, dtype=bool)
        mask[p] = True
        hit = Tensor._wrap(mask)
        pos = Tensor._wrap(p[keep].astype(np.int64))
    else:
        ones = Tensor._wrap(np.ones(pos._data.size, dtype=np.int64))
        hit = gt(scatter_add_axis(_zeros(n, dtypes.int64), pos, ones, 0), 0)
    placed = scatter_add_axis(_zeros(n, flat.dtype), pos, vals, 0)
    return where(hit, placed, flat)


def _src_tensor(input: Tensor, index: Tensor, src, value) -> Tensor:
    from .functions import const

    if src is None and value is None:
        raise TypeError("scatter() missing 1 required positional argument: 'src' (or value=)")
    if not isinstance(src, Tensor):
        value = src if src is not None else value
        if isinstance(value, Tensor):
            value = value.item()
        return broadcast_to(const(value, input.dtype), index._data.shape)
    return src


@op(
    spec=Spec(
        [arg(3, 4), 0, Arg((2, 4), kind="int", lo=0, hi=3), arg(2, 4)],
        lambda x, dim, idx, src: _ref_scatter(x, dim, idx, src, "sum"),
        differentiable=(0, 3),
        linear=True,
    ),
    inplace=True,
)
def scatter_add(input: Tensor, dim: int, index: Tensor, src: Tensor) -> Tensor:
    """``input`` with ``src[i][j]`` added at ``[index[i][j]][j]`` (for ``dim=0``), PyTorch's."""
    index = _int_index("scatter", index)
    d = _wrap_dim(dim, input.ndim)
    _check_scatter("scatter", input, d, index, src)
    shape = input._data.shape
    pos = reshape(flat_positions(index, shape, d), (-1,))
    vals = reshape(_fit(src, index._data.shape), (-1,))
    return reshape(scatter_add_axis(reshape(input, (-1,)), pos, vals, 0), shape)


@op(
    spec=Spec(
        [arg(3, 4), 0, Arg((1, 4), kind="int", lo=0, hi=3), arg(1, 4)],  # (no repeats)
        _ref_scatter,
        differentiable=(0, 3),
        linear=True,
    ),
    inplace=True,
)
def scatter(input: Tensor, dim: int, index: Tensor, src=None, value=None, *, reduce=None):
    """``input`` with ``src`` (or ``value``) written at ``index`` along ``dim``; ``reduce=
    'add'`` or ``'multiply'`` combines instead (PyTorch's older form of scatter_reduce)."""
    index = _int_index("scatter", index)
    src = _src_tensor(input, index, src, value)
    if reduce is not None:
        if reduce not in ("add", "multiply"):
            raise RuntimeError("reduce argument must be either add or multiply.")
        return scatter_reduce(input, dim, index, src, "sum" if reduce == "add" else "prod")
    d = _wrap_dim(dim, input.ndim)
    _check_scatter("scatter", input, d, index, src)
    shape = input._data.shape
    pos = reshape(flat_positions(index, shape, d), (-1,))
    vals = reshape(_fit(src, index._data.shape), (-1,))
    return reshape(overwrite(reshape(input, (-1,)), pos, vals), shape)


_IDENTITY = {"prod": 1, "amax": "lowest", "amin": "highest"}
_REDUCES = ("sum", "prod", "mean", "amax", "amin")


def _identity(reduce: str, dtype) -> float:
    kind = _IDENTITY[reduce]
    if kind == 1:
        return 1
    if dtype.is_floating_point:
        return -np.inf if kind == "lowest" else np.inf
    info = np.iinfo(dtype.np)
    return info.min if kind == "lowest" else info.max


@op(
    spec=Spec(
        [arg(3, 4), 0, Arg((2, 4), kind="int", lo=0, hi=3), arg(2, 4)],
        _ref_scatter,
        params={"reduce": "mean", "include_self": False},
        differentiable=(0, 3),
        linear=True,
    ),
    inplace=True,
)
def scatter_reduce(input, dim, index, src, reduce, *, include_self=True):
    """``input`` with ``src``'s elements folded in at ``index`` along ``dim`` by ``reduce``
    (sum, prod, mean, amax, amin), with ``input``'s own element too when ``include_self``."""
    from . import functions as F

    if reduce not in _REDUCES:
        raise RuntimeError(
            f"reduce argument must be either sum, prod, mean, amax or amin, got {reduce}"
        )
    index = _int_index("scatter", index)
    d = _wrap_dim(dim, input.ndim)
    _check_scatter("scatter_reduce", input, d, index, src)
    shape, n = input._data.shape, input._data.size
    flat = reshape(input, (-1,))
    pos = reshape(flat_positions(index, shape, d), (-1,))
    vals = reshape(_fit(src, index._data.shape), (-1,))
    if reduce in ("sum", "mean"):
        ones = Tensor._wrap(np.ones(pos._data.size, dtype=np.int64))
        count = scatter_add_axis(_zeros(n, dtypes.int64), pos, ones, 0)
        hit = F.gt(count, 0)
        base = flat if include_self else F.where(hit, F.const(0, input.dtype), flat)
        total = scatter_add_axis(base, pos, vals, 0)
        if reduce == "sum":
            return reshape(total, shape)
        count = F.add(count, 1) if include_self else F.where(hit, count, 1)
        if input.dtype.is_floating_point:
            mean = F.div(total, F.cast(count, input.dtype))
        else:
            mean = F.floor_divide(total, F.cast(count, input.dtype))
        return reshape(F.where(hit, mean, flat), shape)
    # prod, amax, amin: the elements each target receives, gathered into the rows of a matrix
    # (padded with the fold's identity) and folded by the reduction along its rows
    _needs_values(f"scatter_reduce(reduce={reduce!r})", index)
    p = pos._data.reshape(-1)
    if p.size == 0:
        return F.clone(input)
    order = np.argsort(p, kind="stable")
    targets, starts, counts = np.unique(p[order], return_index=True, return_counts=True)
    lead = 1 if include_self else 0
    rows = np.full((targets.size, int(counts.max()) + lead), p.size, dtype=np.int64)
    rank = np.arange(p.size) - np.repeat(starts, counts)
    rows[np.repeat(np.arange(targets.size), counts), rank + lead] = order
    pad = F.const(_identity(reduce, input.dtype), input.dtype)
    ext = F.cat([vals, reshape(pad, (1,))], 0)
    at = Tensor._wrap(targets.astype(np.int64))
    grouped = take_axis(ext, Tensor._wrap(rows[:, lead:]), 0)
    if include_self:
        grouped = F.cat([F.unsqueeze(take_axis(flat, at, 0), 1), grouped], 1)
    fold = {"prod": F.prod, "amax": F.amax, "amin": F.amin}[reduce]
    folded = fold(grouped, 1)
    return reshape(overwrite(flat, at, folded), shape)


def _check_index_op(name: str, input: Tensor, d: int, index: Tensor, source) -> Tensor:
    index = _as_index(index)
    if index.ndim > 1:
        raise IndexError(f"{name}(): Index is supposed to be a vector")
    index = reshape(index, (-1,))
    n = input._data.shape[d] if input.ndim else 1
    data = index._data
    if data.size and (data.min() < 0 or data.max() >= n):
        bad = data[(data < 0) | (data >= n)].flat[0]
        raise IndexError(f"{name}(): index {bad} is out of bounds for dimension {d} with size {n}")
    if source is not None:
        want = list(input._data.shape)
        if want:
            want[d] = index._data.size
        if list(source._data.shape) != want:
            raise RuntimeError(
                "source tensor shape must match self tensor shape, excluding the specified "
                f"dimension. Got self.shape = {list(input.shape)} source.shape = "
                f"{list(source.shape)}"
            )
    return index


@op(
    spec=Spec(
        [arg(4, 3), 0, Arg((3,), kind="int", lo=0, hi=4), arg(3, 3)],
        lambda x, dim, idx, src, alpha: _add_at(x, idx, src * alpha),
        params={"alpha": 2.0},
        differentiable=(0, 3),
        linear=True,
    ),
    inplace=True,
)
def index_add(input: Tensor, dim: int, index: Tensor, source: Tensor, *, alpha=1) -> Tensor:
    """``input`` with ``alpha * source``'s slices along ``dim`` added at ``index``."""
    from .functions import mul

    d = _wrap_dim(dim, input.ndim)
    index = _check_index_op("index_add", input, d, index, source)
    if isinstance(alpha, Tensor) or alpha != 1:
        source = mul(source, alpha)
    return scatter_add_axis(input, index, source, d)


def _add_at(x, idx, src):
    out = x.copy()
    np.add.at(out, idx, src)
    return out


def _dim_positions(input: Tensor, d: int, index: Tensor) -> Tensor:
    """Flat positions of every element of the slices ``index`` picks along ``d``."""
    shape = input._data.shape
    ishape = list(shape)
    ishape[d] = index._data.size
    view = [1] * len(shape)
    view[d] = -1
    full = broadcast_to(reshape(index, tuple(view)), tuple(ishape))
    return reshape(flat_positions(full, shape, d), (-1,))


def _copy_ref(x, dim, idx, src):
    out = x.copy()
    out[idx] = src
    return out


@op(
    spec=Spec(
        [arg(4, 3), 0, Arg((1,), kind="int", lo=0, hi=4), arg(1, 3)],
        _copy_ref,
        differentiable=(0, 3),
        linear=True,
    ),
    inplace=True,
)
def index_copy(input: Tensor, dim: int, index: Tensor, source: Tensor) -> Tensor:
    """``input`` with ``source``'s slices along ``dim`` written at ``index``."""
    if input.ndim == 0:
        return reshape(index_copy(reshape(input, (1,)), 0, index, reshape(source, (1,))), ())
    d = _wrap_dim(dim, input.ndim)
    index = _check_index_op("index_copy_", input, d, index, source)
    pos = _dim_positions(input, d, index)
    vals = reshape(source, (-1,))
    return reshape(overwrite(reshape(input, (-1,)), pos, vals), input._data.shape)


def _fill_ref(x, dim, idx, value):
    out = x.copy()
    out[:, idx] = value
    return out


@op(
    spec=Spec(
        [arg(3, 4), 1, Arg((2,), kind="int", lo=0, hi=4), -1.5], _fill_ref, differentiable=(0,)
    ),
    inplace=True,
)
def index_fill(input: Tensor, dim: int, index: Tensor, value) -> Tensor:
    """``input`` with the slices ``index`` picks along ``dim`` set to ``value``."""
    from .functions import const, gt, where

    if isinstance(value, Tensor) and value.ndim != 0:
        raise RuntimeError(
            "index_fill_ only supports a 0-dimensional value tensor, but got tensor with "
            f"{value.ndim} dimension(s)."
        )
    d = _wrap_dim(dim, input.ndim)
    index = _check_index_op("index_fill_", input, d, index, None)
    n = input._data.shape[d] if input.ndim else 1
    ones = Tensor._wrap(np.ones(index._data.size, dtype=np.int64))
    hit = gt(scatter_add_axis(_zeros(n, dtypes.int64), index, ones, 0), 0)
    view = [1] * input.ndim
    if view:
        view[d] = n
    hit = reshape(hit, tuple(view))
    value = value if isinstance(value, Tensor) else const(value, input.dtype)
    return where(hit, value.to(input.dtype), input)


@op(
    spec=Spec(
        [arg(3, 4), Arg((4,), kind="bool"), 0.5],
        lambda x, mask, value: np.where(mask, value, x),
        differentiable=(0,),
    ),
    inplace=True,
)
def masked_fill(input: Tensor, mask: Tensor, value) -> Tensor:
    """``input`` with ``value`` where ``mask`` (broadcast against it) is true."""
    from .functions import const, where

    if not isinstance(mask, Tensor) or mask.dtype is not dtypes.bool_:
        got = dtypes.type_name(mask.dtype) if isinstance(mask, Tensor) else type(mask).__name__
        raise RuntimeError(
            f"masked_fill_ only supports boolean masks, but got mask with dtype {got.lower()}"
        )
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise RuntimeError(
                "masked_fill_ only supports a 0-dimensional value tensor, but got tensor with "
                f"{value.ndim} dimension(s)."
            )
        value = value.to(input.dtype)
    else:
        value = const(value, input.dtype)
    return where(mask, value, input)


@op(
    spec=Spec(
        [arg(3, 4), Arg((4,), kind="bool"), arg(13)], None
    ),  # (the mask's values are needed while tracing: tests/test_ops_shapes.py)
    inplace=True,
)
def masked_scatter(input: Tensor, mask: Tensor, source: Tensor) -> Tensor:
    """``input`` with ``source``'s leading elements written, in order, where ``mask`` is true."""
    from .functions import where

    if mask.dtype is not dtypes.bool_:
        raise RuntimeError(
            f"masked_scatter_ only supports boolean masks, but got mask with dtype "
            f"{dtypes.type_name(mask.dtype).lower()}"
        )
    shape = broadcast_shapes(input._data.shape, mask._data.shape)
    input, mask = broadcast_to(input, shape), broadcast_to(mask, shape)
    _needs_values("masked_scatter", mask)
    m = mask._data.reshape(-1)
    count = int(m.sum())
    if source._data.size < count:
        raise RuntimeError("Number of elements of source < number of ones in mask")
    flat = reshape(input, (-1,))
    pos = Tensor._wrap(np.flatnonzero(m).astype(np.int64))
    vals = take_axis(reshape(source, (-1,)), Tensor._wrap(np.arange(count, dtype=np.int64)), 0)
    placed = scatter_add_axis(_zeros(m.size, input.dtype), pos, vals, 0)
    return reshape(where(Tensor._wrap(m), placed, flat), shape)


def _put_ref(x, idx, src, accumulate):
    out = x.copy().reshape(-1)
    if accumulate:
        np.add.at(out, idx.reshape(-1), src.reshape(-1))
    else:
        out[idx.reshape(-1)] = src.reshape(-1)
    return out.reshape(x.shape)


@op(
    spec=Spec(
        [arg(3, 4), Arg((2, 2), kind="int", lo=-12, hi=12), arg(2, 2)],
        _put_ref,
        params={"accumulate": True},
        differentiable=(0, 2),
        linear=True,
    ),
    inplace=True,
)
def put(input: Tensor, index: Tensor, source: Tensor, accumulate: bool = False) -> Tensor:
    """``input`` (read as 1-D) with ``source`` written (or added) at ``index``."""
    from .functions import add, lt, where

    index = _as_index(index)
    n = input._data.size
    data = index._data
    if data.size and (data.min() < -n or data.max() >= n):
        bad = data[(data < -n) | (data >= n)].flat[0]
        raise IndexError(f"out of range: tried to access index {bad} on a tensor of {n} elements.")
    if source._data.size != index._data.size:
        raise RuntimeError(
            f"put_(): Expected source and index to have the same number of elements, but got "
            f"source.numel() = {source._data.size}, index.numel() = {index._data.size}"
        )
    pos = reshape(index, (-1,))
    if data.size and data.min() < 0:
        pos = where(lt(pos, 0), add(pos, n), pos)
    flat, vals = reshape(input, (-1,)), reshape(source, (-1,))
    out = scatter_add_axis(flat, pos, vals, 0) if accumulate else overwrite(flat, pos, vals)
    return reshape(out, input._data.shape)


@op(
    spec=Spec(
        [arg(3, 4), Arg((3, 2), kind="int", lo=0, hi=4), 1],
        lambda x, idx, dim: np.take_along_axis(x, idx, dim),
        differentiable=(0,),
        linear=True,
    )
)
def take_along_dim(input: Tensor, indices: Tensor, dim=None) -> Tensor:
    """``input``'s elements at ``indices`` along ``dim`` (the two broadcast elsewhere), or
    of the flattened input when ``dim`` is None."""
    from .indexing import take

    if dim is None:
        return take(reshape(input, (-1,)), reshape(indices, (-1,)))
    indices = _as_index(indices)
    if indices.ndim != input.ndim:
        raise RuntimeError(
            "torch.take_along_dim(): input and indices should have the same number of "
            f"dimensions, but got {input.ndim} dimensions for input, and {indices.ndim} "
            "dimensions for indices"
        )
    d = _wrap_dim(dim, input.ndim)
    a, b = list(input._data.shape), list(indices._data.shape)
    a[d] = b[d] = 1
    rest = broadcast_shapes(tuple(a), tuple(b))
    xs, ixs = list(rest), list(rest)
    xs[d], ixs[d] = input._data.shape[d], indices._data.shape[d]
    return gather(broadcast_to(input, tuple(xs)), d, broadcast_to(indices, tuple(ixs)))


# -- data-dependent shapes: eager only -------------------------------------------------------------
@op(
    spec=Spec(
        [arg(3, 4), Arg((4,), kind="bool")],
        None,  # (data-dependent shape: tests/test_ops_shapes.py)
    )
)
def masked_select(input: Tensor, mask: Tensor) -> Tensor:
    """The elements of ``input`` where ``mask`` is true (broadcast together), as 1-D."""
    if mask.dtype is not dtypes.bool_:
        raise RuntimeError(
            f"masked_select: expected BoolTensor for mask, got {dtypes.type_name(mask.dtype)}"
        )
    data_dependent("masked_select", mask)
    shape = broadcast_shapes(input._data.shape, mask._data.shape)
    pos = np.flatnonzero(np.broadcast_to(mask._data, shape)).astype(np.int64)
    return take_axis(reshape(broadcast_to(input, shape), (-1,)), Tensor._wrap(pos), 0)


@op(spec=Spec([arg(3, 4)], None), method=True)
def nonzero(input: Tensor, *, as_tuple: bool = False):
    """The positions of ``input``'s nonzero elements: an (n, ndim) int64 tensor, or one 1-D
    tensor per dimension with ``as_tuple=True``."""
    data_dependent("nonzero", input)
    data = input._data
    if as_tuple:
        if data.ndim == 0:
            return (Tensor._wrap(np.zeros(int(data != 0), dtype=np.int64)),)
        return tuple(Tensor._wrap(ix.astype(np.int64)) for ix in np.nonzero(data))
    return Tensor._wrap(np.argwhere(data).astype(np.int64).reshape(-1, data.ndim))


@op(spec=Spec([arg(3, 4)], None))
def argwhere(input: Tensor) -> Tensor:
    data_dependent("argwhere", input)
    return nonzero(input)
