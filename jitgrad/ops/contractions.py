"""Products and contractions: tensordot, inner, dot, vdot, mv, the add-products (addmm, addmv,
baddbmm, addbmm), kron, cross and cdist, each a composite of movement ops, matmul and
elementwise arithmetic (so each compiles with no primitive of its own). einsum is in
``einsums.py``.
"""

from __future__ import annotations

import math

import numpy as np

from .. import dtypes
from ..tensor import Tensor, _wrap_dim
from .composites import _sqrt_zero_grad, amax, sum  # noqa: A004
from .functions import add, cast, gt, matmul, result_type, sub, where
from .prims import abs, mul, ne, pow, sqrt  # noqa: A004
from .registry import op
from .shape_ops import (
    broadcast_shapes,
    broadcast_to,
    cat,
    narrow,
    permute,
    reshape,
    unsqueeze,
)
from .spec import Spec, arg


def _tname(t: Tensor) -> str:
    return dtypes.type_name(t.dtype)


def _same_dtype(a: Tensor, b: Tensor) -> None:
    if a.dtype is not b.dtype:
        raise RuntimeError(f"expected scalar type {_tname(a)} but found {_tname(b)}")


def _prod(sizes) -> int:
    n = 1
    for s in sizes:
        n *= s
    return n


# -- products of vectors and matrices -------------------------------------------------------------
def _vector_pair(input: Tensor, other: Tensor, name: str) -> None:
    if input.ndim != 1 or other.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {input.ndim}D and {other.ndim}D tensors")
    n, m = input.shape[0], other.shape[0]
    if n != m:
        raise RuntimeError(
            f"inconsistent tensor size, expected tensor [{n}] and src [{m}] to have the same "
            f"number of elements, but got {n} and {m} elements respectively"
        )
    if input.dtype is not other.dtype:
        raise RuntimeError(
            f"{name} : expected both vectors to have same dtype, but found {_tname(input)} and "
            f"{_tname(other)}"
        )


@op(spec=Spec([arg(4), arg(4)], np.dot, differentiable=(0, 1)))
def dot(input, other):
    """The dot product of two 1-D tensors of one dtype."""
    _vector_pair(input, other, "dot")
    return matmul(input, other)


@op(spec=Spec([arg(4), arg(4)], np.vdot, differentiable=(0, 1)))
def vdot(input, other):
    """dot(conj(input), other); for real tensors the dot product."""
    _vector_pair(input, other, "vdot")
    return matmul(input, other)


@op(spec=Spec([arg(2, 3), arg(4, 3)], np.inner, differentiable=(0, 1)))
def inner(input, other):
    """Sum over the last dims: shape ``input.shape[:-1] + other.shape[:-1]`` (a scalar operand
    multiplies)."""
    if input.ndim == 0 or other.ndim == 0:
        return mul(input, other)
    if input.shape[-1] != other.shape[-1]:
        raise RuntimeError(
            f"inner() the last dimension must match on both input tensors but got shapes "
            f"{list(input.shape)} and {list(other.shape)}"
        )
    return tensordot(input, other, ([input.ndim - 1], [other.ndim - 1]))


@op(spec=Spec([arg(3, 4), arg(4)], np.matmul, differentiable=(0, 1)))
def mv(input, vec):
    """Matrix times vector."""
    if input.ndim != 2 or vec.ndim != 1:
        raise RuntimeError(f"vector + matrix @ vector expected, got 1, {input.ndim}, {vec.ndim}")
    if input.shape[1] != vec.shape[0]:
        raise RuntimeError(
            f"size mismatch, got input ({input.shape[0]}), mat ({input.shape[0]}x"
            f"{input.shape[1]}), vec ({vec.shape[0]})"
        )
    _same_dtype(input, vec)
    return matmul(input, vec)


