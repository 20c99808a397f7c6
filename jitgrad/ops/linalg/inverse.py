"""inv, det, slogdet, logdet and solve (LU underneath), with their ``torch`` aliases."""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np

from ... import dtypes
from ...tensor import Tensor, apply
from .. import functions as F
from ..registry import op, register
from ..spec import Arg, Spec, arg
from .common import (
    LinAlgError,
    _batch_prefix,
    _check,
    _mT,
    _same_shape,
)


# -- inv ------------------------------------------------------------------------------------------
def _singular_pivot(a: np.ndarray) -> tuple:
    """(batch element, 1-based index of the first zero pivot of LU) of a singular batch."""
    import scipy.linalg

    flat = a.reshape((-1,) + a.shape[-2:])
    for i, m in enumerate(flat):
        lu, _ = scipy.linalg.lapack.get_lapack_funcs("getrf", (m,))(m)[:2]
        zero = np.flatnonzero(np.diagonal(lu) == 0)
        if zero.size or not np.isfinite(lu).all():
            return i, int(zero[0]) + 1 if zero.size else 1
    return 0, 1


def _inv_impl(a):
    try:
        return np.linalg.inv(a)
    except np.linalg.LinAlgError:
        i, k = _singular_pivot(a)
        raise LinAlgError(
            f"linalg.inv: {_batch_prefix(a, i)}The diagonal element {k} is zero, the inversion "
            "could not be completed because the input matrix is singular."
        ) from None


def _inv_vjp(n, g):
    # d(A^-1) = -A^-1 dA A^-1  =>  gA = -X^T g X^T
    x = _mT(n.out)
    return (F.neg(F.matmul(F.matmul(x, g), x)),)


_SQUARE = Arg((2, 3, 3), -1.0, 1.0)


inv_p = register(
    "inv",
    impl=_inv_impl,
    vjp=_inv_vjp,
    shape=_same_shape,
    kind="linalg",
    save_out=True,
    saves=False,
    spec=Spec([_SQUARE], np.linalg.inv, differentiable=(0,), tol=1e-5),
)


@op(spec=Spec([_SQUARE], np.linalg.inv, differentiable=(0,), tol=1e-5), namespace="linalg")
def inv(A):
    """The inverse of each square matrix of ``A``."""
    _check("linalg.inv", A)
    return apply(inv_p, (A,))


@op(spec=Spec([_SQUARE], np.linalg.inv, differentiable=(0,), tol=1e-5))
def inverse(input):
    """``torch.inverse``: ``linalg.inv``."""
    return inv(input)


# -- det, slogdet ---------------------------------------------------------------------------------
def _det_vjp(n, g):
    # d det(A) = det(A) tr(A^-1 dA)  =>  gA = g det(A) A^-T
    (a,) = n.inputs
    scale = F.unsqueeze(F.unsqueeze(F.mul(g, n.out), -1), -1)
    return (F.mul(scale, _mT(inv(a))),)


det_p = register(
    "det",
    impl=np.linalg.det,
    vjp=_det_vjp,
    shape=lambda avals: (tuple(avals[0].shape[:-2]), avals[0].dtype),
    kind="linalg",
    save_out=True,
    spec=Spec([_SQUARE], np.linalg.det, differentiable=(0,), tol=1e-5),
)


def _slogdet_impl(a):
    sign, logabs = np.linalg.slogdet(a)
    return np.stack([sign, logabs], -1).astype(a.dtype, copy=False)


def _slogdet_ref(a):
    sign, logabs = np.linalg.slogdet(a)
    return np.stack([sign, logabs], -1)


def _slogdet_vjp(n, g):
    # the sign is piecewise constant; d log|det A| = tr(A^-1 dA)  =>  gA = g A^-T
    (a,) = n.inputs
    glog = F.narrow(g, -1, 1, 1)  # (..., 1)
    return (F.mul(F.unsqueeze(glog, -1), _mT(inv(a))),)


slogdet_p = register(
    "slogdet",
    impl=_slogdet_impl,
    vjp=_slogdet_vjp,
    shape=lambda avals: (tuple(avals[0].shape[:-2]) + (2,), avals[0].dtype),
    kind="linalg",
    spec=Spec([_SQUARE], _slogdet_ref, differentiable=(0,), tol=1e-5),
)

SlogdetResult = namedtuple("linalg_slogdet", ["sign", "logabsdet"])


@op(spec=Spec([_SQUARE], np.linalg.det, differentiable=(0,), tol=1e-5), namespace="linalg")
def det(A):
    """The determinant of each square matrix of ``A``."""
    _check("linalg.det", A)
    return apply(det_p, (A,))


@op(spec=Spec([_SQUARE], lambda a: np.linalg.det(a), differentiable=(0,), tol=1e-5), name="det")
def _torch_det(input):
    """``torch.det``: ``linalg.det``."""
    return det(input)


