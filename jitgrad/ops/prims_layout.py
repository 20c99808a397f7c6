"""Primitives that move, combine, index or draw values: movement (views: compiled backends turn
them into index arithmetic), cat, matmul, take/scatter_add, and the random draw. Registered in the
same registry as the arithmetic ones (``prims.py`` re-exports them)."""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..tensor import apply
from . import functions as F
from .loops import ready, scatter_add_flat
from .prims import _slice_len
from .registry import register
from .spec import Arg, Spec, arg

# ---------------------------------------------------------------------------------------------
# Movement (views: compiled backends turn them into index arithmetic)


def _reshape_shape(avals, shape):
    x = avals[0]
    n = 1
    for s in x.shape:
        n *= s
    m = 1
    for s in shape:
        m *= s
    if n != m:
        raise ValueError(f"cannot reshape {tuple(x.shape)} into {shape}")
    return tuple(shape), x.dtype


reshape_p = register(
    "reshape",
    impl=lambda x, shape: x.reshape(shape),
    vjp=lambda n, g: (F.reshape(g, tuple(n.inputs[0].shape)),),
    shape=_reshape_shape,
    kind="movement",
    saves=False,
    spec=Spec(
        [arg(3, 4)],
        lambda x, shape: x.reshape(shape),
        params={"shape": (2, 6)},
        differentiable=(0,),
        linear=True,
    ),
)


def _inverse(perm):
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


permute_p = register(
    "permute",
    impl=lambda x, perm: x.transpose(perm),
    vjp=lambda n, g: (F.permute(g, _inverse(n.params["perm"])),),
    shape=lambda avals, perm: (tuple(avals[0].shape[p] for p in perm), avals[0].dtype),
    kind="movement",
    saves=False,
    spec=Spec(
        [arg(2, 3, 4)],
        lambda x, perm: x.transpose(perm),
        params={"perm": (2, 0, 1)},
        differentiable=(0,),
        linear=True,
    ),
)


def _expand_impl(x, shape):
    # a read-only view with stride 0 along the broadcast dims (np.broadcast_to, minus overhead)
    if not x.flags.c_contiguous or x.size == 0:
        return np.broadcast_to(x, shape)
    lead = len(shape) - x.ndim
    strides = (0,) * lead + tuple(
        0 if a != b else s for a, b, s in zip(x.shape, shape[lead:], x.strides)
    )
    out = np.ndarray(shape, x.dtype, x, 0, strides)
    out.flags.writeable = False
    return out


def _expand_shape(avals, shape):
    # numpy's broadcast_to: new leading dims, and size-1 dims stretched
    x = avals[0]
    lead = len(shape) - len(x.shape)
    if lead < 0 or any(a not in (1, b) for a, b in zip(x.shape, shape[lead:])):
        raise ValueError(f"cannot expand {tuple(x.shape)} to {shape}")
    return tuple(shape), x.dtype


expand_p = register(
    "expand",
    impl=_expand_impl,
    vjp=lambda n, g: (F.sum_to(g, tuple(n.inputs[0].shape)),),
    shape=_expand_shape,
    kind="movement",
    saves=False,
    spec=Spec(
        [arg(3, 1, 4)],
        lambda x, shape: np.broadcast_to(x, shape),
        params={"shape": (2, 3, 5, 4)},  # a new leading dim and a stretched one
        differentiable=(0,),
        linear=True,
    ),
)


def _slice_impl(x, starts, stops, steps):
    return x[tuple(slice(a, b, c) for a, b, c in zip(starts, stops, steps))]


def _slice_shape(avals, starts, stops, steps):
    shape = tuple(_slice_len(a, b, c) for a, b, c in zip(starts, stops, steps))
    return shape, avals[0].dtype


def _slice_vjp(n, g):
    # The transpose of a strided slice is a pad with zeros (interior padding for the stride).
    x = n.inputs[0]
    p = n.params
    widths = []
    for size, start, step, m in zip(x.shape, p["starts"], p["steps"], g.shape):
        end = start + (m - 1) * step + 1 if m else start
        widths.append((start, size - end, step - 1))
    return (F.pad_interior(g, tuple(widths)),)


slice_p = register(
    "slice",
    impl=_slice_impl,
    vjp=_slice_vjp,
    shape=_slice_shape,
    kind="movement",
    saves=False,
    spec=Spec(
        [arg(5, 7)],
        lambda x, starts, stops, steps: x[1:4, 0:7:3],
        params={"starts": (1, 0), "stops": (4, 7), "steps": (1, 3)},
        differentiable=(0,),
        linear=True,
    ),
)


def _pad_out(shape, widths):
    return tuple(
        lo + hi + (s + (s - 1) * interior if s else 0)
        for s, (lo, hi, interior) in zip(shape, widths)
    )


def _pad_ref(x):
    # the spec's widths ((1, 2, 0), (0, 1, 2)) by hand
    out = np.zeros((1 + 2 + 3, 1 + 3 + 2 * 2), x.dtype)
    out[1:4, 0:7:3] = x
    return out


