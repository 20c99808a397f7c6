"""Learning-rate schedulers: values against closed forms and PyTorch, state_dict, warnings, and a
compiled training step that sees the scheduled rates without retracing."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from test_compile import _make_step

import jitgrad as jg
import jitgrad.nn as nn
import jitgrad.optim as optim
from jitgrad.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler, StepLR


def _opt(lrs=(0.1,), cls=optim.SGD, **kw):
    groups = [{"params": [nn.Parameter(jg.zeros(2))], "lr": lr} for lr in lrs]
    return cls(groups, **kw)


def _run(sched, n):
    """lrs (per group) after construction and after each of n epochs."""
    out = [sched.get_last_lr()]
    for _ in range(n):
        sched.optimizer.step()
        sched.step()
        out.append(sched.get_last_lr())
    return np.array(out)


def test_construction_performs_the_initial_step():
    opt = _opt((0.1, 0.02))
    sched = StepLR(opt, step_size=3)
    assert sched.last_epoch == 0 and sched._step_count == 1
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.02]
    assert sched.base_lrs == [0.1, 0.02] and sched.get_last_lr() == [0.1, 0.02]
    assert isinstance(sched, LRScheduler)
    with pytest.raises(TypeError, match="is not an Optimizer"):
        StepLR(object(), 3)


def test_step_lr_matches_closed_form():
    lrs = _run(StepLR(_opt((0.1, 0.3)), step_size=3, gamma=0.5), 10)
    epochs = np.arange(11)
    for g, base in enumerate((0.1, 0.3)):
        np.testing.assert_allclose(lrs[:, g], base * 0.5 ** (epochs // 3), rtol=1e-15)


@pytest.mark.parametrize("eta_min", [0.0, 0.01])
def test_cosine_matches_closed_form_including_past_t_max(eta_min):
    T = 5
    lrs = _run(CosineAnnealingLR(_opt((0.1,)), T_max=T, eta_min=eta_min), 3 * T)
    t = np.arange(3 * T + 1)
    closed = eta_min + (0.1 - eta_min) * (1 + np.cos(np.pi * t / T)) / 2
    np.testing.assert_allclose(lrs[:, 0], closed, rtol=1e-12, atol=1e-15)


def test_lambda_lr_one_function_or_one_per_group():
    lrs = _run(LambdaLR(_opt((0.1, 0.2)), lambda e: 0.9**e), 4)
    np.testing.assert_allclose(lrs, [[0.1 * 0.9**e, 0.2 * 0.9**e] for e in range(5)], rtol=1e-15)
    lrs = _run(LambdaLR(_opt((0.1, 0.2)), [lambda e: e + 1, lambda e: 1 / (e + 1)]), 3)
    np.testing.assert_allclose(lrs, [[0.1 * (e + 1), 0.2 / (e + 1)] for e in range(4)])
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas, but got 1"):
        LambdaLR(_opt((0.1, 0.2)), [lambda e: 1.0])


def test_chainable_forms_follow_external_changes():
    opt = _opt((0.1,))
    sched = StepLR(opt, step_size=2, gamma=0.5)
    opt.param_groups[0]["lr"] = 1.0  # e.g. a manual change between epochs
    opt.step()
    sched.step()
    assert sched.get_last_lr() == [1.0]
    opt.step()
    sched.step()
    assert sched.get_last_lr() == [0.5]


def test_state_dict_resumes_the_schedule():
    full = _run(CosineAnnealingLR(_opt((0.1,)), T_max=7, eta_min=0.001), 10)
    opt = _opt((0.1,))
    sched = CosineAnnealingLR(opt, T_max=7, eta_min=0.001)
    _run(sched, 4)
    state = sched.state_dict()
    assert "optimizer" not in state and state["last_epoch"] == 4
    opt2 = _opt((0.1,))
    sched2 = CosineAnnealingLR(opt2, T_max=7, eta_min=0.001)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(state)
    np.testing.assert_array_equal(_run(sched2, 6), full[4:])


def test_resuming_with_last_epoch_needs_initial_lr():
    with pytest.raises(KeyError, match=r"param 'initial_lr' is not specified in param_groups\[0\]"):
        StepLR(_opt(), 3, last_epoch=4)
    opt = _opt((0.1,))
    StepLR(opt, 3)
    sched = StepLR(opt, 3, gamma=0.5, last_epoch=4)  # the closed form at the resumed epoch
    assert sched.last_epoch == 5


class _Warmup:
    def __init__(self, n):
        self.n = n

    def __call__(self, epoch):
        return min(1.0, (epoch + 1) / self.n)


def test_lambda_state_dict_keeps_callable_objects_only():
    sched = LambdaLR(_opt((0.1, 0.2)), [_Warmup(4), lambda e: 1.0])
    state = sched.state_dict()
    assert state["lr_lambdas"] == [{"n": 4}, None]
    other = LambdaLR(_opt((0.1, 0.2)), [_Warmup(10), lambda e: 1.0])
    other.load_state_dict(state)
    assert other.lr_lambdas[0].n == 4 and "lr_lambdas" in state


def test_warnings_follow_pytorch():
    opt = _opt()
    sched = StepLR(opt, 2)
    with pytest.warns(UserWarning, match=r"before `optimizer.step\(\)`"):
        sched.step()
    with pytest.warns(UserWarning, match=r"please use `get_last_lr\(\)`"):
        sched.get_lr()
    opt = _opt()
    sched = StepLR(opt, 2, gamma=0.5)
    opt.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched.step()
    with pytest.warns(UserWarning, match="epoch parameter"):
        sched.step(4)  # deprecated: the closed form at epoch 4
    assert sched.get_last_lr() == [0.1 * 0.25]


@pytest.mark.torch
def test_values_match_torch():
    torch = pytest.importorskip("torch")
    TL = torch.optim.lr_scheduler

    def torch_run(make, lrs, n):
        ps = [{"params": [torch.zeros(2, requires_grad=True)], "lr": lr} for lr in lrs]
        return _run(make(torch.optim.SGD(ps), TL), n)  # the same epoch loop on torch's classes

    cases = [
        lambda opt, M: M.StepLR(opt, step_size=3, gamma=0.3),
        lambda opt, M: M.CosineAnnealingLR(opt, T_max=6, eta_min=0.002),
        lambda opt, M: M.LambdaLR(opt, [lambda e: 0.95**e, lambda e: 1 / (1 + e)]),
    ]
    import jitgrad.optim.lr_scheduler as JL

    for make in cases:
        ours = _run(make(_opt((0.1, 0.05)), JL), 20)
        np.testing.assert_array_equal(ours, torch_run(make, (0.1, 0.05), 20))


# -- compiled training steps ----------------------------------------------------------------------
SCHEDULERS = {
    "step": lambda opt: StepLR(opt, step_size=2, gamma=0.5),
    "cosine": lambda opt: CosineAnnealingLR(opt, T_max=4, eta_min=1e-3),
    "lambda": lambda opt: LambdaLR(opt, lambda e: 1.0 / (1 + e)),
}
OPTIMIZERS = {
    "sgd": lambda ps: optim.SGD(ps, lr=0.1),
    "adam": lambda ps: optim.Adam(ps, lr=0.05),
}


def _setup(make_opt, make_sched):
    jg.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    opt = make_opt(model.parameters())
    sched = make_sched(opt)
    return model, sched, _make_step(model, opt)


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("sched_name", list(SCHEDULERS))
def test_scheduled_rates_reach_a_compiled_step_without_retracing(sched_name, opt_name):
    eager_model, eager_sched, eager_step = _setup(OPTIMIZERS[opt_name], SCHEDULERS[sched_name])
    comp_model, comp_sched, step = _setup(OPTIMIZERS[opt_name], SCHEDULERS[sched_name])
    step = jg.compile(step, backend="interpreter")
    rng = np.random.default_rng(0)
    lrs = set()
    for _epoch in range(6):
        for _batch in range(3):
            x = jg.tensor(rng.standard_normal((5, 4)).astype(np.float32))
            y = jg.tensor(rng.integers(0, 3, 5))
            assert step(x, y).item() == eager_step(x, y).item()
        eager_sched.step()
        comp_sched.step()
        lrs.add(comp_sched.get_last_lr()[0])
    assert len(lrs) >= 4  # the schedule really moved
    for a, b in zip(eager_model.parameters(), comp_model.parameters()):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    s = step.stats
    # one program: Adam's first call creates its state and traces once more ("warm-up"); a
    # changed learning rate never retraces
    assert s.compiles == 1, s
    assert all(r.startswith("warm-up") for r in s.retrace_reasons), s.retrace_reasons
    assert s.traces == (1 if opt_name == "sgd" else 2) and s.cache_hits == s.calls - s.traces


def test_cosine_closed_form_reference_values():
    # hand-computed: 0.1 * (1 + cos(pi t / 4)) / 2 for t = 0..4
    lrs = _run(CosineAnnealingLR(_opt((0.1,)), T_max=4), 4)[:, 0]
    expected = [0.1, 0.1 * (1 + math.sqrt(0.5)) / 2, 0.05, 0.1 * (1 - math.sqrt(0.5)) / 2, 0.0]
    np.testing.assert_allclose(lrs, expected, rtol=1e-13, atol=1e-17)
