"""Module behaviour that PyTorch programs rely on, checked against PyTorch: buffers, traversal,
hooks, printing, state_dict loading and its errors, and tied weights (eager and compiled)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jitgrad as jg  # noqa: E402
from jitgrad import optim  # noqa: E402


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("JITGRAD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "jg-cache"))
    torch.manual_seed(0)  # (reproducible draws of the reference modules)


def _net(lib):
    """The same nested model in either library."""
    nn = lib.nn

    class Block(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.proj = nn.Linear(width, width)
            self.norm = nn.LayerNorm(width)
            self.register_buffer("scale", lib.ones(width))
            self.register_buffer("cache", lib.zeros(width), persistent=False)

        def forward(self, x):
            return self.norm(self.proj(x)) * self.scale

        def extra_repr(self):
            return "width=3,\nnote=two lines"

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 3)
            self.blocks = nn.ModuleList([Block(3), Block(3), nn.Identity()])
            self.heads = nn.ModuleDict({"a": nn.Linear(3, 2), "b": nn.Linear(3, 2, bias=False)})
            self.seq = nn.Sequential(nn.Conv1d(3, 4, 2, padding=1), nn.GELU(), nn.Dropout(0.1))
            self.bn = nn.BatchNorm1d(4)

        def forward(self, idx):
            h = self.embed(idx)
            for block in self.blocks:
                h = block(h)
            return self.heads["a"](h)

    return Net()


def _load_torch_state(jm, tm):
    jm.load_state_dict({k: jg.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})


def test_print_layout_matches_torch():
    assert str(_net(jg)) == str(_net(torch))
    # runs of identical children in a ModuleList print once
    t = torch.nn.ModuleList([torch.nn.Linear(2, 2) for _ in range(3)] + [torch.nn.ReLU()] * 2)
    j = jg.nn.ModuleList([jg.nn.Linear(2, 2) for _ in range(3)] + [jg.nn.ReLU()] * 2)
    assert repr(j) == repr(t)
    assert repr(jg.nn.ModuleList()) == repr(torch.nn.ModuleList())


def test_traversal_matches_torch():
    tm, jm = _net(torch), _net(jg)
    assert [n for n, _ in jm.named_modules()] == [n for n, _ in tm.named_modules()]
    assert [type(m).__name__ for m in jm.modules()] == [type(m).__name__ for m in tm.modules()]
    assert [n for n, _ in jm.named_buffers()] == [n for n, _ in tm.named_buffers()]
    assert [n for n, _ in jm.named_parameters()] == [n for n, _ in tm.named_parameters()]
    assert [n for n, _ in jm.named_children()] == [n for n, _ in tm.named_children()]
    # non-persistent buffers are buffers, but not state
    assert list(jm.state_dict()) == list(tm.state_dict())
    assert "blocks.0.cache" in dict(jm.named_buffers())
    assert "blocks.0.cache" not in jm.state_dict()
    assert jm.get_submodule("blocks.1.norm") is jm.blocks[1].norm
    assert jm.get_parameter("heads.a.bias") is jm.heads["a"].bias
    assert jm.get_buffer("blocks.0.scale") is jm.blocks[0].scale
    for target in ("blocks.0.proj.weight", "blocks.7", "nope"):
        with pytest.raises(AttributeError) as t_err:
            tm.get_submodule(target)
        with pytest.raises(AttributeError) as j_err:
            jm.get_submodule(target)
        assert str(j_err.value) == str(t_err.value)
    for target, getter in (("heads.a.nope", "get_parameter"), ("blocks.0.cache", "get_parameter"),
                           ("blocks.0.proj.weight", "get_buffer")):  # fmt: skip
        with pytest.raises(AttributeError) as t_err:
            getattr(tm, getter)(target)
        with pytest.raises(AttributeError) as j_err:
            getattr(jm, getter)(target)
        assert str(j_err.value) == str(t_err.value)


def test_apply_requires_grad_and_zero_grad():
    jm = _net(jg)
    seen = []
    assert jm.apply(lambda m: seen.append(type(m).__name__)) is jm
    tseen = []
    _net(torch).apply(lambda m: tseen.append(type(m).__name__))
    assert seen == tseen  # children first, then the module itself

    def init(m):
        if isinstance(m, jg.nn.Linear):
            jg.nn.init.constant_(m.weight, 0.5)

    jm.apply(init)
    assert np.all(jm.heads["a"].weight.detach().numpy() == 0.5)
    assert jm.requires_grad_(False) is jm
    assert not any(p.requires_grad for p in jm.parameters())
    jm.requires_grad_()
    out = jm(jg.tensor([[1, 2]])).sum()
    out.backward()
    assert jm.heads["a"].weight.grad is not None
    jm.zero_grad()  # set_to_none=True by default, as PyTorch 2
    assert all(p.grad is None for p in jm.parameters())
    jm(jg.tensor([[1, 2]])).sum().backward()
    jm.zero_grad(set_to_none=False)
    grad = jm.heads["a"].weight.grad
    assert grad is not None and not np.any(grad.numpy())


def test_forward_hooks_match_torch():
    t_model = torch.nn.Linear(3, 2)

    def run(lib):
        m = t_model if lib is torch else jg.nn.Linear(3, 2)
        if lib is jg:
            _load_torch_state(m, t_model)
        log = []
        h1 = m.register_forward_pre_hook(lambda mod, args: (args[0] * 2,))
        h2 = m.register_forward_pre_hook(lambda mod, args: log.append("first"), prepend=True)
        h3 = m.register_forward_hook(lambda mod, args, out: out + 1)
        h4 = m.register_forward_hook(
            lambda mod, args, kwargs, out: log.append(sorted(kwargs)) or out * 3, with_kwargs=True
        )
        x = lib.ones(1, 3)
        hooked = m(x).detach().numpy()
        for h in (h1, h2, h3, h4):
            h.remove()
        plain = m(x).detach().numpy()
        return m, hooked, plain, log

    _, t_hooked, t_plain, t_log = run(torch)
    _, j_hooked, j_plain, j_log = run(jg)
    np.testing.assert_allclose(j_hooked, t_hooked, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(j_plain, t_plain, rtol=1e-6, atol=1e-6)
    assert j_log == t_log == ["first", []]


def test_forward_pre_hook_with_kwargs_and_always_call():
    class Scale(jg.nn.Module):
        def forward(self, x, factor=1.0):
            if factor == 0:
                raise ValueError("zero")
            return x * factor

    m = Scale()
    m.register_forward_pre_hook(
        lambda mod, args, kwargs: (args, {**kwargs, "factor": kwargs.get("factor", 1.0) * 10}),
        with_kwargs=True,
    )
    assert float(m(jg.tensor(2.0), factor=0.5)) == 10.0
    calls = []
    with m.register_forward_hook(lambda mod, args, out: calls.append(out), always_call=True):
        m2 = Scale()
        m2.register_forward_hook(lambda mod, args, out: calls.append(out), always_call=True)
        with pytest.raises(ValueError):
            m2(jg.tensor(1.0), factor=0)
        assert calls == [None]
        m(jg.tensor(1.0))
    assert len(calls) == 2
    m(jg.tensor(1.0))
    assert len(calls) == 2  # the with block removed the hook
    bad = Scale()
    bad.register_forward_pre_hook(lambda mod, args, kwargs: 5, with_kwargs=True)
    with pytest.raises(RuntimeError, match="forward pre-hook must return None or a tuple"):
        bad(jg.tensor(1.0))


def test_full_backward_hooks_match_torch():
    t_seq = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh())

    def run(lib):
        m = t_seq if lib is torch else jg.nn.Sequential(jg.nn.Linear(3, 2), jg.nn.Tanh())
        if lib is jg:
            _load_torch_state(m, t_seq)
        log = []

        def hook(mod, grad_input, grad_output):
            log.append(("hook", [g.numpy().copy() for g in grad_input if g is not None],
                        [g.numpy().copy() for g in grad_output]))  # fmt: skip
            return tuple(None if g is None else g * 0.5 for g in grad_input)

        def pre_hook(mod, grad_output):
            log.append(("pre", [g.numpy().copy() for g in grad_output]))
            return (grad_output[0] * 2,)

        m[0].register_full_backward_hook(hook)
        m[0].register_full_backward_pre_hook(pre_hook)
        x = lib.tensor(np.array([[0.5, -1.0, 2.0], [1.0, 0.0, -0.5]], np.float32))
        x.requires_grad_(True)
        m(x).sum().backward()
        return log, x.grad.numpy(), m[0].weight.grad.numpy()

    t_log, t_gx, t_gw = run(torch)
    j_log, j_gx, j_gw = run(jg)
    assert [e[0] for e in j_log] == [e[0] for e in t_log] == ["pre", "hook"]
    for j, t in zip(j_log, t_log):
        for ja, ta in zip(j[1:], t[1:]):
            for a, b in zip(ja, ta, strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(j_gx, t_gx, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(j_gw, t_gw, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_full_backward_hook_without_input_grad():
    for lib in (torch, jg):
        m = lib.nn.Linear(3, 2)
        seen = []
        m.register_full_backward_hook(lambda mod, gi, go, seen=seen: seen.append((gi, len(go))))
        m(lib.ones(2, 3)).sum().backward()
        assert seen == [((None,), 1)]


def test_load_state_dict_errors_match_torch_and_change_nothing():
    def make(lib):
        nn = lib.nn
        return nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Linear(3, 1))

    tm, jm = make(torch), make(jg)
    before = {k: v.numpy().copy() for k, v in jm.state_dict().items()}
    good = {k: v.numpy() for k, v in jm.state_dict().items()}
    bad = dict(good)
    del bad["0.bias"]
    bad["extra.weight"] = np.zeros(2, np.float32)
    bad["2.weight"] = np.zeros((1, 4), np.float32)
    bad["1.running_mean"] = np.full(3, 7.0, np.float32)  # valid, but must not be written
    for strict in (True, False):
        with pytest.raises(RuntimeError) as t_err:
            tm.load_state_dict({k: torch.tensor(v) for k, v in bad.items()}, strict=strict)
        with pytest.raises(RuntimeError) as j_err:
            jm.load_state_dict({k: jg.tensor(v) for k, v in bad.items()}, strict=strict)
        expected = str(t_err.value).replace("torch.", "jitgrad.")
        # PyTorch's text, then what to do about it
        assert str(j_err.value).startswith(expected), (str(j_err.value), expected)
        for k, v in jm.state_dict().items():
            np.testing.assert_array_equal(v.numpy(), before[k])
    del bad["2.weight"]
    t_res = tm.load_state_dict({k: torch.tensor(v) for k, v in bad.items()}, strict=False)
    j_res = jm.load_state_dict({k: jg.tensor(v) for k, v in bad.items()}, strict=False)
    assert j_res == t_res and repr(j_res) == repr(t_res)
    assert repr(jm.load_state_dict(jm.state_dict())) == "<All keys matched successfully>"
    np.testing.assert_array_equal(jm[1].running_mean.numpy(), np.full(3, 7.0))


def test_state_dict_round_trip_from_torch():
    tm, jm = _net(torch), _net(jg)
    _load_torch_state(jm, tm)
    idx = np.array([[1, 4, 9], [0, 2, 2]])
    np.testing.assert_allclose(
        jm(jg.tensor(idx)).detach().numpy(),
        tm(torch.tensor(idx)).detach().numpy(),
        rtol=1e-5,
        atol=1e-6,
    )


class _TiedLM:
    """An embedding and an output layer sharing one weight, in either library."""

    @staticmethod
    def make(lib):
        nn = lib.nn

        class LM(nn.Module):
            def __init__(self):
                super().__init__()
                self.embed = nn.Embedding(7, 4)
                self.mix = nn.Linear(4, 4)
                self.out = nn.Linear(4, 7, bias=False)
                self.out.weight = self.embed.weight

            def forward(self, idx):
                return self.out(lib.tanh(self.mix(self.embed(idx))))

        return LM()


def test_tied_weights_are_one_parameter():
    tm, jm = _TiedLM.make(torch), _TiedLM.make(jg)
    assert [n for n, _ in jm.named_parameters()] == [n for n, _ in tm.named_parameters()]
    assert len(list(jm.parameters())) == 3
    assert list(jm.state_dict()) == list(tm.state_dict())  # both keys, as PyTorch
    assert jm.out.weight is jm.embed.weight
    _load_torch_state(jm, tm)
    idx, target = np.array([1, 5, 2, 6]), np.array([0, 3, 3, 1])
    for lib, m in ((torch, tm), (jg, jm)):
        opt = lib.optim.SGD(m.parameters(), lr=0.3)
        for _ in range(2):
            opt.zero_grad()
            lib.nn.functional.cross_entropy(m(lib.tensor(idx)), lib.tensor(target)).backward()
            opt.step()
    for key, value in tm.state_dict().items():
        np.testing.assert_allclose(
            jm.state_dict()[key].numpy(), value.numpy(), rtol=1e-5, atol=1e-6
        )
    assert jm.out.weight is jm.embed.weight


@pytest.mark.filterwarnings("error")
def test_compiled_step_with_tied_weights_matches_eager():
    torch.manual_seed(0)
    state = {k: v.detach().numpy().copy() for k, v in _TiedLM.make(torch).state_dict().items()}
    idx, target = jg.tensor(np.array([1, 5, 2, 6])), jg.tensor(np.array([0, 3, 3, 1]))

    def run(compiled):
        m = _TiedLM.make(jg)
        m.load_state_dict({k: jg.tensor(v) for k, v in state.items()})
        opt = optim.Adam(m.parameters(), lr=0.05)

        def step(x, y):
            opt.zero_grad(set_to_none=True)
            loss = jg.nn.functional.cross_entropy(m(x), y)
            loss.backward()
            opt.step()
            return loss

        if compiled:
            step = jg.compile(step, backend="numba")
        losses = [float(step(idx, target)) for _ in range(4)]
        return m, losses, step

    eager_m, eager, _ = run(False)
    m, compiled, step = run(True)
    assert step.stats.cache_hits >= 2, step.stats
    np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-6)
    assert m.out.weight is m.embed.weight
    np.testing.assert_allclose(
        m.embed.weight.detach().numpy(), eager_m.embed.weight.detach().numpy(), rtol=1e-5,
        atol=1e-6,
    )  # fmt: skip


def test_buffer_marker_and_persistence():
    def make(lib):
        class M(lib.nn.Module):
            def __init__(self):
                super().__init__()
                self.stats = lib.nn.Buffer(lib.ones(2), persistent=False)
                self.count = lib.nn.Buffer(lib.zeros(1))
                self.register_buffer("plain", lib.ones(3), persistent=False)

        return M()

    tm, jm = make(torch), make(jg)
    assert list(jm.state_dict()) == list(tm.state_dict()) == ["count"]
    assert [n for n, _ in jm.named_buffers()] == [n for n, _ in tm.named_buffers()]
    assert not isinstance(jm.stats, jg.nn.Buffer) and isinstance(jm.stats, jg.Tensor)
    # a non-persistent buffer is not expected from a checkpoint, and not accepted from one
    assert repr(jm.load_state_dict({"count": jg.ones(1)})) == "<All keys matched successfully>"
    res = jm.load_state_dict({"count": jg.ones(1), "plain": jg.ones(3)}, strict=False)
    t_res = tm.load_state_dict({"count": torch.ones(1), "plain": torch.ones(3)}, strict=False)
    assert res == t_res


@pytest.mark.filterwarnings("error")
def test_compiled_step_runs_forward_and_backward_hooks():
    def run(compiled):
        jg.manual_seed(0)
        m = jg.nn.Linear(3, 2)
        m.register_forward_hook(lambda mod, args, out: out * 2)
        m.register_full_backward_pre_hook(lambda mod, grad_output: (grad_output[0] * 0.5,))
        opt = optim.SGD(m.parameters(), lr=0.1)

        def step(x):
            opt.zero_grad()
            loss = m(x).square().mean()
            loss.backward()
            opt.step()
            return loss

        if compiled:
            step = jg.compile(step, backend="numba")
        x = jg.tensor(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3))
        return m, [float(step(x)) for _ in range(4)], step

    eager_m, eager, _ = run(False)
    m, compiled, step = run(True)
    assert step.stats.cache_hits >= 2, step.stats
    np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        m.weight.detach().numpy(), eager_m.weight.detach().numpy(), rtol=1e-5, atol=1e-6
    )


def test_functional_call_matches_torch():
    def make(lib):
        class Tied(lib.nn.Module):
            def __init__(self):
                super().__init__()
                self.a = lib.nn.Linear(2, 2)
                self.b = lib.nn.Linear(2, 2)
                self.b.weight = self.a.weight
                self.register_buffer("shift", lib.ones(2))

            def forward(self, x, scale=1.0):
                return self.b(self.a(x)) * scale + self.shift

        return Tied()

    tm, jm = make(torch), make(jg)
    _load_torch_state(jm, tm)
    t_call, j_call = torch.func.functional_call, jg.nn.utils.stateless.functional_call
    w = np.array([[0.5, -1.0], [2.0, 0.25]], np.float32)
    x = np.array([[1.0, -2.0]], np.float32)
    t_w, j_w = torch.tensor(w, requires_grad=True), jg.tensor(w, requires_grad=True)
    for tie in (True, False):
        t_out = t_call(tm, {"a.weight": t_w, "shift": torch.zeros(2)}, (torch.tensor(x),),
                       {"scale": 2.0}, tie_weights=tie)  # fmt: skip
        j_out = j_call(jm, {"a.weight": j_w, "shift": jg.zeros(2)}, (jg.tensor(x),),
                       {"scale": 2.0}, tie_weights=tie)  # fmt: skip
        np.testing.assert_allclose(
            j_out.detach().numpy(), t_out.detach().numpy(), rtol=1e-6, atol=1e-6
        )
        t_out.sum().backward()
        j_out.sum().backward()
        np.testing.assert_allclose(j_w.grad.numpy(), t_w.grad.numpy(), rtol=1e-6, atol=1e-6)
    # the module's own tensors are back
    assert isinstance(jm.a.weight, jg.nn.Parameter) and jm.b.weight is jm.a.weight
    np.testing.assert_array_equal(jm.shift.numpy(), np.ones(2))
    bad = {"a.weight": jg.zeros(2, 2), "b.weight": jg.ones(2, 2)}
    with pytest.raises(ValueError) as t_err:
        t_call(tm, {k: torch.tensor(v.numpy()) for k, v in bad.items()}, torch.tensor(x))
    with pytest.raises(ValueError) as j_err:
        j_call(jm, bad, jg.tensor(x))
    assert str(j_err.value) == str(t_err.value)
    with pytest.raises(RuntimeError) as t_err:
        t_call(tm, {"a.weight": t_w, "foo": torch.ones(1)}, torch.tensor(x), strict=True)
    with pytest.raises(RuntimeError) as j_err:
        j_call(jm, {"a.weight": j_w, "foo": jg.ones(1)}, jg.tensor(x), strict=True)
    assert str(j_err.value) == str(t_err.value)


def test_backward_pre_hook_alone_runs():
    for lib in (torch, jg):
        m = lib.nn.Linear(3, 2)
        seen = []
        m.register_full_backward_pre_hook(lambda mod, go, seen=seen: seen.append(len(go)))
        x = lib.ones(2, 3, requires_grad=True)
        m(x).sum().backward()
        assert seen == [1]


def test_data_parallel_and_container():
    for lib in (torch, jg):
        inner = lib.nn.Linear(2, 3)
        wrapped = lib.nn.DataParallel(inner)
        assert wrapped.module is inner and list(wrapped.state_dict()) == [
            "module.weight",
            "module.bias",
        ]
        assert tuple(wrapped(lib.ones(4, 2)).shape) == (4, 3)
        with pytest.warns(FutureWarning, match="`nn.Container` is deprecated"):
            c = lib.nn.Container(a=lib.nn.Linear(1, 1))
        assert [n for n, _ in c.named_children()] == ["a"]
    assert repr(jg.nn.DataParallel(jg.nn.ReLU())) == repr(torch.nn.DataParallel(torch.nn.ReLU()))


def test_shared_submodule_state_dict_round_trip():
    for lib in (torch, jg):
        shared = lib.nn.Linear(2, 2)
        m = lib.nn.Sequential(shared, lib.nn.ReLU(), shared)
        keys = list(m.state_dict())
        assert keys == ["0.weight", "0.bias", "2.weight", "2.bias"]
        assert repr(m.load_state_dict(m.state_dict())) == "<All keys matched successfully>"
        assert len(list(m.parameters())) == 2
        every = [n for n, _ in m.named_parameters(remove_duplicate=False)]
        assert every == keys


def test_state_dict_hooks_and_extra_state():
    def make(lib):
        class WithExtra(lib.nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = lib.nn.Linear(2, 2)
                self.tag = "a"

            def get_extra_state(self):
                return {"tag": self.tag}

            def set_extra_state(self, state):
                self.tag = state["tag"]

        return WithExtra()

    tm, jm = make(torch), make(jg)
    assert list(jm.state_dict()) == list(tm.state_dict())
    state = jm.state_dict()
    assert state["_extra_state"] == {"tag": "a"}
    other = make(jg)
    other.tag = "b"
    other.load_state_dict(state)
    assert other.tag == "a"
    with pytest.raises(RuntimeError) as t_err:
        tm.load_state_dict({k: v for k, v in tm.state_dict().items() if k != "_extra_state"})
    with pytest.raises(RuntimeError) as j_err:
        jm.load_state_dict({k: v for k, v in jm.state_dict().items() if k != "_extra_state"})
    assert str(j_err.value).startswith(str(t_err.value))

    calls = []
    for lib, m in ((torch, tm), (jg, jm)):
        log = []
        m.register_state_dict_pre_hook(lambda mod, prefix, keep_vars, log=log: log.append("pre"))
        m.lin.register_state_dict_post_hook(
            lambda mod, sd, prefix, meta, log=log: log.append(sorted(k for k in sd))
        )

        # a checkpoint that names the layer "old": the pre-hook renames its keys
        def rename(mod, sd, prefix, meta, strict, missing, unexpected, errors):
            for key in [k for k in sd if k.startswith(prefix + "old.")]:
                sd[prefix + "lin." + key[len(prefix + "old.") :]] = sd.pop(key)

        m.register_load_state_dict_pre_hook(rename)
        m.register_load_state_dict_post_hook(
            lambda mod, keys, log=log: log.append(("post", list(keys.missing_keys)))
        )
        m.state_dict()
        ckpt = {
            "old.weight": lib.zeros(2, 2),
            "old.bias": lib.ones(2),
            "_extra_state": {"tag": "z"},
        }
        m.load_state_dict(ckpt)
        assert "old.weight" in ckpt  # the caller's dict is not edited
        assert float(m.lin.bias.detach().sum()) == 2.0 and m.tag == "z"
        calls.append(log)
    assert calls[0] == calls[1]


def test_conversions_and_set_submodule_match_torch():
    for lib in (torch, jg):
        m = lib.nn.Sequential(lib.nn.Linear(2, 2), lib.nn.BatchNorm1d(2))
        assert m.half()[0].weight.dtype == lib.float16
        assert m.double()[1].running_mean.dtype == lib.float64
        assert m[1].num_batches_tracked.dtype == lib.int64
        assert m.type(lib.float32)[0].weight.dtype == lib.float32
        assert m.share_memory() is m
        m.set_submodule("0", lib.nn.ReLU())
        m.set_submodule("2", lib.nn.Tanh())
        assert [type(c).__name__ for c in m] == ["ReLU", "BatchNorm1d", "Tanh"]
    tm = torch.nn.Sequential(torch.nn.Linear(2, 2))
    jm = jg.nn.Sequential(jg.nn.Linear(2, 2))
    for target, kwargs in (("", {}), ("0.weight", {}), ("3.x", {}), ("0.nope", {"strict": True})):
        with pytest.raises((ValueError, AttributeError)) as t_err:
            tm.set_submodule(target, torch.nn.ReLU(), **kwargs)
        with pytest.raises((ValueError, AttributeError)) as j_err:
            jm.set_submodule(target, jg.nn.ReLU(), **kwargs)
        assert type(j_err.value) is type(t_err.value)
        assert str(j_err.value) == str(t_err.value), target
