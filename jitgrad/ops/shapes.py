"""More movement ops, each a composite of the movement primitives (reshape, permute, expand,
slice, pad, cat) or of a take along one axis, so they compile with no lowering of their own:
flip, roll, rot90, repeat, tile, repeat_interleave, tril/triu, diag/diagonal/diag_embed, trace,
unfold, meshgrid, broadcast_tensors, atleast_Nd, the stacks and the splits."""

from __future__ import annotations

import numpy as np

from .. import dtypes, factories
from ..tensor import Tensor, _wrap_dim
from .indexing import take_axis
from .registry import op
from .scatter_ops import data_dependent
from .shape_ops import (
    _sizes,
    broadcast_shapes,
    broadcast_to,
    cat,
    movedim,
    narrow,
    pad_interior,
    permute,
    reshape,
    slice_,
    transpose,
    unsqueeze,
)
from .spec import Spec, arg


def _view(*args, ref, d=(0,), **kw) -> Spec:
    return Spec(list(args), ref, differentiable=d, linear=True, **kw)


def _listed(fn, *tensors, **params):
    return fn(list(tensors), **params)


def _dims(dims, ndim: int) -> tuple:
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    out = tuple(_wrap_dim(d, ndim) for d in dims)
    for d in out:
        if out.count(d) > 1:
            raise RuntimeError(f"dim {d} appears multiple times in the list of dims")
    return out


# -- flips and rotations --------------------------------------------------------------------------
@op(spec=_view(arg(3, 4), (0, 1), ref=np.flip))
def flip(input: Tensor, dims) -> Tensor:
    """``input`` with the order of elements along each of ``dims`` reversed (a gather along each:
    the slice primitive takes positive steps only)."""
    out = input
    for d in _dims(dims, input.ndim):
        n = input._data.shape[d]
        if n > 1:
            out = take_axis(out, Tensor._wrap(np.arange(n - 1, -1, -1, dtype=np.int64)), d)
    return out


@op(spec=_view(arg(3, 4), ref=np.fliplr))
def fliplr(input: Tensor) -> Tensor:
    if input.ndim < 2:
        raise RuntimeError("Input must be >= 2-d.")
    return flip(input, (1,))


@op(spec=_view(arg(3, 4), ref=np.flipud))
def flipud(input: Tensor) -> Tensor:
    if input.ndim < 1:
        raise RuntimeError("Input must be >= 1-d.")
    return flip(input, (0,))


@op(spec=_view(arg(3, 4), (1, -2), (1, 0), ref=np.roll))
def roll(input: Tensor, shifts, dims=None) -> Tensor:
    """``input`` shifted cyclically by ``shifts`` along ``dims`` (the flattened input when
    ``dims`` is None): two slices put back together with cat."""
    if dims is None:
        if not isinstance(shifts, int):
            if len(shifts) != 1:
                raise RuntimeError(
                    f"shifts and dimensions must align. shifts: {len(shifts)}, dims:0"
                )
            shifts = shifts[0]
        return reshape(roll(reshape(input, (-1,)), shifts, 0), input._data.shape)
    shifts = (shifts,) if isinstance(shifts, int) else tuple(shifts)
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    if len(shifts) != len(dims):
        raise RuntimeError(
            f"shifts and dimensions must align. shifts: {len(shifts)}, dims:{len(dims)}"
        )
    out = input
    for s, dim in zip(shifts, dims):
        d = _wrap_dim(dim, input.ndim)
        n = input._data.shape[d]
        s = s % n if n else 0
        if s:
            out = cat([narrow(out, d, n - s, s), narrow(out, d, 0, n - s)], d)
    return out


