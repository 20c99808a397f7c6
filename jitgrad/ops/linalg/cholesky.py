"""cholesky: A = L L^T for symmetric positive-definite A, reading one triangle."""

from __future__ import annotations

import numpy as np

from ...tensor import Tensor, apply
from .. import functions as F
from ..registry import op, register
from ..spec import Arg, Spec
from .common import (
    LinAlgError,
    _batch_prefix,
    _check,
    _mT,
    _same_shape,
    _sym_call,
    _tril_mask,
)
from .inverse import _solve_left, _solve_right


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
