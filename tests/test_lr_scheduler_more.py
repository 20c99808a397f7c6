"""MultiplicativeLR, MultiStepLR, ConstantLR, LinearLR, ExponentialLR, PolynomialLR, SequentialLR,
ChainedScheduler, ReduceLROnPlateau, CyclicLR, CosineAnnealingWarmRestarts and OneCycleLR: their
learning-rate (and momentum) sequences against PyTorch's, state_dict round trips, errors, and
compiled training steps driven by each without a retrace."""

from __future__ import annotations

import numpy as np
import pytest

import jitgrad as jg
import jitgrad.nn as nn
import jitgrad.optim as optim
import jitgrad.optim.lr_scheduler as JL

torch = pytest.importorskip("torch")
TL = torch.optim.lr_scheduler


def _momenta(opt):
    return [g["betas"][0] if "betas" in g else g.get("momentum") for g in opt.param_groups]


def _run(sched, opt, n, metrics=None):
    """lrs and momenta (per group) after construction and after each of n steps."""
    out = [(list(sched.get_last_lr()), _momenta(opt))]
    for i in range(n):
        opt.step()
        if metrics is None:
            sched.step()
        else:
            sched.step(metrics[i])
        out.append((list(sched.get_last_lr()), _momenta(opt)))
    return out


def _opts(opt_name, lrs=(0.1, 0.05)):
    mine = getattr(optim, opt_name)(
        [{"params": [nn.Parameter(jg.zeros(2))], "lr": lr} for lr in lrs], **OPT_KW[opt_name]
    )
    theirs = getattr(torch.optim, opt_name)(
        [{"params": [torch.zeros(2, requires_grad=True)], "lr": lr} for lr in lrs],
        **OPT_KW[opt_name],
    )
    return mine, theirs


OPT_KW = {"SGD": dict(momentum=0.9), "Adam": dict(), "RMSprop": dict(momentum=0.5)}

# (name, how to build it from (optimizer, module with the classes), optimizer, steps)
CASES = [
    ("multiplicative", lambda o, M: M.MultiplicativeLR(o, lambda e: 0.9), "SGD", 12),
    ("multistep", lambda o, M: M.MultiStepLR(o, [2, 5, 5, 9], gamma=0.5), "SGD", 15),
    ("constant", lambda o, M: M.ConstantLR(o, factor=0.25, total_iters=4), "SGD", 10),
    ("linear", lambda o, M: M.LinearLR(o, start_factor=0.2, total_iters=6), "SGD", 12),
    ("linear-down", lambda o, M: M.LinearLR(o, 1.0, 0.1, total_iters=5), "SGD", 9),
    ("exponential", lambda o, M: M.ExponentialLR(o, gamma=0.8), "SGD", 20),
    ("polynomial", lambda o, M: M.PolynomialLR(o, total_iters=7, power=2.0), "SGD", 12),
    ("polynomial-1", lambda o, M: M.PolynomialLR(o), "Adam", 8),
    (
        "sequential",
        lambda o, M: M.SequentialLR(
            o, [M.LinearLR(o, 0.1, total_iters=3), M.ExponentialLR(o, 0.7)], milestones=[3]
        ),
        "SGD",
        12,
    ),
    (
        "sequential-3",
        lambda o, M: M.SequentialLR(
            o,
            [M.ConstantLR(o, 0.5, 2), M.StepLR(o, 2, 0.5), M.CosineAnnealingLR(o, 5)],
            milestones=[3, 7],
        ),
        "Adam",
        16,
    ),
    (
        "chained",
        lambda o, M: M.ChainedScheduler([M.ConstantLR(o, 0.1, 4), M.ExponentialLR(o, 0.9)]),
        "SGD",
        10,
    ),
    (
        "chained-optimizer",
        lambda o, M: M.ChainedScheduler(
            [M.LinearLR(o, 0.5, total_iters=3), M.MultiStepLR(o, [4, 6])], optimizer=o
        ),
        "SGD",
        10,
    ),
    ("cyclic", lambda o, M: M.CyclicLR(o, 0.01, 0.1, step_size_up=4), "SGD", 25),
    (
        "cyclic-triangular2",
        lambda o, M: M.CyclicLR(o, [0.01, 0.02], 0.1, 3, 5, mode="triangular2"),
        "RMSprop",
        30,
    ),
    (
        "cyclic-exp-range",
        lambda o, M: M.CyclicLR(o, 0.01, 0.1, 3, mode="exp_range", gamma=0.9),
        "Adam",
        25,
    ),
    (
        "cyclic-scale-fn",
        lambda o, M: M.CyclicLR(
            o,
            0.01,
            0.1,
            2,
            scale_fn=lambda x: 1 / (1 + x),
            scale_mode="iterations",
            cycle_momentum=False,
        ),  # fmt: skip
        "SGD",
        20,
    ),
    ("warm-restarts", lambda o, M: M.CosineAnnealingWarmRestarts(o, 3), "SGD", 20),
    (
        "warm-restarts-mult",
        lambda o, M: M.CosineAnnealingWarmRestarts(o, 2, T_mult=2, eta_min=0.001),
        "SGD",
        30,
    ),
    ("onecycle", lambda o, M: M.OneCycleLR(o, 0.5, total_steps=20), "SGD", 19),
    (
        "onecycle-linear-3",
        lambda o, M: M.OneCycleLR(
            o,
            [0.5, 0.2],
            epochs=4,
            steps_per_epoch=5,
            anneal_strategy="linear",
            three_phase=True,
            pct_start=0.25,
        ),  # fmt: skip
        "Adam",
        20,
    ),
    (
        "onecycle-no-momentum",
        lambda o, M: M.OneCycleLR(o, 0.5, 12, cycle_momentum=False, div_factor=10.0),
        "SGD",
        12,
    ),
]
IDS = [c[0] for c in CASES]


