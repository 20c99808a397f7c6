"""Integer indexing: take, index_select, gather, and Tensor.__getitem__/__setitem__."""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..autograd.grad_mode import STATE
from ..tensor import Tensor, _wrap_dim, apply, inplace
from . import prims as P
from .registry import op
from .shape_ops import broadcast_shapes, broadcast_to, pad_interior, permute, reshape, slice_
from .spec import Spec, arg


# -- integer indexing ------------------------------------------------------------------------------
def _check_bounds(index: Tensor, size: int, dim: int) -> None:
    """Bounds are checked on concrete values; out-of-range indices would read other elements."""
    data = index._data
    if data.size and (data.min() < -size or data.max() >= size):
        bad = data[(data < -size) | (data >= size)].flat[0]
        raise IndexError(
            f"index {bad} is out of bounds for dimension {dim} with size {size}; valid indices "
            f"are -{size} to {size - 1}."
        )


def _normalized(index: Tensor, size: int, dim: int) -> Tensor:
    from .functions import add, lt, where

    if index.dtype.category != 1:
        raise IndexError(
            f"tensors used as indices must be long, int or bool tensors, got {index.dtype}"
        )
    _check_bounds(index, size, dim)
    if index._data.size and index._data.min() < 0:
        return where(lt(index, 0), add(index, size), index)
    return index


def take_axis(input: Tensor, index, axis: int = 0) -> Tensor:
    """NumPy's take: ``input`` indexed along ``axis`` by an integer tensor whose dims replace
    that axis (negative indices count from the end). Internal: PyTorch's ``take`` indexes the
    flattened input."""
    d = _wrap_dim(axis, input.ndim)
    index = _normalized(_as_index(index), input._data.shape[d], d)
    return apply(P.take_p, (input, index), {"axis": d})


def scatter_add_axis(input: Tensor, index, src: Tensor, axis: int = 0) -> Tensor:
    """``input`` plus ``src`` added at ``index`` along ``axis`` (take_axis's transpose): the
    primitive, for internal callers."""
    return apply(P.scatter_add_p, (input, _as_index(index), src), {"axis": axis})


@op(
    spec=Spec(
        [arg(3, 4), arg(2, 3, kind="int", lo=-12, hi=12)],
        lambda x, idx: np.take(x.reshape(-1), idx),
        differentiable=(0,),
        linear=True,
    )
)
def take(input: Tensor, index: Tensor) -> Tensor:
    """The elements of ``input``, read as if it were 1-D, at ``index`` (negative indices count
    from the end); the result has ``index``'s shape."""
    index = _as_index(index)
    if index.dtype.category != 1 or index.dtype is dtypes.bool_:
        raise RuntimeError(
            f"take(): Expected a long tensor for index, but got {dtypes.type_name(index.dtype)}"
        )
    n = input._data.size
    data = index._data
    if data.size and (data.min() < -n or data.max() >= n):
        bad = data[(data < -n) | (data >= n)].flat[0]
        raise IndexError(f"out of range: tried to access index {bad} on a tensor of {n} elements.")
    return take_axis(reshape(input, (-1,)), index, 0)


@op(
    spec=Spec(
        [arg(5, 3), 1, arg(4, kind="int", lo=0, hi=3)],
        lambda x, dim, idx: x[:, idx],
        differentiable=(0,),
        linear=True,
    )
)
def index_select(input: Tensor, dim: int, index: Tensor) -> Tensor:
    index = _as_index(index)
    if index.ndim > 1:
        raise IndexError("index_select(): Index is supposed to be a vector")
    d = _wrap_dim(dim, input.ndim)
    if input.ndim == 0:
        return take_axis(reshape(input, (1,)), reshape(index, (-1,)), 0).reshape(index.shape)
    return take_axis(input, reshape(index, (-1,)), d)


