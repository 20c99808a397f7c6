"""RMSprop, Adagrad, Adadelta, Adamax, NAdam, RAdam, ASGD and LBFGS against PyTorch: trajectories
for every option, state names and state_dict round trips (also from a PyTorch state_dict's
layout), argument errors, and a compiled training step per optimizer family."""

from __future__ import annotations

import numpy as np
import pytest

import jitgrad as jg
from jitgrad import nn, optim
from jitgrad.ir import TraceError

torch = pytest.importorskip("torch")


def arr(t) -> np.ndarray:
    return np.array(t.detach().numpy())


RNG = np.random.default_rng(7)
INIT = [RNG.standard_normal((5, 3)), RNG.standard_normal(3)]
TARGET = [RNG.standard_normal((5, 3)), RNG.standard_normal(3)]


def grad_fn(ps):
    """A nonlinear gradient field, so trajectories depend on every earlier update."""
    return [np.sin(3 * p) + 0.5 * (p - c) for p, c in zip(ps, TARGET)]


CASES = [
    ("RMSprop", dict()),
    ("RMSprop", dict(lr=0.01, alpha=0.9, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True, maximize=True, eps=1e-4)),
    ("Adagrad", dict()),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, initial_accumulator_value=0.5)),
    ("Adagrad", dict(lr=0.1, weight_decay=0.1, maximize=True, eps=1e-6)),
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.1)),
    ("Adadelta", dict(maximize=True)),
    ("Adamax", dict()),
    ("Adamax", dict(lr=0.05, betas=(0.8, 0.9), weight_decay=0.1)),
    ("Adamax", dict(lr=0.05, maximize=True, eps=1e-3)),
    ("NAdam", dict()),
    ("NAdam", dict(lr=0.05, momentum_decay=0.01, weight_decay=0.1)),
    ("NAdam", dict(lr=0.05, weight_decay=0.1, decoupled_weight_decay=True)),
    ("NAdam", dict(lr=0.05, betas=(0.8, 0.95), maximize=True)),
    ("RAdam", dict()),
    ("RAdam", dict(lr=0.05, betas=(0.9, 0.9), weight_decay=0.1)),  # rectified from step 6
    ("RAdam", dict(lr=0.05, betas=(0.5, 0.8), weight_decay=0.1, decoupled_weight_decay=True)),
    ("RAdam", dict(lr=0.05, betas=(0.9, 0.7), maximize=True)),
    ("ASGD", dict()),
    ("ASGD", dict(lr=0.05, lambd=0.01, alpha=0.5, t0=3, weight_decay=0.1)),
    ("ASGD", dict(lr=0.05, t0=0, maximize=True)),
    ("Rprop", dict()),
    ("Rprop", dict(lr=0.05, etas=(0.3, 1.5), step_sizes=(1e-3, 0.2))),
    ("Rprop", dict(lr=0.05, maximize=True)),
    ("Adafactor", dict()),
    ("Adafactor", dict(lr=0.05, weight_decay=0.1)),
    ("Adafactor", dict(lr=0.05, eps=(1e-20, 1e-2), d=2.0, beta2_decay=-0.5, maximize=True)),
    ("Adam", dict(lr=0.05, amsgrad=True, weight_decay=0.1, maximize=True)),
    ("AdamW", dict(lr=0.05, amsgrad=True)),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for name, kw in CASES]
STEPS = 8


def jg_trajectory(name, kw, dtype, steps=STEPS):
    params = [nn.Parameter(jg.tensor(x, dtype=dtype)) for x in INIT]
    opt = getattr(optim, name)(params, **kw)
    out = []
    for _ in range(steps):
        for p, g in zip(params, grad_fn([arr(p).astype(np.float64) for p in params])):
            p.grad = jg.tensor(g, dtype=dtype)
        opt.step()
        out.append([arr(p) for p in params])
    return out, opt, params


def torch_trajectory(name, kw, dtype, steps=STEPS):
    params = [torch.tensor(x, dtype=dtype, requires_grad=True) for x in INIT]
    opt = getattr(torch.optim, name)(params, **kw)
    out = []
    for _ in range(steps):
        for p, g in zip(params, grad_fn([p.detach().numpy().astype(np.float64) for p in params])):
            p.grad = torch.tensor(g, dtype=dtype)
        opt.step()
        out.append([p.detach().numpy().copy() for p in params])
    return out, opt, params


