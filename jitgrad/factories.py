"""Tensor creation: tensor(), zeros/ones/full/arange/..., *_like, from_numpy."""

from __future__ import annotations

import numpy as np

from . import dtypes
from .tensor import Tensor


def _check_device(device) -> None:
    if device is not None and dtypes.device(device).type != "cpu":
        raise RuntimeError(
            f"device {str(device)!r} is not available in this build: jitgrad tensors live on the "
            "CPU for now; pass device='cpu' or leave it out."
        )


def _finish(arr: np.ndarray, requires_grad: bool, device=None) -> Tensor:
    _check_device(device)
    dtypes.from_numpy_dtype(arr.dtype)
    t = Tensor._wrap(arr)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _infer_dtype(data, arr: np.ndarray) -> np.dtype:
    """Python numbers take PyTorch's defaults; NumPy arrays keep their dtype."""
    if isinstance(data, (np.ndarray, np.generic)):
        return arr.dtype
    kind = arr.dtype.kind
    if kind == "f":
        return dtypes.get_default_dtype().np
    if kind in "iu":
        return np.dtype(np.int64)
    return arr.dtype


def tensor(data, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (nested lists, numbers, arrays or tensors)."""
    if isinstance(data, Tensor):
        data = data._data
    elif isinstance(data, (list, tuple)) and any(isinstance(x, Tensor) for x in _flat(data)):
        data = [x._data if isinstance(x, Tensor) else x for x in data]
    arr = np.array(data)
    if arr.dtype == object:
        raise TypeError(
            f"could not build a tensor from {type(data).__name__}: ragged or mixed data"
        )
    target = dtypes.as_dtype(dtype).np if dtype is not None else _infer_dtype(data, arr)
    return _finish(_copy_as(arr, target), requires_grad, device)


def _copy_as(arr: np.ndarray, np_dtype) -> np.ndarray:
    """A copy of ``arr`` in ``np_dtype`` (float64 to 16-bit floats through float32)."""
    if arr.dtype == np.float64 and dtypes.is_half_np(np.dtype(np_dtype)):
        return dtypes.astype(arr, np_dtype)
    return np.array(arr, dtype=np_dtype, copy=True)


def _full(shape, fill_value, np_dtype) -> np.ndarray:
    return np.full(shape, dtypes.astype(fill_value, np_dtype), np_dtype)


def _flat(data):
    for x in data:
        if isinstance(x, (list, tuple)):
            yield from _flat(x)
        else:
            yield x


def as_tensor(data, dtype=None, device=None) -> Tensor:
    if isinstance(data, Tensor) and (dtype is None or data.dtype is dtypes.as_dtype(dtype)):
        return data
    if isinstance(data, np.ndarray) and (dtype is None or data.dtype == dtypes.as_dtype(dtype).np):
        return _finish(data, False, device)
    return tensor(data, dtype=dtype, device=device)


def from_numpy(ndarray: np.ndarray) -> Tensor:
    """A tensor sharing memory with ``ndarray``."""
    if not isinstance(ndarray, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(ndarray).__name__})")
    return _finish(ndarray, False)


def _size(size, name: str = "zeros") -> tuple:
    """PyTorch's size arguments: ``f(2, 3)``, ``f((2, 3))``, ``f([2, 3])``, ``f(Size)``."""
    if len(size) == 1 and isinstance(size[0], (tuple, list, dtypes.Size)):
        size = size[0]
    try:
        size = tuple(int(s.__index__()) for s in size)
    except (AttributeError, TypeError):
        got = ", ".join(type(s).__name__ for s in size)
        raise TypeError(
            f"{name}() received an invalid combination of arguments - got ({got}), but "
            "expected one of: (tuple of ints size, *, torch.dtype dtype, ...)"
        ) from None
    for s in size:
        if s < 0:
            raise RuntimeError(f"Trying to create tensor with negative dimension {s}: {list(size)}")
    return size


def _float_or(dtype) -> np.dtype:
    return (dtypes.as_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()).np


def _sized(name, size, kw_size):
    if kw_size is not None:
        if size:
            raise TypeError(f"{name}() got multiple values for argument 'size'")
        size = (kw_size,)
    return _size(size, name)


# (layout, pin_memory and memory_format are accepted as PyTorch does; CPU strided only)
def zeros(
    *size, out=None, dtype=None, layout=None, device=None, requires_grad=False,
    pin_memory=False, **kw,
) -> Tensor:  # fmt: skip
    shape = _sized("zeros", size, kw.pop("size", None))
    return _finish(np.zeros(shape, _float_or(dtype)), requires_grad, device)


def ones(
    *size, out=None, dtype=None, layout=None, device=None, requires_grad=False,
    pin_memory=False, **kw,
) -> Tensor:  # fmt: skip
    shape = _sized("ones", size, kw.pop("size", None))
    return _finish(np.ones(shape, _float_or(dtype)), requires_grad, device)


def empty(
    *size, out=None, dtype=None, layout=None, device=None, requires_grad=False,
    pin_memory=False, memory_format=None, **kw,
) -> Tensor:  # fmt: skip
    shape = _sized("empty", size, kw.pop("size", None))
    return _finish(np.empty(shape, _float_or(dtype)), requires_grad, device)


def full(
    size, fill_value, *, out=None, dtype=None, layout=None, device=None, requires_grad=False,
    pin_memory=False,
) -> Tensor:  # fmt: skip
    if isinstance(fill_value, Tensor):
        if fill_value.ndim != 0:
            raise RuntimeError(
                "fill_ only supports 0-dimension value tensor but got tensor with "
                f"{fill_value.ndim} dimensions."
            )
        fill_value = fill_value.item()
    d = dtypes.as_dtype(dtype) if dtype is not None else dtypes.scalar_dtype(fill_value)
    return _finish(_full(_size((size,), "full"), fill_value, d.np), requires_grad, device)


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    if end is None:
        start, end = 0, start
    if dtype is None:
        is_int = all(isinstance(v, int) for v in (start, end, step))
        d = np.int64 if is_int else dtypes.get_default_dtype().np
    else:
        d = dtypes.as_dtype(dtype).np
    if step == 0:
        raise RuntimeError("step must be nonzero")
    return _finish(
        dtypes.astype(np.arange(start, end, step, dtype=np.float64), d), requires_grad, device
    )


def linspace(start, end, steps, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    arr = dtypes.astype(np.linspace(start, end, int(steps), dtype=np.float64), _float_or(dtype))
    return _finish(arr, requires_grad, device)


def eye(n, m=None, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _finish(np.eye(n, m, dtype=_float_or(dtype)), requires_grad, device)


def _like(input: Tensor, dtype):
    return input._data.shape, (dtypes.as_dtype(dtype) if dtype is not None else input.dtype).np


def zeros_like(input, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    shape, d = _like(input, dtype)
    return _finish(np.zeros(shape, d), requires_grad, device)


def ones_like(input, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    shape, d = _like(input, dtype)
    return _finish(np.ones(shape, d), requires_grad, device)


def empty_like(input, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    shape, d = _like(input, dtype)
    return _finish(np.empty(shape, d), requires_grad, device)


def full_like(input, fill_value, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    shape, d = _like(input, dtype)
    return _finish(_full(shape, fill_value, d), requires_grad, device)
