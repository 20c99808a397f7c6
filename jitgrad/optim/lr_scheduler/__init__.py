"""Learning-rate schedulers with PyTorch's semantics (``jitgrad.optim.lr_scheduler``).

A scheduler only rewrites ``group["lr"]`` in its optimizer's ``param_groups`` (``CyclicLR`` and
``OneCycleLR`` also ``group["momentum"]``, or ``betas[0]`` for Adam-style optimizers). Optimizers
read these through ``Optimizer._hyper``, which makes them runtime inputs of a compiled step, so
stepping a scheduler between calls of a ``jitgrad.compile``-d training step changes the values
the step uses without a retrace or a recompile (whether a momentum is nonzero is part of the
step's structure: ``Optimizer._option_test``).

Call ``scheduler.step()`` after ``optimizer.step()`` (once per epoch or per batch, as the
schedule is meant); constructing a scheduler performs its initial step, which records
``initial_lr`` in every parameter group and sets ``last_epoch`` to 0.
"""

from .base import EPOCH_DEPRECATION_WARNING, LRScheduler, _LRScheduler, _per_group  # noqa: F401
from .composite import ChainedScheduler, SequentialLR
from .cyclic import CosineAnnealingWarmRestarts, CyclicLR, OneCycleLR
from .plateau import ReduceLROnPlateau
from .schedules import (
    ConstantLR,
    CosineAnnealingLR,
    ExponentialLR,
    LambdaLR,
    LinearLR,
    MultiplicativeLR,
    MultiStepLR,
    PolynomialLR,
    StepLR,
)

__all__ = [
    "LRScheduler",
    "LambdaLR",
    "MultiplicativeLR",
    "StepLR",
    "MultiStepLR",
    "ConstantLR",
    "LinearLR",
    "ExponentialLR",
    "SequentialLR",
    "PolynomialLR",
    "CosineAnnealingLR",
    "ChainedScheduler",
    "ReduceLROnPlateau",
    "CyclicLR",
    "CosineAnnealingWarmRestarts",
    "OneCycleLR",
]