def _pad_impl(x, widths):
    out = np.zeros(_pad_out(x.shape, widths), dtype=x.dtype)
    index = tuple(
        slice(lo, lo + (s - 1) * (interior + 1) + 1, interior + 1)
        for s, (lo, _, interior) in zip(x.shape, widths)
    )
    out[index] = x
    return out


def _pad_vjp(n, g):
    x = n.inputs[0]
    widths = n.params["widths"]
    starts = tuple(lo for lo, _, _ in widths)
    steps = tuple(interior + 1 for _, _, interior in widths)
    stops = tuple(a + (s - 1) * c + 1 for a, c, s in zip(starts, steps, x.shape))
    return (F.slice_(g, starts, stops, steps),)


pad_p = register(
    "pad",
    impl=_pad_impl,
    vjp=_pad_vjp,
    shape=lambda avals, widths: (_pad_out(tuple(avals[0].shape), widths), avals[0].dtype),
    kind="movement",
    saves=False,
    spec=Spec(
        [arg(3, 3)],
        lambda x, widths: _pad_ref(x),
        params={"widths": ((1, 2, 0), (0, 1, 2))},
        differentiable=(0,),
        linear=True,
    ),
)


def _cat_shape(avals, axis):
    first = tuple(avals[0].shape)
    total = 0
    for a in avals:
        s = tuple(a.shape)
        if len(s) != len(first) or s[:axis] + s[axis + 1 :] != first[:axis] + first[axis + 1 :]:
            raise ValueError(f"cat: shapes {first} and {s} differ outside dimension {axis}")
        total += s[axis]
    return first[:axis] + (total,) + first[axis + 1 :], avals[0].dtype


def _cat_vjp(n, g):
    axis = n.params["axis"]
    grads, offset = [], 0
    rank = g.ndim
    for x, need in zip(n.inputs, n.needs):
        size = x.shape[axis]
        if need:
            starts = tuple(offset if d == axis else 0 for d in range(rank))
            stops = tuple(offset + size if d == axis else g.shape[d] for d in range(rank))
            grads.append(F.slice_(g, starts, stops, (1,) * rank))
        else:
            grads.append(None)
        offset += size
    return tuple(grads)


cat_p = register(
    "cat",
    impl=lambda *xs, axis: np.concatenate(xs, axis=axis),
    vjp=_cat_vjp,
    shape=_cat_shape,
    kind="movement",
    saves=False,
    spec=Spec(
        [arg(2, 3), arg(4, 3)],
        lambda a, b, axis: np.concatenate([a, b], axis),
        params={"axis": 0},
        differentiable=(0, 1),
        linear=True,
    ),
)

# ---------------------------------------------------------------------------------------------
# Matmul: both operands of equal rank >= 2 with equal batch dims (the front end broadcasts)


def _matmul_shape(avals):
    a, b = avals
    if len(a.shape) < 2 or len(a.shape) != len(b.shape) or a.shape[:-2] != b.shape[:-2]:
        raise ValueError(f"matmul prim needs equal batch dims: {a.shape} @ {b.shape}")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: inner dims differ: {a.shape} @ {b.shape}")
    return tuple(a.shape[:-1]) + (b.shape[-1],), a.dtype


def _matmul_vjp(n, g):
    # d(A B) = dA B + A dB  =>  gA = g B^T, gB = A^T g
    a, b = n.inputs
    ga = F.matmul(g, F.transpose(b, -1, -2)) if n.needs[0] else None
    gb = F.matmul(F.transpose(a, -1, -2), g) if n.needs[1] else None
    return ga, gb


def _matmul_impl(a, b):
    if dtypes.is_half_np(a.dtype):  # float32 products and sums, rounded once (as PyTorch's)
        return np.matmul(a.astype(np.float32), b.astype(np.float32)).astype(a.dtype)
    return np.matmul(a, b)


matmul_p = register(
    "matmul",
    impl=_matmul_impl,
    vjp=_matmul_vjp,
    shape=_matmul_shape,
    kind="matmul",
    spec=Spec(
        [arg(2, 3, 4), arg(2, 4, 5)],
        lambda a, b: np.einsum("bij,bjk->bik", a, b),
        differentiable=(0, 1),
    ),
)

# ---------------------------------------------------------------------------------------------
# Integer indexing: take along one axis, and its transpose scatter_add


def _take_shape(avals, axis):
    x, idx = avals
    s = tuple(x.shape)
    return s[:axis] + tuple(idx.shape) + s[axis + 1 :], x.dtype


def _take_vjp(n, g):
    x, idx = n.inputs
    axis = n.params["axis"]
    return apply(scatter_add_p, (F.zeros_like(x), idx, g), {"axis": axis}), None


