"""2-D max and average pooling as composites of existing primitives.

Max pooling finds each window's first maximum (``argmax`` over the windows, gathered like the
convolution's: ``take``, see ``conv.py``) and gathers those elements, so its gradient is one
scatter per window. Average pooling sums up to 4 taps (2x2 windows) as strided ``slice``s of
the input and gathers larger windows; see ``_by_slices``.
"""

from __future__ import annotations

import functools
import math
from functools import lru_cache

import numpy as np

from .. import dtypes
from ..autograd.grad_mode import no_grad
from ..factories import zeros as _zeros
from ..ops import functions as _F
from ..ops import prims as _P
from ..ops.loops import ready, window_first_max, windows_first_max
from ..ops.registry import op, register
from ..ops.spec import Spec, arg
from ..tensor import Tensor, apply
from . import conv_specs
from . import layer_refs as _R
from .conv import _batched, _pair, _plane, _take, _window_index
from .module import Module

__all__ = ["max_pool2d", "avg_pool2d", "MaxPool2d", "AvgPool2d"]


def _pool_pair(value, name: str, fn: str, omitted: bool = False) -> tuple:
    what = "omitted, a single int" if omitted else "a single int"
    return _pair(value, f"{fn}: {name} must either be {what}, or a tuple of two ints")


# -- pooling --------------------------------------------------------------------------------------
def _pool_geometry(x: Tensor, fn: str, kernel_size, stride, padding, dilation, ceil_mode):
    """Kernel, stride, padding, dilation, output size and the padded plane of a pooling."""
    kernel = _pool_pair(kernel_size, "kernel_size", fn)
    if stride is None or (not isinstance(stride, int) and len(stride) == 0):
        stride = kernel
    stride = _pool_pair(stride, "stride", fn, omitted=True)
    pad = _pool_pair(padding, "padding", fn)
    dil = _pool_pair(dilation, "dilation", fn)
    if min(kernel) <= 0:
        raise RuntimeError(
            f"{fn}: kernel size should be greater than zero, but got kH: {kernel[0]} kW: "
            f"{kernel[1]}"
        )
    if min(stride) <= 0:
        raise RuntimeError(f"stride should not be zero; {fn} needs stride >= 1.")
    if min(dil) <= 0:
        raise RuntimeError(
            f"dilation should be greater than zero, but got dilationH: {dil[0]} dilationW: {dil[1]}"
        )
    if min(pad) < 0:
        raise RuntimeError(f"pad must be non-negative, but got pad: {min(pad)}")
    eff = tuple(d * (k - 1) + 1 for d, k in zip(dil, kernel))
    for p, k, d, e in zip(pad, kernel, dil, eff):
        if p > e // 2:
            raise RuntimeError(
                f"pad should be at most half of effective kernel size, but got pad={p}, "
                f"kernel_size={k} and dilation={d}; use padding <= {e // 2} or a larger kernel."
            )
    if pad[0] > kernel[0] // 2 or pad[1] > kernel[1] // 2:  # also with dilation, as PyTorch
        raise RuntimeError(
            f"pad should be smaller than or equal to half of kernel size, but got padW = "
            f"{pad[1]}, padH = {pad[0]}, kW = {kernel[1]}, kH = {kernel[0]}; use padding <= "
            "kernel_size // 2."
        )
    n, c, h, w = x.shape
    out = []
    for size, p, e, s in zip((h, w), pad, eff, stride):
        o = (size + 2 * p - e + ((s - 1) if ceil_mode else 0)) // s + 1
        if ceil_mode and (o - 1) * s >= size + p:  # the last window must start inside
            o -= 1
        out.append(o)
    if min(out) < 1 or min(h, w) == 0:
        raise RuntimeError(
            f"Given input size: ({c}x{h}x{w}). Calculated output size: ({c}x{out[0]}x{out[1]}). "
            "Output size is too small; use a smaller kernel or stride, or a larger input."
        )
    # windows of ceil mode may run past the padded input: pad (and mask) that far
    pads = tuple(
        (p, max(p, (o - 1) * s + e - size - p))
        for size, p, e, s, o in zip((h, w), pad, eff, stride, out)
    )
    return kernel, stride, dil, tuple(out), pads


