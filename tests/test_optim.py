"""jitgrad.optim: trajectories vs NumPy (and optionally PyTorch), groups, state, zero_grad."""

from __future__ import annotations

import numpy as np
import pytest

import jitgrad as jg
import jitgrad.nn.functional as F
from jitgrad import nn, optim
from jitgrad.autograd.grad_mode import STATE


def arr(t) -> np.ndarray:
    return np.array(t.detach().numpy())


# -- NumPy references of PyTorch's formulas ------------------------------------------------------
def np_sgd(params, grad_fn, steps, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
           nesterov=False, maximize=False):  # fmt: skip
    p = [x.copy() for x in params]
    bufs = [None] * len(p)
    traj = []
    for _ in range(steps):
        grads = grad_fn(p)
        for i, g in enumerate(grads):
            g = -g if maximize else g
            if weight_decay:
                g = g + weight_decay * p[i]
            if momentum:
                if bufs[i] is None:
                    bufs[i] = g.copy()
                else:
                    bufs[i] = momentum * bufs[i] + (1 - dampening) * g
                g = g + momentum * bufs[i] if nesterov else bufs[i]
            p[i] = p[i] - lr * g
        traj.append([x.copy() for x in p])
    return traj


def np_adam(params, grad_fn, steps, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
            amsgrad=False, maximize=False, decoupled=False):  # fmt: skip
    b1, b2 = betas
    p = [x.copy() for x in params]
    m = [np.zeros_like(x) for x in p]
    v = [np.zeros_like(x) for x in p]
    vmax = [np.zeros_like(x) for x in p]
    traj = []
    for t in range(1, steps + 1):
        grads = grad_fn(p)
        for i, g in enumerate(grads):
            g = -g if maximize else g
            if weight_decay:
                if decoupled:
                    p[i] = p[i] * (1 - lr * weight_decay)
                else:
                    g = g + weight_decay * p[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            vmax[i] = np.maximum(vmax[i], v[i])
            second = vmax[i] if amsgrad else v[i]
            denom = np.sqrt(second) / np.sqrt(1 - b2**t) + eps
            p[i] = p[i] - lr / (1 - b1**t) * m[i] / denom
        traj.append([x.copy() for x in p])
    return traj


def np_adamw(params, grad_fn, steps, weight_decay=1e-2, **kw):
    return np_adam(params, grad_fn, steps, weight_decay=weight_decay, decoupled=True, **kw)


RNG = np.random.default_rng(42)
INIT = [RNG.standard_normal((19, 35)), RNG.standard_normal(35)]  # (19, 35): several tiles
TARGET = [RNG.standard_normal((19, 35)), RNG.standard_normal(35)]


def grad_fn(ps):
    """A nonlinear gradient field, so trajectories depend on every earlier update."""
    return [np.sin(3 * p) + 0.5 * (p - c) for p, c in zip(ps, TARGET)]


CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.5, maximize=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.05, betas=(0.8, 0.99), amsgrad=True)),
    ("Adam", dict(lr=0.01, eps=1e-3, maximize=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.05, weight_decay=0.1, amsgrad=True)),
]
REFERENCES = {"SGD": np_sgd, "Adam": np_adam, "AdamW": np_adamw}
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for name, kw in CASES]


def run_jitgrad(name, kw, steps, dtype=jg.float64, hyper=None):
    params = [nn.Parameter(jg.tensor(x, dtype=dtype)) for x in INIT]
    opt = getattr(optim, name)(params, **kw)
    if hyper is not None:
        opt._hyper = hyper
    traj = []
    for _ in range(steps):
        grads = grad_fn([arr(p).astype(np.float64) for p in params])
        for p, g in zip(params, grads):
            p.grad = jg.tensor(g, dtype=dtype)
        opt.step()
        traj.append([arr(p) for p in params])
    return traj, opt, params


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_trajectory_matches_numpy(name, kw):
    steps = 8
    got, _, _ = run_jitgrad(name, kw, steps)
    want = REFERENCES[name](INIT, grad_fn, steps, **kw)
    for g_step, w_step in zip(got, want):
        for g, w in zip(g_step, w_step):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-13)
    assert not np.allclose(got[-1][0], INIT[0])  # it moved


