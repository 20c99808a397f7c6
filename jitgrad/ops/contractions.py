"""Products and contractions: einsum, tensordot, inner, dot, vdot, mv, the add-products (addmm,
addmv, baddbmm, addbmm), kron, cross and cdist, each a composite of movement ops, matmul and
elementwise arithmetic (so each compiles with no primitive of its own).

einsum is lowered at the front end: repeated subscripts within an operand become diagonal views
(a reshape and a strided slice), subscripts of one operand alone are summed, and the operands
are contracted pairwise left to right, each contraction one batched matmul over permuted and
reshaped operands.
"""

from __future__ import annotations

import builtins
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
    slice_,
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


def _diagonal_last(x: Tensor, i: int, j: int) -> Tensor:
    """The diagonal of dims ``i`` and ``j`` of ``x`` (equal sizes) as its last dim, the other
    dims in order: the two dims moved last, merged, and read with stride n + 1 (a view)."""
    n = x.shape[i]
    rest = [d for d in range(x.ndim) if d not in (i, j)]
    moved = permute(x, rest + [i, j])
    flat = reshape(moved, tuple(moved.shape[:-2]) + (n * n,))
    r = flat.ndim
    return slice_(flat, (0,) * r, tuple(flat.shape[:-1]) + (n * n,), (1,) * (r - 1) + (n + 1,))


# -- einsum ---------------------------------------------------------------------------------------
def _letter(k) -> str:
    if k is Ellipsis:
        return "..."
    k = int(k)
    if not 0 <= k < 52:
        raise RuntimeError(
            f"einsum(): expected subscript to be within the range [0, 52) but got {k}"
        )
    return chr(ord("A") + k) if k < 26 else chr(ord("a") + k - 26)


def _sublist_equation(args) -> tuple:
    """einsum(op0, sublist0, op1, sublist1, ..., [sublist_out]): the equation and operands."""
    operands, terms = list(args[0::2]), ["".join(_letter(k) for k in s) for s in args[1::2]]
    out = None
    if len(args) % 2:
        out = operands.pop()
        out = "".join(_letter(k) for k in out)
    eq = ",".join(terms[: len(operands)]) + ("" if out is None else "->" + out)
    return eq, operands


def _parse_term(term: str, offset: int, operand: int) -> tuple:
    """Subscripts of one term: letters, with ``None`` standing for an ellipsis."""
    out, k = [], 0
    while k < len(term):
        c = term[k]
        if c == ".":
            if term[k : k + 3] != "...":
                raise RuntimeError(
                    f"einsum(): found '.' for operand {operand} that is not part of any ellipsis"
                )
            if None in out:
                raise RuntimeError(
                    f"einsum(): found '.' for operand {operand} for which an ellipsis was "
                    "already found"
                )
            out.append(None)
            k += 3
            continue
        if not ("a" <= c <= "z" or "A" <= c <= "Z"):
            raise RuntimeError(
                f"einsum(): invalid subscript given at index {offset + k} in the equation "
                "string, subscripts must be in [a-zA-Z]"
            )
        out.append(c)
        k += 1
    return out


def _parse(equation: str, n_operands: int) -> tuple:
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms, offset = [], 0
    for i, term in enumerate(lhs.split(",")):
        terms.append(_parse_term(term, offset, i))
        offset += len(term) + 1
    if len(terms) < n_operands:
        raise RuntimeError("einsum(): more operands were provided than specified in the equation")
    if len(terms) > n_operands:
        raise RuntimeError("einsum(): fewer operands were provided than specified in the equation")
    out = None
    if arrow:
        out = _parse_term(rhs, len(lhs) + 2, 0)
    return terms, out


def _labelled(terms: list, operands: list) -> tuple:
    """Each operand's labels (letters, and ``(".", k)`` for the k-th broadcast ellipsis dim,
    counted over the widest ellipsis) and the widest ellipsis."""
    spans = []
    for i, (term, x) in enumerate(zip(terms, operands)):
        named = len(term) - (None in term)
        if None not in term and named != x.ndim:
            raise RuntimeError(
                f"einsum(): the number of subscripts in the equation ({named}) does not match the "
                f"number of dimensions ({x.ndim}) for operand {i} and no ellipsis was given"
            )
        if None in term and named > x.ndim:
            raise RuntimeError(
                f"einsum(): the number of subscripts in the equation ({named}) is more than the "
                f"number of dimensions ({x.ndim}) for operand {i}"
            )
        spans.append(x.ndim - named)
    width = max(spans, default=0)
    labels = []
    for term, span in zip(terms, spans):
        ls = []
        for c in term:
            if c is None:
                ls.extend((".", width - span + k) for k in range(span))
            else:
                ls.append(c)
        labels.append(ls)
    return labels, width


def _without_repeats(x: Tensor, labels: list, operand: int) -> tuple:
    """``x`` with each label once: repeated subscripts become diagonal views."""
    labels = list(labels)
    while True:
        seen = {}
        for d, lab in enumerate(labels):
            if lab in seen:
                i = seen[lab]
                if x.shape[i] != x.shape[d]:
                    raise RuntimeError(
                        f"einsum(): subscript {lab} is repeated for operand {operand} but the "
                        f"sizes don't match, {x.shape[d]} != {x.shape[i]}"
                    )
                x = _diagonal_last(x, i, d)
                labels = [lab_ for k, lab_ in enumerate(labels) if k not in (i, d)] + [lab]
                break
            seen[lab] = d
        else:
            return x, labels


