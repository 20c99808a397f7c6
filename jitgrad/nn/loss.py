"""Loss modules: thin wrappers that hold options and call ``nn.functional``."""

from __future__ import annotations

from ..tensor import Tensor
from . import functional as F
from .functional import _reduction
from .module import Module
from .wrap import functional_module


class _Loss(Module):
    def __init__(self, size_average=None, reduce=None, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = _reduction(size_average, reduce, reduction)


class _WeightedLoss(_Loss):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean") -> None:
        super().__init__(size_average, reduce, reduction)
        # a buffer: it follows .to(dtype) and lands in the state_dict, as in PyTorch
        self.register_buffer("weight", weight)


class MSELoss(_Loss):
    """Mean squared error."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """Mean absolute error."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.l1_loss(input, target, reduction=self.reduction)


class NLLLoss(_WeightedLoss):
    """Negative log likelihood of class-index targets given log-probabilities."""

    def __init__(
        self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
        reduction: str = "mean",
    ) -> None:  # fmt: skip
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.nll_loss(
            input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction
        )


class CrossEntropyLoss(_WeightedLoss):
    """Cross entropy of logits against class indices (or class probabilities)."""

    def __init__(
        self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
        reduction: str = "mean", label_smoothing: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(
            input,
            target,
            self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )


class BCEWithLogitsLoss(_Loss):
    """Binary cross entropy on logits (stable), with optional ``weight`` and ``pos_weight``."""

    def __init__(
        self, weight=None, size_average=None, reduce=None, reduction: str = "mean",
        pos_weight=None,
    ) -> None:  # fmt: skip
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(
            input, target, self.weight, pos_weight=self.pos_weight, reduction=self.reduction
        )


class BCELoss(_WeightedLoss):
    """Binary cross entropy on probabilities (prefer BCEWithLogitsLoss)."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy(input, target, self.weight, reduction=self.reduction)


# Losses that hold only their options (one declaration each; see ``wrap``)
def _loss(name: str, fn, ctor, **kw) -> type:
    return functional_module(name, fn, ctor, base=_Loss, repr_options=False, **kw)


def _ctor_reduction(size_average=None, reduce=None, reduction: str = "mean"): ...
def _ctor_poisson(
    log_input=True, full=False, size_average=None, eps=1e-8, reduce=None, reduction="mean"
): ...
def _ctor_triplet(
    margin=1.0, p=2.0, eps=1e-6, swap=False, size_average=None, reduce=None, reduction="mean"
): ...


HuberLoss = _loss("HuberLoss", F.huber_loss, lambda reduction="mean", delta=1.0: None)
SmoothL1Loss = _loss(
    "SmoothL1Loss",
    F.smooth_l1_loss,
    lambda size_average=None, reduce=None, reduction="mean", beta=1.0: None,
)
SoftMarginLoss = _loss("SoftMarginLoss", F.soft_margin_loss, _ctor_reduction)
KLDivLoss = _loss(
    "KLDivLoss",
    F.kl_div,
    lambda size_average=None, reduce=None, reduction="mean", log_target=False: None,
)
PoissonNLLLoss = _loss(
    "PoissonNLLLoss",
    F.poisson_nll_loss,
    _ctor_poisson,
)
GaussianNLLLoss = _loss(
    "GaussianNLLLoss", F.gaussian_nll_loss, lambda *, full=False, eps=1e-6, reduction="mean": None
)
CosineEmbeddingLoss = _loss(
    "CosineEmbeddingLoss",
    F.cosine_embedding_loss,
    lambda margin=0.0, size_average=None, reduce=None, reduction="mean": None,
)
MarginRankingLoss = _loss(
    "MarginRankingLoss",
    F.margin_ranking_loss,
    lambda margin=0.0, size_average=None, reduce=None, reduction="mean": None,
)
HingeEmbeddingLoss = _loss(
    "HingeEmbeddingLoss",
    F.hinge_embedding_loss,
    lambda margin=1.0, size_average=None, reduce=None, reduction="mean": None,
)
TripletMarginLoss = _loss(
    "TripletMarginLoss",
    F.triplet_margin_loss,
    _ctor_triplet,
)
MultiMarginLoss = _loss(
    "MultiMarginLoss",
    F.multi_margin_loss,
    lambda p=1, margin=1.0, weight=None, size_average=None, reduce=None, reduction="mean": None,
    buffers=("weight",),
)
MultiLabelSoftMarginLoss = _loss(
    "MultiLabelSoftMarginLoss",
    F.multilabel_soft_margin_loss,
    lambda weight=None, size_average=None, reduce=None, reduction="mean": None,
    buffers=("weight",),
)
CTCLoss = _loss("CTCLoss", F.ctc_loss, lambda blank=0, reduction="mean", zero_infinity=False: None)


class NLLLoss2d(NLLLoss):
    """Deprecated alias of ``NLLLoss`` (which takes (N, C, H, W) input itself)."""
