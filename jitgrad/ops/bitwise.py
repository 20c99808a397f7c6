"""Bitwise ops on integer and bool tensors: ``bitwise_and/or/xor/not`` and the shifts, each a
primitive and its op (and the operators ``& | ^ ~ << >>``, see ``methods.py``). They are not
differentiable. Floating-point operands raise PyTorch's ``NotImplementedError``.

Shifts follow PyTorch, not C: a left shift by a negative amount or by the type's width or more
gives 0; such a right shift gives the sign fill (0, or -1 for negative signed values).
"""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..tensor import Tensor, apply
from .frontend import _align, _operand, const, result_type
from .prims import _same, eq_p
from .registry import op, register
from .spec import Spec, arg

S34 = (3, 4)


def _ints(dtype: str = "int64", lo: int = -50, hi: int = 50):
    return arg(*S34, kind="int", lo=lo, hi=hi, dtype=dtype)


def _integral(dtype: dtypes.dtype, kernel: str, bools: bool = True) -> None:
    if dtype.is_floating_point or (not bools and dtype is dtypes.bool_):
        raise NotImplementedError(
            f"\"{kernel}_cpu\" not implemented for '{dtypes.type_name(dtype)}'; this op takes "
            f"integer{' or bool' if bools else ''} tensors: convert with .long() or .int() first"
        )


def _operands(input, other, kernel: str, bools: bool = True) -> tuple:
    """Both operands in their promoted integer dtype, broadcast to one shape."""
    dtype = result_type(input, other)
    _integral(dtype, kernel, bools)
    a, b = _operand(input, dtype), _operand(other, dtype)
    if a._data.shape != b._data.shape:
        a, b = _align([a, b])
    return a, b, dtype


def _bitwise(name: str, impl, symbol: str, ref, spec_dtype: str):
    return register(
        name,
        impl=impl,
        vjp=None,
        shape=_same,
        kind="elementwise",
        scalar=f"({{0}} {symbol} {{1}})",
        differentiable=False,
        saves=False,
        spec=Spec([_ints(spec_dtype), _ints(spec_dtype)], ref),
    )


bitwise_and_p = _bitwise("bitwise_and", np.bitwise_and, "&", np.bitwise_and, "int16")
bitwise_or_p = _bitwise("bitwise_or", np.bitwise_or, "|", np.bitwise_or, "int8")
bitwise_xor_p = _bitwise("bitwise_xor", np.bitwise_xor, "^", np.bitwise_xor, "uint8")
bitwise_not_p = register(
    "bitwise_not",
    impl=np.invert,
    vjp=None,
    shape=_same,
    kind="elementwise",
    scalar="(~{0})",  # (integers only: bool inputs take logical_not, Python's ~True is -2)
    differentiable=False,
    saves=False,
    spec=Spec([_ints("int8")], np.invert),
)


def _left_shift_impl(x, s, bits):
    ok = (s >= 0) & (s < bits)
    shifted = np.left_shift(x, np.where(ok, s, 0).astype(x.dtype))
    return np.where(ok, shifted, x.dtype.type(0))


def _right_shift_impl(x, s, bits):
    ok = (s >= 0) & (s < bits)
    if x.dtype.kind == "u":
        return np.where(ok, np.right_shift(x, np.where(ok, s, 0).astype(x.dtype)), x.dtype.type(0))
    # out of range: shift by width - 1, the sign fill
    return np.right_shift(x, np.where(ok, s, bits - 1).astype(x.dtype))


def _left_shift_scalar(bits):
    # ``{0} - {0}``: a zero of the shifted value's own Numba type (a literal 0 would mix int64
    # into uint64 arithmetic, which Numba computes in float64)
    return f"(({{0}} << {{1}}) if 0 <= {{1}} < {bits} else ({{0}} - {{0}}))"


def _right_shift_scalar(bits, signed):
    if signed:
        return f"({{0}} >> ({{1}} if 0 <= {{1}} < {bits} else {bits - 1}))"
    return f"(({{0}} >> {{1}}) if {{1}} < {bits} else ({{0}} - {{0}}))"


def _int64_ref(x, s, fn):
    return np.array([fn(int(a), int(b)) for a, b in zip(x.flat, s.flat)], np.int64).reshape(x.shape)