@pytest.mark.torch
@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_trajectory_matches_torch(name, kw, dtype):
    torch = pytest.importorskip("torch")
    steps = 6
    got, _, _ = run_jitgrad(name, kw, steps, dtype=getattr(jg, dtype))
    tdtype = getattr(torch, dtype)
    params = [torch.tensor(x, dtype=tdtype, requires_grad=True) for x in INIT]
    opt = getattr(torch.optim, name)(params, **kw)
    tol = dict(rtol=1e-12, atol=1e-13) if dtype == "float64" else dict(rtol=2e-5, atol=2e-6)
    for k in range(steps):
        grads = grad_fn([p.detach().numpy().astype(np.float64) for p in params])
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g, dtype=tdtype)
        opt.step()
        for g, p in zip(got[k], params):
            np.testing.assert_allclose(g, p.detach().numpy(), **tol)


def _tensor_hyper(group, key):
    value = group[key]
    if isinstance(value, tuple):
        return tuple(jg.tensor(v, dtype=jg.float64) for v in value)
    return jg.tensor(value, dtype=jg.float64)


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_hyperparameters_read_through_hyper_can_be_tensors(name, kw):
    """A compiler hooks ``_hyper`` to feed runtime values; the update must accept 0-d tensors."""
    seen = set()

    def hyper(group, key):
        seen.add(key)
        return _tensor_hyper(group, key)

    base, _, _ = run_jitgrad(name, kw, 5)
    hooked, _, _ = run_jitgrad(name, kw, 5, hyper=hyper)
    for a, b in zip(base[-1], hooked[-1]):
        np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-14)
    assert "lr" in seen


class RecordingTracer:
    """Fails on any Python read of a tensor value; records in-place writes."""

    def __init__(self):
        self.writes = []

    def write(self, x, new):
        self.writes.append(x)

    def on_concrete(self, t, what):
        raise AssertionError(f"optimizer step read a tensor value: {what}")

    def __getattr__(self, name):  # other recorder hooks: accept and ignore
        return lambda *args, **kwargs: None


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_step_writes_only_through_ops(name, kw):
    _, opt, params = run_jitgrad(name, kw, 2)  # state exists; the traced step updates it
    for p in params:
        p.grad = jg.ones_like(p)
    before = [arr(p).copy() for p in params]
    # Isolate the update from compiler hooks: plain options, hyperparameters as 0-d tensors.
    opt._option = lambda group, key: group[key]
    opt._option_test = lambda group, key, test: optim.optimizer.OPTION_TESTS[test](group[key])
    opt._hyper = _tensor_hyper
    tracer = STATE.tracer = RecordingTracer()
    try:
        opt.step()
    finally:
        STATE.tracer = None
    written = {id(x) for x in tracer.writes}
    for p, b in zip(params, before):
        assert id(p) in written and not np.array_equal(arr(p), b)
        for value in opt.state[p].values():
            assert id(value) in written  # every state tensor is updated in place


def test_state_tensors_are_updated_in_place():
    p = nn.Parameter(jg.randn(3))
    opt = optim.Adam([p], amsgrad=True)
    p.grad = jg.ones(3)
    opt.step()
    state = dict(opt.state[p])
    assert set(state) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert state["step"].shape == () and state["step"].dtype is jg.float32
    opt.step()
    opt.step()
    assert all(opt.state[p][k] is v for k, v in state.items())
    assert float(state["step"]) == 3.0
    q = nn.Parameter(jg.randn(3))
    sgd = optim.SGD([q], lr=0.1, momentum=0.9)
    q.grad = jg.ones(3)
    sgd.step()
    buf = sgd.state[q]["momentum_buffer"]
    sgd.step()
    assert sgd.state[q]["momentum_buffer"] is buf
    np.testing.assert_allclose(arr(buf), 1.9)


def test_params_without_grad_are_skipped():
    a, b = nn.Parameter(jg.ones(2)), nn.Parameter(jg.ones(2))
    opt = optim.Adam([a, b], lr=0.1)
    a.grad = jg.ones(2)
    opt.step()
    np.testing.assert_array_equal(arr(b), [1.0, 1.0])
    assert not opt.state.get(b)
    assert arr(a).max() < 1.0


