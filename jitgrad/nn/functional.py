"""``jitgrad.nn.functional``: activations and losses as composites of jitgrad ops.

Everything here is ordinary jitgrad code (no Python branches on tensor values), so eager runs,
autograd and tracing share one path. ``linear`` and the common case of ``cross_entropy`` apply a
fused primitive (``jitgrad.ops.prims_fused``) for eager speed; traced, it decomposes into the
same composite. The activations that already live in
``jitgrad.ops.functions`` are re-exported rather than rewritten.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .. import dtypes
from .. import random as _random
from ..ops import functions as _F
from ..ops import prims as _P
from ..ops.functions import elu as _elu
from ..ops.functions import (  # noqa: F401  (re-exported: the one definition of each)
    gelu,
    logsumexp,
    sigmoid,
    softplus,
    tanh,
)
from ..ops.functions import leaky_relu as _leaky_relu
from ..ops.functions import log_softmax as _log_softmax
from ..ops.functions import relu as _relu
from ..ops.functions import silu as _silu
from ..ops.functions import softmax as _softmax
from ..ops.registry import export as _export
from ..ops.registry import op
from ..ops.spec import Spec, arg
from ..tensor import Tensor, apply

__all__ = [
    "relu",
    "sigmoid",
    "tanh",
    "softmax",
    "log_softmax",
    "linear",
    "mse_loss",
    "l1_loss",
    "cross_entropy",
    "nll_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "dropout",
    "gelu",
    "silu",
    "softplus",
    "leaky_relu",
    "elu",
    "logsigmoid",
    "one_hot",
    "logsumexp",
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "layer_norm",
    "batch_norm",
    "embedding",
]


# -- activations ----------------------------------------------------------------------------------
def relu(input: Tensor, inplace: bool = False) -> Tensor:
    return input.relu_() if inplace else _relu(input)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    if inplace:
        return input.copy_(_leaky_relu(input, negative_slope))
    return _leaky_relu(input, negative_slope)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    return input.copy_(_elu(input, alpha)) if inplace else _elu(input, alpha)


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    return input.copy_(_silu(input)) if inplace else _silu(input)


def logsigmoid(input: Tensor) -> Tensor:
    # log sigmoid(x) = -softplus(-x), stable for large |x|
    return _F.neg(_softplus_stable(_F.neg(input)))


def _softmax_dim(name: str, ndim: int) -> int:
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated. Change the call to include "
        "dim=X as an argument.",
        UserWarning,
        stacklevel=3,
    )
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    if dim is None:
        dim = _softmax_dim("softmax", input.ndim)
    return _softmax(input, dim, dtype=dtype)


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    if dim is None:
        dim = _softmax_dim("log_softmax", input.ndim)
    return _log_softmax(input, dim, dtype=dtype)


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``input @ weight.T + bias``: one fused primitive for a batch of rows, else the composite."""
    x, w = input._data, weight._data
    if x.ndim > 2 and w.ndim == 2 and x.shape[-1] == w.shape[1]:
        # rows of a batch of sequences (B, T, in): one product over all B*T rows
        out = linear(input.reshape(-1, x.shape[-1]), weight, bias)
        return out.reshape(*x.shape[:-1], w.shape[0])
    if (
        x.ndim == 2
        and w.ndim == 2
        and x.dtype.kind == "f"
        and w.dtype == x.dtype
        and x.shape[1] == w.shape[1]
        and (bias is None or (bias._data.dtype == x.dtype and bias._data.shape == w.shape[:1]))
    ):
        args = (input, weight) if bias is None else (input, weight, bias)
        return apply(_P.linear_p, args)
    return _P.linear_composite(input, weight, bias)


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1/(1-p)``."""
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        scale = _F.const(0.0, input.dtype)
    else:
        # the kept mask, scaled once (like PyTorch's noise.div_(1 - p))
        mask = _random.bernoulli_mask(tuple(input.shape), p, input.dtype)
        scale = _F.div(mask, 1.0 - p)
    return input.mul_(scale) if inplace else _F.mul(input, scale)


@op(
    namespace="nn.functional",
    spec=Spec(
        [arg(2, 3, kind="int", lo=0, hi=4)],
        lambda t, num_classes: np.eye(num_classes, dtype=np.int64)[t],
        params={"num_classes": 5},
    ),
)
def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """Integer classes to one-hot int64 rows; ``num_classes=-1`` reads the largest class.

    NOTE: inferring ``num_classes`` reads a value (not traceable); pass it explicitly there.
    """
    if tensor.dtype.category != 1:
        raise RuntimeError("one_hot is only applicable to index tensor of type LongTensor.")
    if num_classes == -1:
        num_classes = int(_F.amax(tensor).item()) + 1 if tensor.numel() else 0
    from ..factories import arange

    classes = arange(num_classes, dtype=tensor.dtype)
    return _F.cast(_F.eq(_F.unsqueeze(tensor, -1), classes), dtypes.int64)


# -- losses ---------------------------------------------------------------------------------------
def _reduction(size_average, reduce, reduction: str) -> str:
    if size_average is None and reduce is None:
        return reduction
    warnings.warn(
        "size_average and reduce args will be deprecated, please use reduction='...' instead.",
        UserWarning,
        stacklevel=3,
    )
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if not reduce:
        return "none"
    return "mean" if size_average else "sum"


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return _F.mean(loss)
    if reduction == "sum":
        return _F.sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"{reduction} is not a valid value for reduction; use 'mean', 'sum' or 'none'")


def _check_same_size(input: Tensor, target: Tensor) -> None:
    if target.shape != input.shape:
        warnings.warn(
            f"Using a target size ({target.shape}) that is different to the input size "
            f"({input.shape}). This will likely lead to incorrect results due to broadcasting. "
            "Please ensure they have the same size.",
            UserWarning,
            stacklevel=3,
        )


def mse_loss(
    input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean"
) -> Tensor:
    reduction = _reduction(size_average, reduce, reduction)
    _check_same_size(input, target)
    diff = _F.sub(input, target)
    return _reduce(_F.mul(diff, diff), reduction)


def l1_loss(
    input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean"
) -> Tensor:
    reduction = _reduction(size_average, reduce, reduction)
    _check_same_size(input, target)
    return _reduce(_F.abs(_F.sub(input, target)), reduction)


def _class_weight_view(weight: Tensor, ndim: int, n_classes: int) -> Tensor:
    if weight.ndim != 1 or weight.shape[0] != n_classes:
        raise RuntimeError(
            f"weight tensor should be defined either for all {n_classes} classes or no classes "
            f"but got weight tensor of shape: {list(weight.shape)}"
        )
    return _F.reshape(weight, (1, n_classes) + (1,) * (ndim - 2))


def _nll_terms(logp: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int):
    """Per-element ``-w[t] * logp[t]`` and the weights ``w[t]`` (0 where ignored).

    ``logp`` is (N, C, ...); ``target`` is (N, ...) class indices. Ignored targets are swapped for
    class 0 before the gather and masked out afterwards, so no value decides control flow.
    """
    _check_index_target(logp, target, ignore_index)
    n_classes = logp.shape[1]
    keep = _F.ne(target, ignore_index)
    # A class mask picks logp[target] (ignored targets pick 0), and the backward is a select
    # rather than a scatter. A select, not a product with a one-hot: a class of probability
    # zero (logp -inf) would make its term -inf * 0 = NaN, where PyTorch's loss is finite.
    mask = _class_mask(target, keep, n_classes, logp.ndim, ignore_index)
    picked = _F.where(mask, logp, 0.0)
    if weight is not None:
        cw = _class_weight_view(_F.cast(weight, logp.dtype), logp.ndim, n_classes)
        picked = _F.mul(picked, cw)
        w = _F.sum(_F.mul(_F.cast(mask, logp.dtype), cw), 1)
    else:
        w = _F.cast(keep, logp.dtype)
    return _F.neg(_F.sum(picked, 1)), w, keep


def _class_mask(target, keep, n_classes: int, ndim: int, ignore_index: int) -> Tensor:
    """(N, C, ...) bool rows marking class indices ``target`` (N, ...); ignored targets
    (``keep`` False) mark no class."""
    classes = Tensor._wrap(
        np.arange(n_classes, dtype=np.int64).reshape((1, n_classes) + (1,) * (ndim - 2))
    )
    mask = _F.eq(_F.unsqueeze(target, 1), classes)
    if 0 <= ignore_index < n_classes:  # an ignored target that names a class picks nothing
        mask = _F.logical_and(mask, _F.unsqueeze(keep, 1))
    return mask


def _class_onehot(target, keep, n_classes: int, ndim: int, dtype, ignore_index: int) -> Tensor:
    """``_class_mask`` as one-hot rows in ``dtype``."""
    return _F.cast(_class_mask(target, keep, n_classes, ndim, ignore_index), dtype)


def _check_index_target(logp: Tensor, target: Tensor, ignore_index: int) -> None:
    """Class-index targets: integers, of the input's shape less the class dimension, in range."""
    if target._data.dtype.kind not in "iu":
        raise RuntimeError(
            f"expected scalar type Long but found {target.dtype}; class-index targets must be "
            "integers (use target.long()), or pass class probabilities of the input's shape."
        )
    shape = logp._data.shape
    if target._data.shape != shape[:1] + shape[2:]:
        if target.ndim >= 1 and target.shape[0] != logp.shape[0]:
            raise ValueError(
                f"Expected input batch_size ({logp.shape[0]}) to match target batch_size "
                f"({target.shape[0]})."
            )
        raise RuntimeError(
            f"size mismatch (got input: {list(logp.shape)}, target: {list(target.shape)}); the "
            "target must have the input's shape without the class dimension."
        )
    _check_class_range(target, logp.shape[1], ignore_index)


