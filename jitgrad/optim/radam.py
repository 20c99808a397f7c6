"""RAdam (rectified Adam) with PyTorch's update."""

from __future__ import annotations

from collections.abc import Iterable

from ..factories import zeros_like
from ..ops import functions as F
from ..tensor import Tensor
from ._common import advance, check, check_betas, check_lr, new_step
from .optimizer import Optimizer


class RAdam(Optimizer):
    r"""PyTorch's RAdam, per parameter with gradient g and step t:

    g <- -g if maximize;  t <- t + 1
    if wd != 0:  p <- p (1 - lr wd) if decoupled_weight_decay else g <- g + wd p
    m <- m + (1 - b1)(g - m);  v <- b2 v + (1 - b2) g^2;  m_hat = m / (1 - b1^t)
    rho_inf = 2 / (1 - b2) - 1;  rho_t = rho_inf - 2 t b2^t / (1 - b2^t)
    rho_t > 5:  r = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
                p <- p - m_hat lr sqrt(1 - b2^t) / (sqrt(v) + eps) r
    otherwise:  p <- p - m_hat lr

    The choice between the two is a ``where`` on the step count, not a Python branch, so a
    traced step holds both and needs no retrace when the count crosses the threshold.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        decoupled_weight_decay: bool = False,
        *,
        foreach=None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
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
            maximize=maximize,
            foreach=foreach,
            capturable=capturable,
            decoupled_weight_decay=decoupled_weight_decay,
            differentiable=differentiable,
        )
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, state: dict, group: dict) -> None:
        state["step"] = new_step()
        state["exp_avg"] = zeros_like(p)
        state["exp_avg_sq"] = zeros_like(p)

    def _update(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> None:
        lr = self._hyper(group, "lr")
        beta1, beta2 = self._hyper(group, "betas")
        if self._option(group, "maximize"):
            grad = F.neg(grad)
        step = advance(state["step"])
        if self._option(group, "weight_decay") != 0:
            wd = self._hyper(group, "weight_decay")
            if self._option(group, "decoupled_weight_decay"):
                p.mul_(1 - lr * wd)
            else:
                grad = F.add(grad, F.mul(p, wd))
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        b2_t = F.pow(beta2, step)
        bias_correction1 = F.rsub(F.pow(beta1, step), 1.0)
        bias_correction2 = F.rsub(b2_t, 1.0)
        corrected = F.div(exp_avg, bias_correction1)
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = F.rsub(F.div(F.mul(F.mul(step, 2), b2_t), bias_correction2), rho_inf)
        ratio = F.div(
            F.mul(F.mul(F.sub(rho_t, 4), F.sub(rho_t, 2)), rho_inf),
            F.mul(rho_t, (rho_inf - 4) * (rho_inf - 2)),
        )
        # (below the threshold the ratio may be negative; that branch is not taken)
        rect = F.sqrt(F.clamp(ratio, min=0.0))
        adaptive = F.div(
            F.sqrt(bias_correction2), F.add(F.sqrt(exp_avg_sq), self._hyper(group, "eps"))
        )
        plain = F.mul(corrected, lr)
        rectified = F.mul(F.mul(plain, adaptive), rect)
        p.sub_(F.where(F.gt(rho_t, 5.0), rectified, plain))
