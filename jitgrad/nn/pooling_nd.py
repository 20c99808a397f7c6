"""1-D and 3-D pooling, adaptive pooling and power-average pooling (max unpooling: unpooling.py).

1-D pooling is 2-D pooling on a unit height (so it shares max_pool2d's fused primitive). 3-D
pooling and adaptive max pooling gather every window from the flattened spatial volume with one
``take`` (an int64 index built once per configuration with NumPy; windows reaching padding, or
shorter than the longest, read one appended element: -inf for max, 0 for sums), then max
pooling gathers each window's first maximum, as PyTorch picks it, so its gradient is one scatter
per window. Adaptive average pooling is a product with a (small, constant) averaging matrix per
pooled dim.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .. import dtypes
from ..ops import functions as _F
from ..ops import prims as _P
from ..ops.registry import op
from ..ops.spec import Spec, arg
from ..tensor import Tensor, apply
from . import layer_refs as R
from .pooling import avg_pool2d, max_pool2d

__all__ = [
    "max_pool1d",
    "max_pool3d",
    "avg_pool1d",
    "avg_pool3d",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "lp_pool1d",
    "lp_pool2d",
    "lp_pool3d",
]

_NS = "nn.functional"


def _ints(value, n: int, name: str, fn: str) -> tuple:
    items = [value] if isinstance(value, (int, np.integer)) else list(value)
    if len(items) == 1:
        items = items * n
    if len(items) != n or not all(isinstance(v, (int, np.integer)) for v in items):
        raise RuntimeError(f"{fn}: {name} must either be a single int, or a tuple of {n} ints")
    return tuple(int(v) for v in items)


def _batched(input: Tensor, nd: int, fn: str) -> tuple:
    if not isinstance(input, Tensor):
        raise TypeError(f"{fn}(): argument 'input' must be Tensor, not {type(input).__name__}")
    if input.ndim == nd + 2:
        return input, False
    if input.ndim == nd + 1:
        return _F.unsqueeze(input, 0), True
    raise RuntimeError(f"non-empty {nd + 1}D or {nd + 2}D (batch mode) tensor expected for input")


def _unbatch(out, unbatched: bool):
    if not unbatched:
        return out
    if isinstance(out, tuple):
        return tuple(_F.squeeze(o, 0) for o in out)
    return _F.squeeze(out, 0)


def _to_1d_on_2d(input: Tensor, fn: str) -> tuple:
    if not isinstance(input, Tensor):
        raise TypeError(f"{fn}(): argument 'input' must be Tensor, not {type(input).__name__}")
    if input.ndim not in (2, 3):
        raise RuntimeError(f"{fn}() Expected 2D or 3D input tensor, but got {list(input.shape)}")
    return _F.unsqueeze(input, -2)


def _one(value, name: str, fn: str) -> int:
    return _ints(value, 1, name, fn)[0]


# -- 1-D pooling, on a unit height ---------------------------------------------------------------
def _max_pool1d_ref(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    return R.max_pool_ref(x, kernel_size, stride, padding, dilation, ceil_mode, nd=1)


@op(
    namespace=_NS,
    spec=Spec(
        [arg(2, 3, 9), 3],
        _max_pool1d_ref,
        params={"stride": 2, "padding": 1, "dilation": 1, "ceil_mode": True},
        differentiable=(0,),
        smooth=False,
    ),
)
def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):  # fmt: skip
    """Max over each window of (N, C, L) or (C, L) ``input``."""
    x = _to_1d_on_2d(input, "max_pool1d")
    k = _one(kernel_size, "kernel_size", "max_pool1d")
    s = (
        k
        if stride is None or stride == [] or stride == ()
        else _one(stride, "stride", "max_pool1d")
    )
    p, d = _one(padding, "padding", "max_pool1d"), _one(dilation, "dilation", "max_pool1d")
    if k > 0 and s > 0 and 0 <= p <= k // 2:
        size = (x.shape[-1] + 2 * p - d * (k - 1) - 1 + ((s - 1) if ceil_mode else 0)) // s + 1
        if size <= 0:
            raise RuntimeError(f"max_pool1d() Invalid computed output size: {size}")
    args = ((1, k), (1, s), (0, p))
    out = max_pool2d(x, *args, (1, _one(dilation, "dilation", "max_pool1d")), ceil_mode,
                     return_indices)  # fmt: skip
    if return_indices:
        return _F.squeeze(out[0], -2), _F.squeeze(out[1], -2)
    return _F.squeeze(out, -2)


def _avg_pool1d_ref(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                    count_include_pad=True):  # fmt: skip
    return R.avg_pool_ref(x, kernel_size, stride, padding, ceil_mode, count_include_pad, nd=1)


@op(
    namespace=_NS,
    spec=Spec(
        [arg(2, 3, 8), 3],
        _avg_pool1d_ref,
        params={"stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False},
        differentiable=(0,),
        linear=True,
    ),
)
def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):  # fmt: skip
    """Mean over each window of (N, C, L) or (C, L) ``input``."""
    x = _to_1d_on_2d(input, "avg_pool1d")
    k = _one(kernel_size, "kernel_size", "avg_pool1d")
    s = (
        k
        if stride is None or stride == [] or stride == ()
        else _one(stride, "stride", "avg_pool1d")
    )
    p = _one(padding, "padding", "avg_pool1d")
    out = avg_pool2d(x, (1, k), (1, s), (0, p), ceil_mode, count_include_pad)
    return _F.squeeze(out, -2)


# -- N-d windows, gathered ------------------------------------------------------------------------
@lru_cache(maxsize=256)
def _windows(sizes: tuple, kernel: tuple, stride: tuple, dil: tuple, outs: tuple, lo: tuple):
    """(L, K) int64: for each output position and window tap, its flat position in the
    (``sizes``) volume, or prod(sizes) (the appended element) on padding."""
    total = math.prod(sizes)
    grid = np.arange(total, dtype=np.int64).reshape(sizes)
    hi = [max(0, (o - 1) * s + d * (k - 1) + 1 - n - p)
          for n, k, s, d, o, p in zip(sizes, kernel, stride, dil, outs, lo)]  # fmt: skip
    grid = np.pad(grid, list(zip(lo, hi)), constant_values=total)
    nd = len(sizes)
    coords = []
    for i, (k, s, d, o) in enumerate(zip(kernel, stride, dil, outs)):
        c = (np.arange(o) * s)[:, None] + (np.arange(k) * d)[None, :]  # (o, k)
        shape = [1] * (2 * nd)
        shape[i], shape[nd + i] = o, k
        coords.append(c.reshape([o if j == i else 1 for j in range(nd)]
                                + [k if j == i else 1 for j in range(nd)]))  # fmt: skip
    index = grid[tuple(coords)].reshape(math.prod(outs), math.prod(kernel))
    index.flags.writeable = False
    return index


@lru_cache(maxsize=256)
def _first_inside(index_key: tuple, total: int) -> np.ndarray:
    """The window index with every appended-element entry replaced by the window's first
    position inside (what PyTorch reports when nothing beats -inf), flattened."""
    index = _windows(*index_key) if index_key[0] != "adaptive" else _adaptive_index(*index_key[1:])
    inside = index < total
    first = index[np.arange(index.shape[0]), np.argmax(inside, axis=1)]
    table = np.where(inside, index, first[:, None]).reshape(-1)
    table.flags.writeable = False
    return table


def _gather_windows(x: Tensor, index: np.ndarray, fill) -> Tensor:
    """(N, C, L, K) windows of (N, C, *sizes) ``x``; the appended element holds ``fill``."""
    n, c = x.shape[:2]
    total = math.prod(x.shape[2:])
    flat = _F.reshape(x, (n, c, total))
    if (index == total).any():
        flat = _F.cat([flat, _F.expand(_F.const(fill, x.dtype), (n, c, 1))], 2)
    return apply(_P.take_p, (flat, Tensor._wrap(index)), {"axis": 2})


def _first_max(x: Tensor, index: np.ndarray, table: np.ndarray, outs: tuple) -> tuple:
    """(the max of each window, its flat position in the input volume), (N, C, *outs)."""
    n, c = x.shape[:2]
    total = math.prod(x.shape[2:])
    lowest = -math.inf if x.dtype.is_floating_point else int(np.iinfo(x.dtype.np).min)
    length, taps = index.shape
    k = _F.argmax(_gather_windows(x, index, lowest), 3)  # (N, C, L): the first maximum
    at = _F.add(k, Tensor._wrap(np.arange(length, dtype=np.int64) * taps))
    position = apply(_P.take_p, (Tensor._wrap(table), at), {"axis": 0})
    planes = Tensor._wrap((np.arange(n * c, dtype=np.int64) * total).reshape(n, c, 1))
    flat = _F.reshape(_F.add(position, planes), (n * c * length,))
    out = apply(_P.take_p, (_F.reshape(x, (n * c * total,)), flat), {"axis": 0})
    return _F.reshape(out, (n, c, *outs)), _F.reshape(position, (n, c, *outs))


def _geometry(x: Tensor, nd: int, fn: str, kernel_size, stride, padding, dilation, ceil_mode):
    kernel = _ints(kernel_size, nd, "kernel_size", fn)
    if stride is None or (not isinstance(stride, int) and len(stride) == 0):
        stride = kernel
    stride = _ints(stride, nd, "stride", fn)
    pad = _ints(padding, nd, "padding", fn)
    dil = _ints(dilation, nd, "dilation", fn)
    if min(kernel) <= 0:
        raise RuntimeError(f"{fn}: kernel_size must be greater than zero, but got {kernel}")
    if min(stride) <= 0:
        raise RuntimeError(f"{fn}: stride must be greater than zero, but got {stride}")
    if min(dil) <= 0:
        raise RuntimeError(f"{fn}: dilation must be greater than zero, but got {dil}")
    for p, k, d in zip(pad, kernel, dil):
        if p < 0:
            raise RuntimeError(f"pad must be non-negative, but got pad: {p}")
        if p > (d * (k - 1) + 1) // 2:
            raise RuntimeError(
                f"pad should be at most half of effective kernel size, but got pad={p}, "
                f"kernel_size={k} and dilation={d}"
            )
    if any(n + 2 * p < d * (k - 1) + 1 for n, p, k, d in zip(x.shape[2:], pad, kernel, dil)):
        names = ("kT", "kH", "kW")[3 - nd :]
        dims = ("T", "H", "W")[3 - nd :]
        raise RuntimeError(
            f"input image ({' '.join(f'{a}: {n}' for a, n in zip(dims, x.shape[2:]))}) smaller "
            f"than kernel size ({' '.join(f'{a}: {k}' for a, k in zip(names, kernel))})"
        )
    sizes = tuple(x.shape[2:])
    outs = []
    for n, k, s, p, d in zip(sizes, kernel, stride, pad, dil):
        o = (n + 2 * p - d * (k - 1) - 1 + ((s - 1) if ceil_mode else 0)) // s + 1
        if ceil_mode and (o - 1) * s >= n + p:
            o -= 1
        outs.append(o)
    if min(outs) < 1:
        raise RuntimeError(
            f"Given input size: ({'x'.join(map(str, (x.shape[1],) + sizes))}). Calculated output "
            f"size: ({'x'.join(map(str, [x.shape[1]] + outs))}). Output size is too small"
        )
    return kernel, stride, pad, dil, tuple(outs)


# -- 3-D pooling ----------------------------------------------------------------------------------
def _max_pool3d_ref(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    return R.max_pool_ref(x, kernel_size, stride, padding, dilation, ceil_mode, nd=3)


@op(
    namespace=_NS,
    spec=Spec(
        [arg(2, 2, 4, 5, 5), (2, 3, 2)],
        _max_pool3d_ref,
        params={"stride": (2, 1, 2), "padding": (1, 1, 0), "dilation": 1, "ceil_mode": True},
        differentiable=(0,),
        smooth=False,
    ),
)
def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):  # fmt: skip
    """Max over each window of (N, C, D, H, W) or (C, D, H, W) ``input``; with
    ``return_indices`` also each maximum's flat position in its (D, H, W) volume."""
    x, unbatched = _batched(input, 3, "max_pool3d")
    if x.dtype is dtypes.bool_:
        raise RuntimeError("\"max_pool3d\" not implemented for 'Bool'")
    kernel, stride, pad, dil, outs = _geometry(
        x, 3, "max_pool3d", kernel_size, stride, padding, dilation, ceil_mode
    )
    key = (tuple(x.shape[2:]), kernel, stride, dil, outs, pad)
    index = _windows(*key)
    out, position = _first_max(x, index, _first_inside(key, math.prod(x.shape[2:])), outs)
    return _unbatch((out, position) if return_indices else out, unbatched)


