"""The primitives: a small closed set, each declared once with all of its rules.

Everything else (sigmoid, softmax, cross_entropy, var, ...) is a composite in ``functions.py`` or
``nn/functional.py``; ``linear`` and ``cross_entropy`` also have a fused primitive
(``prims_fused.py``) that eager mode applies in one step and tracing decomposes.

Front-end functions guarantee the invariants the rules below rely on: elementwise inputs share
one dtype (except ``where``'s condition and ``cast``) and have the output's shape, or are rank 0
and do not require grad (a rank-0 constant broadcasts implicitly; anything that needs a gradient
is broadcast by an explicit ``expand``, whose VJP is ``sum_to``).
"""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..tensor import apply
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


def _sign_impl(x):
    # PyTorch's sign(NaN) is 0 (NumPy's is NaN), as the compiled template's comparisons give
    out = np.sign(x)
    if out.dtype.kind == "f":
        out = np.where(out != out, out.dtype.type(0), out)
    return out


# sign is piecewise constant: PyTorch gives it a zero gradient rather than none.
sign_p = _unary(
    "sign",
    _sign_impl,
    "(1.0 if {0} > 0 else (-1.0 if {0} < 0 else 0.0))",
    lambda n, g: (F.zeros_like(g),),
    saves=False,
)
# floor is piecewise constant: zero gradient, as in PyTorch.
floor_p = _unary("floor", np.floor, "math.floor({0})", lambda n, g: (F.zeros_like(g),), saves=False)
# Identity copy (clone, contiguous): a fresh C-ordered buffer with the same values (np.array's
# default order "K" kept a permuted layout, so contiguous() returned non-contiguous tensors).
copy_p = _unary("copy", lambda x: np.array(x, order="C"), "{0}", lambda n, g: (g,), saves=False)


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


_INT_OF_SIZE = {4: np.dtype(np.int32), 8: np.dtype(np.int64)}


def _where_impl(c, a, b):
    # where(c, 0, x) and where(c, x, 0) (relu and its gradient, masking) as bit operations:
    # np.where branches per element, which costs twice as much on an unpredictable mask. The
    # bits are the same: +0.0 is all zero bits, so x & (all ones where x is kept) selects.
    for zero, x, keep_on in ((a, b, False), (b, a, True)):
        if (
            zero.ndim == 0
            and x.size >= 1024
            and x.shape == c.shape
            and x.dtype == zero.dtype
            and x.dtype.itemsize in _INT_OF_SIZE
            and x.dtype.kind == "f"
            and zero.tobytes() == bytes(zero.dtype.itemsize)
        ):
            it = _INT_OF_SIZE[x.dtype.itemsize]
            mask = c.astype(it)  # 1 where c, 0 elsewhere
            if keep_on:
                np.negative(mask, out=mask)  # all ones where c
            else:
                mask -= 1  # all ones where not c
            np.bitwise_and(mask, x.view(it), out=mask)
            return mask.view(x.dtype)
    return np.where(c, a, b)


def _where_vjp(n, g):
    # the incoming gradient has the output's shape, so the rank-0 zero needs no expand
    c = n.inputs[0]
    zero = F._const_np(0, g._data.dtype)
    ga = apply(where_p, (c, g, zero)) if n.needs[1] else None
    gb = apply(where_p, (c, zero, g)) if n.needs[2] else None
    return None, ga, gb


where_p = register(
    "where",
    impl=_where_impl,
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
    if np.isfinite(m).all():  # every sum is then at least 1: no log of 0 to silence
        out = np.log(np.add.reduce(np.exp(x - m), axis=axes, keepdims=True)) + m
    else:
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


# The movement, matmul, indexing and random primitives, and the fused ones, live next door (one
# registry, three files).
from .prims_fused import *  # noqa: E402,F401,F403
from .prims_layout import *  # noqa: E402,F401,F403
