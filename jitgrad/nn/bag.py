"""``embedding_bag``/``EmbeddingBag`` and ``bilinear``/``Bilinear`` as composites.

A bag reduction is a product with a 0/1 membership matrix M (bags x looked-up rows): the
offsets only enter through tensor comparisons (row j is in bag b when offsets[b] <= j <
offsets[b+1]), so a traced step takes new offsets without retracing on their values. ``sum`` is
``M @ rows``, ``mean`` divides by the bag sizes, ``max`` masks the rows outside each bag with
-inf; empty bags give zeros, and the ``padding_idx`` rows are left out of every bag.
"""

from __future__ import annotations

import math

from .. import dtypes
from ..autograd.grad_mode import no_grad
from ..factories import arange, empty
from ..ops import functions as _F
from ..tensor import Tensor
from . import init
from .module import Module, Parameter
from .sparse import _padding_index, embedding

__all__ = ["embedding_bag", "bilinear", "EmbeddingBag", "Bilinear"]

_MODES = ("sum", "mean", "max")


def _membership(input: Tensor, offsets: Tensor | None, include_last_offset: bool) -> tuple:
    """(flat indices, M as bool (bags, n)) for 1-D input with offsets or 2-D input."""
    if input.ndim == 2:
        if offsets is not None:
            raise ValueError(
                "if input is 2D, then offsets has to be None, as input is treated is a "
                "mini-batch of fixed length sequences. However, found offsets of type "
                f"{type(offsets).__name__}"
            )
        b, n = input.shape
        flat = _F.reshape(input, (-1,))
        bag_of = _F.floor_divide(arange(b * n), n) if n else arange(0)
        member = _F.eq(_F.unsqueeze(arange(b), 1), _F.unsqueeze(bag_of, 0))
        return flat, member
    if input.ndim != 1:
        raise ValueError(
            f"input has to be 1D or 2D Tensor, but got Tensor of dimension {input.ndim}"
        )
    if offsets is None:
        raise ValueError("offsets has to be a 1D Tensor but got None")
    if offsets.ndim != 1:
        raise ValueError("offsets has to be a 1D Tensor")
    n = input.shape[0]
    starts = offsets
    bags = offsets.shape[0] - (1 if include_last_offset else 0)
    positions = _F.unsqueeze(arange(n), 0)
    lo = _F.unsqueeze(_F.slice_(starts, (0,), (bags,), (1,)), 1)
    if include_last_offset:
        hi = _F.unsqueeze(_F.slice_(starts, (1,), (bags + 1,), (1,)), 1)
    else:
        tail = _F.reshape(_F.const(n, offsets.dtype), (1,))
        hi = _F.unsqueeze(_F.cat([_F.slice_(starts, (1,), (bags,), (1,)), tail]), 1)
    member = _F.logical_and(_F.ge(positions, lo), _F.lt(positions, hi))
    return input, member


def embedding_bag(
    input: Tensor, weight: Tensor, offsets: Tensor | None = None, max_norm: float | None = None,
    norm_type: float = 2, scale_grad_by_freq: bool = False, mode: str = "mean",
    sparse: bool = False, per_sample_weights: Tensor | None = None,
    include_last_offset: bool = False, padding_idx: int | None = None,
) -> Tensor:  # fmt: skip
    """Sums, means or maxima of bags of embedding rows, without building the (bags, n, dim)
    lookup per bag: (B, N) input makes B bags of N; 1-D input is cut at ``offsets``."""
    if mode not in _MODES:
        raise ValueError(f"mode has to be one of sum, mean or max, but got {mode}")
    if per_sample_weights is not None:
        if mode != "sum":
            raise NotImplementedError(
                "embedding_bag: per_sample_weights was not None. per_sample_weights is only "
                f"supported for mode='sum' (got mode='{mode}'). Please open a feature request "
                "on GitHub."
            )
        if tuple(per_sample_weights.shape) != tuple(input.shape):
            raise ValueError(
                f"embedding_bag: If per_sample_weights ({list(per_sample_weights.shape)}) is not "
                f"None, then it must have the same shape as the input ({list(input.shape)})"
            )
    if mode == "max" and scale_grad_by_freq:
        raise ValueError("max mode does not support scaling the gradient by the frequency")
    padding_idx = _padding_index(padding_idx, weight.shape[0])
    flat, member = _membership(input, offsets, include_last_offset)
    rows = embedding(flat, weight, None, max_norm, norm_type, scale_grad_by_freq, sparse)
    if padding_idx is not None:
        member = _F.logical_and(member, _F.unsqueeze(_F.ne(flat, padding_idx), 0))
    m = _F.cast(member, rows.dtype)
    if mode == "max":
        masked = _F.where(_F.unsqueeze(member, 2), _F.unsqueeze(rows, 0), float("-inf"))
        best = _F.amax(masked, 1)
        nonempty = _F.unsqueeze(_F.any(member, 1), 1)
        return _F.where(nonempty, best, 0.0)
    if per_sample_weights is not None:
        m = _F.mul(m, _F.unsqueeze(_F.reshape(per_sample_weights, (-1,)), 0))
    out = _F.matmul(m, rows)
    if mode == "mean":
        counts = _F.sum(_F.cast(member, rows.dtype), 1, keepdim=True)
        out = _F.div(out, _F.clamp(counts, min=1.0))
    return out


