"""The primitives: a small closed set, each declared once with all of its rules and its spec.

An elementwise primitive whose op is the standard front end (promote, broadcast, apply) is one
row, ``unary``/``binary``/``compare``, that declares the primitive and its op together; the
others' ops (``add`` with ``alpha``, ``where``, the reductions' ``dim`` handling) are declared
with ``op`` in ``functions.py`` and ``composites.py``.

Everything else (sigmoid, softmax, cross_entropy, var, ...) is a composite in ``functions.py`` or
``nn/functional.py``; ``linear`` and ``cross_entropy`` also have a fused primitive
(``prims_fused.py``) that eager mode applies in one step and tracing decomposes.

Front-end functions guarantee the invariants the rules below rely on: elementwise inputs share
one dtype (except ``where``'s condition and ``cast``) and have the output's shape, or are rank 0
and do not require grad (a rank-0 constant broadcasts implicitly; anything that needs a gradient
is broadcast by an explicit ``expand``, whose VJP is ``sum_to``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import dtypes
from ..tensor import apply
from . import functions as F
from .frontend import _binary, _float
from .registry import op, register
from .spec import Arg, Spec, arg

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


def _slice_len(start, stop, step):
    return max(0, (stop - start + step - 1) // step)


# ---------------------------------------------------------------------------------------------
# Elementwise rows: the primitive and its op in one declaration

S34 = (3, 4)


def _named(fn: Callable, name: str, doc: str) -> Callable:
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


def unary(name, impl, scalar, vjp, *, spec, floats=False, names=(), inplace=False, **rules):
    """A unary elementwise primitive ``name`` and its op ``jitgrad.name(input)`` (integer inputs
    promoted to the default float when ``floats``); returns (primitive, op)."""
    prim = register(
        name, impl=impl, vjp=vjp, shape=_same, kind="elementwise", scalar=scalar, spec=spec, **rules
    )

    def fn(input):
        return apply(prim, (_float(input),))

    def same_dtype(input):
        return apply(prim, (input,))

    if floats:
        doc = f"Elementwise {name} (integer inputs are promoted to the default float)."
        fn = _named(fn, name, doc)
    else:
        fn = _named(same_dtype, name, f"Elementwise {name}.")
    return prim, op(fn, prim=prim, names=names, inplace=inplace)


def binary(name, impl, scalar, vjp, *, spec, names=(), inplace=False, **rules):
    """A binary elementwise primitive ``name`` and its op ``jitgrad.name(input, other)``
    (PyTorch's type promotion, Python numbers, broadcasting); returns (primitive, op)."""
    prim = register(
        name, impl=impl, vjp=vjp, shape=_same, kind="elementwise", scalar=scalar, spec=spec, **rules
    )

    def fn(input, other):
        return _binary(prim, input, other)

    return prim, op(
        _named(fn, name, f"Elementwise {name}."), prim=prim, names=names, inplace=inplace
    )


def compare(name, impl, symbol, *, spec, names=()):
    """A comparison primitive (``input <symbol> other``, a bool result) and its op."""
    prim = register(
        name,
        impl=impl,
        vjp=None,
        shape=_same_bool,
        kind="elementwise",
        scalar=f"({{0}} {symbol} {{1}})",
        differentiable=False,
        saves=False,
        spec=spec,
    )

    def fn(input, other):
        return _binary(prim, input, other)

    return prim, op(_named(fn, name, f"``input {symbol} other``."), prim=prim, names=names)


def _spec1(ref, *, lo=-2.0, hi=2.0, **kw) -> Spec:
    """The spec of a unary elementwise entry: one (3, 4) input."""
    arg_kw = {k: kw.pop(k) for k in ("away_from", "margin") if k in kw}
    return Spec([arg(*S34, lo=lo, hi=hi, **arg_kw)], ref, differentiable=(0,), **kw)


# -- unary ---------------------------------------------------------------------------------------
neg_p, neg = unary(
    "neg",
    np.negative,
    "(-{0})",
    lambda n, g: (F.neg(g),),
    saves=False,
    names=("negative",),
    inplace=True,
    spec=_spec1(np.negative, linear=True),
)
# d exp(x) = exp(x) dx
exp_p, exp = unary(
    "exp",
    np.exp,
    "math.exp({0})",
    lambda n, g: (F.mul(g, n.out),),
    save_out=True,
    floats=True,
    inplace=True,
    spec=_spec1(np.exp),
)
# d log(x) = dx / x
log_p, log = unary(
    "log",
    np.log,
    "math.log({0})",
    lambda n, g: (F.div(g, n.inputs[0]),),
    floats=True,
    inplace=True,
    spec=_spec1(np.log, lo=0.3, hi=3.0),
)
# d log1p(x) = dx / (1 + x)
log1p_p, log1p = unary(
    "log1p",
    np.log1p,
    "math.log1p({0})",
    lambda n, g: (F.div(g, F.add(n.inputs[0], 1.0)),),
    floats=True,
    spec=_spec1(np.log1p, lo=-0.6, hi=3.0),
)
sin_p, sin = unary(
    "sin",
    np.sin,
    "math.sin({0})",
    lambda n, g: (F.mul(g, F.cos(n.inputs[0])),),
    floats=True,
    spec=_spec1(np.sin),
)
cos_p, cos = unary(
    "cos",
    np.cos,
    "math.cos({0})",
    lambda n, g: (F.neg(F.mul(g, F.sin(n.inputs[0]))),),
    floats=True,
    spec=_spec1(np.cos),
)
# d tanh(x) = (1 - tanh(x)^2) dx
tanh_p, tanh = unary(
    "tanh",
    np.tanh,
    "math.tanh({0})",
    lambda n, g: (apply(tanh_backward_p, (g, n.out)),),
    save_out=True,
    saves=False,
    floats=True,
    inplace=True,
    spec=_spec1(np.tanh),
)
# d sqrt(x) = dx / (2 sqrt(x))
sqrt_p, sqrt = unary(
    "sqrt",
    np.sqrt,
    "math.sqrt({0})",
    lambda n, g: (F.div(g, F.mul(n.out, 2.0)),),
    save_out=True,
    floats=True,
    inplace=True,
    spec=_spec1(np.sqrt, lo=0.3, hi=3.0),
)
abs_p, abs = unary(  # noqa: A001
    "abs",
    np.abs,
    "abs({0})",
    lambda n, g: (F.mul(g, F.sign(n.inputs[0])),),
    inplace=True,
    spec=_spec1(np.abs, away_from=(0.0,), smooth=False),
)


def _sign_impl(x):
    # PyTorch's sign(NaN) is 0 (NumPy's is NaN), as the compiled template's comparisons give
    out = np.sign(x)
    if dtypes.is_float_np(out.dtype):
        out = np.where(out != out, out.dtype.type(0), out)
    return out


# sign is piecewise constant: PyTorch gives it a zero gradient rather than none.
sign_p, sign = unary(
    "sign",
    _sign_impl,
    "(1.0 if {0} > 0 else (-1.0 if {0} < 0 else 0.0))",
    lambda n, g: (F.zeros_like(g),),
    saves=False,
    spec=_spec1(np.sign, away_from=(0.0,), smooth=False),
)
# floor is piecewise constant: zero gradient, as in PyTorch. (Its op, which passes integers
# through, is in functions.py.)
floor_p = register(
    "floor",
    impl=np.floor,
    vjp=lambda n, g: (F.zeros_like(g),),
    shape=_same,
    kind="elementwise",
    scalar="math.floor({0})",
    saves=False,
    spec=_spec1(np.floor, away_from=(-2.0, -1.0, 0.0, 1.0, 2.0), margin=0.05, smooth=False),
)
# Identity copy (clone, contiguous): a fresh C-ordered buffer with the same values (np.array's
# default order "K" kept a permuted layout, so contiguous() returned non-contiguous tensors).
copy_p = register(
    "copy",
    impl=lambda x: np.array(x, order="C"),
    vjp=lambda n, g: (g,),
    shape=_same,
    kind="elementwise",
    scalar="{0}",
    saves=False,
    spec=_spec1(lambda x: x.copy(), linear=True),
)


def _cast_impl(x, dtype):
    if dtype.itemsize == 2 and dtype.is_floating_point:
        with np.errstate(over="ignore"):  # (out-of-range values become inf, silently)
            return dtypes.astype(x, dtype.np)
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
        "int16": "np.int16({0})",
        "int8": "np.int8({0})",
        "uint8": "np.uint8({0})",
        "uint64": "np.uint64({0})",
        "bool": "({0} != 0)",
    }[dtype.name],
    saves=False,
    # float64 -> float64 keeps finite differences exact; dtype changes are tested elsewhere
    spec=Spec(
        [arg(*S34)],
        lambda x, dtype: x.astype(dtype.np),
        params={"dtype": dtypes.float64},
        differentiable=(0,),
        linear=True,
    ),
)

