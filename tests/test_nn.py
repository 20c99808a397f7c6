"""jitgrad.nn: modules, layers, losses (vs NumPy and finite differences), dropout, init."""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections import OrderedDict

import numpy as np
import pytest

import jitgrad as jg
import jitgrad.nn.functional as F
from jitgrad import nn, optim
from jitgrad.autograd.grad_mode import STATE


def arr(t) -> np.ndarray:
    return np.array(t.detach().numpy())


def t64(a, requires_grad=False):
    return jg.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


class ValueReadTracer:
    """Stands in for a tape recorder: any read of a tensor's value by Python code fails."""

    def on_concrete(self, t, what):
        raise AssertionError(f"data-dependent read: {what}")

    def __getattr__(self, name):  # every other recorder hook: accept and ignore
        return lambda *args, **kwargs: None


@contextlib.contextmanager
def no_value_reads():
    STATE.tracer = ValueReadTracer()
    try:
        yield
    finally:
        STATE.tracer = None


# -- Parameter ------------------------------------------------------------------------------------
def test_parameter_is_tensor_sharing_storage():
    base = jg.zeros(3)
    p = nn.Parameter(base)
    assert isinstance(p, jg.Tensor) and type(p) is nn.Parameter
    assert p.requires_grad and p.is_leaf
    assert nn.Parameter.__slots__ == ()
    with jg.no_grad():
        base.add_(1.0)
    np.testing.assert_array_equal(arr(p), np.ones(3, np.float32))
    assert not nn.Parameter(jg.zeros(2), requires_grad=False).requires_grad
    assert repr(p).startswith("Parameter containing:\ntensor([1.")


def test_parameter_deepcopy_is_independent():
    p = nn.Parameter(jg.ones(2))
    q = copy.deepcopy(p)
    assert type(q) is nn.Parameter and q.requires_grad
    with jg.no_grad():
        q.mul_(3.0)
    np.testing.assert_array_equal(arr(p), [1.0, 1.0])


# -- Module registration --------------------------------------------------------------------------
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.scale = nn.Parameter(jg.ones(4))
        self.register_buffer("running", jg.zeros(4))
        self.register_buffer("scratch", jg.zeros(2), persistent=False)
        self.inner = nn.Sequential(nn.ReLU(), nn.Linear(4, 2, bias=False))

    def forward(self, x):
        return self.inner(self.fc(x) * self.scale + self.running)


def test_registration_and_traversal():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["scale", "fc.weight", "fc.bias", "inner.1.weight"]
    assert [n for n, _ in net.named_parameters(recurse=False)] == ["scale"]
    assert len(list(net.parameters())) == 4
    assert [n for n, _ in net.named_buffers()] == ["running", "scratch"]
    assert [n for n, _ in net.named_children()] == ["fc", "inner"]
    assert [n for n, _ in net.named_modules()] == ["", "fc", "inner", "inner.0", "inner.1"]
    assert list(net.children())[0] is net.fc
    assert len(list(net.modules())) == 5
    assert net.get_submodule("inner.1") is net.inner[1]
    assert list(net.state_dict()) == ["scale", "running", "fc.weight", "fc.bias", "inner.1.weight"]


def test_shared_parameter_counted_once():
    lin = nn.Linear(2, 2)
    seq = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(seq.parameters())) == 2


def test_setattr_rules_and_errors():
    net = Net()
    with pytest.raises(TypeError, match=r"cannot assign '.*' as parameter 'scale'"):
        net.scale = jg.ones(4)
    with pytest.raises(TypeError, match="as buffer 'running'"):
        net.running = 3
    net.running = jg.ones(4)  # a tensor replaces the buffer
    assert net._buffers["running"] is net.running
    with pytest.raises(KeyError, match="attribute 'fc' already exists"):
        net.register_buffer("fc", jg.zeros(1))
    with pytest.raises(KeyError, match="contain"):
        net.register_parameter("a.b", None)
    with pytest.raises(TypeError, match="is not a Module subclass"):
        net.add_module("x", 3)
    with pytest.raises(AttributeError, match="'Net' object has no attribute 'nope'"):
        _ = net.nope
    del net.scale
    assert "scale" not in dict(net.named_parameters())
    net.fc = None
    assert [n for n, _ in net.named_children()] == ["inner"]

    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(jg.ones(1))

    with pytest.raises(AttributeError, match="before Module.__init__"):
        Early()