_SHIFTS = _ints(lo=-3, hi=70)
bitwise_left_shift_p = register(
    "bitwise_left_shift",
    impl=_left_shift_impl,
    vjp=None,
    shape=_same,
    kind="elementwise",
    scalar=_left_shift_scalar,
    differentiable=False,
    saves=False,
    spec=Spec(
        [_ints(), _SHIFTS],
        lambda x, s, bits: _int64_ref(
            x, s, lambda a, b: ((a << b) + 2**63) % 2**64 - 2**63 if 0 <= b < 64 else 0
        ),
        params={"bits": 64},
    ),
)
bitwise_right_shift_p = register(
    "bitwise_right_shift",
    impl=lambda x, s, bits, signed: _right_shift_impl(x, s, bits),
    vjp=None,
    shape=_same,
    kind="elementwise",
    scalar=_right_shift_scalar,
    differentiable=False,
    saves=False,
    spec=Spec(
        [_ints(), _SHIFTS],
        lambda x, s, bits, signed: _int64_ref(
            x, s, lambda a, b: a >> min(b, 63) if b >= 0 else (-1 if a < 0 else 0)
        ),
        params={"bits": 64, "signed": True},
    ),
)


# -- the ops ------------------------------------------------------------------------------------
def _spec2(dtype_a: str, dtype_b: str, ref) -> Spec:
    return Spec([_ints(dtype_a), _ints(dtype_b)], ref)


def _bools_or_ints(ref) -> Spec:
    return Spec([arg(*S34, kind="bool"), _ints("uint8", lo=0, hi=200)], ref)


@op(prim=bitwise_and_p, inplace=True, spec=_spec2("int8", "uint8", np.bitwise_and))
def bitwise_and(input, other):
    """Elementwise ``input & other`` (logical and for bools)."""
    a, b, _ = _operands(input, other, "bitwise_and")
    return apply(bitwise_and_p, (a, b))


@op(prim=bitwise_or_p, inplace=True, spec=_bools_or_ints(np.bitwise_or))
def bitwise_or(input, other):
    """Elementwise ``input | other`` (logical or for bools)."""
    a, b, _ = _operands(input, other, "bitwise_or")
    return apply(bitwise_or_p, (a, b))


@op(prim=bitwise_xor_p, inplace=True, spec=_spec2("int16", "int64", np.bitwise_xor))
def bitwise_xor(input, other):
    """Elementwise ``input ^ other`` (logical xor for bools)."""
    a, b, _ = _operands(input, other, "bitwise_xor")
    return apply(bitwise_xor_p, (a, b))


@op(prim=bitwise_not_p, inplace=True, spec=Spec([_ints("uint8", lo=0, hi=255)], np.invert))
def bitwise_not(input):
    """Elementwise ``~input``: every bit flipped (logical not for bools)."""
    _integral(input.dtype, "bitwise_not")
    if input.dtype is dtypes.bool_:
        return apply(eq_p, (input, const(False, dtypes.bool_)))
    return apply(bitwise_not_p, (input,))


def _shift_ref(op_):
    # Python integers shifted, wrapped to the operands' dtype (in-range shift amounts)
    def ref(x, s):
        dt = np.result_type(x, s)
        return (
            np.array([op_(int(a), int(b)) for a, b in zip(x.flat, s.flat)])
            .astype(dt)
            .reshape(np.broadcast_shapes(x.shape, s.shape))
        )

    return ref


@op(
    prim=bitwise_left_shift_p,
    inplace=True,
    spec=Spec([_ints("int8"), _ints("int8", lo=0, hi=8)], _shift_ref(lambda a, b: a << b)),
)
def bitwise_left_shift(input, other):
    """Elementwise ``input << other``: 0 where ``other`` is negative or at least the width."""
    a, b, dtype = _operands(input, other, "lshift", bools=False)
    return apply(bitwise_left_shift_p, (a, b), {"bits": 8 * dtype.itemsize})


@op(
    prim=bitwise_right_shift_p,
    inplace=True,
    spec=Spec(
        [_ints("int16", lo=-300, hi=300), _ints("uint8", lo=0, hi=16)],
        _shift_ref(lambda a, b: a >> b),
    ),
)
def bitwise_right_shift(input, other):
    """Elementwise ``input >> other`` (arithmetic for signed types): the sign fill where
    ``other`` is negative or at least the width."""
    a, b, dtype = _operands(input, other, "rshift", bools=False)
    params = {"bits": 8 * dtype.itemsize, "signed": dtype.is_signed}
    return apply(bitwise_right_shift_p, (a, b), params)


def invert(input: Tensor) -> Tensor:
    """``~input`` (the operator): PyTorch's TypeError for floating-point tensors."""
    if input.dtype.is_floating_point:
        raise TypeError(
            "~ (operator.invert) is only implemented on integer and Boolean-type tensors"
        )
    return bitwise_not(input)
