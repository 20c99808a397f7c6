"""Adamax (Adam with an infinity norm) with PyTorch's update."""

from __future__ import annotations

from collections.abc import Iterable

from ..factories import zeros_like
from ..ops import functions as F
from ..tensor import Tensor
from ._common import advance, check, check_betas, check_lr, new_step
from .optimizer import Optimizer


class Adamax(Optimizer):
    r"""PyTorch's Adamax, per parameter with gradient g and step t:

    g <- -g if maximize;  t <- t + 1;  g <- g + wd p if wd != 0
    m <- m + (1 - b1)(g - m);  u <- max(b2 u, |g| + eps)
    p <- p - lr / (1 - b1^t) * m / u
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        foreach=None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
    ) -> None:
        check_lr(lr)
        check(0.0 <= eps, "epsilon value", eps)
        check_betas(betas)
        check(0.0 <= weight_decay, "weight_decay value", weight_decay)
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
            capturable=capturable,
        )
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, state: dict, group: dict) -> None:
        state["step"] = new_step()
        state["exp_avg"] = zeros_like(p)
        state["exp_inf"] = zeros_like(p)

    def _update(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> None:
        beta1, beta2 = self._hyper(group, "betas")
        if self._option(group, "maximize"):
            grad = F.neg(grad)
        step = advance(state["step"])
        if self._option(group, "weight_decay") != 0:
            grad = F.add(grad, F.mul(p, self._hyper(group, "weight_decay")))
        exp_avg, exp_inf = state["exp_avg"], state["exp_inf"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_inf.mul_(beta2)
        exp_inf.copy_(F.maximum(exp_inf, F.add(F.abs(grad), self._hyper(group, "eps"))))
        clr = F.div(self._hyper(group, "lr"), F.rsub(F.pow(beta1, step), 1.0))
        p.addcdiv_(exp_avg, exp_inf, value=F.neg(clr))
