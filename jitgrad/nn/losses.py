"""nn.functional losses declared in the op table (``namespace="nn.functional"``): regression,
divergence and likelihood losses as composites of jitgrad ops (the margin and embedding losses
are in ``margin_losses``).

Each takes ``reduction='none'|'mean'|'sum'`` (and PyTorch's deprecated ``size_average`` /
``reduce`` where PyTorch still does).
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