def _check_sizes(operands: list, labels: list) -> None:
    """Each subscript's size agrees across operands, or is 1 (it broadcasts)."""
    seen = {}
    for i, (x, ls) in enumerate(zip(operands, labels)):
        for d, lab in enumerate(ls):
            n = x.shape[d]
            prev = seen.get(lab)
            if prev is None or prev == 1:
                seen[lab] = n
            elif n not in (1, prev):
                if isinstance(lab, tuple):
                    local = builtins.sum(isinstance(m, tuple) for m in ls[:d])
                    raise RuntimeError(
                        f"einsum(): dimension {local} covered by ellipsis in operand {i}has size "
                        f"{n} which does not broadcast with previously seen ellipsis with size "
                        f"{prev} for the respective dimension"
                    )
                raise RuntimeError(
                    f"einsum(): subscript {lab} has size {n} for operand {i} which does not "
                    f"broadcast with previously seen size {prev}"
                )


def _sum_out(x: Tensor, labels: list, keep: set) -> tuple:
    drop = tuple(d for d, lab in enumerate(labels) if lab not in keep)
    if not drop:
        return x, labels
    return sum(x, drop), [lab for lab in labels if lab in keep]


def _contract(a: Tensor, la: list, b: Tensor, lb: list, keep: set) -> tuple:
    """The product of two labelled operands summed over their shared labels not in ``keep``:
    (batch, a's own, contracted) @ (batch, contracted, b's own), one batched matmul."""
    shared = [lab for lab in la if lab in lb]
    batch = [lab for lab in shared if lab in keep]
    summed = [lab for lab in shared if lab not in keep]
    a_own = [lab for lab in la if lab not in lb]
    b_own = [lab for lab in lb if lab not in la]

    def size(lab):
        n = a.shape[la.index(lab)] if lab in la else 1
        return n if n != 1 or lab not in lb else b.shape[lb.index(lab)]

    sb = tuple(size(lab) for lab in batch)
    sa = tuple(a.shape[la.index(lab)] for lab in a_own)
    sbo = tuple(b.shape[lb.index(lab)] for lab in b_own)
    sk = tuple(size(lab) for lab in summed)
    a = permute(a, [la.index(lab) for lab in batch + a_own + summed])
    b = permute(b, [lb.index(lab) for lab in batch + summed + b_own])
    # size-1 batch and contracted dims broadcast against the other operand's
    a = broadcast_to(a, sb + sa + sk)
    b = broadcast_to(b, sb + sk + sbo)
    lead = (_prod(sb),) if batch else ()
    if summed:
        out = matmul(
            reshape(a, lead + (_prod(sa), _prod(sk))), reshape(b, lead + (_prod(sk), _prod(sbo)))
        )
    else:  # nothing to sum: an outer product, batched
        out = mul(reshape(a, lead + (_prod(sa), 1)), reshape(b, lead + (1, _prod(sbo))))
    return reshape(out, sb + sa + sbo), batch + a_own + b_own


def _einsum_spec_ref(a, b, c):
    return np.einsum("bij,bjk,kl->bil", a, b, c), np.einsum("bii->b", a)


def _einsum_spec_call(fn, a, b, c):
    return fn("bij,bjk,kl->bil", a, b, c), fn("bii->b", a)


@op(
    spec=Spec(
        [arg(2, 3, 3), arg(2, 3, 4), arg(4, 2)],
        _einsum_spec_ref,
        differentiable=(0, 1, 2),
        call=_einsum_spec_call,
        torch="einsum",
    ),
    method=False,
)
def einsum(*args):
    """PyTorch's einsum: ``einsum("ij,jk->ik", a, b)``, the operands also as one list, or the
    sublist form ``einsum(a, [0, 1], b, [1, 2], [0, 2])``."""
    if not args or (isinstance(args[0], str) and len(args) == 1):
        raise ValueError(
            "einsum(): must specify the equation string and at least one operand, or at least "
            "one operand and its subscripts list"
        )
    if isinstance(args[0], str):
        equation, operands = args[0], list(args[1:])
        if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
            operands = list(operands[0])
    else:
        equation, operands = _sublist_equation(args)
    if not operands:
        raise RuntimeError("einsum(): must provide at least one operand")
    for x in operands[1:]:
        _same_dtype(operands[0], x)
    terms, out_term = _parse(equation, len(operands))
    labels, width = _labelled(terms, operands)
    ellipsis = [(".", k) for k in range(width)]
    if out_term is None:  # implicit: the ellipsis, then the subscripts seen once, sorted
        counts = {}
        for term in terms:
            for c in term:
                if c is not None:
                    counts[c] = counts.get(c, 0) + 1
        out = ellipsis + sorted(c for c, n in counts.items() if n == 1)
    else:
        out = []
        seen_in = {lab for ls in labels for lab in ls}
        for c in out_term:
            if c is None:
                out.extend(ellipsis)
                continue
            if c in out:
                raise RuntimeError(
                    f"einsum(): output subscript {c} appears more than once in the output"
                )
            if c not in seen_in:
                raise RuntimeError(
                    f"einsum(): output subscript {c} does not appear in the equation for any "
                    "input operand"
                )
            out.append(c)
    xs, ls = [], []
    for i, (x, lab) in enumerate(zip(operands, labels)):
        x, lab = _without_repeats(x, lab, i)
        xs.append(x)
        ls.append(lab)
    _check_sizes(xs, ls)
    later = [set(out)]  # later[i]: the labels still needed after operand i
    for lab in reversed(ls[1:]):
        later.insert(0, later[0] | set(lab))
    res, lres = _sum_out(xs[0], ls[0], later[0])
    for i in range(1, len(xs)):
        x, lx = _sum_out(xs[i], ls[i], later[i] | set(lres))
        res, lres = _contract(res, lres, x, lx, later[i])
        res, lres = _sum_out(res, lres, later[i])
    return permute(res, [lres.index(lab) for lab in out])


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