@op(spec=_view(arg(3, 4), 1, (0, 1), ref=lambda x, k, dims: np.rot90(x, k, dims)))
def rot90(input: Tensor, k: int = 1, dims=(0, 1)) -> Tensor:
    dims = tuple(dims)
    if len(dims) != 2:
        raise RuntimeError(f"expected total rotation dims == 2, but got dims = {len(dims)}")
    if input.ndim < 2:
        raise RuntimeError(f"expected total dims >= 2, but got total dims = {input.ndim}")
    a, b = _wrap_dim(dims[0], input.ndim), _wrap_dim(dims[1], input.ndim)
    if a == b:
        raise RuntimeError(
            f"expected rotation dims to be different, but got dim0 = {a} and dim1 = {b}"
        )
    k %= 4
    if k == 1:
        return transpose(flip(input, (b,)), a, b)
    if k == 2:
        return flip(input, (a, b))
    if k == 3:
        return transpose(flip(input, (a,)), a, b)
    from .functions import clone

    return clone(input)


# -- repeats ---------------------------------------------------------------------------------
@op(
    spec=_view(arg(2, 3), 2, 1, 2, ref=lambda x, *r: np.tile(x, r)), namespace="Tensor", method=True
)
def repeat(input: Tensor, *sizes) -> Tensor:
    """``input`` tiled ``sizes[i]`` times along each dim (Tensor.repeat): expand a unit dim in
    front of each dim, then merge the pairs."""
    sizes = _sizes(sizes)
    if len(sizes) < input.ndim:
        raise RuntimeError(
            "Number of dimensions of repeat dims can not be smaller than number of dimensions "
            "of tensor"
        )
    if any(r < 0 for r in sizes):
        raise RuntimeError(f"Trying to create tensor with negative dimension: {list(sizes)}")
    shape = (1,) * (len(sizes) - input.ndim) + input._data.shape
    paired = tuple(x for s in shape for x in (1, s))
    grown = tuple(x for r, s in zip(sizes, shape) for x in (r, s))
    out = broadcast_to(reshape(input, paired), grown)
    return reshape(out, tuple(r * s for r, s in zip(sizes, shape)))


@op(spec=_view(arg(2, 3), (2,), ref=np.tile))
def tile(input: Tensor, dims) -> Tensor:
    dims = tuple(dims)
    return repeat(input, (1,) * (input.ndim - len(dims)) + dims)


def _repeat_ref(x, repeats, dim):
    return np.repeat(x, repeats, dim)


@op(spec=_view(arg(2, 3), 2, 1, ref=_repeat_ref))
def repeat_interleave(input, repeats=None, dim=None, *, output_size=None) -> Tensor:
    """Each element (slice along ``dim``) repeated ``repeats`` times; ``repeats`` is a number or
    a tensor of counts (whose values decide the output's shape: eager only)."""
    if repeats is None:  # repeat_interleave(counts): arange(len(counts)) repeated counts times
        counts = input
        data_dependent("repeat_interleave", counts)
        ar = np.arange(counts._data.size, dtype=np.int64)
        return Tensor._wrap(np.repeat(ar, counts._data.reshape(-1)))
    if dim is None:
        input, d = reshape(input, (-1,)), 0
    else:
        d = _wrap_dim(dim, input.ndim)
    n = input._data.shape[d]
    if isinstance(repeats, Tensor) and repeats.ndim == 0:
        repeats = int(repeats.item())
    if isinstance(repeats, int):
        if repeats < 0:
            raise RuntimeError("repeats can not be negative")
        shape = input._data.shape
        out = broadcast_to(unsqueeze(input, d + 1), shape[: d + 1] + (repeats,) + shape[d + 1 :])
        return reshape(out, shape[:d] + (n * repeats,) + shape[d + 1 :])
    if not isinstance(repeats, Tensor):
        repeats = Tensor._wrap(np.asarray(repeats, dtype=np.int64))
    data_dependent("repeat_interleave", repeats)
    counts = repeats._data.reshape(-1)
    if counts.size == 1:
        counts = np.repeat(counts, n)
    if counts.size != n:
        raise RuntimeError(
            "repeats must have the same size as input along dim, but got repeats.size(0) = "
            f"{counts.size} and input.size({d}) = {n}"
        )
    if counts.size and counts.min() < 0:
        raise RuntimeError("repeats can not be negative")
    at = np.repeat(np.arange(n, dtype=np.int64), counts)
    return take_axis(input, Tensor._wrap(at), d)


