"""Front-end functions: the ops users call (``jitgrad.add``, ``Tensor.__mul__``, ...) and the
ops VJP rules are written in, each an entry of the op table (``registry.op``).

This module is the namespace of every op (``F.exp``, ``F.reshape``, ...): the elementwise rows
(``prims.py``), the ops declared here, the composites (``composites.py``), movement and indexing
(``shape_ops.py``, ``indexing.py``). Composites (sigmoid, softmax, var, ...) are plain code over
primitives.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..factories import ones_like, zeros_like  # noqa: F401  (VJP rules use F.zeros_like)
from ..tensor import Tensor, apply
from . import frontend  # noqa: F401  (first: it loads the primitives, whose rows use it)
from . import prims as P
from .frontend import (  # noqa: F401  (re-exported: VJP rules and other modules reach them via F)
    _align,
    _binary,
    _const_np,
    _float,
    _float_dtype,
    _operand,
    as_tensor_operand,
    const,
    is_cached_const,
    result_type,
)
from .prims import eq, lt, mul, ne, sqrt  # noqa: A004  (rows this module calls)
from .registry import export, op
from .shape_ops import (  # noqa: F401  (internal helpers VJP rules reach via F)
    broadcast_shapes,
    broadcast_to,
    pad_interior,
    reshape,
    slice_,
    squeeze,
    sum_to,
    unsqueeze,
)
from .spec import Spec, arg

S34 = (3, 4)


def _s(*args, ref, d=None, **kw) -> Spec:
    """A spec over (3, 4) inputs: an ``Arg`` given as a dict of its options, or a constant."""
    args = [arg(*S34, **a) if isinstance(a, dict) else a for a in args]
    if d is None:
        d = tuple(range(len(args)))
    return Spec(args, ref, differentiable=d, **kw)


@op(prim=P.cast_p, method=False)
def cast(x: Tensor, dtype) -> Tensor:
    dtype = dtypes.as_dtype(dtype)
    if x._data.dtype == dtype.np:
        return x
    return apply(P.cast_p, (x,), {"dtype": dtype})


# -- elementwise arithmetic ---------------------------------------------------------------------
@op(prim=P.add_p, inplace=True)
def add(input, other, *, alpha=1):
    if isinstance(alpha, Tensor) or alpha != 1:
        other = mul(other, alpha)
    return _binary(P.add_p, input, other)


@op(prim=P.sub_p, names=("subtract",), inplace=True)
def sub(input, other, *, alpha=1):
    if isinstance(alpha, Tensor) or alpha != 1:
        other = mul(other, alpha)
    return _binary(P.sub_p, input, other)


@op(spec=_s({}, {}, ref=lambda x, y: y - x, linear=True), method=False)
def rsub(input, other):
    """``other - input`` (what ``1 - x`` dispatches to)."""
    return _binary(P.sub_p, other, input)


@op(prim=P.div_p, names=("true_divide", "divide"), inplace=True)
def div(input, other, *, rounding_mode=None):
    if rounding_mode is not None:
        from .elementwise_division import div_rounded

        return div_rounded(input, other, rounding_mode)
    return _binary(P.div_p, input, other, _float_dtype(input, other))


@op(prim=P.floor_p, inplace=True)
def floor(input):
    if input.dtype is dtypes.bool_:
        raise NotImplementedError("\"floor_vml_cpu\" not implemented for 'Bool'")
    return apply(P.floor_p, (input,)) if input.dtype.is_floating_point else input


@op(prim=P.copy_p)
def clone(input, *, memory_format=None):
    return apply(P.copy_p, (input,))


@op(spec=_s({"lo": 0.3, "hi": 3.0}, ref=lambda x: 1.0 / np.sqrt(x)))
def rsqrt(input):
    return div(1.0, sqrt(input))


@op(spec=_s({"lo": 0.5, "hi": 2.0}, ref=np.reciprocal))
def reciprocal(input):
    return div(1.0, input)


@op(spec=_s({}, ref=np.square))
def square(input):
    return mul(input, input)


# -- comparisons ----------------------------------------------------------------------------------
@op(spec=_s({}, {}, ref=np.greater, d=()), names=("greater",))
def gt(input, other):
    return _binary(P.lt_p, other, input)


@op(spec=_s({}, {}, ref=np.greater_equal, d=()), names=("greater_equal",))
def ge(input, other):
    return _binary(P.le_p, other, input)


_BOOLS = {"kind": "bool"}


@op(spec=_s(_BOOLS, ref=np.logical_not, d=()))
def logical_not(input):
    return eq(input, False if input.dtype is dtypes.bool_ else 0)


@op(spec=_s(_BOOLS, _BOOLS, ref=np.logical_and, d=()))
def logical_and(input, other):
    return _binary(P.mul_p, ne(input, 0), ne(other, 0), dtypes.bool_)


@op(spec=_s(_BOOLS, _BOOLS, ref=np.logical_or, d=()))
def logical_or(input, other):
    either = _binary(P.add_p, cast(ne(input, 0), dtypes.int64), cast(ne(other, 0), dtypes.int64))
    return ne(either, 0)


@op(prim=P.where_p, method=False)  # (Tensor.where(condition, other) is methods.py's)
def where(condition, input=None, other=None):
    if input is None and other is None:  # where(condition): nonzero(condition, as_tuple=True)
        from .scatter_ops import nonzero

        return nonzero(as_tensor_operand(condition), as_tuple=True)
    if type(condition) is Tensor and condition._data.dtype == np.bool_:
        fast = _where_operands(condition._data.shape, input, other)
        if fast is not None:
            return apply(P.where_p, (condition, *fast))
    condition = as_tensor_operand(condition)
    if condition.dtype is not dtypes.bool_:
        condition = ne(condition, 0)
    dtype = result_type(input, other)
    a, b = _operand(input, dtype), _operand(other, dtype)
    c, a, b = _align([condition, a, b])
    return apply(P.where_p, (c, a, b))


def _where_operands(shape: tuple, a, b):
    """``where``'s operands as they are when they need no promotion and no broadcast: two
    tensors of ``shape`` and one dtype, or one such tensor and a Python number that keeps its
    dtype (a rank-0 constant). None otherwise."""
    ta, tb = type(a) is Tensor, type(b) is Tensor
    if ta and tb:
        same = a._data.shape == shape == b._data.shape and a._data.dtype == b._data.dtype
        return (a, b) if same else None
    if ta == tb:
        return None
    t, n = (a, b) if ta else (b, a)
    kind = t._data.dtype.kind
    if t._data.shape != shape or not (
        (type(n) is float and kind == "f") or (type(n) is int and kind in "fiu")
    ):
        return None
    c = _const_np(n, t._data.dtype)
    return (t, c) if ta else (c, t)


@op(
    spec=_s(
        {"away_from": (-0.5, 0.5)},
        ref=lambda x, min, max: np.clip(x, min, max),
        params={"min": -0.5, "max": 0.5},
        smooth=False,
    ),
    names=("clip",),
    inplace=True,
)
def clamp(input, min=None, max=None):  # noqa: A002,F811
    # Gradient passes where min <= x <= max (inclusive), like PyTorch.
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    out = input
    if min is not None:
        out = where(lt(out, min), min, out)
    if max is not None:
        out = where(gt(out, max), max, out)
    # the result type covers both bounds: int_tensor.clamp(0, 3.5) is float32
    dtype = result_type(input, min if min is not None else max)
    if min is not None and max is not None:
        dtype = dtypes.promote(dtype, result_type(input, max))
    return cast(out, dtype)


# -- matmul ---------------------------------------------------------------------------------------
# (a batch of matrices times one matrix: the front end broadcasts the batch)
@op(spec=Spec([arg(2, 3, 4), arg(4, 5)], np.matmul, differentiable=(0, 1)), names=("mm", "bmm"))
def matmul(input, other):
    a, b = input, other
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError(
            f"both arguments to matmul need to be at least 1D, but they are {a.ndim}D and "
            f"{b.ndim}D; use * for scalar multiplication."
        )
    if a._data.dtype != b._data.dtype:
        raise RuntimeError(_matmul_dtype_error(a.dtype, b.dtype, a.ndim, b.ndim))
    a_vec, b_vec = a.ndim == 1, b.ndim == 1
    if a_vec:
        a = reshape(a, (1, a.shape[0]))
    if b_vec:
        b = reshape(b, (b.shape[0], 1))
    if a.shape[-1] != b.shape[-2]:
        if a.ndim == 2 and b.ndim == 2:
            raise RuntimeError(
                f"mat1 and mat2 shapes cannot be multiplied ({a.shape[0]}x{a.shape[1]} and "
                f"{b.shape[0]}x{b.shape[1]}): the inner dimensions must agree."
            )
        raise RuntimeError(
            f"matmul: shapes {list(input.shape)} and {list(other.shape)} cannot be multiplied: "
            f"the last dimension of the first ({a.shape[-1]}) must equal the second-to-last of "
            f"the second ({b.shape[-2]})."
        )
    if a.ndim > 2 and b.ndim == 2:
        # a batch of matrices times one matrix is one product of all their rows (as PyTorch
        # folds it): no copy of ``b`` per batch element, and its gradient is one product too
        rows = reshape(a, (-1, a.shape[-1]))
        out = reshape(apply(P.matmul_p, (rows, b)), a.shape[:-1] + (b.shape[-1],))
        return squeeze(out, -1) if b_vec else out
    if a.ndim != b.ndim or a._data.shape[:-2] != b._data.shape[:-2]:
        batch = broadcast_shapes(a._data.shape[:-2], b._data.shape[:-2])
        a = broadcast_to(a, batch + a._data.shape[-2:])
        b = broadcast_to(b, batch + b._data.shape[-2:])
    out = apply(P.matmul_p, (a, b))
    if a_vec and b_vec:
        return reshape(out, ())
    if a_vec:
        return squeeze(out, -2)
    if b_vec:
        return squeeze(out, -1)
    return out


# PyTorch's names of dtypes in its errors: C++'s ("float != double") and its type names'
_C_NAMES = {
    "float32": "float",
    "float64": "double",
    "float16": "c10::Half",
    "bfloat16": "c10::BFloat16",
    "int64": "long int",
    "int32": "int",
    "int16": "short int",
    "int8": "signed char",
    "uint8": "unsigned char",
    "bool": "bool",
}


def _type_name(d) -> str:
    from .elementwise import TYPE_NAMES

    return TYPE_NAMES[d.name]


def _matmul_dtype_error(da, db, na: int, nb: int) -> str:
    """PyTorch's error for operands of two dtypes (it never promotes them): worded by the
    kernel its matmul dispatches to (dot, mv, mm or bmm)."""
    if nb == 1 and na == 1:
        return (
            "dot : expected both vectors to have same dtype, but found "
            f"{_type_name(da)} and {_type_name(db)}"
        )
    if nb == 1:
        return (
            "addmv input tensors must have the same dtype, but got "
            f"{_type_name(db)}, {_type_name(da)}, and {_type_name(db)}"
        )
    if nb == 2:
        return (
            "expected m1 and m2 to have the same dtype, but got: "
            f"{_C_NAMES[da.name]} != {_C_NAMES[db.name]}"
        )
    return f"expected scalar type {_type_name(da)} but found {_type_name(db)}"


@op(spec=Spec([arg(3), arg(4)], np.outer, differentiable=(0, 1)), names=("ger",))
def outer(input, other):
    for name, x in (("self", input), ("vec2", other)):
        if x.ndim != 1:
            raise RuntimeError(f"outer: Expected 1-D argument {name}, but got {x.ndim}-D")
    return mul(unsqueeze(input, 1), unsqueeze(other, 0))


# (the ops come in with the table, below)
# (contractions: tensordot, addmm, cdist, ...; einsums; linalg: det, inverse, ... in jitgrad)
from . import (  # noqa: E402,F401
    casts,  # noqa: E402,F401  (Tensor.half(), .char(), ...)
    contractions,
    einsums,
    linalg,
    scatter_ops,
    shapes,
)
from .bitwise import invert  # noqa: E402,F401  (the ~ operator)
from .composites import MaxResult, MinResult, _axes  # noqa: E402,F401
from .elementwise import erf  # noqa: E402,F401
from .elementwise_composites import isinf, isnan  # noqa: E402,F401
from .elementwise_division import floor_divide, remainder  # noqa: E402,F401
from .indexing import scatter_add_axis, setitem, take_axis  # noqa: E402,F401
from .ordering import (  # noqa: E402,F401
    CummaxResult,
    CumminResult,
    KthvalueResult,
    MedianResult,
    ModeResult,
    NanmedianResult,
    SortResult,
    TopkResult,
)
from .statistics import AminmaxResult  # noqa: E402,F401


def _exports() -> list:
    """Every ``jitgrad`` op's public names (``jitgrad.X``), bound here too: each op is
    reachable as ``F.X`` wherever it is declared."""
    return export("jitgrad", globals())


# What ``from jitgrad.ops.functions import *`` (and so ``jitgrad``) exports: the ops, and a few
# helpers that are not ops.
__all__ = sorted(
    _exports() + ["broadcast_shapes", "result_type", "setitem", "MaxResult", "MinResult"]
)
