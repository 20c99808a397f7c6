"""What the decompositions share: their error type, argument checks and small tensor helpers."""

from __future__ import annotations

import numpy as np

from ... import dtypes
from ...autograd.grad_mode import STATE
from ...tensor import Tensor
from .. import functions as F


class LinAlgError(RuntimeError):
    """A linear algebra routine failed on its input (a singular matrix, one that is not
    positive-definite): PyTorch's ``torch.linalg.LinAlgError``."""


# -- helpers --------------------------------------------------------------------------------------


def _check(name: str, A: Tensor, square: bool = True, arg_name: str = "A") -> None:
    if A.ndim < 2:
        raise RuntimeError(f"{name}: The input tensor {arg_name} must have at least 2 dimensions.")
    if not A.dtype.is_floating_point:
        kind = dtypes.type_name(A.dtype)
        raise RuntimeError(
            f"{name}: Expected a floating point or complex tensor as input. Got {kind}"
        )
    if A.dtype.itemsize == 2:  # (LAPACK has no 16-bit floats)
        raise RuntimeError(
            f"{name}: Low precision dtypes not supported. Got {dtypes.type_name(A.dtype)}; "
            "convert to float32 first (A.float())"
        )
    if square and A.shape[-1] != A.shape[-2]:
        raise RuntimeError(
            f"{name}: {arg_name} must be batches of square matrices, but they are "
            f"{A.shape[-2]} by {A.shape[-1]} matrices"
        )


def _batch_prefix(a: np.ndarray, i: int) -> str:
    return f"(Batch element {i}): " if a.ndim > 2 else ""


def _mT(x: Tensor) -> Tensor:
    return F.transpose(x, -1, -2)


def _eye(n: int, dtype) -> Tensor:
    return Tensor._wrap(np.eye(n, dtype=dtype.np))


def _tril_mask(n: int, k: int, dtype) -> Tensor:
    return Tensor._wrap(np.tril(np.ones((n, n), dtype=dtype.np), k))


def _row(v: Tensor) -> Tensor:  # (..., k) -> (..., 1, k): v_j along rows
    return F.unsqueeze(v, -2)


def _col(v: Tensor) -> Tensor:  # (..., k) -> (..., k, 1): v_i down columns
    return F.unsqueeze(v, -1)


def _diag_embed(v: Tensor) -> Tensor:
    return F.mul(_col(v), _eye(v.shape[-1], v.dtype))


def _tracing(name: str, why: str) -> None:
    """Raise TraceError naming ``name`` while a trace records (for what compiled code lacks)."""
    if STATE.tracer is not None:
        from ...ir import TraceError

        raise TraceError(f"{name}: {why} cannot be compiled; call it outside jitgrad.compile.")


def _same_shape(avals, **_):
    return tuple(avals[0].shape), avals[0].dtype


def _sym_call(fn, a, **params):
    """Apply ``fn`` to the symmetric part of ``a``: finite differences then perturb A
    symmetrically, the perturbations a symmetric gradient is the gradient for."""
    return fn((a + a.transpose(-2, -1)) * 0.5, **params)


def _skew(x: Tensor) -> Tensor:
    return F.sub(x, _mT(x))
