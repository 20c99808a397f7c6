"""Front-end functions: type promotion, broadcasting and Python scalars, then ``apply``.

These are the ops users call (``jitgrad.add``, ``Tensor.__mul__``, ...) and the ops VJP rules are
written in. Composites (sigmoid, softmax, var, ...) are plain code over primitives.
"""

from __future__ import annotations

import math

import numpy as np

from .. import dtypes
from ..autograd.grad_mode import STATE
from ..factories import ones_like, zeros_like  # noqa: F401  (VJP rules use F.zeros_like)
from ..tensor import Tensor, apply
from . import prims as P
from .shape_ops import (  # noqa: F401  (re-exported: VJP rules and users reach them via F)
    broadcast_shapes,
    broadcast_to,
    cat,
    chunk,
    contiguous,
    expand,
    expand_as,
    flatten,
    gather,
    getitem,
    index_select,
    movedim,
    narrow,
    pad_interior,
    permute,
    reshape,
    scatter_add,
    setitem,
    slice_,
    split,
    squeeze,
    stack,
    sum_to,
    swapaxes,
    take,
    transpose,
    unbind,
    unflatten,
    unsqueeze,
    view,
)

_Number = (int, float, bool)
_const_cache: dict = {}
_const_ids: set = set()  # cached constants live as long as the cache: their ids are stable


def const(value, dtype: dtypes.dtype) -> Tensor:
    """A rank-0 constant tensor (cached: constants are never written)."""
    return _const_np(value, dtype.np)


def _const_np(value, np_dtype) -> Tensor:
    key = (type(value), value, np_dtype)
    if value == 0 and type(value) is float:
        key = ("zero", math.copysign(1.0, value), np_dtype)  # keep -0.0 apart from 0.0
    t = _const_cache.get(key)
    if t is None:
        t = Tensor._wrap(np.array(value, dtype=np_dtype))
        if len(_const_cache) < 4096:
            _const_cache[key] = t
            _const_ids.add(id(t))
    return t


def is_cached_const(t: Tensor) -> bool:
    """Whether ``t`` is one of the shared rank-0 constants made by ``const``."""
    return id(t) in _const_ids


def as_tensor_operand(x) -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, _Number):
        return const(x, dtypes.scalar_dtype(x))
    if isinstance(x, (np.ndarray, np.generic, list, tuple)):
        from ..factories import tensor

        return tensor(x)
    raise TypeError(f"expected a Tensor or a number, got {type(x).__name__}")


def result_type(a, b) -> dtypes.dtype:
    """PyTorch's promotion: tensors with dims > zero-dim tensors > Python numbers (by category)."""
    a_t, b_t = isinstance(a, Tensor), isinstance(b, Tensor)
    if a_t and b_t:
        da, db = a.dtype, b.dtype
        if da is db:
            return da
        a0, b0 = a._data.ndim == 0, b._data.ndim == 0
        if a0 == b0:
            return dtypes.promote(da, db)
        dim_d, zero_d = (db, da) if a0 else (da, db)
        return zero_d if zero_d.category > dim_d.category else dim_d
    if a_t or b_t:
        t, v = (a, b) if a_t else (b, a)
        d = t.dtype
        cat = dtypes.scalar_category(v)
        if cat > d.category:
            return dtypes.get_default_dtype() if cat == 2 else dtypes.int64
        return d
    return dtypes.promote(dtypes.scalar_dtype(a), dtypes.scalar_dtype(b))


def cast(x: Tensor, dtype) -> Tensor:
    dtype = dtypes.as_dtype(dtype)
    if x._data.dtype == dtype.np:
        return x
    return apply(P.cast_p, (x,), {"dtype": dtype})


def _operand(x, dtype: dtypes.dtype) -> Tensor:
    if isinstance(x, Tensor):
        return x if x._data.dtype == dtype.np else apply(P.cast_p, (x,), {"dtype": dtype})
    return const(x, dtype)


