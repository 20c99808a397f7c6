"""``multilabel_margin_loss`` and ``triplet_margin_with_distance_loss`` (their modules:
``more_layers.py``)."""

from __future__ import annotations

from ..factories import arange
from ..ops import functions as _F
from ..tensor import Tensor
from . import functional as F
from .distance import pairwise_distance

__all__ = ["multilabel_margin_loss", "triplet_margin_with_distance_loss"]


def multilabel_margin_loss(
    input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean"
) -> Tensor:
    """``sum_j sum_{i not a target} max(0, 1 - (x[y_j] - x[i])) / C`` per sample, where the
    targets y_j are the entries of ``target`` before its first -1."""
    reduction = F._reduction(size_average, reduce, reduction)
    if input.ndim not in (1, 2) or tuple(target.shape) != tuple(input.shape):
        raise RuntimeError(
            "inconsistent target size: "
            f"{list(target.shape)} for input of size: {list(input.shape)}; multilabel_margin_loss "
            "takes (C) or (N, C) input and an int64 target of the same shape."
        )
    unbatched = input.ndim == 1
    x = _F.unsqueeze(input, 0) if unbatched else input
    y = _F.unsqueeze(target, 0) if unbatched else target
    c = x.shape[1]
    # the targets are the entries before the first -1
    valid = _F.eq(_F.cumsum(_F.cast(_F.eq(y, -1), x.dtype), 1), 0.0)
    picked = _F.clamp(y, min=0)
    classes = _F.reshape(arange(c), (1, 1, c))
    hits = _F.logical_and(_F.unsqueeze(valid, 2), _F.eq(_F.unsqueeze(picked, 2), classes))
    is_target = _F.any(hits, 1)  # (N, C)
    x_target = _F.gather(x, 1, picked)  # (N, J)
    margins = _F.relu(
        _F.add(_F.rsub(_F.unsqueeze(x_target, 2), 1.0), _F.unsqueeze(x, 1))
    )  # (N, J, C): 1 - (x[y_j] - x[i])
    keep = _F.logical_and(_F.unsqueeze(valid, 2), _F.unsqueeze(_F.logical_not(is_target), 1))
    loss = _F.div(_F.sum(_F.where(keep, margins, 0.0), (1, 2)), c)
    if unbatched:
        loss = _F.squeeze(loss, 0)
    return F._reduce(loss, reduction)


def triplet_margin_with_distance_loss(
    anchor: Tensor, positive: Tensor, negative: Tensor, *, distance_function=None,
    margin: float = 1.0, swap: bool = False, reduction: str = "mean",
) -> Tensor:  # fmt: skip
    """``max(d(a, p) - d(a, n) + margin, 0)`` with any distance ``d`` (pairwise_distance by
    default); ``swap`` uses ``min(d(a, n), d(p, n))`` for the negative distance."""
    if margin <= 0:
        raise ValueError(
            "triplet_margin_with_distance_loss: expected margin to be greater than 0, got "
            f"{margin} instead"
        )
    dist = distance_function if distance_function is not None else pairwise_distance
    d_pos = dist(anchor, positive)
    d_neg = dist(anchor, negative)
    if swap:
        d_neg = _F.minimum(d_neg, dist(positive, negative))
    loss = _F.clamp(_F.add(_F.sub(d_pos, d_neg), margin), min=0.0)
    return F._reduce(loss, reduction)