def _avg_divisor(sizes, kernel, stride, pad, outs, count_include_pad) -> np.ndarray:
    per_dim = []
    for n, k, s, p, o in zip(sizes, kernel, stride, pad, outs):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, n + p)
        if not count_include_pad:
            start, end = np.maximum(start, 0), np.minimum(end, n)
        per_dim.append(end - start)
    return np.prod(np.meshgrid(*per_dim, indexing="ij"), axis=0).astype(np.float64)


def _avg_pool3d_ref(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                    count_include_pad=True, divisor_override=None):  # fmt: skip
    return R.avg_pool_ref(
        x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, nd=3
    )


@op(
    namespace=_NS,
    spec=Spec(
        [arg(2, 2, 4, 5, 5), (2, 3, 2)],
        _avg_pool3d_ref,
        params={"stride": (2, 1, 2), "padding": (1, 1, 0), "ceil_mode": True,
                "count_include_pad": False},
        differentiable=(0,),
        linear=True,
    ),
)  # fmt: skip
def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):  # fmt: skip
    """Mean over each window of (N, C, D, H, W) or (C, D, H, W) ``input``."""
    x, unbatched = _batched(input, 3, "avg_pool3d")
    if not x.dtype.is_floating_point:
        raise RuntimeError(f"\"avg_pool3d_out_frame\" not implemented for '{x.dtype}'")
    if divisor_override is not None and divisor_override == 0:
        raise RuntimeError("divisor must be not zero")
    kernel, stride, pad, dil, outs = _geometry(
        x, 3, "avg_pool3d", kernel_size, stride, padding, 1, ceil_mode
    )
    n, c = x.shape[:2]
    index = _windows(tuple(x.shape[2:]), kernel, stride, dil, outs, pad)
    total = _F.reshape(_F.sum(_gather_windows(x, index, 0), 3), (n, c, *outs))
    if divisor_override is not None:
        return _unbatch(_F.div(total, float(divisor_override)), unbatched)
    divisor = _avg_divisor(tuple(x.shape[2:]), kernel, stride, pad, outs, count_include_pad)
    if (divisor == divisor.flat[0]).all():
        out = _F.div(total, float(divisor.flat[0]))
    else:
        out = _F.div(total, Tensor._wrap(divisor.astype(x.dtype.np)))
    return _unbatch(out, unbatched)


