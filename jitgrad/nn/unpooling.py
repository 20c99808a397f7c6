"""Max unpooling (``max_unpool1d/2d/3d``): each input value added at its pooling index of the
output (``scatter_add_axis``), so the gradient is the matching ``take_axis``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .. import dtypes
from ..autograd.grad_mode import no_grad
from ..ops import functions as _F
from ..ops.registry import op
from ..ops.spec import Spec, arg
from ..tensor import Tensor
from . import layer_refs as R
from .pooling_nd import _NS, _batched, _ints, _unbatch

__all__ = ["max_unpool1d", "max_unpool2d", "max_unpool3d"]


def _max_unpool(nd, fn, input, indices, kernel_size, stride, padding, output_size) -> Tensor:
    x, unbatched = _batched(input, nd, fn)
    if indices.dtype is not dtypes.int64:
        raise RuntimeError(f"elements in indices should be type int64 but got: {indices.dtype}")
    if tuple(indices.shape) != tuple(input.shape):
        raise RuntimeError(
            f"Expected shape of indices to be same as that of the input tensor "
            f"({list(input.shape)}) but got indices tensor with shape: {list(indices.shape)}"
        )
    k = _ints(kernel_size, nd, "kernel_size", fn)
    s = k if stride is None else _ints(stride, nd, "stride", fn)
    p = _ints(padding, nd, "padding", fn)
    sizes = x.shape[2:]
    default = [(n - 1) * ss - 2 * pp + kk for n, ss, pp, kk in zip(sizes, s, p, k)]
    if output_size is None:
        outs = tuple(default)
    else:
        outs = tuple(int(v) for v in output_size)
        if len(outs) == nd + 2 or len(outs) == nd + 1:
            outs = outs[-nd:]
        if len(outs) != nd:
            raise ValueError(
                f"output_size should be a sequence containing {nd} or {nd + 2} elements, but it "
                f"has a length of '{len(output_size)}'"
            )
        for d, (o, dft, ss) in enumerate(zip(outs, default, s)):
            if not dft - ss <= o <= dft + ss:
                raise ValueError(
                    f'invalid output_size "{tuple(outs)}" (dim {d} must be between {dft - ss} '
                    f"and {dft + ss})"
                )
    n, c = x.shape[:2]
    total = math.prod(outs)
    idx = indices if not unbatched else _F.unsqueeze(indices, 0)
    values = idx._data
    if values.size and (values.min() < 0 or values.max() >= total):  # (the values at hand)
        bad = values[(values < 0) | (values >= total)].flat[0]
        raise RuntimeError(
            f"Found an invalid max index: {int(bad)} (output volumes are of size "
            f"{'x'.join(map(str, outs + (1,) * (nd == 1)))})"
        )
    planes = Tensor._wrap((np.arange(n * c, dtype=np.int64) * total).reshape((n, c) + (1,) * nd))
    flat = _F.reshape(_F.add(idx, planes), (-1,))
    zeros = Tensor._wrap(np.zeros(n * c * total, x.dtype.np))
    values = _F.reshape(x, (-1,))
    added = _F.scatter_add_axis(zeros, flat, values, 0)
    # PyTorch writes each value to its index (overlapping windows can name an index twice,
    # with the same value) and its gradient is a gather: the value of the writes (the sum over
    # an index divided by how often it is named), the gradient of the sum
    with no_grad():  # (no graph for the correction: nothing of it outlives the call)
        ones = Tensor._wrap(np.ones(values.shape[0], x.dtype.np))
        count = _F.take_axis(_F.scatter_add_axis(zeros, flat, ones, 0), flat, 0)
        written = _F.scatter_add_axis(zeros, flat, _F.div(values, count), 0)
        correction = _F.sub(written, added)
    out = _F.add(added, correction)
    return _unbatch(_F.reshape(out, (n, c, *outs)), unbatched)


def _unpool_ref(x, indices, kernel_size, stride=None, padding=0, output_size=None, nd=2):
    n, c = x.shape[:2]
    k = R._tup(kernel_size, nd)
    s = R._tup(stride if stride is not None else kernel_size, nd)
    p = R._tup(padding, nd)
    outs = [(L - 1) * ss - 2 * pp + kk for L, ss, pp, kk in zip(x.shape[2:], s, p, k)]
    out = np.zeros((n, c, math.prod(outs)))
    for i in range(n):
        for j in range(c):
            out[i, j, indices[i, j].reshape(-1)] = x[i, j].reshape(-1)
    return out.reshape(n, c, *outs)


def _unpool_spec(shape: tuple, nd: int) -> Spec:
    """The spec of max_unpool in ``nd`` dims: a kernel of 2, indices a 2-window pool picks."""
    return Spec(
        [arg(*shape), 2],
        lambda x, kernel_size: _unpool_ref(x, _spec_indices(x.shape, 2), 2, nd=nd),
        differentiable=(0,),
        linear=True,
        call=lambda fn, x, kernel_size: fn(x, _spec_index_tensor(x, kernel_size), kernel_size),
        torch=False,
    )


@op(namespace=_NS, spec=_unpool_spec((2, 3, 4), 1))
def max_unpool1d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """The inverse of max_pool1d: each value at its index, zeros elsewhere."""
    return _max_unpool(1, "max_unpool1d", input, indices, kernel_size, stride, padding,
                       output_size)  # fmt: skip


@op(namespace=_NS, spec=_unpool_spec((2, 2, 3, 2), 2))
def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """The inverse of max_pool2d: each value at its flat (h * W + w) index, zeros elsewhere."""
    return _max_unpool(2, "max_unpool2d", input, indices, kernel_size, stride, padding,
                       output_size)  # fmt: skip


@op(namespace=_NS, spec=_unpool_spec((1, 2, 2, 3, 2), 3))
def max_unpool3d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """The inverse of max_pool3d: each value at its flat index in the (D, H, W) volume."""
    return _max_unpool(3, "max_unpool3d", input, indices, kernel_size, stride, padding,
                       output_size)  # fmt: skip


@lru_cache(maxsize=16)
def _spec_indices(shape: tuple, k: int) -> np.ndarray:
    """Fixed indices for the specs: in each k-window of the output, one position."""
    sizes = shape[2:]
    outs = [L * k for L in sizes]
    rng = np.random.default_rng(0)
    idx = np.zeros(shape, np.int64)
    for pos in np.ndindex(*sizes):
        at = [q * k + int(rng.integers(0, k)) for q in pos]
        idx[(Ellipsis, *pos)] = np.ravel_multi_index(at, outs)
    return idx


def _spec_index_tensor(x: Tensor, k: int) -> Tensor:
    return Tensor._wrap(_spec_indices(tuple(x.shape), k))
