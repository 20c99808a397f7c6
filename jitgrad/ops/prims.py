"""The primitives: a small closed set, each declared once with all of its rules.

Everything else (sigmoid, softmax, cross_entropy, var, ...) is a composite in ``functions.py`` or
``nn/functional.py``. Front-end functions guarantee the invariants the rules below rely on:
elementwise inputs share one dtype (except ``where``'s condition and ``cast``) and have the
output's shape, or are rank 0 and do not require grad (a rank-0 constant broadcasts implicitly;
anything that needs a gradient is broadcast by an explicit ``expand``, whose VJP is ``sum_to``).
"""

from __future__ import annotations

import numpy as np

from .. import dtypes
from . import functions as F
from .registry import register

# ---------------------------------------------------------------------------------------------
# Shape rules


def _same(avals, **_):
    shape = ()
    for a in avals:
        if len(a.shape):
            if shape and tuple(a.shape) != shape:
                raise ValueError(f"elementwise inputs disagree: {shape} vs {tuple(a.shape)}")
            shape = tuple(a.shape)
    return shape, avals[0].dtype


def _same_bool(avals, **params):
    return _same(avals)[0], dtypes.bool_


def _where_shape(avals, **_):
    return _same(avals)[0], avals[1].dtype


def _reduced(shape, axes, keepdim):
    if keepdim:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def _sum_shape(avals, axes, keepdim):
    x = avals[0]
    dt = x.dtype if x.dtype.is_floating_point else dtypes.int64
    return _reduced(tuple(x.shape), axes, keepdim), dt


def _max_shape(avals, axes, keepdim):
    return _reduced(tuple(avals[0].shape), axes, keepdim), avals[0].dtype


def _argmax_shape(avals, axis, keepdim):
    return _reduced(tuple(avals[0].shape), (axis,), keepdim), dtypes.int64