# -- adaptive pooling -----------------------------------------------------------------------------
def _adaptive_sizes(x: Tensor, output_size, nd: int, fn: str) -> tuple:
    items = [output_size] if isinstance(output_size, (int, np.integer)) or output_size is None \
        else list(output_size)  # fmt: skip
    if len(items) == 1:
        items = items * nd
    if len(items) != nd:
        raise RuntimeError(f"{fn}: output_size must be {nd}")
    sizes = x.shape[x.ndim - nd :]
    outs = tuple(int(n) if o is None else int(o) for o, n in zip(items, sizes))
    if min(outs) < 0:
        raise RuntimeError(f"{fn}: elements of output_size must be greater than or equal to 0")
    for d in range(1, x.ndim):
        if x.shape[d] == 0:
            raise RuntimeError(
                f"{fn}(): Expected input to have non-zero size for non-batch dimensions, but "
                f"input has sizes {list(x.shape)} with dimension {d} being empty"
            )
    return outs


@lru_cache(maxsize=256)
def _averaging(n: int, o: int, np_dtype) -> np.ndarray:
    """(n, o): column i averages input positions [floor(i n / o), ceil((i + 1) n / o))."""
    m = np.zeros((n, o), np_dtype)
    for i in range(o):
        a, b = (i * n) // o, -((-(i + 1) * n) // o)
        m[a:b, i] = 1.0 / (b - a)
    m.flags.writeable = False
    return m