@op(
    spec=Spec(
        [arg(3, 4), 1, arg(3, 2, kind="int", lo=0, hi=4)],
        lambda x, dim, idx: np.take_along_axis(x, idx, dim),
        differentiable=(0,),
        linear=True,
    )
)
def gather(input: Tensor, dim: int, index: Tensor) -> Tensor:
    """PyTorch's gather, as a take from the flattened input at computed flat offsets."""
    from .functions import add, mul

    index = _as_index(index)
    n = input.ndim
    d = _wrap_dim(dim, n)
    if index.ndim != n:
        raise RuntimeError("Index tensor must have the same number of dimensions as input tensor")
    shape = input._data.shape
    _check_bounds(index, shape[d], d)
    if index._data.size and index._data.min() < 0:
        raise RuntimeError(f"gather(): index {int(index._data.min())} is negative")
    strides = [1] * n
    for k in range(n - 2, -1, -1):
        strides[k] = strides[k + 1] * shape[k + 1]
    offsets = np.zeros(index._data.shape, dtype=np.int64)
    for k in range(n):
        if k != d:
            if index._data.shape[k] > shape[k]:
                raise RuntimeError(
                    f"Size does not match at dimension {k} expected index {list(index.shape)} "
                    f"to be smaller than self {list(shape)} apart from dimension {d}"
                )
            ar = np.arange(index._data.shape[k], dtype=np.int64) * strides[k]
            offsets = offsets + ar.reshape([-1 if j == k else 1 for j in range(n)])
    flat = add(mul(index, strides[d]), Tensor._wrap(offsets)) if n > 1 else index
    return apply(P.take_p, (reshape(input, (-1,)), flat), {"axis": 0})


def _as_index(index) -> Tensor:
    if isinstance(index, Tensor):
        return index
    arr = np.asarray(index)
    if arr.dtype.kind not in "iub":
        raise IndexError(
            f"tensors used as indices must be long, int or bool tensors, got {arr.dtype}"
        )
    return Tensor._wrap(arr.astype(np.int64) if arr.dtype.kind != "b" else arr)


# -- __getitem__ / __setitem__ ---------------------------------------------------------------------
def _parse(x: Tensor, index):
    """Split an index into basic slicing (per input dim) and advanced integer indices."""
    if not isinstance(index, tuple):
        index = (index,)
    items = []
    for item in index:
        if isinstance(item, (list, np.ndarray)) or (
            isinstance(item, Tensor) and item.dtype is not dtypes.bool_
        ):
            items.append(_as_index(item))
        elif isinstance(item, Tensor) or isinstance(item, np.bool_):
            mask = item if isinstance(item, Tensor) else Tensor._wrap(np.asarray(item))
            from .scatter_ops import data_dependent

            data_dependent("boolean mask indexing", mask)
            items.extend(Tensor._wrap(ix.astype(np.int64)) for ix in np.nonzero(mask._data))
            if mask.ndim == 0:
                raise IndexError("indexing with a 0-d boolean is not supported; use where()")
        else:
            items.append(item)
    consumed = sum(1 if not (it is None or it is Ellipsis) else 0 for it in items)
    if sum(it is Ellipsis for it in items) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if consumed > x.ndim:
        raise IndexError(f"too many indices for tensor of dimension {x.ndim} (got {consumed})")
    if Ellipsis in [it for it in items if not isinstance(it, Tensor)]:
        at = next(i for i, it in enumerate(items) if it is Ellipsis)
        items = items[:at] + [slice(None)] * (x.ndim - consumed) + items[at + 1 :]
    else:
        items = items + [slice(None)] * (x.ndim - consumed)

    shape = x._data.shape
    starts, stops, steps = [], [], []
    layout = []  # per output position of the sliced+reshaped tensor: ("keep"|"new", adv index)
    drop = []  # input dims indexed by a basic int (removed)
    adv = []  # (input dim, index tensor)
    d = 0
    for it in items:
        if it is None:
            layout.append(("new", None))
            continue
        n = shape[d]
        if isinstance(it, Tensor):
            starts.append(0), stops.append(n), steps.append(1)
            layout.append(("keep", d))
            adv.append((d, _normalized(it, n, d)))
        elif isinstance(it, slice):
            a, b, c = it.indices(n)
            if c <= 0:
                raise ValueError("step must be greater than zero")
            starts.append(a), stops.append(max(a, b)), steps.append(c)
            layout.append(("keep", d))
        else:
            try:
                i = int(it.__index__())
            except (AttributeError, TypeError):
                raise IndexError(
                    "only integers, slices (`:`), ellipsis (`...`), None and long or bool "
                    f"tensors are valid indices (got {type(it).__name__})"
                ) from None
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for dimension {d} with size {n}")
            i %= n
            starts.append(i), stops.append(i + 1), steps.append(1)
            # PyTorch selects integer indices first (basic indexing), then applies the advanced
            # ones to what is left: x[1, :, idx] has shape (3, 2) for x of shape (2, 3, 4),
            # where NumPy would give (2, 3).
            drop.append(d)
        d += 1
    return starts, stops, steps, layout, drop, adv


