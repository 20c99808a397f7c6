"""einsum, lowered at the front end: repeated subscripts within an operand become diagonal views
(a reshape and a strided slice), subscripts of one operand alone are summed, and the operands
are contracted pairwise left to right, each contraction one batched matmul over permuted and
reshaped operands (so einsum compiles with no primitive of its own).
"""

from __future__ import annotations

import builtins

import numpy as np

from ..tensor import Tensor
from .composites import sum  # noqa: A004
from .contractions import _prod, _same_dtype
from .functions import matmul
from .prims import mul
from .registry import op
from .shape_ops import broadcast_to, permute, reshape, slice_
from .spec import Spec, arg


def _diagonal_last(x: Tensor, i: int, j: int) -> Tensor:
    """The diagonal of dims ``i`` and ``j`` of ``x`` (equal sizes) as its last dim, the other
    dims in order: the two dims moved last, merged, and read with stride n + 1 (a view)."""
    n = x.shape[i]
    rest = [d for d in range(x.ndim) if d not in (i, j)]
    moved = permute(x, rest + [i, j])
    flat = reshape(moved, tuple(moved.shape[:-2]) + (n * n,))
    r = flat.ndim
    return slice_(flat, (0,) * r, tuple(flat.shape[:-1]) + (n * n,), (1,) * (r - 1) + (n + 1,))


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
