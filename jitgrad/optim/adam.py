"""Adam and AdamW with PyTorch's update formulas (bias corrections from a step tensor)."""

from __future__ import annotations

from collections.abc import Iterable

from .. import dtypes
from ..factories import zeros, zeros_like
from ..ops import functions as F
from ..tensor import Tensor
from . import fused
from ._common import check, check_betas, check_fused, check_lr
from .optimizer import Optimizer


class Adam(Optimizer):
    r"""PyTorch's Adam, per parameter with gradient g and step t (a 0-d float32 tensor):

    g <- -g if maximize;  t <- t + 1
    if wd != 0:  p <- p (1 - lr wd) if decoupled (AdamW) else g <- g + wd p
    m <- m + (1 - b1)(g - m);  v <- b2 v + (1 - b2) g^2;  v_max <- max(v_max, v) if amsgrad
    p <- p - lr / (1 - b1^t) * m / (sqrt(v or v_max) / sqrt(1 - b2^t) + eps)
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach=None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused=None,
        decoupled_weight_decay: bool = False,
    ) -> None:
        # foreach/capturable/differentiable/fused: accepted and kept in the groups (as PyTorch
        # keeps them); there is one implementation here.
        if isinstance(lr, Tensor) and foreach and not capturable:
            raise ValueError(
                "lr as a Tensor is not supported for capturable=False and foreach=True"
            )
        check_lr(lr)
        check(0.0 <= eps, "epsilon value", eps)
        check_betas(betas)
        check(0.0 <= weight_decay, "weight_decay value", weight_decay)
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            foreach=foreach,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=decoupled_weight_decay,
        )
        super().__init__(params, defaults)
        check_fused(fused, foreach, differentiable)

    def _init_state(self, p: Tensor, state: dict, group: dict) -> None:
        state["step"] = zeros((), dtype=dtypes.float32)
        state["exp_avg"] = zeros_like(p)
        state["exp_avg_sq"] = zeros_like(p)
        if self._option(group, "amsgrad"):
            state["max_exp_avg_sq"] = zeros_like(p)

    def step(self, closure=None):
        self._corrections = {}  # (see _fused_update)
        return super().step(closure)

    def _update(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> None:
        lr = self._hyper(group, "lr")
        beta1, beta2 = self._hyper(group, "betas")
        eps = self._hyper(group, "eps")
        buffers = [grad, state["exp_avg"], state["exp_avg_sq"]]
        if self._option(group, "amsgrad"):
            buffers.append(state["max_exp_avg_sq"])
        decay = self._option(group, "weight_decay") != 0
        wd = self._hyper(group, "weight_decay") if decay else 0.0
        if fused.usable(p, *buffers) and fused.numbers(lr, beta1, beta2, eps, wd):
            return self._fused_update(p, grad, state, group, lr, beta1, beta2, eps, wd)
        if self._option(group, "maximize"):
            grad = F.neg(grad)
        step_t = state["step"]
        step_t.add_(1)
        if self._option(group, "weight_decay") != 0:
            wd = self._hyper(group, "weight_decay")
            if self._option(group, "decoupled_weight_decay"):
                p.mul_(1 - lr * wd)
            else:
                grad = F.add(grad, F.mul(p, wd))
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        # Bias corrections in float64 from the step tensor: PyTorch's default path does this
        # arithmetic in Python doubles, and float32 would lose digits in 1 - 0.999^t.
        step = F.cast(step_t, dtypes.float64)
        bias_correction1 = F.rsub(F.pow(beta1, step), 1.0)
        bias_correction2_sqrt = F.sqrt(F.rsub(F.pow(beta2, step), 1.0))
        step_size = F.div(lr, bias_correction1)
        if self._option(group, "amsgrad"):
            max_sq = state["max_exp_avg_sq"]
            max_sq.copy_(F.maximum(max_sq, exp_avg_sq))
            second = max_sq
        else:
            second = exp_avg_sq
        denom = F.add(F.div(F.sqrt(second), bias_correction2_sqrt), eps)
        p.addcdiv_(exp_avg, denom, value=F.neg(step_size))

    def _fused_update(self, p, grad, state, group, lr, beta1, beta2, eps, wd) -> None:
        """``_update`` in one loop (optim.fused), the same arithmetic: the bias corrections
        come from the same ops, once per step count in a ``step()``."""
        step_t = state["step"]
        step_t.add_(1)
        key = (id(group), float(step_t._data), lr, beta1, beta2)
        corrections = getattr(self, "_corrections", {})
        if key not in corrections:
            step = F.cast(step_t, dtypes.float64)
            bias_correction1 = F.rsub(F.pow(beta1, step), 1.0)
            bias_correction2_sqrt = F.sqrt(F.rsub(F.pow(beta2, step), 1.0))
            step_size = F.div(lr, bias_correction1)
            corrections[key] = (bias_correction2_sqrt._data, F.neg(step_size)._data)
        bc2, neg_step = corrections[key]
        decay = fused.NO_DECAY
        if self._option(group, "weight_decay") != 0:
            decay = fused.COUPLED
            if self._option(group, "decoupled_weight_decay"):
                decay, wd = fused.DECOUPLED, 1 - lr * wd
        fused.adam(
            p,
            grad,
            state["exp_avg"],
            state["exp_avg_sq"],
            state.get("max_exp_avg_sq") if group["amsgrad"] else None,
            maximize=self._option(group, "maximize"),
            decay=decay,
            wd=wd,
            w1=1 - beta1,
            b2=beta2,
            w2=1 - beta2,
            bc2=bc2,
            eps=eps,
            step=neg_step,
        )


class AdamW(Adam):
    """Adam with decoupled weight decay: ``p <- p (1 - lr wd)`` before the Adam update."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach=None,
        capturable: bool = False,
        differentiable: bool = False,
        fused=None,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            foreach=foreach,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=True,
        )

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
