"""Training runs end to end: a compiled CNN step against the same steps run eagerly, and dropout
randomness inside compiled steps (fresh masks each call, reproducible under manual_seed)."""

from __future__ import annotations

import numpy as np
import pytest
from test_compile import _make_step

import jitgrad as jg
import jitgrad.nn as nn
import jitgrad.nn.functional as F
from jitgrad import optim

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("JITGRAD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "jg-cache"))


def _cnn():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.25),
        nn.Conv2d(4, 6, 3, bias=False),  # a bias here: gradient 0 + rounding
        nn.BatchNorm2d(6),
        nn.GELU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(6, 5),
    )


def _batches(n):
    # two fixed batches in turn: random labels, but few enough to be learnt in 20 steps
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 5, (2, 8))
    for i in range(n):
        yield jg.from_numpy(x[i % 2]), jg.from_numpy(y[i % 2])


def _train(compiled: bool, steps: int = 20):
    jg.manual_seed(3)
    model = _cnn()
    opt = optim.Adam(model.parameters(), lr=0.01)
    step = _make_step(model, opt)
    if compiled:
        step = jg.compile(step, backend="numba")
    jg.manual_seed(4)  # the dropout masks: the same draws in both runs
    losses = [step(x, y).item() for x, y in _batches(steps)]
    return model, losses, step


def test_compiled_cnn_training_tracks_eager_over_20_steps():
    eager_model, eager_losses, _ = _train(compiled=False)
    model, losses, step = _train(compiled=True)
    assert step.stats.traces <= 2 and step.stats.cache_hits >= 18, step.stats
    # float32, reordered sums and polynomial exp in compiled loops: close, not bit-equal
    np.testing.assert_allclose(losses, eager_losses, rtol=2e-3, atol=1e-4)
    assert losses[-1] < losses[0]
    state, eager_state = model.state_dict(), eager_model.state_dict()
    for name, value in eager_state.items():
        np.testing.assert_allclose(
            state[name].numpy(), value.numpy(), rtol=2e-3, atol=2e-4, err_msg=name
        )
    assert int(state["5.num_batches_tracked"].item()) == 20


def test_compiled_dropout_draws_fresh_masks_and_follows_manual_seed():
    @jg.compile(backend="numba")
    def drop(x):
        return F.dropout(x, 0.5)

    x = jg.ones(4096)
    jg.manual_seed(7)
    first, second = drop(x).numpy(), drop(x).numpy()
    assert not np.array_equal(first, second)  # the generator state advances each call
    for mask in (first, second):
        assert set(np.unique(mask)) <= {0.0, 2.0} and 0.45 < (mask == 0).mean() < 0.55
    jg.manual_seed(7)
    np.testing.assert_array_equal(drop(x).numpy(), first)
    jg.manual_seed(7)
    np.testing.assert_array_equal(F.dropout(x, 0.5).numpy(), first)  # eager draws the same
    assert drop.stats.traces == 1
