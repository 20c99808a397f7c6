"""Datasets and batch loading with PyTorch's ``torch.utils.data`` names (``jitgrad.utils.data``).

``DataLoader`` yields batches as plain tensors without gradient history, built in the calling
process. Over a ``TensorDataset`` (with the default ``collate_fn``) a batch is one gather per
tensor with an index tensor; no Python code runs per sample. Other datasets are indexed sample by
sample and the samples collated by stacking (see ``default_collate``).

Batch sizes and compiled steps: with ``drop_last=False`` the last batch of an epoch is smaller
whenever ``batch_size`` does not divide the dataset's size. A ``jitgrad.compile``-d training step
then traces once more for that batch size; sizes are runtime values of the generated code, so the
backend does not compile again, and later epochs hit the cache for both sizes. Pass
``drop_last=True`` to keep every batch the same size.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .. import dtypes
from ..autograd.grad_mode import no_grad
from ..factories import arange, as_tensor, from_numpy, tensor
from ..ops.functions import index_select, stack
from ..random import Generator, randperm
from ..tensor import Tensor

__all__ = ["Dataset", "TensorDataset", "DataLoader", "default_collate"]


class Dataset:
    """A map-style dataset: subclasses define ``__getitem__(index)`` and ``__len__()``."""

    def __getitem__(self, index):
        raise NotImplementedError("Subclasses of Dataset should implement __getitem__.")


class TensorDataset(Dataset):
    """Samples are ``tuple(t[i] for t in tensors)``; every tensor has the same first dim."""

    def __init__(self, *tensors: Tensor) -> None:
        for t in tensors:
            if not isinstance(t, Tensor):
                raise TypeError(f"TensorDataset expects tensors, got {type(t).__name__}")
        if tensors and any(t.size(0) != tensors[0].size(0) for t in tensors):
            sizes = ", ".join(str(t.size(0)) for t in tensors)
            raise ValueError(
                f"Size mismatch between tensors: their first dimensions are {sizes}; every "
                "tensor must hold one entry per sample along dim 0."
            )
        self.tensors = tensors

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return self.tensors[0].size(0)


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
        return default_collate([from_numpy(np.ascontiguousarray(a)) for a in batch])
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


class DataLoader:
    """Iterate over a dataset in batches.

    Args:
        dataset: a map-style dataset (``__getitem__`` and ``__len__``).
        batch_size: samples per batch; ``None`` yields single samples (no collation).
        shuffle: draw a new order every epoch (every ``iter()``) with ``randperm`` from
            ``generator``, or from the default generator, so ``jitgrad.manual_seed`` makes the
            sequence of epochs reproducible.
        sampler: an iterable of indices (instead of ``shuffle``).
        batch_sampler: an iterable of index lists (instead of the four options above).
        num_workers: accepted for compatibility; batches are always made in this process.
        collate_fn: merges a list of samples into a batch (default: ``default_collate``).
        pin_memory: accepted for compatibility (no effect).
        drop_last: drop the last batch when it is smaller than ``batch_size``. Otherwise that
            batch has a different size: a compiled step retraces once for it (no backend
            recompile, see the module docstring).
        generator: the ``jitgrad.Generator`` that shuffles.

    Batches are plain tensors without gradient history (``requires_grad`` False).
    """

    def __init__(
        self,
        dataset,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Iterable[int] | None = None,
        batch_sampler: Iterable[Sequence[int]] | None = None,
        num_workers: int = 0,
        collate_fn: Callable[[list], Any] | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        *,
        generator: Generator | None = None,
    ) -> None:
        if num_workers < 0:
            raise ValueError(
                "num_workers option should be non-negative; use num_workers=0 to disable "
                "multiprocessing."
            )
        if num_workers > 0:
            warnings.warn(
                f"DataLoader(num_workers={num_workers}): batches are made in the main process; "
                "worker processes are not supported.",
                UserWarning,
                stacklevel=2,
            )
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError(
                    "batch_sampler option is mutually exclusive with batch_size, shuffle, "
                    "sampler, and drop_last"
                )
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError(
                "batch_size=None option disables auto-batching and is mutually exclusive with "
                "drop_last"
            )
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size <= 0):
            raise ValueError(
                f"batch_size should be a positive integer value, but got batch_size={batch_size}"
            )
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.num_workers = num_workers
        self.collate_fn = collate_fn
        self.pin_memory = pin_memory
        self.drop_last = drop_last
        self.generator = generator

    def __len__(self) -> int:
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        n = len(self.sampler) if self.sampler is not None else len(self.dataset)
        if self.batch_size is None:
            return n
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _fast_path(self) -> bool:
        """A TensorDataset with the default collate: batches are gathers, not per-sample work."""
        return (
            self.collate_fn is None
            and self.batch_size is not None
            and isinstance(self.dataset, TensorDataset)
            and type(self.dataset).__getitem__ is TensorDataset.__getitem__
        )

    def _index_batches(self) -> Iterator[Tensor | list[int]]:
        """Per batch, its indices: a slice of this epoch's order tensor, or a list."""
        if self.batch_sampler is not None:
            yield from self.batch_sampler
            return
        bs = self.batch_size
        if self.sampler is not None:
            batch: list[int] = []
            for i in self.sampler:
                batch.append(int(i))
                if len(batch) == bs:
                    yield batch
                    batch = []
            if batch and not self.drop_last:
                yield batch
            return
        n = len(self.dataset)
        with no_grad():
            order = randperm(n, generator=self.generator) if self.shuffle else arange(n)
        stop = n - n % bs if self.drop_last else n
        for start in range(0, stop, bs):
            yield order[start : start + bs]

    def __iter__(self) -> Iterator:
        if self.batch_size is None and self.batch_sampler is None:
            yield from self._single_samples()
            return
        fast = self._fast_path()
        collate = self.collate_fn or default_collate
        for idx in self._index_batches():
            if fast:
                if not isinstance(idx, Tensor):
                    idx = tensor(list(idx), dtype=dtypes.int64)
                # NOTE: yield outside no_grad: a generator suspended inside the block would
                # leave gradients off in the caller's loop body
                with no_grad():
                    batch = [index_select(t, 0, idx).detach() for t in self.dataset.tensors]
                yield batch
            else:
                idx = idx.tolist() if isinstance(idx, Tensor) else idx
                yield collate([self.dataset[i] for i in idx])

    def _single_samples(self) -> Iterator:
        if self.sampler is not None:
            order: Iterable = self.sampler
        elif self.shuffle:
            order = randperm(len(self.dataset), generator=self.generator).tolist()
        else:
            order = range(len(self.dataset))
        for i in order:
            sample = self.dataset[int(i)]
            yield self.collate_fn(sample) if self.collate_fn is not None else sample