def _align(tensors: list) -> tuple:
    """Broadcast operands to one shape with explicit expands (rank-0 constants stay as they are)."""
    shape = None
    same = True
    for t in tensors:
        s = t._data.shape
        if shape is None:
            shape = s
        elif s != shape:
            same = False
    if same:
        return tuple(tensors)
    grad = STATE.grad_enabled
    shape = broadcast_shapes(*[t._data.shape for t in tensors if t._data.ndim or not grad])
    return tuple(
        t
        if t._data.shape == shape or (t._data.ndim == 0 and not (grad and t._requires_grad))
        else broadcast_to(t, shape)
        for t in tensors
    )


def _binary(prim, a, b, dtype=None):
    if dtype is None:
        # fast paths: same-dtype tensors, and a tensor with a Python number that keeps its dtype
        # (a rank-0 constant broadcasts without an expand)
        tb = type(b)
        if isinstance(a, Tensor):
            ad = a._data
            if tb is float or tb is int:
                kind = ad.dtype.kind
                if kind == "f" or (tb is int and kind in "iu"):
                    return apply(prim, (a, _const_np(b, ad.dtype)))
            elif isinstance(b, Tensor) and ad.dtype == b._data.dtype:
                if ad.shape == b._data.shape:
                    return apply(prim, (a, b))
                return apply(prim, _align([a, b]))
        elif tb is Tensor or isinstance(b, Tensor):
            ta = type(a)
            if ta is float or ta is int:
                kind = b._data.dtype.kind
                if kind == "f" or (ta is int and kind in "iu"):
                    return apply(prim, (_const_np(a, b._data.dtype), b))
        dtype = result_type(a, b)
    a, b = _operand(a, dtype), _operand(b, dtype)
    if a._data.shape != b._data.shape:
        a, b = _align([a, b])
    return apply(prim, (a, b))


def _float_dtype(*xs) -> dtypes.dtype:
    d = result_type(*xs) if len(xs) == 2 else xs[0].dtype
    return d if d.is_floating_point else dtypes.get_default_dtype()


def _float(x: Tensor) -> Tensor:
    return x if x._data.dtype.kind == "f" else cast(x, dtypes.get_default_dtype())


# -- elementwise arithmetic ---------------------------------------------------------------------
def add(input, other, *, alpha=1):
    if isinstance(alpha, Tensor) or alpha != 1:
        other = mul(other, alpha)
    return _binary(P.add_p, input, other)


def sub(input, other, *, alpha=1):
    if isinstance(alpha, Tensor) or alpha != 1:
        other = mul(other, alpha)
    return _binary(P.sub_p, input, other)


def rsub(input, other):
    """``other - input`` (what ``1 - x`` dispatches to)."""
    return _binary(P.sub_p, other, input)


def mul(input, other):
    return _binary(P.mul_p, input, other)


def div(input, other, *, rounding_mode=None):
    if rounding_mode is not None:
        if rounding_mode != "floor":
            raise ValueError(f"div: rounding_mode must be None or 'floor', got {rounding_mode!r}")
        return floor_divide(input, other)
    return _binary(P.div_p, input, other, _float_dtype(input, other))


true_divide = divide = div
multiply = mul
subtract = sub


def floor(input):
    return apply(P.floor_p, (input,)) if input.dtype.is_floating_point else input


def floor_divide(input, other):
    return cast(floor(div(input, other)), result_type(input, other))


def remainder(input, other):
    return sub(input, mul(floor_divide(input, other), other))


def pow(input, exponent):  # noqa: A001
    return _binary(P.pow_p, input, exponent)


def neg(input):
    return apply(P.neg_p, (input,))


negative = neg


def _unary_float(prim):
    def op(input):
        return apply(prim, (_float(input),))

    op.__name__ = prim.name
    op.__doc__ = f"Elementwise {prim.name} (integer inputs are promoted to the default float)."
    return op


