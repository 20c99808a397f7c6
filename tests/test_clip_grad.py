"""``jitgrad.nn.utils``: gradient clipping and parameter/vector conversion against PyTorch, and a
compiled training step that clips its gradients (tensor ops only: no ``.item()``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jitgrad as jg  # noqa: E402
from jitgrad import optim  # noqa: E402

RNG = np.random.default_rng(3)


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("JITGRAD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "jg-cache"))


def _params(lib, grads):
    """Parameters with the given gradients (None: no gradient)."""
    out = []
    for i, g in enumerate(grads):
        v = np.full((2,) if g is None else g.shape, i + 1.0, np.float32)
        p = lib.nn.Parameter(lib.tensor(v))
        if g is not None:
            p.grad = lib.tensor(g.copy())
        out.append(p)
    return out


def _grads():
    return [
        RNG.standard_normal((3, 4)).astype(np.float32),
        RNG.standard_normal(5).astype(np.float32) * 4,
    ]


@pytest.mark.parametrize("norm_type", [2.0, 1, 3.5, math.inf, "inf", 0.5])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    grads = _grads()
    tp, jp = _params(torch, grads), _params(jg, grads)
    t_total = torch.nn.utils.clip_grad_norm_(tp, max_norm, norm_type=norm_type)
    j_total = jg.nn.utils.clip_grad_norm_(jp, max_norm, norm_type=norm_type, foreach=True)
    assert isinstance(j_total, jg.Tensor) and j_total.shape == ()
    np.testing.assert_allclose(j_total.numpy(), t_total.numpy(), rtol=1e-6)
    for t, j in zip(tp, jp):
        np.testing.assert_allclose(j.grad.numpy(), t.grad.numpy(), rtol=1e-6, atol=1e-7)


def test_clip_grad_norm_single_tensor_generator_and_missing_grads():
    grads = _grads()
    tp, jp = _params(torch, grads + [None]), _params(jg, grads + [None])
    t_total = torch.nn.utils.clip_grad_norm_((p for p in tp), 1.0)
    j_total = jg.nn.utils.clip_grad_norm_((p for p in jp), 1.0)
    np.testing.assert_allclose(j_total.numpy(), t_total.numpy(), rtol=1e-6)
    for t, j in zip(tp[:2], jp[:2]):
        np.testing.assert_allclose(j.grad.numpy(), t.grad.numpy(), rtol=1e-6)
    t_total = torch.nn.utils.clip_grad_norm_(tp[0], 0.1)
    j_total = jg.nn.utils.clip_grad_norm_(jp[0], 0.1)
    np.testing.assert_allclose(j_total.numpy(), t_total.numpy(), rtol=1e-6)
    np.testing.assert_allclose(jp[0].grad.numpy(), tp[0].grad.numpy(), rtol=1e-6)
    assert jp[2].grad is None
    # nothing to clip: a zero tensor, as PyTorch
    empty = jg.nn.utils.clip_grad_norm_([jg.nn.Parameter(jg.ones(2))], 1.0)
    t_empty = torch.nn.utils.clip_grad_norm_([torch.nn.Parameter(torch.ones(2))], 1.0)
    assert float(empty) == float(t_empty) == 0.0


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_clip_grad_norm_nonfinite():
    grads = _grads()
    grads[1][2] = np.inf
    tp, jp = _params(torch, grads), _params(jg, grads)
    with pytest.raises(RuntimeError) as t_err:
        torch.nn.utils.clip_grad_norm_(tp, 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError) as j_err:
        jg.nn.utils.clip_grad_norm_(jp, 1.0, error_if_nonfinite=True)
    assert str(j_err.value) == str(t_err.value)
    for p, g in zip(jp, grads):  # nothing changed
        np.testing.assert_array_equal(p.grad.numpy(), g)
    # without the check, the gradients are scaled by the non-finite norm, as in PyTorch
    t_total = torch.nn.utils.clip_grad_norm_(tp, 1.0)
    j_total = jg.nn.utils.clip_grad_norm_(jp, 1.0)
    assert math.isinf(float(j_total)) and math.isinf(float(t_total))
    for t, j in zip(tp, jp):
        np.testing.assert_array_equal(j.grad.numpy(), t.grad.numpy())


def test_get_total_norm_and_clip_grads_with_norm():
    grads = _grads()
    t_total = torch.nn.utils.get_total_norm([torch.tensor(g) for g in grads], 3.0)
    j_total = jg.nn.utils.get_total_norm([jg.tensor(g) for g in grads], 3.0)
    np.testing.assert_allclose(j_total.numpy(), t_total.numpy(), rtol=1e-6)
    tp, jp = _params(torch, grads), _params(jg, grads)
    torch.nn.utils.clip_grads_with_norm_(tp, 0.3, t_total)
    jg.nn.utils.clip_grads_with_norm_(jp, 0.3, j_total)
    for t, j in zip(tp, jp):
        np.testing.assert_allclose(j.grad.numpy(), t.grad.numpy(), rtol=1e-6)


@pytest.mark.parametrize("clip_value", [0.5, 2])
def test_clip_grad_value_matches_torch(clip_value):
    grads = _grads()
    tp, jp = _params(torch, grads), _params(jg, grads)
    assert torch.nn.utils.clip_grad_value_(tp, clip_value) is None
    assert jg.nn.utils.clip_grad_value_(jp, clip_value) is None
    for t, j in zip(tp, jp):
        np.testing.assert_array_equal(j.grad.numpy(), t.grad.numpy())


def test_parameters_to_vector_and_back():
    values = [RNG.standard_normal((2, 3)), RNG.standard_normal(4)]
    tp = [torch.nn.Parameter(torch.tensor(v)) for v in values]
    jp = [jg.nn.Parameter(jg.tensor(v)) for v in values]
    t_vec = torch.nn.utils.parameters_to_vector(tp)
    j_vec = jg.nn.utils.parameters_to_vector(jp)
    np.testing.assert_array_equal(j_vec.detach().numpy(), t_vec.detach().numpy())
    new = np.arange(10.0)
    torch.nn.utils.vector_to_parameters(torch.tensor(new), tp)
    jg.nn.utils.vector_to_parameters(jg.tensor(new), jp)
    for t, j in zip(tp, jp):
        assert isinstance(j, jg.nn.Parameter) and j.requires_grad
        np.testing.assert_array_equal(j.detach().numpy(), t.detach().numpy())
    with pytest.raises(TypeError) as t_err:
        torch.nn.utils.vector_to_parameters([1.0], tp)
    with pytest.raises(TypeError) as j_err:
        jg.nn.utils.vector_to_parameters([1.0], jp)
    assert str(j_err.value) == str(t_err.value)


def test_utils_is_an_attribute_of_nn():
    import jitgrad.nn.utils as utils

    assert jg.nn.utils is utils
    for name in ("clip_grad_norm_", "clip_grad_value_", "parameters_to_vector"):
        assert callable(getattr(jg.nn.utils, name))


def _model(lib):
    nn = lib.nn
    return nn.Sequential(
        nn.Conv1d(2, 4, 3, padding="same", padding_mode="reflect"),
        nn.GroupNorm(2, 4),
        nn.SiLU(),
        nn.AdaptiveAvgPool1d(3),
        nn.Flatten(),
        nn.Linear(12, 3),
    )


# (the first call traces; the second retraces once the momentum buffers exist; then compiled)
STEPS = 4


@pytest.mark.filterwarnings("error")
def test_compiled_step_with_clipping_matches_eager_and_torch():
    torch.manual_seed(0)
    reference = _model(torch)
    state = {k: v.detach().numpy().copy() for k, v in reference.state_dict().items()}
    x = RNG.standard_normal((4, 2, 6)).astype(np.float32)
    y = RNG.integers(0, 3, 4)

    def run(compiled: bool):
        model = _model(jg)
        model.load_state_dict({k: jg.tensor(v) for k, v in state.items()})
        opt = optim.SGD(model.parameters(), lr=0.5, momentum=0.9)

        def step(x, y):
            model.zero_grad(set_to_none=True)
            loss = jg.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            total = jg.nn.utils.clip_grad_norm_(model.parameters(), 0.05)
            opt.step()
            return loss, total

        if compiled:
            step = jg.compile(step, backend="numba")
        out = [step(jg.tensor(x), jg.tensor(y)) for _ in range(STEPS)]
        return model, [(float(a), float(b)) for a, b in out], step

    eager_model, eager, _ = run(False)
    model, compiled, step = run(True)
    assert step.stats.cache_hits >= 2, step.stats
    np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-6)
    for key, value in eager_model.state_dict().items():
        np.testing.assert_allclose(
            model.state_dict()[key].numpy(), value.numpy(), rtol=1e-5, atol=1e-6, err_msg=key
        )
    # and the same three steps in PyTorch
    opt = torch.optim.SGD(reference.parameters(), lr=0.5, momentum=0.9)
    expected = []
    for _ in range(STEPS):
        reference.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(reference(torch.tensor(x)), torch.tensor(y))
        loss.backward()
        total = torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.05)
        opt.step()
        expected.append((loss.detach().item(), total.item()))
    np.testing.assert_allclose(eager, expected, rtol=1e-4, atol=1e-5)