def _adaptive_avg(input: Tensor, output_size, nd: int, fn: str) -> Tensor:
    if input.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(
            f"{fn}(): Expected {nd + 1}D or {nd + 2}D tensor, but got {list(input.shape)}"
        )
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"\"{fn}\" not implemented for '{input.dtype}'")
    outs = _adaptive_sizes(input, output_size, nd, fn)
    x = input
    for k in range(nd):  # one product per pooled dim, over the last axis
        d = x.ndim - nd + k
        n = x.shape[d]
        m = Tensor._wrap(_averaging(n, outs[k], x.dtype.np))
        x = _F.movedim(_F.matmul(_F.movedim(x, d, -1), m), -1, d) if d != x.ndim - 1 \
            else _F.matmul(x, m)  # fmt: skip
    return _F.contiguous(x)


def _adaptive_avg_ref(nd):
    return lambda x, output_size: R.adaptive_pool_ref(x, output_size, nd, np.mean)


@op(
    namespace=_NS,
    spec=Spec([arg(2, 3, 7), 3], _adaptive_avg_ref(1), differentiable=(0,), linear=True),
)
def adaptive_avg_pool1d(input, output_size) -> Tensor:
    """Mean over ``output_size`` windows of (nearly) equal length of (N, C, L) or (C, L)."""
    return _adaptive_avg(input, output_size, 1, "adaptive_avg_pool1d")


