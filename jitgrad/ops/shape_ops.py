"""Movement and indexing ops: reshape, permute, broadcast, slicing, cat/split, gather, indexing."""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..autograd.grad_mode import STATE
from ..tensor import Tensor, _wrap_dim, apply, inplace
from . import prims as P


def _sizes(args) -> tuple:
    """Accept f(2, 3), f((2, 3)) and f([2, 3]) alike."""
    if len(args) == 1 and isinstance(args[0], (tuple, list, dtypes.Size)):
        args = args[0]
    return tuple(int(a) for a in args)


def broadcast_shapes(*shapes) -> tuple:
    ndim = max((len(s) for s in shapes), default=0)
    out = [1] * ndim
    for s in shapes:
        for i, d in enumerate(s):
            pos = ndim - len(s) + i
            if d == 1:
                continue
            if out[pos] == 1:
                out[pos] = d
            elif out[pos] != d:
                raise RuntimeError(
                    f"The size of tensor a ({out[pos]}) must match the size of tensor b ({d}) at "
                    f"non-singleton dimension {pos} (broadcasting shapes "
                    f"{' and '.join(str(list(x)) for x in shapes)}); reshape or unsqueeze one "
                    "operand so the sizes agree or are 1."
                )
    return tuple(out)


def broadcast_to(input: Tensor, *shape) -> Tensor:
    shape = _sizes(shape)
    src = input._data.shape
    if src == shape:
        return input
    lead = len(shape) - len(src)
    if lead < 0 or any(a not in (1, b) for a, b in zip(src, shape[lead:])):
        raise RuntimeError(
            f"The expanded size of the tensor must match the existing size at each non-singleton "
            f"dimension: cannot expand shape {list(src)} to {list(shape)}."
        )
    return apply(P.expand_p, (input,), {"shape": shape})


def expand(input: Tensor, *sizes) -> Tensor:
    sizes = _sizes(sizes)
    src = input._data.shape
    lead = len(sizes) - len(src)
    if lead < 0:
        raise RuntimeError(
            f"expand: the number of sizes provided ({len(sizes)}) must be greater or equal to "
            f"the number of dimensions in the tensor ({len(src)})"
        )
    shape = tuple(src[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(sizes))
    return broadcast_to(input, shape)


def expand_as(input: Tensor, other: Tensor) -> Tensor:
    return broadcast_to(input, other._data.shape)


def sum_to(g: Tensor, shape: tuple) -> Tensor:
    """Sum a broadcast gradient back to ``shape`` (the VJP of expand)."""
    shape = tuple(shape)
    if g._data.shape == shape:
        return g
    lead = g.ndim - len(shape)
    kept = tuple(lead + i for i, s in enumerate(shape) if s == 1 and g._data.shape[lead + i] != 1)
    if not kept:  # only new leading dims: one sum that drops them
        return apply(P.sum_p, (g,), {"axes": tuple(range(lead)), "keepdim": False})
    out = apply(P.sum_p, (g,), {"axes": tuple(range(lead)) + kept, "keepdim": True})
    return reshape(out, shape) if out._data.shape != shape else out


def _infer(shape: tuple, numel: int) -> tuple:
    if shape.count(-1) > 1:
        raise RuntimeError("only one dimension can be inferred")
    known = 1
    for s in shape:
        if s != -1:
            known *= s
    if -1 in shape:
        if known == 0 or numel % known:
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
        shape = tuple(numel // known if s == -1 else s for s in shape)
    elif known != numel:
        raise RuntimeError(
            f"shape '{list(shape)}' is invalid for input of size {numel}: the new shape must have "
            f"{numel} elements."
        )
    return shape


def reshape(input: Tensor, *shape) -> Tensor:
    shape = _infer(_sizes(shape), input._data.size)
    if shape == input._data.shape:
        return input
    return apply(P.reshape_p, (input,), {"shape": shape})


def view(input: Tensor, *shape) -> Tensor:
    if len(shape) == 1 and isinstance(shape[0], dtypes.dtype):
        raise RuntimeError("view(dtype) is not supported; use .to(dtype) to convert")
    target = _infer(_sizes(shape), input._data.size)
    try:
        np.reshape(input._data, target, copy=False)
    except ValueError:
        raise RuntimeError(
            "view size is not compatible with input tensor's size and stride (at least one "
            "dimension spans across two contiguous subspaces). Use .reshape(...) instead."
        ) from None
    return reshape(input, target)


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    if input.ndim == 0:
        return reshape(input, (1,))
    s, e = _wrap_dim(start_dim, input.ndim), _wrap_dim(end_dim, input.ndim)
    shape = input._data.shape
    n = 1
    for d in shape[s : e + 1]:
        n *= d
    return reshape(input, shape[:s] + (n,) + shape[e + 1 :])


def unflatten(input: Tensor, dim: int, sizes) -> Tensor:
    d = _wrap_dim(dim, input.ndim)
    shape = input._data.shape
    sizes = _infer(tuple(sizes), shape[d])
    return reshape(input, shape[:d] + sizes + shape[d + 1 :])


def squeeze(input: Tensor, dim=None) -> Tensor:
    shape = input._data.shape
    if dim is None:
        dims = {i for i, s in enumerate(shape) if s == 1}
    else:
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        dims = {d for d in (_wrap_dim(x, input.ndim) for x in dims) if shape and shape[d] == 1}
    return reshape(input, tuple(s for i, s in enumerate(shape) if i not in dims))


def unsqueeze(input: Tensor, dim: int) -> Tensor:
    n = input.ndim + 1
    if not -n <= dim < n:
        raise IndexError(
            f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})"
        )
    d = dim % n
    shape = input._data.shape
    return reshape(input, shape[:d] + (1,) + shape[d:])