def _close(got, want, dtype):
    tol = dict(rtol=1e-11, atol=1e-12) if dtype == "float64" else dict(rtol=3e-5, atol=3e-6)
    for g_step, w_step in zip(got, want):
        for g, w in zip(g_step, w_step):
            np.testing.assert_allclose(g, w, **tol)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_trajectory_matches_torch(name, kw, dtype):
    got, opt, params = jg_trajectory(name, kw, getattr(jg, dtype))
    want, topt, tparams = torch_trajectory(name, kw, getattr(torch, dtype))
    _close(got, want, dtype)
    assert not np.allclose(got[-1][0], INIT[0])  # it moved
    # the same state, under the same names, in the same dtypes
    for p, tp in zip(params, tparams):
        mine, theirs = opt.state[p], topt.state[tp]
        assert list(mine) == list(theirs)
        for k, v in theirs.items():
            assert (
                mine[k].shape == tuple(v.shape)
                and str(mine[k].dtype).split(".")[-1] == str(v.dtype).split(".")[-1]
            ), k
    # the same groups: PyTorch's defaults, under its names
    assert set(opt.param_groups[0]) == set(topt.param_groups[0])
    for k, v in topt.defaults.items():
        assert opt.defaults[k] == v, k


def _through_file(state):
    import io

    f = io.BytesIO()
    jg.save(state, f)
    f.seek(0)
    return jg.load(f)


def _to_jg(value):
    if isinstance(value, torch.Tensor):
        return jg.tensor(value.detach().numpy().copy())
    if isinstance(value, dict):
        return {k: _to_jg(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_jg(v) for v in value)
    return value


ROUND_TRIP = [c for c in CASES if c[1]] + [("Adam", {}), ("SGD", dict(lr=0.1, momentum=0.9))]


@pytest.mark.torch
@pytest.mark.parametrize("name,kw", ROUND_TRIP, ids=[f"{n}-{i}" for i, (n, _) in
                                                      enumerate(ROUND_TRIP)])  # fmt: skip
def test_state_dict_round_trip_and_pytorch_layout(name, kw):
    dtype = jg.float32
    full, _, _ = jg_trajectory(name, kw, dtype, steps=6)
    # 3 steps, save, load into a fresh optimizer over copies of the parameters, 3 more steps
    part, opt, params = jg_trajectory(name, kw, dtype, steps=3)
    sd = opt.state_dict()
    assert sd["param_groups"][0]["params"] == [0, 1] and set(sd["state"]) == {0, 1}
    fresh = [nn.Parameter(jg.tensor(arr(p))) for p in params]
    other = getattr(optim, name)(fresh, **kw)
    other.load_state_dict(_through_file(sd) if name != "SGD" else sd)  # (and jitgrad.save's)
    for p, q in zip(params, fresh):
        assert all(v is not opt.state[p][k] for k, v in other.state[q].items())

    def more(opt, params):
        out = []
        for _ in range(3):
            for p, g in zip(params, grad_fn([arr(p).astype(np.float64) for p in params])):
                p.grad = jg.tensor(g, dtype=dtype)
            opt.step()
            out.append([arr(p) for p in params])
        return out

    resumed = more(other, fresh)
    for a, b in zip(resumed, full[3:]):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    # a PyTorch optimizer's state_dict (its arrays as jitgrad tensors) continues as PyTorch does
    _, topt, tparams = torch_trajectory(name, kw, torch.float32, steps=3)
    fresh = [nn.Parameter(jg.tensor(p.detach().numpy().copy())) for p in tparams]
    mine = getattr(optim, name)(fresh, **kw)
    mine.load_state_dict(_to_jg(topt.state_dict()))
    got = more(mine, fresh)
    want = []
    for _ in range(3):
        for p, g in zip(tparams, grad_fn([p.detach().numpy().astype(np.float64) for p in tparams])):
            p.grad = torch.tensor(g, dtype=torch.float32)
        topt.step()
        want.append([p.detach().numpy().copy() for p in tparams])
    _close(got, want, "float32")


ERRORS = [
    ("RMSprop", dict(lr=-1), "Invalid learning rate: -1"),
    ("RMSprop", dict(eps=-1), "Invalid epsilon value: -1"),
    ("RMSprop", dict(momentum=-1), "Invalid momentum value: -1"),
    ("RMSprop", dict(weight_decay=-1), "Invalid weight_decay value: -1"),
    ("RMSprop", dict(alpha=-1), "Invalid alpha value: -1"),
    ("Adagrad", dict(lr_decay=-1), "Invalid lr_decay value: -1"),
    ("Adagrad", dict(initial_accumulator_value=-1), "Invalid initial_accumulator_value value: -1"),
    ("Adagrad", dict(eps=-1), "Invalid epsilon value: -1"),
    ("Adadelta", dict(rho=1.5), "Invalid rho value: 1.5"),
    ("Adamax", dict(betas=(1.0, 0.9)), "Invalid beta parameter at index 0: 1.0"),
    ("NAdam", dict(betas=(0.9, -0.1)), r"Invalid beta parameter at index 1: -0.1"),
    ("NAdam", dict(momentum_decay=-1), "Invalid momentum_decay value: -1"),
    ("RAdam", dict(weight_decay=-1), "Invalid weight_decay value: -1"),
    ("ASGD", dict(lr=-0.5), "Invalid learning rate: -0.5"),
    ("LBFGS", dict(lr=-1), "Invalid learning rate: -1"),
    ("Rprop", dict(etas=(1.1, 1.2)), "Invalid eta values: 1.1, 1.2"),
    ("Adafactor", dict(lr=-1), "Learning rate should be >= 0 but is: -1"),
    ("Adafactor", dict(beta2_decay=0.5), "beta2_decay should be <= 0 but is: 0.5"),
    ("Adafactor", dict(eps=(-1, 0.1)), "epsilon1 should be >= 0 but is: -1"),
    ("Adafactor", dict(eps=(None, -1)), "epsilon2 should be >= 0 but is: -1"),
    ("Adafactor", dict(d=0.5), "Clipping threshold d should be >= 1 but is: 0.5"),
    ("Adafactor", dict(weight_decay=-1), "weight_decay should be >= 0 but is: -1"),
    ("Muon", dict(lr=-1), "Learning rate should be >= 0 but is: -1"),
    ("Muon", dict(momentum=-1), "momentum should be >= 0 but is: -1"),
    ("Muon", dict(weight_decay=-1), "weight decay should be >= 0 but is: -1"),
    ("Muon", dict(adjust_lr_fn="x"), "Adjust learning rate function x is not supported"),
]


@pytest.mark.torch
@pytest.mark.parametrize("name,kw,message", ERRORS, ids=[f"{e[0]}-{e[2]}" for e in ERRORS])
def test_argument_errors_match_torch(name, kw, message):
    with pytest.raises(ValueError, match=message) as theirs:
        getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], **kw)
    with pytest.raises(ValueError, match=message) as mine:
        getattr(optim, name)([nn.Parameter(jg.zeros(2))], **kw)
    assert str(mine.value) == str(theirs.value)