# (Tensor.__getitem__: slices, one with a step, and an integer tensor with a repeat)
@op(
    spec=Spec(
        [arg(4, 5, 3)],
        lambda x, index: x[index],
        params={"index": (slice(1, 4), slice(0, 5, 2), np.array([2, 0, 2]))},
        differentiable=(0,),
        linear=True,
    ),
    method=False,
)
def getitem(x: Tensor, index) -> Tensor:
    starts, stops, steps, layout, drop, adv = _parse(x, index)
    y = x
    if any((a, b, c) != (0, n, 1) for a, b, c, n in zip(starts, stops, steps, x._data.shape)):
        y = slice_(x, starts, stops, steps)
    ys = y._data.shape
    new_shape = tuple(1 if kind == "new" else ys[d] for kind, d in layout)
    if new_shape != ys:
        y = reshape(y, new_shape)
    if not adv:
        return y
    # Advanced indices: positions in y, broadcast together, combined into one flat index.
    pos_of = {d: p for p, (kind, d) in enumerate(layout) if kind == "keep"}
    positions = [pos_of[d] for d, _ in adv]
    from .functions import add, mul

    idx_shape = broadcast_shapes(*[ix._data.shape for _, ix in adv])
    indices = [broadcast_to(ix, idx_shape) for _, ix in adv]
    if len(adv) == 1:
        return take_axis(y, indices[0], positions[0])
    adjacent = positions == list(range(positions[0], positions[0] + len(positions)))
    if not adjacent:
        rest = [p for p in range(y.ndim) if p not in positions]
        y = permute(y, positions + rest)
        positions = list(range(len(positions)))
    p0 = positions[0]
    sizes = [y._data.shape[p] for p in positions]
    flat = indices[0]
    for ix, size in zip(indices[1:], sizes[1:]):
        flat = add(mul(flat, size), ix)
    ys = y._data.shape
    y = reshape(y, ys[:p0] + (-1,) + ys[p0 + len(positions) :])
    return apply(P.take_p, (y, flat), {"axis": p0})


def setitem(x: Tensor, index, value) -> None:
    """``x[index] = value`` as an in-place update computed with differentiable ops."""
    from .functions import _operand, where

    value = _operand(value, x.dtype)
    starts, stops, steps, layout, drop, adv = _parse(x, index)
    if adv:
        # Positions are computed from concrete index values: the flat offsets of every hit.
        for _, ix in adv:
            ix._concrete("indexed assignment with a tensor index")
        # Indexing a tensor of flat offsets with the same index gives exactly the positions
        # (and the shape) getitem reads, whatever mix of ints, slices and arrays it holds.
        probe = Tensor._wrap(np.arange(x._data.size, dtype=np.int64).reshape(x._data.shape))
        tracer, STATE.tracer = STATE.tracer, None
        try:
            hits = getitem(probe, index)._data
        finally:
            STATE.tracer = tracer
        target_shape = hits.shape
        flat_hits = hits.reshape(-1)
        v = reshape(broadcast_to(value, target_shape), (-1,))
        # the last write to a position wins, as with NumPy assignment
        _, last = np.unique(flat_hits[::-1], return_index=True)
        keep = np.sort(flat_hits.size - 1 - last)
        hit_idx = Tensor._wrap(flat_hits[keep])
        v = take_axis(v, Tensor._wrap(keep.astype(np.int64)), 0)
        mask = np.zeros(x._data.size, dtype=bool)
        mask[flat_hits] = True
        zeros = Tensor._wrap(np.zeros(x._data.size, dtype=x._data.dtype))

        def compute(src):
            placed = scatter_add_axis(zeros, hit_idx, v, 0)
            flat = where(Tensor._wrap(mask), placed, reshape(src, (-1,)))
            return reshape(flat, x._data.shape)

    else:
        region = tuple(len(range(a, b, c)) for a, b, c in zip(starts, stops, steps))
        view_shape = tuple(
            1 if kind == "new" else region[d]
            for kind, d in layout
            if not (kind == "keep" and d in drop)
        )
        v = reshape(broadcast_to(value, view_shape), region)
        widths = [
            (a, n - (a + (m - 1) * c + 1) if m else n - a, c - 1)
            for a, c, m, n in zip(starts, steps, region, x._data.shape)
        ]
        mask = np.zeros(x._data.shape, dtype=bool)
        mask[tuple(slice(a, b, c) for a, b, c in zip(starts, stops, steps))] = True

        def compute(src):
            return where(Tensor._wrap(mask), pad_interior(v, widths), src)

    inplace(x, compute)