def _slogdet(A: Tensor, name: str) -> SlogdetResult:
    _check(name, A)
    both = apply(slogdet_p, (A,))
    sign = F.squeeze(F.narrow(both, -1, 0, 1), -1)  # (its gradient is zero)
    return SlogdetResult(sign, F.squeeze(F.narrow(both, -1, 1, 1), -1))


@op(
    spec=Spec([_SQUARE], lambda a: tuple(np.linalg.slogdet(a)), differentiable=(0,), tol=1e-5),
    namespace="linalg",
)
def slogdet(A):
    """(sign, log|det|) of each square matrix of ``A``; the gradient flows through log|det|."""
    return _slogdet(A, "linalg.slogdet")


@op(
    spec=Spec([_SQUARE], lambda a: tuple(np.linalg.slogdet(a)), differentiable=(0,), tol=1e-5),
    name="slogdet",
)
def _torch_slogdet(input):
    """``torch.slogdet``: ``linalg.slogdet``."""
    return _slogdet(input, "linalg.slogdet")


def _logdet_ref(a):
    sign, logabs = np.linalg.slogdet(a)
    return np.where(sign < 0, np.nan, logabs)


@op(spec=Spec([Arg((2, 3, 3), kind="spd")], _logdet_ref, differentiable=(0,), tol=1e-5))
def logdet(input):
    """log det: NaN where the determinant is negative, -inf where it is zero."""
    sign, logabs = _slogdet(input, "logdet")
    return F.where(F.lt(sign, 0), math.nan, logabs)


# -- solve ----------------------------------------------------------------------------------------
def _solve_impl(a, b):
    try:
        return np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        raise LinAlgError(
            "torch.linalg.solve: The solver failed because the input matrix is singular."
        ) from None


def _solve_vjp(n, g):
    # A X = B: dX = A^-1 (dB - dA X)  =>  gB = A^-T g, gA = -gB X^T
    a, _ = n.inputs
    gb = apply(solve_p, (_mT(a), g))
    ga = F.neg(F.matmul(gb, _mT(n.out))) if n.needs[0] else None
    return ga, (gb if n.needs[1] else None)


solve_p = register(
    "solve",
    impl=_solve_impl,
    vjp=_solve_vjp,
    shape=lambda avals: (tuple(avals[1].shape), avals[1].dtype),
    kind="linalg",
    save_out=True,
    spec=Spec([_SQUARE, arg(2, 3, 2)], np.linalg.solve, differentiable=(0, 1), tol=1e-5),
)


def _solve_ref(a, b):
    return np.linalg.solve(a, b[..., None])[..., 0]


@op(
    spec=Spec([_SQUARE, arg(2, 3)], _solve_ref, differentiable=(0, 1), tol=1e-5),
    namespace="linalg",
)
def solve(A, B, *, left=True):
    """X with A X = B (``left=False``: X A = B); B is a batch of vectors when it is 1-D or its
    shape is A's without the last dim."""
    _check("linalg.solve", A)
    if B.dtype is not A.dtype:
        raise RuntimeError(
            "linalg.solve: Expected A and B to have the same dtype, but found A of type "
            f"{dtypes.type_name(A.dtype)} and B of type {dtypes.type_name(B.dtype)} "
            "instead"
        )
    vector = B.ndim == 1 or (B.ndim == A.ndim - 1 and tuple(B.shape) == tuple(A.shape[:-1]))
    if vector:  # a column, also for X A = B (where PyTorch then finds the shapes incompatible)
        B = F.unsqueeze(B, -1)
    n = A.shape[-1]
    if B.shape[-2 if left else -1] != n:
        raise RuntimeError(
            "linalg.solve: Incompatible shapes of A and B for the equation "
            f"{'AX = B' if left else 'XA = B'} ({A.shape[-2]}x{n} and {B.shape[-2]}x{B.shape[-1]})"
        )
    if not left:  # X A = B  <=>  A^T X^T = B^T
        A, B = _mT(A), _mT(B)
    batch = F.broadcast_shapes(tuple(A.shape[:-2]), tuple(B.shape[:-2]))
    A = F.broadcast_to(A, batch + tuple(A.shape[-2:]))
    B = F.broadcast_to(B, batch + tuple(B.shape[-2:]))
    X = apply(solve_p, (A, B))
    if not left:
        X = _mT(X)
    return F.squeeze(X, -1) if vector else X


def _solve_left(a: Tensor, b: Tensor) -> Tensor:
    return apply(solve_p, (a, b))


def _solve_right(b: Tensor, a: Tensor) -> Tensor:
    """X with X A = B: (A^T X^T = B^T)^T."""
    return _mT(apply(solve_p, (_mT(a), _mT(b))))