@pytest.mark.torch
def test_signatures_match_torch():
    import inspect

    for name in ["RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "RAdam", "ASGD", "LBFGS",
                 "Rprop", "Adafactor", "Muon", "Adam", "AdamW", "SGD"]:  # fmt: skip
        mine = inspect.signature(getattr(optim, name).__init__).parameters
        theirs = inspect.signature(getattr(torch.optim, name).__init__).parameters
        assert list(mine) == list(theirs), name
        for k, v in theirs.items():
            assert mine[k].kind == v.kind and mine[k].default == v.default, (name, k)
        shape = (2, 2) if name == "Muon" else (1,)
        ours = repr(getattr(optim, name)([nn.Parameter(jg.zeros(shape))]))
        assert ours == repr(getattr(torch.optim, name)([torch.zeros(shape, requires_grad=True)]))


def test_add_param_group_fills_defaults_and_keeps_options():
    a, b = nn.Parameter(jg.ones(2)), nn.Parameter(jg.ones(2))
    opt = optim.RMSprop([a], lr=0.1, momentum=0.5)
    opt.add_param_group({"params": b, "lr": 0.01, "centered": True})
    g = opt.param_groups[1]
    assert g["lr"] == 0.01 and g["centered"] and g["momentum"] == 0.5 and g["alpha"] == 0.99
    a.grad, b.grad = jg.ones(2), jg.ones(2)
    opt.step()
    assert set(opt.state[b]) == {"step", "square_avg", "momentum_buffer", "grad_avg"}
    assert set(opt.state[a]) == {"step", "square_avg", "momentum_buffer"}
    with pytest.raises(ValueError, match="doesn't support per-parameter options"):
        optim.LBFGS([{"params": [a]}, {"params": [b]}])
    lb = optim.LBFGS([a])
    with pytest.raises(ValueError, match="doesn't support per-parameter options"):
        lb.add_param_group({"params": [b]})


def test_zero_grad_sets_to_none_by_default():
    p = nn.Parameter(jg.ones(2))
    opt = optim.Adagrad([p])
    p.grad = jg.ones(2)
    opt.zero_grad()
    assert p.grad is None


def _quadratic(dtype, lib):
    rng = np.random.default_rng(3)
    A = rng.standard_normal((6, 6))
    A = A @ A.T + np.eye(6)
    b = rng.standard_normal(6)
    x0 = rng.standard_normal(6)
    if lib is torch:
        x = torch.tensor(x0, dtype=dtype, requires_grad=True)
        At, bt = torch.tensor(A, dtype=dtype), torch.tensor(b, dtype=dtype)
    else:
        x = nn.Parameter(jg.tensor(x0, dtype=dtype))
        At, bt = jg.tensor(A, dtype=dtype), jg.tensor(b, dtype=dtype)

    def loss_fn():
        r = At @ x - bt
        return (r * r).sum() + (x * x * x * x).sum() * 0.01

    return x, loss_fn