def test_zero_grad_semantics():
    p = nn.Parameter(jg.ones(3))
    opt = optim.SGD([p], lr=0.1)
    (p * 2).sum().backward()
    g = p.grad
    opt.zero_grad(set_to_none=False)
    assert p.grad is g and not arr(g).any()
    (p * 2).sum().backward()
    np.testing.assert_array_equal(arr(p.grad), [2.0, 2.0, 2.0])  # accumulated into the zeros
    opt.zero_grad()
    assert p.grad is None


def test_param_groups_and_errors():
    a, b = nn.Parameter(jg.zeros(2)), nn.Parameter(jg.zeros(2))
    opt = optim.SGD([{"params": [a]}, {"params": b, "lr": 0.5}], lr=0.1, momentum=0.0)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[1]["lr"] == 0.5
    assert opt.param_groups[1]["params"] == [b] and opt.param_groups[1]["momentum"] == 0.0
    a.grad, b.grad = jg.ones(2), jg.ones(2)
    opt.step()
    np.testing.assert_allclose(arr(a), -0.1)
    np.testing.assert_allclose(arr(b), -0.5)
    c = nn.Parameter(jg.zeros(1))
    opt.add_param_group({"params": [c], "lr": 1.0})
    assert opt.param_groups[2]["momentum"] == 0.0
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        opt.add_param_group({"params": [a]})
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="ordered collections"):
        optim.SGD([{"params": {a}}])
    with pytest.raises(TypeError, match="should be an iterable of Tensors or dicts"):
        optim.SGD(a)
    with pytest.raises(ValueError, match="can't optimize a non-leaf Tensor"):
        optim.SGD([a * 2])
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        optim.SGD([a], lr=-1)
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum"):
        optim.SGD([a], nesterov=True)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1"):
        optim.Adam([a], betas=(0.9, 1.0))

    class Needs(optim.Optimizer):
        def __init__(self, params, lr=optim.required):
            super().__init__(params, dict(lr=lr))

    with pytest.raises(ValueError, match="required optimization parameter lr"):
        Needs([a])
    assert Needs([{"params": [a], "lr": 1.0}]).param_groups[0]["lr"] == 1.0


def test_adamw_default_weight_decay_and_repr():
    p = nn.Parameter(jg.ones(1))
    opt = optim.AdamW([p])
    assert opt.defaults["weight_decay"] == 1e-2
    assert repr(opt).startswith("AdamW (\nParameter Group 0\n    amsgrad: False\n")


def test_state_dict_round_trip_continues_identically():
    def make():
        params = [nn.Parameter(jg.tensor(x, dtype=jg.float64)) for x in INIT]
        return params, optim.Adam(params, lr=0.05, amsgrad=True)

    def steps(params, opt, n):
        for _ in range(n):
            for p, g in zip(params, grad_fn([arr(p) for p in params])):
                p.grad = jg.tensor(g)
            opt.step()

    pa, oa = make()
    steps(pa, oa, 3)
    sd = oa.state_dict()
    assert sd["param_groups"][0]["params"] == [0, 1] and set(sd["state"]) == {0, 1}
    sd["param_groups"][0]["lr"] = 0.02
    pb, ob = make()
    with jg.no_grad():
        for a, b in zip(pa, pb):
            b.copy_(a)
    ob.load_state_dict(sd)
    assert ob.param_groups[0]["lr"] == 0.02 and ob.param_groups[0]["params"] == pb
    oa.param_groups[0]["lr"] = 0.02
    assert ob.state[pb[0]]["exp_avg"] is not oa.state[pa[0]]["exp_avg"]
    steps(pa, oa, 3)
    steps(pb, ob, 3)
    for a, b in zip(pa, pb):
        np.testing.assert_array_equal(arr(a), arr(b))
    exp_avg = ob.state[pb[0]]["exp_avg"]
    ob.load_state_dict(ob.state_dict())
    assert ob.state[pb[0]]["exp_avg"] is exp_avg  # reloading writes into the live tensors
    with pytest.raises(ValueError, match="different number of parameter groups"):
        ob.load_state_dict({"state": {}, "param_groups": []})
    with pytest.raises(ValueError, match="doesn't match the size"):
        ob.load_state_dict({"state": {}, "param_groups": [{"params": [0], "lr": 1.0}]})


def test_step_closure():
    p = nn.Parameter(jg.tensor([1.0, -2.0]))
    opt = optim.SGD([p], lr=0.25)
    calls = []

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        calls.append(float(loss))
        return loss

    with jg.no_grad():  # the closure still records a graph, as in PyTorch
        loss = opt.step(closure)
    assert calls == [5.0] and float(loss) == 5.0
    np.testing.assert_allclose(arr(p), [0.5, -1.0])  # p - 0.25 * 2p


