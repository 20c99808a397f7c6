"""``DataLoader``: batches from a dataset, in the calling process or in worker processes.

``DataLoader`` yields batches as plain tensors without gradient history. Over a
``TensorDataset`` (with the default ``collate_fn``, in the calling process) a batch is one
gather per tensor with an index tensor; no Python code runs per sample. Other datasets are
indexed sample by sample and the samples collated (see ``default_collate``).

Batch sizes and compiled steps: with ``drop_last=False`` the last batch of an epoch is smaller
whenever ``batch_size`` does not divide the dataset's size. A ``jitgrad.compile``-d training step
then traces once more for that batch size; sizes are runtime values of the generated code, so the
backend does not compile again, and later epochs hit the cache for both sizes. Pass
``drop_last=True`` to keep every batch the same size.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from ... import dtypes
from ...autograd.grad_mode import no_grad
from ...factories import arange, tensor
from ...ops.functions import index_select
from ...random import Generator, randint, randperm
from ...tensor import Tensor
from .collate import default_collate, default_convert
from .dataset import IterableDataset, TensorDataset
from .sampler import BatchSampler, RandomSampler, SequentialSampler

__all__ = ["DataLoader"]


class DataLoader:
    """Iterate over a dataset in batches.

    Args:
        dataset: a map-style dataset (``__getitem__`` and ``__len__``) or an
            ``IterableDataset``.
        batch_size: samples per batch; ``None`` yields single samples (no collation).
        shuffle: draw a new order every epoch (every ``iter()``) with a ``RandomSampler`` over
            ``generator``, or over the default generator, so ``jitgrad.manual_seed`` makes the
            sequence of epochs reproducible.
        sampler: an iterable of indices (instead of ``shuffle``).
        batch_sampler: an iterable of index lists (instead of the four options around it).
        num_workers: how many worker processes build batches (0: the calling process). Workers
            start with the "spawn" context unless ``multiprocessing_context`` names another;
            batches come back in order.
        collate_fn: merges a list of samples into a batch (default: ``default_collate``).
        pin_memory: accepted for compatibility (no effect).
        drop_last: drop the last batch when it is smaller than ``batch_size``. Otherwise that
            batch has a different size: a compiled step retraces once for it (no backend
            recompile, see the module docstring).
        timeout: seconds to wait for a worker's batch (0: no limit).
        worker_init_fn: called as ``worker_init_fn(worker_id)`` in each worker once it is
            seeded (``jitgrad`` and ``random`` get ``base_seed + worker_id``).
        multiprocessing_context: a context or a start method's name.
        generator: the ``jitgrad.Generator`` that shuffles and draws the workers' base seed.
        prefetch_factor: batches in flight per worker (default 2; only with workers).
        persistent_workers: keep the workers between epochs (only with workers).

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
        timeout: float = 0,
        worker_init_fn: Callable[[int], None] | None = None,
        multiprocessing_context=None,
        generator: Generator | None = None,
        *,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
        in_order: bool = True,
    ) -> None:
        if num_workers < 0:
            raise ValueError(
                "num_workers option should be non-negative; use num_workers=0 to disable "
                "multiprocessing."
            )
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError(
                "prefetch_factor option could only be specified in multiprocessing.let "
                "num_workers > 0 to enable multiprocessing, otherwise set prefetch_factor to None."
            )
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        iterable = isinstance(dataset, IterableDataset)
        if iterable and (shuffle or sampler is not None or batch_sampler is not None):
            raise ValueError(
                "DataLoader with IterableDataset: expected unspecified shuffle, sampler or "
                "batch_sampler option; an IterableDataset gives its own order."
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
        if batch_size is not None and (
            not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0
        ):
            raise ValueError(
                f"batch_size should be a positive integer value, but got batch_size={batch_size}"
            )
        if sampler is None and not iterable:
            if shuffle:
                sampler = RandomSampler(dataset, generator=generator)
            else:
                sampler = SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None and not iterable:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.dataset = dataset
        self.batch_size = batch_size
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.num_workers = num_workers
        self._auto_collation = batch_sampler is not None or (iterable and batch_size is not None)
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self._default_collate = collate_fn is default_collate
        self.collate_fn = collate_fn
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.drop_last = drop_last
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.generator = generator
        self.prefetch_factor = 2 if prefetch_factor is None and num_workers > 0 else prefetch_factor
        self.persistent_workers = persistent_workers
        self.in_order = in_order
        self._pool = None

    def __len__(self) -> int:
        if isinstance(self.dataset, IterableDataset):
            n = len(self.dataset)
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        return len(self.sampler)

    def _fast_path(self) -> bool:
        """A TensorDataset with the default collate: batches are gathers, not per-sample work."""
        return (
            self._default_collate
            and self.batch_sampler is not None
            and isinstance(self.dataset, TensorDataset)
            and type(self.dataset).__getitem__ is TensorDataset.__getitem__
        )

    def _index_batches(self) -> Iterator[Tensor | list[int]]:
        """Per batch, its indices: a slice of this epoch's order tensor where the loader made
        the sampler itself (no Python per index), else the batch sampler's lists."""
        bs = self.batch_sampler
        auto = type(bs) is BatchSampler
        order = None
        if auto and type(bs.sampler) is SequentialSampler:
            order = arange(len(self.dataset))
        elif (
            auto
            and type(bs.sampler) is RandomSampler
            and not bs.sampler.replacement
            and bs.sampler.num_samples == len(self.dataset)
        ):
            with no_grad():
                order = randperm(len(self.dataset), generator=bs.sampler.generator)
        if order is None:
            yield from bs
            return
        n, size = order.shape[0], bs.batch_size
        stop = n - n % size if bs.drop_last else n
        for start in range(0, stop, size):
            yield order[start : start + size]

    def __iter__(self) -> Iterator:
        if isinstance(self.dataset, IterableDataset):
            yield from self._iterable()
            return
        if self.batch_sampler is None:
            batches: Iterable = ([int(i)] for i in self.sampler)
        else:
            batches = self._index_batches()
        if self.num_workers > 0:
            lists = (i.tolist() if isinstance(i, Tensor) else list(i) for i in batches)
            yield from self._from_workers(lists)
            return
        fast = self._fast_path()
        for idx in batches:
            if fast:
                if not isinstance(idx, Tensor):
                    idx = tensor(list(idx), dtype=dtypes.int64)
                # NOTE: yield outside no_grad: a generator suspended inside the block would
                # leave gradients off in the caller's loop body
                with no_grad():
                    batch = [index_select(t, 0, idx).detach() for t in self.dataset.tensors]
                yield batch
            else:
                yield self._make(idx)

    def _make(self, idx):
        if self.batch_sampler is None:  # single samples: no collation
            return self.collate_fn(self.dataset[idx[0]])
        idx = idx.tolist() if isinstance(idx, Tensor) else list(idx)
        many = getattr(self.dataset, "__getitems__", None)
        samples = many(idx) if callable(many) else [self.dataset[i] for i in idx]
        return self.collate_fn(samples)

    def _iterable(self) -> Iterator:
        from .worker import IterableFetcher

        if self.num_workers > 0:
            # each worker makes its own pass over the dataset (shard it with get_worker_info())
            fetcher = IterableFetcher(
                self.dataset, self.collate_fn, self.batch_size, self.drop_last
            )
            yield from self._from_workers(itertools.repeat(None), fetcher)
            return
        if self.batch_size is None:
            for sample in self.dataset:
                yield self.collate_fn(sample)
            return
        batch: list = []
        for sample in self.dataset:
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield self.collate_fn(batch)
                batch = []
        if batch and not self.drop_last:
            yield self.collate_fn(batch)

    def _from_workers(self, tasks, fetcher=None) -> Iterator:
        from .worker import MapFetcher, WorkerPool

        pool = self._pool
        if pool is None:
            if fetcher is None:
                collate = self.collate_fn
                if self.batch_sampler is None:
                    collate = _Single(collate)
                fetcher = MapFetcher(self.dataset, collate)
            seed = int(randint(0, 2**62, (1,), generator=self.generator).item())
            pool = WorkerPool(
                fetcher,
                self.num_workers,
                self.worker_init_fn,
                seed,
                self.multiprocessing_context,
                self.prefetch_factor,
                self.timeout,
            )
            if self.persistent_workers:
                self._pool = pool
        try:
            yield from pool.run(tasks)
        finally:
            if not self.persistent_workers:
                pool.close()

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.close()


class _Single:
    """A worker's collate when automatic batching is off: one sample, converted."""

    def __init__(self, convert) -> None:
        self.convert = convert

    def __call__(self, samples):
        return self.convert(samples[0])