@pytest.mark.torch
@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
@pytest.mark.parametrize(
    "kw", [dict(), dict(lr=0.5, max_iter=5, history_size=3)], ids=["default", "short"]
)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_lbfgs_matches_torch(line_search_fn, kw, dtype):
    results = []
    for lib in (jg, torch):
        x, loss_fn = _quadratic(getattr(lib, dtype), lib)
        opt = (optim if lib is jg else torch.optim).LBFGS([x], line_search_fn=line_search_fn, **kw)

        def closure(opt=opt, loss_fn=loss_fn):
            opt.zero_grad()
            loss = loss_fn()
            loss.backward()
            return loss

        losses = [float(opt.step(closure).detach()) for _ in range(3)]
        state = opt.state[x]
        results.append((losses, x.detach().numpy().copy(), state["func_evals"], state["n_iter"]))
    (l1, x1, e1, n1), (l2, x2, e2, n2) = results
    tol = 1 if dtype == "float64" else 1e5
    np.testing.assert_allclose(l1, l2, rtol=1e-9 * tol)
    np.testing.assert_allclose(x1, x2, rtol=1e-8 * tol, atol=1e-10 * tol)
    assert (e1, n1) == (e2, n2)


@pytest.mark.torch
def test_lbfgs_state_dict_from_torch_continues():
    x, loss_fn = _quadratic(torch.float64, torch)
    topt = torch.optim.LBFGS([x], max_iter=3, line_search_fn="strong_wolfe")

    def tclosure():
        topt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    topt.step(tclosure)
    y, jloss = _quadratic(jg.float64, jg)
    with jg.no_grad():
        y.copy_(jg.tensor(x.detach().numpy()))
    opt = optim.LBFGS([y], max_iter=3, line_search_fn="strong_wolfe")
    opt.load_state_dict(_to_jg(topt.state_dict()))
    assert set(opt.state[y]) == set(topt.state[x])

    def closure():
        opt.zero_grad()
        loss = jloss()
        loss.backward()
        return loss

    for _ in range(2):
        topt.step(tclosure)
        opt.step(closure)
    np.testing.assert_allclose(arr(y), x.detach().numpy(), rtol=1e-8, atol=1e-10)
    # and its own round trip, through a file: it continues identically
    z, zloss = _quadratic(jg.float64, jg)
    with jg.no_grad():
        z.copy_(y)
    again = optim.LBFGS([z], max_iter=3, line_search_fn="strong_wolfe")
    again.load_state_dict(_through_file(opt.state_dict()))
    assert again.state[z]["n_iter"] == opt.state[y]["n_iter"]

    def closure2():
        again.zero_grad()
        loss = zloss()
        loss.backward()
        return loss

    opt.step(closure)
    again.step(closure2)
    np.testing.assert_array_equal(arr(z), arr(y))


def test_lbfgs_under_compile_says_it_runs_eagerly():
    x = nn.Parameter(jg.ones(3))
    opt = optim.LBFGS([x])

    def closure():
        opt.zero_grad()
        loss = (x * x).sum()
        loss.backward()
        return loss

    step = jg.compile(lambda: opt.step(closure), backend="interpreter")
    with pytest.raises(TraceError, match="LBFGS runs eagerly"):
        step()
    with pytest.raises(TypeError, match="closure"):
        opt.step()


