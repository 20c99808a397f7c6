"""Adagrad with PyTorch's learning-rate decay and initial accumulator value."""

from __future__ import annotations

from collections.abc import Iterable

from ..factories import full_like
from ..ops import functions as F
from ..tensor import Tensor
from ._common import advance, check, check_fused, check_lr, new_step
from .optimizer import Optimizer


class Adagrad(Optimizer):
    r"""PyTorch's Adagrad, per parameter with gradient g and step t:

    t <- t + 1;  g <- -g if maximize;  g <- g + wd p if wd != 0
    clr = lr / (1 + (t - 1) lr_decay);  s <- s + g^2;  p <- p - clr g / (sqrt(s) + eps)

    As in PyTorch, the state (``step``, ``sum`` filled with ``initial_accumulator_value``) of the
    parameters given to the constructor exists from the start; parameters added later with
    ``add_param_group`` get theirs on their first step.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach=None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused=None,
    ) -> None:
        check_lr(lr)
        check(0.0 <= lr_decay, "lr_decay value", lr_decay)
        check(0.0 <= weight_decay, "weight_decay value", weight_decay)
        check(
            0.0 <= initial_accumulator_value,
            "initial_accumulator_value value",
            initial_accumulator_value,
        )
        check(0.0 <= eps, "epsilon value", eps)
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            eps=eps,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
            fused=fused,
        )
        super().__init__(params, defaults)
        check_fused(fused, foreach, differentiable)
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p, self.state[p], group)

    def _init_state(self, p: Tensor, state: dict, group: dict) -> None:
        state["step"] = new_step()
        # (PyTorch fills later parameters' sums from the constructor's value too)
        state["sum"] = full_like(p, self.defaults["initial_accumulator_value"])

    def _update(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> None:
        step = advance(state["step"])
        if self._option(group, "maximize"):
            grad = F.neg(grad)
        if self._option(group, "weight_decay") != 0:
            grad = F.add(grad, F.mul(p, self._hyper(group, "weight_decay")))
        lr, lr_decay = self._hyper(group, "lr"), self._hyper(group, "lr_decay")
        clr = F.div(lr, F.add(F.mul(F.sub(step, 1), lr_decay), 1))
        state_sum = state["sum"]
        state_sum.addcmul_(grad, grad, value=1)
        std = F.add(F.sqrt(state_sum), self._hyper(group, "eps"))
        p.addcdiv_(grad, std, value=F.neg(clr))