def _scaled_sum(input: Tensor, product: Tensor, beta, alpha, shape: tuple, what: str) -> Tensor:
    """beta * input + alpha * product, input broadcast to ``shape``; with beta == 0 the input is
    ignored (NaN and inf in it do not propagate) and its gradient is zero."""
    if input.dtype is not product.dtype:
        raise RuntimeError(
            f"self and {what} must have the same dtype, but got {_tname(input)} and "
            f"{_tname(product)}"
        )
    src = tuple(input.shape)
    if len(src) > len(shape) or any(
        a not in (1, b) for a, b in zip(src, shape[len(shape) - len(src) :])
    ):
        lead = len(shape) - len(src)
        bad = next(k for k in range(len(src)) if src[k] not in (1, shape[lead + k]) or lead + k < 0)
        raise RuntimeError(
            f"The expanded size of the tensor ({shape[lead + bad]}) must match the existing size "
            f"({src[bad]}) at non-singleton dimension {bad}.  Target sizes: {list(shape)}.  "
            f"Tensor sizes: {list(src)}"
        )
    if not isinstance(alpha, Tensor) and alpha == 1:
        scaled = product
    else:
        scaled = mul(product, alpha)
    if not isinstance(beta, Tensor) and beta == 0:
        # where(true, 0, input): the value ignores input, the gradient to it is zero
        base = where(True, 0, broadcast_to(input, shape))
    elif not isinstance(beta, Tensor) and beta == 1:
        base = input
    else:
        base = mul(input, beta)
    return (
        add(base, scaled) if tuple(base.shape) == shape else add(broadcast_to(base, shape), scaled)
    )


def _mm_checked(a: Tensor, b: Tensor) -> Tensor:
    if a.ndim != 2:
        raise RuntimeError(f"mat1 must be a matrix, got {a.ndim}-D tensor")
    if b.ndim != 2:
        raise RuntimeError(f"mat2 must be a matrix, got {b.ndim}-D tensor")
    if a.shape[1] != b.shape[0]:
        raise RuntimeError(
            f"mat1 and mat2 shapes cannot be multiplied ({a.shape[0]}x{a.shape[1]} and "
            f"{b.shape[0]}x{b.shape[1]})"
        )
    if a.dtype is not b.dtype:
        raise RuntimeError(
            f"expected m1 and m2 to have the same dtype, but got: {_cname(a)} != {_cname(b)}"
        )
    return matmul(a, b)


def _cname(t: Tensor) -> str:
    return {"float32": "float", "float64": "double", "int64": "long int"}.get(
        t.dtype.name, t.dtype.name
    )


def _check_batches(a: Tensor, b: Tensor) -> None:
    if a.ndim != 3:
        raise RuntimeError("batch1 must be a 3D tensor")
    if b.ndim != 3:
        raise RuntimeError("batch2 must be a 3D tensor")
    if b.shape[0] != a.shape[0] or b.shape[1] != a.shape[2]:
        raise RuntimeError(
            f"Expected size for first two dimensions of batch2 tensor to be: [{a.shape[0]}, "
            f"{a.shape[2]}] but got: [{b.shape[0]}, {b.shape[1]}]."
        )
    if a.dtype is not b.dtype:
        raise RuntimeError(f"expected scalar type {_tname(a)} but found {_tname(b)}")


def _addmm_ref(input, mat1, mat2, beta, alpha):
    return beta * input + alpha * (mat1 @ mat2)


_AB = {"beta": 0.5, "alpha": 2.0}


@op(
    spec=Spec([arg(3, 5), arg(3, 4), arg(4, 5)], _addmm_ref, params=_AB, differentiable=(0, 1, 2)),
    inplace=True,
)
def addmm(input, mat1, mat2, *, beta=1, alpha=1):
    """beta * input + alpha * (mat1 @ mat2), input broadcast to the product's shape."""
    prod = _mm_checked(mat1, mat2)
    return _scaled_sum(input, prod, beta, alpha, tuple(prod.shape), "mat2")


