"""Fractional max pooling (Graham, 2014): ``fractional_max_pool2d/3d`` and their modules.

Window starts along a dim of size ``n`` pooled to ``o`` outputs with kernel ``k`` are
``floor((i + u) * a) - floor(u * a)`` with ``a = (n - k) / (o - 1)``, the last one ``n - k``,
for one random ``u`` in [0, 1) per (sample, channel, dim), as PyTorch's. The starts are tensor
arithmetic on the samples and the windows one gather, so fresh samples need no retrace; each
output is the window's first maximum, whose flat index is returned with ``return_indices``.
"""

from __future__ import annotations

import math

from .. import dtypes
from ..factories import arange
from ..ops import functions as _F
from ..random import rand
from ..tensor import Tensor
from .module import Module

__all__ = [
    "fractional_max_pool2d",
    "fractional_max_pool3d",
    "fractional_max_pool2d_with_indices",
    "fractional_max_pool3d_with_indices",
    "FractionalMaxPool2d",
    "FractionalMaxPool3d",
]

_DIM_NAMES = {2: ("height", "width"), 3: ("time", "height", "width")}


def _tuple(value, nd: int) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * nd


def _starts(u: Tensor, n: int, o: int, k: int) -> Tensor:
    """(N, C, o) int64 window starts from (N, C) samples ``u``."""
    i = _F.cast(arange(o), u.dtype)
    if o > 1:
        a = _F.cast(_F.const((n - k) / (o - 1), dtypes.float64), u.dtype)
        u = _F.unsqueeze(u, -1)
        s = _F.sub(_F.floor(_F.mul(_F.add(i, u), a)), _F.floor(_F.mul(u, a)))
    else:
        s = _F.mul(_F.unsqueeze(u, -1), 0.0)
    last = _F.eq(arange(o), o - 1)
    return _F.cast(_F.where(last, float(n - k), s), dtypes.int64)


def _fractional(nd: int, fn: str, input: Tensor, kernel_size, output_size, output_ratio,
                return_indices: bool, samples):  # fmt: skip
    if input.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(
            f"{fn}(): Expected {nd + 1}D or {nd + 2}D tensor, but got: {list(input.shape)}"
        )
    unbatched = input.ndim == nd + 1
    x = _F.unsqueeze(input, 0) if unbatched else input
    kernel = _tuple(kernel_size, nd)
    sizes = tuple(x.shape[2:])
    if output_size is None:
        if output_ratio is None:
            raise ValueError(f"{fn} requires specifying either an output_size or an output_ratio")
        ratio = _tuple(output_ratio, nd)
        output_size = tuple(int(s * r) for s, r in zip(sizes, ratio))
    outs = _tuple(output_size, nd)
    names = _DIM_NAMES[nd]
    for name, n, o, k in zip(names, sizes, outs, kernel):
        if o + k - 1 > n:
            raise RuntimeError(f"{fn}(): pool {name} {k} too large relative to input {name} {n}")
    batch, c = x.shape[:2]
    if samples is None:
        samples = rand(batch, c, nd, dtype=x.dtype)
    # samples[..., 0] is the last dim's for 2-D (width, then height), in order for 3-D
    order = (1, 0) if nd == 2 else (0, 1, 2)
    starts = [_starts(samples[:, :, j], n, o, k) for j, n, o, k in zip(order, sizes, outs, kernel)]
    # flat index of every window element: (N, C, *outs, *kernel)
    flat = None
    stride = 1
    for d in reversed(range(nd)):
        pos = _F.add(_F.unsqueeze(starts[d], -1), arange(kernel[d]))  # (N, C, o_d, k_d)
        shape = [batch, c] + [1] * (2 * nd)
        shape[2 + d], shape[2 + nd + d] = outs[d], kernel[d]
        term = _F.mul(_F.reshape(pos, tuple(shape)), stride)
        flat = term if flat is None else _F.add(flat, term)
        stride *= sizes[d]
    flat = _F.reshape(flat, (batch, c, math.prod(outs), math.prod(kernel)))
    plane = _F.reshape(x, (batch, c, 1, math.prod(sizes)))
    plane = _F.expand(plane, (batch, c, math.prod(outs), math.prod(sizes)))
    windows = _F.gather(plane, 3, flat)  # (N, C, O, K)
    best = _F.unsqueeze(_F.argmax(windows, 3), 3)  # the first maximum
    out = _F.reshape(_F.gather(windows, 3, best), (batch, c, *outs))
    indices = _F.reshape(_F.gather(flat, 3, best), (batch, c, *outs))
    if unbatched:
        out, indices = _F.squeeze(out, 0), _F.squeeze(indices, 0)
    return (out, indices) if return_indices else out


def fractional_max_pool2d(input, kernel_size, output_size=None, output_ratio=None,
                          return_indices=False, _random_samples=None):  # fmt: skip
    """Fractional max pooling over (N, C, H, W) or (C, H, W) input."""
    return _fractional(2, "fractional_max_pool2d", input, kernel_size, output_size,
                       output_ratio, return_indices, _random_samples)  # fmt: skip


def fractional_max_pool3d(input, kernel_size, output_size=None, output_ratio=None,
                          return_indices=False, _random_samples=None):  # fmt: skip
    """Fractional max pooling over (N, C, T, H, W) or (C, T, H, W) input."""
    return _fractional(3, "fractional_max_pool3d", input, kernel_size, output_size,
                       output_ratio, return_indices, _random_samples)  # fmt: skip


def fractional_max_pool2d_with_indices(input, kernel_size, output_size=None,
                                       output_ratio=None, return_indices=False,
                                       _random_samples=None):  # fmt: skip
    return fractional_max_pool2d(input, kernel_size, output_size, output_ratio, True,
                                 _random_samples)  # fmt: skip


def fractional_max_pool3d_with_indices(input, kernel_size, output_size=None,
                                       output_ratio=None, return_indices=False,
                                       _random_samples=None):  # fmt: skip
    return fractional_max_pool3d(input, kernel_size, output_size, output_ratio, True,
                                 _random_samples)  # fmt: skip


class _FractionalMaxPoolNd(Module):
    _nd = 0
    _fn = None

    def __init__(self, kernel_size, output_size=None, output_ratio=None,
                 return_indices: bool = False, _random_samples=None) -> None:  # fmt: skip
        super().__init__()
        name = type(self).__name__
        self.kernel_size = _tuple(kernel_size, self._nd)
        self.return_indices = return_indices
        self.register_buffer("_random_samples", _random_samples)
        self.output_size = _tuple(output_size, self._nd) if output_size is not None else None
        self.output_ratio = _tuple(output_ratio, self._nd) if output_ratio is not None else None
        if output_size is None and output_ratio is None:
            raise ValueError(
                f"{name} requires specifying either an output size, or a pooling ratio"
            )
        if output_size is not None and output_ratio is not None:
            raise ValueError("only one of output_size and output_ratio may be specified")
        if self.output_ratio is not None and not all(0 < r < 1 for r in self.output_ratio):
            raise ValueError(f"output_ratio must be between 0 and 1 (got {output_ratio})")

    def forward(self, input: Tensor):
        return type(self)._fn(
            input, self.kernel_size, self.output_size, self.output_ratio,
            self.return_indices, _random_samples=self._random_samples,
        )  # fmt: skip


class FractionalMaxPool2d(_FractionalMaxPoolNd):
    _nd = 2
    _fn = staticmethod(fractional_max_pool2d)


class FractionalMaxPool3d(_FractionalMaxPoolNd):
    _nd = 3
    _fn = staticmethod(fractional_max_pool3d)
