"""Datasets and DataLoader: batching, shuffling with jitgrad generators, collation, and a compiled
step over an epoch whose last batch is partial."""

from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest
from test_compile import _make_step

import jitgrad as jg
import jitgrad.nn as nn
import jitgrad.nn.functional as F
import jitgrad.optim as optim
import jitgrad.utils.data as data
from jitgrad.utils.data import DataLoader, Dataset, TensorDataset


def _xy(n=10):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    y = np.arange(n, dtype=np.int64) * 10
    return x, y


def test_tensor_dataset():
    x, y = _xy(5)
    ds = TensorDataset(jg.tensor(x), jg.tensor(y))
    assert len(ds) == 5
    a, b = ds[2]
    np.testing.assert_array_equal(a.numpy(), x[2])
    assert b.item() == 20
    with pytest.raises(ValueError, match="Size mismatch between tensors"):
        TensorDataset(jg.zeros(3, 2), jg.zeros(4))


@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_in_order_with_a_partial_last_batch(drop_last):
    x, y = _xy(10)
    dl = DataLoader(TensorDataset(jg.tensor(x), jg.tensor(y)), batch_size=4, drop_last=drop_last)
    batches = list(dl)
    assert len(dl) == len(batches) == (2 if drop_last else 3)
    for i, (bx, by) in enumerate(batches):
        np.testing.assert_array_equal(bx.numpy(), x[4 * i : 4 * i + 4])
        np.testing.assert_array_equal(by.numpy(), y[4 * i : 4 * i + 4])
        assert bx.dtype == jg.float32 and by.dtype == jg.int64
    if not drop_last:
        assert batches[-1][0].shape == (2, 3)


def test_tensor_dataset_batches_are_one_gather_per_tensor(monkeypatch):
    x, y = _xy(10)
    calls = []
    real = data.dataloader.index_select
    monkeypatch.setattr(data.dataloader, "index_select", lambda *a: calls.append(1) or real(*a))

    def per_sample(self, index):
        raise AssertionError("the TensorDataset fast path indexed one sample")

    monkeypatch.setattr(TensorDataset, "__getitem__", per_sample)
    dl = DataLoader(TensorDataset(jg.tensor(x), jg.tensor(y)), batch_size=3, shuffle=True)
    assert sum(1 for _ in dl) == 4
    assert len(calls) == 2 * 4


def test_batches_carry_no_history_and_leave_grad_mode_alone():
    w = jg.randn(6, 2, requires_grad=True)
    dl = DataLoader(TensorDataset(w * 2), batch_size=4)
    for (b,) in dl:
        assert not b.requires_grad and b.grad_fn is None
        # the loop body runs with gradients on (the loader must not leave no_grad active)
        assert jg.is_grad_enabled()
        b.mul_(0.0)  # a batch is a copy, not a view of the dataset
    assert (w * 2).detach().numpy().any()
    dl = DataLoader([(np.ones(2, np.float32), 1.0)] * 3, batch_size=2)
    for _ in dl:
        assert jg.is_grad_enabled()


