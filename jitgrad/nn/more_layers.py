"""The remaining small modules: MultiLabelMarginLoss, TripletMarginWithDistanceLoss, Softmax2d,
CosineSimilarity and PairwiseDistance."""

from __future__ import annotations

from ..tensor import Tensor
from . import functional as F
from .distance import cosine_similarity, pairwise_distance
from .loss import _Loss, _loss
from .module import Module
from .more_functional import multilabel_margin_loss, triplet_margin_with_distance_loss
from .wrap import functional_module

__all__ = [
    "MultiLabelMarginLoss",
    "TripletMarginWithDistanceLoss",
    "Softmax2d",
    "CosineSimilarity",
    "PairwiseDistance",
]


MultiLabelMarginLoss = _loss(
    "MultiLabelMarginLoss",
    multilabel_margin_loss,
    lambda size_average=None, reduce=None, reduction="mean": None,
)


class TripletMarginWithDistanceLoss(_Loss):
    def __init__(self, *, distance_function=None, margin: float = 1.0, swap: bool = False,
                 reduction: str = "mean") -> None:  # fmt: skip
        super().__init__()
        if margin <= 0:
            raise ValueError(
                f"TripletMarginWithDistanceLoss: expected margin to be greater than 0, got "
                f"{margin} instead"
            )
        self.reduction = reduction
        self.distance_function = (
            distance_function if distance_function is not None else PairwiseDistance()
        )
        self.margin, self.swap = margin, swap

    def forward(self, anchor: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        return triplet_margin_with_distance_loss(
            anchor, positive, negative, distance_function=self.distance_function,
            margin=self.margin, swap=self.swap, reduction=self.reduction,
        )  # fmt: skip


class Softmax2d(Module):
    """Softmax over the channels of (N, C, H, W) or (C, H, W) input."""

    def forward(self, input: Tensor) -> Tensor:
        if input.ndim not in (3, 4):
            raise ValueError(f"Softmax2d: expected input to be 3D or 4D, got {input.ndim}D instead")
        return F.softmax(input, -3)


CosineSimilarity = functional_module(
    "CosineSimilarity", cosine_similarity, lambda dim=1, eps=1e-8: None, repr_options=False
)


class PairwiseDistance(Module):
    """The ``p``-norm distance between rows of ``x1`` and ``x2`` (PyTorch keeps p as ``norm``)."""

    def __init__(self, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> None:
        super().__init__()
        self.norm, self.eps, self.keepdim = p, eps, keepdim

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return pairwise_distance(x1, x2, self.norm, self.eps, self.keepdim)