def permute(input: Tensor, *dims) -> Tensor:
    dims = _sizes(dims)
    n = input.ndim
    if len(dims) != n:
        raise RuntimeError(
            f"permute(sparse_coo): number of dimensions in the tensor input does not match the "
            f"length of the desired ordering of dimensions i.e. input.dim() = {n} is not equal "
            f"to len(dims) = {len(dims)}"
        )
    perm = tuple(_wrap_dim(d, n) for d in dims)
    if len(set(perm)) != n:
        raise RuntimeError(f"permute(): duplicate dims are not allowed: {list(dims)}")
    if perm == tuple(range(n)):
        return input
    return apply(P.permute_p, (input,), {"perm": perm})


def transpose(input: Tensor, dim0: int, dim1: int) -> Tensor:
    n = input.ndim
    if n < 2 and dim0 in (0, -1) and dim1 in (0, -1):
        return input
    perm = list(range(n))
    a, b = _wrap_dim(dim0, n), _wrap_dim(dim1, n)
    perm[a], perm[b] = perm[b], perm[a]
    return permute(input, perm)


swapaxes = swapdims = transpose


def movedim(input: Tensor, source: int, destination: int) -> Tensor:
    n = input.ndim
    s, d = _wrap_dim(source, n), _wrap_dim(destination, n)
    order = [i for i in range(n) if i != s]
    order.insert(d, s)
    return permute(input, order)


def contiguous(input: Tensor, memory_format=None) -> Tensor:
    if input._data.flags.c_contiguous:
        return input
    return apply(P.copy_p, (input,))


def slice_(input: Tensor, starts, stops, steps) -> Tensor:
    return apply(
        P.slice_p,
        (input,),
        {"starts": tuple(starts), "stops": tuple(stops), "steps": tuple(steps)},
    )


def pad_interior(input: Tensor, widths) -> Tensor:
    """Zero padding: ``widths`` holds ``(low, high, interior)`` per dimension."""
    return apply(P.pad_p, (input,), {"widths": tuple(tuple(w) for w in widths)})


def narrow(input: Tensor, dim: int, start: int, length: int) -> Tensor:
    d = _wrap_dim(dim, input.ndim)
    shape = input._data.shape
    start = start % shape[d] if start < 0 else start
    starts = tuple(start if i == d else 0 for i in range(input.ndim))
    stops = tuple(start + length if i == d else s for i, s in enumerate(shape))
    return slice_(input, starts, stops, (1,) * input.ndim)


