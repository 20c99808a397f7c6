"""Pieces the optimizers share: argument checks with PyTorch's wording, 0-d step counters."""

from __future__ import annotations

from .. import dtypes
from ..factories import zeros
from ..ops import functions as F
from ..tensor import Tensor


def check_lr(lr) -> None:
    if isinstance(lr, Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")


def check(ok: bool, what: str, value) -> None:
    """``ValueError("Invalid {what}: {value}")`` unless ``ok`` (PyTorch's messages)."""
    if not ok:
        raise ValueError(f"Invalid {what}: {value}")


def check_betas(betas) -> None:
    for i in (0, 1):
        check(0.0 <= betas[i] < 1.0, f"beta parameter at index {i}", betas[i])


def new_step() -> Tensor:
    """A step counter: a 0-d float32 tensor, as PyTorch keeps it (written in place)."""
    return zeros((), dtype=dtypes.float32)


def advance(step_t: Tensor) -> Tensor:
    """Count one more step; returns the count in float64 for the bias-correction arithmetic
    (PyTorch's default path does that arithmetic in Python doubles)."""
    step_t.add_(1)
    return F.cast(step_t, dtypes.float64)


def scalar(value) -> float:
    """A learning rate given as a 1-element tensor, as a Python number (eager only)."""
    return float(value) if isinstance(value, Tensor) else value


def check_fused(fused, foreach, differentiable) -> None:
    """PyTorch's checks of ``fused=True`` (accepted: there is one implementation here)."""
    if fused:
        if differentiable:
            raise RuntimeError("`fused` does not support `differentiable`")
        if foreach:
            raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
