"""Data types, devices and sizes with PyTorch's names, and PyTorch's type promotion."""

from __future__ import annotations

import builtins

import ml_dtypes
import numpy as np

# NOTE: NumPy has float16 but no bfloat16: bfloat16 tensors store ml_dtypes.bfloat16 arrays,
# whose NumPy loops compute in float32 and round each result to bfloat16, as PyTorch's CPU
# kernels do. Its NumPy kind is "V", not "f": test floating point with ``is_float_np``.
BFLOAT16_NP = np.dtype(ml_dtypes.bfloat16)


class dtype:  # noqa: N801  (PyTorch's name)
    """A tensor element type; wraps a NumPy dtype (``.np``)."""

    __slots__ = ("name", "np", "is_floating_point", "is_signed", "itemsize", "category")

    def __init__(self, name: str, np_dtype, category: int):
        self.name = name
        self.np = np.dtype(np_dtype)
        self.itemsize = self.np.itemsize
        self.category = category  # 0 bool, 1 integer, 2 floating: promotion order
        self.is_floating_point = category == 2
        self.is_signed = self.np.kind in "if" or self.np == BFLOAT16_NP

    @property
    def is_complex(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"jitgrad.{self.name}"

    def __reduce__(self):
        return (_dtype_by_name, (self.name,))


float16 = dtype("float16", np.float16, 2)
bfloat16 = dtype("bfloat16", BFLOAT16_NP, 2)
float32 = dtype("float32", np.float32, 2)
float64 = dtype("float64", np.float64, 2)
int8 = dtype("int8", np.int8, 1)
uint8 = dtype("uint8", np.uint8, 1)
int16 = dtype("int16", np.int16, 1)
int32 = dtype("int32", np.int32, 1)
int64 = dtype("int64", np.int64, 1)
uint64 = dtype("uint64", np.uint64, 1)
bool_ = dtype("bool", np.bool_, 0)
float = float32  # noqa: A001  (torch.float)
double = float64
half = float16
long = int64
int = int32  # noqa: A001  (torch.int)
short = int16

ALL = (float16, bfloat16, float32, float64, int8, uint8, int16, int32, int64, uint64, bool_)
_BY_NP = {d.np: d for d in ALL}
_BY_NAME = {d.name: d for d in ALL}
_FLOAT_NP = frozenset(d.np for d in ALL if d.is_floating_point)
# PyTorch's tensor type names (Tensor.type(): "jitgrad.HalfTensor")
TYPE_NAMES = {
    "float16": "Half",
    "bfloat16": "BFloat16",
    "float32": "Float",
    "float64": "Double",
    "int8": "Char",
    "uint8": "Byte",
    "int16": "Short",
    "int32": "Int",
    "int64": "Long",
    "uint64": "UInt64",
    "bool": "Bool",
}
_BY_TYPE_NAME = {f"{v}Tensor": _BY_NAME[k] for k, v in TYPE_NAMES.items()}


def is_float_np(np_dtype) -> builtins.bool:
    """Whether a NumPy dtype is one of jitgrad's floating-point types (bfloat16 included)."""
    return np_dtype.kind == "f" or np_dtype == BFLOAT16_NP


_HALF_NP = frozenset((np.dtype(np.float16), BFLOAT16_NP))


def is_half_np(np_dtype) -> builtins.bool:
    """Whether a NumPy dtype is a 16-bit float: sums and products of those accumulate in
    float32, as PyTorch's CPU kernels do, and are rounded once at the end."""
    return np_dtype in _HALF_NP


def astype(values, np_dtype) -> np.ndarray:
    """``values`` (an array or a number) as an array of ``np_dtype``. float64 values become a
    16-bit float through float32, as PyTorch converts them (rounding twice: in about one case in
    20000 that differs from rounding once)."""
    arr = np.asarray(values)
    if np_dtype in _HALF_NP and arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    return arr.astype(np_dtype)


def via_float32(fn):
    """``fn`` over NumPy arrays, with 16-bit float inputs computed in float32 and the result
    rounded once to their dtype, as PyTorch's CPU kernels compute them (SciPy's functions have
    no bfloat16 loops and compute float16 in float64)."""

    def run(*arrays, **params):
        half = next((a.dtype for a in arrays if getattr(a, "dtype", None) in _HALF_NP), None)
        if half is None:
            return fn(*arrays, **params)
        wide = [a.astype(np.float32) if getattr(a, "dtype", None) == half else a for a in arrays]
        return np.asarray(fn(*wide, **params)).astype(half)

    run.__name__ = run.__qualname__ = getattr(fn, "__name__", "impl")
    run.__doc__ = fn.__doc__
    return run


def type_name(d: dtype) -> str:
    """PyTorch's name of a dtype's scalar type in messages: ``Float``, ``Half``, ``Long``."""
    return TYPE_NAMES.get(d.name, d.name)


_default_float = float32


def _dtype_by_name(name: str) -> dtype:
    return _BY_NAME[name]


def from_numpy_dtype(np_dtype) -> dtype:
    """The jitgrad dtype of a NumPy dtype (float16 and others are rejected)."""
    d = _BY_NP.get(np.dtype(np_dtype))
    if d is None:
        raise TypeError(
            f"can't convert np.ndarray of type {np.dtype(np_dtype)}. The only supported types "
            "are: float64, float32, float16, bfloat16, int64, int32, int16, int8, uint8, uint64 "
            "and bool. Convert the array first, "
            "e.g. with arr.astype(np.float32)."
        )
    return d


def as_dtype(d) -> dtype:
    """Accept a jitgrad dtype, a NumPy dtype, a Python type or a name."""
    if isinstance(d, dtype):
        return d
    if d is builtins.float:
        return _default_float
    if d is builtins.int:
        return int64
    if d is builtins.bool:
        return bool_
    if isinstance(d, str):
        if d in _BY_NAME:
            return _BY_NAME[d]
        # "jitgrad.float16", "torch.HalfTensor", "HalfTensor"
        short = d.rsplit(".", 1)[-1]
        found = _BY_NAME.get(short) or _BY_TYPE_NAME.get(short) or _ALIASES.get(short)
        if found is not None:
            return found
    return from_numpy_dtype(d)


def get_default_dtype() -> dtype:
    return _default_float


def set_default_dtype(d) -> None:
    global _default_float
    d = as_dtype(d)
    if not d.is_floating_point:
        raise TypeError(f"only floating-point types are supported as the default type, got {d}")
    _default_float = d


_ALIASES = {"half": float16, "float": float32, "double": float64, "short": int16}
_ALIASES.update({"int": int32, "long": int64})


def promote(a: dtype, b: dtype) -> dtype:
    """The smallest dtype both promote to, as ``torch.promote_types``: across categories the
    higher one; float16 with bfloat16 is float32; a signed with an unsigned integer is the
    signed type wide enough for both (int8 with uint8 is int16)."""
    if a is b:
        return a
    if a.category != b.category:
        return a if a.category > b.category else b
    if a.itemsize == b.itemsize and a.category == 2:
        return float32  # float16 and bfloat16
    if a.category == 1 and a.is_signed != b.is_signed and uint64 not in (a, b):
        signed, unsigned = (a, b) if a.is_signed else (b, a)
        if signed.itemsize > unsigned.itemsize:
            return signed
        return {2: int16, 4: int32}.get(unsigned.itemsize * 2, int64)
    return a if a.itemsize >= b.itemsize else b


def scalar_dtype(v) -> dtype:
    """The dtype a Python number takes when it stands alone (PyTorch's wrapped numbers)."""
    if isinstance(v, builtins.bool):
        return bool_
    if isinstance(v, builtins.int):
        return int64
    return _default_float


def scalar_category(v) -> builtins.int:
    if isinstance(v, builtins.bool):
        return 0
    if isinstance(v, builtins.int):
        return 1
    return 2


class device:  # noqa: N801  (PyTorch's name)
    """Where a tensor lives: ``cpu`` (NumPy) or ``cuda`` (numba.cuda device arrays)."""

    __slots__ = ("type", "index")

    def __init__(self, spec="cpu", index=None):
        if isinstance(spec, device):
            self.type, self.index = spec.type, spec.index
            return
        kind, _, idx = str(spec).partition(":")
        if kind not in ("cpu", "cuda"):
            raise RuntimeError(
                f"Expected one of cpu, cuda device type at start of device string: {spec}"
            )
        self.type = kind
        self.index = builtins.int(idx) if idx else index

    def __eq__(self, other):
        if isinstance(other, str):
            other = device(other)
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash((self.type, self.index))

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        if self.index is None:
            return f"device(type='{self.type}')"
        return f"device(type='{self.type}', index={self.index})"


CPU = device("cpu")


class Size(tuple):
    """A tensor's shape: a tuple that prints like PyTorch's ``torch.Size``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"jitgrad.Size({list(self)})"

    def numel(self) -> builtins.int:
        n = 1
        for s in self:
            n *= s
        return n
