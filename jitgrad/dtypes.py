"""Data types, devices and sizes with PyTorch's names, and PyTorch's type promotion."""

from __future__ import annotations

import builtins

import numpy as np


class dtype:  # noqa: N801  (PyTorch's name)
    """A tensor element type; wraps a NumPy dtype (``.np``)."""

    __slots__ = ("name", "np", "is_floating_point", "is_signed", "itemsize", "category")

    def __init__(self, name: str, np_dtype, category: int):
        self.name = name
        self.np = np.dtype(np_dtype)
        self.itemsize = self.np.itemsize
        self.category = category  # 0 bool, 1 integer, 2 floating: promotion order
        self.is_floating_point = category == 2
        self.is_signed = category != 0

    def __repr__(self) -> str:
        return f"jitgrad.{self.name}"

    def __reduce__(self):
        return (_dtype_by_name, (self.name,))


float32 = dtype("float32", np.float32, 2)
float64 = dtype("float64", np.float64, 2)
int32 = dtype("int32", np.int32, 1)
int64 = dtype("int64", np.int64, 1)
uint64 = dtype("uint64", np.uint64, 1)
bool_ = dtype("bool", np.bool_, 0)
float = float32  # noqa: A001  (torch.float)
double = float64
long = int64
int = int32  # noqa: A001  (torch.int)

ALL = (float32, float64, int32, int64, uint64, bool_)
_BY_NP = {d.np: d for d in ALL}
_BY_NAME = {d.name: d for d in ALL}

_default_float = float32


def _dtype_by_name(name: str) -> dtype:
    return _BY_NAME[name]


def from_numpy_dtype(np_dtype) -> dtype:
    """The jitgrad dtype of a NumPy dtype (float16 and others are rejected)."""
    d = _BY_NP.get(np.dtype(np_dtype))
    if d is None:
        raise TypeError(
            f"can't convert np.ndarray of type {np.dtype(np_dtype)}. The only supported types "
            "are: float64, float32, int64, int32, uint64 and bool. Convert the array first, "
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
    if isinstance(d, str) and d in _BY_NAME:
        return _BY_NAME[d]
    return from_numpy_dtype(d)


def get_default_dtype() -> dtype:
    return _default_float


def set_default_dtype(d) -> None:
    global _default_float
    d = as_dtype(d)
    if not d.is_floating_point:
        raise TypeError(f"only floating-point types are supported as the default type, got {d}")
    _default_float = d


def promote(a: dtype, b: dtype) -> dtype:
    """The smallest dtype both promote to (same category: the wider one)."""
    if a is b:
        return a
    if a.category != b.category:
        return a if a.category > b.category else b
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
