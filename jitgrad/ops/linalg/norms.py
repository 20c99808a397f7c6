"""matrix_norm (``linalg.norm`` builds on it, in ops/statistics.py)."""

from __future__ import annotations

import math

import numpy as np

from .. import functions as F
from ..registry import op
from ..spec import Spec, arg
from .common import (
    _check,
)
from .svd import svdvals


# -- matrix_norm ----------------------------------------------------------------------------------
def _matrix_norm_ref(a, ord="fro"):
    return np.linalg.norm(a, ord=ord, axis=(-2, -1))


@op(
    spec=Spec([arg(2, 3, 4), "nuc"], _matrix_norm_ref, differentiable=(0,), tol=1e-5),
    namespace="linalg",
)
def matrix_norm(A, ord="fro", dim=(-2, -1), keepdim=False, *, dtype=None):
    """'fro', 'nuc', 2 / -2 (largest / smallest singular value), 1 / -1 (max / min column
    abs sum), inf / -inf (max / min row abs sum) over the two dims ``dim``."""
    if dtype is not None:
        A = F.cast(A, dtype)
    _check("linalg.matrix_norm", A, square=False)
    d0, d1 = (d % A.ndim for d in dim)
    if d0 == d1:
        raise RuntimeError(f"linalg.matrix_norm: dims must be different. Got ({dim[0]}, {dim[1]})")
    # the matrices with rows along d0 and columns along d1, last
    moved = F.permute(A, [d for d in range(A.ndim) if d not in (d0, d1)] + [d0, d1])
    if ord == "fro":
        out = F.norm(moved, 2, (-2, -1))
    elif ord == "nuc":
        out = F.sum(svdvals(moved), -1)
    elif ord in (2, -2):
        s = svdvals(moved)
        out = F.amax(s, -1) if ord == 2 else F.amin(s, -1)
    elif ord in (1, -1, math.inf, -math.inf):
        axis = -2 if ord in (1, -1) else -1  # column sums (over rows) / row sums
        sums = F.sum(F.abs(moved), axis)
        out = F.amax(sums, -1) if ord > 0 else F.amin(sums, -1)
    else:
        raise RuntimeError(f"linalg.matrix_norm: Order {ord} not supported.")
    if keepdim:
        for d in sorted((d0, d1)):
            out = F.unsqueeze(out, d)
    return out