@op(
    spec=Spec([arg(3), arg(3, 4), arg(4)], _addmm_ref, params=_AB, differentiable=(0, 1, 2)),
    inplace=True,
)
def addmv(input, mat, vec, *, beta=1, alpha=1):
    """beta * input + alpha * (mat @ vec)."""
    if mat.ndim != 2 or vec.ndim != 1:
        raise RuntimeError(
            f"vector + matrix @ vector expected, got {input.ndim}, {mat.ndim}, {vec.ndim}"
        )
    if (
        mat.shape[1] != vec.shape[0]
        or input.ndim > 1
        or (input.ndim and input.shape[0] not in (1, mat.shape[0]))
    ):
        raise RuntimeError(
            f"size mismatch, got input ({', '.join(str(s) for s in input.shape)}), mat "
            f"({mat.shape[0]}x{mat.shape[1]}), vec ({vec.shape[0]})"
        )
    _same_dtype(mat, vec)
    prod = matmul(mat, vec)
    return _scaled_sum(input, prod, beta, alpha, tuple(prod.shape), "mat2")


@op(
    spec=Spec(
        [arg(2, 3, 5), arg(2, 3, 4), arg(2, 4, 5)], _addmm_ref, params=_AB, differentiable=(0, 1, 2)
    ),
    inplace=True,
)
def baddbmm(input, batch1, batch2, *, beta=1, alpha=1):
    """beta * input + alpha * bmm(batch1, batch2)."""
    _check_batches(batch1, batch2)
    prod = matmul(batch1, batch2)
    return _scaled_sum(input, prod, beta, alpha, tuple(prod.shape), "batch2")


def _addbmm_ref(input, b1, b2, beta, alpha):
    return beta * input + alpha * np.einsum("bij,bjk->ik", b1, b2)


@op(
    spec=Spec(
        [arg(3, 5), arg(2, 3, 4), arg(2, 4, 5)], _addbmm_ref, params=_AB, differentiable=(0, 1, 2)
    ),
    inplace=True,
)
def addbmm(input, batch1, batch2, *, beta=1, alpha=1):
    """beta * input + alpha * sum_b batch1[b] @ batch2[b]: one matmul over the batch laid along
    the contracted dim."""
    _check_batches(batch1, batch2)
    b, n, k = batch1.shape
    m = batch2.shape[2]
    # [A_0 ... A_b] (n, b*k) @ [B_0; ...; B_b] (b*k, m)
    left = reshape(permute(batch1, (1, 0, 2)), (n, b * k))
    prod = matmul(left, reshape(batch2, (b * k, m)))
    return _scaled_sum(input, prod, beta, alpha, (n, m), "batch2")


@op(spec=Spec([arg(2, 3), arg(4, 2)], np.kron, differentiable=(0, 1)))
def kron(input, other):
    """The Kronecker product: ranks padded with leading 1s, out[i*m + j] = a[i] * b[j] per
    dim."""
    r = max(input.ndim, other.ndim)
    sa = (1,) * (r - input.ndim) + tuple(input.shape)
    sb = (1,) * (r - other.ndim) + tuple(other.shape)
    a = reshape(input, tuple(x for s in sa for x in (s, 1)))
    b = reshape(other, tuple(x for s in sb for x in (1, s)))
    return reshape(mul(a, b), tuple(p * q for p, q in zip(sa, sb)))


def _tensordot_ref(a, b, dims):
    return np.tensordot(a, b, dims)


@op(
    spec=Spec(
        [arg(3, 2, 4), arg(4, 3, 5), ([2, 0], [0, 1])],
        _tensordot_ref,
        differentiable=(0, 1),
    ),
    method=False,
)
def tensordot(a, b, dims=2, out=None):
    """Contract ``dims`` (an int: a's last and b's first dims; or a pair of lists)."""
    if isinstance(dims, Tensor):
        dims = dims.tolist()
    if isinstance(dims, (int, np.integer)):
        if dims < 0:
            raise RuntimeError(f"tensordot expects dims >= 0, but got dims={dims}")
        if dims > a.ndim or dims > b.ndim:
            raise RuntimeError(f"tensordot expects dims < ndim_a or ndim_b, but got dims={dims}")
        da, db = list(range(a.ndim - dims, a.ndim)), list(range(dims))
    else:
        da, db = dims
        da = [da] if isinstance(da, int) else list(da)
        db = [db] if isinstance(db, int) else list(db)
        if len(da) != len(db):
            raise RuntimeError("both dimension lists should have same length")
    da = [_wrap_dim(d, a.ndim) for d in da]
    db = [_wrap_dim(d, b.ndim) for d in db]
    for i, j in zip(da, db):
        if a.shape[i] != b.shape[j]:
            raise RuntimeError(
                f"contracted dimensions need to match, but first has size {a.shape[i]} in dim "
                f"{i} and second has size {b.shape[j]} in dim {j}"
            )
    _same_dtype(a, b)
    fa = [d for d in range(a.ndim) if d not in da]
    fb = [d for d in range(b.ndim) if d not in db]
    sa, sb = [a.shape[d] for d in fa], [b.shape[d] for d in fb]
    k = _prod(a.shape[d] for d in da)
    left = reshape(permute(a, fa + da), (_prod(sa), k))
    right = reshape(permute(b, db + fb), (k, _prod(sb)))
    return reshape(matmul(left, right), tuple(sa + sb))


