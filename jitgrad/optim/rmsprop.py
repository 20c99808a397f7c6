"""RMSprop with PyTorch's centered and momentum variants."""

from __future__ import annotations

from collections.abc import Iterable

from ..factories import zeros_like
from ..ops import functions as F
from ..tensor import Tensor
from ._common import advance, check, check_lr, new_step
from .optimizer import Optimizer


class RMSprop(Optimizer):
    r"""PyTorch's RMSprop, per parameter with gradient g:

    g <- -g if maximize;  g <- g + wd p if wd != 0
    v <- alpha v + (1 - alpha) g^2
    centered: m <- m + (1 - alpha)(g - m),  avg = sqrt(v - m^2) + eps;  else avg = sqrt(v) + eps
    momentum > 0: b <- momentum b + g / avg,  p <- p - lr b;  else p <- p - lr g / avg
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach=None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        check_lr(lr)
        check(0.0 <= eps, "epsilon value", eps)
        check(0.0 <= momentum, "momentum value", momentum)
        check(0.0 <= weight_decay, "weight_decay value", weight_decay)
        check(0.0 <= alpha, "alpha value", alpha)
        defaults = dict(
            lr=lr,
            momentum=momentum,
            alpha=alpha,
            eps=eps,
            centered=centered,
            weight_decay=weight_decay,
            capturable=capturable,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
        )
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, state: dict, group: dict) -> None:
        state["step"] = new_step()
        state["square_avg"] = zeros_like(p)
        if self._option_test(group, "momentum", "positive"):
            state["momentum_buffer"] = zeros_like(p)
        if self._option(group, "centered"):
            state["grad_avg"] = zeros_like(p)

    def _update(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> None:
        lr = self._hyper(group, "lr")
        alpha = self._hyper(group, "alpha")
        if self._option(group, "maximize"):
            grad = F.neg(grad)
        advance(state["step"])
        if self._option(group, "weight_decay") != 0:
            grad = F.add(grad, F.mul(p, self._hyper(group, "weight_decay")))
        square_avg = state["square_avg"]
        square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        if self._option(group, "centered"):
            grad_avg = state["grad_avg"]
            grad_avg.lerp_(grad, 1 - alpha)
            avg = F.sqrt(F.addcmul(square_avg, grad_avg, grad_avg, value=-1))
        else:
            avg = F.sqrt(square_avg)
        avg = F.add(avg, self._hyper(group, "eps"))
        if self._option_test(group, "momentum", "positive"):
            buf = state["momentum_buffer"]
            buf.mul_(self._hyper(group, "momentum")).addcdiv_(grad, avg)
            p.sub_(F.mul(buf, lr))
        else:
            p.addcdiv_(grad, avg, value=F.neg(lr) if isinstance(lr, Tensor) else -lr)
