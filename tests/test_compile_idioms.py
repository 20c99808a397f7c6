"""Idiomatic training code under ``jitgrad.compile`` on the Numba backend, each step against the
same steps run eagerly: a physics-informed loss (nested ``autograd.grad`` of a leaf made inside
the step), a WGAN-GP critic step (gradient penalty), ``train()``/``eval()`` switching (one trace
per mode), ``no_grad`` blocks inside the step, and the GPT demo's loop (a learning rate written
into ``param_groups`` before each step, clipping, tied weights, both kinds of causal
attention)."""

from __future__ import annotations

import numpy as np
import pytest

import jitgrad as jg
import jitgrad.nn as nn
from jitgrad import optim

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("error")]


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("JITGRAD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "jg-cache"))


def _run(make, compiled: bool, steps: int):
    """``make()`` -> (step, args_for(i), model): the losses and final state of ``steps`` calls."""
    jg.manual_seed(0)
    step, args_for, model = make()
    if compiled:
        step = jg.compile(step, backend="numba", wait=True)
    losses = [float(step(*args_for(i))) for i in range(steps)]
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    return losses, state, step


def _agree(make, steps=5, rtol=2e-4, atol=1e-6):
    eager_losses, eager_state, _ = _run(make, False, steps)
    losses, state, step = _run(make, True, steps)
    np.testing.assert_allclose(losses, eager_losses, rtol=rtol, atol=atol)
    for name, value in eager_state.items():
        np.testing.assert_allclose(state[name], value, rtol=rtol, atol=atol, err_msg=name)
    return step


def _pinn():
    net = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = optim.Adam(net.parameters(), lr=1e-2)
    xs = jg.tensor(np.linspace(0, 1, 32, dtype=np.float32)[:, None])

    def step(x):
        x = x.clone().requires_grad_(True)  # a leaf made inside the step
        u = net(x)
        (du,) = jg.autograd.grad(u.sum(), x, create_graph=True)
        (d2u,) = jg.autograd.grad(du.sum(), x, create_graph=True)
        loss = ((d2u + u) ** 2).mean() + (u[0] - 1.0).pow(2).sum()
        opt.zero_grad()
        loss.backward()  # also accumulates into x.grad, which dies with x
        opt.step()
        return loss.detach()

    return step, lambda i: (xs,), net


def test_physics_informed_loss_with_nested_grads_compiles_and_tracks_eager():
    step = _agree(_pinn)
    assert step.stats.compiles >= 1 and step.stats.eager_calls <= 1, step.stats


def _wgan_gp():
    critic = nn.Sequential(nn.Linear(4, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
    opt = optim.Adam(critic.parameters(), lr=1e-3, betas=(0.5, 0.9))
    rng = np.random.default_rng(1)
    data = [
        (
            jg.tensor(rng.standard_normal((8, 4), dtype=np.float32)),
            jg.tensor(rng.standard_normal((8, 4), dtype=np.float32) + 1.0),
            jg.tensor(rng.random((8, 1), dtype=np.float32)),
        )
        for _ in range(3)
    ]

    def step(real, fake, alpha):
        mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        (g,) = jg.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
        penalty = ((g.norm(2, dim=1) - 1) ** 2).mean()
        loss = critic(fake).mean() - critic(real).mean() + 10.0 * penalty
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    return step, lambda i: data[i % 3], critic


def test_wgan_gp_critic_step_compiles_and_tracks_eager():
    _agree(_wgan_gp, steps=6)


def _modes():
    model = nn.Sequential(
        nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Dropout(0.3), nn.Linear(12, 3)
    )
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(2)
    x = jg.tensor(rng.standard_normal((10, 6), dtype=np.float32))
    y = jg.tensor(rng.integers(0, 3, 10))

    def step(x, y, train):
        model.train(train)
        out = model(x)
        loss = nn.functional.cross_entropy(out, y)
        if train:
            opt.zero_grad()
            loss.backward()
            opt.step()
        return loss.detach()

    return step, None, model, x, y


def test_train_eval_switching_keeps_one_trace_per_mode():
    def make():
        step, _, model, x, y = _modes()

        def run(i):  # the mode is module state the compiled step reads, not an argument
            model.train(i % 3 != 2)
            return (x, y, model.training)

        return (lambda x, y, train: step(x, y, train)), run, model

    step = _agree(make, steps=9)
    assert step.stats.traces <= 4, step.stats  # warm-up + one per mode
    assert step.stats.cache_hits >= 5, step.stats


def test_no_grad_block_inside_the_step():
    def make():
        net = nn.Linear(5, 2)
        ema = [jg.zeros_like(p) for p in net.parameters()]
        opt = optim.SGD(net.parameters(), lr=0.1)
        rng = np.random.default_rng(3)
        x = jg.tensor(rng.standard_normal((7, 5), dtype=np.float32))

        def step(x):
            loss = net(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            with jg.no_grad():
                for p, e in zip(net.parameters(), ema):
                    e.mul_(0.9).add_(p, alpha=0.1)
                monitor = net(x).abs().max()
            opt.step()
            assert not monitor.requires_grad
            return loss.detach() + 0 * monitor

        return step, lambda i: (x,), net

    _agree(make)


@pytest.mark.parametrize("manual", [False, True], ids=["sdpa", "masked-softmax"])
def test_gpt_loop_compiles_once_and_tracks_eager(manual):
    from jitgrad import demo_gpt

    cfg = demo_gpt.GPTConfig(vocab=11, block=6, layers=2, heads=2, width=8, manual_attention=manual)
    rng = np.random.default_rng(4)
    batches = rng.integers(0, cfg.vocab, (2, 3, cfg.block + 1))  # two batches, in turn

    def make():
        model = demo_gpt.build_gpt(jg, cfg)
        opt = demo_gpt.make_optimizer(jg, model, lr=1e-2)
        assert model.head.weight is model.tok.weight  # tied
        assert len(list(model.parameters())) == len({id(p) for p in model.parameters()})

        def step(x, y):
            return demo_gpt.gpt_step(jg, model, opt, x, y, clip=0.5)

        def args_for(i):
            for group in opt.param_groups:  # a new learning rate before every step
                group["lr"] = demo_gpt.learning_rate(i, 6, 1e-2, 2)
            b = batches[i % 2]
            return jg.from_numpy(b[:, :-1].copy()), jg.from_numpy(b[:, 1:].copy())

        return step, args_for, model

    step = _agree(make, steps=6, rtol=5e-4, atol=1e-5)
    assert step.stats.traces <= 2, step.stats.retrace_reasons  # the warm-up, then one trace
    assert step.stats.cache_hits >= 4, step.stats
