"""The front end's shared steps: constants, PyTorch's type promotion and broadcasting.

Ops (``functions.py``, the elementwise rows of ``prims.py``) promote their operands, wrap Python
numbers as rank-0 constants and broadcast with explicit expands here before ``apply``.
"""

from __future__ import annotations

import math

import numpy as np

from .. import dtypes
from ..autograd.grad_mode import STATE
from ..tensor import Tensor, apply

_Number = (int, float, bool)
_HALF_NP = (np.dtype(np.float16), dtypes.BFLOAT16_NP)
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
        try:
            arr = (
                dtypes.astype(value, np_dtype)
                if np_dtype in _HALF_NP
                else np.array(value, np_dtype)
            )
        except OverflowError:  # PyTorch wraps a Python int around to an integer tensor's dtype
            arr = np.array(value & ((1 << 8 * np_dtype.itemsize) - 1), np.uint64).astype(np_dtype)
        t = Tensor._wrap(arr)
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
                if (kind == "f" and ad.itemsize > 2) or (tb is int and kind in "iu"):
                    return apply(prim, (a, _const_np(b, ad.dtype)))
            elif isinstance(b, Tensor) and ad.dtype == b._data.dtype:
                if ad.shape == b._data.shape:
                    return apply(prim, (a, b))
                return apply(prim, _align([a, b]))
        elif tb is Tensor or isinstance(b, Tensor):
            ta = type(a)
            if ta is float or ta is int:
                kind = b._data.dtype.kind
                if (kind == "f" and b._data.itemsize > 2) or (ta is int and kind in "iu"):
                    return apply(prim, (_const_np(a, b._data.dtype), b))
        dtype = result_type(a, b)
    if prim in _SCALES and dtype in _HALVES and (_number_like(a, dtype) or _number_like(b, dtype)):
        return _half_with_number(prim, a, b, dtype)
    a, b = _operand(a, dtype), _operand(b, dtype)
    if a._data.shape != b._data.shape:
        a, b = _align([a, b])
    return apply(prim, (a, b))


_HALVES = (dtypes.float16, dtypes.bfloat16)


def _number_like(x, dtype) -> bool:
    """A Python number, or a rank-0 tensor of another dtype: PyTorch's CPU mul and div kernels
    read such an operand of a 16-bit float op as a float32 scalar, without rounding it to the
    tensor's dtype first (its other kernels round it: x + 0.1 adds float16(0.1))."""
    if isinstance(x, Tensor):
        return x._data.ndim == 0 and x.dtype is not dtype
    return True


def _half_with_number(prim, a, b, dtype):
    """A 16-bit float op with a number computed in float32 and rounded once (``x * 1.1`` in
    float16 is float16(float32(x) * float32(1.1)), as in PyTorch)."""
    f32 = dtypes.float32
    out = _binary(
        prim,
        _operand(a, f32) if isinstance(a, Tensor) else a,
        _operand(b, f32) if isinstance(b, Tensor) else b,
        f32,
    )
    return apply(P.cast_p, (out,), {"dtype": dtype}) if out.dtype is f32 else out


def _float_dtype(*xs) -> dtypes.dtype:
    d = result_type(*xs) if len(xs) == 2 else xs[0].dtype
    return d if d.is_floating_point else dtypes.get_default_dtype()


def _float(x: Tensor) -> Tensor:
    if dtypes.is_float_np(x._data.dtype):
        return x
    return apply(P.cast_p, (x,), {"dtype": dtypes.get_default_dtype()})


# (imported last: both import this module)
from . import prims as P  # noqa: E402

_SCALES = (P.mul_p, P.div_p)  # (the prims whose scalar operand PyTorch keeps in float32)
from .shape_ops import broadcast_shapes, broadcast_to  # noqa: E402