def test_shuffle_draws_from_the_given_generator():
    n = 11
    x, y = _xy(n)
    ds = TensorDataset(jg.tensor(x), jg.tensor(y))

    def epoch_orders(loader, epochs=3):
        return [np.concatenate([by.numpy() // 10 for _, by in loader]) for _ in range(epochs)]

    g = jg.Generator().manual_seed(7)
    orders = epoch_orders(DataLoader(ds, batch_size=4, shuffle=True, generator=g))
    for o in orders:
        np.testing.assert_array_equal(np.sort(o), np.arange(n))  # a permutation
    assert not all(np.array_equal(orders[0], o) for o in orders[1:])  # epochs differ
    ref = jg.Generator().manual_seed(7)
    for o in orders:
        np.testing.assert_array_equal(o, jg.randperm(n, generator=ref).numpy())
    again = epoch_orders(DataLoader(ds, batch_size=4, shuffle=True, generator=g.manual_seed(7)))
    np.testing.assert_array_equal(np.stack(orders), np.stack(again))
    # without a generator: the default one, reproducible with manual_seed
    jg.manual_seed(3)
    a = epoch_orders(DataLoader(ds, batch_size=5, shuffle=True), 2)
    jg.manual_seed(3)
    b = epoch_orders(DataLoader(ds, batch_size=5, shuffle=True), 2)
    np.testing.assert_array_equal(np.stack(a), np.stack(b))


Pair = namedtuple("Pair", ["left", "right"])


class _Samples(Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return {
            "image": np.full((2, 2), i, dtype=np.float32),
            "label": i,
            "weight": 0.5 * i,
            "flag": i % 2 == 0,
            "name": f"s{i}",
            "pair": (jg.tensor([i, -i]), [i, 2 * i]),
            "nt": Pair(i, jg.tensor(float(i))),
        }


def test_default_collate_stacks_nested_samples():
    (batch,) = list(DataLoader(_Samples(), batch_size=5))
    idx = np.arange(5)
    np.testing.assert_array_equal(
        batch["image"].numpy(), np.stack([np.full((2, 2), i) for i in idx])
    )
    assert batch["image"].dtype == jg.float32
    assert batch["label"].dtype == jg.int64 and batch["label"].tolist() == idx.tolist()
    assert batch["weight"].dtype == jg.float64
    np.testing.assert_array_equal(batch["weight"].numpy(), 0.5 * idx)
    assert batch["flag"].dtype == jg.bool and batch["flag"].tolist() == [True, False] * 2 + [True]
    assert list(batch["name"]) == [f"s{i}" for i in idx]
    first, second = batch["pair"]
    np.testing.assert_array_equal(first.numpy(), np.stack([idx, -idx], 1).astype(np.float32))
    assert [t.tolist() for t in second] == [idx.tolist(), (2 * idx).tolist()]
    assert isinstance(batch["nt"], Pair) and batch["nt"].left.tolist() == idx.tolist()


def test_general_datasets_and_options():
    ds = _Samples()
    assert [len(b["label"]) for b in DataLoader(ds, batch_size=2)] == [2, 2, 1]
    assert len(DataLoader(ds, batch_size=2, drop_last=True)) == 2
    got = [b for b in DataLoader(ds, batch_size=2, collate_fn=lambda s: [d["label"] for d in s])]
    assert got == [[0, 1], [2, 3], [4]]
    labels = [b["label"].tolist() for b in DataLoader(ds, batch_size=2, sampler=[4, 0, 2])]
    assert labels == [[4, 0], [2]]
    labels = [b["label"].tolist() for b in DataLoader(ds, batch_sampler=[[1, 3], [0]])]
    assert labels == [[1, 3], [0]]
    singles = list(DataLoader(ds, batch_size=None))
    assert [s["label"] for s in singles] == list(range(5))

    # a TensorDataset subclass with its own __getitem__ goes through it
    class Doubled(TensorDataset):
        def __getitem__(self, i):
            return (self.tensors[0][i] * 2,)

    (b,) = list(DataLoader(Doubled(jg.arange(3.0)), batch_size=3))[0]
    assert b.tolist() == [0.0, 2.0, 4.0]
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        DataLoader(ds, sampler=[0], shuffle=True)
    with pytest.raises(ValueError, match="batch_sampler option is mutually exclusive"):
        DataLoader(ds, batch_size=2, batch_sampler=[[0]])
    with pytest.raises(ValueError, match="batch_size should be a positive integer"):
        DataLoader(ds, batch_size=0)
    with pytest.raises(RuntimeError, match="each element in list of batch should be of equal"):
        list(DataLoader([[1, 2], [3]], batch_size=2))


@pytest.mark.slow
def test_partial_last_batch_retraces_once_without_recompiling(tmp_path, monkeypatch):
    monkeypatch.setenv("JITGRAD_CACHE_DIR", str(tmp_path / "cache"))  # no warm disk cache
    jg.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = optim.SGD(model.parameters(), lr=0.1)
    step = jg.compile(_make_step(model, opt, F.mse_loss), backend="numba")
    dl = DataLoader(TensorDataset(jg.randn(10, 3), jg.randn(10, 2)), batch_size=4, shuffle=True)
    batches = list(dl)  # sizes 4, 4, 2
    step(*batches[0])
    compiled = step.stats.backend_compiles
    for x, y in batches[1:]:
        step(x, y)
    first = (step.stats.backend_compiles, step.stats.traces, step.stats.cache_hits)
    # one trace per batch size, and the partial batch compiles nothing: its kernels are the
    # ones already compiled (sizes are arguments)
    assert first[:2] == (compiled, 2), step.stats
    for x, y in dl:
        step(x, y)
    s = step.stats
    assert s.backend_compiles == first[0] and s.traces == first[1], s
    assert s.cache_hits == first[2] + len(dl)