# -- binary and ternary ----------------------------------------------------------------------------


def _spec2(ref, first: Arg | None = None, second: Arg | None = None, **kw) -> Spec:
    """The spec of a binary elementwise entry: two (3, 4) inputs, both differentiable."""
    return Spec([first or arg(*S34), second or arg(*S34)], ref, differentiable=(0, 1), **kw)


# (add's and sub's ops take ``alpha``: they are in functions.py)
add_p = register(
    "add",
    impl=np.add,
    vjp=lambda n, g: (g, g),
    shape=_same,
    kind="elementwise",
    scalar="({0} + {1})",
    saves=False,
    spec=_spec2(np.add, linear=True),
)
sub_p = register(
    "sub",
    impl=np.subtract,
    vjp=lambda n, g: (g, F.neg(g)),
    shape=_same,
    kind="elementwise",
    scalar="({0} - {1})",
    saves=False,
    spec=_spec2(np.subtract, linear=True),
)


def _mul_vjp(n, g):
    x, y = n.inputs
    return (F.mul(g, y) if n.needs[0] else None, F.mul(g, x) if n.needs[1] else None)


mul_p, mul = binary(
    "mul",
    np.multiply,
    "({0} * {1})",
    _mul_vjp,
    names=("multiply",),
    inplace=True,
    spec=_spec2(np.multiply),
)


