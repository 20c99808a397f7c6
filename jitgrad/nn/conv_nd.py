"""conv1d, conv3d, the transposed convolutions, and fold/unfold, over ``conv2d``'s machinery.

- conv1d is conv2d on a unit height (so it is conv2d's fused primitive eagerly);
- conv3d sums, over the kernel's depth taps, one conv2d of every strided depth slice (the
  slices go to the batch), so the work is conv2d's and only the depth loop is Python;
- a transposed convolution is the gradient of a convolution with respect to its input: the input
  spread out by the stride (interior zero padding), padded by ``dilation * (k - 1) - padding``,
  and correlated with the flipped kernel, channels swapped per group;
- unfold is the window gather (im2col, ``take``); fold its transpose, a ``scatter_add``.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..ops import functions as _F
from ..ops import prims as _P
from ..ops.registry import op
from ..ops.spec import Spec, arg
from ..tensor import Tensor, apply
from . import layer_refs as R
from .conv import _conv2d, _type_name, _window_index

__all__ = [
    "conv1d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "unfold",
    "fold",
]

_F_NS = "nn.functional"


def _tuple(value, n: int, name: str, fn: str) -> tuple:
    items = [value] if isinstance(value, (int, np.integer)) else list(value)
    if len(items) == 1:
        items = items * n
    if len(items) != n or not all(isinstance(v, (int, np.integer)) for v in items):
        raise RuntimeError(
            f"expected {name} to be a single integer value or a list of {n} values to match the "
            f"convolution dimensions, but got {name}={items}"
        )
    return tuple(int(v) for v in items)


def _check(input, weight, bias, groups: int, nd: int, fn: str, transposed: bool = False):
    """PyTorch's checks of a convolution's arguments; returns (input batched, unbatched)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"{fn}(): argument 'input' must be Tensor, not {type(input).__name__}")
    if input.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(
            f"Expected {nd + 1}D (unbatched) or {nd + 2}D (batched) input to {fn}, but got "
            f"input of size: {list(input.shape)}"
        )
    if weight.ndim != nd + 2:
        raise RuntimeError(
            f"weight should have at least three dimensions: {fn} expects a {nd + 2}-D weight, "
            f"got weight of size {list(weight.shape)}"
        )
    if not isinstance(groups, int) or groups <= 0:
        raise RuntimeError("non-positive groups is not supported")
    x = input if input.ndim == nd + 2 else _F.unsqueeze(input, 0)
    c = x.shape[1]
    if transposed:
        if weight.shape[0] != c:
            raise RuntimeError(
                f"Given transposed=1, weight of size {list(weight.shape)}, expected input"
                f"{list(x.shape)} to have {weight.shape[0]} channels, but got {c} channels "
                "instead"
            )
        if c % groups:
            raise RuntimeError(
                f"Given groups={groups}, expected weight to be divisible by {groups} at "
                f"dimension 0, but got weight of size {list(weight.shape)} instead"
            )
        oc = weight.shape[1] * groups
    else:
        if weight.shape[1] * groups != c:
            raise RuntimeError(
                f"Given groups={groups}, weight of size {list(weight.shape)}, expected input"
                f"{list(x.shape)} to have {weight.shape[1] * groups} channels, but got {c} "
                "channels instead"
            )
        if weight.shape[0] % groups:
            raise RuntimeError(
                f"Given groups={groups}, expected weight to be divisible by {groups} at "
                f"dimension 0, but got weight of size {list(weight.shape)} instead"
            )
        oc = weight.shape[0]
    if bias is not None and (bias.ndim != 1 or bias.shape[0] != oc):
        raise RuntimeError(
            f"Given weight of size {list(weight.shape)}, expected bias to be 1-dimensional with "
            f"{oc} elements, but got bias of size {list(bias.shape)} instead"
        )
    if x.dtype is not weight.dtype:
        raise RuntimeError(
            f"Input type (torch.{_type_name(x)}Tensor) and weight type (torch."
            f"{_type_name(weight)}Tensor) should be the same or input should be a MKLDNN tensor "
            "and weight is a dense tensor"
        )
    if bias is not None and bias.dtype is not x.dtype:
        raise RuntimeError(
            f"Input type ({_type_name(x)}) and bias type ({_type_name(bias)}) should be the same"
        )
    if x.dtype is dtypes.bool_:
        raise RuntimeError(f"\"{fn}\" not implemented for 'Bool'")
    return x, input.ndim == nd + 1