def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias: Tensor | None = None):
    """``y_o = x1^T W_o x2 + b_o`` over the last dims of ``input1`` and ``input2``."""
    if weight.ndim != 3:
        raise RuntimeError(f"bilinear(): weight must be 3-dimensional, got {weight.ndim}")
    if input1.shape[:-1] != input2.shape[:-1]:
        raise RuntimeError(
            "bilinear(): input batch dimensions do not match: got "
            f"{list(input1.shape[:-1])} and {list(input2.shape[:-1])}"
        )
    if input1.shape[-1] != weight.shape[1]:
        raise RuntimeError(
            f"bilinear(): input1 size does not match weight size: got {input1.shape[-1]} but "
            f"expected {weight.shape[1]}"
        )
    if input2.shape[-1] != weight.shape[2]:
        raise RuntimeError(
            f"bilinear(): input2 size does not match weight size: got {input2.shape[-1]} but "
            f"expected {weight.shape[2]}"
        )
    lead = tuple(input1.shape[:-1])
    a = _F.reshape(input1, (-1, weight.shape[1]))
    b = _F.reshape(input2, (-1, weight.shape[2]))
    o, i, j = weight.shape
    # (x1 W) as one product: (n, i) @ (i, o*j), then the sum over j against x2
    t = _F.matmul(a, _F.reshape(_F.permute(weight, (1, 0, 2)), (i, o * j)))
    out = _F.sum(_F.mul(_F.reshape(t, (-1, o, j)), _F.unsqueeze(b, 1)), 2)
    if bias is not None:
        out = _F.add(out, bias)
    return _F.reshape(out, lead + (o,))


class EmbeddingBag(Module):
    """Bags of embedding rows reduced by ``mode``; the weight is N(0, 1) with the
    ``padding_idx`` row zeroed, as ``nn.Embedding``."""

    def __init__(
        self, num_embeddings: int, embedding_dim: int, max_norm: float | None = None,
        norm_type: float = 2.0, scale_grad_by_freq: bool = False, mode: str = "mean",
        sparse: bool = False, _weight: Tensor | None = None, include_last_offset: bool = False,
        padding_idx: int | None = None, device=None, dtype=None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.max_norm, self.norm_type = max_norm, norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.padding_idx = _padding_index(padding_idx, num_embeddings)
        if _weight is None:
            dtype = dtypes.as_dtype(dtype) if dtype is not None else None
            shape = (num_embeddings, embedding_dim)
            self.weight = Parameter(empty(shape, dtype=dtype, device=device))
            self.reset_parameters()
        else:
            if tuple(_weight.shape) != (num_embeddings, embedding_dim):
                raise ValueError("Shape of weight does not match num_embeddings and embedding_dim")
            self.weight = Parameter(_weight)
        self.mode, self.sparse = mode, sparse
        self.include_last_offset = include_last_offset

    def reset_parameters(self) -> None:
        init.normal_(self.weight)
        if self.padding_idx is not None:
            with no_grad():
                self.weight[self.padding_idx].fill_(0)

    def forward(self, input: Tensor, offsets: Tensor | None = None,
                per_sample_weights: Tensor | None = None) -> Tensor:  # fmt: skip
        return embedding_bag(
            input, self.weight, offsets, self.max_norm, self.norm_type,
            self.scale_grad_by_freq, self.mode, self.sparse, per_sample_weights,
            self.include_last_offset, self.padding_idx,
        )  # fmt: skip

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm}"
        if self.norm_type != 2:
            s += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq is not False:
            s += f", scale_grad_by_freq={self.scale_grad_by_freq}"
        s += f", mode={self.mode!r}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        return s


class Bilinear(Module):
    """``y = x1^T A x2 + b``; A (out, in1, in2) and b drawn from U(-1/sqrt(in1), 1/sqrt(in1))."""

    def __init__(self, in1_features: int, in2_features: int, out_features: int,
                 bias: bool = True, device=None, dtype=None) -> None:  # fmt: skip
        super().__init__()
        self.in1_features, self.in2_features = in1_features, in2_features
        self.out_features = out_features
        dtype = dtypes.as_dtype(dtype) if dtype is not None else None
        shape = (out_features, in1_features, in2_features)
        self.weight = Parameter(empty(shape, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(empty(out_features, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.weight.shape[1])
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input1: Tensor, input2: Tensor) -> Tensor:
        return bilinear(input1, input2, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
            f"out_features={self.out_features}, bias={self.bias is not None}"
        )
