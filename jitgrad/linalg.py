"""``jitgrad.linalg``: PyTorch's ``torch.linalg``, the op table's ``linalg`` entries."""

from __future__ import annotations

from .ops import statistics as _statistics  # noqa: F401  (declares the linalg norms)
from .ops.linalg import LinAlgError
from .ops.registry import export as _export

__all__ = ["LinAlgError", *_export("linalg", globals())]
