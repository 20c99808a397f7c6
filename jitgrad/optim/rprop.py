"""Rprop (resilient backpropagation) with PyTorch's update."""

from __future__ import annotations

from collections.abc import Iterable

from ..factories import full_like, zeros_like
from ..ops import functions as F
from ..tensor import Tensor
from ._common import advance, check_lr, new_step, scalar
from .optimizer import Optimizer


class Rprop(Optimizer):
    r"""PyTorch's Rprop, per parameter with gradient g, the last step's gradient g' and
    per-element step sizes s (starting at lr):

    g <- -g if maximize;  f = eta_plus where g g' > 0, eta_minus where g g' < 0, else 1
    s <- clamp(s f, step_size_min, step_size_max);  g <- 0 where g g' < 0
    p <- p - sign(g) s;  g' <- g
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50),
        *,
        capturable: bool = False,
        foreach=None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        check_lr(lr)
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ValueError(f"Invalid eta values: {etas[0]}, {etas[1]}")
        defaults = dict(
            lr=lr,
            etas=etas,
            step_sizes=step_sizes,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
            capturable=capturable,
        )
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, state: dict, group: dict) -> None:
        state["step"] = new_step()
        state["prev"] = zeros_like(p)
        state["step_size"] = full_like(p, scalar(group["lr"]))

    def _update(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> None:
        eta_minus, eta_plus = self._hyper(group, "etas")
        lo, hi = self._hyper(group, "step_sizes")
        if self._option(group, "maximize"):
            grad = F.neg(grad)
        advance(state["step"])
        prev, step_size = state["prev"], state["step_size"]
        sign = F.sign(F.mul(grad, prev))
        # the factors in the parameter's dtype (as PyTorch writes them into the sign tensor)
        one = F.ones_like(sign)
        turned = F.lt(sign, 0)
        factor = F.where(
            F.gt(sign, 0), F.mul(one, eta_plus), F.where(turned, F.mul(one, eta_minus), one)
        )
        step_size.copy_(F.minimum(F.maximum(F.mul(step_size, factor), lo), hi))
        grad = F.where(turned, F.zeros_like(grad), grad)
        p.addcmul_(F.sign(grad), step_size, value=-1)
        prev.copy_(grad)
