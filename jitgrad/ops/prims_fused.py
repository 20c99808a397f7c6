"""Fused primitives: a composite's whole computation as one eager step, for eager speed.

Eager mode pays Python overhead per primitive application (a tensor, an autograd node, a
dispatch), so a composite such as ``linear`` (transpose, matmul, expand, add) or
``cross_entropy`` (about twenty primitives forward and as many backward) costs far more in
overhead than in arithmetic at small sizes. A fused primitive runs such a composite's NumPy
arithmetic in one ``impl`` and its backward as one or two applications.

Each fused primitive also carries ``decompose``: the composite it stands for, over core
primitives. ``apply`` calls it instead of ``impl`` while a tracer records, so tapes, passes and
compiled backends only ever see core primitives, and a traced program is the same whether the
user wrote the fused or the composite form. The ``vjp`` rules are jitgrad code as everywhere else,
so higher-order gradients work in eager mode too.

``impl`` and the first-order ``vjp`` repeat the decomposition's arithmetic operation for
operation (the same products, sums and roundings, without the per-primitive overhead), so an eager
run and the interpreter's run of its tape still agree bit for bit. (``cross_entropy_backward``'s
own VJP, reached only by second-order gradients, is a closed form equal up to rounding.)
"""

from __future__ import annotations

import numpy as np

from ..tensor import apply
from . import functions as F
from .prims_layout import matmul_p, permute_p
from .prims_reduce import _lse_impl, sum_p
from .registry import register
from .spec import Arg, Spec, arg

# ---------------------------------------------------------------------------------------------
# linear: x @ w.T + b for a 2-D input


def linear_composite(x, w, b=None):
    """``x @ w.T (+ b)`` over core primitives (any input rank; ``w`` 2-D or 1-D)."""
    out = F.matmul(x, F.transpose(w, 0, 1) if w.ndim == 2 else w)
    return out if b is None else F.add(out, b)


def _linear_impl(x, w, b=None):
    out = np.matmul(x, w.T)
    if b is not None:
        out += b  # the bits of the composite's add of the broadcast bias
    return out


def _linear_shape(avals):
    x, w = avals[0], avals[1]
    return (x.shape[0], w.shape[0]), x.dtype


_T = {"perm": (1, 0)}


def _linear_vjp(n, g):
    # 2-D operands of one dtype by construction: the primitives are applied directly
    x, w = n.inputs[0], n.inputs[1]
    needs = n.needs
    gx = apply(matmul_p, (g, w)) if needs[0] else None
    # (x.T g).T rather than g.T x: the decomposition's product, so eager and traced runs agree
    # bit for bit
    gw = None
    if needs[1]:
        gw = apply(permute_p, (apply(matmul_p, (apply(permute_p, (x,), _T), g)),), _T)
    if len(needs) == 2:
        return gx, gw
    return gx, gw, (apply(sum_p, (g,), {"axes": (0,), "keepdim": False}) if needs[2] else None)


linear_p = register(
    "linear",
    impl=_linear_impl,
    vjp=_linear_vjp,
    shape=_linear_shape,
    kind="fused",
    saves=(0, 1),  # like PyTorch's addmm node: the bias is not saved
    decompose=linear_composite,
    node_name="AddmmBackward0",
    spec=Spec(
        [arg(4, 3), arg(5, 3), arg(5)],
        lambda x, w, b: x @ w.T + b,
        differentiable=(0, 1, 2),
        cases=(([arg(4, 3), arg(5, 3), arg(5)], {}), ([arg(4, 3), arg(5, 3)], {})),  # no bias
    ),
)

# ---------------------------------------------------------------------------------------------
# cross_entropy: class-index targets, no class weights, no label smoothing, (N, C) logits


def _rows_and_keep(t, ignore_index):
    keep = t != ignore_index
    if keep.all():
        return np.arange(t.shape[0]), t, None
    return np.arange(t.shape[0]), np.where(keep, t, 0), keep


def _mean_of(total, count, dtype):
    if count:
        return np.true_divide(total, dtype.type(count))
    with np.errstate(invalid="ignore", divide="ignore"):  # all ignored: 0/0 = nan, as PyTorch
        return np.true_divide(total, dtype.type(count))


def _ce_impl(x, t, ignore_index, reduction):
    rows, cls, keep = _rows_and_keep(t, ignore_index)
    loss = _lse_impl(x, (1,), False) - x[rows, cls]
    if keep is not None:
        loss = np.where(keep, loss, np.zeros((), x.dtype))
    if reduction == "none":
        return loss
    total = np.add.reduce(loss, axis=0)
    if reduction == "sum":
        return np.asarray(total)
    count = x.shape[0] if keep is None else np.count_nonzero(keep)
    return np.asarray(_mean_of(total, count, x.dtype))


def _ce_shape(avals, ignore_index, reduction):
    x = avals[0]
    return ((x.shape[0],) if reduction == "none" else ()), x.dtype


def _ce_decompose(x, t, ignore_index, reduction):
    from ..nn.functional import _cross_entropy_composite

    return _cross_entropy_composite(x, t, ignore_index, reduction)