def _by_slices(geometry: tuple) -> bool:
    # Average pooling over up to 4 taps (2x2 windows, the common case): one strided slice per
    # tap, summed. Eagerly that beat summing gathered windows (NumPy's reductions over tiny
    # axes are slow); each slice's gradient is a strided pad. Larger windows are gathered.
    return geometry[0][0] * geometry[0][1] <= 4


def _pool_windows(x: Tensor, geometry: tuple, fill=0) -> Tensor:
    """(N, C, OH*OW, KH*KW): every window element, gathered; padding reads ``fill``."""
    index = _window_index(tuple(x.shape[2:]), geometry, "zeros", True)
    return _take(_plane(x, geometry, "zeros", fill), index, 2)


def _taps(x: Tensor, geometry: tuple) -> list:
    """One strided slice of the zero-padded input per kernel tap, each (N, C, OH, OW): pooling
    is then elementwise across them, and each slice's gradient a (strided) pad, with no gather
    or scatter."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow), pads = geometry
    n, c, h, w = x.shape
    y = x
    if pads != ((0, 0), (0, 0)):
        (t, b), (l, r) = pads
        y = _F.pad_interior(x, ((0, 0, 0), (0, 0, 0), (t, b, 0), (l, r, 0)))
    out = []
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dh, j * dw
            stop = (n, c, r0 + (oh - 1) * sh + 1, c0 + (ow - 1) * sw + 1)
            out.append(_F.slice_(y, (0, 0, r0, c0), stop, (1, 1, sh, sw)))
    return out


@op(
    namespace="nn.functional",
    spec=Spec(
        [arg(2, 3, 7, 6), (3, 2)],
        lambda x, kernel_size, **kw: _R.max_pool_ref(x, kernel_size, **kw, nd=2),
        params={"stride": (2, 1), "padding": (1, 0), "dilation": (1, 2), "ceil_mode": True},
        differentiable=(0,),
        smooth=False,
    ),
)
def max_pool2d(
    input: Tensor,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode: bool = False,
    return_indices: bool = False,
):
    """Max over each window of (N, C, H, W) or (C, H, W) ``input``, as PyTorch's; padding
    never wins. With ``return_indices`` also the flat (h * W + w) position of each maximum (the
    first one on ties, like PyTorch, which is also the element that gets the gradient)."""
    x, unbatched = _batched(input, "max_pool2d", conv=False)
    if x.dtype is dtypes.bool_:
        raise RuntimeError("\"max_pool2d\" not implemented for 'Bool'; convert the input first.")
    geometry = _pool_geometry(x, "max_pool2d", kernel_size, stride, padding, dilation, ceil_mode)
    if not return_indices:  # one fused step eagerly (max_pool2d_p), the composite when traced
        out = apply(max_pool2d_p, (x,), {"geometry": geometry})
        return _F.squeeze(out, 0) if unbatched else out
    out, position = _max_pool(x, geometry)
    oh, ow = geometry[3]
    indices = _F.reshape(position, (x.shape[0], x.shape[1], oh, ow))
    if unbatched:
        return _F.squeeze(out, 0), _F.squeeze(indices, 0)
    return out, indices


def _max_pool(x: Tensor, geometry: tuple) -> tuple:
    """Max pooling over core primitives: (the pooled values, each one's position within its
    plane, (N, C, OH*OW))."""
    n, c, h, w = x.shape
    oh, ow = geometry[3]
    lowest = -math.inf if x.dtype.is_floating_point else int(np.iinfo(x.dtype.np).min)
    # The first maximum of each window (as PyTorch picks it), then one gather of those elements:
    # the gradient goes to that element alone, as PyTorch's does, and is a scatter of one value
    # per window rather than a comparison per window element.
    length, taps = oh * ow, geometry[0][0] * geometry[0][1]
    k = _F.argmax(_pool_windows(x, geometry, lowest), 3)
    at = _F.add(k, Tensor._wrap(np.arange(length, dtype=np.int64) * taps))
    table = Tensor._wrap(_argmax_table((h, w), geometry))
    position = apply(_P.take_p, (table, at), {"axis": 0})  # (N, C, OH*OW), within the plane
    planes = Tensor._wrap(_plane_starts(n * c, h * w).reshape(n, c, 1))
    flat = _F.reshape(_F.add(position, planes), (n * c * length,))
    out = apply(_P.take_p, (_F.reshape(x, (n * c * h * w,)), flat), {"axis": 0})
    return _F.reshape(out, (n, c, oh, ow)), position


# -- max_pool2d as one fused primitive ------------------------------------------------------------
# Eagerly, the composite is a dozen primitives around a gather of every window (262 us of the
# demo CNN's first pooling, against PyTorch's 73). The fused primitive scans the windows in a
# compiled loop (ops.loops.window_first_max), picking the element the composite's argmax picks
# (an exact selection), and its gradient is the composite's: one scatter-add of the upstream
# gradient onto those elements' flat positions, into zeros.


def _first_max(x: np.ndarray, geometry: tuple) -> tuple:
    """(the pooled values (N, C, OH, OW), their flat positions in x)."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow), pads = geometry
    n, c, h, w = x.shape
    out = np.empty((n, c, oh, ow), x.dtype)
    at = np.empty(n * c * oh * ow, np.int64)
    flat = np.ascontiguousarray(x).reshape(-1)
    loop = windows_first_max if pads == ((0, 0), (0, 0)) else window_first_max
    if not ready(loop, x.dtype):  # (the composite's: the same picks)
        with no_grad():
            pooled, position = _max_pool(Tensor._wrap(x), geometry)
        planes = _plane_starts(n * c, h * w).reshape(n, c, 1)
        return pooled._data, (position._data + planes).reshape(-1)
    if loop is windows_first_max:
        starts, offsets = _window_starts((h, w), geometry)
        windows_first_max(flat, n * c, h * w, starts, offsets, out.reshape(-1), at)
        return out, at
    lowest = x.dtype.type(-np.inf) if dtypes.is_float_np(x.dtype) else np.iinfo(x.dtype).min
    args = (n * c, h, w, kh, kw, sh, sw, dh, dw, oh, ow, pads[0][0], pads[1][0])
    window_first_max(flat, *args, x.dtype.type(lowest), out.reshape(-1), at)
    return out, at