def test_train_eval_propagates():
    net = Net()
    assert net.training and net.inner[0].training
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    with pytest.raises(ValueError, match="boolean"):
        net.train("yes")


def test_apply_visits_children_first():
    seen = []
    Net().apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "ReLU", "Linear", "Sequential", "Net"]


def test_zero_grad_and_requires_grad():
    net = Net()
    net(jg.randn(5, 3)).sum().backward()
    g = net.fc.weight.grad
    net.zero_grad(set_to_none=False)
    assert net.fc.weight.grad is g and not arr(g).any()
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())


def test_to_double_keeps_parameter_identity():
    net = Net()
    w = net.fc.weight
    net.double()
    assert net.fc.weight is w and w.dtype is jg.float64
    assert net.running.dtype is jg.float64
    out = net(jg.randn(2, 3, dtype=jg.float64))
    assert out.dtype is jg.float64
    net.float()
    assert w.dtype is jg.float32
    with pytest.raises(TypeError, match="floating point"):
        net.to(jg.int64)


# -- state_dict -----------------------------------------------------------------------------------
def test_state_dict_round_trip():
    jg.manual_seed(1)
    a, b = Net(), Net()
    with jg.no_grad():
        a.running.fill_(0.5)
    sd = a.state_dict()
    assert not any(v.requires_grad for v in sd.values())
    assert "scratch" not in sd
    w_before = b.fc.weight
    result = b.load_state_dict(sd)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert repr(result) == "<All keys matched successfully>"
    assert b.fc.weight is w_before  # loaded in place
    x = jg.randn(4, 3)
    np.testing.assert_array_equal(arr(a(x)), arr(b(x)))
    with jg.no_grad():  # the loaded values are copies, not aliases
        a.fc.weight.mul_(0.0)
    assert arr(b.fc.weight).any()


def test_load_state_dict_strict_errors():
    lin = nn.Linear(2, 3)
    with pytest.raises(RuntimeError) as e:
        lin.load_state_dict({"weight": jg.zeros(3, 2)})
    assert str(e.value).startswith(
        'Error(s) in loading state_dict for Linear:\n\tMissing key(s) in state_dict: "bias". '
    )
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "extra"\. '):
        lin.load_state_dict({"weight": jg.zeros(3, 2), "bias": jg.zeros(3), "extra": jg.ones(1)})
    res = lin.load_state_dict({"weight": jg.zeros(3, 2), "extra": jg.ones(1)}, strict=False)
    assert res.missing_keys == ["bias"] and res.unexpected_keys == ["extra"]
    assert not arr(lin.weight).any()


def test_failed_load_leaves_module_unchanged():
    lin = nn.Linear(2, 3)
    before = {k: arr(v).copy() for k, v in lin.state_dict().items()}
    bad = {"weight": jg.ones(3, 2), "bias": jg.ones(4)}
    with pytest.raises(RuntimeError) as e:
        lin.load_state_dict(bad)
    msg = str(e.value)
    assert "size mismatch for bias" in msg
    assert "[4]" in msg and "[3]" in msg
    for k, v in lin.state_dict().items():
        np.testing.assert_array_equal(arr(v), before[k])
    with pytest.raises(RuntimeError, match="size mismatch"):
        lin.load_state_dict(bad, strict=False)  # shape errors are errors even when not strict


# -- layers ---------------------------------------------------------------------------------------
def test_linear_forward_and_init():
    jg.manual_seed(0)
    lin = nn.Linear(400, 300)
    w, b = arr(lin.weight), arr(lin.bias)
    bound = 1 / math.sqrt(400)  # kaiming_uniform_(a=sqrt(5)) and the bias bound coincide
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.98 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.01 * bound
    assert np.abs(b).max() <= bound
    x = np.random.default_rng(0).standard_normal((5, 400)).astype(np.float32)
    np.testing.assert_allclose(arr(lin(jg.tensor(x))), x @ w.T + b, rtol=1e-5, atol=1e-5)
    assert nn.Linear(2, 3, bias=False).bias is None
    assert nn.Linear(2, 3, dtype=jg.float64).weight.dtype is jg.float64
    jg.manual_seed(0)
    np.testing.assert_array_equal(arr(nn.Linear(400, 300).weight), w)  # seeded init reproduces