# -- cross products and distances -----------------------------------------------------------------
def _cross(input: Tensor, other: Tensor, dim: int) -> Tensor:
    shape = broadcast_shapes(tuple(input.shape), tuple(other.shape))
    a, b = broadcast_to(input, shape), broadcast_to(other, shape)
    if a.dtype is not b.dtype:
        dtype = result_type(a, b)
        a, b = cast(a, dtype), cast(b, dtype)
    d = _wrap_dim(dim, len(shape))

    def part(x, k):
        return narrow(x, d, k, 1)

    a0, a1, a2 = (part(a, k) for k in range(3))
    b0, b1, b2 = (part(b, k) for k in range(3))
    c0 = sub(mul(a1, b2), mul(a2, b1))
    c1 = sub(mul(a2, b0), mul(a0, b2))
    c2 = sub(mul(a0, b1), mul(a1, b0))
    return cat([c0, c1, c2], d)


def _check_cross(input: Tensor, other: Tensor, dim: int) -> None:
    if input.ndim != other.ndim:
        raise RuntimeError(
            f"linalg.cross: inputs must have the same number of dimensions. Got "
            f"{input.ndim} and {other.ndim}"
        )
    d = _wrap_dim(dim, input.ndim)
    if input.shape[d] != 3 or other.shape[d] != 3:
        raise RuntimeError(
            f"linalg.cross: inputs dimension {dim} must have length 3. Got {input.shape[d]} and "
            f"{other.shape[d]}"
        )


def _cross_ref(a, b, dim):
    return np.cross(a, b, axis=dim)


@op(spec=Spec([arg(3, 4), arg(3, 4), 0], _cross_ref, differentiable=(0, 1)))
def cross(input, other, dim=None):
    """The cross product along ``dim`` (of length 3); without ``dim``, along the first dim of
    length 3 (PyTorch warns that this default will change to -1)."""
    if dim is None:
        import warnings

        warnings.warn(
            "Using torch.cross without specifying the dim arg is deprecated.\nPlease either pass "
            "the dim explicitly or simply use torch.linalg.cross.\nThe default value of dim will "
            "change to agree with that of linalg.cross in a future release.",
            UserWarning,
            stacklevel=2,
        )
        shape = broadcast_shapes(tuple(input.shape), tuple(other.shape))
        dim = next((k for k, s in enumerate(shape) if s == 3), None)
        if dim is None:
            raise RuntimeError("no dimension of size 3 in input")
    _check_cross(input, other, dim)
    return _cross(input, other, dim)


@op(
    spec=Spec([arg(4, 3), arg(1, 3)], lambda a, b: np.cross(a, b), differentiable=(0, 1)),
    name="cross",
    namespace="linalg",
)
def linalg_cross(input, other, *, dim=-1):
    """``torch.linalg.cross``: the cross product along ``dim`` (-1 by default), broadcasting."""
    _check_cross(input, other, dim)
    return _cross(input, other, dim)


_COMPUTE_MODES = (
    "use_mm_for_euclid_dist_if_necessary",
    "use_mm_for_euclid_dist",
    "donot_use_mm_for_euclid_dist",
)


def _cdist_ref(x1, x2, p):
    diff = np.abs(x1[..., :, None, :] - x2[..., None, :, :])
    return (diff**p).sum(-1) ** (1.0 / p)


