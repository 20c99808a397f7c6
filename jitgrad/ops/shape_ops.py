"""Movement and indexing ops: reshape, permute, broadcast, slicing, cat/split, gather, indexing."""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..tensor import Tensor, _wrap_dim, apply
from . import prims as P
from .registry import op
from .spec import Spec, arg


def _view(*args, ref, d=(0,), **kw) -> Spec:
    """The spec of a view: linear in its tensor input(s)."""
    return Spec(list(args), ref, differentiable=d, linear=True, **kw)


def _listed(fn, *tensors, **params):
    """How the specs call cat and stack: on a list of tensors."""
    return fn(list(tensors), **params)


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


@op(spec=_view(arg(3, 1), (2, 3, 4), ref=np.broadcast_to))
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


@op(spec=_view(arg(3, 1), 2, -1, 4, ref=lambda x, *sizes: np.broadcast_to(x, (2, 3, 4))))
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


@op(spec=_view(arg(3, 1), arg(2, 3, 4), ref=lambda x, other: np.broadcast_to(x, other.shape)))
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


@op(spec=_view(arg(3, 4), (2, -1), ref=np.reshape))
def reshape(input: Tensor, *shape) -> Tensor:
    shape = _infer(_sizes(shape), input._data.size)
    if shape == input._data.shape:
        return input
    return apply(P.reshape_p, (input,), {"shape": shape})


@op(spec=_view(arg(3, 4), 6, 2, ref=lambda x, *shape: x.reshape(shape)))
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


@op(spec=_view(arg(2, 3, 4), ref=lambda x, start_dim: x.reshape(2, 12), params={"start_dim": 1}))
def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    if input.ndim == 0:
        return reshape(input, (1,))
    s, e = _wrap_dim(start_dim, input.ndim), _wrap_dim(end_dim, input.ndim)
    shape = input._data.shape
    n = 1
    for d in shape[s : e + 1]:
        n *= d
    return reshape(input, shape[:s] + (n,) + shape[e + 1 :])


@op(spec=_view(arg(2, 12), 1, (3, -1), ref=lambda x, dim, sizes: x.reshape(2, 3, 4)))
def unflatten(input: Tensor, dim: int, sizes) -> Tensor:
    d = _wrap_dim(dim, input.ndim)
    shape = input._data.shape
    sizes = _infer(tuple(sizes), shape[d])
    return reshape(input, shape[:d] + sizes + shape[d + 1 :])


@op(spec=_view(arg(3, 1, 4), ref=lambda x, dim: np.squeeze(x, dim), params={"dim": 1}))
def squeeze(input: Tensor, dim=None) -> Tensor:
    shape = input._data.shape
    if dim is None:
        dims = {i for i, s in enumerate(shape) if s == 1}
    else:
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        dims = {d for d in (_wrap_dim(x, input.ndim) for x in dims) if shape and shape[d] == 1}
    return reshape(input, tuple(s for i, s in enumerate(shape) if i not in dims))


@op(spec=_view(arg(3, 4), ref=lambda x, dim: np.expand_dims(x, dim), params={"dim": -1}))
def unsqueeze(input: Tensor, dim: int) -> Tensor:
    n = input.ndim + 1
    if not -n <= dim < n:
        raise IndexError(
            f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})"
        )
    d = dim % n
    shape = input._data.shape
    return reshape(input, shape[:d] + (1,) + shape[d:])


@op(
    spec=_view(
        arg(2, 3, 4), 2, 0, 1, ref=lambda x, *dims: x.transpose(dims), torch="Tensor.permute"
    )
)
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


@op(spec=_view(arg(2, 3, 4), 0, 2, ref=np.swapaxes), names=("swapaxes", "swapdims"))
def transpose(input: Tensor, dim0: int, dim1: int) -> Tensor:
    n = input.ndim
    if n < 2 and dim0 in (0, -1) and dim1 in (0, -1):
        return input
    perm = list(range(n))
    a, b = _wrap_dim(dim0, n), _wrap_dim(dim1, n)
    perm[a], perm[b] = perm[b], perm[a]
    return permute(input, perm)


@op(spec=_view(arg(2, 3, 4), (0, 1), (2, 0), ref=np.moveaxis), names=("moveaxis",))
def movedim(input: Tensor, source, destination) -> Tensor:
    n = input.ndim
    src = (source,) if isinstance(source, int) else tuple(source)
    dst = (destination,) if isinstance(destination, int) else tuple(destination)
    if len(src) != len(dst):
        raise RuntimeError(
            f"movedim: Invalid source or destination dims: source ({list(src)} dims) should "
            f"contain the same number of dims as destination ({list(dst)} dims)"
        )
    src = tuple(_wrap_dim(s, n) for s in src)
    dst = tuple(_wrap_dim(d, n) for d in dst)
    for name, dims in (("source", src), ("destination", dst)):
        if len(set(dims)) != len(dims):
            raise RuntimeError(f"movedim: repeated dim in `{name}` ({list(dims)})")
    order = [-1] * n
    for s, d in zip(src, dst):
        order[d] = s
    rest = iter(i for i in range(n) if i not in src)
    order = [next(rest) if o == -1 else o for o in order]
    return permute(input, order)


@op(prim=P.copy_p)
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


@op(spec=_view(arg(5, 3), 0, 1, 3, ref=lambda x, dim, start, length: x[1:4]))
def narrow(input: Tensor, dim: int, start: int, length: int) -> Tensor:
    d = _wrap_dim(dim, input.ndim)
    shape = input._data.shape
    start = start % shape[d] if start < 0 else start
    starts = tuple(start if i == d else 0 for i in range(input.ndim))
    stops = tuple(start + length if i == d else s for i, s in enumerate(shape))
    return slice_(input, starts, stops, (1,) * input.ndim)


@op(
    spec=_view(
        arg(2, 3),
        arg(4, 3),
        ref=lambda a, b, dim: np.concatenate([a, b], dim),
        params={"dim": 0},
        d=(0, 1),
        call=_listed,
    ),
    names=("concat", "concatenate"),
    method=False,
)
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


@op(
    spec=_view(
        arg(2, 3),
        arg(2, 3),
        ref=lambda a, b, dim: np.stack([a, b], dim),
        params={"dim": 1},
        d=(0, 1),
        call=_listed,
    ),
    method=False,
)
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


@op(spec=_view(arg(5, 3), 2, ref=lambda x, size, dim: (x[:2], x[2:4], x[4:]), params={"dim": 0}))
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


@op(spec=_view(arg(3, 5), 2, ref=lambda x, n, dim: (x[:, :3], x[:, 3:]), params={"dim": 1}))
def chunk(input: Tensor, chunks: int, dim: int = 0) -> tuple:
    if chunks <= 0:
        raise RuntimeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    d = _wrap_dim(dim, input.ndim)
    n = input._data.shape[d]
    size = max(1, -(-n // chunks))
    return split(input, size, d)


@op(spec=_view(arg(3, 4), ref=lambda x, dim: tuple(x), params={"dim": 0}))
def unbind(input: Tensor, dim: int = 0) -> tuple:
    d = _wrap_dim(dim, input.ndim)
    return tuple(squeeze(t, d) for t in split(input, 1, d))


# Integer indexing, gather and __getitem__/__setitem__ live next door; re-exported here.
from .indexing import (  # noqa: E402,F401
    gather,
    getitem,
    index_select,
    scatter_add_axis,
    setitem,
    take,
    take_axis,
)