def test_sequential_container():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    seq = nn.Sequential(a, b)
    seq.append(c)
    assert len(seq) == 3 and seq[0] is a and seq[-1] is c
    assert list(seq) == [a, b, c]
    sub = seq[1:]
    assert isinstance(sub, nn.Sequential) and list(sub) == [b, c]
    del seq[1]
    assert list(seq) == [a, c] and [n for n, _ in seq.named_children()] == ["0", "1"]
    with pytest.raises(IndexError):
        seq[5]
    named = nn.Sequential(OrderedDict([("first", a), ("act", b)]))
    assert named.first is a
    x = jg.randn(4, 2)
    np.testing.assert_array_equal(arr(nn.Sequential(a, b, c)(x)), arr(c(b(a(x)))))


def test_module_repr_matches_pytorch():
    model = nn.Sequential(
        nn.Linear(2, 3),
        nn.Sequential(nn.ReLU(), nn.Dropout(0.2)),
        nn.Softmax(dim=1),
        nn.Flatten(),
        nn.GELU(),
        nn.LeakyReLU(),
    )
    assert repr(model) == (
        "Sequential(\n"
        "  (0): Linear(in_features=2, out_features=3, bias=True)\n"
        "  (1): Sequential(\n"
        "    (0): ReLU()\n"
        "    (1): Dropout(p=0.2, inplace=False)\n"
        "  )\n"
        "  (2): Softmax(dim=1)\n"
        "  (3): Flatten(start_dim=1, end_dim=-1)\n"
        "  (4): GELU(approximate='none')\n"
        "  (5): LeakyReLU(negative_slope=0.01)\n"
        ")"
    )
    assert repr(nn.CrossEntropyLoss()) == "CrossEntropyLoss()"


def test_activation_modules_vs_numpy():
    x = np.linspace(-4, 4, 17)
    t = t64(x)
    np.testing.assert_allclose(arr(nn.ReLU()(t)), np.maximum(x, 0))
    np.testing.assert_allclose(arr(nn.Tanh()(t)), np.tanh(x), rtol=1e-12)
    np.testing.assert_allclose(arr(nn.Sigmoid()(t)), 1 / (1 + np.exp(-x)), rtol=1e-12)
    np.testing.assert_allclose(arr(nn.Identity(3, k=1)(t)), x)
    np.testing.assert_allclose(arr(F.silu(t)), x / (1 + np.exp(-x)), rtol=1e-12)
    np.testing.assert_allclose(arr(F.softplus(t)), np.log1p(np.exp(x)), rtol=1e-12)
    np.testing.assert_allclose(arr(F.leaky_relu(t, 0.1)), np.where(x > 0, x, 0.1 * x))
    np.testing.assert_allclose(arr(F.logsigmoid(t)), -np.log1p(np.exp(-x)), rtol=1e-12)
    erf = np.vectorize(math.erf)
    np.testing.assert_allclose(arr(F.gelu(t)), x * 0.5 * (1 + erf(x / 2**0.5)), atol=1e-6)
    m = np.random.default_rng(1).standard_normal((3, 5))
    sm = np.exp(m) / np.exp(m).sum(1, keepdims=True)
    np.testing.assert_allclose(arr(nn.Softmax(dim=1)(t64(m))), sm, rtol=1e-12)
    np.testing.assert_allclose(arr(nn.LogSoftmax(dim=1)(t64(m))), np.log(sm), rtol=1e-12)
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmax"):
        F.softmax(t64(m))
    assert nn.Flatten()(jg.zeros(2, 3, 4)).shape == (2, 12)
    assert nn.Unflatten(1, (3, 4))(jg.zeros(2, 12)).shape == (2, 3, 4)


def test_one_hot():
    out = F.one_hot(jg.tensor([0, 2, 1]), 4)
    assert out.dtype is jg.int64
    np.testing.assert_array_equal(arr(out), np.eye(4, dtype=np.int64)[[0, 2, 1]])
    assert F.one_hot(jg.tensor([[1], [3]])).shape == (2, 1, 4)


# -- dropout --------------------------------------------------------------------------------------
def test_dropout_fraction_scaling_and_eval():
    jg.manual_seed(3)
    p = 0.3
    drop = nn.Dropout(p)
    x = jg.ones(200_000)
    y = arr(drop(x))
    assert abs((y == 0).mean() - p) < 0.01
    np.testing.assert_allclose(y[y != 0], 1 / (1 - p), rtol=1e-6)
    drop.eval()
    assert drop(x) is x
    assert F.dropout(x, p, training=False) is x
    assert not arr(F.dropout(x, 1.0)).any()
    assert F.dropout(x, 0.0) is x
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        nn.Dropout(1.5)


