"""nn.functional margin and embedding losses declared in the op table: cosine embedding,
margin ranking, hinge embedding, triplet margin, multi-class and multi-label margins.

Targets of ±1 are compared with 1 and -1 as PyTorch does: other values select neither branch
(or, for hinge_embedding_loss, both).
"""

from __future__ import annotations

import numpy as np

from ..ops import functions as _F
from ..ops.registry import op
from ..ops.spec import Spec, arg
from ..tensor import Tensor
from .distance import pairwise_distance
from .functional import _reduce, _reduction, logsigmoid
from .losses import _check_reduction, _np_reduce, _pm1

_NS = "nn.functional"


# -- margins and embeddings -----------------------------------------------------------------------
_COS_EPS = 1e-12  # PyTorch's EPSILON in cosine_embedding_loss


def _cosine_embedding_ref(x1, x2, t, margin=0.0, reduction="mean"):
    t = _pm1(t)
    cos = (x1 * x2).sum(-1) / np.sqrt(
        ((x1 * x1).sum(-1) + _COS_EPS) * ((x2 * x2).sum(-1) + _COS_EPS)
    )
    loss = np.where(t == 1, 1 - cos, 0.0) + np.where(t == -1, np.maximum(cos - margin, 0), 0.0)
    return _np_reduce(loss, reduction)


@op(
    namespace=_NS,
    spec=Spec(
        [arg(3, 4), arg(3, 4), arg(3, kind="int", lo=0, hi=2)],
        _cosine_embedding_ref,
        params={"margin": -0.9, "reduction": "sum"},
        differentiable=(0, 1),
        call=lambda f, x1, x2, t, **kw: f(x1, x2, _pm1(t), **kw),
    ),
)
def cosine_embedding_loss(
    input1: Tensor,
    input2: Tensor,
    target: Tensor,
    margin: float = 0,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
) -> Tensor:
    """``1 - cos(x1, x2)`` where target is 1, ``max(0, cos(x1, x2) - margin)`` where it is -1."""
    reduction = _reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    tdim = target.ndim
    if tdim > 1:
        raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
    if tdim == 1 and (input1.ndim != 2 or input2.ndim != 2):
        raise RuntimeError(
            f"1D target tensor expects 2D input tensors, but found inputs with sizes "
            f"{list(input1.shape)} and {list(input2.shape)}."
        )
    if tdim == 0 and (input1.ndim != 1 or input2.ndim != 1):
        raise RuntimeError(
            f"0D target tensor expects 1D input tensors, but found inputs with sizes "
            f"{list(input1.shape)} and {list(input2.shape)}."
        )
    prod = _F.sum(_F.mul(input1, input2), tdim)
    mag1 = _F.add(_F.sum(_F.mul(input1, input1), tdim), _COS_EPS)
    mag2 = _F.add(_F.sum(_F.mul(input2, input2), tdim), _COS_EPS)
    cos = _F.div(prod, _F.sqrt(_F.mul(mag1, mag2)))
    pos = _F.where(_F.eq(target, 1), _F.rsub(cos, 1.0), 0.0)
    neg = _F.where(_F.eq(target, -1), _F.clamp(_F.sub(cos, margin), min=0.0), 0.0)
    return _reduce(_F.add(pos, neg), reduction)


def _margin_ranking_ref(x1, x2, t, margin=0.0, reduction="mean"):
    return _np_reduce(np.maximum(-_pm1(t) * (x1 - x2) + margin, 0), reduction)


@op(
    namespace=_NS,
    spec=Spec(
        [arg(5), arg(5), arg(5, kind="int", lo=0, hi=2)],
        _margin_ranking_ref,
        params={"margin": 0.3, "reduction": "none"},
        differentiable=(0, 1),
        smooth=False,
        call=lambda f, x1, x2, t, **kw: f(x1, x2, _pm1(t), **kw),
    ),
)
def margin_ranking_loss(
    input1: Tensor,
    input2: Tensor,
    target: Tensor,
    margin: float = 0,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
) -> Tensor:
    """``max(0, -target * (input1 - input2) + margin)``."""
    reduction = _reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if input1.ndim != input2.ndim or input1.ndim != target.ndim:
        raise RuntimeError(
            "margin_ranking_loss : All input tensors should have same dimension but got sizes: "
            f"input1: {_size(input1)}, input2: {_size(input2)}, target: {_size(target)} "
        )
    gap = _F.add(_F.mul(_F.neg(target), _F.sub(input1, input2)), margin)
    return _reduce(_F.clamp(gap, min=0.0), reduction)


