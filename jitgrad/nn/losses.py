"""nn.functional losses declared in the op table (``namespace="nn.functional"``): regression,
divergence, margin and embedding losses as composites of jitgrad ops.

Each takes ``reduction='none'|'mean'|'sum'`` (and PyTorch's deprecated ``size_average`` /
``reduce`` where PyTorch still does). Targets of ±1 (the embedding and margin losses) are
compared with 1 and -1 as PyTorch does: other values select neither branch.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..autograd import no_grad
from ..ops import functions as _F
from ..ops.registry import op
from ..ops.spec import Spec, arg
from ..tensor import Tensor
from .distance import pairwise_distance
from .functional import _check_same_size, _reduce, _reduction, logsigmoid

_NS = "nn.functional"


def _np_reduce(loss, reduction):
    return {"none": lambda v: v, "mean": np.mean, "sum": np.sum}[reduction](loss)


def _check_reduction(reduction: str) -> None:
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{reduction} is not a valid value for reduction")


def _pm1(t):
    """Spec helper: a 0/1 draw as a ±1 target (works on arrays and on either library's tensors)."""
    return t * 2 - 1


# -- regression -----------------------------------------------------------------------------------
def _huber_ref(x, y, reduction="mean", delta=1.0):
    z = np.abs(x - y)
    return _np_reduce(np.where(z < delta, 0.5 * z * z, delta * (z - 0.5 * delta)), reduction)


@op(
    namespace=_NS,
    spec=Spec(
        [arg(3, 4), arg(3, 4)],
        _huber_ref,
        params={"reduction": "sum", "delta": 0.7},
        differentiable=(0, 1),
        smooth=False,
    ),
)
def huber_loss(
    input: Tensor,
    target: Tensor,
    reduction: str = "mean",
    delta: float = 1.0,
    weight: Tensor | None = None,
) -> Tensor:
    """``0.5 d^2`` where ``|d| < delta``, else ``delta (|d| - delta / 2)``, for ``d = input -
    target``; ``weight`` (of input's shape) scales each element."""
    if delta <= 0:
        raise RuntimeError("huber_loss does not support non-positive values for delta.")
    _check_reduction(reduction)
    _check_same_size(input, target)
    d = _F.sub(input, target)
    z = _F.abs(d)
    loss = _F.where(
        _F.lt(z, delta), _F.mul(_F.mul(d, d), 0.5), _F.mul(_F.sub(z, 0.5 * delta), delta)
    )
    if input.dtype.is_floating_point and loss.dtype != input.dtype:
        loss = _F.cast(loss, input.dtype)  # PyTorch's huber_loss returns the input's dtype
    if weight is not None:
        if tuple(weight.shape) != tuple(input.shape):
            raise ValueError("Weights and input must have the same size.")
        loss = _F.mul(loss, weight)
    return _reduce(loss, reduction)


def _smooth_l1_ref(x, y, reduction="mean", beta=1.0):
    z = np.abs(x - y)
    if beta == 0:
        return _np_reduce(z, reduction)
    return _np_reduce(np.where(z < beta, 0.5 * z * z / beta, z - 0.5 * beta), reduction)


@op(
    namespace=_NS,
    spec=Spec(
        [arg(3, 4), arg(3, 4)],
        _smooth_l1_ref,
        params={"reduction": "mean", "beta": 0.7},
        differentiable=(0, 1),
        smooth=False,
    ),
)
def smooth_l1_loss(
    input: Tensor,
    target: Tensor,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
    beta: float = 1.0,
) -> Tensor:
    """``0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - beta / 2`` (``beta = 0``: L1)."""
    reduction = _reduction(size_average, reduce, reduction)
    if beta < 0:
        raise RuntimeError("smooth_l1_loss does not support negative values for beta.")
    _check_reduction(reduction)
    _check_same_size(input, target)
    d = _F.sub(input, target)
    z = _F.abs(d)
    if beta == 0:
        return _reduce(z, reduction)
    small = _F.mul(_F.mul(d, d), 0.5 / beta)
    return _reduce(_F.where(_F.lt(z, beta), small, _F.sub(z, 0.5 * beta)), reduction)


def _soft_margin_ref(x, y, reduction="mean"):
    return _np_reduce(np.log1p(np.exp(-y * x)), reduction)


@op(
    namespace=_NS,
    spec=Spec(
        [arg(3, 4), arg(3, 4, lo=-1.0, hi=1.0)],
        _soft_margin_ref,
        params={"reduction": "mean"},
        differentiable=(0,),
    ),
)
def soft_margin_loss(
    input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean"
) -> Tensor:
    """``log(1 + exp(-target * input))``."""
    reduction = _reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    # softplus(-y x) = -logsigmoid(y x), stable for large |y x|
    loss = _F.neg(logsigmoid(_F.mul(target, input)))
    if input.dtype.is_floating_point and loss.dtype != input.dtype:
        loss = _F.cast(loss, input.dtype)  # PyTorch's soft_margin_loss returns the input's dtype
    return _reduce(loss, reduction)


# -- divergences and likelihoods ------------------------------------------------------------------
def _kl_div_ref(x, t, reduction="mean", log_target=False):
    loss = np.exp(t) * (t - x) if log_target else t * (np.log(t) - x)
    if reduction == "batchmean":
        return loss.sum() / x.shape[0]
    return _np_reduce(loss, reduction)


@op(
    namespace=_NS,
    spec=Spec(
        [arg(3, 4), arg(3, 4, lo=0.1, hi=1.0)],
        _kl_div_ref,
        params={"reduction": "batchmean"},
        differentiable=(0, 1),
    ),
)
def kl_div(
    input: Tensor,
    target: Tensor,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
    log_target: bool = False,
) -> Tensor:
    """Pointwise ``target * (log target - input)`` (0 where target is 0), ``input`` holding
    log-probabilities; with ``log_target``, ``exp(target) * (target - input)``.
    ``'batchmean'`` divides the sum by the batch size (the KL divergence's definition)."""
    if size_average is not None or reduce is not None:
        reduction = _reduction(size_average, reduce, reduction)
    elif reduction == "mean":
        warnings.warn(
            "reduction: 'mean' divides the total loss by both the batch size and the support "
            "size.'batchmean' divides only by the batch size, and aligns with the KL div math "
            "definition.'mean' will be changed to behave the same as 'batchmean' in the next "
            "major release.",
            UserWarning,
            stacklevel=2,
        )
    if reduction not in ("none", "mean", "sum", "batchmean"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    if log_target:
        loss = _F.mul(_F.exp(target), _F.sub(target, input))
    else:
        loss = _F.sub(_F.xlogy(target, target), _F.mul(target, input))
    if reduction == "batchmean":
        total = _F.sum(loss)
        return _F.div(total, input.shape[0]) if input.ndim else total
    return _reduce(loss, reduction)


def _poisson_ref(x, t, log_input=True, full=False, eps=1e-8, reduction="mean"):
    loss = np.exp(x) - t * x if log_input else x - t * np.log(x + eps)
    if full:
        safe = np.where(t > 1, t, 1.0)
        stirling = safe * np.log(safe) - safe + 0.5 * np.log(2 * np.pi * safe)
        loss = loss + np.where(t > 1, stirling, 0.0)
    return _np_reduce(loss, reduction)


@op(
    namespace=_NS,
    spec=Spec(
        [arg(3, 4, lo=-1.0, hi=1.0), arg(3, 4, lo=0.0, hi=3.0, away_from=(1.0,))],
        _poisson_ref,
        params={"full": True, "reduction": "sum"},
        differentiable=(0,),
    ),
)
def poisson_nll_loss(
    input: Tensor,
    target: Tensor,
    log_input: bool = True,
    full: bool = False,
    size_average=None,
    eps: float = 1e-8,
    reduce=None,
    reduction: str = "mean",
) -> Tensor:
    """Poisson negative log likelihood: ``exp(input) - target * input`` (``log_input``), else
    ``input - target * log(input + eps)``; ``full`` adds Stirling's term where target > 1."""
    reduction = _reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if log_input:
        loss = _F.sub(_F.exp(input), _F.mul(target, input))
    else:
        loss = _F.sub(input, _F.mul(target, _F.log(_F.add(input, eps))))
    if full:
        big = _F.gt(target, 1)
        t = _F.where(big, target, 1.0)  # the log reads 1 where the term is masked out
        stirling = _F.add(
            _F.sub(_F.mul(t, _F.log(t)), t), _F.mul(_F.log(_F.mul(t, 2 * math.pi)), 0.5)
        )
        loss = _F.add(loss, _F.where(big, stirling, 0.0))
    return _reduce(loss, reduction)


def _gaussian_ref(x, t, var, full=False, eps=1e-6, reduction="mean"):
    v = np.maximum(var, eps)
    loss = 0.5 * (np.log(v) + (x - t) ** 2 / v)
    if full:
        loss = loss + 0.5 * np.log(2 * np.pi)
    return _np_reduce(loss, reduction)


@op(
    namespace=_NS,
    spec=Spec(
        [arg(3, 4), arg(3, 4), arg(3, 1, lo=0.2, hi=2.0)],
        _gaussian_ref,
        params={"full": True, "reduction": "mean"},
        differentiable=(0, 1, 2),
    ),
)
def gaussian_nll_loss(
    input: Tensor,
    target: Tensor,
    var,
    full: bool = False,
    eps: float = 1e-6,
    reduction: str = "mean",
) -> Tensor:
    """Gaussian negative log likelihood ``(log var + (input - target)^2 / var) / 2`` (``full``:
    plus ``log(2 pi) / 2``). ``var`` is a float, of input's shape, input's shape less its last
    dim, or broadcastable with one mismatched dim; it is clamped at ``eps`` without the clamp
    entering the gradient (PyTorch clamps a copy under no_grad)."""
    if isinstance(var, (int, float)):
        if var < 0:
            raise ValueError("var has negative entry/entries")
        var = _F.mul(_F.ones_like(input), float(var))
    else:
        # checked on the values at hand (under tracing, the traced call's), as class ranges are
        if (var._data < 0).any():
            raise ValueError("var has negative entry/entries")
    ishape, vshape = tuple(input.shape), tuple(var.shape)
    if vshape != ishape:
        if ishape[:-1] == vshape:
            var = _F.unsqueeze(var, -1)
        elif not (
            len(ishape) == len(vshape) and sum(v for i, v in zip(ishape, vshape) if i != v) == 1
        ):
            raise ValueError("var is of incorrect size")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(reduction + " is not valid")
    with no_grad():
        lift = _F.sub(_F.clamp(var, min=eps), var)
    var = _F.add(var, lift)
    d = _F.sub(input, target)
    loss = _F.mul(_F.add(_F.log(var), _F.div(_F.mul(d, d), var)), 0.5)
    if full:
        loss = _F.add(loss, 0.5 * math.log(2 * math.pi))
    return _reduce(loss, reduction)


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