def test_dropout_reproducible_and_gradient():
    jg.manual_seed(7)
    a = arr(F.dropout(jg.ones(1000), 0.5))
    b = arr(F.dropout(jg.ones(1000), 0.5))
    jg.manual_seed(7)
    np.testing.assert_array_equal(arr(F.dropout(jg.ones(1000), 0.5)), a)
    assert (a != b).any()  # successive draws differ
    x = jg.randn(50, requires_grad=True)
    jg.manual_seed(11)
    y = F.dropout(x, 0.25)
    y.sum().backward()
    mask = arr(y) != 0
    np.testing.assert_allclose(arr(x.grad), mask / 0.75, rtol=1e-6)


# -- losses vs NumPy ------------------------------------------------------------------------------
def np_log_softmax(x, axis=1):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def np_cross_entropy(x, t, weight=None, ignore_index=-100, reduction="mean", ls=0.0):
    """PyTorch's formula for class-index targets; x: (N, C, ...), t: (N, ...)."""
    c = x.shape[1]
    logp = np.moveaxis(np_log_softmax(x), 1, -1).reshape(-1, c)
    tf = t.reshape(-1)
    w = np.ones(c) if weight is None else weight
    keep = tf != ignore_index
    safe = np.where(keep, tf, 0)
    wt = w[safe] * keep
    nll = -logp[np.arange(len(tf)), safe] * wt
    smooth = -(logp * w).sum(1) * keep
    if reduction == "none":
        return ((1 - ls) * nll + ls / c * smooth).reshape(t.shape)
    if reduction == "sum":
        return (1 - ls) * nll.sum() + ls / c * smooth.sum()
    return (1 - ls) * nll.sum() / wt.sum() + ls / c * smooth.sum() / wt.sum()


def fd_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central finite differences of a scalar function of an array."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += eps
        xm[i] -= eps
        g[i] = (f(xp) - f(xm)) / (2 * eps)
    return g


def check_grad(loss_fn, x: np.ndarray, rtol=1e-6, atol=1e-8):
    """Autograd gradient of ``loss_fn(tensor)`` (reduced to a scalar) vs finite differences."""

    def scalar(a):
        out = loss_fn(t64(a))
        return float(out.sum() if out.ndim else out)

    xt = t64(x, requires_grad=True)
    out = loss_fn(xt)
    (out.sum() if out.ndim else out).backward()
    np.testing.assert_allclose(arr(xt.grad), fd_grad(scalar, x), rtol=rtol, atol=atol)


RNG = np.random.default_rng(1234)
LOGITS = RNG.standard_normal((6, 4)) * 2
TARGETS = np.array([0, 3, 1, -100, 2, 3])
WEIGHT = np.array([0.5, 1.0, 2.0, 1.5])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ls", [0.0, 0.2])
@pytest.mark.parametrize("ignore_index", [-100, 3], ids=["ignore-100", "ignore-class-3"])
def test_cross_entropy_vs_numpy_and_fd(reduction, weighted, ls, ignore_index):
    # ignore_index may name a real class: its targets are then left out, like -100's
    w = WEIGHT if weighted else None
    wt = t64(w) if weighted else None
    targets = np.where(TARGETS == -100, ignore_index, TARGETS)
    tgt = jg.tensor(targets)

    def loss_fn(x):
        return F.cross_entropy(
            x, tgt, wt, ignore_index=ignore_index, reduction=reduction, label_smoothing=ls
        )

    expected = np_cross_entropy(LOGITS, targets, w, ignore_index, reduction=reduction, ls=ls)
    np.testing.assert_allclose(arr(loss_fn(t64(LOGITS))), expected, rtol=1e-12, atol=1e-14)
    check_grad(loss_fn, LOGITS)
    module = nn.CrossEntropyLoss(
        weight=wt, ignore_index=ignore_index, reduction=reduction, label_smoothing=ls
    )
    np.testing.assert_allclose(arr(module(t64(LOGITS), tgt)), expected, rtol=1e-12, atol=1e-14)


