"""``default_collate`` (samples to a batch) and ``default_convert`` (one sample's NumPy arrays
and numbers to tensors), with PyTorch's rules and dtypes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ... import dtypes
from ...autograd.grad_mode import no_grad
from ...factories import as_tensor, from_numpy, tensor
from ...ops.functions import stack
from ...tensor import Tensor

__all__ = ["default_collate", "default_convert"]


def default_collate(batch: Sequence) -> Any:
    """Merge a list of samples into a batch, as PyTorch's default collate does.

    Tensors and NumPy arrays are stacked along a new dim 0; Python floats become a float64
    tensor, ints an int64 tensor, bools a bool tensor; strings are left as they are; mappings
    collate key by key; namedtuples field by field; other sequences (tuples included) become a
    list with one collated entry per position.
    """
    elem = batch[0]
    if isinstance(elem, Tensor):
        with no_grad():
            return stack([t.detach() for t in batch], 0)
    if isinstance(elem, np.ndarray):
        if elem.dtype.kind not in "biufc":
            raise TypeError(
                "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or "
                f"lists; found {elem.dtype} (arrays of strings or objects need a collate_fn)"
            )
        # NOTE: not np.ascontiguousarray, which turns a 0-d array into a 1-d one
        return default_collate([from_numpy(np.require(a, requirements="C")) for a in batch])
    if isinstance(elem, np.generic):
        return as_tensor(np.array(batch))
    if isinstance(elem, bool):
        return tensor(list(batch), dtype=dtypes.bool_)
    if isinstance(elem, float):
        return tensor(list(batch), dtype=dtypes.float64)
    if isinstance(elem, int):
        return tensor(list(batch), dtype=dtypes.int64)
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, Mapping):
        return {key: default_collate([d[key] for d in batch]) for key in elem}
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return type(elem)(*(default_collate(s) for s in zip(*batch)))
    if isinstance(elem, Sequence):
        if any(len(s) != len(elem) for s in batch):
            raise RuntimeError(
                "each element in list of batch should be of equal size; make every sample "
                "have the same structure, or pass a collate_fn that handles ragged samples."
            )
        return [default_collate(s) for s in zip(*batch)]
    raise TypeError(
        "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; "
        f"found {type(elem).__name__}. Pass a collate_fn for other sample types."
    )


def default_convert(data: Any) -> Any:
    """NumPy arrays (of numbers) and NumPy scalars become tensors, recursively through mappings,
    namedtuples and sequences; everything else is returned as it is (what the DataLoader applies
    to each sample when automatic batching is off)."""
    if isinstance(data, np.ndarray) and data.dtype.kind in "biufc":
        return from_numpy(np.require(data, requirements="C"))
    if isinstance(data, np.generic) and data.dtype.kind in "biufc":
        return as_tensor(np.asarray(data))
    if isinstance(data, Mapping):
        return {key: default_convert(value) for key, value in data.items()}
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        return [default_convert(d) for d in data]
    return data