def _slice_len(start, stop, step):
    return max(0, (stop - start + step - 1) // step)


# ---------------------------------------------------------------------------------------------
# Elementwise, unary


def _unary(name, impl, scalar, vjp, **kw):
    return register(name, impl=impl, vjp=vjp, shape=_same, kind="elementwise", scalar=scalar, **kw)


neg_p = _unary("neg", np.negative, "(-{0})", lambda n, g: (F.neg(g),), saves=False)
# d exp(x) = exp(x) dx
exp_p = _unary("exp", np.exp, "math.exp({0})", lambda n, g: (F.mul(g, n.out),), save_out=True)
# d log(x) = dx / x
log_p = _unary("log", np.log, "math.log({0})", lambda n, g: (F.div(g, n.inputs[0]),))
# d log1p(x) = dx / (1 + x)
log1p_p = _unary(
    "log1p", np.log1p, "math.log1p({0})", lambda n, g: (F.div(g, F.add(n.inputs[0], 1.0)),)
)
sin_p = _unary("sin", np.sin, "math.sin({0})", lambda n, g: (F.mul(g, F.cos(n.inputs[0])),))
cos_p = _unary("cos", np.cos, "math.cos({0})", lambda n, g: (F.neg(F.mul(g, F.sin(n.inputs[0]))),))
# d tanh(x) = (1 - tanh(x)^2) dx
tanh_p = _unary(
    "tanh",
    np.tanh,
    "math.tanh({0})",
    lambda n, g: (F.mul(g, F.rsub(F.mul(n.out, n.out), 1.0)),),
    save_out=True,
)
# d sqrt(x) = dx / (2 sqrt(x))
sqrt_p = _unary(
    "sqrt",
    np.sqrt,
    "math.sqrt({0})",
    lambda n, g: (F.div(g, F.mul(n.out, 2.0)),),
    save_out=True,
)
abs_p = _unary("abs", np.abs, "abs({0})", lambda n, g: (F.mul(g, F.sign(n.inputs[0])),))
# sign is piecewise constant: PyTorch gives it a zero gradient rather than none.
sign_p = _unary(
    "sign",
    np.sign,
    "(1.0 if {0} > 0 else (-1.0 if {0} < 0 else 0.0))",
    lambda n, g: (F.zeros_like(g),),
    saves=False,
)
# floor is piecewise constant: zero gradient, as in PyTorch.
floor_p = _unary("floor", np.floor, "math.floor({0})", lambda n, g: (F.zeros_like(g),), saves=False)
# Identity copy (clone, contiguous): a fresh buffer with the same values.
copy_p = _unary("copy", np.array, "{0}", lambda n, g: (g,), saves=False)


def _cast_impl(x, dtype):
    return x.astype(dtype.np)


def _cast_vjp(n, g):
    src = n.inputs[0].dtype
    return (F.cast(g, src) if src.is_floating_point else None,)


cast_p = register(
    "cast",
    impl=_cast_impl,
    vjp=_cast_vjp,
    shape=lambda avals, dtype: (tuple(avals[0].shape), dtype),
    kind="elementwise",
    scalar=lambda dtype: {
        "float32": "np.float32({0})",
        "float64": "np.float64({0})",
        "int32": "np.int32({0})",
        "int64": "np.int64({0})",
        "uint64": "np.uint64({0})",
        "bool": "({0} != 0)",
    }[dtype.name],
    saves=False,
)

# ---------------------------------------------------------------------------------------------
# Elementwise, binary and ternary


def _binary(name, impl, scalar, vjp, **kw):
    return register(name, impl=impl, vjp=vjp, shape=_same, kind="elementwise", scalar=scalar, **kw)


add_p = _binary("add", np.add, "({0} + {1})", lambda n, g: (g, g), saves=False)
sub_p = _binary("sub", np.subtract, "({0} - {1})", lambda n, g: (g, F.neg(g)), saves=False)


def _mul_vjp(n, g):
    x, y = n.inputs
    return (F.mul(g, y) if n.needs[0] else None, F.mul(g, x) if n.needs[1] else None)


mul_p = _binary("mul", np.multiply, "({0} * {1})", _mul_vjp)


def _div_vjp(n, g):
    # d(x/y) = dx / y - x dy / y^2
    x, y = n.inputs
    gx = F.div(g, y) if n.needs[0] else None
    gy = F.neg(F.div(F.mul(g, x), F.mul(y, y))) if n.needs[1] else None
    return gx, gy


div_p = _binary("div", np.true_divide, "({0} / {1})", _div_vjp)


def _pow_vjp(n, g):
    # d x^y = y x^(y-1) dx + x^y log(x) dy; PyTorch zeroes the terms that would be 0 * inf.
    x, y = n.inputs
    gx = gy = None
    if n.needs[0]:
        gx = F.where(F.eq(y, 0.0), 0.0, F.mul(F.mul(g, y), F.pow(x, F.sub(y, 1.0))))
    if n.needs[1]:
        gy = F.where(F.eq(x, 0.0), 0.0, F.mul(F.mul(g, n.out), F.log(x)))
    return gx, gy


pow_p = _binary("pow", np.power, "({0} ** {1})", _pow_vjp, save_out=True)


def _minmax_vjp(pick):
    # The larger (smaller) input takes the gradient; ties split it evenly, as in PyTorch.
    def vjp(n, g):
        x, y = n.inputs
        share = F.add(F.cast(pick(x, y), g.dtype), F.mul(F.cast(F.eq(x, y), g.dtype), 0.5))
        gx = F.mul(g, share) if n.needs[0] else None
        gy = F.mul(g, F.rsub(share, 1.0)) if n.needs[1] else None
        return gx, gy

    return vjp


maximum_p = _binary("maximum", np.maximum, "max({0}, {1})", _minmax_vjp(lambda x, y: F.gt(x, y)))
minimum_p = _binary("minimum", np.minimum, "min({0}, {1})", _minmax_vjp(lambda x, y: F.lt(x, y)))


def _cmp(name, impl, op):
    return register(
        name,
        impl=impl,
        vjp=None,
        shape=_same_bool,
        kind="elementwise",
        scalar=f"({{0}} {op} {{1}})",
        differentiable=False,
        saves=False,
    )


lt_p = _cmp("lt", np.less, "<")
le_p = _cmp("le", np.less_equal, "<=")
eq_p = _cmp("eq", np.equal, "==")
ne_p = _cmp("ne", np.not_equal, "!=")


def _where_vjp(n, g):
    c = n.inputs[0]
    ga = F.where(c, g, 0.0) if n.needs[1] else None
    gb = F.where(c, 0.0, g) if n.needs[2] else None
    return None, ga, gb


where_p = register(
    "where",
    impl=np.where,
    vjp=_where_vjp,
    shape=_where_shape,
    kind="elementwise",
    scalar="({1} if {0} else {2})",
)

# ---------------------------------------------------------------------------------------------
# Reductions (axes: a sorted tuple of non-negative axes)


def _sum_impl(x, axes, keepdim):
    if x.dtype == np.bool_ or x.dtype == np.int32:
        return np.add.reduce(x, axis=axes, keepdims=keepdim, dtype=np.int64)
    return np.add.reduce(x, axis=axes, keepdims=keepdim)


def _sum_vjp(n, g):
    x = n.inputs[0]
    axes, keepdim = n.params["axes"], n.params["keepdim"]
    if not keepdim:
        g = F.reshape(g, _reduced(tuple(x.shape), axes, True))
    return (F.expand(g, tuple(x.shape)),)


sum_p = register("sum", impl=_sum_impl, vjp=_sum_vjp, shape=_sum_shape, kind="reduce", saves=False)


def _max_impl(x, axes, keepdim):
    return np.maximum.reduce(x, axis=axes, keepdims=keepdim)


def _max_vjp(n, g):
    # amax: the gradient is shared evenly among the elements equal to the maximum.
    x = n.inputs[0]
    axes, keepdim = n.params["axes"], n.params["keepdim"]
    kept = _reduced(tuple(x.shape), axes, True)
    out, g = n.out, g
    if not keepdim:
        out, g = F.reshape(out, kept), F.reshape(g, kept)
    mask = F.cast(F.eq(x, F.expand(out, tuple(x.shape))), g.dtype)
    count = F.sum(mask, axes, keepdim=True)
    return (F.mul(mask, F.expand(F.div(g, count), tuple(x.shape))),)


max_p = register(
    "max", impl=_max_impl, vjp=_max_vjp, shape=_max_shape, kind="reduce", save_out=True
)


def _argmax_impl(x, axis, keepdim):
    out = np.argmax(x, axis=axis, keepdims=keepdim)
    return np.asarray(out, dtype=np.int64)


argmax_p = register(
    "argmax",
    impl=_argmax_impl,
    vjp=None,
    shape=_argmax_shape,
    kind="reduce",
    differentiable=False,
    saves=False,
)


def _lse_impl(x, axes, keepdim):
    # m + log sum exp(x - m) with m the max; m = 0 where it is infinite so that all -inf gives -inf
    m = np.maximum.reduce(x, axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, np.zeros((), x.dtype))
    with np.errstate(divide="ignore"):
        out = np.log(np.add.reduce(np.exp(x - m), axis=axes, keepdims=True)) + m
    return out if keepdim else out.reshape(_reduced(x.shape, axes, False))


def _lse_vjp(n, g):
    # d logsumexp(x) = softmax(x) dx = exp(x - logsumexp(x)) dx
    x = n.inputs[0]
    axes, keepdim = n.params["axes"], n.params["keepdim"]
    out = n.out
    if not keepdim:
        kept = _reduced(tuple(x.shape), axes, True)
        out, g = F.reshape(out, kept), F.reshape(g, kept)
    return (F.mul(g, F.exp(F.sub(x, out))),)


logsumexp_p = register(
    "logsumexp", impl=_lse_impl, vjp=_lse_vjp, shape=_max_shape, kind="reduce", save_out=True
)

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
)


