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
    return _finish(np.array(arr, dtype=target, copy=True), requires_grad, device)


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


def _size(size) -> tuple:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = size[0]
    return tuple(int(s) for s in size)


def _float_or(dtype) -> np.dtype:
    return (dtypes.as_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()).np


def zeros(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _finish(np.zeros(_size(size), _float_or(dtype)), requires_grad, device)


def ones(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _finish(np.ones(_size(size), _float_or(dtype)), requires_grad, device)


def empty(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _finish(np.empty(_size(size), _float_or(dtype)), requires_grad, device)


def full(size, fill_value, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    d = dtypes.as_dtype(dtype) if dtype is not None else dtypes.scalar_dtype(fill_value)
    return _finish(np.full(_size((size,)), fill_value, d.np), requires_grad, device)


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
    return _finish(np.arange(start, end, step, dtype=np.float64).astype(d), requires_grad, device)


def linspace(start, end, steps, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    arr = np.linspace(start, end, int(steps), dtype=np.float64).astype(_float_or(dtype))
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
    return _finish(np.full(shape, fill_value, d), requires_grad, device)
