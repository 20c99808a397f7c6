"""Adafactor with PyTorch's update (factored second moments for matrices)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from .. import dtypes
from ..factories import zeros, zeros_like
from ..ops import functions as F
from ..tensor import Tensor
from ._common import advance, new_step
from .optimizer import Optimizer


class Adafactor(Optimizer):
    r"""PyTorch's Adafactor, per parameter with gradient g and step t:

    g <- -g if maximize;  t <- t + 1;  w = t^beta2_decay;  rho = min(lr, 1 / sqrt(t))
    alpha = max(eps2, ||p|| / sqrt(numel)) rho;  p <- p (1 - lr wd) if wd != 0
    matrices (and stacks of them): R <- R + w (mean_j g^2 - R), C <- C + w (mean_i g^2 - C),
                                   v = R C / max(mean_i R, eps1)
    vectors:                       v <- v + w (g^2 - v)
    u = g / sqrt(max(v, eps1^2));  p <- p - alpha / max(1, ||u|| / (sqrt(numel) d)) u

    ``eps1`` None means the parameter dtype's machine epsilon. The maxima and minima are
    tensor operations, not Python branches, so the step can be traced.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-2,
        beta2_decay: float = -0.8,
        eps: tuple[float | None, float] = (None, 1e-3),
        d: float = 1.0,
        weight_decay: float = 0.0,
        *,
        foreach=None,
        maximize: bool = False,
    ) -> None:
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= lr:
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if not 0.0 >= beta2_decay:
            raise ValueError(f"beta2_decay should be <= 0 but is: {beta2_decay}")
        if eps[0] is not None and not 0.0 <= eps[0]:
            raise ValueError(f"epsilon1 should be >= 0 but is: {eps[0]}")
        if not 0.0 <= eps[1]:
            raise ValueError(f"epsilon2 should be >= 0 but is: {eps[1]}")
        if not 1.0 <= d:
            raise ValueError(f"Clipping threshold d should be >= 1 but is: {d}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"weight_decay should be >= 0 but is: {weight_decay}")
        defaults = dict(
            lr=lr,
            beta2_decay=beta2_decay,
            eps=eps,
            d=d,
            weight_decay=weight_decay,
            foreach=foreach,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, state: dict, group: dict) -> None:
        state["step"] = new_step()
        if p.ndim > 1:
            state["row_var"] = zeros((*p.shape[:-1], 1), dtype=p.dtype)
            state["col_var"] = zeros((*p.shape[:-2], 1, p.shape[-1]), dtype=p.dtype)
        else:
            state["variance"] = zeros_like(p)

    def _state_shape(self, p: Tensor, key: str) -> tuple:
        shape = tuple(p.shape)
        if key == "row_var":
            return (*shape[:-1], 1)
        if key == "col_var":
            return (*shape[:-2], 1, shape[-1])
        return shape

    def _update(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> None:
        lr = self._hyper(group, "lr")
        eps1, eps2 = self._option(group, "eps")  # (eps1 may be None: part of the structure)
        if eps1 is None:
            eps1 = float(np.finfo(p.dtype.np).eps)
        if self._option(group, "maximize"):
            grad = F.neg(grad)
        step = advance(state["step"])
        weight = F.pow(step, self._hyper(group, "beta2_decay"))
        rho = F.clamp(F.reciprocal(F.sqrt(step)), max=lr)
        rms = F.div(F.cast(F.norm(p), dtypes.float64), math.sqrt(p.numel()))
        alpha = F.mul(F.clamp(rms, min=eps2), rho)
        if self._option(group, "weight_decay") != 0:
            p.mul_(1 - lr * self._hyper(group, "weight_decay"))
        if grad.ndim > 1:
            row_var, col_var = state["row_var"], state["col_var"]
            row_mean = F.div(F.square(F.norm(grad, dim=-1, keepdim=True)), grad.shape[-1])
            row_var.lerp_(row_mean, weight)
            col_mean = F.div(F.square(F.norm(grad, dim=-2, keepdim=True)), grad.shape[-2])
            col_var.lerp_(col_mean, weight)
            estimate = F.div(
                F.matmul(row_var, col_var), F.clamp(row_var.mean(dim=-2, keepdim=True), min=eps1)
            )
        else:
            variance = state["variance"]
            variance.lerp_(F.mul(grad, grad), weight)
            estimate = variance
        update = F.mul(F.rsqrt(F.clamp(estimate, min=eps1 * eps1)), grad)
        size = F.div(
            F.cast(F.norm(update), dtypes.float64),
            self._hyper(group, "d") * math.sqrt(update.numel()),
        )
        p.sub_(F.mul(update, F.div(alpha, F.clamp(size, min=1.0))))
