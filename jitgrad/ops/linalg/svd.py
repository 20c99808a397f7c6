"""svd and svdvals (``linalg``) and ``torch.svd`` (V rather than Vh, ``some``)."""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from ...tensor import Tensor, apply
from .. import functions as F
from ..registry import op, register
from ..spec import Spec, arg
from .common import (
    LinAlgError,
    _check,
    _col,
    _eye,
    _mT,
    _row,
    _skew,
)


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