take_p = register(
    "take",
    impl=lambda x, idx, axis: np.take(x, idx, axis=axis),
    vjp=_take_vjp,
    shape=_take_shape,
    kind="index",
    spec=Spec(
        [arg(5, 3), arg(2, 2, kind="int", lo=0, hi=5)],
        lambda x, idx, axis: x[idx],
        params={"axis": 0},
        differentiable=(0,),
        linear=True,
    ),
)


def _scatter_add_impl(x, idx, src, axis):
    out = np.array(x, copy=True, order="C")
    if (
        out.dtype.kind in "fiu"
        and np.result_type(src) == out.dtype
        and np.size(idx)
        and ready(scatter_add_flat, out.dtype)
    ):  # np.add.at's additions, compiled (ops.loops)
        pre = int(np.prod(x.shape[:axis], dtype=np.int64))
        n, post = x.shape[axis], int(np.prod(x.shape[axis + 1 :], dtype=np.int64))
        src = np.broadcast_to(src, x.shape[:axis] + np.shape(idx) + x.shape[axis + 1 :])
        src = np.ascontiguousarray(src).reshape(-1)
        index = np.ascontiguousarray(idx, dtype=np.int64).reshape(-1)
        bad = scatter_add_flat(out.reshape(-1), index, src, pre, n, post)
        if bad != n:
            raise IndexError(f"index {bad} is out of bounds for axis {axis} with size {n}")
        return out
    # NOTE: np.add.at is fast only for a 1-D index into a 1-D array (5x faster than with
    # slices on a (64, 16, 17) im2col gradient), so the additions go to flat positions.
    if np.size(src) < 4096:  # small: the flat indices cost more than they save
        np.add.at(out, (slice(None),) * axis + (idx,), src)
        return out
    pre = int(np.prod(x.shape[:axis], dtype=np.int64))
    n, post = x.shape[axis], int(np.prod(x.shape[axis + 1 :], dtype=np.int64))
    idx = np.asarray(idx, dtype=np.int64)
    idx = np.where(idx < 0, idx + n, idx)  # negative indices count from the end, as in take
    # (no trailing unit axis in the broadcasts: NumPy's inner loops would be 1 long)
    flat = (np.arange(pre, dtype=np.int64) * (n * post))[:, None] + (idx * post).reshape(1, -1)
    if post > 1:
        flat = flat[:, :, None] + np.arange(post, dtype=np.int64)
    src = np.broadcast_to(src, x.shape[:axis] + idx.shape + x.shape[axis + 1 :])
    np.add.at(out.reshape(-1), flat.reshape(-1), np.ascontiguousarray(src).reshape(-1))
    return out


def _scatter_ref(x, idx, src, axis):
    out = x.copy()
    for i, j in enumerate(idx):
        out[j] += src[i]
    return out


def _scatter_add_vjp(n, g):
    _, idx, _ = n.inputs
    axis = n.params["axis"]
    gsrc = apply(take_p, (g, idx), {"axis": axis}) if n.needs[2] else None
    return (g if n.needs[0] else None), None, gsrc


scatter_add_p = register(
    "scatter_add",
    impl=_scatter_add_impl,
    vjp=_scatter_add_vjp,
    shape=lambda avals, axis: (tuple(avals[0].shape), avals[0].dtype),
    kind="scatter",
    spec=Spec(
        [arg(5, 3), Arg((4,), kind="int", lo=0, hi=5), arg(4, 3)],
        _scatter_ref,
        params={"axis": 0},
        differentiable=(0, 2),
        linear=True,
    ),
)

# ---------------------------------------------------------------------------------------------
# Random numbers: a counter-based generator. The draw is a pure function of the generator
# state (seed, counter) and the element's flat index, so compiled code can produce it in any
# order, in parallel, and a traced step draws fresh numbers each call when the state advances.

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_COUNTER_MUL = np.uint64(0xD1B54A32D192ED03)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _mix64(z):
    # splitmix64's finaliser: a bijection on 64-bit integers with full avalanche
    z = z ^ (z >> np.uint64(30))
    z = z * _MIX1
    z = z ^ (z >> np.uint64(27))
    z = z * _MIX2
    return z ^ (z >> np.uint64(31))


def _rand_impl(state, shape, dtype):
    n = int(np.prod(shape, dtype=np.int64))
    with np.errstate(over="ignore"):
        # seed + 1: seed 0, counter 0 must not hash element 0 to 0 (a draw of exactly 0.0)
        base = (state[0] + np.uint64(1)) * _GOLDEN + state[1] * _COUNTER_MUL
        z = _mix64(np.arange(n, dtype=np.uint64) + base)
    if dtype.np == np.float64:
        u = (z >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
    else:
        u = (z >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / 16777216.0)
    return u.reshape(shape)


rand_p = register(
    "rand",
    impl=_rand_impl,
    vjp=None,
    shape=lambda avals, shape, dtype: (tuple(shape), dtype),
    kind="random",
    differentiable=False,
    saves=False,
    spec=Spec([], None),  # checked for determinism and distribution in tests/test_prims.py
)