def _pnorm_zero_grad(s: Tensor, p: float) -> Tensor:
    """s ** (1/p) whose gradient is 0 where s == 0, as PyTorch's cdist backward."""
    zero = ne(s, 0)
    return where(zero, pow(where(zero, s, 1.0), 1.0 / p), 0.0)


@op(spec=Spec([arg(2, 3, 4), arg(2, 5, 4), 3.0], _cdist_ref, differentiable=(0, 1)), method=False)
def cdist(x1, x2, p=2.0, compute_mode="use_mm_for_euclid_dist_if_necessary"):
    """Pairwise p-norm distances between the rows of ``x1`` (..., P, M) and ``x2`` (..., R, M):
    (..., P, R). For p = 2 the matrix-product expansion |a|^2 - 2 a.b + |b|^2 is used when the
    mode asks for it (by default when P or R exceeds 25, as PyTorch), else the differences."""
    if compute_mode not in _COMPUTE_MODES:
        raise ValueError(f"{compute_mode} is not a valid value for compute_mode")
    for name, x in (("X1", x1), ("X2", x2)):
        if not x.dtype.is_floating_point:
            raise RuntimeError(
                f"cdist only supports floating-point dtypes, {name} got: {_tname(x)}"
            )
    for name, x in (("X1", x1), ("X2", x2)):
        if x.ndim < 2:
            raise RuntimeError(f"cdist only supports at least 2D tensors, {name} got: {x.ndim}D")
    if x1.shape[-1] != x2.shape[-1]:
        raise RuntimeError(
            f"X1 and X2 must have the same number of columns. X1: {x1.shape[-1]} X2: {x2.shape[-1]}"
        )
    p = float(p)
    if p < 0:
        raise RuntimeError("cdist only supports non-negative p values")
    _same_dtype(x1, x2)
    batch = broadcast_shapes(tuple(x1.shape[:-2]), tuple(x2.shape[:-2]))
    a = broadcast_to(x1, batch + tuple(x1.shape[-2:]))
    b = broadcast_to(x2, batch + tuple(x2.shape[-2:]))
    r1, r2 = a.shape[-2], b.shape[-2]
    use_mm = compute_mode == "use_mm_for_euclid_dist" or (
        compute_mode == "use_mm_for_euclid_dist_if_necessary" and (r1 > 25 or r2 > 25)
    )
    if p == 2.0 and use_mm:
        return _euclid_mm(a, b)
    diff = sub(unsqueeze(a, -2), unsqueeze(b, -3))
    if p == 0.0:
        return sum(cast(ne(diff, 0), a.dtype).detach(), -1)
    if p == 1.0:
        return sum(abs(diff), -1)
    if p == 2.0:
        return _sqrt_zero_grad(sum(mul(diff, diff), -1))
    if math.isinf(p):
        return amax(abs(diff), -1)
    return _pnorm_zero_grad(sum(pow(abs(diff), p), -1), p)


def _euclid_mm(a: Tensor, b: Tensor) -> Tensor:
    """sqrt(max(|a|^2 - 2 a.b + |b|^2, 1e-30)) as one product of augmented operands,
    [-2a, |a|^2, 1] @ [b, 1, |b|^2]^T (PyTorch's expansion, so the two agree)."""
    na = sum(mul(a, a), -1, keepdim=True)
    nb = sum(mul(b, b), -1, keepdim=True)
    one_a = broadcast_to(Tensor._wrap(np.ones((1,), a._data.dtype)), tuple(na.shape))
    one_b = broadcast_to(Tensor._wrap(np.ones((1,), b._data.dtype)), tuple(nb.shape))
    left = cat([mul(a, -2.0), na, one_a], -1)
    right = cat([b, one_b, nb], -1)
    r = right.ndim
    d2 = matmul(left, permute(right, tuple(range(r - 2)) + (r - 1, r - 2)))
    # clamp_min(1e-30), then sqrt: where clamped, the gradient is zero
    return sqrt(where(gt(d2, 1e-30), d2, 1e-30))
