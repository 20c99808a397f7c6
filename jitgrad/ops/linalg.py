"""Linear algebra: ``jitgrad.linalg`` (det, slogdet, inv, solve, cholesky, qr, svd, svdvals,
eigh, eigvalsh, matrix_norm) and the aliases PyTorch keeps in ``torch`` (det, inverse, ...),
batched over leading dims.

Each decomposition is a primitive of kind ``other`` whose impl is NumPy's (LAPACK underneath)
and whose VJP is written in jitgrad ops, so higher orders need nothing more. A primitive with
several results (qr, svd, eigh) is applied once per result it gives (``part``): its VJPs are
linear in the results' cotangents, so each part's rule is the full rule with the other
cotangents zero. The formulas are PyTorch's (FunctionsManual.cpp) restated:

- inv: gA = -X^T g X^T (X = A^-1); det: gA = g det(A) A^-T; slogdet: gA = g_logabsdet A^-T
- solve AX = B: gB = A^-T g, gA = -gB X^T
- cholesky A = L L^T: P = tril(L^T gL), gA = L^-T (P + P_strict^T) / 2 L^-1 (symmetric)
- qr A = QR (m >= n): M = R gR^T - gQ^T Q, gA = (gQ + Q copyltu(M)) R^-T; for m < n the first
  m columns as for a square matrix (gQ + Y gR_Y^T), the rest Q gR_Y
- svd A = U S Vh: J = (skew(U^T gU) S_j + S_i skew(V^T gV)) / (S_j^2 - S_i^2) + diag(gS), then
  gA = U J Vh plus the parts orthogonal to U (m > n) or V (m < n)
- eigh A = Q diag(L) Q^T: gA = Q ((Q^T gQ - gQ^T Q) / 2 / (L_j - L_i) + diag(gL)) Q^T

The symmetric ones (cholesky, eigh) read one triangle of A, as LAPACK does, and give PyTorch's
symmetric gradient (the gradient for symmetric perturbations of A).
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np

from .. import dtypes
from ..autograd.grad_mode import STATE
from ..tensor import Tensor, apply
from . import functions as F
from .registry import op, register
from .spec import Arg, Spec, arg


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
        from ..ir import TraceError

        raise TraceError(f"{name}: {why} cannot be compiled; call it outside jitgrad.compile.")


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


def _same_shape(avals, **_):
    return tuple(avals[0].shape), avals[0].dtype


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


# -- cholesky -------------------------------------------------------------------------------------
def _not_pd_order(a: np.ndarray) -> tuple:
    """(batch element, order of the first leading minor that is not positive-definite)."""
    import scipy.linalg

    flat = a.reshape((-1,) + a.shape[-2:])
    for i, m in enumerate(flat):
        _, info = scipy.linalg.lapack.get_lapack_funcs("potrf", (m,))(m, lower=1)
        if info > 0:
            return i, int(info)
        if not np.isfinite(m).all():
            return i, 1
    return 0, 1


def _cholesky_impl(a):
    try:
        out = np.linalg.cholesky(a)
    except np.linalg.LinAlgError:
        out = None
    if out is None or not np.isfinite(out).all():
        i, k = _not_pd_order(a)
        raise LinAlgError(
            f"linalg.cholesky: {_batch_prefix(a, i)}The factorization could not be completed "
            f"because the input is not positive-definite (the leading minor of order {k} is not "
            "positive-definite)."
        )
    return out


def _solve_left(a: Tensor, b: Tensor) -> Tensor:
    return apply(solve_p, (a, b))


def _solve_right(b: Tensor, a: Tensor) -> Tensor:
    """X with X A = B: (A^T X^T = B^T)^T."""
    return _mT(apply(solve_p, (_mT(a), _mT(b))))


def _cholesky_vjp(n, g):
    # A = L L^T, P = tril(L^T gL): gA = L^-T (P + tril(P, -1)^T) / 2 L^-1
    L = n.out
    k = L.shape[-1]
    p = F.mul(F.matmul(_mT(L), g), _tril_mask(k, 0, L.dtype))
    p = F.mul(F.add(p, _mT(F.mul(p, _tril_mask(k, -1, L.dtype)))), 0.5)
    return (_solve_right(_solve_left(_mT(L), p), L),)


_SPD = Arg((2, 3, 3), kind="spd")

cholesky_p = register(
    "cholesky",
    impl=_cholesky_impl,
    vjp=_cholesky_vjp,
    shape=_same_shape,
    kind="linalg",
    save_out=True,
    saves=False,
    # (its gradient is the symmetric one, not that of the lower triangle it reads: checked
    # through the ops, on symmetric perturbations)
    spec=Spec([_SPD], np.linalg.cholesky),
)


def _sym_call(fn, a, **params):
    """Apply ``fn`` to the symmetric part of ``a``: finite differences then perturb A
    symmetrically, the perturbations a symmetric gradient is the gradient for."""
    return fn((a + a.transpose(-2, -1)) * 0.5, **params)


def _cholesky(A: Tensor, upper: bool, name: str) -> Tensor:
    _check(name, A)
    L = apply(cholesky_p, (A,))
    return _mT(L) if upper else L


@op(
    spec=Spec([_SPD], np.linalg.cholesky, differentiable=(0,), call=_sym_call, tol=1e-5),
    namespace="linalg",
)
def cholesky(A, *, upper=False):
    """The Cholesky factor L (A = L L^T, from A's lower triangle); ``upper``: L^T."""
    return _cholesky(A, upper, "linalg.cholesky")


@op(
    spec=Spec([_SPD], np.linalg.cholesky, differentiable=(0,), call=_sym_call, tol=1e-5),
    name="cholesky",
)
def _torch_cholesky(input, upper=False):
    """``torch.cholesky`` (deprecated in PyTorch): ``linalg.cholesky``."""
    return _cholesky(input, upper, "linalg.cholesky")


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
    from ..autograd.function import Function

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


# -- svd ------------------------------------------------------------------------------------------
def _svd_impl(a, part, full_matrices):
    try:
        u, s, vh = np.linalg.svd(a, full_matrices=full_matrices)
    except np.linalg.LinAlgError:
        raise LinAlgError(
            "linalg.svd: The algorithm failed to converge because the input matrix contained "
            "non-finite values."
        ) from None
    return {"U": u, "S": s, "Vh": vh}[part]


def _svd_shape(avals, part, full_matrices):
    m, n = avals[0].shape[-2:]
    k = min(m, n)
    batch = tuple(avals[0].shape[:-2])
    if part == "S":
        return batch + (k,), avals[0].dtype
    if part == "U":
        return batch + (m, m if full_matrices else k), avals[0].dtype
    return batch + (n if full_matrices else k, n), avals[0].dtype


def _skew(x: Tensor) -> Tensor:
    return F.sub(x, _mT(x))


def _svd_vjp(n, g):
    (a,) = n.inputs
    part, full = n.params["part"], n.params["full_matrices"]
    m, nn = a.shape[-2], a.shape[-1]
    k = min(m, nn)

    def get(p):
        out = n.out if p == part else apply(svd_p, (a,), {"part": p, "full_matrices": full})
        if full and p == "U":
            out = F.narrow(out, -1, 0, k)
        if full and p == "Vh":
            out = F.narrow(out, -2, 0, k)
        return out

    U, S, Vh = get("U"), get("S"), get("Vh")
    gU = gS = gVh = None
    if part == "S":
        gS = g
    elif part == "U":
        gU = F.narrow(g, -1, 0, k) if full else g
    else:
        gVh = F.narrow(g, -2, 0, k) if full else g
    if gS is not None:  # gA = U diag(gS) Vh
        return (F.matmul(F.mul(U, _row(gS)), Vh),)
    V = _mT(Vh)
    s2 = F.mul(S, S)
    # E_ij = s_j^2 - s_i^2, 1 on the diagonal (where the skew parts are 0)
    eye = _eye(k, S.dtype)
    E = F.add(F.sub(_row(s2), _col(s2)), eye)
    if gU is not None:
        J = F.mul(F.div(_skew(F.matmul(_mT(U), gU)), E), _row(S))
        if m > nn:  # gA = (U J + (I - U U^T) gU S^-1) Vh
            gus = F.div(gU, _row(S))
            inner = F.add(F.matmul(U, J), F.sub(gus, F.matmul(U, F.matmul(_mT(U), gus))))
            return (F.matmul(inner, Vh),)
    else:
        gV = _mT(gVh)
        J = F.mul(_col(S), F.div(_skew(F.matmul(_mT(V), gV)), E))
        if m < nn:  # gA = U (J Vh + S^-1 gVh (I - V V^T))
            sgv = F.div(gVh, _col(S))
            inner = F.add(F.matmul(J, Vh), F.sub(sgv, F.matmul(F.matmul(sgv, V), Vh)))
            return (F.matmul(U, inner),)
    return (F.matmul(U, F.matmul(J, Vh)),)


svd_p = register(
    "svd",
    impl=_svd_impl,
    vjp=_svd_vjp,
    shape=_svd_shape,
    kind="linalg",
    save_out=True,
    spec=Spec(
        [arg(2, 4, 3)],
        lambda a, part, full_matrices: np.linalg.svd(a, full_matrices=False)[1],
        params={"part": "S", "full_matrices": False},
        differentiable=(0,),
        tol=1e-5,
    ),
)

SVDResult = namedtuple("linalg_svd", ["U", "S", "Vh"])
TorchSVDResult = namedtuple("svd", ["U", "S", "V"])


def _svd(A: Tensor, full_matrices: bool, name: str) -> SVDResult:
    _check(name, A, square=False)
    p = {"full_matrices": bool(full_matrices)}
    return SVDResult(*(apply(svd_p, (A,), {"part": x, **p}) for x in ("U", "S", "Vh")))


def _svd_ref(a, full_matrices=True):
    return tuple(np.linalg.svd(a, full_matrices=full_matrices))


def _svd_abs_call(fn, a, **params):
    """svd's results with the singular vectors' signs made irrelevant: |U|, S, |Vh| (the
    gradients of gauge-invariant functions are defined)."""
    u, s, vh = fn(a, **params)
    return abs(u), s, abs(vh)


def _svd_abs_ref(a, full_matrices=True):
    u, s, vh = np.linalg.svd(a, full_matrices=full_matrices)
    return np.abs(u), s, np.abs(vh)


@op(
    spec=Spec(
        [arg(2, 4, 3)],
        _svd_abs_ref,
        params={"full_matrices": False},
        differentiable=(0,),
        call=_svd_abs_call,
        tol=1e-5,
    ),
    namespace="linalg",
)
def svd(A, full_matrices=True):
    """(U, S, Vh) with A = U diag(S) Vh, S descending (LAPACK's signs of the vectors)."""
    return _svd(A, full_matrices, "linalg.svd")


@op(
    spec=Spec([arg(2, 3, 5)], lambda a: np.linalg.svd(a, compute_uv=False), differentiable=(0,)),
    namespace="linalg",
)
def svdvals(A):
    """The singular values of each matrix of ``A``, descending."""
    _check("linalg.svdvals", A, square=False)
    return apply(svd_p, (A,), {"part": "S", "full_matrices": False})


def _torch_svd_ref(a, some=True):
    u, s, vh = np.linalg.svd(a, full_matrices=not some)
    return np.abs(u), s, np.abs(np.swapaxes(vh, -1, -2))


@op(
    spec=Spec(
        [arg(4, 3)],
        _torch_svd_ref,
        differentiable=(0,),
        call=_svd_abs_call,
        tol=1e-5,
    ),
    name="svd",
)
def _torch_svd(input, some=True, compute_uv=True):
    """``torch.svd`` (deprecated in PyTorch): (U, S, V), V not transposed; ``some=False``
    gives square U and V; ``compute_uv=False`` gives square zero U and V."""
    if not compute_uv:
        S = svdvals(input)
        m, n = input.shape[-2:]
        batch = tuple(input.shape[:-2])
        shape_u, shape_v = batch + (m, m), batch + (n, n)  # (as PyTorch: square, whatever some)
        z = input.dtype.np
        return TorchSVDResult(
            Tensor._wrap(np.zeros(shape_u, z)), S, Tensor._wrap(np.zeros(shape_v, z))
        )
    U, S, Vh = _svd(input, not some, "linalg.svd")
    return TorchSVDResult(U, S, _mT(Vh))


# -- eigh -----------------------------------------------------------------------------------------
def _eigh_impl(a, part, UPLO):
    if UPLO == "U":  # the upper triangle mirrored, factored as the lower one (as compiled)
        upper = np.triu(a)
        a = upper + np.swapaxes(np.triu(a, 1), -1, -2)
    try:
        w, q = np.linalg.eigh(a)
    except np.linalg.LinAlgError:
        raise LinAlgError(
            "linalg.eigh: The algorithm failed to converge because the input matrix is "
            "ill-conditioned or has too many repeated eigenvalues (error code: 1)."
        ) from None
    return w if part == "L" else q


def _eigh_shape(avals, part, UPLO):
    shape = tuple(avals[0].shape)
    return (shape[:-1] if part == "L" else shape), avals[0].dtype


def _eigh_vjp(n, g):
    # A = Q diag(L) Q^T: gA = Q (skew(Q^T gQ) / 2 / E + diag(gL)) Q^T, E_ij = L_j - L_i
    (a,) = n.inputs
    part, uplo = n.params["part"], n.params["UPLO"]
    other = apply(eigh_p, (a,), {"part": "Q" if part == "L" else "L", "UPLO": uplo})
    L, Q = (n.out, other) if part == "L" else (other, n.out)
    if part == "L":
        inner = _diag_embed(g)
    else:
        k = L.shape[-1]
        E = F.add(F.sub(_row(L), _col(L)), _eye(k, L.dtype))
        inner = F.div(F.mul(_skew(F.matmul(_mT(Q), g)), 0.5), E)
    return (F.matmul(Q, F.matmul(inner, _mT(Q))),)


eigh_p = register(
    "eigh",
    impl=_eigh_impl,
    vjp=_eigh_vjp,
    shape=_eigh_shape,
    kind="linalg",
    save_out=True,
    # (a symmetric gradient: checked through the ops, on symmetric perturbations)
    spec=Spec(
        [Arg((2, 3, 3), kind="sym")],
        lambda a, part, UPLO: np.linalg.eigh(a)[0],
        params={"part": "L", "UPLO": "L"},
    ),
)

EighResult = namedtuple("linalg_eigh", ["eigenvalues", "eigenvectors"])


def _eigh_args(A: Tensor, UPLO: str, name: str) -> None:
    _check(name, A)
    if UPLO not in ("L", "U"):
        raise RuntimeError(f"Expected UPLO argument to be 'L' or 'U', but got {UPLO}")


def _eigh_abs_call(fn, a, **params):
    w, q = _sym_call(fn, a, **params)
    return w, abs(q)


def _eigh_abs_ref(a, UPLO="L"):
    w, q = np.linalg.eigh(a, UPLO=UPLO)
    return w, np.abs(q)


_SYM = Arg((2, 3, 3), kind="sym")


@op(
    spec=Spec([_SYM], _eigh_abs_ref, differentiable=(0,), call=_eigh_abs_call, tol=1e-5),
    namespace="linalg",
)
def eigh(A, UPLO="L"):
    """(eigenvalues ascending, eigenvectors as columns) of each symmetric matrix of ``A``,
    read from its lower (``UPLO='L'``) or upper triangle."""
    _eigh_args(A, UPLO, "linalg.eigh")
    return EighResult(
        apply(eigh_p, (A,), {"part": "L", "UPLO": UPLO}),
        apply(eigh_p, (A,), {"part": "Q", "UPLO": UPLO}),
    )


@op(
    spec=Spec([_SYM], lambda a: np.linalg.eigvalsh(a), differentiable=(0,), call=_sym_call),
    namespace="linalg",
)
def eigvalsh(A, UPLO="L"):
    """The eigenvalues, ascending, of each symmetric matrix of ``A``."""
    _eigh_args(A, UPLO, "linalg.eigvalsh")
    return apply(eigh_p, (A,), {"part": "L", "UPLO": UPLO})


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
