"""NAdam (Adam with Nesterov momentum) with PyTorch's momentum decay schedule."""

from __future__ import annotations

from collections.abc import Iterable

from .. import dtypes
from ..factories import ones, zeros_like
from ..ops import functions as F
from ..tensor import Tensor
from ._common import advance, check, check_betas, check_lr, new_step
from .optimizer import Optimizer


class NAdam(Optimizer):
    r"""PyTorch's NAdam, per parameter with gradient g and step t:

    g <- -g if maximize;  t <- t + 1
    if wd != 0:  p <- p (1 - lr wd) if decoupled_weight_decay else g <- g + wd p
    mu_t = b1 (1 - 0.96^(t psi) / 2),  mu_{t+1} likewise;  P <- P mu_t   (``mu_product``)
    m <- m + (1 - b1)(g - m);  v <- b2 v + (1 - b2) g^2;  d = sqrt(v / (1 - b2^t)) + eps
    p <- p - lr (1 - mu_t) / (1 - P) g / d - lr mu_{t+1} / (1 - P mu_{t+1}) m / d
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum_decay: float = 4e-3,
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
        check(0.0 <= momentum_decay, "momentum_decay value", momentum_decay)
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            momentum_decay=momentum_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
            foreach=foreach,
            capturable=capturable,
            differentiable=differentiable,
        )
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, state: dict, group: dict) -> None:
        state["step"] = new_step()
        state["mu_product"] = ones((), dtype=dtypes.float32)
        state["exp_avg"] = zeros_like(p)
        state["exp_avg_sq"] = zeros_like(p)

    def _update(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> None:
        lr = self._hyper(group, "lr")
        beta1, beta2 = self._hyper(group, "betas")
        psi = self._hyper(group, "momentum_decay")
        if self._option(group, "maximize"):
            grad = F.neg(grad)
        step = advance(state["step"])
        bias_correction2 = F.rsub(F.pow(beta2, step), 1.0)
        if self._option(group, "weight_decay") != 0:
            wd = self._hyper(group, "weight_decay")
            if self._option(group, "decoupled_weight_decay"):
                p.mul_(1 - lr * wd)
            else:
                grad = F.add(grad, F.mul(p, wd))
        mu = F.mul(F.rsub(F.mul(F.pow(0.96, F.mul(step, psi)), 0.5), 1.0), beta1)
        mu_next = F.mul(F.rsub(F.mul(F.pow(0.96, F.mul(F.add(step, 1), psi)), 0.5), 1.0), beta1)
        mu_product = state["mu_product"]
        # the product is kept in its own dtype: the factor is rounded to it first, as PyTorch
        # multiplies a float32 tensor by a Python number
        mu_product.mul_(F.cast(mu, mu_product.dtype))
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = F.add(F.sqrt(F.div(exp_avg_sq, bias_correction2)), self._hyper(group, "eps"))
        product = F.cast(mu_product, dtypes.float64)
        neg_lr = F.neg(lr) if isinstance(lr, Tensor) else -lr
        p.addcdiv_(grad, denom, value=F.div(F.mul(F.rsub(mu, 1.0), neg_lr), F.rsub(product, 1.0)))
        p.addcdiv_(
            exp_avg,
            denom,
            value=F.div(F.mul(mu_next, neg_lr), F.rsub(F.mul(product, mu_next), 1.0)),
        )
