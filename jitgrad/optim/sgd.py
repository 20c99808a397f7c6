"""Stochastic gradient descent with PyTorch's momentum, dampening, Nesterov and weight decay."""

from __future__ import annotations

from collections.abc import Iterable

from ..factories import empty_like
from ..ops import functions as F
from ..tensor import Tensor
from . import fused
from ._common import check_fused
from .optimizer import Optimizer, required


class SGD(Optimizer):
    r"""PyTorch's SGD update, per parameter with gradient g:

    g <- -g if maximize;  g <- g + wd * p if wd != 0
    if momentum != 0:  b <- g (first step), else b <- momentum * b + (1 - dampening) * g
                       g <- g + momentum * b if nesterov else b
    p <- p - lr * g
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach=None,
        differentiable: bool = False,
        fused=None,
    ) -> None:
        # foreach/differentiable/fused are accepted and kept in the groups (as PyTorch keeps
        # them); there is one implementation here.
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if lr is not required and lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
            foreach=foreach,
            differentiable=differentiable,
            fused=fused,
        )
        super().__init__(params, defaults)
        check_fused(fused, foreach, differentiable)

    def _update(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> None:
        buf = state.get("momentum_buffer")
        if fused.usable(p, grad, *([] if buf is None else [buf])):
            names = ("lr", "momentum", "dampening", "weight_decay")
            hypers = {name: self._hyper(group, name) for name in names}
            if fused.numbers(*hypers.values()):
                return self._fused_update(p, grad, state, group, **hypers)
        if self._option(group, "maximize"):
            grad = F.neg(grad)
        if self._option(group, "weight_decay") != 0:
            grad = F.add(grad, F.mul(p, self._hyper(group, "weight_decay")))
        if self._option_test(group, "momentum", "nonzero"):
            momentum = self._hyper(group, "momentum")
            buf = state.get("momentum_buffer")
            if buf is None:
                # the buffer starts as a copy of the first gradient (no dampening), like PyTorch
                buf = state["momentum_buffer"] = F.clone(grad)
            else:
                dampening = self._hyper(group, "dampening")
                buf.mul_(momentum).add_(F.mul(grad, 1 - dampening))
            grad = F.add(grad, F.mul(buf, momentum)) if self._option(group, "nesterov") else buf
        p.sub_(F.mul(grad, self._hyper(group, "lr")))

    def _fused_update(self, p, grad, state, group, lr, momentum, dampening, weight_decay):
        """``_update`` in one loop (optim.fused), the same arithmetic."""
        use_momentum = self._option_test(group, "momentum", "nonzero")
        buf, first = state.get("momentum_buffer"), False
        if use_momentum and buf is None:
            buf = state["momentum_buffer"] = empty_like(grad)
            first = True
        fused.sgd(
            p,
            grad,
            buf if use_momentum else None,
            maximize=self._option(group, "maximize"),
            wd=weight_decay if self._option(group, "weight_decay") != 0 else 0.0,
            momentum=momentum,
            damp=1 - dampening,
            nesterov=self._option(group, "nesterov"),
            first=first,
            lr=lr,
        )