# -- compiled steps --------------------------------------------------------------------------------
COMPILED = {
    "rmsprop": lambda ps: optim.RMSprop(ps, lr=0.01, momentum=0.5, centered=True, weight_decay=0.1),
    "adagrad": lambda ps: optim.Adagrad(ps, lr=0.1, lr_decay=0.01),
    "adadelta": lambda ps: optim.Adadelta(ps, lr=0.5, weight_decay=0.01),
    "adamax": lambda ps: optim.Adamax(ps, lr=0.02),
    "nadam": lambda ps: optim.NAdam(ps, lr=0.02, weight_decay=0.1, decoupled_weight_decay=True),
    "radam": lambda ps: optim.RAdam(ps, lr=0.02, betas=(0.9, 0.9)),
    "asgd": lambda ps: optim.ASGD(ps, lr=0.05, t0=2, lambd=0.01),
    "rprop": lambda ps: optim.Rprop(ps, lr=0.01, step_sizes=(1e-4, 0.05)),
    "adafactor": lambda ps: optim.Adafactor(ps, lr=0.05, weight_decay=0.01),
    "muon": lambda ps: optim.Muon([p for p in ps if p.ndim == 2], lr=0.02),
}


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("name", list(COMPILED))
def test_compiled_step_matches_eager(name):
    import jitgrad.nn.functional as F

    def setup():
        jg.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
        opt = COMPILED[name](model.parameters())

        def step(x, y):
            opt.zero_grad()
            loss = F.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            return loss

        return model, opt, step

    eager_model, eager_opt, eager_step = setup()
    comp_model, comp_opt, comp_step = setup()
    comp_step = jg.compile(comp_step, backend="numba")
    rng = np.random.default_rng(0)
    for _ in range(8):  # RAdam switches to its rectified update at step 6, ASGD averages at 3
        x = jg.tensor(rng.standard_normal((5, 3)).astype(np.float32))
        y = jg.tensor(rng.standard_normal((5, 2)).astype(np.float32))
        np.testing.assert_allclose(comp_step(x, y).item(), eager_step(x, y).item(), rtol=1e-5)
    for a, b in zip(eager_model.parameters(), comp_model.parameters()):
        np.testing.assert_allclose(arr(b), arr(a), rtol=1e-5, atol=1e-6)
    for pe, pc in zip(eager_model.parameters(), comp_model.parameters()):
        for k, v in eager_opt.state[pe].items():
            np.testing.assert_allclose(arr(comp_opt.state[pc][k]), arr(v), rtol=1e-5, atol=1e-6)
    s = comp_step.stats
    assert s.compiles == 1, s
    assert s.traces <= 2 and s.cache_hits == s.calls - s.traces, s


NEW = [c for c in CASES if c[0] not in ("Adam", "AdamW")]
NEW_IDS = [i for c, i in zip(CASES, IDS) if c[0] not in ("Adam", "AdamW")]


@pytest.mark.parametrize("name,kw", NEW, ids=NEW_IDS)
def test_step_writes_only_through_ops_and_takes_tensor_hyperparameters(name, kw):
    # the tracing contract, without a compiler: every state tensor written in place by ops, no
    # Python read of a tensor value, and hyperparameters that may be 0-d tensors
    from test_optim import RecordingTracer, _tensor_hyper

    from jitgrad.autograd.grad_mode import STATE
    from jitgrad.optim.optimizer import OPTION_TESTS

    base, _, _ = jg_trajectory(name, kw, jg.float64, steps=3)
    _, opt, params = jg_trajectory(name, kw, jg.float64, steps=2)
    for p, g in zip(params, grad_fn([arr(p) for p in params])):
        p.grad = jg.tensor(g)
    opt._option = lambda group, key: group[key]
    opt._option_test = lambda group, key, test: OPTION_TESTS[test](group[key])
    opt._hyper = _tensor_hyper
    tracer = STATE.tracer = RecordingTracer()
    try:
        opt.step()
    finally:
        STATE.tracer = None
    written = {id(x) for x in tracer.writes}
    for p, want in zip(params, base[-1]):
        assert id(p) in written
        assert all(id(v) in written for v in opt.state[p].values())
        np.testing.assert_allclose(arr(p), want, rtol=1e-13, atol=1e-14)


@pytest.mark.torch
def test_named_parameters_as_pytorch():
    model = nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 1))
    ref = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh(), torch.nn.Linear(2, 1))
    opt = optim.RMSprop(model.named_parameters(), lr=0.1)
    topt = torch.optim.RMSprop(ref.named_parameters(), lr=0.1)
    assert opt.param_groups[0]["param_names"] == topt.param_groups[0]["param_names"]
    assert opt.param_groups[0]["params"] == list(model.parameters())
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert sd["param_groups"][0]["param_names"] == tsd["param_groups"][0]["param_names"]
    plain = optim.RMSprop(model.parameters())
    plain.load_state_dict(sd)  # names travel with the groups
    assert plain.param_groups[0]["param_names"] == tsd["param_groups"][0]["param_names"]
    message = "all optimizer param groups should be with/without names"
    with pytest.raises(ValueError, match=message):
        opt.add_param_group({"params": [nn.Parameter(jg.zeros(1))]})
    with pytest.raises(ValueError, match="Some param names are missing"):
        optim.SGD([("a", nn.Parameter(jg.zeros(1))), nn.Parameter(jg.zeros(1))])


@pytest.mark.torch
@pytest.mark.parametrize("name", ["Adam", "AdamW", "SGD", "Adagrad"])
@pytest.mark.parametrize(
    "kw", [dict(fused=True, differentiable=True), dict(fused=True, foreach=True)], ids=["d", "f"]
)
def test_fused_option_errors_match_torch(name, kw):
    with pytest.raises(RuntimeError) as theirs:
        getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], **kw)
    with pytest.raises(RuntimeError) as mine:
        getattr(optim, name)([nn.Parameter(jg.zeros(2))], **kw)
    assert str(mine.value) == str(theirs.value)
    getattr(optim, name)([nn.Parameter(jg.zeros(2))], fused=True)  # accepted on its own


