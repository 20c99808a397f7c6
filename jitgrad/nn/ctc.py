"""``nn.functional.ctc_loss``: connectionist temporal classification as a composite.

The loss is the negative log of the summed probability of every alignment of the target to
the input frames (Graves et al. 2006), computed with the forward (alpha) recursion over the
extended label sequence ``blank, l1, blank, l2, ..., blank`` in log space. The recursion is
ordinary jitgrad code over (N, 2S+1) rows, one step per frame, so autograd gives the exact
gradient with respect to ``log_probs`` (the backward recursion falls out of it) and padded
targets trace and compile. NOTE: PyTorch's own backward returns ``exp(log_probs) - posterior``,
the gradient with respect to the logits *before* a log_softmax; through ``log_softmax`` (how
CTC is used) the two agree exactly, but taken directly with respect to ``log_probs`` they
differ by ``exp(log_probs)``.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..factories import full
from ..ops import functions as _F
from ..ops.registry import op
from ..ops.spec import Spec, arg
from ..tensor import Tensor

_NEG_INF = float("-inf")


def _ctc_ref(x, targets, input_lengths, target_lengths, blank=0, reduction="mean"):
    """NumPy CTC on log_softmax(x) (T, N, C), padded targets, by the alpha recursion."""
    lp = (
        x
        - np.log(np.exp(x - x.max(2, keepdims=True)).sum(2, keepdims=True))
        - x.max(2, keepdims=True)
    )
    losses = []
    for n in range(x.shape[1]):
        labels = list(targets[n, : target_lengths[n]])
        ext = [blank]
        for c in labels:
            ext += [c, blank]
        alpha = np.full(len(ext), -np.inf)
        alpha[0] = lp[0, n, ext[0]]
        if len(ext) > 1:
            alpha[1] = lp[0, n, ext[1]]
        for t in range(1, input_lengths[n]):
            new = np.full(len(ext), -np.inf)
            for s in range(len(ext)):
                terms = [alpha[s]]
                if s >= 1:
                    terms.append(alpha[s - 1])
                if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                    terms.append(alpha[s - 2])
                new[s] = np.logaddexp.reduce(terms) + lp[t, n, ext[s]]
            alpha = new
        ends = alpha[-1:] if len(ext) == 1 else alpha[-2:]
        losses.append(-np.logaddexp.reduce(ends))
    losses = np.array(losses)
    if reduction == "mean":
        return np.mean(losses / np.maximum(np.array(target_lengths), 1))
    return losses.sum() if reduction == "sum" else losses


def _spec_call(f, x, targets, input_lengths, target_lengths, **kw):
    return f(x.log_softmax(2), targets, input_lengths, target_lengths, **kw)


def _lse(*xs: Tensor) -> Tensor:
    """log(sum(exp(x))) of a few same-shaped tensors, -inf (with zero gradient) where all are
    -inf: the shift is the detached max, or 0 where that is -inf."""
    m = xs[0]
    for x in xs[1:]:
        m = _F.maximum(m, x)
    m = m.detach()
    m = _F.where(_F.eq(m, _NEG_INF), 0.0, m)
    total = _F.exp(_F.sub(xs[0], m))
    for x in xs[1:]:
        total = _F.add(total, _F.exp(_F.sub(x, m)))
    some = _F.gt(total, 0)
    return _F.where(some, _F.add(_F.log(_F.where(some, total, 1.0)), m), _NEG_INF)


def _shift(x: Tensor, k: int) -> Tensor:
    """x moved k places right along dim 1, -inf coming in."""
    n, width = x.shape
    pad = full((n, k), _NEG_INF, dtype=x.dtype)
    return _F.cat([pad, _F.narrow(x, 1, 0, width - k)], 1)


def _lengths(value, n: int, name: str) -> Tensor:
    if isinstance(value, Tensor):
        t = _F.reshape(value, (-1,)) if value.ndim else _F.reshape(value, (1,))
    else:
        t = Tensor._wrap(np.asarray(value, dtype=np.int64).reshape(-1))
    if t.shape[0] != n:
        raise RuntimeError(f"Expected tensor to have size {n} at dimension 0, but got size "
                           f"{t.shape[0]} for argument '{name}' (while checking arguments for "
                           "ctc_loss_cpu)")  # fmt: skip
    if t.dtype.category != 1:
        raise RuntimeError(f"{name} must be integral")
    return _F.cast(t, dtypes.int64)


def _padded_targets(targets: Tensor, target_lengths: Tensor, n: int) -> Tensor:
    """Concatenated 1-D targets as (N, S) rows (reads the lengths: eager only)."""
    targets._concrete("ctc_loss with concatenated (1-D) targets")
    target_lengths._concrete("ctc_loss with concatenated (1-D) targets")
    tl = target_lengths._data.astype(np.int64)
    flat = targets._data.astype(np.int64)
    if tl.sum() > flat.size:
        raise RuntimeError(
            f"Expected tensor to have size at least {int(tl.sum())} at dimension 0, but got "
            f"size {flat.size} for argument #2 'targets' (while checking arguments for "
            "ctc_loss_cpu)"
        )
    rows = np.zeros((n, int(tl.max()) if n else 0), dtype=np.int64)
    start = 0
    for i, length in enumerate(tl):
        rows[i, :length] = flat[start : start + length]
        start += length
    return Tensor._wrap(rows)


@op(
    namespace="nn.functional",
    spec=Spec(
        [arg(4, 2, 3), arg(2, 2, kind="int", lo=1, hi=3), (4, 3), (2, 1)],
        _ctc_ref,
        params={"reduction": "mean"},
        differentiable=(0,),
        call=_spec_call,
    ),
)
def ctc_loss(
    log_probs: Tensor,
    targets: Tensor,
    input_lengths,
    target_lengths,
    blank: int = 0,
    reduction: str = "mean",
    zero_infinity: bool = False,
) -> Tensor:
    """CTC loss of ``log_probs`` (T, N, C) (or (T, C)) against ``targets`` padded (N, S) or
    concatenated (sum of target_lengths,). ``'mean'`` divides each loss by its target length,
    then averages; ``zero_infinity`` turns impossible alignments' infinite losses (and their
    gradients) into 0."""
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    unbatched = log_probs.ndim == 2
    lp = _F.unsqueeze(log_probs, 1) if unbatched else log_probs
    if lp.ndim != 3:
        raise RuntimeError(f"ctc_loss: expected log_probs to be 2-D or 3-D, got {log_probs.ndim}-D")
    steps, n, classes = lp.shape
    if not 0 <= blank < classes:
        raise RuntimeError("blank must be in label range")
    il = _lengths(input_lengths, n, "input_lengths")
    tl = _lengths(target_lengths, n, "target_lengths")
    if unbatched and targets.ndim == 1:
        targets = _F.unsqueeze(targets, 0)
    elif targets.ndim == 1:
        targets = _padded_targets(targets, tl, n)
    targets = _F.cast(targets, dtypes.int64)
    width = targets.shape[1]
    # checked on the values at hand (under tracing, the traced call's), as class ranges are
    if il._data.size and il._data.max() > steps:
        raise RuntimeError(
            f"Expected input_lengths to have value at most {steps}, but got value "
            f"{int(il._data.max())} (while checking arguments for ctc_loss_cpu)"
        )
    if tl._data.size and tl._data.max() > width:
        raise RuntimeError(
            f"Expected tensor to have size at least {int(tl._data.max())} at dimension 1, but "
            f"got size {width} for argument #2 'targets' (while checking arguments for "
            "ctc_loss_cpu)"
        )

    size = 2 * width + 1
    pos = Tensor._wrap(np.arange(size, dtype=np.int64).reshape(1, size))
    # the extended labels: blank at even positions, target s at position 2s + 1
    label_at = Tensor._wrap(np.maximum((np.arange(size) - 1) // 2, 0).astype(np.int64))
    odd = Tensor._wrap((np.arange(size) % 2 == 1).reshape(1, size))
    ext = _F.where(odd, _F.index_select(targets, 1, label_at), blank)  # (N, L)
    # a skip from s - 2 is allowed onto a label that differs from the one two places back
    ext_back = _F.cat([full((n, 2), blank, dtype=ext.dtype), _F.narrow(ext, 1, 0, size - 2)], 1)
    skip = _F.logical_and(_F.ne(ext, blank), _F.ne(ext, ext_back))
    lp_ext = _F.gather(lp, 2, _F.expand(_F.unsqueeze(ext, 0), (steps, n, size)))  # (T, N, L)

    tl_col, il_col = _F.unsqueeze(tl, 1), _F.unsqueeze(il, 1)
    first = _F.logical_and(_F.lt(pos, 2), _F.lt(pos, _F.add(_F.mul(tl_col, 2), 1)))
    alpha = _F.where(first, lp_ext[0], _NEG_INF)
    # no frames: the empty alignment (probability 1 at position 0)
    alpha = _F.where(_F.gt(il_col, 0), alpha, _F.where(_F.eq(pos, 0), 0.0, _NEG_INF))
    for t in range(1, steps):
        step = _lse(alpha, _shift(alpha, 1), _F.where(skip, _shift(alpha, 2), _NEG_INF))
        step = _F.add(step, lp_ext[t])
        alpha = _F.where(_F.gt(il_col, t), step, alpha)
    # the alignment ends on the last label or the blank after it
    last = _F.eq(pos, _F.mul(tl_col, 2))
    before = _F.logical_and(_F.eq(pos, _F.sub(_F.mul(tl_col, 2), 1)), _F.gt(tl_col, 0))
    end = _lse(
        _F.amax(_F.where(last, alpha, _NEG_INF), 1), _F.amax(_F.where(before, alpha, _NEG_INF), 1)
    )
    loss = _F.neg(end)
    if zero_infinity:
        loss = _F.where(_F.isinf(loss), 0.0, loss)
    if reduction == "mean":
        per = _F.cast(_F.clamp(tl, min=1), loss.dtype)
        return _F.mean(_F.div(loss, per))
    if reduction == "sum":
        return _F.sum(loss)
    return _F.squeeze(loss, 0) if unbatched else loss
