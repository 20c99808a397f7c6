"""``pad``: constant, reflect, replicate and circular padding of the trailing dims.

Constant padding is the ``pad`` primitive (zeros) with the fill added through a mask; other
modes read every output position from some input position: one ``take`` per padded dim with
an int64 index built once per configuration with NumPy (its gradient, scatter_add, adds the
mirrored positions back). Negative pads crop, with a ``slice``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..ops import functions as _F
from ..ops import prims as _P
from ..ops.registry import op
from ..ops.spec import Spec, arg
from ..tensor import Tensor, apply

__all__ = ["pad"]

_MODES = ("constant", "reflect", "replicate", "circular")


@lru_cache(maxsize=512)
def _mode_index(size: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """For each output position along a dim of ``size`` padded by (lo, hi) >= 0: the input
    position it reads."""
    i = np.arange(-lo, size + hi, dtype=np.int64)
    if mode == "reflect":
        period = 2 * (size - 1)
        i = np.abs(i) % period if period else np.zeros_like(i)
        i = np.where(i >= size, period - i, i)
    elif mode == "replicate":
        i = np.clip(i, 0, size - 1)
    else:  # circular
        i = i % size
    i.flags.writeable = False
    return i


def _check_non_constant(x: Tensor, pairs: list, mode: str) -> None:
    n = len(pairs)
    if n > 3 or x.ndim not in (n + 1, n + 2):
        raise NotImplementedError(
            f"Padding size {2 * n} is not supported for {x.ndim}D input tensor.\n"
            "Supported combinations for non-constant padding:\n"
            "  - 2D or 3D input: padding size = 2 (pads last dimension)\n"
            "  - 3D or 4D input: padding size = 4 (pads last 2 dimensions)\n"
            "  - 4D or 5D input: padding size = 6 (pads last 3 dimensions)"
        )
    for k, (lo, hi) in enumerate(pairs):
        dim = x.ndim - 1 - k
        size = x.shape[dim]
        if mode == "reflect" and (lo >= size or hi >= size):
            raise RuntimeError(
                f"Argument #{4 + 2 * k}: Padding size should be less than the corresponding "
                f"input dimension, but got: padding ({lo}, {hi}) at dimension {dim} of input "
                f"{list(x.shape)}"
            )
        if mode == "circular" and (lo > size or hi > size):
            raise RuntimeError("Padding value causes wrapping around more than once.")


def _pad_ref(x, pad, mode="constant", value=None):
    """NumPy's pad over the trailing dims (negative pads crop first, as PyTorch)."""
    pairs = [(pad[2 * k], pad[2 * k + 1]) for k in range(len(pad) // 2)]
    widths = [(0, 0)] * (x.ndim - len(pairs)) + pairs[::-1]
    np_mode = {"replicate": "edge", "circular": "wrap"}.get(mode, mode)
    kw = {"constant_values": value or 0} if mode == "constant" else {}
    if mode in ("reflect", "replicate"):  # pad, then crop
        out = np.pad(x, [(max(lo, 0), max(hi, 0)) for lo, hi in widths], np_mode)
        crop = tuple(
            slice(max(-lo, 0), out.shape[d] - max(-hi, 0)) for d, (lo, hi) in enumerate(widths)
        )
        return out[crop]
    crop = tuple(slice(max(-lo, 0), x.shape[d] - max(-hi, 0)) for d, (lo, hi) in enumerate(widths))
    return np.pad(x[crop], [(max(lo, 0), max(hi, 0)) for lo, hi in widths], np_mode, **kw)


_PAD_SPEC = dict(differentiable=(0,), linear=True)


@op(
    namespace="nn.functional",
    spec=Spec([arg(2, 3, 4), (1, 2, -1, 1)], _pad_ref, params={"mode": "reflect"}, **_PAD_SPEC),
)
def pad(input: Tensor, pad, mode: str = "constant", value: float | None = None) -> Tensor:
    """Pad the last ``len(pad) // 2`` dims of ``input``: ``pad`` is (left, right) of the last
    dim, then of the one before, ...; negative entries crop."""
    pad = [int(p) for p in pad]
    if len(pad) % 2:
        raise RuntimeError("Padding length must be divisible by 2")
    if len(pad) // 2 > input.ndim:
        raise RuntimeError(
            "Padding length should be less than or equal to two times the input dimension but "
            f"got padding length {len(pad)} and input of dimension {input.ndim}"
        )
    if mode not in _MODES:
        raise NotImplementedError(f"Unrecognised padding mode {mode}")
    if mode != "constant" and value is not None and value != 0:
        raise RuntimeError(f'Padding mode "{mode}" doesn\'t take in value argument')
    pairs = [(pad[2 * k], pad[2 * k + 1]) for k in range(len(pad) // 2)]
    x = input
    if mode != "constant":
        _check_non_constant(x, pairs, mode)
    if mode in ("reflect", "replicate"):  # (a negative pad crops what the index reads)
        for k, (lo, hi) in enumerate(pairs):
            d = x.ndim - 1 - k
            if lo or hi:
                index = Tensor._wrap(_mode_index(x.shape[d], lo, hi, mode))
                x = apply(_P.take_p, (x, index), {"axis": d})  # the index is in range
        return x if x is not input else _F.clone(x)
    # crop first (negative pads), then grow
    shape = tuple(x.shape)
    starts, stops = [0] * x.ndim, list(shape)
    for k, (lo, hi) in enumerate(pairs):
        d = x.ndim - 1 - k
        starts[d], stops[d] = max(-lo, 0), shape[d] - max(-hi, 0)
        if stops[d] < starts[d] or (mode == "circular" and stops[d] == starts[d]):
            if mode == "circular":
                raise RuntimeError("Negative padding value is resulting in an empty dimension")
            raise RuntimeError(
                f"narrow(): length must be non-negative. (The input size {shape[d]}, plus "
                f"negative padding {min(lo, 0)} and {min(hi, 0)}, is negative at dimension {d}: "
                "crop less.)"
            )
    if tuple(starts) != (0,) * x.ndim or tuple(stops) != shape:
        x = _F.slice_(x, starts, stops, (1,) * x.ndim)
    grow = [(max(lo, 0), max(hi, 0)) for lo, hi in pairs]
    if all(g == (0, 0) for g in grow):
        return x if x is not input else _F.clone(x)
    if mode == "constant":
        widths = [(0, 0, 0)] * (x.ndim - len(grow)) + [(lo, hi, 0) for lo, hi in grow[::-1]]
        out = _F.pad_interior(x, widths)
        if value:
            inner = np.ones(tuple(x.shape), bool)
            mask = np.pad(inner, [(lo, hi) for lo, hi, _ in widths])
            out = _F.where(Tensor._wrap(mask), out, _fill(value, x))
        return out
    for k, (lo, hi) in enumerate(grow):  # circular, on the cropped input
        if lo or hi:
            d = x.ndim - 1 - k
            index = Tensor._wrap(_mode_index(x.shape[d], lo, hi, mode))
            x = apply(_P.take_p, (x, index), {"axis": d})
    return x


def _fill(value, x: Tensor):
    """The fill in the input's dtype (an integer tensor truncates it, as PyTorch)."""
    if x.dtype.is_floating_point:
        return float(value)
    if x.dtype.np.kind == "b":
        return bool(value)
    return int(value)
