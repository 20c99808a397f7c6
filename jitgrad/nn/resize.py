"""``interpolate`` (nearest, nearest-exact, linear, bilinear, bicubic, trilinear, area) and
``pixel_shuffle``/``pixel_unshuffle``.

Interpolation is separable: along each resized dim, every output position is a weighted sum of
a few input positions (1 for nearest, 2 for linear, 4 for cubic). Each tap is one ``take`` with
an int64 index and a constant weight per output position, both computed once per configuration
with NumPy by PyTorch's coordinate rules; the gradient is take's scatter_add. Pixel shuffles
are a reshape, a permute and a reshape.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ..ops import functions as _F
from ..ops import prims as _P
from ..ops.registry import op
from ..ops.spec import Spec, arg
from ..tensor import Tensor, apply

__all__ = ["interpolate", "pixel_shuffle", "pixel_unshuffle"]

_NS = "nn.functional"
_INTERPOLATING = ("linear", "bilinear", "bicubic", "trilinear")
_MODE_DIMS = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}
_A = -0.75  # PyTorch's cubic convolution coefficient


def _source_scale(n: int, o: int, align_corners: bool, scale) -> float:
    if align_corners:
        return (n - 1) / (o - 1) if o > 1 else 0.0
    return 1.0 / scale if scale is not None and scale > 0 else n / o


def _cubic(t: np.ndarray) -> list:
    """The four cubic convolution weights for offsets t in [0, 1) (taps -1, 0, 1, 2)."""

    def near(x):  # |x| <= 1
        return ((_A + 2) * x - (_A + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((_A * x - 5 * _A) * x + 8 * _A) * x - 4 * _A

    return [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]


@lru_cache(maxsize=512)
def _taps(n: int, o: int, mode: str, align_corners: bool, scale) -> tuple:
    """((index, weight or None), ...) for resizing a dim of ``n`` to ``o`` positions."""
    dst = np.arange(o, dtype=np.float64)
    if mode in ("nearest", "nearest-exact"):
        # (PyTorch computes nearest positions in float32)
        s = np.float32(1.0 / scale if scale is not None and scale > 0 else n / o)
        d = dst.astype(np.float32) + (np.float32(0.5) if mode == "nearest-exact" else 0)
        if mode == "nearest" and o == n:
            src = np.arange(o)
        elif mode == "nearest" and o == 2 * n:
            src = np.arange(o) >> 1
        else:
            src = np.floor(d * s).astype(np.int64)
        index = np.minimum(src, n - 1).astype(np.int64)
        index.flags.writeable = False
        return ((index, None),)
    s = _source_scale(n, o, align_corners, scale)
    real = s * dst if align_corners else s * (dst + 0.5) - 0.5
    if mode == "cubic":
        base = np.floor(real)
        t = real - base
        base = base.astype(np.int64)
        out = []
        for k, w in zip(range(-1, 3), _cubic(t)):
            index = np.clip(base + k, 0, n - 1)
            index.flags.writeable = False
            out.append((index, w))
        return tuple(out)
    real = np.maximum(real, 0.0)
    i0 = np.floor(real).astype(np.int64)
    i0 = np.minimum(i0, n - 1)
    lam = real - i0
    i1 = np.where(i0 < n - 1, i0 + 1, i0)
    for a in (i0, i1):
        a.flags.writeable = False
    return ((i0, 1.0 - lam), (i1, lam))


def _resize_dim(x: Tensor, d: int, taps: tuple) -> Tensor:
    total = None
    for index, weight in taps:
        part = apply(_P.take_p, (x, Tensor._wrap(index)), {"axis": d})
        if weight is not None:
            shape = (len(weight),) + (1,) * (x.ndim - 1 - d)
            part = _F.mul(part, Tensor._wrap(weight.astype(x.dtype.np).reshape(shape)))
        total = part if total is None else _F.add(total, part)
    return total


def _interp_ref(x, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """By the definition: each output position from the source coordinate PyTorch assigns it
    (half-pixel centres, or corners aligned), weighted by its distance to the neighbours."""
    out = x
    nd = x.ndim - 2
    sizes = size if isinstance(size, (tuple, list)) else [size] * nd
    for k in range(nd):
        n, o = x.shape[2 + k], sizes[k]
        rows = []
        for j in range(o):
            if align_corners:
                src = j * (n - 1) / (o - 1) if o > 1 else 0.0
            else:
                src = max((j + 0.5) * n / o - 0.5, 0.0)
            lo = min(int(math.floor(src)), n - 1)
            hi = min(lo + 1, n - 1)
            frac = src - lo
            r = np.zeros(n)
            r[lo] += 1 - frac
            r[hi] += frac
            rows.append(r)
        m = np.array(rows)  # (o, n)
        out = np.moveaxis(np.tensordot(out, m, axes=([2 + k], [1])), -1, 2 + k)
    return out


@op(
    namespace=_NS,
    spec=Spec(
        [arg(2, 2, 3, 4)],
        _interp_ref,
        params={"size": (5, 3), "mode": "bilinear", "align_corners": False},
        differentiable=(0,),
        linear=True,
    ),
)
def interpolate(input, size=None, scale_factor=None, mode: str = "nearest", align_corners=None,
                recompute_scale_factor=None, antialias: bool = False) -> Tensor:  # fmt: skip
    """Resize the spatial dims of (N, C, *) ``input`` to ``size``, or by ``scale_factor``."""
    if mode in ("nearest", "area", "nearest-exact"):
        if align_corners is not None:
            raise ValueError(
                "align_corners option can only be set with the interpolating modes: "
                "linear | bilinear | bicubic | trilinear"
            )
    elif align_corners is None:
        align_corners = False
    dim = input.ndim - 2
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    scales = None
    if size is not None:
        if isinstance(size, (list, tuple)):
            if len(size) != dim:
                raise ValueError(
                    "Input and output must have the same number of spatial dimensions, but got "
                    f"input with spatial dimensions of {list(input.shape[2:])} and output size "
                    f"of {size}. Please provide input tensor in (N, C, d1, d2, ...,dK) format "
                    "and output size in (o1, o2, ...,oK) format."
                )
            outs = [int(s) for s in size]
        else:
            outs = [int(size)] * dim
    elif scale_factor is not None:
        if isinstance(scale_factor, (list, tuple)):
            if len(scale_factor) != dim:
                raise ValueError(
                    "Input and scale_factor must have the same number of spatial dimensions, but "
                    f"got input with spatial dimensions of {list(input.shape[2:])} and "
                    f"scale_factor of shape {scale_factor}. Please provide input tensor in (N, C, "
                    "d1, d2, ...,dK) format and scale_factor in (s1, s2, ...,sK) format."
                )
            scales = [float(s) for s in scale_factor]
        else:
            scales = [float(scale_factor)] * dim
        outs = [math.floor(float(n) * s) for n, s in zip(input.shape[2:], scales)]
    else:
        raise ValueError("either size or scale_factor should be defined")
    if recompute_scale_factor and size is not None:
        raise ValueError("recompute_scale_factor is not meaningful with an explicit size.")
    if recompute_scale_factor or mode == "area":
        scales = None  # the coordinates follow the output size alone
    if antialias:
        if not (mode in ("bilinear", "bicubic") and input.ndim == 4):
            raise ValueError(
                "Anti-alias option is restricted to bilinear and bicubic modes and requires a "
                "4-D tensor as input"
            )
        raise NotImplementedError("interpolate(antialias=True) is not supported")
    if input.ndim not in (3, 4, 5) or mode not in (
        "nearest", "nearest-exact", "area", *_INTERPOLATING
    ):  # fmt: skip
        raise NotImplementedError(
            f"Input Error: Only 3D, 4D and 5D input Tensors supported (got {input.ndim}D) for "
            "the modes: nearest | linear | bilinear | bicubic | trilinear | area | nearest-exact "
            f"(got {mode})"
        )
    if mode in _MODE_DIMS and _MODE_DIMS[mode] != dim:
        raise NotImplementedError(
            f"Got {input.ndim}D input, but {mode} mode needs {_MODE_DIMS[mode] + 2}D input"
        )
    if min(outs) <= 0:
        raise RuntimeError(
            "Input and output sizes should be greater than 0, but got input "
            f"({list(input.shape[2:])}) and output ({outs})"
        )
    if mode == "area":
        from .pooling_nd import _adaptive_avg

        return _adaptive_avg(input, tuple(outs), dim, f"adaptive_avg_pool{dim}d")
    if mode in _INTERPOLATING and not input.dtype.is_floating_point:
        raise RuntimeError(f"\"upsample_{mode}\" not implemented for '{input.dtype}'")
    kind = "cubic" if mode == "bicubic" else ("linear" if mode in _INTERPOLATING else mode)
    x = input
    for k in range(dim):
        n, o = x.shape[2 + k], outs[k]
        scale = None if scales is None else scales[k]
        if n == o and kind != "cubic" and (scale is None or scale == 1.0):
            continue  # the identity (every weight 1 or 0)
        x = _resize_dim(x, 2 + k, _taps(n, o, kind, bool(align_corners), scale))
    return x if x is not input else _F.clone(x)


def _shuffle_ref(x, upscale_factor):
    r = upscale_factor
    *lead, c, h, w = x.shape
    out = np.zeros((*lead, c // (r * r), h * r, w * r))
    for i in range(r):
        for j in range(r):
            out[..., i::r, j::r] = x.reshape(*lead, c // (r * r), r, r, h, w)[..., i, j, :, :]
    return out


@op(
    namespace=_NS,
    spec=Spec([arg(2, 8, 2, 3), 2], _shuffle_ref, differentiable=(0,), linear=True),
)
def pixel_shuffle(input, upscale_factor: int) -> Tensor:
    """(*, C r^2, H, W) -> (*, C, H r, W r): each channel block of r^2 becomes an r x r patch."""
    r = int(upscale_factor)
    if input.ndim < 3:
        raise RuntimeError(
            "pixel_shuffle expects input to have at least 3 dimensions, but got input with "
            f"{input.ndim} dimension(s)"
        )
    if r <= 0:
        raise RuntimeError(f"pixel_shuffle expects a positive upscale_factor, but got {r}")
    *lead, c, h, w = input.shape
    if c % (r * r):
        raise RuntimeError(
            "pixel_shuffle expects its input's 'channel' dimension to be divisible by the square "
            f"of upscale_factor, but input.size(-3)={c} is not divisible by {r * r}"
        )
    n = len(lead)
    y = _F.reshape(input, (*lead, c // (r * r), r, r, h, w))
    perm = tuple(range(n + 1)) + (n + 3, n + 1, n + 4, n + 2)
    return _F.reshape(_F.permute(y, perm), (*lead, c // (r * r), h * r, w * r))


def _unshuffle_ref(x, downscale_factor):
    r = downscale_factor
    *lead, c, h, w = x.shape
    out = np.zeros((*lead, c, r, r, h // r, w // r))
    for i in range(r):
        for j in range(r):
            out[..., i, j, :, :] = x[..., i::r, j::r]
    return out.reshape(*lead, c * r * r, h // r, w // r)


@op(
    namespace=_NS,
    spec=Spec([arg(2, 2, 4, 6), 2], _unshuffle_ref, differentiable=(0,), linear=True),
)
def pixel_unshuffle(input, downscale_factor: int) -> Tensor:
    """pixel_shuffle's inverse: (*, C, H r, W r) -> (*, C r^2, H, W)."""
    r = int(downscale_factor)
    if input.ndim < 3:
        raise RuntimeError(
            "pixel_unshuffle expects input to have at least 3 dimensions, but got input with "
            f"{input.ndim} dimension(s)"
        )
    if r <= 0:
        raise RuntimeError(f"pixel_unshuffle expects a positive downscale_factor, but got {r}")
    *lead, c, h, w = input.shape
    if h % r:
        raise RuntimeError(
            "pixel_unshuffle expects height to be divisible by downscale_factor, but "
            f"input.size(-2)={h} is not divisible by {r}"
        )
    if w % r:
        raise RuntimeError(
            "pixel_unshuffle expects width to be divisible by downscale_factor, but "
            f"input.size(-1)={w} is not divisible by {r}"
        )
    n = len(lead)
    y = _F.reshape(input, (*lead, c, h // r, r, w // r, r))
    perm = tuple(range(n + 1)) + (n + 2, n + 4, n + 1, n + 3)
    return _F.reshape(_F.permute(y, perm), (*lead, c * r * r, h // r, w // r))