def test_cross_entropy_spatial_and_unbatched():
    x = RNG.standard_normal((2, 3, 4))
    t = np.array([[0, 2, 1, -100], [1, 1, 0, 2]])
    got = F.cross_entropy(t64(x), jg.tensor(t), reduction="none")
    np.testing.assert_allclose(arr(got), np_cross_entropy(x, t, reduction="none"), rtol=1e-12)
    check_grad(lambda a: F.cross_entropy(a, jg.tensor(t), ignore_index=-100), x)
    one = F.cross_entropy(t64(x[0, :, 0]), jg.tensor(1))
    np.testing.assert_allclose(float(one), -np_log_softmax(x[0, :, 0][None])[0, 1], rtol=1e-12)


def test_cross_entropy_stable_and_probability_targets():
    big = t64([[1000.0, 0.0, -1000.0], [0.0, 2000.0, 0.0]])
    loss = F.cross_entropy(big, jg.tensor([0, 0]))
    np.testing.assert_allclose(float(loss), 1000.0)  # (0 + 2000) / 2, finite
    probs = np.array([[0.2, 0.5, 0.3], [1.0, 0.0, 0.0]])
    x = RNG.standard_normal((2, 3))
    expected = -(np_log_softmax(x) * probs).sum(1).mean()
    np.testing.assert_allclose(float(F.cross_entropy(t64(x), t64(probs))), expected, rtol=1e-12)
    check_grad(lambda a: F.cross_entropy(a, t64(probs), label_smoothing=0.1), x)


def test_cross_entropy_all_ignored_is_nan_and_no_value_reads():
    x = jg.randn(3, 4)
    with np.errstate(invalid="ignore"):  # 0/0, as in PyTorch
        assert math.isnan(float(F.cross_entropy(x, jg.tensor([-100, -100, -100]))))
    xg = jg.randn(3, 4, requires_grad=True)
    with no_value_reads():  # no .item()/bool()/numpy() on the way, forward or backward
        F.cross_entropy(xg, jg.tensor([1, -100, 3]), label_smoothing=0.1).backward()
        F.binary_cross_entropy_with_logits(xg, jg.ones(3, 4)).backward()
        F.mse_loss(xg, jg.zeros(3, 4)).backward()
    with pytest.raises(ValueError, match="Expected input batch_size"):
        F.cross_entropy(x, jg.tensor([1, 2]))


def test_nll_loss_vs_numpy():
    logp = np_log_softmax(LOGITS)
    expected = np_cross_entropy(LOGITS, TARGETS, WEIGHT)
    got = nn.NLLLoss(weight=t64(WEIGHT))(t64(logp), jg.tensor(TARGETS))
    np.testing.assert_allclose(float(got), expected, rtol=1e-12)
    check_grad(lambda a: F.nll_loss(a, jg.tensor(TARGETS), reduction="sum"), logp)