def _div_vjp(n, g):
    # d(x/y) = dx / y - x dy / y^2
    x, y = n.inputs
    gx = F.div(g, y) if n.needs[0] else None
    gy = F.neg(F.div(F.mul(g, x), F.mul(y, y))) if n.needs[1] else None
    return gx, gy


# (div's op takes ``rounding_mode`` and promotes integers to floats: it is in functions.py)
div_p = register(
    "div",
    impl=np.true_divide,
    vjp=_div_vjp,
    shape=_same,
    kind="elementwise",
    scalar="({0} / {1})",
    spec=_spec2(np.true_divide, second=arg(*S34, lo=0.5, hi=2.0)),
)


def _pow_vjp(n, g):
    # d x^y = y x^(y-1) dx + x^y log(x) dy; PyTorch zeroes the terms that would be 0 * inf.
    x, y = n.inputs
    gx = gy = None
    if n.needs[0]:
        gx = F.where(F.eq(y, 0.0), 0.0, F.mul(F.mul(g, y), F.pow(x, F.sub(y, 1.0))))
    if n.needs[1]:
        gy = F.where(F.eq(x, 0.0), 0.0, F.mul(F.mul(g, n.out), F.log(x)))
    return gx, gy


pow_p, pow = binary(  # noqa: A001
    "pow",
    np.power,
    "({0} ** {1})",
    _pow_vjp,
    save_out=True,
    inplace=True,
    spec=_spec2(np.power, arg(*S34, lo=0.5, hi=2.0), arg(*S34, lo=-1.5, hi=2.5)),
)


def _minmax_vjp(pick):
    # The larger (smaller) input takes the gradient; ties split it evenly, as in PyTorch.
    def vjp(n, g):
        x, y = n.inputs
        share = F.add(F.cast(pick(x, y), g.dtype), F.mul(F.cast(F.eq(x, y), g.dtype), 0.5))
        gx = F.mul(g, share) if n.needs[0] else None
        gy = F.mul(g, F.rsub(share, 1.0)) if n.needs[1] else None
        return gx, gy

    return vjp


maximum_p, maximum = binary(
    "maximum",
    np.maximum,
    "max({0}, {1})",
    _minmax_vjp(lambda x, y: F.gt(x, y)),
    spec=_spec2(np.maximum, smooth=False),
)
minimum_p, minimum = binary(
    "minimum",
    np.minimum,
    "min({0}, {1})",
    _minmax_vjp(lambda x, y: F.lt(x, y)),
    spec=_spec2(np.minimum, smooth=False),
)

_INTS = arg(*S34, kind="int", lo=0, hi=3)
lt_p, lt = compare("lt", np.less, "<", names=("less",), spec=Spec([arg(*S34), arg(*S34)], np.less))
le_p, le = compare(
    "le",
    np.less_equal,
    "<=",
    names=("less_equal",),
    spec=Spec([arg(*S34), arg(*S34)], np.less_equal),
)
eq_p, eq = compare(
    "eq", np.equal, "==", names=("equal_elementwise",), spec=Spec([_INTS, _INTS], np.equal)
)
ne_p, ne = compare(
    "ne", np.not_equal, "!=", names=("not_equal",), spec=Spec([_INTS, _INTS], np.not_equal)
)


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


# (its op, which promotes and broadcasts all three, is in functions.py)
where_p = register(
    "where",
    impl=_where_impl,
    vjp=_where_vjp,
    shape=_where_shape,
    kind="elementwise",
    scalar="({1} if {0} else {2})",
    spec=Spec(
        [arg(*S34, kind="bool"), arg(*S34), arg(*S34)],
        np.where,
        differentiable=(1, 2),
        linear=True,
    ),
)

# The reductions, the movement, matmul, indexing and random primitives, and the fused ones,
# live next door (one registry, four files).
from .prims_activation import *  # noqa: E402,F401,F403
from .prims_activation import tanh_backward_p  # noqa: E402  (tanh's VJP)
from .prims_fused import *  # noqa: E402,F401,F403
from .prims_layout import *  # noqa: E402,F401,F403
from .prims_reduce import *  # noqa: E402,F401,F403
from .prims_scan import *  # noqa: E402,F401,F403
