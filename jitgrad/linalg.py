"""``jitgrad.linalg``: PyTorch's ``torch.linalg``, the op table's ``linalg`` entries."""

from __future__ import annotations

from .ops.linalg import LinAlgError
from .ops.registry import export as _export

__all__ = ["LinAlgError", *_export("linalg", globals())]
