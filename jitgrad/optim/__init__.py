"""Optimizers (``jitgrad.optim``), PyTorch-shaped."""

from . import lr_scheduler  # noqa: F401
from .adam import Adam, AdamW  # noqa: F401
from .optimizer import Optimizer, required  # noqa: F401
from .sgd import SGD  # noqa: F401