# -- triangles and diagonals -----------------------------------------------------------------------
def _triangle(input: Tensor, diagonal: int, lower: bool) -> Tensor:
    from .functions import const, where

    if input.ndim < 2:
        name = "tril" if lower else "triu"
        raise RuntimeError(f"{name}: input tensor must have at least 2 dimensions")
    rows, cols = input._data.shape[-2:]
    tri = np.tril if lower else np.triu
    mask = tri(np.ones((rows, cols), dtype=bool), diagonal)
    return where(Tensor._wrap(mask), input, const(0, input.dtype))


@op(spec=Spec([arg(3, 4), 1], np.tril, differentiable=(0,), linear=True), inplace=True)
def tril(input: Tensor, diagonal: int = 0) -> Tensor:
    return _triangle(input, diagonal, True)


@op(spec=Spec([arg(3, 4), -1], np.triu, differentiable=(0,), linear=True), inplace=True)
def triu(input: Tensor, diagonal: int = 0) -> Tensor:
    return _triangle(input, diagonal, False)


def _tri_indices(fn, row, col, offset, dtype, device):
    from ..factories import _check_device

    _check_device(device)
    rows, cols = fn(int(row), int(offset), int(col))
    d = dtypes.as_dtype(dtype) if dtype is not None else dtypes.int64
    return Tensor._wrap(np.stack([rows, cols]).astype(d.np).reshape(2, -1))


@op(spec=Spec([3, 4, 1], None), method=False)  # (a factory: tests/test_ops_shapes.py)
def tril_indices(row, col, offset=0, *, dtype=None, device=None, layout=None) -> Tensor:
    return _tri_indices(np.tril_indices, row, col, offset, dtype, device)


@op(spec=Spec([3, 4, 1], None), method=False)
def triu_indices(row, col, offset=0, *, dtype=None, device=None, layout=None) -> Tensor:
    return _tri_indices(np.triu_indices, row, col, offset, dtype, device)


