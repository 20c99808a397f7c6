"""``embedding`` and ``Embedding``: rows of a weight matrix picked by integer indices.

The lookup is a ``take`` along dim 0, whose gradient is a ``scatter_add`` into the weight's
shape (a dense gradient). ``padding_idx`` rows receive no gradient, ``max_norm`` renormalizes
the looked-up rows in place and ``scale_grad_by_freq`` divides each row's gradient by how often
it occurs in the batch; all of it with jitgrad ops, so it traces and compiles.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..autograd.grad_mode import no_grad
from ..factories import empty
from ..ops import functions as _F
from ..ops.registry import op
from ..ops.spec import Spec, arg
from ..tensor import Tensor
from . import init
from .module import Module, Parameter

__all__ = ["embedding", "Embedding"]

_SPARSE = (
    "sparse gradients are not supported: jitgrad computes a dense gradient for the embedding "
    "weight; use sparse=False (the default) with any optimizer."
)


def _padding_index(padding_idx: int | None, num_embeddings: int) -> int | None:
    if padding_idx is None:
        return None
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise AssertionError(
            "Padding_idx must be within num_embeddings; pass padding_idx in "
            f"[-{num_embeddings}, {num_embeddings}) (got {padding_idx})."
        )
    return padding_idx % num_embeddings


def _check_index_range(input: Tensor, num_embeddings: int) -> None:
    """Indices outside [0, num_embeddings) are an error, as in PyTorch (checked on the values at
    hand: under tracing, the traced call's)."""
    idx = input._data
    bad = (idx < 0) | (idx >= num_embeddings)
    if bad.any():
        raise IndexError(
            f"index out of range in self: embedding index {int(idx[bad].flat[0])} is outside "
            f"[0, {num_embeddings}); make num_embeddings larger than the largest index (e.g. "
            "the vocabulary size) or fix the indices."
        )


def _row_counts(flat_idx: Tensor, num_embeddings: int, dtype: dtypes.dtype) -> Tensor:
    """How often each row is looked up: a scatter_add of ones (traced, not read in Python)."""
    zero = Tensor._wrap(np.zeros(num_embeddings, dtype=dtype.np))
    one = Tensor._wrap(np.ones(flat_idx.shape[0], dtype=dtype.np))
    return _F.scatter_add_axis(zero, flat_idx, one, 0)


def _renorm_(weight: Tensor, flat_idx: Tensor, max_norm: float, norm_type: float) -> None:
    """Scale the looked-up rows whose ``norm_type``-norm exceeds ``max_norm`` down to it, in place
    (PyTorch's embedding_renorm_: ``scale = max_norm / (norm + 1e-7)``)."""
    with no_grad():
        hit = _F.gt(_row_counts(flat_idx, weight.shape[0], weight.dtype), 0)
        norms = _F.norm(weight, norm_type, 1)
        shrink = _F.logical_and(hit, _F.gt(norms, max_norm))
        scale = _F.where(shrink, _F.div(max_norm, _F.add(norms, 1e-7)), 1.0)
        weight.mul_(_F.unsqueeze(scale, 1))


@op(
    namespace="nn.functional",
    spec=Spec(
        [arg(2, 3, kind="int", lo=0, hi=5), arg(5, 4)],
        lambda idx, weight: weight[idx],
        differentiable=(1,),
        linear=True,
    ),
)
def embedding(
    input: Tensor,
    weight: Tensor,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
) -> Tensor:
    """``weight[input]``: an ``input.shape + (embedding_dim,)`` tensor of rows."""
    if sparse:
        raise NotImplementedError(_SPARSE)
    if not isinstance(input, Tensor) or input.dtype.category != 1:
        got = input.dtype if isinstance(input, Tensor) else type(input).__name__
        raise RuntimeError(
            "Expected tensor for argument #1 'indices' to have one of the following scalar "
            f"types: Long, Int; but got {got} instead (while checking arguments for "
            "embedding); convert the indices with .long()."
        )
    if weight.ndim != 2:
        raise RuntimeError(
            f"'weight' must be 2-D, got {weight.ndim}-D; pass a (num_embeddings, embedding_dim) "
            "matrix."
        )
    num_embeddings = weight.shape[0]
    padding_idx = _padding_index(padding_idx, num_embeddings)
    _check_index_range(input, num_embeddings)
    flat = _F.reshape(input, (-1,))
    if max_norm is not None:
        _renorm_(weight, flat, float(max_norm), float(norm_type))
    rows = _F.take_axis(weight, flat, 0)
    if scale_grad_by_freq:
        # the value stays rows exactly (z - z.detach() is 0); the gradient is scaled by 1/count
        counts = _F.take_axis(_row_counts(flat, num_embeddings, rows.dtype), flat, 0)
        z = _F.mul(rows, _F.unsqueeze(_F.reciprocal(counts), 1))
        rows = _F.add(rows.detach(), _F.sub(z, z.detach()))
    if padding_idx is not None:
        # same values, but lookups of the padding row pass no gradient back to it
        pad = _F.unsqueeze(_F.eq(flat, padding_idx), 1)
        rows = _F.where(pad, rows.detach(), rows)
    return _F.reshape(rows, tuple(input.shape) + (weight.shape[1],))


class Embedding(Module):
    """A lookup table of ``num_embeddings`` vectors of size ``embedding_dim``, initialised
    N(0, 1) with the ``padding_idx`` row zeroed."""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        _weight: Tensor | None = None,
        _freeze: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if sparse:
            raise NotImplementedError(_SPARSE)
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = _padding_index(padding_idx, num_embeddings)
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.sparse = sparse
        if _weight is None:
            dtype = dtypes.as_dtype(dtype) if dtype is not None else None
            w = empty((num_embeddings, embedding_dim), dtype=dtype, device=device)
            self.weight = Parameter(w, requires_grad=not _freeze)
            self.reset_parameters()
        else:
            if list(_weight.shape) != [num_embeddings, embedding_dim]:
                raise AssertionError(
                    "Shape of weight does not match num_embeddings and embedding_dim; expected "
                    f"{[num_embeddings, embedding_dim]}, got {list(_weight.shape)}."
                )
            self.weight = Parameter(_weight, requires_grad=not _freeze)

    def reset_parameters(self) -> None:
        init.normal_(self.weight)
        self._fill_padding_idx_with_zero()

    def _fill_padding_idx_with_zero(self) -> None:
        if self.padding_idx is not None:
            with no_grad():
                self.weight[self.padding_idx] = 0.0

    def forward(self, input: Tensor) -> Tensor:
        return embedding(
            input,
            self.weight,
            self.padding_idx,
            self.max_norm,
            self.norm_type,
            self.scale_grad_by_freq,
            self.sparse,
        )

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm}"
        if self.norm_type != 2:
            s += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq:
            s += f", scale_grad_by_freq={self.scale_grad_by_freq}"
        return s

    @classmethod
    def from_pretrained(
        cls,
        embeddings: Tensor,
        freeze: bool = True,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
    ) -> Embedding:
        """An Embedding holding ``embeddings`` (shared, not copied); frozen unless told not."""
        if embeddings.ndim != 2:
            raise AssertionError(
                "Embeddings parameter is expected to be 2-dimensional; got "
                f"{embeddings.ndim} dimensions, pass a (num_embeddings, embedding_dim) matrix."
            )
        rows, cols = embeddings.shape
        return cls(
            num_embeddings=rows,
            embedding_dim=cols,
            _weight=embeddings,
            _freeze=freeze,
            padding_idx=padding_idx,
            max_norm=max_norm,
            norm_type=norm_type,
            scale_grad_by_freq=scale_grad_by_freq,
            sparse=sparse,
        )
