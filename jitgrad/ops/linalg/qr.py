"""qr: A = QR in the reduced, complete and r modes."""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from ...tensor import Tensor, apply
from .. import functions as F
from ..registry import op, register
from ..spec import Spec, arg
from .common import (
    _check,
    _mT,
    _tracing,
    _tril_mask,
)
from .inverse import _solve_right

# -- qr -------------------------------------------------------------------------------------------
_QR_MODES = ("reduced", "complete", "r")


def _qr_impl(a, part, mode):
    q, r = np.linalg.qr(a, mode=mode)
    return q if part == "Q" else r


def _qr_shape(avals, part, mode):
    m, n = avals[0].shape[-2:]
    k = m if mode == "complete" else min(m, n)
    batch = tuple(avals[0].shape[:-2])
    return (batch + ((m, k) if part == "Q" else (k, n))), avals[0].dtype


def _copyltu(m: Tensor) -> Tensor:
    """tril(M) + tril(M, -1)^T: the lower triangle copied onto the upper one."""
    k = m.shape[-1]
    return F.add(F.mul(m, _tril_mask(k, 0, m.dtype)), _mT(F.mul(m, _tril_mask(k, -1, m.dtype))))


def _qr_square_vjp(Q: Tensor, R: Tensor, gQ, gR) -> Tensor:
    """A = QR with Q (m, k) and R (k, k) invertible (m >= k): gA = (gQ + Q copyltu(M)) R^-T,
    M = R gR^T - gQ^T Q."""
    terms = []
    if gR is not None:
        terms.append(F.matmul(R, _mT(gR)))
    if gQ is not None:
        terms.append(F.neg(F.matmul(_mT(gQ), Q)))
    M = terms[0] if len(terms) == 1 else F.add(*terms)
    b = F.matmul(Q, _copyltu(M))
    if gQ is not None:
        b = F.add(gQ, b)
    return _solve_right(b, _mT(R))


def _qr_vjp(n, g):
    (a,) = n.inputs
    part, mode = n.params["part"], n.params["mode"]
    m, k = a.shape[-2], a.shape[-1]
    if mode == "complete" and m > k:
        raise RuntimeError(
            "The QR decomposition is not differentiable when mode='complete' and nrows > ncols."
        )
    other = apply(qr_p, (a,), {"part": "R" if part == "Q" else "Q", "mode": mode})
    Q, R = (n.out, other) if part == "Q" else (other, n.out)
    gQ, gR = (g, None) if part == "Q" else (None, g)
    if m >= k:
        return (_qr_square_vjp(Q, R, gQ, gR),)
    # A = Q [R_X | R_Y]: X = Q R_X is square; Y = Q R_Y moves Q's cotangent by gR_Y Y^T
    Rx = F.narrow(R, -1, 0, m)
    Y = F.narrow(a, -1, m, k - m)
    if gR is None:
        return (F.cat([_qr_square_vjp(Q, Rx, gQ, None), F.zeros_like(Y)], -1),)
    gRx, gRy = F.narrow(gR, -1, 0, m), F.narrow(gR, -1, m, k - m)
    gQ_eff = F.matmul(Y, _mT(gRy))
    gx = _qr_square_vjp(Q, Rx, gQ_eff, gRx)
    return (F.cat([gx, F.matmul(Q, gRy)], -1),)


qr_p = register(
    "qr",
    impl=_qr_impl,
    vjp=_qr_vjp,
    shape=_qr_shape,
    kind="linalg",
    save_out=True,
    spec=Spec(
        [arg(2, 4, 3)],
        lambda a, part, mode: np.linalg.qr(a)[1],
        params={"part": "R", "mode": "reduced"},
        differentiable=(0,),
        tol=1e-5,
    ),
)

QRResult = namedtuple("linalg_qr", ["Q", "R"])


def _qr(A: Tensor, mode: str) -> QRResult:
    if mode not in _QR_MODES:
        raise RuntimeError(
            f"qr received unrecognized mode '{mode}' but expected one of 'reduced' (default), "
            "'r', or 'complete'"
        )
    _check("linalg.qr", A, square=False)
    if mode == "r":
        R = apply(qr_p, (A,), {"part": "R", "mode": "reduced"})
        if R._requires_grad:
            R = _no_qr_r_grad(R)
        return QRResult(Tensor._wrap(np.empty((0,), A.dtype.np)), R)
    if mode == "complete" and A.shape[-2] > A.shape[-1]:
        # (compiled code has NumPy's reduced QR only, as Numba compiles np.linalg.qr)
        _tracing("linalg.qr", "mode='complete' on matrices with more rows than columns")
    Q = apply(qr_p, (A,), {"part": "Q", "mode": mode})
    R = apply(qr_p, (A,), {"part": "R", "mode": mode})
    return QRResult(Q, R)


def _no_qr_r_grad(R: Tensor) -> Tensor:
    """R of mode='r', whose backward raises PyTorch's error (Q was not computed)."""
    from ...autograd.function import Function

    class QrR(Function):
        @staticmethod
        def forward(ctx, r):
            return r.detach().clone()

        @staticmethod
        def backward(ctx, g):
            raise RuntimeError(
                "The derivative of linalg.qr depends on Q, which is not computed when mode='r'. "
                "Please use linalg.qr(A, mode='reduced') if you are going to differentiate "
                "through linalg.qr."
            )

    return QrR.apply(R)


def _qr_ref(a, mode="reduced"):
    return tuple(np.linalg.qr(a, mode=mode))


@op(spec=Spec([arg(2, 4, 3)], _qr_ref, differentiable=(0,), tol=1e-5), namespace="linalg")
def qr(A, mode="reduced"):
    """(Q, R) with A = QR, Q's columns orthonormal, R upper triangular (LAPACK's signs);
    ``mode``: 'reduced' (k = min(m, n) columns), 'complete' (Q square) or 'r' (R only)."""
    return _qr(A, mode)


@op(spec=Spec([arg(3, 5)], _qr_ref, differentiable=(0,), tol=1e-5), name="qr")
def _torch_qr(input, some=True):
    """``torch.qr`` (deprecated in PyTorch): ``linalg.qr`` with ``some`` for 'reduced'."""
    return _qr(input, "reduced" if some else "complete")