def _same_pads(padding, kernel: tuple, stride: tuple, dilation: tuple, fn: str) -> list:
    """[(lo, hi)] per spatial dim from an int, a tuple, 'valid' or 'same'."""
    nd = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0)] * nd
        if padding == "same":
            if any(s != 1 for s in stride):
                raise RuntimeError("padding='same' is not supported for strided convolutions")
            totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
            return [(t // 2, t - t // 2) for t in totals]
        raise RuntimeError(f"Invalid padding string: '{padding}'")
    pads = _tuple(padding, nd, "padding", fn)
    if min(pads) < 0:
        raise RuntimeError("negative padding is not supported")
    return [(p, p) for p in pads]


def _zero_pad(x: Tensor, pads: list) -> Tensor:
    lead = x.ndim - len(pads)
    return _F.pad_interior(x, [(0, 0, 0)] * lead + [(lo, hi, 0) for lo, hi in pads])


def _check_stride_dilation(stride: tuple, dilation: tuple) -> None:
    if min(stride) <= 0:
        raise RuntimeError("non-positive stride is not supported")
    if min(dilation) <= 0:
        raise RuntimeError("dilation should be greater than zero")


def _conv_spec(shapes, ref, **params):
    return Spec([arg(*s) for s in shapes], ref, params=params, differentiable=(0, 1, 2))


# -- conv1d / conv3d ------------------------------------------------------------------------------
@op(
    namespace=_F_NS,
    spec=_conv_spec(
        [(2, 4, 7), (6, 2, 3), (6,)], R.conv_ref, stride=2, padding=1, dilation=1, groups=2
    ),
)
def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """1-D cross-correlation of (N, C, L) or (C, L) ``input`` with (OC, C/groups, K) weight."""
    x, unbatched = _check(input, weight, bias, groups, 1, "conv1d")
    stride = _tuple(stride, 1, "stride", "conv1d")
    dilation = _tuple(dilation, 1, "dilation", "conv1d")
    _check_stride_dilation(stride, dilation)
    ((lo, hi),) = _same_pads(padding, weight.shape[2:], stride, dilation, "conv1d")
    if lo != hi:
        x, lo = _zero_pad(x, [(lo, hi)]), 0
    out = _conv2d(
        _F.unsqueeze(x, 2), _F.unsqueeze(weight, 2), bias, (1, stride[0]), (0, lo),
        (1, dilation[0]), groups, "zeros",
    )  # fmt: skip
    out = _F.squeeze(out, 2)
    return _F.squeeze(out, 0) if unbatched else out


@op(
    namespace=_F_NS,
    spec=_conv_spec(
        [(2, 2, 4, 4, 3), (3, 2, 2, 3, 2), (3,)], R.conv_ref, stride=(1, 2, 1), padding=1
    ),
)
def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """3-D cross-correlation of (N, C, D, H, W) or (C, D, H, W) ``input``."""
    x, unbatched = _check(input, weight, bias, groups, 3, "conv3d")
    stride = _tuple(stride, 3, "stride", "conv3d")
    dilation = _tuple(dilation, 3, "dilation", "conv3d")
    _check_stride_dilation(stride, dilation)
    kd, kh, kw = weight.shape[2:]
    pads = _same_pads(padding, (kd, kh, kw), stride, dilation, "conv3d")
    sym = [lo if lo == hi else 0 for lo, hi in pads]
    grow = [(lo - s, hi - s) for (lo, hi), s in zip(pads, sym)]
    grow[0] = pads[0]  # the depth's padding is always applied here
    if any(g != (0, 0) for g in grow):
        x = _zero_pad(x, grow)
    n, c, d, h, w = x.shape
    sd, dd = stride[0], dilation[0]
    od = (d - dd * (kd - 1) - 1) // sd + 1
    if od < 1:
        raise RuntimeError(
            f"Calculated padded input size per channel: ({d} x {h + 2 * sym[1]} x "
            f"{w + 2 * sym[2]}). Kernel size: ({dd * (kd - 1) + 1} x {dilation[1] * (kh - 1) + 1}"
            f" x {dilation[2] * (kw - 1) + 1}). Kernel size can't be greater than actual input "
            "size"
        )
    oc = weight.shape[0]
    total = None
    for i in range(kd):
        start = i * dd
        part = _F.slice_(
            x, (0, 0, start, 0, 0), (n, c, start + (od - 1) * sd + 1, h, w), (1, 1, sd, 1, 1)
        )
        part = _F.reshape(_F.permute(part, (0, 2, 1, 3, 4)), (n * od, c, h, w))
        wi = _F.reshape(
            _F.slice_(weight, (0, 0, i, 0, 0), (oc, weight.shape[1], i + 1, kh, kw), (1,) * 5),
            (oc, weight.shape[1], kh, kw),
        )
        y = _conv2d(part, wi, None, stride[1:], tuple(sym[1:]), dilation[1:], groups, "zeros")
        total = y if total is None else _F.add(total, y)
    oh, ow = total.shape[2:]
    out = _F.permute(_F.reshape(total, (n, od, oc, oh, ow)), (0, 2, 1, 3, 4))
    if bias is not None:
        out = _F.add(out, _F.reshape(bias, (1, oc, 1, 1, 1)))
    out = _F.contiguous(out)
    return _F.squeeze(out, 0) if unbatched else out


_CONV_ND = {1: conv1d, 3: conv3d}


def _conv_nd(nd: int, x, weight, bias, stride, padding, dilation, groups):
    if nd == 2:
        return _conv2d(x, weight, bias, stride, padding, dilation, groups, "zeros")
    return _CONV_ND[nd](x, weight, bias, stride, padding, dilation, groups)


# -- transposed convolutions ----------------------------------------------------------------------
def _flip_spatial(w: Tensor) -> Tensor:
    for d in range(2, w.ndim):
        index = Tensor._wrap(np.arange(w.shape[d] - 1, -1, -1, dtype=np.int64))
        w = apply(_P.take_p, (w, index), {"axis": d})
    return w


def _conv_transpose(nd, fn, input, weight, bias, stride, padding, output_padding, groups,
                    dilation) -> Tensor:  # fmt: skip
    x, unbatched = _check(input, weight, bias, groups, nd, fn, transposed=True)
    stride = _tuple(stride, nd, "stride", fn)
    dilation = _tuple(dilation, nd, "dilation", fn)
    if isinstance(padding, str):
        raise RuntimeError(f"{fn}(): argument 'padding' must be tuple of ints, not str")
    padding = _tuple(padding, nd, "padding", fn)
    output_padding = _tuple(output_padding, nd, "output_padding", fn)
    _check_stride_dilation(stride, dilation)
    if min(padding) < 0:
        raise RuntimeError("negative padding is not supported")
    if min(output_padding) < 0:
        raise RuntimeError("negative output_padding is not supported")
    for op_, s, d in zip(output_padding, stride, dilation):
        if op_ >= s and op_ >= d:
            raise RuntimeError(
                "output padding must be smaller than either stride or dilation, but got "
                f"output_padding_height: {output_padding[0]} output_padding_width: "
                f"{output_padding[-1]} stride_height: {stride[0]} stride_width: {stride[-1]} "
                f"dilation_height: {dilation[0]} dilation_width: {dilation[-1]}"
            )
    kernel = weight.shape[2:]
    sizes = x.shape[2:]
    outs = [
        (n - 1) * s - 2 * p + d * (k - 1) + op_ + 1
        for n, s, p, d, k, op_ in zip(sizes, stride, padding, dilation, kernel, output_padding)
    ]
    if min(outs) <= 0:
        raise RuntimeError(
            f"Given input size per channel: ({' x '.join(map(str, sizes))}). Calculated output "
            f"size per channel: ({' x '.join(map(str, outs))}). Output size is too small"
        )
    # the input spread by the stride, padded (or cropped) to what the flipped kernel reads
    lo = [d * (k - 1) - p for d, k, p in zip(dilation, kernel, padding)]
    hi = [a + op_ for a, op_ in zip(lo, output_padding)]
    widths = [(0, 0, 0), (0, 0, 0)] + [
        (max(a, 0), max(b, 0), s - 1) for a, b, s in zip(lo, hi, stride)
    ]
    y = _F.pad_interior(x, widths) if any(w != (0, 0, 0) for w in widths) else x
    if min(lo + hi) < 0:
        starts = [0, 0] + [max(-a, 0) for a in lo]
        stops = list(y.shape[:2]) + [size - max(-b, 0) for size, b in zip(y.shape[2:], hi)]
        y = _F.slice_(y, starts, stops, (1,) * y.ndim)
    # (C, OC/g, *K) -> (OC, C/g, *K), flipped
    c, per_out = weight.shape[:2]
    w = _F.reshape(weight, (groups, c // groups, per_out, *kernel))
    w = _F.reshape(_F.transpose(w, 1, 2), (groups * per_out, c // groups, *kernel))
    w = _flip_spatial(w)
    out = _conv_nd(nd, y, w, bias, 1, 0, dilation, groups)
    return _F.squeeze(out, 0) if unbatched else out


_TSPEC = dict(stride=2, padding=1, output_padding=1, groups=1, dilation=1)


@op(
    namespace=_F_NS,
    spec=_conv_spec([(2, 4, 5), (4, 3, 3), (6,)], R.conv_transpose_ref, **{**_TSPEC, "groups": 2}),
)
def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1) -> Tensor:  # fmt: skip
    """The transpose of conv1d: (N, C, L) through a (C, OC/groups, K) weight."""
    args = (stride, padding, output_padding, groups, dilation)
    return _conv_transpose(1, "conv_transpose1d", input, weight, bias, *args)


@op(
    namespace=_F_NS,
    spec=_conv_spec([(2, 3, 3, 4), (3, 2, 3, 2), (2,)], R.conv_transpose_ref, **_TSPEC),
)
def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1) -> Tensor:  # fmt: skip
    """The transpose of conv2d: (N, C, H, W) through a (C, OC/groups, KH, KW) weight."""
    args = (stride, padding, output_padding, groups, dilation)
    return _conv_transpose(2, "conv_transpose2d", input, weight, bias, *args)


@op(
    namespace=_F_NS,
    spec=_conv_spec(
        [(1, 2, 2, 3, 2), (2, 2, 2, 2, 3), (2,)],
        R.conv_transpose_ref,
        **{**_TSPEC, "output_padding": 0, "dilation": (1, 2, 1)},
    ),
)
def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1) -> Tensor:  # fmt: skip
    """The transpose of conv3d: (N, C, D, H, W) through a (C, OC/groups, KD, KH, KW) weight."""
    args = (stride, padding, output_padding, groups, dilation)
    return _conv_transpose(3, "conv_transpose3d", input, weight, bias, *args)


# -- unfold / fold --------------------------------------------------------------------------------
def _pair(value, name: str, fn: str) -> tuple:
    items = [value] if isinstance(value, (int, np.integer)) else list(value)
    if len(items) == 1:
        items = items * 2
    if len(items) != 2:
        raise RuntimeError(f"{fn}(): argument '{name}' must be a tuple of two ints")
    return tuple(int(v) for v in items)


def _fold_geometry(fn, size, kernel_size, dilation, padding, stride) -> tuple:
    k = _pair(kernel_size, "kernel_size", fn)
    d = _pair(dilation, "dilation", fn)
    p = _pair(padding, "padding", fn)
    s = _pair(stride, "stride", fn)
    if min(k) <= 0:
        raise RuntimeError(
            f"kernel size should be greater than zero, but got kernel_height: {k[0]} "
            f"kernel_width: {k[1]}"
        )
    if min(s) <= 0:
        raise RuntimeError(
            f"stride should be greater than zero, but got stride_height: {s[0]} stride_width: "
            f"{s[1]}"
        )
    if min(d) <= 0:
        raise RuntimeError(
            f"dilation should be greater than zero, but got dilation_height: {d[0]} "
            f"dilation_width: {d[1]}"
        )
    if min(p) < 0:
        raise RuntimeError(
            f"padding should be non-negative, but got pad_height: {p[0]} pad_width: {p[1]}"
        )
    outs = tuple(
        (n + 2 * pp - dd * (kk - 1) - 1) // ss + 1 for n, pp, dd, kk, ss in zip(size, p, d, k, s)
    )
    return (k, s, d, outs, ((p[0], p[0]), (p[1], p[1])))


def _unfold_ref(x, kernel_size, dilation=1, padding=0, stride=1):
    k, d, p, s = (R._tup(v, 2) for v in (kernel_size, dilation, padding, stride))
    n, c, h, w = x.shape
    xp = np.pad(x, [(0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])])
    oh = (h + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    ow = (w + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    out = np.zeros((n, c, k[0], k[1], oh, ow))
    for i in range(k[0]):
        for j in range(k[1]):
            out[:, :, i, j] = xp[:, :, i * d[0] :: s[0], j * d[1] :: s[1]][:, :, :oh, :ow]
    return out.reshape(n, c * k[0] * k[1], oh * ow)


def _fold_ref(cols, output_size, kernel_size, dilation=1, padding=0, stride=1):
    k, d, p, s = (R._tup(v, 2) for v in (kernel_size, dilation, padding, stride))
    h, w = R._tup(output_size, 2)
    n = cols.shape[0]
    c = cols.shape[1] // (k[0] * k[1])
    oh = (h + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    ow = (w + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    blocks = cols.reshape(n, c, k[0], k[1], oh, ow)
    out = np.zeros((n, c, h + 2 * p[0], w + 2 * p[1]))
    for i in range(k[0]):
        for j in range(k[1]):
            for y in range(oh):
                for z in range(ow):
                    out[:, :, i * d[0] + y * s[0], j * d[1] + z * s[1]] += blocks[:, :, i, j, y, z]
    return out[:, :, p[0] : p[0] + h, p[1] : p[1] + w]


@op(
    namespace=_F_NS,
    spec=Spec(
        [arg(2, 2, 4, 5), (2, 3)],
        _unfold_ref,
        params={"dilation": 1, "padding": 1, "stride": (1, 2)},
        differentiable=(0,),
        linear=True,
    ),
)
def unfold(input, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """im2col: every sliding window of (N, C, H, W) or (C, H, W) ``input`` as a column,
    (N, C * KH * KW, L)."""
    if input.ndim not in (3, 4):
        raise RuntimeError(
            f"Input Error: Only 3D or 4D input Tensors are supported (got {input.ndim}D)"
        )
    x = input if input.ndim == 4 else _F.unsqueeze(input, 0)
    n, c, h, w = x.shape
    geometry = _fold_geometry("unfold", (h, w), kernel_size, dilation, padding, stride)
    (kh, kw), _, _, (oh, ow), pads = geometry
    if oh < 1 or ow < 1:
        raise RuntimeError(
            f"Given input with spatial size ({h}, {w}), kernel_size=({kh}, {kw}), "
            f"dilation={geometry[2]}, padding=({pads[0][0]}, {pads[1][0]}), calculated shape of "
            f"the array of sliding blocks as ({oh}, {ow}), but its components must be at least "
            "one."
        )
    flat = _F.reshape(x, (n, c, h * w))
    if pads != ((0, 0), (0, 0)):
        flat = _F.pad_interior(flat, ((0, 0, 0), (0, 0, 0), (0, 1, 0)))  # the zero padding reads
    index = Tensor._wrap(_window_index((h, w), geometry, "zeros"))  # (K, L)
    cols = apply(_P.take_p, (flat, index), {"axis": 2})  # (N, C, K, L)
    out = _F.reshape(cols, (n, c * kh * kw, oh * ow))
    return out if input.ndim == 4 else _F.squeeze(out, 0)


@op(
    namespace=_F_NS,
    spec=Spec(
        [arg(2, 12, 15), (4, 5), (2, 3)],
        _fold_ref,
        params={"dilation": 1, "padding": 1, "stride": (1, 2)},
        differentiable=(0,),
        linear=True,
    ),
)
def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """col2im, unfold's transpose: columns (N, C * KH * KW, L) summed into (N, C, H, W)."""
    if input.ndim not in (2, 3):
        raise RuntimeError(
            f"Input Error: Only unbatched (2D) or batched (3D) input Tensors are supported (got "
            f"{input.ndim}D)"
        )
    x = input if input.ndim == 3 else _F.unsqueeze(input, 0)
    h, w = _pair(output_size, "output_size", "fold")
    geometry = _fold_geometry("fold", (h, w), kernel_size, dilation, padding, stride)
    (kh, kw), _, _, (oh, ow), pads = geometry
    n, ck, length = x.shape
    if ck % (kh * kw):
        raise RuntimeError(
            "Expected size of input's dimension 1 to be divisible by the product of "
            f"kernel_size, but got input.size(1)={ck} and kernel_size=({kh}, {kw})"
        )
    if length != oh * ow:
        raise RuntimeError(
            f"Given output_size=({h}, {w}), kernel_size=({kh}, {kw}), dilation="
            f"{geometry[2]}, padding=({pads[0][0]}, {pads[1][0]}), stride={geometry[1]}, "
            f"expected size of input's dimension 2 to match the calculated number of sliding "
            f"blocks {oh} * {ow} = {oh * ow}, but got input.size(2)={length}."
        )
    c = ck // (kh * kw)
    index = Tensor._wrap(_window_index((h, w), geometry, "zeros").reshape(-1))  # (K*L,)
    sink = 1 if pads != ((0, 0), (0, 0)) else 0  # the padding's additions land at h*w
    zeros = Tensor._wrap(np.zeros((n, c, h * w + sink), x.dtype.np))
    src = _F.reshape(x, (n, c, kh * kw * length))
    plane = _F.scatter_add_axis(zeros, index, src, 2)
    if sink:
        plane = _F.slice_(plane, (0, 0, 0), (n, c, h * w), (1, 1, 1))
    out = _F.reshape(plane, (n, c, h, w))
    return out if input.ndim == 3 else _F.squeeze(out, 0)
