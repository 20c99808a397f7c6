"""ASGD (averaged stochastic gradient descent) with PyTorch's update."""

from __future__ import annotations

from collections.abc import Iterable

from .. import dtypes
from ..factories import ones, tensor, zeros_like
from ..ops import functions as F
from ..tensor import Tensor
from ._common import advance, check, check_lr, new_step, scalar
from .optimizer import Optimizer


class ASGD(Optimizer):
    r"""PyTorch's ASGD, per parameter with gradient g and step t; ``eta`` and ``mu`` are 0-d
    float32 state tensors (``eta`` starts at lr, ``mu`` at 1):

    g <- -g if maximize;  t <- t + 1;  g <- g + wd p if wd != 0
    p <- p (1 - lambd eta) - eta g
    ax <- p if mu == 1 else ax + mu (p - ax)
    eta <- lr / (1 + lambd lr t)^alpha;  mu <- 1 / max(1, t - t0)
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0,
        foreach=None,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
    ) -> None:
        check_lr(lr)
        check(0.0 <= weight_decay, "weight_decay value", weight_decay)
        defaults = dict(
            lr=lr,
            lambd=lambd,
            alpha=alpha,
            t0=t0,
            weight_decay=weight_decay,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
            capturable=capturable,
        )
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, state: dict, group: dict) -> None:
        state["step"] = new_step()
        state["eta"] = tensor(scalar(group["lr"]), dtype=dtypes.float32)
        state["mu"] = ones((), dtype=dtypes.float32)
        state["ax"] = zeros_like(p)

    def _update(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> None:
        lr = self._hyper(group, "lr")
        lambd = self._hyper(group, "lambd")
        if self._option(group, "maximize"):
            grad = F.neg(grad)
        step = advance(state["step"])
        if self._option(group, "weight_decay") != 0:
            grad = F.add(grad, F.mul(p, self._hyper(group, "weight_decay")))
        eta, mu, ax = state["eta"], state["mu"], state["ax"]
        eta64 = F.cast(eta, dtypes.float64)
        p.mul_(F.rsub(F.mul(eta64, lambd), 1.0))
        p.sub_(F.mul(grad, eta64))
        # ax follows p exactly while mu is 1 (PyTorch's copy), the running average after t0
        averaged = F.add(ax, F.mul(F.sub(p, ax), mu))
        ax.copy_(F.where(F.eq(mu, 1.0), p, averaged))
        base = F.add(F.mul(step, lambd * lr), 1.0)
        eta.copy_(F.div(lr, F.pow(base, self._hyper(group, "alpha"))))
        mu.copy_(F.reciprocal(F.maximum(F.sub(step, self._hyper(group, "t0")), 1.0)))