def test_classes_of_zero_probability_leave_the_loss_finite():
    # a -inf logit (or log-probability) in a class other than the target is a probability of
    # zero: the loss is finite, as in PyTorch, on every path (weighted, unweighted, nll, and
    # the fused primitive's decomposition that the interpreter runs)
    x = np.array([[1.0, -np.inf, 2.0, 0.5], [0.5, 0.1, -np.inf, -np.inf]])
    t = np.array([0, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = x - np.log(np.exp(x).sum(1, keepdims=True))
    want = -logp[[0, 1], t]
    w = WEIGHT
    got = F.cross_entropy(t64(x), jg.tensor(t), t64(w), reduction="none")
    np.testing.assert_allclose(arr(got), want * w[t], rtol=1e-12)
    got = F.nll_loss(t64(logp), jg.tensor(t), reduction="sum")
    np.testing.assert_allclose(float(got), want.sum(), rtol=1e-12)
    interp = jg.compile(lambda a, b: F.cross_entropy(a, b), backend="interpreter")
    np.testing.assert_allclose(float(interp(t64(x), jg.tensor(t))), want.mean(), rtol=1e-12)
    xg = t64(x, requires_grad=True)
    F.cross_entropy(xg, jg.tensor(t), t64(w)).backward()
    assert np.isfinite(arr(xg.grad)).all() and (arr(xg.grad)[np.isinf(x)] == 0).all()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss(reduction):
    a, b = RNG.standard_normal((3, 4)), RNG.standard_normal((3, 4))
    sq = (a - b) ** 2
    expected = {"mean": sq.mean(), "sum": sq.sum(), "none": sq}[reduction]
    np.testing.assert_allclose(arr(nn.MSELoss(reduction=reduction)(t64(a), t64(b))), expected)
    check_grad(lambda x: F.mse_loss(x, t64(b), reduction=reduction), a)
    with pytest.raises(ValueError, match="is not a valid value for reduction"):
        F.mse_loss(t64(a), t64(b), reduction="avg")
    with pytest.warns(UserWarning, match="different to the input size"):
        F.mse_loss(t64(a), t64(b[0]))


def np_bce_logits(x, y, weight=None, pos_weight=None):
    log_sig = -np.logaddexp(0, -x)
    log_one_minus = -np.logaddexp(0, x)
    pw = 1.0 if pos_weight is None else pos_weight
    loss = -(pw * y * log_sig + (1 - y) * log_one_minus)
    return loss * (1.0 if weight is None else weight)


@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("use_pos", [False, True])
def test_bce_with_logits(use_weight, use_pos):
    x = RNG.standard_normal((5, 3)) * 3
    y = RNG.uniform(size=(5, 3))
    w = RNG.uniform(0.5, 2, size=(3,)) if use_weight else None
    pw = RNG.uniform(0.5, 3, size=(3,)) if use_pos else None
    wt = t64(w) if use_weight else None
    pwt = t64(pw) if use_pos else None
    module = nn.BCEWithLogitsLoss(weight=wt, pos_weight=pwt, reduction="sum")
    np.testing.assert_allclose(
        float(module(t64(x), t64(y))), np_bce_logits(x, y, w, pw).sum(), rtol=1e-12
    )
    check_grad(lambda a: F.binary_cross_entropy_with_logits(a, t64(y), wt, pos_weight=pwt), x)


def test_bce_with_logits_stable_and_exact_at_zero():
    x = t64([-800.0, -30.0, 0.0, 30.0, 800.0], requires_grad=True)
    y = t64([1.0, 0.0, 1.0, 1.0, 0.0])
    loss = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    np.testing.assert_allclose(arr(loss), np_bce_logits(arr(x), arr(y)), rtol=1e-12)
    loss.sum().backward()
    sig = 0.5 * (1 + np.tanh(arr(x) / 2))
    np.testing.assert_allclose(arr(x.grad), sig - arr(y), atol=1e-15)  # incl. 0.5 - y at x = 0
    with pytest.raises(ValueError, match="must be the same as input size"):
        F.binary_cross_entropy_with_logits(x, y[:2])


def test_bce_on_probabilities_clamps_logs_and_keeps_gradients_finite_at_0_and_1():
    # logs are clamped at -100 (PyTorch's bound); predictions of exactly 0 or 1 (a float32
    # sigmoid of x > 17 is 1.0) give finite gradients: those of the clamped loss
    p = np.array([0.0, 1.0, 0.0, 1.0, 0.3, 0.9])
    y = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.25])
    with np.errstate(divide="ignore"):
        want = -(y * np.maximum(np.log(p), -100) + (1 - y) * np.maximum(np.log1p(-p), -100))
    pt = t64(p, requires_grad=True)
    loss = F.binary_cross_entropy(pt, t64(y), reduction="none")
    np.testing.assert_allclose(arr(loss), want, rtol=1e-12)
    loss.sum().backward()
    # where a log is clamped its term is flat; elsewhere d/dp = -y/p + (1-y)/(1-p)
    grad = np.array([1.0, -1.0, 0.0, 0.0, -1 / 0.3, -0.25 / 0.9 + 0.75 / 0.1])
    np.testing.assert_allclose(arr(pt.grad), grad, rtol=1e-12)
    check_grad(lambda a: F.binary_cross_entropy(a, t64(y[4:])), p[4:])
    x = jg.tensor(np.array([20.0, -20.0], np.float32), requires_grad=True)
    s = jg.sigmoid(x)
    assert list(s.detach().numpy()) == [1.0, 0.0]  # saturated
    F.binary_cross_entropy(s, jg.tensor(np.array([1.0, 0.0], np.float32))).backward()
    assert np.isfinite(x.grad.numpy()).all()


@pytest.mark.torch
def test_losses_vs_torch():
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal((6, 4))
    tt = torch.tensor(TARGETS)
    ref = torch.nn.functional.cross_entropy(
        torch.tensor(x), tt, torch.tensor(WEIGHT), label_smoothing=0.15
    )
    got = F.cross_entropy(t64(x), jg.tensor(TARGETS), t64(WEIGHT), label_smoothing=0.15)
    np.testing.assert_allclose(float(got), ref.item(), rtol=1e-12)
    y = RNG.uniform(size=(6, 4))
    pw = RNG.uniform(0.5, 2, size=(4,))
    ref = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor(x), torch.tensor(y), pos_weight=torch.tensor(pw)
    )
    got = F.binary_cross_entropy_with_logits(t64(x), t64(y), pos_weight=t64(pw))
    np.testing.assert_allclose(float(got), ref.item(), rtol=1e-12)