@lru_cache(maxsize=128)
def _window_starts(size: tuple, geometry: tuple) -> tuple:
    """(each window's first position in its (H, W) plane, each tap's offset from it), for
    windows inside the plane."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow), _ = geometry
    w = size[1]
    starts = (np.arange(oh)[:, None] * sh * w + np.arange(ow)[None, :] * sw).reshape(-1)
    offsets = (np.arange(kh)[:, None] * dh * w + np.arange(kw)[None, :] * dw).reshape(-1)
    return starts.astype(np.int64), offsets.astype(np.int64)


def _max_pool_vjp(n, g):
    # the composite's: take's transpose (scatter_add into zeros) through its reshapes, at the
    # positions the forward picked (the node's residual)
    x = n.inputs[0]
    at = Tensor._wrap(n.residual)
    zeros = _zeros((math.prod(x.shape),), dtype=x.dtype)
    gx = _F.scatter_add_axis(zeros, at, _F.reshape(g, (at._data.size,)), 0)
    return (_F.reshape(gx, tuple(x.shape)),)


def _max_pool_shape(avals, geometry):
    x = avals[0]
    return (x.shape[0], x.shape[1], *geometry[3]), x.dtype


max_pool2d_p = register(
    "max_pool2d",
    impl=_first_max,
    vjp=_max_pool_vjp,
    residual=True,
    saves=False,  # (only the positions; the input's shape and dtype)
    shape=_max_pool_shape,
    kind="fused",
    decompose=lambda x, geometry: _max_pool(x, geometry)[0],
    node_name="MaxPool2DWithIndicesBackward0",
    spec=conv_specs.MAX_POOL2D,
)


@lru_cache(maxsize=128)
def _plane_starts(planes: int, size: int) -> np.ndarray:
    starts = np.arange(planes, dtype=np.int64) * size
    starts.flags.writeable = False
    return starts


@lru_cache(maxsize=128)
def _argmax_table(size: tuple, geometry: tuple) -> np.ndarray:
    """For output position l and window tap k (flattened as l * K + k): the flat position in
    the (H, W) input it reads; on padding, the window's first input position (what PyTorch
    reports when nothing beats -inf)."""
    index = _window_index(size, geometry, "zeros", True)
    inside = index < size[0] * size[1]
    first = np.argmax(inside, axis=1)  # the first tap inside, per window
    table = np.where(inside, index, index[np.arange(index.shape[0]), first][:, None])
    table = table.reshape(-1)
    table.flags.writeable = False
    return table


@lru_cache(maxsize=128)
def _avg_divisor(size: tuple, geometry: tuple, padding: tuple, count_include_pad: bool):
    """The divisor of every output position (PyTorch's rule: windows are clipped to the padded
    input, then, without count_include_pad, to the input): a float, or an (OH, OW) array."""
    kernel, stride, _, out, _ = geometry
    per_dim = []
    for n, k, s, p, o in zip(size, kernel, stride, padding, out):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, n + p)
        if not count_include_pad:
            start, end = np.maximum(start, 0), np.minimum(end, n)
        per_dim.append(end - start)
    divisor = np.outer(per_dim[0], per_dim[1]).astype(np.float64)
    if (divisor == divisor.flat[0]).all():
        return float(divisor.flat[0])
    divisor.flags.writeable = False
    return divisor


@op(
    namespace="nn.functional",
    spec=Spec(
        [arg(2, 3, 7, 6), (3, 2)],
        lambda x, kernel_size, **kw: _R.avg_pool_ref(x, kernel_size, **kw, nd=2),
        params={"stride": (2, 1), "padding": (1, 1), "ceil_mode": True, "count_include_pad": False},
        differentiable=(0,),
        linear=True,
    ),
)
def avg_pool2d(
    input: Tensor,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """Mean over each window of (N, C, H, W) or (C, H, W) ``input``, as PyTorch's."""
    x, unbatched = _batched(input, "avg_pool2d", conv=False)
    if not x.dtype.is_floating_point:
        raise RuntimeError(
            f"avg_pool2d of {x.dtype} input is not supported; convert the input to a floating "
            "point dtype first (e.g. input.float())."
        )
    if divisor_override is not None and divisor_override == 0:
        raise RuntimeError("divisor must be not zero; pass divisor_override=None or a nonzero int.")
    geometry = _pool_geometry(x, "avg_pool2d", kernel_size, stride, padding, 1, ceil_mode)
    n, c = x.shape[:2]
    oh, ow = geometry[3]
    if _by_slices(geometry):
        total = functools.reduce(_F.add, _taps(x, geometry))
    else:
        total = _F.reshape(_F.sum(_pool_windows(x, geometry), 3), (n, c, oh, ow))
    if divisor_override is not None:
        divisor = float(divisor_override)
    else:
        pad = _pool_pair(padding, "padding", "avg_pool2d")
        divisor = _avg_divisor(tuple(x.shape[2:]), geometry, pad, bool(count_include_pad))
        if isinstance(divisor, np.ndarray):
            divisor = Tensor._wrap(divisor.astype(x.dtype.np))
    out = _F.div(total, divisor)
    return _F.squeeze(out, 0) if unbatched else out


# -- modules --------------------------------------------------------------------------------------
class MaxPool2d(Module):
    def __init__(
        self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:  # fmt: skip
        super().__init__()
        self.kernel_size, self.padding, self.dilation = kernel_size, padding, dilation
        self.stride = stride if stride is not None else kernel_size
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, input: Tensor):
        args = (self.stride, self.padding, self.dilation, self.ceil_mode, self.return_indices)
        return max_pool2d(input, self.kernel_size, *args)

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class AvgPool2d(Module):
    def __init__(
        self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
        count_include_pad: bool = True, divisor_override: int | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.kernel_size, self.padding, self.ceil_mode = kernel_size, padding, ceil_mode
        self.stride = stride if stride is not None else kernel_size
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, input: Tensor) -> Tensor:
        args = (self.padding, self.ceil_mode, self.count_include_pad, self.divisor_override)
        return avg_pool2d(input, self.kernel_size, self.stride, *args)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