def _check_class_range(target: Tensor, n_classes: int, ignore_index: int) -> None:
    """Targets outside [0, C) other than ignore_index are an error, as in PyTorch (checked on
    the values at hand: under tracing, the traced call's)."""
    t = target._data
    if t.size and 0 <= t.min() and t.max() < n_classes:
        return
    bad = (t != ignore_index) & ((t < 0) | (t >= n_classes))
    if bad.any():
        raise IndexError(
            f"Target {int(t[bad].flat[0])} is out of bounds: class indices must lie in "
            f"[0, {n_classes}) or equal ignore_index ({ignore_index})."
        )


def _weighted_reduce(loss: Tensor, w: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":  # mean over the (weighted) non-ignored targets, like PyTorch
        return _F.div(_F.sum(loss), _F.sum(w))
    return _reduce(loss, reduction)


def _batched(input: Tensor, target: Tensor):
    """Unbatched (C,) input with a () target becomes a batch of one."""
    if input.ndim == 1:
        return _F.unsqueeze(input, 0), _F.unsqueeze(target, 0), True
    if input.ndim == 0:
        raise ValueError("Expected input to have at least 1 dimension (the classes), got 0")
    return input, target, False


def nll_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average=None,
    ignore_index: int = -100,
    reduce=None,
    reduction: str = "mean",
) -> Tensor:
    """Negative log likelihood of class-index targets, given log-probabilities ``input``."""
    reduction = _reduction(size_average, reduce, reduction)
    logp, tgt, unbatched = _batched(input, target)
    loss, w, _ = _nll_terms(logp, tgt, weight, ignore_index)
    if unbatched and reduction == "none":
        loss = _F.squeeze(loss, 0)
    return _weighted_reduce(loss, w, reduction)


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average=None,
    ignore_index: int = -100,
    reduce=None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross entropy of logits ``input`` (N, C, ...) against class indices or probabilities."""
    reduction = _reduction(size_average, reduce, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    logits, tgt, unbatched = _batched(input, target)
    if (
        weight is None
        and label_smoothing == 0.0
        and logits.ndim == 2
        and logits.dtype.is_floating_point
        and not tgt.is_floating_point()
    ):
        _check_index_target(logits, tgt, ignore_index)
        params = {"ignore_index": int(ignore_index), "reduction": reduction}
        loss = apply(_P.cross_entropy_p, (logits, tgt), params)
    else:
        loss = _cross_entropy_terms(logits, tgt, weight, ignore_index, reduction, label_smoothing)
    return _F.squeeze(loss, 0) if unbatched and reduction == "none" else loss


def _cross_entropy_composite(logits, target, ignore_index: int, reduction: str) -> Tensor:
    """What the fused ``cross_entropy`` primitive computes, over core primitives."""
    return _cross_entropy_terms(logits, target, None, ignore_index, reduction, 0.0)


def _cross_entropy_terms(logits, tgt, weight, ignore_index, reduction, label_smoothing):
    n_classes = logits.shape[1]
    logp = _log_softmax(logits, 1)  # stable: x - logsumexp(x)
    if tgt.is_floating_point():
        loss, denom = _prob_target_terms(logp, tgt, weight, label_smoothing)
    else:
        loss, w, keep = _nll_terms(logp, tgt, weight, ignore_index)
        denom = w
        if label_smoothing > 0.0:
            # uniform part: -sum_c w_c logp_c, zero where ignored (PyTorch's formula)
            lp = logp
            if weight is not None:
                lp = _F.mul(lp, _class_weight_view(_F.cast(weight, lp.dtype), lp.ndim, n_classes))
            smooth = _F.neg(_F.sum(lp, 1))
            # a select, not a product with the mask: with every target ignored the mean's
            # 1/0 would otherwise meet the mask's 0 in the gradient (NaN; PyTorch's is 0)
            smooth = _F.where(keep, smooth, 0.0)
            loss = _F.add(
                _F.mul(loss, 1.0 - label_smoothing),
                _F.mul(smooth, label_smoothing / n_classes),
            )
    if reduction == "mean" and denom is not None:
        return _F.div(_F.sum(loss), _F.sum(denom))
    return _reduce(loss, reduction)


def _prob_target_terms(logp: Tensor, target: Tensor, weight, label_smoothing: float):
    if target.shape != logp.shape:
        raise RuntimeError(
            f"Expected floating point target of the input's shape {list(logp.shape)} (class "
            f"probabilities), got {list(target.shape)}; for class indices pass an integer target."
        )
    n_classes = logp.shape[1]
    if label_smoothing > 0.0:
        target = _F.add(_F.mul(target, 1.0 - label_smoothing), label_smoothing / n_classes)
    prod = _F.mul(logp, target)
    if weight is not None:
        prod = _F.mul(prod, _class_weight_view(_F.cast(weight, prod.dtype), prod.ndim, n_classes))
    return _F.neg(_F.sum(prod, 1)), None  # mean divides by the number of samples


def _relu_ties(x: Tensor) -> Tensor:
    # maximum splits its gradient at ties, so d/dx at x = 0 is 1/2 (where(x > 0) would give 0)
    return _F.maximum(x, 0.0)


def _log1p_exp_neg_abs(x: Tensor) -> Tensor:
    # log1p(e^-|x|), with -|x| = min(x, -x): at x = 0 the tie gives derivative 0, not -1
    return _F.log1p(_F.exp(_F.minimum(x, _F.neg(x))))


def _softplus_stable(x: Tensor) -> Tensor:
    """log(1 + e^x) = max(x, 0) + log1p(e^-|x|), with derivative sigmoid(x) also at x = 0."""
    return _F.add(_relu_ties(x), _log1p_exp_neg_abs(x))


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
) -> Tensor:
    """``-[pos_weight * y log s(x) + (1 - y) log(1 - s(x))]`` computed from logits, stably."""
    reduction = _reduction(size_average, reduce, reduction)
    if target.shape != input.shape:
        raise ValueError(
            f"Target size ({target.shape}) must be the same as input size ({input.shape})"
        )
    # The large terms are combined first so a tiny log1p tail is not lost to cancellation.
    if pos_weight is None:
        # max(x, 0) - x*y + log1p(e^-|x|)
        big = _F.sub(_relu_ties(input), _F.mul(input, target))
        loss = _F.add(big, _log1p_exp_neg_abs(input))
    else:
        # (1 - y) x + lw softplus(-x), lw = 1 + (pos_weight - 1) y
        lw = _F.add(_F.mul(_F.sub(pos_weight, 1.0), target), 1.0)
        big = _F.add(_F.mul(_F.rsub(target, 1.0), input), _F.mul(lw, _relu_ties(_F.neg(input))))
        loss = _F.add(big, _F.mul(lw, _log1p_exp_neg_abs(input)))
    if weight is not None:
        loss = _F.mul(loss, weight)
    return _reduce(loss, reduction)


# log(p) >= -100 from p > e^-100 on; below, the log is clamped (PyTorch's bound)
_LOG_FLOOR = math.exp(-100.0)


def _clamped_log(p: Tensor) -> Tensor:
    """max(log(p), -100), with gradient 0 where clamped. ``clamp(log(p))`` would give NaN
    there at p = 0 (0 from the clamp times log's infinite slope): a prediction of exactly 0 or
    1, as float32 sigmoids give from |x| > 17 on, gave that element a NaN gradient, and through
    the model every parameter. The log reads 1 where clamped instead."""
    inside = _F.gt(p, _LOG_FLOOR)
    return _F.where(inside, _F.log(_F.where(inside, p, 1.0)), -100.0)


def binary_cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
) -> Tensor:
    """BCE on probabilities; logs are clamped at -100 like PyTorch (prefer the logits form)."""
    reduction = _reduction(size_average, reduce, reduction)
    if target.shape != input.shape:
        raise ValueError(
            f"Using a target size ({target.shape}) that is different to the input size "
            f"({input.shape}) is deprecated. Please ensure they have the same size."
        )
    log_p = _clamped_log(input)
    log_q = _clamped_log(_F.rsub(input, 1.0))
    loss = _F.neg(_F.add(_F.mul(target, log_p), _F.mul(_F.rsub(target, 1.0), log_q)))
    if weight is not None:
        loss = _F.mul(loss, weight)
    return _reduce(loss, reduction)


from . import (  # noqa: E402,F401
    activations,
    attention,
    conv_nd,
    ctc,
    distance,
    functional_more,  # noqa: E402
    losses,
    margin_losses,
    padding,
    pooling_nd,
    resize,
    unpooling,
)
from .activations import (  # noqa: E402,F401  (PyTorch's in-place forms, F.elu_ ...)
    INPLACE_FORMS,
    celu_,
    elu_,
    hardtanh_,
    leaky_relu_,
    relu_,
    rrelu_,
    selu_,
    threshold_,
)
from .conv import avg_pool2d, conv2d, max_pool2d  # noqa: E402
from .functional_more import *  # noqa: E402,F401,F403  (embedding_bag, dropout1d, ...)
from .multihead import multi_head_attention_forward  # noqa: E402,F401
from .normalization import batch_norm, layer_norm  # noqa: E402
from .sparse import embedding  # noqa: E402

__all__ += INPLACE_FORMS + ["multi_head_attention_forward"]
__all__ += functional_more.__all__
# The op table's nn.functional entries (declared with ``op(namespace="nn.functional")``)
__all__ += [n for n in _export("nn.functional", globals()) if n not in __all__]