@op(
    namespace=_NS,
    spec=Spec([arg(2, 3, 5, 7), (3, None)], _adaptive_avg_ref(2), differentiable=(0,),
              linear=True),
)  # fmt: skip
def adaptive_avg_pool2d(input, output_size) -> Tensor:
    """Mean over ``output_size`` windows of (N, C, H, W) or (C, H, W); None keeps a size."""
    return _adaptive_avg(input, output_size, 2, "adaptive_avg_pool2d")


@op(
    namespace=_NS,
    spec=Spec([arg(1, 2, 4, 5, 3), (2, 3, 2)], _adaptive_avg_ref(3), differentiable=(0,),
              linear=True),
)  # fmt: skip
def adaptive_avg_pool3d(input, output_size) -> Tensor:
    """Mean over ``output_size`` windows of (N, C, D, H, W) or (C, D, H, W)."""
    return _adaptive_avg(input, output_size, 3, "adaptive_avg_pool3d")


@lru_cache(maxsize=256)
def _adaptive_index(sizes: tuple, outs: tuple) -> np.ndarray:
    """(L, K) window positions of adaptive pooling in the flat volume, K the longest window's
    size; shorter windows are filled up with prod(sizes) (the appended element)."""
    total = math.prod(sizes)
    grid = np.arange(total, dtype=np.int64).reshape(sizes)
    wins = [R.adaptive_windows(n, o) for n, o in zip(sizes, outs)]
    longest = [max(b - a for a, b in w) for w in wins]
    index = np.full((math.prod(outs), math.prod(longest)), total, np.int64)
    for row, pos in enumerate(np.ndindex(*outs)):
        block = grid[tuple(slice(*wins[i][q]) for i, q in enumerate(pos))].reshape(-1)
        index[row, : block.size] = block
    index.flags.writeable = False
    return index


