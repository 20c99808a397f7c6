"""``multilabel_margin_loss``, ``triplet_margin_with_distance_loss`` and ``linear_cross_entropy``
(their modules: ``more_layers.py``, ``linear_ce.py``)."""

from __future__ import annotations

import dataclasses
import math

from ..factories import arange
from ..ops import functions as _F
from ..tensor import Tensor
from . import functional as F
from .distance import pairwise_distance

__all__ = [
    "multilabel_margin_loss",
    "triplet_margin_with_distance_loss",
    "linear_cross_entropy",
    "LinearCrossEntropyOptions",
]


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


# -- linear_cross_entropy: PyTorch can compute it in batch chunks (``options``) so the full
# logits never exist at once; that changes the memory used, not the result. Here the logits
# and the loss are computed as PyTorch's reference path does; ``options`` are accepted.
@dataclasses.dataclass
class LinearCrossEntropyOptions:
    """PyTorch's chunking options (kept for compatibility; the result does not depend on them)."""

    allow_retain_graph: bool = False
    batch_chunk_size: int | None = None
    chunking_method: str | None = "auto"
    acc_policy: str = "auto"
    acc_dtype: object = None


def linear_cross_entropy(input: Tensor, linear_weight: Tensor, target: Tensor, *,
                         linear_bias: Tensor | None = None, weight: Tensor | None = None,
                         reduction: str = "mean", ignore_index: int | None = None,
                         label_smoothing: float = 0.0, options=None) -> Tensor:  # fmt: skip
    """``cross_entropy(linear(input, W, b), target)`` with W (C, *out_features, in_features)."""
    if input.ndim < 1 or input.ndim > 2:
        raise RuntimeError(f"expected input with dimensionality 1 or 2, got {input.ndim}")
    if linear_weight.ndim < 2:
        raise RuntimeError(
            f"expected linear_weight with dimensionality at least 2, got {linear_weight.ndim}"
        )
    batches, in_features = tuple(input.shape[:-1]), input.shape[-1]
    if in_features != linear_weight.shape[-1]:
        raise RuntimeError(
            "expected equal input and linear_weight last dimensions (in_features), "
            f"got {input.shape[-1]} and {linear_weight.shape[-1]}, respectively"
        )
    num_classes = linear_weight.shape[0]
    out_features = tuple(linear_weight.shape[1:-1])
    if linear_bias is not None and tuple(linear_bias.shape) != (num_classes, *out_features):
        raise RuntimeError(
            f"expected linear_bias shape {(num_classes, *out_features)}, got "
            f"{tuple(linear_bias.shape)}"
        )
    if out_features and not batches:
        raise RuntimeError(
            f"K-dimensional loss defined by linear_weight shape {tuple(linear_weight.shape)} "
            f"requires batched input, (N, {in_features}), got unbatched input with shape "
            f"{tuple(input.shape)}"
        )
    logits_shape = (*batches, num_classes, *out_features)
    if tuple(target.shape) == logits_shape and ignore_index is not None:
        raise RuntimeError("ignore_index cannot be specified when target contains probabilities")
    ignore_index = ignore_index if ignore_index is not None else -100
    rows = math.prod(out_features, start=num_classes)
    w = _F.reshape(linear_weight, (rows, in_features)) if out_features else linear_weight
    b = linear_bias
    if b is not None and out_features:
        b = _F.reshape(b, (rows,))
    logits = _F.reshape(F.linear(input, w, b), logits_shape)
    return F.cross_entropy(
        logits, target, weight=weight, reduction=reduction, ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )  # fmt: skip