@pytest.mark.torch
@pytest.mark.parametrize("name,make,opt_name,n", CASES, ids=IDS)
def test_sequences_match_torch(name, make, opt_name, n):
    mine, theirs = _opts(opt_name)
    ours = _run(make(mine, JL), mine, n)
    want = _run(make(theirs, TL), theirs, n)
    assert ours == want  # the same Python arithmetic: equal, not just close
    assert len({tuple(lr) for lr, _ in ours}) >= 2  # the schedule moved


def test_sequences_closed_forms():
    # written-out references for a few, independent of PyTorch
    opt = optim.SGD([nn.Parameter(jg.zeros(1))], lr=1.0)
    lrs = [lr[0] for lr, _ in _run(JL.ExponentialLR(opt, 0.5), opt, 5)]
    np.testing.assert_allclose(lrs, 0.5 ** np.arange(6), rtol=1e-15)
    opt = optim.SGD([nn.Parameter(jg.zeros(1))], lr=1.0)
    lrs = [lr[0] for lr, _ in _run(JL.LinearLR(opt, 0.25, 1.0, total_iters=3), opt, 5)]
    np.testing.assert_allclose(lrs, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0], rtol=1e-15)
    opt = optim.SGD([nn.Parameter(jg.zeros(1))], lr=1.0)
    lrs = [lr[0] for lr, _ in _run(JL.CosineAnnealingWarmRestarts(opt, 2), opt, 4)]
    np.testing.assert_allclose(lrs, [1.0, 0.5, 1.0, 0.5, 1.0], rtol=1e-15)


PLATEAU = [
    dict(),
    dict(patience=2, factor=0.5),
    dict(mode="max", patience=1, threshold=0.05, cooldown=2),
    dict(patience=0, threshold_mode="abs", threshold=0.5, min_lr=[0.03, 0.01]),
    dict(patience=1, factor=0.5, min_lr=0.02, eps=0.01),
]


@pytest.mark.torch
@pytest.mark.parametrize("kw", PLATEAU, ids=[str(i) for i in range(len(PLATEAU))])
def test_reduce_on_plateau_matches_torch(kw):
    rng = np.random.default_rng(1)
    metrics = list(np.round(1 + np.cumsum(rng.normal(0, 0.3, 40)) * 0.1, 3))
    results = []
    for M, lib in ((JL, optim), (TL, torch.optim)):
        p = nn.Parameter(jg.zeros(2)) if lib is optim else torch.zeros(2, requires_grad=True)
        opt = lib.SGD([{"params": [p], "lr": 0.1}, {"params": [], "lr": 0.05}][:1], lr=0.1)
        if isinstance(kw.get("min_lr"), list):
            q = nn.Parameter(jg.zeros(1)) if lib is optim else torch.zeros(1, requires_grad=True)
            opt.add_param_group({"params": [q], "lr": 0.05})
        sched = M.ReduceLROnPlateau(opt, **kw)
        results.append(_run(sched, opt, 40, metrics=metrics))
        results.append({k: v for k, v in sched.state_dict().items() if k not in ("_last_lr",)})
    assert results[0] == results[2]
    assert results[1] == results[3]
    assert len({tuple(lr) for lr, _ in results[0]}) > 1