def _adaptive_max(input: Tensor, output_size, return_indices: bool, nd: int, fn: str):
    x, unbatched = _batched(input, nd, fn)
    outs = _adaptive_sizes(x, output_size, nd, fn)
    sizes = tuple(x.shape[2:])
    index = _adaptive_index(sizes, outs)
    table = _first_inside(("adaptive", sizes, outs), math.prod(sizes))
    out, position = _first_max(x, index, table, outs)
    return _unbatch((out, position) if return_indices else out, unbatched)


def _adaptive_max_ref(nd):
    return lambda x, output_size: R.adaptive_pool_ref(x, output_size, nd, np.max)


@op(
    namespace=_NS,
    spec=Spec([arg(2, 3, 7), 3], _adaptive_max_ref(1), differentiable=(0,), smooth=False),
)
def adaptive_max_pool1d(input, output_size, return_indices=False):
    """Max over ``output_size`` windows of (N, C, L) or (C, L)."""
    return _adaptive_max(input, output_size, return_indices, 1, "adaptive_max_pool1d")


@op(
    namespace=_NS,
    spec=Spec([arg(2, 3, 5, 7), (3, 4)], _adaptive_max_ref(2), differentiable=(0,), smooth=False),
)
def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Max over ``output_size`` windows of (N, C, H, W) or (C, H, W); with ``return_indices``
    also each maximum's flat position (h * W + w)."""
    return _adaptive_max(input, output_size, return_indices, 2, "adaptive_max_pool2d")


# -- power-average pooling ------------------------------------------------------------------------
def _lp(out: Tensor, norm_type, count: int) -> Tensor:
    # (sign(s) relu(|s|) * count) ** (1/p), PyTorch's formula over the window mean s
    s = _F.mul(_F.sign(out), _F.relu(_F.abs(out)))
    return _F.pow(_F.mul(s, float(count)), 1.0 / float(norm_type))


def _lp_ref(nd):
    def ref(x, norm_type, kernel_size, stride=None, ceil_mode=False):
        m = R.avg_pool_ref(x**norm_type, kernel_size, stride, 0, ceil_mode, nd=nd)
        return (m * math.prod(R._tup(kernel_size, nd))) ** (1.0 / norm_type)

    return ref


_LP = dict(differentiable=(0,))


@op(namespace=_NS, spec=Spec([arg(2, 3, 7, lo=0.5), 2.0, 3], _lp_ref(1), params={"stride": 2},
                             **_LP))  # fmt: skip
def lp_pool1d(input, norm_type, kernel_size, stride=None, ceil_mode=False) -> Tensor:
    """The ``norm_type``-norm of each window of (N, C, L) or (C, L) ``input``."""
    k = _one(kernel_size, "kernel_size", "lp_pool1d")
    out = avg_pool1d(_F.pow(input, float(norm_type)), k, stride, 0, ceil_mode)
    return _lp(out, norm_type, k)


@op(namespace=_NS, spec=Spec([arg(2, 2, 5, 4, lo=0.5), 3.0, (2, 3)], _lp_ref(2),
                             params={"stride": 1, "ceil_mode": True}, **_LP))  # fmt: skip
def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False) -> Tensor:
    """The ``norm_type``-norm of each window of (N, C, H, W) or (C, H, W) ``input``."""
    kh, kw = _ints(kernel_size, 2, "kernel_size", "lp_pool2d")
    stride = (kh, kw) if stride is None else stride
    out = avg_pool2d(_F.pow(input, float(norm_type)), (kh, kw), stride, 0, ceil_mode)
    return _lp(out, norm_type, kh * kw)


@op(namespace=_NS, spec=Spec([arg(1, 2, 3, 4, 4, lo=0.5), 2.0, 2], _lp_ref(3), **_LP))
def lp_pool3d(input, norm_type, kernel_size, stride=None, ceil_mode=False) -> Tensor:
    """The ``norm_type``-norm of each window of (N, C, D, H, W) or (C, D, H, W) ``input``."""
    k = _ints(kernel_size, 3, "kernel_size", "lp_pool3d")
    out = avg_pool3d(_F.pow(input, float(norm_type)), k, stride, 0, ceil_mode)
    return _lp(out, norm_type, math.prod(k))
