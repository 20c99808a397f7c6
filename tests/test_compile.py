"""jitgrad.compile with the reference interpreter: whole-step and inside-an-eager-graph uses,
cache and retrace rules, agreement checking. Eager execution is the reference (bit for bit)."""

from __future__ import annotations

import numpy as np
import pytest

import jitgrad as jg
import jitgrad.nn as nn
import jitgrad.nn.functional as F
import jitgrad.optim as optim


def _mlp(seed=0, dtype=jg.float32):
    jg.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).to(dtype)


def _data(seed=0, n=12):
    rng = np.random.default_rng(seed)
    x = jg.tensor(rng.standard_normal((n, 8)).astype(np.float32))
    y = jg.tensor(rng.integers(0, 4, n))
    return x, y


def _params(model):
    return [p.detach().numpy().copy() for p in model.parameters()]


def _make_step(model, opt, loss_fn=F.cross_entropy):
    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def _compiled_call(f, *args):
    """The result of a compiled run. The first call of a compiled function traces it and returns
    what eager execution computed (so does a warm-up retrace): only a cache hit runs the backend."""
    f(*args)
    hits = f.stats.cache_hits
    out = f(*args)
    assert f.stats.cache_hits == hits + 1, f.stats
    return out


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
        lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
        lambda ps: optim.Adam(ps, lr=1e-2),
        lambda ps: optim.AdamW(ps, lr=1e-2),
    ],
    ids=["sgd-momentum", "sgd-nesterov-wd", "adam", "adamw"],
)
def test_whole_step_training_matches_eager_exactly(make_opt):
    eager_model, comp_model = _mlp(), _mlp()
    eager_opt, comp_opt = make_opt(eager_model.parameters()), make_opt(comp_model.parameters())
    eager_step = _make_step(eager_model, eager_opt)
    comp_step = jg.compile(_make_step(comp_model, comp_opt), backend="interpreter")
    param_ids = [id(p) for p in comp_model.parameters()]
    for i in range(20):
        x, y = _data(i)
        le = eager_step(x, y)
        lc = comp_step(x, y)
        assert lc.item() == le.item(), i
        for a, b in zip(_params(eager_model), _params(comp_model)):
            np.testing.assert_array_equal(a, b)
        for pe, pc in zip(eager_model.parameters(), comp_model.parameters()):
            np.testing.assert_array_equal(pe.grad.numpy(), pc.grad.numpy())
    assert [id(p) for p in comp_model.parameters()] == param_ids  # updated in place
    s = comp_step.stats
    assert s.cache_hits >= 17 and s.traces <= 3, s
    # optimizer state matches too
    for pe, pc in zip(eager_model.parameters(), comp_model.parameters()):
        for k, v in eager_opt.state[pe].items():
            np.testing.assert_array_equal(v.numpy(), comp_opt.state[pc][k].numpy())


def test_learning_rate_change_does_not_retrace():
    model = _mlp()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step = jg.compile(_make_step(model, opt))
    ref_model = _mlp()
    ref_opt = optim.SGD(ref_model.parameters(), lr=0.1, momentum=0.9)
    ref_step = _make_step(ref_model, ref_opt)
    for i in range(6):
        for o in (opt, ref_opt):
            o.param_groups[0]["lr"] = 0.1 / (1 + i)
        x, y = _data(i)
        assert step(x, y).item() == ref_step(x, y).item()
    for a, b in zip(_params(ref_model), _params(model)):
        np.testing.assert_array_equal(a, b)
    traces = step.stats.traces
    for i in range(3):
        opt.param_groups[0]["lr"] = 0.01 * i
        step(*_data(i))
    assert step.stats.traces == traces


def test_python_float_arguments_are_runtime_values():
    f = jg.compile(lambda x, a: x * a + a)
    x = jg.randn(5)
    for a in (0.5, 1.5, -2.0):
        np.testing.assert_array_equal(f(x, a).numpy(), (x * a + a).numpy())
    assert f.stats.traces == 1 and f.stats.cache_hits == 2


def test_new_shape_retraces_and_explains_why():
    f = jg.compile(lambda x: (x * 2).sum(0))
    f(jg.ones(4, 3))
    f(jg.ones(4, 3))
    f(jg.ones(8, 3))
    assert f.stats.traces == 2
    assert any("(4, 3)" in r and "(8, 3)" in r for r in f.stats.retrace_reasons)
    assert "retrace" in f.explain()


def test_changing_a_structural_option_retraces():
    model = _mlp()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.0)
    step = jg.compile(_make_step(model, opt))
    step(*_data(0))
    step(*_data(1))
    traces = step.stats.traces
    opt.param_groups[0]["momentum"] = 0.9  # adds a momentum buffer: a different program
    ref = _mlp()
    ref_opt = optim.SGD(ref.parameters(), lr=0.1, momentum=0.0)
    ref_step = _make_step(ref, ref_opt)
    ref_step(*_data(0))
    ref_step(*_data(1))
    ref_opt.param_groups[0]["momentum"] = 0.9
    for i in range(2, 5):
        assert step(*_data(i)).item() == ref_step(*_data(i)).item()
    assert step.stats.traces > traces


