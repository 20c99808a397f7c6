"""Stochastic weight averaging and EMA of weights (PyTorch's ``torch.optim.swa_utils``):
``AveragedModel``, the averaging functions, ``update_bn`` and the ``SWALR`` schedule."""

from __future__ import annotations

import copy
import itertools
import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from .. import dtypes
from ..autograd.grad_mode import STATE, no_grad
from ..factories import tensor
from ..nn.module import Module
from ..nn.normalization import _BatchNorm
from ..ops import functions as F
from ..tensor import Tensor
from .lr_scheduler import LRScheduler, _per_group
from .optimizer import Optimizer

__all__ = [
    "AveragedModel",
    "update_bn",
    "SWALR",
    "get_ema_multi_avg_fn",
    "get_swa_multi_avg_fn",
    "get_ema_avg_fn",
    "get_swa_avg_fn",
]


def _check_decay(decay: float) -> None:
    if decay < 0.0 or decay > 1.0:
        raise ValueError(
            f"Invalid decay value {decay} provided. Please provide a value in [0,1] range."
        )


def get_ema_multi_avg_fn(decay: float = 0.999):
    """In-place exponential moving average of lists of tensors:
    ``ema <- ema + (1 - decay)(current - ema)``."""
    _check_decay(decay)

    def ema_update(ema_params: list, current_params: list, _num_averaged) -> None:
        with no_grad():
            for ema, cur in zip(ema_params, current_params):
                if ema.is_floating_point():
                    ema.lerp_(cur, 1 - decay)
                else:
                    ema.copy_(F.add(F.mul(ema, decay), F.mul(cur, 1 - decay)))

    return ema_update


def get_swa_multi_avg_fn():
    """In-place running mean of lists of tensors: ``avg <- avg + (current - avg) / (n + 1)``."""

    def swa_update(averaged_params: list, current_params: list, num_averaged) -> None:
        with no_grad():
            for avg, cur in zip(averaged_params, current_params):
                if avg.is_floating_point():
                    avg.lerp_(cur, F.reciprocal(F.add(num_averaged, 1)))
                else:
                    avg.add_(F.div(F.sub(cur, avg), F.add(num_averaged, 1)))

    return swa_update


def get_ema_avg_fn(decay: float = 0.999):
    """``(ema, current, n) -> decay ema + (1 - decay) current``."""
    _check_decay(decay)

    def ema_update(ema_param: Tensor, current_param: Tensor, num_averaged):
        with no_grad():
            return F.add(F.mul(ema_param, decay), F.mul(current_param, 1 - decay))

    return ema_update


def get_swa_avg_fn():
    """``(avg, current, n) -> avg + (current - avg) / (n + 1)``."""

    def swa_update(averaged_param: Tensor, current_param: Tensor, num_averaged):
        with no_grad():
            return F.add(
                averaged_param, F.div(F.sub(current_param, averaged_param), num_averaged + 1)
            )

    return swa_update


class AveragedModel(Module):
    """A copy of ``model`` (``self.module``) whose parameters (and buffers, with
    ``use_buffers``) ``update_parameters(model)`` averages: the running mean by default (SWA),
    or ``avg_fn(avg, current, n)`` / the in-place ``multi_avg_fn(avgs, currents, n)``, e.g.
    ``get_ema_multi_avg_fn(0.999)`` for an exponential moving average. The first update copies.
    ``n_averaged`` is a buffer (saved in ``state_dict``).

    Eagerly the first update is told apart by reading ``n_averaged``, as PyTorch does; under
    ``jitgrad.compile`` the choice is a ``where`` on it, so the update compiles once.
    """

    def __init__(
        self,
        model: Module,
        device=None,
        avg_fn: Callable | None = None,
        multi_avg_fn: Callable | None = None,
        use_buffers: bool = False,
    ) -> None:
        super().__init__()
        if avg_fn is not None and multi_avg_fn is not None:
            raise AssertionError("Only one of avg_fn and multi_avg_fn should be provided")
        self.module = copy.deepcopy(model)
        if device is not None:
            self.module = self.module.to(device)
        self.register_buffer("n_averaged", tensor(0, dtype=dtypes.int64))
        self.avg_fn = avg_fn
        self.multi_avg_fn = multi_avg_fn
        self.use_buffers = use_buffers

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def _pairs(self, model: Module) -> list:
        if self.use_buffers:
            mine = itertools.chain(self.module.parameters(), self.module.buffers())
            theirs = itertools.chain(model.parameters(), model.buffers())
        else:
            mine, theirs = self.parameters(), model.parameters()
        return [(a.detach(), b.detach()) for a, b in zip(mine, theirs)]

    def update_parameters(self, model: Module) -> None:
        pairs = self._pairs(model)
        n = self.n_averaged
        with no_grad():
            if STATE.tracer is None:
                self._update_eager(pairs, n)
            else:
                self._update_traced(pairs, n)
            if not self.use_buffers:
                for mine, theirs in zip(self.module.buffers(), model.buffers()):
                    mine.detach().copy_(theirs.detach())
            n.add_(1)

    def _update_eager(self, pairs: list, n: Tensor) -> None:
        if bool(n == 0):
            for avg, cur in pairs:
                avg.copy_(cur)
            return
        if self.multi_avg_fn is not None:
            self.multi_avg_fn([a for a, _ in pairs], [c for _, c in pairs], n)
            return
        avg_fn = self.avg_fn if self.avg_fn is not None else get_swa_avg_fn()
        for avg, cur in pairs:
            avg.copy_(avg_fn(avg, cur, n))

    def _update_traced(self, pairs: list, n: Tensor) -> None:
        first = F.eq(n, 0)
        if self.multi_avg_fn is not None:
            self.multi_avg_fn([a for a, _ in pairs], [c for _, c in pairs], n)
            for avg, cur in pairs:
                avg.copy_(F.where(first, cur, avg))
            return
        avg_fn = self.avg_fn if self.avg_fn is not None else get_swa_avg_fn()
        for avg, cur in pairs:
            avg.copy_(F.where(first, cur, avg_fn(avg, cur, n)))