def cat(tensors, dim: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("torch.cat(): expected a non-empty list of Tensors")
    for i, t in enumerate(tensors):
        if t.ndim == 0:
            raise RuntimeError(
                f"zero-dimensional tensor (at position {i}) cannot be concatenated; "
                "unsqueeze it first."
            )
    from .functions import cast, result_type

    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = result_type(Tensor._wrap(np.empty((1,), dtype.np)), t)
    tensors = [cast(t, dtype) for t in tensors]
    d = _wrap_dim(dim, tensors[0].ndim)
    ref = tensors[0]._data.shape
    for i, t in enumerate(tensors[1:], 1):
        s = t._data.shape
        if len(s) != len(ref):
            raise RuntimeError(
                f"Tensors must have same number of dimensions: got {len(ref)} and {len(s)}"
            )
        for k in range(len(ref)):
            if k != d and s[k] != ref[k]:
                raise RuntimeError(
                    f"Sizes of tensors must match except in dimension {d}. Expected size "
                    f"{ref[k]} but got size {s[k]} for tensor number {i} in the list."
                )
    return apply(P.cat_p, tuple(tensors), {"axis": d})


concat = concatenate = cat


def stack(tensors, dim: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    ref = tensors[0]._data.shape
    for i, t in enumerate(tensors[1:], 1):
        if t._data.shape != ref:
            raise RuntimeError(
                f"stack expects each tensor to be equal size, but got {list(ref)} at entry 0 and "
                f"{list(t._data.shape)} at entry {i}"
            )
    n = len(ref) + 1
    if not -n <= dim < n:
        raise IndexError(
            f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})"
        )
    return cat([unsqueeze(t, dim % n) for t in tensors], dim % n)


def split(input: Tensor, split_size_or_sections, dim: int = 0) -> tuple:
    d = _wrap_dim(dim, input.ndim)
    n = input._data.shape[d]
    if isinstance(split_size_or_sections, int):
        size = split_size_or_sections
        if size <= 0:
            raise RuntimeError(f"split expects split_size be non-negative, but got {size}")
        sections = [size] * (n // size) + ([n % size] if n % size else [])
    else:
        sections = list(split_size_or_sections)
        if sum(sections) != n:
            raise RuntimeError(
                f"split_with_sizes expects split_sizes to sum exactly to {n} (input tensor's size "
                f"at dimension {d}), but got split_sizes={sections}"
            )
    out, start = [], 0
    for size in sections:
        out.append(narrow(input, d, start, size))
        start += size
    return tuple(out)


def chunk(input: Tensor, chunks: int, dim: int = 0) -> tuple:
    d = _wrap_dim(dim, input.ndim)
    n = input._data.shape[d]
    size = max(1, -(-n // chunks))
    return split(input, size, d)


def unbind(input: Tensor, dim: int = 0) -> tuple:
    d = _wrap_dim(dim, input.ndim)
    return tuple(squeeze(t, d) for t in split(input, 1, d))


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


def take(input: Tensor, index: Tensor, axis: int = 0) -> Tensor:
    """``input`` indexed along ``axis`` by an integer tensor (its dims replace that axis)."""
    d = _wrap_dim(axis, input.ndim)
    index = _normalized(_as_index(index), input._data.shape[d], d)
    return apply(P.take_p, (input, index), {"axis": d})


def index_select(input: Tensor, dim: int, index: Tensor) -> Tensor:
    return take(input, index, dim)


def scatter_add(input: Tensor, index: Tensor, src: Tensor, axis: int = 0) -> Tensor:
    """``input`` plus ``src`` added at ``index`` along ``axis`` (the transpose of take)."""
    return apply(P.scatter_add_p, (input, _as_index(index), src), {"axis": axis})


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
            mask._concrete("boolean mask indexing")
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
        return take(y, indices[0], positions[0])
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
        v = take(v, Tensor._wrap(keep.astype(np.int64)), 0)
        mask = np.zeros(x._data.size, dtype=bool)
        mask[flat_hits] = True
        zeros = Tensor._wrap(np.zeros(x._data.size, dtype=x._data.dtype))

        def compute(src):
            placed = scatter_add(zeros, hit_idx, v, 0)
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
