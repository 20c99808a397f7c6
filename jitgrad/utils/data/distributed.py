"""``DistributedSampler``: each of ``num_replicas`` processes reads its own share of a dataset.

Shares are interleaved (rank r takes positions r, r + R, r + 2R, ... of the epoch's order) and
equal in size: the order is padded by repeating its start, or, with ``drop_last``, cut to a
multiple of R. With ``shuffle`` the order is a permutation seeded by ``seed + epoch``, the same
on every process, and the same as PyTorch's for the same arguments (it draws from the Mersenne
Twister that ``torch.Generator().manual_seed(s)`` starts, the way ``torch.randperm`` does), so
a run moved between the two libraries reads the same samples on the same ranks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from .sampler import Sampler

__all__ = ["DistributedSampler"]


def _torch_randperm(n: int, seed: int) -> list[int]:
    """The permutation ``torch.randperm(n, generator=torch.Generator().manual_seed(seed))``
    gives on the CPU: a Fisher-Yates shuffle drawing 32-bit Mersenne Twister words.

    NOTE: NumPy's legacy RandomState seeded with an int starts the same MT19937 state as
    PyTorch's CPU generator (the reference init_genrand of the seed's low 32 bits), and its
    full-range uint32 draws are the generator's raw words. PyTorch switches to 64-bit draws
    for n >= 2**32 / 20; such datasets are out of this sampler's reach anyway."""
    order = list(range(n))
    if n < 2:
        return order
    words = np.random.RandomState(seed & 0xFFFFFFFF).randint(0, 2**32, size=n - 1, dtype=np.uint32)
    for i, w in enumerate(words.tolist()):
        j = i + w % (n - i)
        order[i], order[j] = order[j], order[i]
    return order


class DistributedSampler(Sampler):
    """Indices of this process's share of ``dataset`` (``num_replicas`` and ``rank`` default to
    the default process group's). Call ``set_epoch(e)`` before each epoch so shuffling
    differs between epochs."""

    def __init__(
        self,
        dataset,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if num_replicas is None or rank is None:
            from ... import distributed as dist

            if not dist.is_initialized():
                raise ValueError(
                    "Default process group has not been initialized, please make sure to call "
                    "init_process_group. (Or pass num_replicas= and rank= explicitly.)"
                )
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
        if rank >= num_replicas or rank < 0:
            raise ValueError(
                f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]"
            )
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.drop_last = drop_last
        n = len(dataset)
        if drop_last and n % num_replicas != 0:
            # every share as long as the shortest one: the last n % R samples are left out
            self.num_samples = math.ceil((n - num_replicas) / num_replicas)
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas
        self.shuffle = shuffle
        self.seed = seed

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        order = _torch_randperm(n, self.seed + self.epoch) if self.shuffle else list(range(n))
        if self.drop_last:
            order = order[: self.total_size]
        else:
            missing = self.total_size - len(order)
            if missing > 0:
                # repeat the order from its start until every share has num_samples
                order += (order * math.ceil(missing / len(order)))[:missing]
        return iter(order[self.rank : self.total_size : self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` in the shuffle's seed (same value on every process)."""
        self.epoch = epoch