def _pad_out(shape, widths):
    return tuple(
        lo + hi + (s + (s - 1) * interior if s else 0)
        for s, (lo, hi, interior) in zip(shape, widths)
    )


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


matmul_p = register("matmul", impl=np.matmul, vjp=_matmul_vjp, shape=_matmul_shape, kind="matmul")

# ---------------------------------------------------------------------------------------------
# Integer indexing: take along one axis, and its transpose scatter_add


def _take_shape(avals, axis):
    x, idx = avals
    s = tuple(x.shape)
    return s[:axis] + tuple(idx.shape) + s[axis + 1 :], x.dtype


def _take_vjp(n, g):
    x, idx = n.inputs
    axis = n.params["axis"]
    return F.scatter_add(F.zeros_like(x), idx, g, axis), None


take_p = register(
    "take",
    impl=lambda x, idx, axis: np.take(x, idx, axis=axis),
    vjp=_take_vjp,
    shape=_take_shape,
    kind="index",
)


def _scatter_add_impl(x, idx, src, axis):
    out = np.array(x, copy=True)
    np.add.at(out, (slice(None),) * axis + (idx,), src)
    return out


def _scatter_add_vjp(n, g):
    _, idx, _ = n.inputs
    axis = n.params["axis"]
    gsrc = F.take(g, idx, axis) if n.needs[2] else None
    return (g if n.needs[0] else None), None, gsrc


scatter_add_p = register(
    "scatter_add",
    impl=_scatter_add_impl,
    vjp=_scatter_add_vjp,
    shape=lambda avals, axis: (tuple(avals[0].shape), avals[0].dtype),
    kind="index",
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
        base = state[0] * _GOLDEN + state[1] * _COUNTER_MUL
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
)
