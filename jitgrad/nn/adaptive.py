"""``AdaptiveLogSoftmaxWithLoss``: the efficient softmax approximation of Grave et al. for large
output spaces. Frequent classes (below ``cutoffs[0]``) are scored by the head directly; every
later cluster gets one head entry and its own low-rank tail, so
``log p(y) = log p_head(cluster of y) + log p_tail(y | cluster)``.

Every tail is evaluated on every row and the rows outside the cluster are masked, so the
computation has no data-dependent shapes (eager runs, autograd and tracing share one path)."""

from __future__ import annotations

from collections import namedtuple

from ..ops import functions as _F
from ..tensor import Tensor
from . import functional as F
from .layers import Linear, ModuleList, Sequential
from .module import Module

__all__ = ["AdaptiveLogSoftmaxWithLoss"]

_ASMoutput = namedtuple("_ASMoutput", ["output", "loss"])


class AdaptiveLogSoftmaxWithLoss(Module):
    def __init__(self, in_features: int, n_classes: int, cutoffs, div_value: float = 4.0,
                 head_bias: bool = False, device=None, dtype=None) -> None:  # fmt: skip
        super().__init__()
        cutoffs = list(cutoffs)
        if len(cutoffs) == 0:
            raise ValueError("cutoffs should be a sequence of length larger than 0")
        if (
            cutoffs != sorted(cutoffs)
            or min(cutoffs) <= 0
            or max(cutoffs) > n_classes - 1
            or len(set(cutoffs)) != len(cutoffs)
            or any(int(c) != c for c in cutoffs)
        ):
            raise ValueError(
                "cutoffs should be a sequence of unique, positive integers sorted in an "
                "increasing order, where each value is between 1 and n_classes-1"
            )
        self.in_features, self.n_classes = in_features, n_classes
        self.cutoffs = cutoffs + [n_classes]
        self.div_value, self.head_bias = div_value, head_bias
        self.shortlist_size = self.cutoffs[0]
        self.n_clusters = len(self.cutoffs) - 1
        self.head_size = self.shortlist_size + self.n_clusters
        factory = {"device": device, "dtype": dtype}
        self.head = Linear(in_features, self.head_size, bias=head_bias, **factory)
        self.tail = ModuleList()
        for i in range(self.n_clusters):
            hidden = int(in_features // (div_value ** (i + 1)))
            size = self.cutoffs[i + 1] - self.cutoffs[i]
            self.tail.append(
                Sequential(
                    Linear(in_features, hidden, bias=False, **factory),
                    Linear(hidden, size, bias=False, **factory),
                )
            )

    def reset_parameters(self) -> None:
        self.head.reset_parameters()
        for projection in self.tail:
            for layer in projection:
                layer.reset_parameters()

    def forward(self, input_: Tensor, target_: Tensor) -> _ASMoutput:
        unbatched = input_.ndim == 1
        if unbatched:
            if target_.ndim != 0:
                raise RuntimeError(
                    "0D target tensor expects 1D input tensors, but found inputs with size "
                    f"{list(input_.shape)}"
                )
            input_, target_ = _F.unsqueeze(input_, 0), _F.unsqueeze(target_, 0)
        elif input_.ndim != 2:
            raise RuntimeError("Input to forward must be 1D or 2D")
        if input_.shape[0] != target_.shape[0]:
            raise RuntimeError("Input and target should have the same size in the batch dimension.")
        # (checked on the values at hand, without a traced read: under tracing, the traced call's)
        values = target_._data
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if low < 0 or high >= self.n_classes:
            raise RuntimeError(
                f"Target values should be in [0, {self.n_classes - 1}], but values in range "
                f"[{low}, {high}] were found. "
            )
        head_logprob = F.log_softmax(self.head(input_), 1)
        # the head entry of each target: its class in the shortlist, else its cluster's entry
        head_index = target_
        output = None
        for i in range(self.n_clusters):
            start, stop = self.cutoffs[i], self.cutoffs[i + 1]
            inside = _F.logical_and(_F.ge(target_, start), _F.lt(target_, stop))
            head_index = _F.where(inside, self.shortlist_size + i, head_index)
            relative = _F.clamp(_F.sub(target_, start), 0, stop - start - 1)
            tail_logprob = F.log_softmax(self.tail[i](input_), 1)
            local = _F.squeeze(_F.gather(tail_logprob, 1, _F.unsqueeze(relative, 1)), 1)
            local = _F.where(inside, local, 0.0)
            output = local if output is None else _F.add(output, local)
        head_part = _F.squeeze(_F.gather(head_logprob, 1, _F.unsqueeze(head_index, 1)), 1)
        output = head_part if output is None else _F.add(output, head_part)
        loss = _F.mean(_F.neg(output))
        if unbatched:
            output = _F.squeeze(output, 0)
        return _ASMoutput(output, loss)

    def _get_full_log_prob(self, input: Tensor, head_output: Tensor) -> Tensor:
        head_logprob = F.log_softmax(head_output, 1)
        parts = [_F.slice_(head_logprob, (0, 0), (input.shape[0], self.shortlist_size), (1, 1))]
        for i in range(self.n_clusters):
            cluster = F.log_softmax(self.tail[i](input), 1)
            entry = self.shortlist_size + i
            prior = _F.slice_(head_logprob, (0, entry), (input.shape[0], entry + 1), (1, 1))
            parts.append(_F.add(cluster, prior))
        return _F.cat(parts, 1)

    def log_prob(self, input: Tensor) -> Tensor:
        """log p(class) for every class: (N, n_classes), or (n_classes,) for unbatched input."""
        unbatched = input.ndim == 1
        x = _F.unsqueeze(input, 0) if unbatched else input
        out = self._get_full_log_prob(x, self.head(x))
        return _F.squeeze(out, 0) if unbatched else out

    def predict(self, input: Tensor) -> Tensor:
        """The most likely class of each row."""
        return _F.argmax(self.log_prob(input), -1)