@pytest.mark.torch
@pytest.mark.parametrize("name", ["Adam", "SGD", "NAdam", "LBFGS"])
def test_hooks_as_torch(name):
    from jitgrad.optim.optimizer import (
        register_optimizer_step_post_hook,
        register_optimizer_step_pre_hook,
    )

    logs = []
    for lib, O in ((jg, optim), (torch, torch.optim)):
        log = []
        p = nn.Parameter(jg.ones(2)) if lib is jg else torch.ones(2, requires_grad=True)
        opt = getattr(O, name)([p], lr=0.1)
        opt.register_step_pre_hook(lambda o, a, k, log=log: log.append(("pre", len(a), sorted(k))))
        h = opt.register_step_post_hook(
            lambda o, a, k, log=log: log.append(("post", len(a), sorted(k)))
        )
        opt.register_state_dict_pre_hook(lambda o, log=log: log.append("sd-pre"))
        opt.register_state_dict_post_hook(lambda o, sd, log=log: {**sd, "extra": 1})
        opt.register_load_state_dict_pre_hook(lambda o, sd, log=log: log.append(sorted(sd)))
        opt.register_load_state_dict_post_hook(lambda o, log=log: log.append("load-post"))

        def closure(opt=opt, p=p):
            opt.zero_grad()
            loss = (p * p).sum()
            loss.backward()
            return loss

        opt.step(closure)
        h.remove()
        opt.step(closure=closure)
        sd = opt.state_dict()
        log.append(sd["extra"])
        sd.pop("extra")
        opt.load_state_dict(sd)
        log.append([round(float(x), 6) for x in p.detach().numpy()])
        logs.append(log)
    assert logs[0] == logs[1]
    seen = []
    h1 = register_optimizer_step_pre_hook(lambda o, a, k: seen.append(type(o).__name__))
    h2 = register_optimizer_step_post_hook(lambda o, a, k: seen.append("after"))
    q = nn.Parameter(jg.ones(1))
    q.grad = jg.ones(1)
    optim.Adam([q]).step()  # (Adam.step calls Optimizer.step: the hooks run once)
    h1.remove()
    h2.remove()
    optim.Adam([q]).step()
    assert seen == ["Adam", "after"]


@pytest.mark.parametrize("name", ["Adafactor", "RMSprop"])
def test_loading_state_of_another_shape_fails_and_changes_nothing(name):
    _, opt, params = jg_trajectory(name, {}, jg.float64, steps=2)
    sd = opt.state_dict()
    before = {k: arr(v) for k, v in opt.state[params[0]].items()}
    other = [nn.Parameter(jg.zeros(4, 3, dtype=jg.float64)), nn.Parameter(jg.zeros(3))]
    bad = getattr(optim, name)(other)
    for p in other:
        p.grad = jg.ones_like(p)
    bad.step()
    with pytest.raises(ValueError, match="the checkpoint belongs to a different model"):
        opt.load_state_dict(bad.state_dict())
    for k, v in opt.state[params[0]].items():
        np.testing.assert_array_equal(arr(v), before[k])
    opt.load_state_dict(sd)  # its own loads


MUON = [
    dict(lr=0.02),
    dict(lr=0.02, nesterov=False, weight_decay=0.0, adjust_lr_fn="match_rms_adamw"),
    dict(lr=0.05, momentum=0.8, ns_steps=3, ns_coefficients=(2.0, -1.5, 0.5), eps=1e-3),
]


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", [(6, 4), (4, 6)], ids=["tall", "wide"])
@pytest.mark.parametrize("kw", MUON, ids=["default", "plain", "options"])
def test_muon_matches_torch(kw, shape, dtype):
    rng = np.random.default_rng(0)
    w0, target = rng.standard_normal(shape), rng.standard_normal(shape)

    def grad(w):
        return np.sin(3 * w) + 0.5 * (w - target)

    p = nn.Parameter(jg.tensor(w0, dtype=getattr(jg, dtype)))
    q = torch.tensor(w0, dtype=getattr(torch, dtype), requires_grad=True)
    opt, topt = optim.Muon([p], **kw), torch.optim.Muon([q], **kw)
    for _ in range(6):
        p.grad = jg.tensor(grad(arr(p).astype(np.float64)), dtype=getattr(jg, dtype))
        q.grad = torch.tensor(grad(q.detach().numpy().astype(np.float64)), dtype=q.dtype)
        opt.step()
        topt.step()
        # (its Newton-Schulz iterations in bfloat16, rounded where PyTorch rounds)
        np.testing.assert_allclose(arr(p), q.detach().numpy(), rtol=1e-6, atol=1e-6)
    assert not np.allclose(arr(p), w0)
    assert list(opt.state[p]) == list(topt.state[q]) == ["momentum_buffer"]
    with pytest.raises(ValueError, match="Muon only supports 2D parameters"):
        optim.Muon([nn.Parameter(jg.zeros(3))])


