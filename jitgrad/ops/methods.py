"""Tensor methods and operator sugar, bound from the front-end functions (one definition each).

Every op of the op table (``registry.OPS``) declared as a method becomes ``Tensor.<name>``
(and ``<name>_``, in place, when it says so); the methods here are the ones that are not ops
(``to``, ``where`` with the tensor first, ``T``) and the operators.
"""

from __future__ import annotations

from .. import dtypes
from ..tensor import Tensor, inplace
from . import functions as F
from .registry import OPS


def _to(self: Tensor, *args, **kwargs) -> Tensor:
    """``to(dtype)``, ``to(device)``, ``to(other)``, ``to(device, dtype)``; ``copy=True`` copies."""
    dtype = kwargs.pop("dtype", None)
    device = kwargs.pop("device", None)
    copy = kwargs.pop("copy", False)
    kwargs.pop("non_blocking", None)
    for a in args:
        if isinstance(a, Tensor):
            dtype, device = a.dtype, a.device
        elif isinstance(a, (dtypes.dtype, type)) or (isinstance(a, str) and a in dtypes._BY_NAME):
            dtype = a
        else:
            device = a
    if device is not None and dtypes.device(device).type != "cpu":
        raise RuntimeError(
            f"device {device!r} is not available in this build: jitgrad tensors live on the CPU "
            "for now; keep device='cpu'."
        )
    out = F.cast(self, dtype) if dtype is not None else self
    if copy and out is self:
        out = F.clone(self)
    return out


def _where_method(self, condition, y):
    return F.where(condition, self, y)


def _type_as(self, other):
    return F.cast(self, other.dtype)


def _type(self, dtype=None, non_blocking=False, **kwargs):
    """``type()``: the tensor type's name (``'jitgrad.FloatTensor'``, PyTorch's names under
    jitgrad's); ``type(dtype)``: ``self`` cast to ``dtype`` (a dtype, or a name such as
    ``'jitgrad.HalfTensor'``; ``'torch.HalfTensor'`` is accepted too)."""
    if dtype is None:
        return f"jitgrad.{dtypes.type_name(self.dtype)}Tensor"
    if isinstance(dtype, str):
        found = dtypes._BY_TYPE_NAME.get(dtype.rsplit(".", 1)[-1])
        if found is None or dtype.split(".")[0] not in ("jitgrad", "torch", dtype):
            raise ValueError(f"invalid type: '{dtype}'")
        dtype = found
    return F.cast(self, dtype)


def _T(self):
    return self.permute(tuple(range(self.ndim - 1, -1, -1)))


def _mT(self):
    return F.transpose(self, -2, -1)


def _t(self):
    if self.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {self.ndim}D")
    return F.transpose(self, 0, 1) if self.ndim == 2 else self


def _inplace_method(fn, name: str):
    def method(self, *args, **kwargs):
        return inplace(self, lambda src: fn(src, *args, **kwargs))

    method.__name__ = name + "_"
    return method


def _zero_(self):
    return _fill_(self, 0)


def _fill_(self, value):
    if isinstance(value, Tensor) and value.ndim != 0:
        raise RuntimeError(
            f"fill_ only supports 0-dimension value tensor but got tensor with {value.ndim} "
            "dimensions."
        )
    return _copy_(self, value if isinstance(value, Tensor) else F.const(value, self.dtype))


def _copy_(self, src, non_blocking=False):
    # clone: the written value gets a node of its own even when src is a leaf
    src = F.as_tensor_operand(src)
    return inplace(self, lambda _: F.clone(F.broadcast_to(F.cast(src, self.dtype), self.shape)))


def _rtruediv(self, other):
    # number / tensor is PyTorch's reciprocal() * number, which rounds differently from a
    # division
    if isinstance(other, (bool, int, float)):
        return F.mul(F.reciprocal(self), other)
    return F.div(other, self)


def install() -> None:
    T = Tensor
    for entry in OPS.values():
        if not entry.method:
            continue
        for name in (entry.name, *entry.names):
            setattr(T, name, entry.fn)
            if entry.inplace:
                setattr(T, name + "_", _inplace_method(entry.fn, name))
    T.where = _where_method
    T.type_as = _type_as
    T.to = _to
    T.type = _type  # (the cast methods, .half() ..., are ops: casts.py)
    T.T = property(_T)
    T.mT = property(_mT)
    T.t = _t
    T.__getitem__ = F.getitem
    T.__setitem__ = F.setitem

    T.__add__ = F.add
    T.__radd__ = lambda self, other: F.add(other, self)
    T.__sub__ = F.sub
    T.__rsub__ = F.rsub
    T.__mul__ = F.mul
    T.__rmul__ = lambda self, other: F.mul(other, self)
    T.__truediv__ = F.div
    T.__rtruediv__ = _rtruediv
    T.__floordiv__ = F.floor_divide
    T.__rfloordiv__ = lambda self, other: F.floor_divide(other, self)
    T.__mod__ = F.remainder
    T.__rmod__ = lambda self, other: F.remainder(other, self)
    T.__pow__ = F.pow
    T.__rpow__ = lambda self, other: F.pow(other, self)
    T.__matmul__ = F.matmul
    T.__rmatmul__ = lambda self, other: F.matmul(F.as_tensor_operand(other), self)
    T.__neg__ = F.neg
    T.__pos__ = lambda self: self
    T.__abs__ = F.abs
    T.__lt__ = F.lt
    T.__le__ = F.le
    T.__gt__ = F.gt
    T.__ge__ = F.ge
    T.__eq__ = F.eq
    T.__ne__ = F.ne
    # (on bools the bitwise ops are the logical ones, as in PyTorch)
    T.__and__ = F.bitwise_and
    T.__rand__ = lambda self, other: F.bitwise_and(other, self)
    T.__or__ = F.bitwise_or
    T.__ror__ = lambda self, other: F.bitwise_or(other, self)
    T.__xor__ = F.bitwise_xor
    T.__rxor__ = lambda self, other: F.bitwise_xor(other, self)
    T.__lshift__ = F.bitwise_left_shift
    T.__rlshift__ = lambda self, other: F.bitwise_left_shift(other, self)
    T.__rshift__ = F.bitwise_right_shift
    T.__rrshift__ = lambda self, other: F.bitwise_right_shift(other, self)
    T.__invert__ = F.invert

    T.__iadd__ = T.add_
    T.__isub__ = T.sub_
    T.__imul__ = T.mul_
    T.__itruediv__ = T.div_
    T.__ipow__ = T.pow_
    T.__ifloordiv__ = T.floor_divide_
    T.__imod__ = T.remainder_
    T.__iand__ = T.bitwise_and_
    T.__ior__ = T.bitwise_or_
    T.__ixor__ = T.bitwise_xor_
    T.__ilshift__ = T.bitwise_left_shift_
    T.__irshift__ = T.bitwise_right_shift_
    T.zero_ = _zero_
    T.fill_ = _fill_
    T.copy_ = _copy_