def test_reduce_on_plateau_errors_and_state():
    opt = optim.SGD([nn.Parameter(jg.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match=r"Factor should be < 1.0."):
        JL.ReduceLROnPlateau(opt, factor=1.0)
    with pytest.raises(ValueError, match="mode avg is unknown!"):
        JL.ReduceLROnPlateau(opt, mode="avg")
    with pytest.raises(ValueError, match="threshold mode x is unknown!"):
        JL.ReduceLROnPlateau(opt, threshold_mode="x")
    with pytest.raises(ValueError, match="expected 1 min_lrs, got 2"):
        JL.ReduceLROnPlateau(opt, min_lr=[0.1, 0.2])
    sched = JL.ReduceLROnPlateau(opt, patience=1)
    for m in (1.0, 1.0, 1.0):
        sched.step(jg.tensor(m))  # a 0-d tensor metric is read with float()
    assert sched.get_last_lr() == [pytest.approx(0.01)]
    other = JL.ReduceLROnPlateau(optim.SGD([nn.Parameter(jg.zeros(1))], lr=0.1))
    other.load_state_dict(sched.state_dict())
    assert other.best == 1.0 and other.patience == 1 and other.num_bad_epochs == 0
    assert isinstance(sched, JL.LRScheduler)


@pytest.mark.torch
def test_warm_restarts_fractional_epochs_match_torch():
    out = []
    for M, opt in zip((JL, TL), _opts("SGD")):
        sched = M.CosineAnnealingWarmRestarts(opt, T_0=3, T_mult=2, eta_min=0.01)
        lrs = []
        for epoch in range(10):
            for batch in range(4):
                opt.step()
                sched.step(epoch + batch / 4)
                lrs.append(sched.get_last_lr())
        sched.step(25)  # a jump, into the third period
        lrs.append(sched.get_last_lr())
        out.append((lrs, sched.T_i, sched.T_cur, sched.last_epoch))
    assert out[0] == out[1]
    opt = _opts("SGD")[0]
    with pytest.raises(ValueError, match="Expected non-negative epoch, but got -1"):
        JL.CosineAnnealingWarmRestarts(opt, 2).step(-1)


ERRORS = [
    (lambda o, M: M.ConstantLR(o, factor=1.5), ValueError, "Constant multiplicative factor"),
    (lambda o, M: M.LinearLR(o, start_factor=0), ValueError, "Starting multiplicative factor"),
    (lambda o, M: M.LinearLR(o, end_factor=2), ValueError, "Ending multiplicative factor"),
    (lambda o, M: M.CosineAnnealingWarmRestarts(o, 0), ValueError, "positive integer T_0"),
    (lambda o, M: M.CosineAnnealingWarmRestarts(o, 2, 0), ValueError, "integer T_mult >= 1"),
    (lambda o, M: M.OneCycleLR(o, 0.1), ValueError, "You must define either total_steps"),
    (lambda o, M: M.OneCycleLR(o, 0.1, 0), ValueError, "positive integer total_steps"),
    (lambda o, M: M.OneCycleLR(o, 0.1, 5, pct_start=1), ValueError, "pct_start"),
    (lambda o, M: M.OneCycleLR(o, 0.1, 5, anneal_strategy="x"), ValueError, "anneal_strategy"),
    (lambda o, M: M.OneCycleLR(o, [0.1], 5), ValueError, "max_lr must have the same length"),
    (lambda o, M: M.CyclicLR(o, 0.1, 1, mode="x"), ValueError, "mode is invalid"),
    (lambda o, M: M.SequentialLR(o, [], []), ValueError, "expects at least one scheduler"),
    (
        lambda o, M: M.SequentialLR(o, [M.ExponentialLR(o, 0.5)], [2]),
        ValueError,
        "one more than the number of milestone",
    ),
    (
        lambda o, M: M.SequentialLR(o, [M.ExponentialLR(o, 0.5), M.ReduceLROnPlateau(o)], [2]),
        ValueError,
        "does not support `ReduceLROnPlateau`",
    ),
    (lambda o, M: M.ChainedScheduler([]), ValueError, "expects at least one scheduler"),
    (lambda o, M: M.MultiplicativeLR(o, [1, 2]), TypeError, "lr_lambda should be a function"),
]


@pytest.mark.torch
@pytest.mark.parametrize("make,exc,message", ERRORS, ids=[e[2][:30] for e in ERRORS])
def test_errors_match_torch(make, exc, message):
    mine, theirs = _opts("SGD")
    with pytest.raises(exc, match=message) as got:
        make(mine, JL)
    with pytest.raises(exc, match=message) as want:
        make(theirs, TL)
    assert str(got.value) == str(want.value)


@pytest.mark.torch
def test_onecycle_past_total_steps_and_cycle_momentum_needs_momentum():
    for M, opt in zip((JL, TL), _opts("SGD")):
        sched = M.OneCycleLR(opt, 0.5, total_steps=3)
        for _ in range(2):
            opt.step()
            sched.step()
        with pytest.raises(ValueError, match="Tried to step 4 times. The specified number"):
            sched.step()
            sched.step()
    opt = optim.Adagrad([nn.Parameter(jg.zeros(1))])
    with pytest.raises(ValueError, match="optimizer must support momentum or beta1"):
        JL.OneCycleLR(opt, 0.5, 10)
    with pytest.raises(ValueError, match="optimizer must support momentum or beta1"):
        JL.CyclicLR(opt, 0.1, 0.5)


class _Scale:
    def __init__(self, k):
        self.k = k

    def __call__(self, x):
        return 1 / (1 + self.k * x)


STATEFUL = [c for c in CASES if c[0] != "cyclic-scale-fn"] + [
    ("cyclic-object", lambda o, M: M.CyclicLR(o, 0.01, 0.1, 3, scale_fn=_Scale(0.5)), "SGD", 20),
]


@pytest.mark.parametrize("name,make,opt_name,n", STATEFUL, ids=[c[0] for c in STATEFUL])
def test_state_dict_resumes_identically(name, make, opt_name, n):
    opt, _ = _opts(opt_name)
    full = _run(make(opt, JL), opt, n)
    opt, _ = _opts(opt_name)
    sched = make(opt, JL)
    _run(sched, opt, n // 2)
    saved_opt, saved = opt.state_dict(), sched.state_dict()
    assert "optimizer" not in saved
    opt2, _ = _opts(opt_name)
    sched2 = make(opt2, JL)
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved)
    assert _run(sched2, opt2, n - n // 2) == full[n // 2 :]
    # and through a file (jitgrad.save's format)
    opt3, _ = _opts(opt_name)
    sched3 = make(opt3, JL)
    opt3.load_state_dict(_through_file(saved_opt))
    sched3.load_state_dict(_through_file(saved))
    assert _run(sched3, opt3, n - n // 2) == full[n // 2 :]
    if isinstance(sched3, JL.MultiStepLR):
        assert type(sched3.state_dict()["milestones"]) is type(saved["milestones"])


def _through_file(state):
    import io

    f = io.BytesIO()
    jg.save(state, f)
    f.seek(0)
    return jg.load(f)


# -- compiled training steps ----------------------------------------------------------------------
COMPILED = {
    "multistep": (lambda o: JL.MultiStepLR(o, [2, 4], 0.5), "sgd"),
    "exponential": (lambda o: JL.ExponentialLR(o, 0.7), "adam"),
    "constant": (lambda o: JL.ConstantLR(o, 0.5, 3), "sgd"),
    "linear": (lambda o: JL.LinearLR(o, 0.2, total_iters=4), "adam"),
    "polynomial": (lambda o: JL.PolynomialLR(o, 6, 2.0), "sgd"),
    "sequential": (
        lambda o: JL.SequentialLR(
            o, [JL.LinearLR(o, 0.3, total_iters=2), JL.ExponentialLR(o, 0.8)], [2]
        ),
        "sgd",
    ),  # fmt: skip
    "chained": (
        lambda o: JL.ChainedScheduler([JL.ConstantLR(o, 0.5, 2), JL.ExponentialLR(o, 0.9)]),
        "adam",
    ),  # fmt: skip
    "plateau": (lambda o: JL.ReduceLROnPlateau(o, patience=0, factor=0.5), "sgd"),
    "cyclic": (lambda o: JL.CyclicLR(o, 0.01, 0.1, 2), "sgd"),  # cycles the momentum
    "cyclic-adam": (lambda o: JL.CyclicLR(o, 0.001, 0.01, 2), "adam"),  # cycles beta1
    "warm-restarts": (lambda o: JL.CosineAnnealingWarmRestarts(o, 2, T_mult=2), "sgd"),
    "onecycle": (lambda o: JL.OneCycleLR(o, 0.1, total_steps=12), "adam"),
    "onecycle-sgd": (lambda o: JL.OneCycleLR(o, 0.1, total_steps=12), "sgd"),
}
OPTIMIZERS = {
    "sgd": lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9),
    "adam": lambda ps: optim.Adam(ps, lr=0.01),
}


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("name", list(COMPILED))
def test_compiled_step_follows_the_schedule_without_retracing(name):
    import jitgrad.nn.functional as F

    make_sched, opt_name = COMPILED[name]

    def setup():
        jg.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
        opt = OPTIMIZERS[opt_name](model.parameters())
        sched = make_sched(opt)

        def step(x, y):
            opt.zero_grad()
            loss = F.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            return loss

        return model, sched, step

    eager_model, eager_sched, eager_step = setup()
    comp_model, comp_sched, comp_step = setup()
    comp_step = jg.compile(comp_step, backend="numba")
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(12):
        x = jg.tensor(rng.standard_normal((5, 3)).astype(np.float32))
        y = jg.tensor(rng.standard_normal((5, 2)).astype(np.float32))
        lc, le = comp_step(x, y).item(), eager_step(x, y).item()
        np.testing.assert_allclose(lc, le, rtol=1e-5)
        if name == "plateau":
            comp_sched.step(lc)
            eager_sched.step(le)
        else:
            comp_sched.step()
            eager_sched.step()
        assert comp_sched.get_last_lr() == eager_sched.get_last_lr()
        seen.add(tuple(comp_sched.get_last_lr()))
    assert len(seen) >= 2  # the schedule moved
    for a, b in zip(eager_model.parameters(), comp_model.parameters()):
        np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), rtol=1e-5, atol=1e-6)
    s = comp_step.stats
    # one program; the first call creates the optimizer's state (momentum buffers, Adam's
    # moments) and so traces once more ("warm-up"); the changing learning rate and momentum
    # (or beta1) never retrace
    assert s.compiles == 1, s
    assert all(r.startswith("warm-up") for r in s.retrace_reasons), s.retrace_reasons
    assert s.traces == 2, s
    assert s.cache_hits == s.calls - s.traces, s


CLOSED = [
    lambda o, M: M.MultiStepLR(o, [2, 5, 5], gamma=0.5),
    lambda o, M: M.ConstantLR(o, 0.5, 4),
    lambda o, M: M.LinearLR(o, 0.2, 0.9, 6),
    lambda o, M: M.ExponentialLR(o, 0.8),
    lambda o, M: M.PolynomialLR(o, 6, 1.5),
]


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore:The epoch parameter")
@pytest.mark.parametrize("make", CLOSED, ids=["multistep", "constant", "linear", "exp", "poly"])
def test_step_with_an_epoch_uses_the_closed_form_as_torch(make):
    out = []
    for M, opt in zip((JL, TL), _opts("SGD")):
        sched = make(opt, M)
        lrs = []
        for epoch in (1, 2, 4, 3, 7, 9, 5):
            opt.step()
            sched.step(epoch)
            lrs.append(sched.get_last_lr())
        out.append(lrs)
    assert out[0] == out[1]
    with pytest.warns(UserWarning, match="The epoch parameter"):
        sched.step(3)


def test_old_base_class_name():
    assert issubclass(JL._LRScheduler, JL.LRScheduler)


SWALR_CASES = [
    dict(swa_lr=0.01),
    dict(swa_lr=[0.02, 0.001], anneal_epochs=3, anneal_strategy="linear"),
    dict(swa_lr=0.05, anneal_epochs=0),
]


@pytest.mark.torch
@pytest.mark.parametrize("kw", SWALR_CASES, ids=["cos", "linear", "none"])
def test_swalr_matches_torch(kw):
    from jitgrad.optim.swa_utils import SWALR

    out = []
    for S, opt in zip((SWALR, torch.optim.swa_utils.SWALR), _opts("SGD")):
        sched = S(opt, **kw)
        out.append(_run(sched, opt, 14))
    assert out[0] == out[1]
    opt = _opts("SGD")[0]
    sched = SWALR(opt, **kw)
    _run(sched, opt, 5)
    opt2 = _opts("SGD")[0]
    sched2 = SWALR(opt2, **kw)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(_through_file(sched.state_dict()))
    assert _run(sched2, opt2, 9) == out[0][5:]


def test_swalr_errors():
    from jitgrad.optim.swa_utils import SWALR

    opt = _opts("SGD")[0]
    with pytest.raises(ValueError, match="anneal_strategy must be one of 'cos' or 'linear'"):
        SWALR(opt, 0.1, anneal_strategy="x")
    with pytest.raises(ValueError, match="anneal_epochs must be equal or greater than 0"):
        SWALR(opt, 0.1, anneal_epochs=-1)