def separable_data(n=256, dim=64, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, dim)) * 3
    labels = rng.integers(0, classes, n)
    x = centers[labels] + rng.standard_normal((n, dim))
    return jg.tensor(x.astype(np.float32)), jg.tensor(labels)


def test_mlp_cross_entropy_sgd_learns():
    jg.manual_seed(0)
    x, y = separable_data()
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(50):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.1 * losses[0]
    accuracy = (arr(model(x).argmax(1)) == arr(y)).mean()
    assert accuracy > 0.95


@pytest.mark.torch
def test_mlp_training_matches_torch():
    torch = pytest.importorskip("torch")
    jg.manual_seed(1)
    x, y = separable_data(n=64, dim=8, classes=3, seed=1)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)).double()
    ref = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    ref = ref.double()
    with torch.no_grad():
        for (_, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
            q.copy_(torch.tensor(arr(p)))
    opt = optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    ropt = torch.optim.AdamW(ref.parameters(), lr=0.01, weight_decay=0.1)
    xt, yt = torch.tensor(arr(x), dtype=torch.float64), torch.tensor(arr(y))
    for _ in range(10):
        opt.zero_grad()
        loss = F.cross_entropy(model(x.double()), y, label_smoothing=0.1)
        loss.backward()
        opt.step()
        ropt.zero_grad()
        rloss = torch.nn.functional.cross_entropy(ref(xt), yt, label_smoothing=0.1)
        rloss.backward()
        ropt.step()
        np.testing.assert_allclose(float(loss), rloss.item(), rtol=1e-10)
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(arr(p), q.detach().numpy(), rtol=1e-9, atol=1e-11)


class _NoLoopReady(dict):
    """An ops.loops state table in which no loop is ready (the fused updates' NumPy path)."""

    def get(self, key, default=None):
        from jitgrad.ops import loops

        return loops._NUMPY


@pytest.mark.parametrize("loops_ready", [True, False], ids=["loop", "arrays"])
@pytest.mark.parametrize("dtype", [jg.float32, jg.float64])
@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_fused_eager_update_is_the_op_by_op_update_bit_for_bit(
    name, kw, dtype, loops_ready, monkeypatch
):
    # Eagerly, each parameter's update is one compiled loop (optim.fused) doing the op-by-op
    # update's arithmetic; under a tracer the ops run. Both must give the same bits: run the
    # same trajectory both ways, with a second parameter group at other step counts too.
    from jitgrad.optim import fused

    def trajectory():
        params = [nn.Parameter(jg.tensor(x, dtype=dtype)) for x in INIT]
        more = [nn.Parameter(jg.tensor(x * 0.5, dtype=dtype)) for x in INIT]
        opt = getattr(optim, name)([{"params": params}], **kw)
        out = []
        for step in range(6):
            if step == 2:
                opt.add_param_group({"params": more})
            live = params + (more if step >= 2 else [])
            grads = grad_fn([arr(p).astype(np.float64) for p in live[:2]])
            grads += grad_fn([arr(p).astype(np.float64) for p in live[2:]]) if step >= 2 else []
            for p, g in zip(live, grads):
                # (a 2-D gradient as a transposed view, as Linear's weight gradient is)
                p.grad = (
                    jg.tensor(g.T, dtype=dtype).t() if g.ndim == 2 else jg.tensor(g, dtype=dtype)
                )
            opt.step()
            out.append([arr(p) for p in live] + [arr(v) for s in opt.state.values()
                                                  for v in s.values()])  # fmt: skip
        return out

    from jitgrad.ops import loops

    if not loops_ready:  # (while the loops are being compiled: the same update over arrays)
        monkeypatch.setattr(loops, "_state", _NoLoopReady())
    calls = []
    real = fused.usable
    monkeypatch.setattr(fused, "usable", lambda *a, **k: calls.append(real(*a, **k)) or calls[-1])
    fast = trajectory()
    assert calls and all(calls)  # every update took the fused loop
    monkeypatch.setattr(fused, "usable", lambda *a, **k: False)
    slow = trajectory()
    for a, b in zip(fast, slow):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