@pytest.mark.filterwarnings("error")
def test_bfloat16_rounding_in_float32_is_the_cast():
    # Muon's compiled Newton-Schulz iterations round in float32 operations (compiled backends
    # have no bfloat16): the same bits as a cast, ties and the smallest numbers included
    from jitgrad.optim.muon import _round_to_bfloat16

    rng = np.random.default_rng(0)
    scale = 10.0 ** rng.integers(-44, 37, 20000)
    v = (rng.standard_normal(20000) * scale).astype(np.float32)
    special = [0, 1, -1, 3, 1.00390625, 1.01171875, 65504, 3e38, 1e-45, 1e-40, np.inf, np.nan]
    v = np.concatenate([v, np.float32(special)]).astype(np.float32)
    b = jg.tensor(v).bfloat16().float().numpy()
    ties = (b + np.abs(b) * np.float32(2**-8) * np.sign(b)).astype(np.float32)
    x = jg.tensor(np.concatenate([v, ties]))
    want = x.bfloat16().float().numpy()
    np.testing.assert_array_equal(_round_to_bfloat16(x).numpy(), want)
    f = jg.compile(lambda t: _round_to_bfloat16(t), backend="numba")
    f(x)
    np.testing.assert_array_equal(f(x).numpy(), want)
    assert f.stats.cache_hits == 1


MLP = {
    "RMSprop": dict(lr=0.01, momentum=0.5, centered=True),
    "Adagrad": dict(lr=0.1),
    "Adadelta": dict(),
    "Adamax": dict(),
    "NAdam": dict(),
    "RAdam": dict(betas=(0.9, 0.9)),
    "ASGD": dict(t0=2),
    "Rprop": dict(),
    "Adafactor": dict(),
    "AdamW": dict(amsgrad=True),
}


@pytest.mark.torch
@pytest.mark.parametrize("name", list(MLP))
def test_mlp_training_matches_torch(name):
    import jitgrad.nn.functional as JF

    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((16, 4)), rng.integers(0, 3, 16)
    ref = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    ref = ref.double()
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    model.load_state_dict({k: jg.tensor(v.detach().numpy()) for k, v in ref.state_dict().items()})
    opt = getattr(optim, name)(model.parameters(), **MLP[name])
    topt = getattr(torch.optim, name)(ref.parameters(), **MLP[name])
    xj, yj = jg.tensor(x), jg.tensor(y)
    xt, yt = torch.tensor(x), torch.tensor(y)
    for _ in range(5):
        opt.zero_grad()
        loss = JF.cross_entropy(model(xj), yj)
        loss.backward()
        opt.step()
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(ref(xt), yt)
        tloss.backward()
        topt.step()
        np.testing.assert_allclose(float(loss), tloss.item(), rtol=1e-10)
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(arr(p), q.detach().numpy(), rtol=1e-9, atol=1e-11)


# -- swa_utils -------------------------------------------------------------------------------------
def _bn_models():
    ref = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Tanh(), torch.nn.Linear(4, 2)
    ).double()
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2))
    model = model.double()
    model.load_state_dict({k: jg.tensor(v.detach().numpy()) for k, v in ref.state_dict().items()})
    return model, ref


AVERAGING = {
    "swa": lambda S: dict(),
    "ema-multi": lambda S: dict(multi_avg_fn=S.get_ema_multi_avg_fn(0.8)),
    "ema": lambda S: dict(avg_fn=S.get_ema_avg_fn(0.7), use_buffers=True),
    "swa-multi": lambda S: dict(multi_avg_fn=S.get_swa_multi_avg_fn()),
    "swa-buffers": lambda S: dict(use_buffers=True),
}


