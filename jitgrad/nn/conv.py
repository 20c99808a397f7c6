"""2-D convolution as a composite of existing primitives (pooling: ``pooling.py``).

No primitive of its own, so eager execution, autograd, tracing and the compiled backends need
nothing extra: every window element is gathered with one ``take`` along the flattened spatial
axis (im2col; the int64 index depends only on the shapes and is built once per configuration
with NumPy), then one matmul with the reshaped weight does the rest. take's VJP, scatter_add, is
col2im.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .. import dtypes
from ..autograd.engine import grad as autograd_grad
from ..autograd.grad_mode import STATE, enable_grad
from ..factories import empty
from ..ops import functions as _F
from ..ops import prims as _P
from ..ops.loops import ready, scatter_add_skipping
from ..ops.registry import op, register
from ..ops.spec import Spec, arg
from ..tensor import Tensor, apply
from . import conv_specs, init
from . import layer_refs as _R
from .module import Module, Parameter

__all__ = ["conv2d", "max_pool2d", "avg_pool2d", "Conv2d", "MaxPool2d", "AvgPool2d"]

# (16-bit floats multiply and sum in float32, rounded once, as PyTorch's)
_matmul = dtypes.via_float32(np.matmul)
_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
_NP_PAD_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


# -- argument parsing -----------------------------------------------------------------------------
def _pair(value, error: str) -> tuple:
    """An int or a sequence of 1 or 2 ints, as PyTorch accepts; ``error`` formats the value."""
    items = [value] if isinstance(value, (int, np.integer)) else list(value)
    if len(items) not in (1, 2) or not all(isinstance(v, (int, np.integer)) for v in items):
        raise RuntimeError(error.format(items))
    return (int(items[0]), int(items[-1]))


def _conv_pair(value, name: str) -> tuple:
    return _pair(
        value,
        f"expected {name} to be a single integer value or a list of 2 values to match the "
        f"convolution dimensions, but got {name}={{}}",
    )


def _conv_padding(padding, kernel: tuple, stride: tuple, dilation: tuple) -> tuple:
    """``((top, bottom), (left, right))`` for an int, a pair, ``"valid"`` or ``"same"``."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0), (0, 0))
        if padding == "same":
            if stride != (1, 1):
                raise RuntimeError(
                    "padding='same' is not supported for strided convolutions; use stride=1, or "
                    "pass the padding as numbers."
                )
            # like PyTorch: an odd total puts the extra row/column at the bottom/right
            total = [d * (k - 1) for d, k in zip(dilation, kernel)]
            return tuple((t // 2, t - t // 2) for t in total)
        raise RuntimeError(
            f"Invalid padding string: {padding!r}; use 'valid', 'same', an int or a pair of ints."
        )
    ph, pw = _conv_pair(padding, "padding")
    if ph < 0 or pw < 0:
        raise RuntimeError("negative padding is not supported; pass padding >= 0.")
    return ((ph, ph), (pw, pw))


def _batched(input: Tensor, fn: str, conv: bool) -> tuple:
    """A 4-D view of ``input``: unbatched (C, H, W) input gets a batch dim of 1."""
    if not isinstance(input, Tensor):
        raise TypeError(f"{fn}(): argument 'input' must be Tensor, not {type(input).__name__}")
    if input.ndim == 4:
        return input, False
    if input.ndim == 3:
        return _F.unsqueeze(input, 0), True
    if conv:
        raise RuntimeError(
            f"Expected 3D (unbatched) or 4D (batched) input to {fn}, but got input of size: "
            f"{list(input.shape)}; pass (N, C, H, W) or (C, H, W)."
        )
    raise RuntimeError(
        "non-empty 3D or 4D (batch mode) tensor expected for input; pass (N, C, H, W) or "
        f"(C, H, W), got input of size {list(input.shape)}."
    )


# -- the window gather ----------------------------------------------------------------------------
# Windows are read from the flattened (H*W) plane with one take. Zero padding is not
# materialized: a window element on the padding reads position H*W, one zero appended to the
# plane. Compiled code then needs no bounds tests and, above all, no division by runtime sizes
# to turn a flat position back into (row, column).


@lru_cache(maxsize=512)
def _window_index(size: tuple, geometry: tuple, mode: str = "zeros", taps_last: bool = False):
    """For every window element, its position in the flattened (H, W) input plane (H*W on
    zero padding): int64 of shape (KH*KW, OH*OW), or (OH*OW, KH*KW) with ``taps_last``.
    Read-only, as it is shared by every call with this configuration."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow), pads = geometry
    h, w = size
    grid = np.arange(h * w, dtype=np.int64).reshape(h, w)
    if mode == "zeros":
        grid = np.pad(grid, pads, constant_values=h * w)
    else:  # reflect / replicate / circular: every padded position reads some input position
        grid = np.pad(grid, pads, _NP_PAD_MODE[mode])
    i = np.arange(kh).reshape(kh, 1, 1, 1) * dh
    j = np.arange(kw).reshape(1, kw, 1, 1) * dw
    y = np.arange(oh).reshape(1, 1, oh, 1) * sh
    x = np.arange(ow).reshape(1, 1, 1, ow) * sw
    index = grid[y + i, x + j].reshape(kh * kw, oh * ow)
    index = np.ascontiguousarray(index.T) if taps_last else index
    index.flags.writeable = False
    return index


@lru_cache(maxsize=512)
def _batch_window_index(size: tuple, geometry: tuple, mode: str, n: int):
    """``_window_index`` for ``n`` images laid end to end, (KH*KW, N*OH*OW): image ``b``'s
    windows read positions ``b*H*W + p``; zero padding reads position N*H*W."""
    hw = size[0] * size[1]
    win = _window_index(size, geometry, mode)
    index = win[:, None, :] + (np.arange(n, dtype=np.int64) * hw)[None, :, None]
    index = np.where(win[:, None, :] == hw, n * hw, index).reshape(win.shape[0], -1)
    index.flags.writeable = False
    return index


def _take(x: Tensor, index: np.ndarray, axis: int) -> Tensor:
    # the index is in range by construction: skip the front end's bounds check on every call
    return apply(_P.take_p, (x, Tensor._wrap(index)), {"axis": axis})


def _plane(x: Tensor, geometry: tuple, mode: str, fill=0) -> Tensor:
    """(N, C, H*W), plus one element holding ``fill`` when windows reach zero padding."""
    n, c, h, w = x.shape
    flat = _F.reshape(x, (n, c, h * w))
    if mode != "zeros" or geometry[4] == ((0, 0), (0, 0)):
        return flat
    if fill == 0:
        return _F.pad_interior(flat, ((0, 0, 0), (0, 0, 0), (0, 1, 0)))
    return _F.cat([flat, _F.expand(_F.const(fill, x.dtype), (n, c, 1))], 2)


def _out_size(size: int, lo: int, hi: int, eff_kernel: int, stride: int) -> int:
    return (size + lo + hi - eff_kernel) // stride + 1


# -- convolution ----------------------------------------------------------------------------------
@op(
    namespace="nn.functional",
    spec=Spec(
        [arg(2, 4, 5, 6), arg(6, 2, 3, 2), arg(6)],
        _R.conv_ref,
        params={"stride": (2, 1), "padding": 1, "dilation": (1, 2), "groups": 2},
        differentiable=(0, 1, 2),
    ),
)
def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
) -> Tensor:
    """2-D cross-correlation of (N, C, H, W) or (C, H, W) ``input`` with (OC, C/groups, KH, KW)
    ``weight``, as ``torch.nn.functional.conv2d``. ``padding`` is an int, a pair, ``"valid"``
    or ``"same"``; padding is with zeros."""
    return _conv2d(input, weight, bias, stride, padding, dilation, groups, "zeros")


def _conv2d(input, weight, bias, stride, padding, dilation, groups, mode) -> Tensor:
    x, unbatched = _batched(input, "conv2d", conv=True)
    if weight.ndim != 4:
        raise RuntimeError(
            "conv2d: expected a 4-D weight of shape (out_channels, in_channels/groups, kH, kW), "
            f"but got weight of size {list(weight.shape)}"
        )
    stride = _conv_pair(stride, "stride")
    dilation = _conv_pair(dilation, "dilation")
    if min(stride) <= 0:
        raise RuntimeError("non-positive stride is not supported; pass stride >= 1.")
    if min(dilation) <= 0:
        raise RuntimeError("non-positive dilation is not supported; pass dilation >= 1.")
    if not isinstance(groups, int) or groups <= 0:
        raise RuntimeError(f"non-positive groups is not supported; got groups={groups}.")
    n, c, h, w = x.shape
    oc, cg, kh, kw = weight.shape
    if cg * groups != c:
        raise RuntimeError(
            f"Given groups={groups}, weight of size {list(weight.shape)}, expected "
            f"input{list(x.shape)} to have {cg * groups} channels, but got {c} channels "
            "instead; the input's channel dimension (dim 1 of NCHW, dim 0 of CHW) must equal "
            "the layer's in_channels."
        )
    if oc % groups:
        raise RuntimeError(
            f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, "
            f"but got weight of size {list(weight.shape)} instead"
        )
    if bias is not None and (bias.ndim != 1 or bias.shape[0] != oc):
        raise RuntimeError(
            f"Given weight of size {list(weight.shape)}, expected bias to be 1-dimensional with "
            f"{oc} elements, but got bias of size {list(bias.shape)} instead"
        )
    if x.dtype is not weight.dtype:
        raise RuntimeError(
            f"expected scalar type {_type_name(x)} but found {_type_name(weight)}: conv2d needs "
            "input and weight of one dtype; convert one (e.g. input.to(weight.dtype))."
        )
    if bias is not None and bias.dtype is not x.dtype:
        raise RuntimeError(
            f"Input type ({x.dtype.np.name.replace('float32', 'float')}) and bias type "
            f"({bias.dtype.np.name.replace('float32', 'float')}) should be the same; convert one."
        )
    if x.dtype is dtypes.bool_:
        raise RuntimeError("\"conv2d\" not implemented for 'Bool'; convert the input first.")
    pads = _conv_padding(padding, (kh, kw), stride, dilation)
    (t, b), (l, r) = pads
    ekh, ekw = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    hp, wp = h + t + b, w + l + r
    if hp < ekh or wp < ekw:
        raise RuntimeError(
            f"Calculated padded input size per channel: ({hp} x {wp}). Kernel size: ({ekh} x "
            f"{ekw}). Kernel size can't be greater than actual input size; use a larger input, "
            "more padding or a smaller kernel/dilation."
        )
    oh, ow = _out_size(h, t, b, ekh, stride[0]), _out_size(w, l, r, ekw, stride[1])
    if mode != "zeros":
        _check_mode_padding(x, pads, mode)
    geometry = ((kh, kw), stride, dilation, (oh, ow), pads)
    if mode == "zeros":  # one fused step eagerly (conv2d_p), the composite when traced
        inputs = (x, weight) if bias is None else (x, weight, bias)
        out = apply(conv2d_p, inputs, {"geometry": geometry, "groups": groups})
    else:
        out = _conv_composite(x, weight, bias, geometry, groups, mode)
    return _F.squeeze(out, 0) if unbatched else out


def _conv_composite(x, weight, bias, geometry, groups, mode) -> Tensor:
    """The batched convolution over core primitives."""
    n, c, h, w = x.shape
    oc, cg, kh, kw = weight.shape
    k, (oh, ow), pads = kh * kw, geometry[3], geometry[4]
    length = oh * ow
    # The plane goes channels-first, (C, N*H*W): the gather along it gives the columns as
    # (C, K, N*L), already the (C*K, N*L) matrix of one large matmul (which beats N small
    # ones). Batch stays outside each image's H*W, so the transposes to and from NCHW move
    # whole rows of H*W elements, and everything downstream reads NCHW memory in order.
    plane = _F.reshape(_F.permute(x, (1, 0, 2, 3)), (c, n * h * w))
    if geometry[:3] == ((1, 1), (1, 1), (1, 1)) and pads == ((0, 0), (0, 0)):
        cols = plane  # a 1x1 window at every position, in order
    else:
        if mode == "zeros" and pads != ((0, 0), (0, 0)):
            plane = _F.pad_interior(plane, ((0, 0, 0), (0, 1, 0)))  # the zero padding reads
        cols = _take(plane, _batch_window_index((h, w), geometry, mode, n), 1)
    cols = _F.reshape(cols, (groups, cg * k, n * length))
    out = _F.matmul(_F.reshape(weight, (groups, oc // groups, cg * k)), cols)
    out = _F.permute(_F.reshape(out, (oc, n, oh, ow)), (1, 0, 2, 3))
    if bias is not None:
        out = _F.add(out, _F.reshape(bias, (1, oc, 1, 1)))
    # NCHW memory like PyTorch's result, so .view() works on it (free in compiled code: the
    # copy fuses into whatever reads it)
    return _F.contiguous(out)


# -- conv2d as one fused primitive ----------------------------------------------------------------
# Eagerly, the composite is some fifteen primitives forward and as many nodes backward. The
# fused primitive repeats its arithmetic operation for operation (the same gather of columns,
# the same product, the same bias add; backward, the same products, sum and scatter-add), so
# eager and traced runs agree bit for bit, and keeps the columns for the weight's gradient.


def _gathered(x: np.ndarray, geometry: tuple, groups: int, weight_shape: tuple) -> np.ndarray:
    """The composite's columns, (groups, C/groups * KH*KW, N*OH*OW)."""
    n, c, h, w = x.shape
    (kh, kw), _, _, (oh, ow), pads = geometry
    plane = x.transpose(1, 0, 2, 3).reshape(c, n * h * w)
    if geometry[:3] == ((1, 1), (1, 1), (1, 1)) and pads == ((0, 0), (0, 0)):
        cols = plane
    else:
        if pads != ((0, 0), (0, 0)):
            plane = np.concatenate([plane, np.zeros((c, 1), plane.dtype)], 1)
        cols = np.take(plane, _batch_window_index((h, w), geometry, "zeros", n), axis=1)
    return cols.reshape(groups, weight_shape[1] * kh * kw, n * oh * ow)


def _conv_impl(x, weight, bias=None, *, geometry, groups):
    n, oc = x.shape[0], weight.shape[0]
    oh, ow = geometry[3]
    cols = _gathered(x, geometry, groups, weight.shape)
    out = _matmul(weight.reshape(groups, oc // groups, cols.shape[1]), cols)
    out = out.reshape(oc, n, oh, ow).transpose(1, 0, 2, 3)
    if bias is not None:
        out = np.add(out, np.broadcast_to(bias.reshape(1, oc, 1, 1), out.shape))
    return np.array(out, order="C"), cols


def _conv_vjp(node, g):
    x, weight = node.inputs[0], node.inputs[1]
    geometry, groups = node.params["geometry"], node.params["groups"]
    needs = node.needs
    if STATE.grad_enabled:  # a graph of the gradient (create_graph): the composite's
        bias = node.inputs[2] if len(node.inputs) == 3 else None
        with enable_grad():
            out = _conv_composite(x, weight, bias, geometry, groups, "zeros")
        wanted = [t for t, need in zip(node.inputs, needs) if need]
        grads = iter(autograd_grad(out, wanted, g, create_graph=True))
        return tuple(next(grads) if need else None for need in needs)
    n, c, h, w = x.shape
    oc = weight.shape[0]
    oh, ow = geometry[3]
    cols = node.residual
    gd = g._data
    # (the composite's gradient ops: the bias's through its expand, then the product's)
    g3 = gd.transpose(1, 0, 2, 3).reshape(groups, oc // groups, n * oh * ow)
    gx = gw = gb = None
    if len(needs) == 3 and needs[2]:
        gb = Tensor._wrap(np.add.reduce(gd, axis=(0, 2, 3), keepdims=True).reshape(oc))
    if needs[1]:
        gw = Tensor._wrap(_matmul(g3, cols.transpose(0, 2, 1)).reshape(weight.shape))
    if needs[0]:
        w3 = weight._data.reshape(groups, oc // groups, cols.shape[1])
        gcols = _matmul(w3.transpose(0, 2, 1), g3).reshape(c, -1, n * oh * ow)
        if geometry[:3] == ((1, 1), (1, 1), (1, 1)) and geometry[4] == ((0, 0), (0, 0)):
            plane = gcols.reshape(c, n * h * w)
        else:  # the gather's transpose, as scatter_add adds (the padding's sink aside)
            index = _batch_window_index((h, w), geometry, "zeros", n)
            plane = np.zeros((c, n * h * w), gd.dtype)
            flat = np.ascontiguousarray(gcols).reshape(-1)
            size = n * h * w  # (the padding's zero sits at index size: skipped)
            if ready(scatter_add_skipping, gd.dtype):
                scatter_add_skipping(plane.reshape(-1), index.reshape(-1), flat, c, size, size)
            else:  # (the same additions in the same order)
                index = index.reshape(-1)
                inside = index != size
                at = (np.arange(c)[:, None] * size + index[inside]).reshape(-1)
                np.add.at(plane.reshape(-1), at, flat.reshape(c, -1)[:, inside].reshape(-1))
        gx = Tensor._wrap(plane.reshape(c, n, h, w).transpose(1, 0, 2, 3))
    return (gx, gw) if len(needs) == 2 else (gx, gw, gb)


def _conv_shape(avals, geometry, groups):
    x, weight = avals[0], avals[1]
    return (x.shape[0], weight.shape[0], *geometry[3]), x.dtype


conv2d_p = register(
    "conv2d",
    impl=_conv_impl,
    vjp=_conv_vjp,
    shape=_conv_shape,
    kind="fused",
    residual=True,  # the columns, for the weight's gradient
    saves=(1,),  # (and the weight, for the input's; like PyTorch's node it keeps the input too)
    decompose=lambda x, weight, bias=None, *, geometry, groups: _conv_composite(
        x, weight, bias, geometry, groups, "zeros"
    ),
    node_name="ConvolutionBackward0",
    spec=conv_specs.CONV2D,
)


def _type_name(t: Tensor) -> str:
    names = {"float32": "Float", "float64": "Double", "int64": "Long", "int32": "Int"}
    return names.get(t.dtype.np.name, t.dtype.np.name)


def _check_mode_padding(x: Tensor, pads: tuple, mode: str) -> None:
    for dim, (size, (lo, hi)) in zip((2, 3), zip(x.shape[2:], pads)):
        if (mode == "reflect" and max(lo, hi) >= size) or max(lo, hi) > size:
            raise RuntimeError(
                f"Padding size should be less than the corresponding input dimension, but got: "
                f"padding ({lo}, {hi}) at dimension {dim} of input {list(x.shape)}; use a "
                "smaller padding or padding_mode='zeros'."
            )


# -- modules --------------------------------------------------------------------------------------
def _module_pair(value) -> tuple:
    return (value, value) if isinstance(value, int) else tuple(value)


class Conv2d(Module):
    """2-D convolution with PyTorch's default initialisation (kaiming_uniform_(a=sqrt(5)) for
    the weight, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
        groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None,
    ) -> None:  # fmt: skip
        super().__init__()
        if groups <= 0:
            raise ValueError("groups must be a positive integer")
        for name, n in (("in_channels", in_channels), ("out_channels", out_channels)):
            if n % groups:
                raise ValueError(f"{name} must be divisible by groups")
        kernel_size, stride, dilation = map(_module_pair, (kernel_size, stride, dilation))
        if padding in ("valid", "same"):
            if padding == "same" and any(s != 1 for s in stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
        elif isinstance(padding, str):
            raise ValueError(
                f"Invalid padding string {padding!r}, should be one of {{'valid', 'same'}}"
            )
        else:
            padding = _module_pair(padding)
        if padding_mode not in _PADDING_MODES:
            raise ValueError(
                f"padding_mode must be one of {set(_PADDING_MODES)}, but got "
                f"padding_mode='{padding_mode}'"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.padding_mode = dilation, padding_mode
        self.transposed, self.output_padding = False, (0, 0)  # (PyTorch's _ConvNd attributes)
        dtype = dtypes.as_dtype(dtype) if dtype is not None else None
        shape = (out_channels, in_channels // groups) + kernel_size
        self.weight = Parameter(empty(shape, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(empty(out_channels, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init._reset_weight_and_bias(self.weight, self.bias)  # as nn.Linear

    def forward(self, input: Tensor) -> Tensor:
        args = (self.stride, self.padding, self.dilation, self.groups, self.padding_mode)
        return _conv2d(input, self.weight, self.bias, *args)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        s += f", stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


# Pooling shares the window gather; its functions and modules are re-exported from here.
from .pooling import AvgPool2d, MaxPool2d, avg_pool2d, max_pool2d  # noqa: E402
