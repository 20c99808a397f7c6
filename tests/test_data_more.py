"""random_split, Subset, ConcatDataset, default_collate's dtypes (against torch's), the samplers'
index sets and semantics, and DataLoader options: samplers, batch samplers and worker processes.

NOTE: torch is imported inside the tests that use it, not here: DataLoader workers unpickle this
module's dataset classes, and so import this module.
"""

from __future__ import annotations

import random
from collections import Counter, namedtuple

import numpy as np
import pytest

import jitgrad as jg
from jitgrad.utils.data import (
    BatchSampler,
    ConcatDataset,
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
    default_collate,
    default_convert,
    get_worker_info,
    random_split,
)


def _torch():
    return pytest.importorskip("torch")


class Numbers(Dataset):
    """Sample i is (i, 10 * i); samples made in a worker also say which worker and seed."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if i == 99:
            raise ValueError("sample 99 is broken")
        info = get_worker_info()
        worker = -1 if info is None else info.id
        return {"x": np.float32(i), "y": 10 * i, "worker": worker, "init": _INIT.get("id", -1)}


_INIT: dict = {}


class Stream(IterableDataset):
    """0..n-1, each worker taking its own contiguous share (PyTorch's sharding recipe)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self):
        info = get_worker_info()
        if info is None:
            return iter(range(self.n))
        share = -(-self.n // info.num_workers)
        return iter(range(info.id * share, min(self.n, (info.id + 1) * share)))


def _record_init(worker_id: int) -> None:
    _INIT["id"] = worker_id
    assert get_worker_info().id == worker_id


def test_random_split_sizes_and_fractions():
    ds = list(range(10))
    parts = random_split(ds, [3, 7], generator=jg.Generator().manual_seed(1))
    assert [len(p) for p in parts] == [3, 7] and all(isinstance(p, Subset) for p in parts)
    got = [p[i] for p in parts for i in range(len(p))]
    assert sorted(got) == ds  # disjoint and covering
    again = random_split(ds, [3, 7], generator=jg.Generator().manual_seed(1))
    assert [list(p.indices) for p in again] == [list(p.indices) for p in parts]
    other = random_split(ds, [3, 7], generator=jg.Generator().manual_seed(2))
    assert [list(p.indices) for p in other] != [list(p.indices) for p in parts]
    # the permutation is randperm(10) from the generator, cut in order
    perm = jg.randperm(10, generator=jg.Generator().manual_seed(1)).tolist()
    assert list(parts[0].indices) == perm[:3] and list(parts[1].indices) == perm[3:]
    # fractions: floor(n * f) each, the rest one by one to the first splits (torch's sizes)
    torch = _torch()
    for n, fracs in [(11, [0.3, 0.3, 0.4]), (10, [0.5, 0.5]), (7, [0.25, 0.25, 0.5])]:
        expected = [len(s) for s in torch.utils.data.random_split(range(n), fracs)]
        got = random_split(list(range(n)), fracs)
        assert [len(s) for s in got] == expected
        assert sorted(i for s in got for i in s.indices) == list(range(n))
    with pytest.warns(UserWarning, match="Length of split at index 1 is 0"):
        assert [len(s) for s in random_split(list(range(3)), [0.1, 0.1, 0.8])] == [1, 0, 2]
    with pytest.raises(ValueError, match="Sum of input lengths does not equal the length"):
        random_split(ds, [3, 3])
    with pytest.raises(ValueError, match="Sum of input lengths"):
        torch.utils.data.random_split(range(10), [3, 3])


def test_subset_and_concat_dataset():
    base = [f"s{i}" for i in range(6)]
    sub = Subset(base, [4, 0, 2])
    assert len(sub) == 3 and [sub[i] for i in range(3)] == ["s4", "s0", "s2"]
    assert sub.__getitems__([2, 0]) == ["s2", "s4"]
    cat = ConcatDataset([base, sub, ["t0"]])
    assert len(cat) == 10 and cat.cumulative_sizes == [6, 9, 10]
    assert [cat[i] for i in range(10)] == base + ["s4", "s0", "s2", "t0"]
    assert cat[-1] == "t0" and cat[-4] == "s4"
    with pytest.raises(ValueError, match="absolute value of index should not exceed dataset len"):
        cat[-11]
    with pytest.raises(IndexError):
        cat[10]
    with pytest.raises(AssertionError, match="datasets should not be an empty iterable"):
        ConcatDataset([])
    both = Numbers(2) + Numbers(3)
    assert isinstance(both, ConcatDataset) and [both[i]["y"] for i in range(5)] == [
        0,
        10,
        0,
        10,
        20,
    ]
    tds = TensorDataset(jg.arange(5.0))
    loader = DataLoader(Subset(tds, [3, 1]), batch_size=2)
    assert [b[0].tolist() for b in loader] == [[3.0, 1.0]]


Point = namedtuple("Point", ["x", "y"])


def test_default_collate_dtypes_match_torch():
    torch = _torch()
    from torch.utils.data import default_collate as torch_collate

    samples = [
        (1.5 * i, i, i % 2 == 0, np.float32(i), np.int32(i), np.arange(3, dtype=np.int16) + i)
        for i in range(3)
    ]
    ours, theirs = default_collate(samples), torch_collate(samples)
    assert isinstance(ours, list) and len(ours) == len(theirs) == 6
    for a, b in zip(ours, theirs):
        assert str(a.dtype).split(".")[-1] == str(b.dtype).split(".")[-1]
        assert tuple(a.shape) == tuple(b.shape)
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    dicts = [{"a": np.ones((2, 2)) * i, "p": Point(i, float(i))} for i in range(2)]
    ours, theirs = default_collate(dicts), torch_collate(dicts)
    assert ours["a"].dtype == jg.float64 and theirs["a"].dtype == torch.float64
    np.testing.assert_array_equal(ours["a"].numpy(), theirs["a"].numpy())
    assert isinstance(ours["p"], Point) and ours["p"].x.dtype == jg.int64
    assert ours["p"].y.dtype == jg.float64 and ours["p"].y.tolist() == theirs["p"].y.tolist()
    assert default_collate(["a", "b"]) == ["a", "b"]
    zero_d = [np.array(3, dtype=np.uint8), np.array(4, dtype=np.uint8)]  # 0-d arrays: shape (2,)
    ours, theirs = default_collate(zero_d), torch_collate(zero_d)
    assert tuple(ours.shape) == tuple(theirs.shape) == (2,) and ours.dtype == jg.uint8
    for bad in ([np.array(["a"])] * 2, [np.array([object()])] * 2):
        with pytest.raises(TypeError, match="default_collate: batch must contain tensors"):
            default_collate(bad)
        with pytest.raises(TypeError, match="default_collate: batch must contain tensors"):
            torch_collate(bad)
    conv = default_convert((np.ones(2, np.float32), 1, "a"))
    assert isinstance(conv, list) and conv[0].dtype == jg.float32 and conv[1:] == [1, "a"]


def test_sequential_random_and_subset_samplers():
    data = list(range(7))
    assert list(SequentialSampler(data)) == data and len(SequentialSampler(data)) == 7
    g = jg.Generator().manual_seed(3)
    first, second = list(RandomSampler(data, generator=g)), list(RandomSampler(data, generator=g))
    assert sorted(first) == data and sorted(second) == data and first != second
    ref = jg.Generator().manual_seed(3)
    assert first == jg.randperm(7, generator=ref).tolist()  # one randperm per epoch
    jg.manual_seed(5)
    a = list(RandomSampler(data))
    jg.manual_seed(5)
    assert list(RandomSampler(data)) == a  # the default generator, seeded
    # without replacement, more samples than data: whole permutations, then a part of one
    long = list(RandomSampler(data, num_samples=17, generator=g))
    counts = Counter(long)
    assert len(long) == 17 and set(counts) == set(data)
    assert sorted(counts.values()) == [2] * 4 + [3] * 3
    with_rep = RandomSampler(data, replacement=True, num_samples=100, generator=g)
    drawn = list(with_rep)
    assert len(with_rep) == 100 and len(drawn) == 100 and set(drawn) <= set(data)
    assert len(set(drawn)) == 7  # 100 uniform draws over 7 values hit all of them
    sub = list(SubsetRandomSampler([10, 20, 30, 40], generator=g))
    assert sorted(sub) == [10, 20, 30, 40]
    with pytest.raises(TypeError, match="replacement should be a boolean value"):
        RandomSampler(data, replacement=1)
    with pytest.raises(ValueError, match="num_samples should be a positive integer value"):
        RandomSampler(data, num_samples=0)


def test_weighted_random_sampler():
    g = jg.Generator().manual_seed(0)
    weights = [0.0, 1.0, 3.0, 0.0, 6.0]
    draws = list(WeightedRandomSampler(weights, 5000, generator=g))
    counts = Counter(draws)
    assert set(counts) == {1, 2, 4}  # zero weight: never drawn
    freq = np.array([counts[i] for i in (1, 2, 4)]) / 5000
    np.testing.assert_allclose(freq, [0.1, 0.3, 0.6], atol=0.03)
    unique = list(WeightedRandomSampler([1, 1, 1, 1], 4, replacement=False, generator=g))
    assert sorted(unique) == [0, 1, 2, 3]
    assert len(WeightedRandomSampler(weights, 7)) == 7
    with pytest.raises(ValueError, match="weights should be a 1d sequence"):
        WeightedRandomSampler([[1.0, 2.0]], 2)
    with pytest.raises(ValueError, match="num_samples should be a positive integer value"):
        WeightedRandomSampler(weights, -1)


def test_batch_sampler_matches_torch():
    torch = _torch()
    for drop_last in (False, True):
        ours = BatchSampler(SequentialSampler(range(10)), 4, drop_last)
        theirs = torch.utils.data.BatchSampler(
            torch.utils.data.SequentialSampler(range(10)), 4, drop_last
        )
        assert list(ours) == list(theirs) and len(ours) == len(theirs)
    assert list(BatchSampler([5, 3, 1], 2, False)) == [[5, 3], [1]]
    with pytest.raises(ValueError, match="batch_size should be a positive integer value"):
        BatchSampler([0], 0, False)
    with pytest.raises(ValueError, match="drop_last should be a boolean value"):
        BatchSampler([0], 1, 0)


def test_dataloader_with_samplers_and_collate():
    ds = Numbers(10)
    g = jg.Generator().manual_seed(4)
    loader = DataLoader(ds, batch_size=3, sampler=RandomSampler(ds, generator=g), drop_last=True)
    ys = [b["y"].tolist() for b in loader]
    assert len(loader) == len(ys) == 3 and all(len(y) == 3 for y in ys)
    assert len({y for batch in ys for y in batch}) == 9
    bs = BatchSampler(SubsetRandomSampler([1, 3, 5, 7], generator=g), 2, False)
    loader = DataLoader(ds, batch_sampler=bs, collate_fn=lambda s: sorted(d["y"] for d in s))
    batches = list(loader)
    assert len(loader) == 2 and sorted(sum(batches, [])) == [10, 30, 50, 70]
    # shuffle=True draws from the loader's generator
    tds = TensorDataset(jg.arange(6.0))
    order = [b[0].tolist() for b in DataLoader(tds, 6, shuffle=True, generator=g.manual_seed(9))]
    assert order == [
        [float(i) for i in jg.randperm(6, generator=jg.Generator().manual_seed(9)).tolist()]
    ]
    # batch_size=None: one converted sample at a time
    singles = list(DataLoader(ds, batch_size=None, sampler=[2, 0]))
    assert [s["y"] for s in singles] == [20, 0] and singles[0]["x"].dtype == jg.float32
    with pytest.raises(ValueError, match="persistent_workers option needs num_workers > 0"):
        DataLoader(ds, persistent_workers=True)
    with pytest.raises(ValueError, match="prefetch_factor option could only be specified"):
        DataLoader(ds, prefetch_factor=2)


def test_worker_processes_return_batches_in_order():
    ds = Numbers(11)
    loader = DataLoader(
        ds,
        batch_size=2,
        num_workers=2,
        worker_init_fn=_record_init,
        persistent_workers=True,
        generator=jg.Generator().manual_seed(0),
    )
    expected = [b["y"].tolist() for b in DataLoader(ds, batch_size=2)]
    for _ in range(2):  # two epochs on the same (persistent) workers
        batches = list(loader)
        assert [b["y"].tolist() for b in batches] == expected
        assert batches[0]["x"].dtype == jg.float32 and batches[0]["y"].dtype == jg.int64
        # batches go to the workers in turn, and each worker ran worker_init_fn
        assert [b["worker"].tolist()[0] for b in batches] == [0, 1, 0, 1, 0, 1]
        assert [b["init"].tolist()[0] for b in batches] == [0, 1, 0, 1, 0, 1]
    first = next(iter(loader))  # an epoch abandoned after one batch: its leftovers are dropped
    assert first["y"].tolist() == expected[0]
    assert [b["y"].tolist() for b in loader] == expected
    assert get_worker_info() is None and random.random() is not None
    # an IterableDataset: each worker's stream, batches taken from the workers in turn
    stream = DataLoader(Stream(9), batch_size=2, num_workers=2)
    assert [b.tolist() for b in stream] == [[0, 1], [5, 6], [2, 3], [7, 8], [4]]
    assert [b.tolist() for b in DataLoader(Stream(5), batch_size=2)] == [[0, 1], [2, 3], [4]]
    broken = DataLoader(Subset(Numbers(100), [0, 99]), batch_size=1, num_workers=1)
    with pytest.raises(ValueError, match="Caught ValueError in DataLoader worker process 0"):
        list(broken)