def _size(t: Tensor) -> str:
    return f"torch.Size({list(t.shape)})"


def _hinge_ref(x, t, margin=1.0, reduction="mean"):
    t = _pm1(t)
    loss = np.where(t != 1, np.maximum(margin - x, 0), 0.0) + np.where(t != -1, x, 0.0)
    return _np_reduce(loss, reduction)


@op(
    namespace=_NS,
    spec=Spec(
        [arg(3, 4, away_from=(0.5,)), arg(3, 4, kind="int", lo=0, hi=2)],
        _hinge_ref,
        params={"margin": 0.5, "reduction": "mean"},
        differentiable=(0,),
        smooth=False,
        call=lambda f, x, t, **kw: f(x, _pm1(t), **kw),
    ),
)
def hinge_embedding_loss(
    input: Tensor,
    target: Tensor,
    margin: float = 1.0,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
) -> Tensor:
    """``input`` where target is 1, ``max(0, margin - input)`` where it is -1 (PyTorch's sum of
    the two selections: other target values add both)."""
    reduction = _reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    hinge = _F.where(_F.ne(target, 1), _F.clamp(_F.rsub(input, margin), min=0.0), 0.0)
    own = _F.where(_F.ne(target, -1), input, 0.0)
    return _reduce(_F.add(hinge, own), reduction)


def _triplet_ref(a, p, n, margin=1.0, p_norm=2.0, eps=1e-6, swap=False, reduction="mean"):
    def dist(x, y):
        return (np.abs(x - y + eps) ** p_norm).sum(-1) ** (1 / p_norm)

    d_pos, d_neg = dist(a, p), dist(a, n)
    if swap:
        d_neg = np.minimum(d_neg, dist(p, n))
    return _np_reduce(np.maximum(margin + d_pos - d_neg, 0), reduction)


@op(
    namespace=_NS,
    spec=Spec(
        [arg(3, 4), arg(3, 4), arg(3, 4)],
        lambda a, p, n, margin, p_norm, swap, reduction: _triplet_ref(
            a, p, n, margin, p_norm, 1e-6, swap, reduction
        ),
        params={"margin": 2.0, "p_norm": 3.0, "swap": True, "reduction": "sum"},
        differentiable=(0, 1, 2),
        smooth=False,
        call=lambda f, a, p, n, p_norm, **kw: f(a, p, n, p=p_norm, **kw),
    ),
)
def triplet_margin_loss(
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    margin: float = 1.0,
    p: float = 2,
    eps: float = 1e-6,
    swap: bool = False,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
) -> Tensor:
    """``max(0, margin + d(a, p) - d(a, n))`` with ``d`` the pairwise p-norm distance; ``swap``
    uses ``min(d(a, n), d(p, n))`` for the negative distance."""
    reduction = _reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    dims = (anchor.ndim, positive.ndim, negative.ndim)
    if len(set(dims)) != 1:
        raise RuntimeError(
            "The anchor, positive, and negative tensors are expected to have the same number of "
            f"dimensions, but got: anchor {dims[0]}D, positive {dims[1]}D, and negative "
            f"{dims[2]}D inputs"
        )
    d_pos = pairwise_distance(anchor, positive, p, eps)
    d_neg = pairwise_distance(anchor, negative, p, eps)
    if swap:
        d_neg = _F.minimum(d_neg, pairwise_distance(positive, negative, p, eps))
    return _reduce(_F.clamp(_F.sub(_F.add(d_pos, margin), d_neg), min=0.0), reduction)


