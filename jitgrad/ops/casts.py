"""The cast methods ``Tensor.half() .bfloat16() .float() .double() .short() .char() .byte()
.int() .long() .bool()``: each ``self.to(dtype)``, an op-table entry (so the shared tests and
the agreement tests cover it)."""

from __future__ import annotations

import numpy as np

from .. import dtypes
from .functions import cast
from .registry import op
from .spec import Spec, arg

S34 = (3, 4)


def _cast_op(name: str, dtype: dtypes.dtype, spec: Spec) -> None:
    def method(self, memory_format=None):
        return cast(self, dtype)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"``self.to(jitgrad.{dtype.name})``."
    op(method, spec=spec, namespace="Tensor", method=True)


def _to(np_dtype, lo=-100.0, hi=100.0, **kw) -> Spec:
    return Spec([arg(*S34, lo=lo, hi=hi)], lambda x: x.astype(np_dtype), **kw)


# (16-bit results have tests of their own: the shared ones compare floats in the input's dtype)
_cast_op("half", dtypes.float16, Spec([arg(*S34)], None))
_cast_op("bfloat16", dtypes.bfloat16, Spec([arg(*S34)], None))
# float32 and float64 inputs, so the result keeps the dtype the shared tests check
_cast_op("float", dtypes.float32, _to(np.float32, dtypes=("float32",)))
_cast_op(
    "double", dtypes.float64, _to(np.float64, dtypes=("float64",), differentiable=(0,), linear=True)
)
_cast_op("short", dtypes.int16, _to(np.int16))
_cast_op("char", dtypes.int8, _to(np.int8))
_cast_op("byte", dtypes.uint8, _to(np.uint8, lo=0.0, hi=250.0))  # (negative floats: undefined)
_cast_op("int", dtypes.int32, _to(np.int32))
_cast_op("long", dtypes.int64, _to(np.int64))
_cast_op("bool", dtypes.bool_, Spec([arg(*S34, kind="int", lo=0, hi=2)], lambda x: x != 0))
