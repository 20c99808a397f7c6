"""Adadelta with PyTorch's update."""

from __future__ import annotations

from collections.abc import Iterable

from ..factories import zeros_like
from ..ops import functions as F
from ..tensor import Tensor
from ._common import advance, check, check_lr, new_step
from .optimizer import Optimizer


class Adadelta(Optimizer):
    r"""PyTorch's Adadelta, per parameter with gradient g:

    g <- -g if maximize;  g <- g + wd p if wd != 0
    v <- rho v + (1 - rho) g^2;  delta = sqrt(u + eps) / sqrt(v + eps) * g
    u <- rho u + (1 - rho) delta^2;  p <- p - lr delta
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        foreach=None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        check_lr(lr)
        check(0.0 <= rho <= 1.0, "rho value", rho)
        check(0.0 <= eps, "epsilon value", eps)
        check(0.0 <= weight_decay, "weight_decay value", weight_decay)
        defaults = dict(
            lr=lr,
            rho=rho,
            eps=eps,
            weight_decay=weight_decay,
            maximize=maximize,
            capturable=capturable,
            foreach=foreach,
            differentiable=differentiable,
        )
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, state: dict, group: dict) -> None:
        state["step"] = new_step()
        state["square_avg"] = zeros_like(p)
        state["acc_delta"] = zeros_like(p)

    def _update(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> None:
        rho, eps = self._hyper(group, "rho"), self._hyper(group, "eps")
        advance(state["step"])
        if self._option(group, "maximize"):
            grad = F.neg(grad)
        if self._option(group, "weight_decay") != 0:
            grad = F.add(grad, F.mul(p, self._hyper(group, "weight_decay")))
        square_avg, acc_delta = state["square_avg"], state["acc_delta"]
        square_avg.mul_(rho).addcmul_(grad, grad, value=1 - rho)
        std = F.sqrt(F.add(square_avg, eps))
        delta = F.mul(F.div(F.sqrt(F.add(acc_delta, eps)), std), grad)
        acc_delta.mul_(rho).addcmul_(delta, delta, value=1 - rho)
        p.sub_(F.mul(delta, self._hyper(group, "lr")))