def _softmax_ref(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _ce_ref(x, t, ignore_index, reduction):
    keep = t != ignore_index
    logp = np.log(_softmax_ref(x))
    loss = np.where(keep, -logp[np.arange(len(t)), np.where(keep, t, 0)], 0.0)
    return loss.sum() / keep.sum() if reduction == "mean" else loss


def _ce_backward_ref(x, t, g, ignore_index, reduction):
    keep = t != ignore_index
    onehot = np.eye(x.shape[1])[np.where(keep, t, 0)]
    return (_softmax_ref(x) - onehot) * np.where(keep, g, 0.0)[:, None]


# (N, C) logits and class targets; class 2 plays ignore_index in the specs. The bit-for-bit
# cases try every reduction, with and without an ignored class.
_LOGITS, _TARGETS = arg(6, 5), Arg((6,), kind="int", lo=0, hi=5)
_CE_CASES = tuple(
    {"ignore_index": ii, "reduction": r} for ii in (-100, 2) for r in ("mean", "sum", "none")
)


def _ce_vjp(n, g):
    x, t = n.inputs
    return apply(cross_entropy_backward_p, (x, t, g), n.params), None


cross_entropy_p = register(
    "cross_entropy",
    impl=_ce_impl,
    vjp=_ce_vjp,
    shape=_ce_shape,
    kind="fused",
    decompose=_ce_decompose,
    node_name="NllLossBackward0",
    spec=Spec(
        [_LOGITS, _TARGETS],
        _ce_ref,
        params={"ignore_index": 2, "reduction": "mean"},
        differentiable=(0,),
        cases=tuple(([_LOGITS, _TARGETS], p) for p in _CE_CASES),
    ),
)


def _row_scale_np(g, keep, reduction, dtype, n):
    """Per-row factor of the loss gradient: the upstream gradient, divided by the number of
    kept rows for ``mean``, and zero on ignored rows; shape (N, 1), or () if all rows share it."""
    if reduction == "mean":
        g = _mean_of(g, n if keep is None else np.count_nonzero(keep), dtype)
    if keep is not None:
        g = np.where(keep, g, np.zeros((), dtype))
    return g[:, None] if g.ndim else g


def _ce_backward_impl(x, t, g, ignore_index, reduction):
    # the decomposition's arithmetic, operation for operation (eager == interpreter bit for
    # bit): scale * exp(x - logsumexp(x)), minus the scale at each row's target
    rows, cls, keep = _rows_and_keep(t, ignore_index)
    scale = _row_scale_np(g, keep, reduction, x.dtype, x.shape[0])
    out = scale * np.exp(x - _lse_impl(x, (1,), True))
    out[rows, cls] -= scale[:, 0] if scale.ndim else scale
    return out


def _ce_backward_shape(avals, ignore_index, reduction):
    return tuple(avals[0].shape), avals[0].dtype


def _row_scale(t, g, ignore_index, reduction, dtype):
    """``_row_scale_np`` in jitgrad ops."""
    keep = F.cast(F.ne(t, ignore_index), dtype)
    if reduction == "mean":
        g = F.div(g, F.sum(keep))
    scale = F.mul(keep, g)
    return F.reshape(scale, (t.shape[0], 1))


def _onehot(x, t, ignore_index):
    """One-hot rows of ``t`` in ``x``'s dtype; ignored targets match no class."""
    from ..nn.functional import _class_onehot

    return _class_onehot(t, F.ne(t, ignore_index), x.shape[1], 2, x.dtype, ignore_index)


def _ce_backward_decompose(x, t, g, ignore_index, reduction):
    scale = _row_scale(t, g, ignore_index, reduction, x.dtype)
    probs = F.exp(F.sub(x, F.logsumexp(x, 1, keepdim=True)))
    return F.sub(F.mul(probs, scale), F.mul(_onehot(x, t, ignore_index), scale))


def _ce_backward_vjp(n, v):
    # out = (s - onehot) * c with s = softmax(x) and c the row scale (linear in g):
    #   d/dx: s * (u - sum(u * s)) with u = v * c;   d/dg: sum(v * (s - onehot) * c / g)
    x, t, g = n.inputs
    ignore_index, reduction = n.params["ignore_index"], n.params["reduction"]
    s = F.softmax(x, 1)
    gx = gg = None
    if n.needs[0]:
        u = F.mul(v, _row_scale(t, g, ignore_index, reduction, x.dtype))
        gx = F.mul(s, F.sub(u, F.sum(F.mul(u, s), 1, keepdim=True)))
    if n.needs[2]:
        ones = F.ones_like(g)
        per_row = F.sum(F.mul(v, F.sub(s, _onehot(x, t, ignore_index))), 1, keepdim=True)
        per_row = F.mul(per_row, _row_scale(t, ones, ignore_index, reduction, x.dtype))
        gg = F.sum(per_row) if reduction != "none" else F.reshape(per_row, tuple(g.shape))
    return gx, None, gg


cross_entropy_backward_p = register(
    "cross_entropy_backward",
    impl=_ce_backward_impl,
    vjp=_ce_backward_vjp,
    shape=_ce_backward_shape,
    kind="fused",
    decompose=_ce_backward_decompose,
    node_name="NllLossBackwardBackward0",
    spec=Spec(
        [_LOGITS, _TARGETS, arg(6)],
        _ce_backward_ref,
        params={"ignore_index": 2, "reduction": "none"},
        differentiable=(0, 2),
        # (the upstream gradient of a reduced loss is a scalar)
        cases=tuple(
            ([_LOGITS, _TARGETS, arg(6) if p["reduction"] == "none" else arg()], p)
            for p in _CE_CASES
        ),
    ),
)

__all__ = ["linear_p", "cross_entropy_p", "cross_entropy_backward_p", "linear_composite"]
