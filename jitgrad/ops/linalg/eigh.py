"""eigh and eigvalsh: the eigen-decomposition of a symmetric matrix, reading one triangle."""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from ...tensor import Tensor, apply
from .. import functions as F
from ..registry import op, register
from ..spec import Arg, Spec
from .common import (
    LinAlgError,
    _check,
    _col,
    _diag_embed,
    _eye,
    _mT,
    _row,
    _skew,
    _sym_call,
)


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