def update_bn(loader: Iterable[Any], model: Module, device=None) -> None:
    """Recompute the batch-norm running statistics of ``model`` (e.g. an ``AveragedModel``) as
    plain averages over one pass of ``loader`` (batches, or tuples whose first item is the
    input); other modules are untouched, and the training mode is restored."""
    momenta = {}
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.reset_running_stats()
            momenta[module] = module.momentum
    if not momenta:
        return
    was_training = model.training
    model.train()
    for module in momenta:
        module.momentum = None
    for batch in loader:
        if isinstance(batch, (list, tuple)):
            batch = batch[0]
        if device is not None:
            batch = batch.to(device)
        model(batch)
    for module, momentum in momenta.items():
        module.momentum = momentum
    model.train(was_training)


class SWALR(LRScheduler):
    """Anneal each group's learning rate to ``swa_lr`` over ``anneal_epochs`` epochs (cosine or
    linear), then hold it: the schedule for the averaging phase of SWA."""

    def __init__(
        self,
        optimizer: Optimizer,
        swa_lr,
        anneal_epochs: int = 10,
        anneal_strategy: str = "cos",
        last_epoch: int = -1,
    ) -> None:
        for lr, group in zip(_per_group("swa_lr", optimizer, swa_lr), optimizer.param_groups):
            group["swa_lr"] = lr
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(
                f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy}"
            )
        self._anneal_strategy = anneal_strategy
        if not isinstance(anneal_epochs, int) or anneal_epochs < 0:
            raise ValueError(f"anneal_epochs must be equal or greater than 0, got {anneal_epochs}")
        self.anneal_epochs = anneal_epochs
        super().__init__(optimizer, last_epoch)

    def anneal_func(self, t: float) -> float:
        if self._anneal_strategy == "cos":
            return (1 - math.cos(math.pi * t)) / 2
        return t

    @staticmethod
    def _get_initial_lr(lr, swa_lr, alpha):
        if alpha == 1:
            return swa_lr
        return (lr - alpha * swa_lr) / (1 - alpha)

    def get_lr(self) -> list:
        if not self._get_lr_called_within_step:
            warnings.warn(
                "To get the last learning rate computed by the scheduler, please use "
                "`get_last_lr()`.",
                UserWarning,
                stacklevel=2,
            )
        step = self._step_count - 1
        if self.anneal_epochs == 0:
            step = max(1, step)
        # undo the last step's mixing to recover the rate being annealed from, then mix again
        span = max(1, self.anneal_epochs)
        prev_alpha = self.anneal_func(max(0, min(1, (step - 1) / span)))
        groups = self.optimizer.param_groups
        prev_lrs = [self._get_initial_lr(g["lr"], g["swa_lr"], prev_alpha) for g in groups]
        alpha = self.anneal_func(max(0, min(1, step / span)))
        return [g["swa_lr"] * alpha + lr * (1 - alpha) for g, lr in zip(groups, prev_lrs)]