@op(spec=_view(arg(2, 3, 4), 1, 0, 2, ref=lambda x, o, a, b: np.diagonal(x, o, a, b)))
def diagonal(input: Tensor, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Tensor:
    """The diagonal of the (dim1, dim2) planes, as the last dim: a strided slice of the
    flattened planes."""
    n = input.ndim
    a, b = _wrap_dim(dim1, n), _wrap_dim(dim2, n)
    if a == b:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    rest = [k for k in range(n) if k not in (a, b)]
    moved = permute(input, rest + [a, b])
    shape = moved._data.shape
    r, c = shape[-2:]
    length = max(0, min(r, c - offset) if offset >= 0 else min(r + offset, c))
    start = offset if offset >= 0 else -offset * c
    flat = reshape(moved, shape[:-2] + (r * c,))
    lead = len(shape) - 2
    if length == 0:
        return slice_(flat, (0,) * (lead + 1), shape[:-2] + (0,), (1,) * (lead + 1))
    stop = start + (length - 1) * (c + 1) + 1
    return slice_(flat, (0,) * lead + (start,), shape[:-2] + (stop,), (1,) * lead + (c + 1,))


_diagonal = diagonal


def _diag_embed_ref(x, offset, dim1, dim2):
    n = x.shape[-1] + abs(offset)
    out = np.zeros(x.shape[:-1] + (n, n), dtype=x.dtype)
    i = np.arange(x.shape[-1])
    r, c = (i, i + offset) if offset >= 0 else (i - offset, i)
    out[..., r, c] = x
    return np.moveaxis(out, (-2, -1), (dim1, dim2))


@op(spec=_view(arg(2, 3), 1, 0, 2, ref=_diag_embed_ref))
def diag_embed(input: Tensor, offset: int = 0, dim1: int = -2, dim2: int = -1) -> Tensor:
    """Matrices with ``input``'s last dim on their ``offset`` diagonal, in dims (dim1, dim2) of
    the result: zero padding of the (n, 1) column to (n, m + 1), read back as (m, m)."""
    out_nd = input.ndim + 1
    a, b = _wrap_dim(dim1, out_nd), _wrap_dim(dim2, out_nd)
    if a == b:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    batch = input._data.shape[:-1]
    n = input._data.shape[-1] if input.ndim else 1
    m = n + abs(offset)
    lead = len(batch)
    col = reshape(input, batch + (n, 1))
    none = ((0, 0, 0),) * lead
    wide = pad_interior(col, none + ((0, 0, 0), (0, m, 0)))
    flat = reshape(wide, batch + (n * (m + 1),))
    front = offset if offset >= 0 else -offset * m
    back = m * m - front - n * (m + 1)
    if back >= 0:
        flat = pad_interior(flat, none + ((front, back, 0),))
    else:
        flat = pad_interior(flat, none + ((front, 0, 0),)) if front else flat
        flat = slice_(flat, (0,) * (lead + 1), batch + (m * m,), (1,) * (lead + 1))
    square = reshape(flat, batch + (m, m))
    perm = [0] * out_nd
    others = iter(range(lead))
    for k in range(out_nd):
        perm[k] = lead if k == a else lead + 1 if k == b else next(others)
    return permute(square, perm)


def _diag_ref(x, diagonal):
    return np.diag(x, diagonal)


@op(spec=_view(arg(4), 1, ref=_diag_ref))
def diag(input: Tensor, diagonal: int = 0) -> Tensor:
    """A square matrix with the 1-D ``input`` on a diagonal, or a 2-D input's diagonal."""
    if input.ndim == 1:
        return diag_embed(input, diagonal, 0, 1)
    if input.ndim == 2:
        return _diagonal(input, diagonal, 0, 1)
    raise RuntimeError(f"diag(): Supports 1D or 2D tensors. Got {input.ndim}D")


@op(spec=Spec([arg(3, 4)], np.trace, differentiable=(0,), linear=True))
def trace(input: Tensor) -> Tensor:
    from .composites import sum as sum_

    if input.ndim != 2:
        raise RuntimeError(f"trace: expected a matrix, but got tensor with dim {input.ndim}")
    return sum_(diagonal(input, 0, 0, 1))


def _unfold_ref(x, dimension, size, step):
    n = x.shape[dimension]
    count = (n - size) // step + 1
    windows = [np.take(x, range(i * step, i * step + size), dimension) for i in range(count)]
    return np.moveaxis(np.stack(windows, dimension), dimension + 1, -1)


@op(spec=_view(arg(3, 7), 1, 3, 2, ref=_unfold_ref), namespace="Tensor", method=True)
def unfold(input: Tensor, dimension: int, size: int, step: int) -> Tensor:
    """Windows of ``size`` along ``dimension``, ``step`` apart, as a new last dim (one take)."""
    d = _wrap_dim(dimension, input.ndim)
    n = input._data.shape[d] if input.ndim else 1
    if size > n:
        raise RuntimeError(f"maximum size for tensor at dimension {d} is {n} but size is {size}")
    if step <= 0:
        raise RuntimeError(f"step is {step} but must be > 0")
    if input.ndim == 0:
        return reshape(input, (size,))
    count = (n - size) // step + 1
    at = np.arange(count, dtype=np.int64)[:, None] * step + np.arange(size, dtype=np.int64)
    return movedim(take_axis(input, Tensor._wrap(at), d), d + 1, -1)


# -- grids and broadcasting ------------------------------------------------------------------------
def _tensors(tensors) -> list:
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        return list(tensors[0])
    return list(tensors)


@op(
    spec=_view(
        arg(2),
        arg(3),
        ref=lambda a, b, indexing: np.meshgrid(a, b, indexing=indexing),
        params={"indexing": "xy"},
        d=(0, 1),
    ),
    method=False,
)
def meshgrid(*tensors, indexing: str | None = None) -> tuple:
    tensors = _tensors(tensors)
    indexing = indexing or "ij"
    if indexing not in ("ij", "xy"):
        raise RuntimeError(
            f'torch.meshgrid: indexing must be one of "xy" or "ij", but received: {indexing}'
        )
    for t in tensors:
        if t.ndim > 1:
            raise RuntimeError(
                f"torch.meshgrid: Expected 0D or 1D tensor in the tensor list but got: {t}"
            )
    sizes = [t._data.size for t in tensors]
    order = list(range(len(tensors)))
    if indexing == "xy" and len(tensors) >= 2:
        order[0], order[1] = 1, 0
    shape = tuple(sizes[k] for k in order)
    out = []
    for k, t in enumerate(tensors):
        pos = order.index(k)
        view = tuple(-1 if j == pos else 1 for j in range(len(shape)))
        out.append(broadcast_to(reshape(t, view), shape))
    return tuple(out)


@op(
    spec=_view(arg(3, 1), arg(4), ref=lambda a, b: np.broadcast_arrays(a, b), d=(0, 1)),
    method=False,
)
def broadcast_tensors(*tensors) -> tuple:
    tensors = _tensors(tensors)
    shape = broadcast_shapes(*[t._data.shape for t in tensors])
    return tuple(broadcast_to(t, shape) for t in tensors)


def _atleast(tensors, nd: int, where):
    from .frontend import as_tensor_operand

    single = len(tensors) == 1 and not isinstance(tensors[0], (list, tuple))
    out = []
    for t in _tensors(tensors):
        t = as_tensor_operand(t)
        if t.ndim < nd:
            t = reshape(t, where(t._data.shape))
        out.append(t)
    return out[0] if single else tuple(out)


@op(spec=_view(arg(), ref=np.atleast_1d))
def atleast_1d(*tensors):
    return _atleast(tensors, 1, lambda s: (1,))


@op(spec=_view(arg(3), ref=np.atleast_2d))
def atleast_2d(*tensors):
    return _atleast(tensors, 2, lambda s: (1,) * (2 - len(s)) + s)


def _3d(s):
    return {0: (1, 1, 1), 1: (1,) + s + (1,), 2: s + (1,)}[len(s)]


@op(spec=_view(arg(3), ref=np.atleast_3d))
def atleast_3d(*tensors):
    return _atleast(tensors, 3, _3d)


def _stack_spec(a, b, ref):
    return _view(a, b, ref=lambda x, y: ref([x, y]), d=(0, 1), call=_listed)


@op(spec=_stack_spec(arg(2, 3), arg(2, 1), np.hstack), method=False)
def hstack(tensors) -> Tensor:
    tensors = atleast_1d(list(tensors))
    return cat(tensors, 0 if tensors[0].ndim == 1 else 1)


@op(spec=_stack_spec(arg(3), arg(2, 3), np.vstack), method=False, names=("row_stack",))
def vstack(tensors) -> Tensor:
    return cat(atleast_2d(list(tensors)), 0)


@op(spec=_stack_spec(arg(2, 3), arg(2, 3, 2), np.dstack), method=False)
def dstack(tensors) -> Tensor:
    return cat(atleast_3d(list(tensors)), 2)


@op(spec=_stack_spec(arg(3), arg(3, 2), np.column_stack), method=False)
def column_stack(tensors) -> Tensor:
    cols = [reshape(t, (t._data.size, 1)) if t.ndim <= 1 else t for t in tensors]
    return cat(cols, 1)


# -- splits ---------------------------------------------------------------------------------------
def _split_ref(x, sections, dim):
    return tuple(np.array_split(x, sections, dim))


@op(spec=_view(arg(3, 7), 3, 1, ref=_split_ref))
def tensor_split(input: Tensor, indices_or_sections, dim: int = 0) -> tuple:
    """``input`` split along ``dim`` into that many nearly equal parts (the first ones one
    longer), or at the given indices."""
    d = _wrap_dim(dim, input.ndim)
    n = input._data.shape[d]
    spec = indices_or_sections
    if isinstance(spec, Tensor):
        if spec.dtype.category != 1 or spec.ndim > 1:
            raise RuntimeError(
                "tensor_split expected tensor_indices_or_sections to have integral dtype and "
                f"be 0-D or 1-D, but got {spec.ndim}-D"
            )
        spec = int(spec.item()) if spec.ndim == 0 else [int(v) for v in spec.tolist()]
    if isinstance(spec, int):
        if spec <= 0:
            raise RuntimeError(f"number of sections must be larger than 0, got {spec}")
        size, extra = divmod(n, spec)
        bounds = np.cumsum([0] + [size + (k < extra) for k in range(spec)]).tolist()
    else:
        bounds = [0] + [min(max(int(i), 0), n) for i in spec] + [n]
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        a = min(a, n)
        out.append(narrow(input, d, a, max(0, b - a)))
    return tuple(out)


def _split_along(name: str, input: Tensor, sections, d: int) -> tuple:
    if isinstance(sections, int):
        n = input._data.shape[d]
        if sections == 0 or n % sections:
            raise RuntimeError(
                f"torch.{name} attempted to split along dimension {d}, but the size of the "
                f"dimension {n} is not divisible by the split_size {sections}!"
            )
    return tensor_split(input, sections, d)


@op(spec=_view(arg(3, 4), 2, ref=lambda x, s: tuple(np.hsplit(x, s))))
def hsplit(input: Tensor, sections) -> tuple:
    if input.ndim < 1:
        raise RuntimeError(
            "torch.hsplit requires a tensor with at least 1 dimension, but got a tensor with 0 "
            "dimensions!"
        )
    return _split_along("hsplit", input, sections, 0 if input.ndim == 1 else 1)


@op(spec=_view(arg(4, 3), 2, ref=lambda x, s: tuple(np.vsplit(x, s))))
def vsplit(input: Tensor, sections) -> tuple:
    if input.ndim < 2:
        raise RuntimeError(
            "torch.vsplit requires a tensor with at least 2 dimension, but got a tensor with "
            f"{input.ndim} dimensions!"
        )
    return _split_along("vsplit", input, sections, 0)


@op(spec=_view(arg(2, 3, 4), 2, ref=lambda x, s: tuple(np.dsplit(x, s))))
def dsplit(input: Tensor, sections) -> tuple:
    if input.ndim < 3:
        raise RuntimeError(
            "torch.dsplit requires a tensor with at least 3 dimension, but got a tensor with "
            f"{input.ndim} dimensions!"
        )
    return _split_along("dsplit", input, sections, 2)


# -- Tensor.new_*: a new tensor with this one's dtype unless told otherwise ---------------------
def _new_spec(*args, ref):
    return Spec([arg(2, 3), *args], ref)


def _own(self: Tensor, dtype):
    return self.dtype if dtype is None else dtype


@op(spec=_new_spec((2, 4), ref=lambda x, s: np.zeros(s, x.dtype)), namespace="Tensor", method=True)
def new_zeros(self, *size, dtype=None, device=None, requires_grad=False, **kw) -> Tensor:
    return factories.zeros(
        *size, dtype=_own(self, dtype), device=device, requires_grad=requires_grad, **kw
    )


@op(spec=_new_spec((2, 4), ref=lambda x, s: np.ones(s, x.dtype)), namespace="Tensor", method=True)
def new_ones(self, *size, dtype=None, device=None, requires_grad=False, **kw) -> Tensor:
    return factories.ones(
        *size, dtype=_own(self, dtype), device=device, requires_grad=requires_grad, **kw
    )


@op(spec=_new_spec((2, 4), ref=None), namespace="Tensor", method=True)  # (values unset)
def new_empty(self, *size, dtype=None, device=None, requires_grad=False, **kw) -> Tensor:
    return factories.empty(
        *size, dtype=_own(self, dtype), device=device, requires_grad=requires_grad, **kw
    )


@op(
    spec=_new_spec((2, 4), 1.5, ref=lambda x, s, v: np.full(s, v, x.dtype)),
    namespace="Tensor",
    method=True,
)
def new_full(
    self, size, fill_value, *, dtype=None, device=None, requires_grad=False, **kw
) -> Tensor:
    return factories.full(
        size, fill_value, dtype=_own(self, dtype), device=device, requires_grad=requires_grad
    )


@op(
    spec=_new_spec([[1, 2], [3, 4]], ref=lambda x, d: np.array(d, x.dtype)),
    namespace="Tensor",
    method=True,
)
def new_tensor(self, data, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    return factories.tensor(
        data, dtype=_own(self, dtype), device=device, requires_grad=requires_grad
    )
