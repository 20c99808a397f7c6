"""In-place updates through views of tensors that take part in autograd.

``y[0] += 1`` or ``y[:, 1].mul_(2)`` on a non-leaf ``y`` must change ``y``'s history too, as
PyTorch's CopySlices does: the update is expressed on the base tensor (read the view's elements,
update them, scatter them back) and the view then reads its new history from the base.
"""

from __future__ import annotations

import numpy as np

from ..autograd.grad_mode import STATE
from ..tensor import Tensor, check_write, inplace
from .functions import cast, reshape, scatter_add_axis, take_axis, where


def view_positions(base: np.ndarray, view: np.ndarray) -> np.ndarray:
    """Flat (C-order) index into ``base`` of every element of ``view``, found from the two
    arrays' memory layouts, so any chain of slices, reshapes and permutes maps back."""

    def byte_offsets(a: np.ndarray) -> np.ndarray:
        off = np.zeros(a.shape, dtype=np.int64)
        for k, (n, stride) in enumerate(zip(a.shape, a.strides)):
            shape = [1] * a.ndim
            shape[k] = n
            off = off + (np.arange(n, dtype=np.int64) * stride).reshape(shape)
        return off

    if view.size == 0:
        return np.zeros(view.shape, dtype=np.int64)
    start = view.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    base_off = byte_offsets(base).reshape(-1)
    order = np.argsort(base_off, kind="stable")
    want = byte_offsets(view) + start
    found = np.searchsorted(base_off, want, sorter=order)
    pos = order[np.clip(found, 0, base_off.size - 1)]
    if not np.array_equal(base_off[pos], want):
        raise RuntimeError("in-place update of a view whose elements are not all in its base")
    return pos


def inplace_view(x: Tensor, base: Tensor, compute) -> Tensor:
    """In-place update of a view of a tensor in the graph: the update is expressed on the base
    (as PyTorch's CopySlices does), and the view's history is then read back from the base."""
    pos = view_positions(base._data, x._data).reshape(-1)
    flat_pos = Tensor._wrap(pos)
    mask = np.zeros(base._data.size, dtype=bool)
    mask[pos] = True
    zeros = Tensor._wrap(np.zeros(base._data.size, dtype=base._data.dtype))

    def compute_base(base_src: Tensor) -> Tensor:
        flat = reshape(base_src, (-1,))
        new = compute(reshape(take_axis(flat, flat_pos, 0), x._data.shape))
        check_write(x, new)
        placed = scatter_add_axis(zeros, flat_pos, reshape(cast(new, base.dtype), (-1,)), 0)
        return reshape(where(Tensor._wrap(mask), placed, flat), base._data.shape)

    inplace(base, compute_base)
    # read through an alias with its own version counter: take only needs the base's shape in
    # backward, so later in-place updates of the base must not invalidate the view's history
    after = Tensor._wrap(base._data, grad_fn=base._grad_fn)
    after._output_nr = base._output_nr
    if STATE.tracer is not None:
        STATE.tracer.snapshot(base, after)
    view_new = reshape(take_axis(reshape(after, (-1,)), flat_pos, 0), x._data.shape)
    x._grad_fn, x._output_nr = view_new._grad_fn, view_new._output_nr
    x._requires_grad = view_new._requires_grad
    if STATE.tracer is not None:
        STATE.tracer.snapshot(view_new, x)
    return x