def _multi_margin_ref(x, y, p=1, margin=1.0, weight=None, reduction="mean"):
    x2 = np.atleast_2d(x)
    y1 = np.atleast_1d(y)
    picked = x2[np.arange(len(y1)), y1][:, None]
    z = np.maximum(margin - picked + x2, 0) ** p
    z[np.arange(len(y1)), y1] = 0
    if weight is not None:
        z = z * weight[y1][:, None]
    loss = z.sum(1) / x2.shape[1]
    return _np_reduce(loss if x.ndim == 2 else loss[0], reduction)


@op(
    namespace=_NS,
    spec=Spec(
        [arg(4, 5), arg(4, kind="int", lo=0, hi=5)],
        _multi_margin_ref,
        params={"p": 2, "margin": 0.8, "reduction": "none"},
        differentiable=(0,),
        smooth=False,
    ),
)
def multi_margin_loss(
    input: Tensor,
    target: Tensor,
    p: int = 1,
    margin: float = 1.0,
    weight: Tensor | None = None,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
) -> Tensor:
    """Multi-class hinge: ``sum_{j != y} max(0, margin - x[y] + x[j])^p / C`` per sample,
    scaled by ``weight[y]``."""
    reduction = _reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if p not in (1, 2):
        raise ValueError("only p == 1 and p == 2 supported")
    if input.ndim > 2 or (input.ndim == 2 and input.shape[1] == 0) or input.numel() == 0:
        raise RuntimeError(
            "Expected non-empty vector or matrix with optional 0-dim batch size, but got: "
            f"{list(input.shape)}"
        )
    x = _F.reshape(input, (1, -1)) if input.ndim < 2 else input
    n, c = x.shape
    if target.ndim > 1 or target.numel() != n:
        raise RuntimeError(
            "multi_margin_loss: target tensor should be 1-D with size equal to the number of "
            f"input samples (batch size). Expected target size [{n}], but got "
            f"{list(target.shape)}. Input has shape {list(input.shape)}."
        )
    if weight is not None and (weight.ndim != 1 or weight.numel() != c):
        raise RuntimeError(f"inconsistent weight size, expected {c} but got {list(weight.shape)}")
    t = _F.reshape(target, (n,))
    if n and ((t._data < 0).any() or (t._data >= c).any()):
        raise RuntimeError("target out of range")
    own = _F.eq(_F.unsqueeze(t, 1), Tensor._wrap(np.arange(c, dtype=np.int64)))
    picked = _F.sum(_F.where(own, x, 0.0), 1, keepdim=True)
    z = _F.add(_F.sub(x, picked), margin)
    h = _F.where(_F.logical_and(_F.gt(z, 0), _F.logical_not(own)), z, 0.0)
    if p == 2:
        h = _F.mul(h, h)
    if weight is not None:
        h = _F.mul(h, _F.unsqueeze(_F.take(weight, t), 1))
    loss = _F.div(_F.sum(h, 1), c)
    if input.ndim < 2:
        loss = _F.reshape(loss, ())
    return _reduce(loss, reduction)


def _multilabel_soft_margin_ref(x, t, weight=None, reduction="mean"):
    logsig = -np.log1p(np.exp(-x))
    loss = -(t * logsig + (1 - t) * (logsig - x))
    if weight is not None:
        loss = loss * weight
    return _np_reduce(loss.sum(-1) / x.shape[-1], reduction)


@op(
    namespace=_NS,
    spec=Spec(
        [arg(3, 4), arg(3, 4, lo=0.0, hi=1.0), arg(4, lo=0.5, hi=1.5)],
        _multilabel_soft_margin_ref,
        params={"reduction": "mean"},
        differentiable=(0, 1, 2),
    ),
)
def multilabel_soft_margin_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
) -> Tensor:
    """``-(t log sigmoid(x) + (1 - t) log sigmoid(-x))``, weighted, averaged over the classes
    (the last dim)."""
    reduction = _reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    loss = _F.neg(
        _F.add(
            _F.mul(target, logsigmoid(input)),
            _F.mul(_F.rsub(target, 1.0), logsigmoid(_F.neg(input))),
        )
    )
    if weight is not None:
        loss = _F.mul(loss, weight)
    class_dim = input.ndim - 1
    loss = _F.div(_F.sum(loss, class_dim), input.shape[class_dim])
    return _reduce(loss, reduction)
