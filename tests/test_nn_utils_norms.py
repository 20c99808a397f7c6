"""``nn.utils.weight_norm`` / ``spectral_norm`` (hook-based reparametrizations),
``nn.utils.parametrize`` and ``parametrizations``, ``nn.utils.prune`` and the conv/linear +
batch-norm fusions, against PyTorch; one compiled step with all four norms and a pruned layer."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jitgrad as jg  # noqa: E402

RNG = np.random.default_rng(11)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated")


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("JITGRAD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "jg-cache"))
    torch.manual_seed(0)  # (reproducible draws of the reference modules)


def _load(jm, tm):
    jm.load_state_dict({k: jg.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})


def _same_state_layout(jm, tm):
    assert list(jm.state_dict()) == list(tm.state_dict())
    for (k, j), t in zip(jm.state_dict().items(), tm.state_dict().values()):
        assert tuple(j.shape) == tuple(t.shape), k


def _x(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


MAKERS = {
    "Linear": (lambda nn: nn.Linear(4, 3), (2, 4)),
    "Conv1d": (lambda nn: nn.Conv1d(3, 2, 3), (2, 3, 5)),
    "ConvTranspose1d": (lambda nn: nn.ConvTranspose1d(3, 2, 3), (2, 3, 5)),
}


@pytest.mark.parametrize("dim", [0, 1, None, 2])
def test_weight_norm_matches_torch(dim):
    tm, jm = torch.nn.Conv1d(3, 2, 3), jg.nn.Conv1d(3, 2, 3)
    _load(jm, tm)
    torch.nn.utils.weight_norm(tm, dim=dim)
    with pytest.warns(FutureWarning, match="is deprecated in favor of"):
        jg.nn.utils.weight_norm(jm, dim=dim)
    _same_state_layout(jm, tm)
    assert [n for n, _ in jm.named_parameters()] == [n for n, _ in tm.named_parameters()]
    assert repr(jm) == repr(tm)
    x = _x(2, 3, 5)
    t_out, j_out = tm(torch.tensor(x)), jm(jg.tensor(x))
    np.testing.assert_allclose(j_out.detach().numpy(), t_out.detach().numpy(), atol=1e-6)
    t_out.square().sum().backward()
    j_out.square().sum().backward()
    for name in ("weight_g", "weight_v", "bias"):
        np.testing.assert_allclose(
            getattr(jm, name).grad.numpy(), getattr(tm, name).grad.numpy(), rtol=1e-5, atol=1e-6
        )
    with pytest.raises(RuntimeError, match="Cannot register two weight_norm hooks"):
        jg.nn.utils.weight_norm(jm, dim=dim)
    jg.nn.utils.remove_weight_norm(jm)
    torch.nn.utils.remove_weight_norm(tm)
    _same_state_layout(jm, tm)
    np.testing.assert_allclose(jm.weight.detach().numpy(), tm.weight.detach().numpy(), atol=1e-6)
    with pytest.raises(ValueError) as t_err:
        torch.nn.utils.remove_weight_norm(tm)
    with pytest.raises(ValueError) as j_err:
        jg.nn.utils.remove_weight_norm(jm)
    assert str(j_err.value) == str(t_err.value)


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_spectral_norm_matches_torch(kind):
    make, shape = MAKERS[kind]
    tm = torch.nn.utils.spectral_norm(make(torch.nn), n_power_iterations=2)
    jm = jg.nn.utils.spectral_norm(make(jg.nn), n_power_iterations=2)
    _same_state_layout(jm, tm)
    _load(jm, tm)  # (the random starting vectors u, v too)
    x = _x(*shape)
    for _ in range(3):  # training mode: each call moves u and v
        t_out, j_out = tm(torch.tensor(x)), jm(jg.tensor(x))
        np.testing.assert_allclose(j_out.detach().numpy(), t_out.detach().numpy(), atol=1e-5)
    for name in ("weight_u", "weight_v"):
        np.testing.assert_allclose(
            getattr(jm, name).numpy(), getattr(tm, name).numpy(), rtol=1e-5, atol=1e-6
        )
    t_out.sum().backward()
    j_out.sum().backward()
    np.testing.assert_allclose(
        jm.weight_orig.grad.numpy(), tm.weight_orig.grad.numpy(), rtol=1e-4, atol=1e-5
    )
    tm.eval()
    jm.eval()
    u_before = jm.weight_u.numpy().copy()
    np.testing.assert_allclose(
        jm(jg.tensor(x)).detach().numpy(), tm(torch.tensor(x)).detach().numpy(), atol=1e-5
    )
    np.testing.assert_array_equal(jm.weight_u.numpy(), u_before)  # eval: no power iteration
    jg.nn.utils.remove_spectral_norm(jm)
    torch.nn.utils.remove_spectral_norm(tm)
    _same_state_layout(jm, tm)
    np.testing.assert_allclose(jm.weight.detach().numpy(), tm.weight.detach().numpy(), atol=1e-5)
    with pytest.raises(ValueError) as t_err:
        torch.nn.utils.spectral_norm(make(torch.nn), n_power_iterations=0)
    with pytest.raises(ValueError) as j_err:
        jg.nn.utils.spectral_norm(make(jg.nn), n_power_iterations=0)
    assert str(j_err.value) == str(t_err.value)


def test_fusions_match_torch():
    tc, tb = torch.nn.Conv2d(2, 3, 2), torch.nn.BatchNorm2d(3)
    x = torch.tensor(_x(4, 2, 5, 5))
    tb(tc(x))  # running statistics that are not the initial ones
    jc, jb = jg.nn.Conv2d(2, 3, 2), jg.nn.BatchNorm2d(3)
    _load(jc, tc)
    _load(jb, tb)
    for m in (tc, tb, jc, jb):
        m.eval()
    fused = jg.nn.utils.fuse_conv_bn_eval(jc, jb)
    np.testing.assert_allclose(
        fused(jg.tensor(x.numpy())).detach().numpy(), tb(tc(x)).detach().numpy(), atol=1e-5
    )
    tl, tb1 = torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)
    x = torch.tensor(_x(5, 3))
    tb1(tl(x))
    jl, jb1 = jg.nn.Linear(3, 4), jg.nn.BatchNorm1d(4)
    _load(jl, tl)
    _load(jb1, tb1)
    for m in (tl, tb1, jl, jb1):
        m.eval()
    fused = jg.nn.utils.fuse_linear_bn_eval(jl, jb1)
    np.testing.assert_allclose(
        fused(jg.tensor(x.numpy())).detach().numpy(), tb1(tl(x)).detach().numpy(), atol=1e-5
    )
    assert [n for n, _ in fused.named_parameters()] == ["weight", "bias"]
    jl.train()
    with pytest.raises(AssertionError, match="Fusion only for eval!"):
        jg.nn.utils.fuse_linear_bn_eval(jl, jb1)


def _normed_model(lib):
    import torch.nn.utils.prune  # noqa: F401  (PyTorch's is imported on demand)

    nn, utils = lib.nn, lib.nn.utils
    pruned = utils.prune.l1_unstructured(nn.Linear(4, 4), "weight", amount=0.3)
    return nn.Sequential(
        utils.weight_norm(nn.Linear(4, 5)),
        nn.Tanh(),
        utils.spectral_norm(nn.Linear(5, 4)),
        nn.Tanh(),
        utils.parametrizations.weight_norm(nn.Linear(4, 4)),
        pruned,
        utils.parametrizations.spectral_norm(nn.Linear(4, 3)),
    )


@pytest.mark.filterwarnings("error")
@pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated")
def test_compiled_step_with_weight_and_spectral_norm_matches_eager():
    torch.manual_seed(0)
    ref = _normed_model(torch)
    state = {k: v.detach().numpy().copy() for k, v in ref.state_dict().items()}
    x, y = _x(6, 4), RNG.integers(0, 3, 6)

    def run(compiled):
        model = _normed_model(jg)
        model.load_state_dict({k: jg.tensor(v) for k, v in state.items()})
        opt = jg.optim.SGD(model.parameters(), lr=0.2)

        def step(x, y):
            opt.zero_grad(set_to_none=True)
            loss = jg.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss

        if compiled:
            step = jg.compile(step, backend="numba")
        losses = [float(step(jg.tensor(x), jg.tensor(y))) for _ in range(4)]
        return model, losses, step

    eager_model, eager, _ = run(False)
    model, compiled, step = run(True)
    assert step.stats.cache_hits >= 2, step.stats
    np.testing.assert_allclose(compiled, eager, rtol=1e-5)
    for key, value in eager_model.state_dict().items():
        np.testing.assert_allclose(
            model.state_dict()[key].numpy(), value.numpy(), rtol=1e-5, atol=1e-6, err_msg=key
        )
    opt = torch.optim.SGD(ref.parameters(), lr=0.2)
    expected = []
    for _ in range(4):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(ref(torch.tensor(x)), torch.tensor(y))
        loss.backward()
        opt.step()
        expected.append(loss.detach().item())
    np.testing.assert_allclose(eager, expected, rtol=1e-4)


class _Symmetric:
    @staticmethod
    def make(lib):
        class Symmetric(lib.nn.Module):
            def forward(self, x):
                return x.triu() + x.triu(1).transpose(0, 1)

            def right_inverse(self, a):
                return a.triu()

        return Symmetric()


def test_register_parametrization_matches_torch():
    pz_t, pz_j = torch.nn.utils.parametrize, jg.nn.utils.parametrize
    tm, jm = torch.nn.Linear(3, 3), jg.nn.Linear(3, 3)
    _load(jm, tm)
    j_weight = jm.weight
    pz_t.register_parametrization(tm, "weight", _Symmetric.make(torch))
    pz_j.register_parametrization(jm, "weight", _Symmetric.make(jg))
    assert type(jm).__name__ == "ParametrizedLinear" and isinstance(jm, jg.nn.Linear)
    assert repr(jm) == repr(tm).replace("torch.", "jitgrad.")
    _same_state_layout(jm, tm)
    assert jm.parametrizations.weight.original is j_weight  # the optimizer's object stays
    assert pz_j.is_parametrized(jm) and pz_j.is_parametrized(jm, "weight")
    assert not pz_j.is_parametrized(jm, "bias")
    assert pz_j.type_before_parametrizations(jm) is jg.nn.Linear
    w = jm.weight.detach().numpy()
    np.testing.assert_allclose(w, w.T)
    np.testing.assert_allclose(w, tm.weight.detach().numpy(), atol=1e-7)
    x = _x(2, 3)
    t_out, j_out = tm(torch.tensor(x)), jm(jg.tensor(x))
    np.testing.assert_allclose(j_out.detach().numpy(), t_out.detach().numpy(), atol=1e-6)
    t_out.sum().backward()
    j_out.sum().backward()
    np.testing.assert_allclose(
        j_weight.grad.numpy(), tm.parametrizations.weight.original.grad.numpy(), atol=1e-6
    )
    # assignment goes through right_inverse
    new = _x(3, 3)
    with torch.no_grad():
        tm.weight = torch.tensor(new)
    jm.weight = jg.tensor(new)
    np.testing.assert_allclose(jm.weight.detach().numpy(), tm.weight.detach().numpy())
    with pz_j.cached():
        assert jm.weight is jm.weight
    assert jm.weight is not jm.weight
    pz_t.remove_parametrizations(tm, "weight", leave_parametrized=False)
    pz_j.remove_parametrizations(jm, "weight", leave_parametrized=False)
    assert type(jm) is jg.nn.Linear and jm.weight is j_weight
    _same_state_layout(jm, tm)
    np.testing.assert_allclose(jm.weight.detach().numpy(), tm.weight.detach().numpy())
    with pytest.raises(ValueError) as t_err:
        pz_t.remove_parametrizations(tm, "weight")
    with pytest.raises(ValueError) as j_err:
        pz_j.remove_parametrizations(jm, "weight")
    assert str(j_err.value) == str(t_err.value)


@pytest.mark.parametrize("which", ["weight_norm", "spectral_norm"])
def test_parametrizations_match_torch(which):
    t_fn = getattr(torch.nn.utils.parametrizations, which)
    j_fn = getattr(jg.nn.utils.parametrizations, which)
    tm, jm = t_fn(torch.nn.Conv1d(3, 2, 3)), j_fn(jg.nn.Conv1d(3, 2, 3))
    _same_state_layout(jm, tm)
    assert repr(jm) == repr(tm)
    _load(jm, tm)
    x = _x(2, 3, 5)
    for _ in range(2):
        t_out, j_out = tm(torch.tensor(x)), jm(jg.tensor(x))
        np.testing.assert_allclose(j_out.detach().numpy(), t_out.detach().numpy(), atol=1e-5)
    t_out.square().sum().backward()
    j_out.square().sum().backward()
    for p, tp in zip(jm.parameters(), tm.parameters(), strict=True):
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-4, atol=1e-5)
    torch.nn.utils.parametrize.remove_parametrizations(tm, "weight")
    jg.nn.utils.parametrize.remove_parametrizations(jm, "weight")
    _same_state_layout(jm, tm)
    np.testing.assert_allclose(jm.weight.detach().numpy(), tm.weight.detach().numpy(), atol=1e-5)


def _pruned_pair(make):
    tm, jm = make(torch.nn), make(jg.nn)
    _load(jm, tm)
    return tm, jm


def _same_pruning(jm, tm, name="weight"):
    _same_state_layout(jm, tm)
    np.testing.assert_array_equal(
        getattr(jm, name + "_mask").numpy(), getattr(tm, name + "_mask").numpy()
    )
    np.testing.assert_allclose(
        getattr(jm, name).detach().numpy(), getattr(tm, name).detach().numpy(), atol=1e-7
    )


def test_prune_matches_torch():
    import torch.nn.utils.prune as tp

    jp = jg.nn.utils.prune
    tm, jm = _pruned_pair(lambda nn: nn.Conv2d(3, 4, 2))
    tp.l1_unstructured(tm, "weight", amount=0.3)
    jp.l1_unstructured(jm, "weight", amount=0.3)
    _same_pruning(jm, tm)
    assert [n for n, _ in jm.named_parameters()] == [n for n, _ in tm.named_parameters()]
    assert jp.is_pruned(jm) and not jp.is_pruned(jg.nn.Linear(2, 2))
    # pruning again acts on what is left: structured over the output channels, then 5 more
    tp.ln_structured(tm, "weight", amount=1, n=2, dim=0)
    jp.ln_structured(jm, "weight", amount=1, n=2, dim=0)
    _same_pruning(jm, tm)
    tp.l1_unstructured(tm, "weight", amount=5)
    jp.l1_unstructured(jm, "weight", amount=5)
    _same_pruning(jm, tm)
    x = _x(2, 3, 4, 4)
    t_out, j_out = tm(torch.tensor(x)), jm(jg.tensor(x))
    np.testing.assert_allclose(j_out.detach().numpy(), t_out.detach().numpy(), atol=1e-5)
    t_out.sum().backward()
    j_out.sum().backward()
    np.testing.assert_allclose(jm.weight_orig.grad.numpy(), tm.weight_orig.grad.numpy(), atol=1e-5)
    tp.remove(tm, "weight")
    jp.remove(jm, "weight")
    _same_state_layout(jm, tm)
    np.testing.assert_allclose(jm.weight.detach().numpy(), tm.weight.detach().numpy(), atol=1e-7)
    assert not jp.is_pruned(jm)
    for call in (
        lambda p, m: p.remove(m, "weight"),
        lambda p, m: p.l1_unstructured(m, "weight", amount=1.5),
        lambda p, m: p.l1_unstructured(m, "weight", amount=100),
        lambda p, m: p.ln_structured(m, "bias", amount=1, n=2, dim=0),
    ):
        with pytest.raises(ValueError) as t_err:
            call(tp, tm)
        with pytest.raises(ValueError) as j_err:
            call(jp, jm)
        assert str(j_err.value) == str(t_err.value).replace("torch.", "jitgrad.")


def test_global_and_custom_pruning_match_torch():
    import torch.nn.utils.prune as tp

    jp = jg.nn.utils.prune

    def make(nn):
        return nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))

    tm, jm = _pruned_pair(make)
    tp.global_unstructured(
        [(tm[0], "weight"), (tm[1], "weight")], pruning_method=tp.L1Unstructured, amount=0.4
    )
    jp.global_unstructured(
        [(jm[0], "weight"), (jm[1], "weight")], pruning_method=jp.L1Unstructured, amount=0.4
    )
    _same_pruning(jm[0], tm[0])
    _same_pruning(jm[1], tm[1])
    mask = np.array([1, 0, 1], np.float32)
    tp.custom_from_mask(tm[0], "bias", torch.tensor(mask))
    jp.custom_from_mask(jm[0], "bias", jg.tensor(mask))
    _same_pruning(jm[0], tm[0], "bias")
    # random pruning: how many are pruned (the draws differ from PyTorch's)
    m = jg.nn.Linear(10, 6)
    jp.random_unstructured(m, "weight", amount=0.25)
    assert int((m.weight_mask.numpy() == 0).sum()) == 15
    jp.random_structured(m, "weight", amount=2, dim=0)
    rows_gone = (m.weight_mask.numpy() == 0).all(axis=1)
    assert int(rows_gone.sum()) == 2
    jp.identity(m, "bias")
    np.testing.assert_array_equal(m.bias_mask.numpy(), np.ones(6))