# -- init -----------------------------------------------------------------------------------------
def test_calculate_gain():
    assert nn.init.calculate_gain("linear") == 1
    assert nn.init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert nn.init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert nn.init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        nn.init.calculate_gain("swish")


def test_init_distributions():
    init = nn.init
    w = nn.Parameter(jg.empty(256, 512))  # requires grad: init must run under no_grad
    jg.manual_seed(0)
    init.kaiming_normal_(w, nonlinearity="relu")
    assert abs(arr(w).std() - math.sqrt(2 / 512)) < 0.02 * math.sqrt(2 / 512)
    init.kaiming_uniform_(w, mode="fan_out")
    bound = math.sqrt(3) * math.sqrt(2) / math.sqrt(256)  # leaky_relu gain, a=0
    assert np.abs(arr(w)).max() <= bound
    init.xavier_uniform_(w, gain=2.0)
    a = 2.0 * math.sqrt(6 / (256 + 512))
    assert np.abs(arr(w)).max() <= a and np.abs(arr(w)).max() > 0.99 * a
    init.xavier_normal_(w)
    assert abs(arr(w).std() - math.sqrt(2 / 768)) < 0.02 * math.sqrt(2 / 768)
    init.normal_(w, 3.0, 0.5)
    assert abs(arr(w).mean() - 3.0) < 0.01 and abs(arr(w).std() - 0.5) < 0.01
    init.uniform_(w, -1, 2)
    assert arr(w).min() >= -1 and arr(w).max() < 2
    for fn, val in ((init.zeros_, 0.0), (init.ones_, 1.0)):
        fn(w)
        assert (arr(w) == val).all()
    init.constant_(w, 0.25)
    assert (arr(w) == 0.25).all()
    assert w.requires_grad and w.grad_fn is None
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(jg.empty(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="zero-element"):
            init.kaiming_uniform_(jg.empty(0, 3))


def test_trunc_normal_matches_scipy_and_seed():
    stats = pytest.importorskip("scipy.stats")
    t = jg.empty(100_000, dtype=jg.float64)
    jg.manual_seed(5)
    nn.init.trunc_normal_(t, mean=1.0, std=2.0, a=-1.0, b=4.0)
    v = arr(t)
    assert v.min() >= -1.0 and v.max() <= 4.0
    ref = stats.truncnorm((-1.0 - 1.0) / 2.0, (4.0 - 1.0) / 2.0, loc=1.0, scale=2.0)
    assert abs(v.mean() - ref.mean()) < 0.02 and abs(v.std() - ref.std()) < 0.02
    assert stats.kstest(v[:5000], ref.cdf).pvalue > 1e-3
    jg.manual_seed(5)
    again = nn.init.trunc_normal_(jg.empty(100_000, dtype=jg.float64), 1.0, 2.0, -1.0, 4.0)
    np.testing.assert_array_equal(arr(again), v)


def test_deepcopy_of_a_trained_model_and_optimizer_is_independent():
    # the copy's gradients and updates must land in the copy, never in the original
    model = nn.Linear(3, 2)
    opt = optim.SGD(model.parameters(), lr=0.1)
    x = jg.randn(4, 3)
    model(x).sum().backward()
    opt.step()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    grad_before = model.weight.grad.clone()
    model2, opt2 = copy.deepcopy((model, opt))
    assert isinstance(model2.weight, nn.Parameter) and model2.weight.requires_grad
    assert opt2.param_groups[0]["params"][0] is model2.weight
    np.testing.assert_array_equal(model2.weight.grad.numpy(), grad_before.numpy())
    opt2.zero_grad()
    model2(x).sum().backward()
    opt2.step()
    np.testing.assert_array_equal(model.weight.grad.numpy(), grad_before.numpy())
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k].numpy())
    assert not np.array_equal(model2.weight.detach().numpy(), before["weight"].numpy())
    with pytest.raises(RuntimeError, match="graph leaves"):
        copy.deepcopy(model.weight * 2)