exp = _unary_float(P.exp_p)
log = _unary_float(P.log_p)
log1p = _unary_float(P.log1p_p)
sin = _unary_float(P.sin_p)
cos = _unary_float(P.cos_p)
tanh = _unary_float(P.tanh_p)
sqrt = _unary_float(P.sqrt_p)


def abs(input):  # noqa: A001
    return apply(P.abs_p, (input,))


def sign(input):
    return apply(P.sign_p, (input,))


def clone(input, *, memory_format=None):
    return apply(P.copy_p, (input,))


def rsqrt(input):
    return div(1.0, sqrt(input))


def reciprocal(input):
    return div(1.0, input)


def square(input):
    return mul(input, input)


def expm1(input):
    return sub(exp(input), 1.0)


def log2(input):
    return div(log(input), math.log(2.0))


def log10(input):
    return div(log(input), math.log(10.0))


def maximum(input, other):
    return _binary(P.maximum_p, input, other)


def minimum(input, other):
    return _binary(P.minimum_p, input, other)


# -- comparisons ----------------------------------------------------------------------------------
def lt(input, other):
    return _binary(P.lt_p, input, other)


def le(input, other):
    return _binary(P.le_p, input, other)


def gt(input, other):
    return _binary(P.lt_p, other, input)


def ge(input, other):
    return _binary(P.le_p, other, input)


def eq(input, other):
    return _binary(P.eq_p, input, other)


def ne(input, other):
    return _binary(P.ne_p, input, other)


less, less_equal, greater, greater_equal, equal_elementwise, not_equal = lt, le, gt, ge, eq, ne


def logical_not(input):
    return eq(input, False if input.dtype is dtypes.bool_ else 0)


def logical_and(input, other):
    return _binary(P.mul_p, ne(input, 0), ne(other, 0), dtypes.bool_)


def logical_or(input, other):
    either = _binary(P.add_p, cast(ne(input, 0), dtypes.int64), cast(ne(other, 0), dtypes.int64))
    return ne(either, 0)


def isnan(input):
    return ne(input, input)


def isinf(input):
    return eq(abs(input), math.inf)


def isfinite(input):
    return logical_not(logical_or(isnan(input), isinf(input)))


def where(condition, input, other):
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


clip = clamp


def lerp(input, end, weight):
    return add(input, mul(weight, sub(end, input)))


def addcmul(input, tensor1, tensor2, *, value=1):
    return add(input, mul(mul(tensor1, tensor2), value))


def addcdiv(input, tensor1, tensor2, *, value=1):
    return add(input, mul(div(tensor1, tensor2), value))


# -- matmul ---------------------------------------------------------------------------------------
def matmul(input, other):
    a, b = input, other
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError(
            f"both arguments to matmul need to be at least 1D, but they are {a.ndim}D and "
            f"{b.ndim}D; use * for scalar multiplication."
        )
    if a._data.dtype != b._data.dtype:
        dtype = result_type(a, b)
        a, b = cast(a, dtype), cast(b, dtype)
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


mm = bmm = matmul


def dot(input, other):
    return matmul(input, other)


def outer(input, other):
    return mul(unsqueeze(input, 1), unsqueeze(other, 0))


from .composites import *  # noqa: E402,F401,F403  (activations and reductions)
from .composites import _axes, all, any, max, min, sum  # noqa: E402,F401,A004

_INTERNAL = {"const", "as_tensor_operand", "is_cached_const", "sum_to", "slice_", "pad_interior"}
# What ``from jitgrad.ops.functions import *`` (and so ``jitgrad``) exports: the ops themselves.
__all__ = sorted(
    name
    for name, value in list(globals().items())
    if not name.startswith("_")
    and name not in _INTERNAL
    and callable(value)
    and getattr(value, "__module__", "")
    in (__name__, "jitgrad.ops.shape_ops", "jitgrad.ops.composites", "jitgrad.ops.indexing")
)
