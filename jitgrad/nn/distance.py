"""``normalize``, ``cosine_similarity`` and ``pairwise_distance``: composites over norms."""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..autograd.grad_mode import no_grad
from ..ops import functions as _F
from ..ops.registry import op
from ..ops.spec import Spec, arg
from ..tensor import Tensor, _wrap_dim

__all__ = ["normalize", "cosine_similarity", "pairwise_distance"]

_NS = "nn.functional"


def _np_norm(x, p, axis, keepdims=False):
    if p == np.inf:
        return np.abs(x).max(axis=axis, keepdims=keepdims)
    return (np.abs(x) ** p).sum(axis=axis, keepdims=keepdims) ** (1.0 / p)


def _normalize_ref(x, p=2.0, dim=1, eps=1e-12):
    return x / np.maximum(_np_norm(x, p, dim, keepdims=True), eps)


@op(
    namespace=_NS,
    spec=Spec([arg(3, 4)], _normalize_ref, params={"p": 3.0, "dim": 0}, differentiable=(0,)),
)
def normalize(input, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out=None) -> Tensor:
    """``input / max(||input||_p, eps)`` along ``dim``."""
    if out is not None:
        raise NotImplementedError("normalize(out=...) is not supported; use the result instead")
    d = _wrap_dim(dim, input.ndim)
    denom = _F.clamp(_F.norm(input, p, d, keepdim=True), min=eps)
    return _F.div(input, denom)


def _cosine_ref(x1, x2, dim=1, eps=1e-8):
    n1 = np.maximum(np.sqrt((x1 * x1).sum(axis=dim, keepdims=True)), eps)
    n2 = np.maximum(np.sqrt((x2 * x2).sum(axis=dim, keepdims=True)), eps)
    return ((x1 / n1) * (x2 / n2)).sum(axis=dim)


@op(
    namespace=_NS,
    spec=Spec([arg(3, 4), arg(4)], _cosine_ref, params={"dim": -1}, differentiable=(0, 1)),
)
def cosine_similarity(x1, x2, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """The cosine of the angle between ``x1`` and ``x2`` (broadcast) along ``dim``: each is
    divided by its norm (at least ``eps``) first, as PyTorch does."""
    shape = _F.broadcast_shapes(tuple(x1.shape), tuple(x2.shape))
    a, b = _F.broadcast_to(x1, shape), _F.broadcast_to(x2, shape)
    if not a.dtype.is_floating_point:
        a, b = _F.cast(a, dtypes.get_default_dtype()), _F.cast(b, dtypes.get_default_dtype())
    d = _wrap_dim(dim, len(shape))
    na, nb = _clamped_norm(a, d, eps), _clamped_norm(b, d, eps)
    return _F.sum(_F.mul(_F.div(a, na), _F.div(b, nb)), d)


def _clamped_norm(x: Tensor, d: int, eps: float) -> Tensor:
    """The 2-norm along d, at least eps: PyTorch clamps it in place under no_grad, so the
    gradient is the unclamped norm's (n + (max(n, eps) - n).detach())."""
    n = _F.norm(x, 2, d, keepdim=True)
    with no_grad():  # (no graph for the constant part: nothing of it outlives the call)
        lift = _F.sub(_F.clamp(n, min=eps), n)
    return _F.add(n, lift)


def _pairwise_ref(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    return _np_norm(x1 - x2 + eps, p, -1, keepdims=keepdim)


@op(
    namespace=_NS,
    spec=Spec([arg(3, 4), arg(3, 4)], _pairwise_ref, params={"p": 3.0}, differentiable=(0, 1)),
)
def pairwise_distance(x1, x2, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False):
    """``||x1 - x2 + eps||_p`` over the last dim (the inputs broadcast)."""
    ndim = max(x1.ndim, x2.ndim)
    diff = _F.add(_F.sub(x1, x2), eps)
    if ndim == 0:
        return _F.abs(diff)
    return _F.norm(diff, p, ndim - 1, keepdim)