@pytest.mark.torch
@pytest.mark.parametrize("kind", list(AVERAGING))
def test_averaged_model_matches_torch(kind):
    import jitgrad.nn.functional as JF
    from jitgrad.optim import swa_utils

    model, ref = _bn_models()
    avg = swa_utils.AveragedModel(model, **AVERAGING[kind](swa_utils))
    tavg = torch.optim.swa_utils.AveragedModel(ref, **AVERAGING[kind](torch.optim.swa_utils))
    assert list(avg.state_dict()) == list(tavg.state_dict())
    opt, topt = optim.SGD(model.parameters(), lr=0.1), torch.optim.SGD(ref.parameters(), lr=0.1)
    rng = np.random.default_rng(2)
    for _ in range(4):
        x = rng.standard_normal((8, 3))
        opt.zero_grad()
        JF.mse_loss(model(jg.tensor(x)), jg.zeros(8, 2, dtype=jg.float64)).backward()
        opt.step()
        topt.zero_grad()
        torch.nn.functional.mse_loss(ref(torch.tensor(x)), torch.zeros(8, 2).double()).backward()
        topt.step()
        avg.update_parameters(model)
        tavg.update_parameters(ref)
    mine, theirs = avg.state_dict(), tavg.state_dict()
    for k, v in theirs.items():
        np.testing.assert_allclose(arr(mine[k]), v.numpy(), rtol=1e-6, atol=1e-12, err_msg=k)
    x = rng.standard_normal((5, 3))
    avg.eval()
    tavg.eval()
    np.testing.assert_allclose(arr(avg(jg.tensor(x))), tavg(torch.tensor(x)).detach().numpy())
    # update_bn: the running statistics as plain averages over one pass
    batches = [rng.standard_normal((6, 3)) for _ in range(3)]
    swa_utils.update_bn([(jg.tensor(b), 0) for b in batches], avg)
    torch.optim.swa_utils.update_bn([(torch.tensor(b), 0) for b in batches], tavg)
    assert not avg.training and avg.module[1].momentum == 0.1
    mine, theirs = avg.state_dict(), tavg.state_dict()
    for k, v in theirs.items():
        np.testing.assert_allclose(arr(mine[k]), v.numpy(), rtol=1e-6, atol=1e-12, err_msg=k)


def test_averaging_function_errors():
    from jitgrad.optim import swa_utils

    with pytest.raises(ValueError, match=r"Invalid decay value 1.5 provided"):
        swa_utils.get_ema_avg_fn(1.5)
    with pytest.raises(ValueError, match=r"Invalid decay value -1 provided"):
        swa_utils.get_ema_multi_avg_fn(-1)
    with pytest.raises(AssertionError, match="Only one of avg_fn and multi_avg_fn"):
        swa_utils.AveragedModel(nn.Linear(1, 1), avg_fn=max, multi_avg_fn=max)


@pytest.mark.filterwarnings("error")
def test_compiled_step_with_an_ema_matches_eager():
    import jitgrad.nn.functional as JF
    from jitgrad.optim import swa_utils

    def setup():
        jg.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
        opt = optim.AdamW(model.parameters(), lr=0.01)
        ema = swa_utils.AveragedModel(model, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(0.9))

        def step(x, y):
            opt.zero_grad()
            loss = JF.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            ema.update_parameters(model)
            return loss

        return ema, step

    eager_ema, eager_step = setup()
    comp_ema, comp_step = setup()
    comp_step = jg.compile(comp_step, backend="numba")
    rng = np.random.default_rng(0)
    for _ in range(6):
        x = jg.tensor(rng.standard_normal((5, 3)).astype(np.float32))
        y = jg.tensor(rng.standard_normal((5, 2)).astype(np.float32))
        np.testing.assert_allclose(comp_step(x, y).item(), eager_step(x, y).item(), rtol=1e-5)
    for (k, a), b in zip(eager_ema.state_dict().items(), comp_ema.state_dict().values()):
        np.testing.assert_allclose(arr(b), arr(a), rtol=1e-5, atol=1e-6, err_msg=k)
    assert int(comp_ema.n_averaged) == 6
    s = comp_step.stats
    assert s.compiles == 1 and s.cache_hits == s.calls - s.traces, s


@pytest.mark.torch
@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_mlp_matches_torch(line_search_fn):
    import jitgrad.nn.functional as JF

    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((16, 4)), rng.integers(0, 3, 16)
    ref = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    ref = ref.double()
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    model.load_state_dict({k: jg.tensor(v.detach().numpy()) for k, v in ref.state_dict().items()})
    kw = dict(lr=0.5, max_iter=6, history_size=4, line_search_fn=line_search_fn)
    opt, topt = optim.LBFGS(model.parameters(), **kw), torch.optim.LBFGS(ref.parameters(), **kw)
    xj, yj, xt, yt = jg.tensor(x), jg.tensor(y), torch.tensor(x), torch.tensor(y)

    def closure():
        opt.zero_grad()
        loss = JF.cross_entropy(model(xj), yj)
        loss.backward()
        return loss

    def tclosure():
        topt.zero_grad()
        loss = torch.nn.functional.cross_entropy(ref(xt), yt)
        loss.backward()
        return loss

    for _ in range(2):
        np.testing.assert_allclose(
            float(opt.step(closure).detach()), topt.step(tclosure).item(), rtol=1e-9
        )
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(arr(p), q.detach().numpy(), rtol=1e-7, atol=1e-9)
    state, tstate = opt.state[next(model.parameters())], topt.state[next(ref.parameters())]
    assert (state["func_evals"], state["n_iter"]) == (tstate["func_evals"], tstate["n_iter"])