def test_module_compiles_and_gradients_flow_inside_an_eager_graph():
    model = _mlp()
    ref = _mlp()
    cmodel = jg.compile(model)
    for i in range(3):
        x, y = _data(i)
        loss = F.cross_entropy(cmodel(x), y)
        loss.backward()
        ref_loss = F.cross_entropy(ref(x), y)
        ref_loss.backward()
        assert loss.item() == ref_loss.item()
        for p, q in zip(model.parameters(), ref.parameters()):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-6, atol=1e-7)
    assert cmodel.stats.cache_hits >= 2
    assert cmodel.backward_tape(x) is not None
    out = cmodel(x)
    assert out.grad_fn is not None and "Compiled" in out.grad_fn.name()


def test_inside_mode_input_gradients_and_create_graph():
    f = jg.compile(lambda x, w: jg.tanh(x @ w).sum(1))
    rng = np.random.default_rng(0)
    xa, wa = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    for _ in range(2):  # trace, then replay
        x = jg.tensor(xa, requires_grad=True)
        w = jg.tensor(wa, requires_grad=True)
        out = f(x, w)
        (gx,) = jg.autograd.grad(out.sum(), x, create_graph=True)
        (ggw,) = jg.autograd.grad(gx.pow(2).sum(), w)
        x2 = jg.tensor(xa, requires_grad=True)
        w2 = jg.tensor(wa, requires_grad=True)
        (rx,) = jg.autograd.grad(jg.tanh(x2 @ w2).sum(1).sum(), x2, create_graph=True)
        (rw,) = jg.autograd.grad(rx.pow(2).sum(), w2)
        np.testing.assert_allclose(gx.detach().numpy(), rx.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(ggw.numpy(), rw.numpy(), rtol=1e-10)


def test_higher_order_gradients_inside_a_compiled_function():
    @jg.compile
    def second_derivative(x):
        (g,) = jg.autograd.grad((x**4).sum(), x, create_graph=True)
        (h,) = jg.autograd.grad(g.sum(), x)
        return h

    for v in ([1.0, 2.0], [0.5, -1.0]):
        x = jg.tensor(v, dtype=jg.float64, requires_grad=True)
        np.testing.assert_allclose(second_derivative(x).numpy(), 12 * np.array(v) ** 2)
    assert second_derivative.stats.traces == 1


def test_check_mode_passes_and_reports_disagreement():
    f = jg.compile(lambda x: jg.exp(x).sum() * 2.0, check=True)
    x = jg.randn(6)
    f(x)
    f(x)
    entry = f._cache[next(iter(f._cache))][0]
    real = entry.exe

    class Broken:  # (the members of backends.contract.Executable that a call reaches)
        backend = "broken"
        lock = None
        direct_call = None

        def __init__(self):
            self.tape = real.tape

        def __call__(self, inputs):
            outs, writes = real(inputs)
            return [o + 1.0 for o in outs], writes

        def values(self, inputs):
            vals = real.values(inputs)
            first = self.tape.eqns[0].out
            vals[first] = vals[first] * 1.01
            return vals

        def kernel_of(self, v):
            return "kernel_0"

    entry.exe = Broken()
    with pytest.raises(jg.AgreementError, match=r"exp .*kernel_0.*max abs error"):
        f(x)


def test_tape_and_source_show_what_runs():
    f = jg.compile(lambda x: jg.relu(x) * 3.0)
    x = jg.randn(4)
    with pytest.raises(RuntimeError, match="call it once first"):
        f.tape(x)
    f(x)
    text = str(f.tape(x))
    assert "where" in text and "mul" in text
    assert f.source(x)


def test_decorator_with_options_and_unknown_backend():
    @jg.compile(backend="interpreter")
    def g(x):
        return x + 1.0

    assert _compiled_call(g, jg.ones(2)).tolist() == [2.0, 2.0]
    with pytest.raises(ValueError, match="unknown backend"):
        jg.compile(lambda x: x, backend="nope")


def test_whole_step_returns_detached_outputs():
    w = jg.ones(3, requires_grad=True)

    @jg.compile
    def step(x):
        loss = (w * x).sum()
        loss.backward()
        return loss

    for _ in range(3):
        out = step(jg.ones(3))
        assert out.grad_fn is None and not out.requires_grad
    # no zero_grad inside: gradients accumulate across calls, as they would eagerly
    np.testing.assert_array_equal(w.grad.numpy(), np.full(3, 3.0))


@pytest.mark.parametrize("backend", ["interpreter", "numba"])
def test_returned_constants_and_inputs_are_the_callers_own(backend, tmp_path, monkeypatch):
    # a returned constant (zeros, full) is a writable array of its own, and modifying it (or a
    # returned input) changes nothing for the next call
    monkeypatch.setenv("JITGRAD_CACHE_DIR", str(tmp_path))

    @jg.compile(backend=backend)
    def f(x):
        return x * 2, jg.zeros(3, 4), jg.full((2, 2), 3.0), x

    x = jg.ones(2)
    _, z, w, same = _compiled_call(f, x)
    z += 5
    w[0, 0] = 7.0
    same += 1
    _, z2, w2, _ = f(x)
    np.testing.assert_array_equal(z.numpy(), np.full((3, 4), 5.0))
    np.testing.assert_array_equal(z2.numpy(), np.zeros((3, 4)))
    np.testing.assert_array_equal(w2.numpy(), np.full((2, 2), 3.0))
    np.testing.assert_array_equal(x.numpy(), [1.0, 1.0])
