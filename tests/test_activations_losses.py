"""nn.functional activations, losses, ctc_loss and scaled_dot_product_attention beyond their
specs: PyTorch's behaviour at kinks, options and reductions, dtypes, error wording, the module
classes, and compiled use with the Numba backend. Checked against torch (skipped without it)
or written-out definitions, never against jitgrad itself."""

from __future__ import annotations

import inspect
import itertools
import math
import warnings

import numpy as np
import pytest

import jitgrad as jg
import jitgrad.nn.functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _both(values, grad=()):
    """The same arrays as jitgrad and torch tensors (those at ``grad`` requiring grad)."""
    js, ts = [], []
    for k, v in enumerate(values):
        if isinstance(v, np.ndarray):
            js.append(jg.tensor(v, requires_grad=k in grad))
            ts.append(torch.tensor(v, requires_grad=k in grad))
        else:
            js.append(v)
            ts.append(v)
    return js, ts


def _agree(jfn, tfn, values, grad=(), rtol=1e-10, atol=1e-12, **kw):
    """Forward and gradients (for a random cotangent) of jfn and tfn agree."""
    js, ts = _both(values, grad)
    jo, to = jfn(*js, **kw), tfn(*ts, **kw)
    assert tuple(jo.shape) == tuple(to.shape)
    assert str(jo.dtype).split(".")[-1] == str(to.dtype).split(".")[-1]
    np.testing.assert_allclose(jo.detach().numpy(), to.detach().numpy(), rtol=rtol, atol=atol)
    if grad:
        cot = np.random.default_rng(9).standard_normal(tuple(to.shape))
        jg_g = jg.autograd.grad(jo, [js[k] for k in grad], jg.tensor(cot), allow_unused=True)
        t_g = torch.autograd.grad(to, [ts[k] for k in grad], torch.tensor(cot), allow_unused=True)
        for a, b in zip(jg_g, t_g):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=rtol, atol=atol)
    return jo


RNG = np.random.default_rng(0)
X = RNG.standard_normal((3, 4))


# -- activations ----------------------------------------------------------------------------------
KINKS = np.array([-3.0, -0.5, 0.0, 0.5, 3.0, 0.1, -1.0, 2.0])

ACTIVATIONS = [
    ("selu", {}),
    ("celu", {"alpha": 0.7}),
    ("elu", {"alpha": 0.3}),
    ("hardswish", {}),
    ("hardsigmoid", {}),
    ("mish", {}),
    ("softshrink", {"lambd": 0.5}),
    ("hardshrink", {"lambd": 0.5}),
    ("threshold", {"threshold": 0.1, "value": -2.0}),
    ("leaky_relu", {"negative_slope": 0.2}),
    ("silu", {}),
    ("logsigmoid", {}),
    ("gelu", {}),
    ("gelu", {"approximate": "tanh"}),
    ("rrelu", {"lower": 0.1, "upper": 0.4}),
]


@pytest.mark.parametrize(("name", "kw"), ACTIVATIONS)
def test_activations_agree_with_torch_at_their_kinks(name, kw):
    # the gradient at a kink is PyTorch's one-sided choice; hardsigmoid's float64 gradient in
    # torch carries float32's 1/6, hence the tolerance
    _agree(getattr(F, name), getattr(TF, name), [KINKS], grad=(0,), rtol=1e-7, **kw)


@pytest.mark.parametrize("name", ["selu", "celu", "hardswish", "hardsigmoid", "mish", "elu",
                                  "rrelu", "threshold", "silu", "leaky_relu"])  # fmt: skip
def test_inplace_activations_write_into_their_input(name):
    args = (0.1, -2.0) if name == "threshold" else ()
    want = getattr(TF, name)(torch.tensor(X), *args).numpy()
    x = jg.tensor(X.copy())
    out = getattr(F, name)(x, *args, inplace=True)
    assert out is x
    np.testing.assert_allclose(x.numpy(), want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    ("name", "args"),
    [("celu_", (0.5,)), ("elu_", ()), ("hardtanh_", (-0.5, 0.5)), ("leaky_relu_", (0.1,)),
     ("relu_", ()), ("rrelu_", ()), ("selu_", ()), ("threshold_", (0.6, 9.0))],
)  # fmt: skip
def test_inplace_function_forms(name, args):
    x = jg.tensor(X.copy())
    t = torch.tensor(X.copy())
    assert getattr(F, name)(x, *args) is x
    getattr(TF, name)(t, *args)
    np.testing.assert_allclose(x.numpy(), t.numpy(), rtol=1e-12, atol=1e-15)
    assert name in F.__all__


@pytest.mark.parametrize("name", ["selu", "hardswish", "hardsigmoid", "mish", "softshrink",
                                  "hardshrink", "softmin", "glu"])  # fmt: skip
def test_float32_stays_float32(name):
    kw = {"dim": 1} if name in ("softmin", "glu") else {}
    x = X.astype(np.float32)
    got = getattr(F, name)(jg.tensor(x), **kw)
    want = getattr(TF, name)(torch.tensor(x), **kw)
    assert got.dtype == jg.float32
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-7)


def test_glu_halves_any_dim_and_refuses_odd_sizes():
    x = RNG.standard_normal((2, 4, 6))
    for dim in (1, -1, 2):
        _agree(F.glu, TF.glu, [x], grad=(0,), dim=dim)
    with pytest.raises(RuntimeError, match="Halving dimension must be even, but dimension 1 is"):
        F.glu(jg.tensor(X[:, :3].T.copy()), 1)
    with pytest.raises(RuntimeError, match="glu does not support scalars"):
        F.glu(jg.tensor(1.0))


def test_prelu_one_or_per_channel_weight():
    x = np.array([[[-1.0, 0.0, 2.0]], [[0.5, -0.5, -3.0]]])  # (2, 1, 3)
    _agree(F.prelu, TF.prelu, [x, np.array([0.3])], grad=(0, 1))
    x3 = RNG.standard_normal((2, 3, 2, 2))
    _agree(F.prelu, TF.prelu, [x3, np.array([0.1, 0.2, 0.3])], grad=(0, 1))
    _agree(F.prelu, TF.prelu, [np.array([-1.0, 2.0]), np.array([0.25])], grad=(0, 1))
    with pytest.raises(RuntimeError, match="Found parameter numbers = 2 and channel size = 3"):
        F.prelu(jg.tensor(x3), jg.tensor(np.array([0.1, 0.2])))


def test_rrelu_draws_slopes_in_training_and_uses_their_mean_in_eval():
    x = -np.ones(2000)
    jg.manual_seed(0)
    a = jg.tensor(x, requires_grad=True)
    y = F.rrelu(a, 0.1, 0.3, training=True)
    slopes = -y.detach().numpy()
    assert 0.1 <= slopes.min() and slopes.max() <= 0.3 and abs(slopes.mean() - 0.2) < 0.01
    y.sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), slopes)  # d(slope * x)/dx = slope
    pos = F.rrelu(jg.tensor(np.ones(5)), training=True).numpy()
    np.testing.assert_array_equal(pos, np.ones(5))
    ev = F.rrelu(jg.tensor(x), 0.1, 0.3).numpy()
    np.testing.assert_allclose(ev, -0.2 * np.ones_like(x))
    with pytest.raises(RuntimeError, match="Lower bound should be less than or equal"):
        F.rrelu(jg.tensor(x), 0.5, 0.1, training=True)
    m = jg.nn.RReLU(0.1, 0.3)
    m.eval()
    np.testing.assert_allclose(m(jg.tensor(x)).numpy(), ev)


def test_activation_errors_read_like_pytorch():
    with pytest.raises(RuntimeError, match=r"lambda must be in range \[0, 1.79769e\+308\] for "
                       "input dtype Double, but found -1"):  # fmt: skip
        F.softshrink(jg.tensor(X), -1.0)
    with pytest.raises(RuntimeError, match="alpha cannot be 0 for CELU"):
        F.celu(jg.tensor(X), 0.0)
    np.testing.assert_array_equal(F.hardshrink(jg.tensor(X), -1.0).numpy(), X)  # as PyTorch
    with pytest.raises(RuntimeError, match="approximate argument must be either none or tanh."):
        F.gelu(jg.tensor(X), approximate="foo")


def test_softmin_warns_on_an_implicit_dim_like_softmax():
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmin"):
        got = F.softmin(jg.tensor(X))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = TF.softmin(torch.tensor(X))
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12)
    got = F.softmin(jg.tensor(X), 0, dtype=jg.float32)
    assert got.dtype == jg.float32


# -- losses ---------------------------------------------------------------------------------------
REDUCTIONS = ("none", "mean", "sum")
T = RNG.standard_normal((3, 4))
PM1 = np.array([1, -1, 1])


def _loss_cases():
    pos = np.abs(T) + 0.1
    probs = np.exp(T) / np.exp(T).sum(1, keepdims=True)
    yield "huber_loss", [X, T], (0, 1), {"delta": 0.4}
    yield "smooth_l1_loss", [X, T], (0, 1), {"beta": 0.6}
    yield "smooth_l1_loss", [X, T], (0, 1), {"beta": 0.0}
    yield "soft_margin_loss", [X, np.sign(T)], (0,), {}
    yield "kl_div", [np.log(probs[::-1].copy()), probs], (0, 1), {}
    yield "kl_div", [np.log(probs[::-1].copy()), np.log(probs)], (0, 1), {"log_target": True}
    yield "poisson_nll_loss", [X, np.round(pos * 2)], (0,), {}
    yield "poisson_nll_loss", [pos, np.round(pos * 2)], (0,), {"log_input": False, "full": True}
    yield "gaussian_nll_loss", [X, T, pos], (0, 1, 2), {}
    yield "gaussian_nll_loss", [X, T, pos[:, 0].copy()], (0, 1, 2), {"full": True}
    yield "gaussian_nll_loss", [X, T, pos[:, :1].copy()], (0, 1, 2), {"eps": 0.5}
    yield "cosine_embedding_loss", [X, T, PM1], (0, 1), {"margin": -0.2}
    yield "margin_ranking_loss", [X[:, 0].copy(), T[:, 0].copy(), PM1 * 1.0], (0, 1), {}
    yield "hinge_embedding_loss", [X, np.sign(T)], (0,), {"margin": 0.7}
    yield "triplet_margin_loss", [X, T, X[::-1].copy()], (0, 1, 2), {"p": 1, "margin": 3.0}
    yield "triplet_margin_loss", [X, T, T * 0.5], (0, 1, 2), {"swap": True}
    yield "multi_margin_loss", [X, np.array([0, 3, 1])], (0,), {}
    yield "multi_margin_loss", [X, np.array([0, 3, 1])], (0,), {"p": 2, "weight": pos[0]}
    yield "multi_margin_loss", [X[0].copy(), np.array(2)], (0,), {"margin": 2.0}
    yield "multilabel_soft_margin_loss", [X, (T > 0) * 1.0], (0,), {}
    yield "multilabel_soft_margin_loss", [X, (T > 0) * 1.0], (0,), {"weight": pos[0]}


LOSS_CASES = [
    pytest.param(name, values, grad, kw, red, id=f"{name}-{i}-{red}")
    for i, (name, values, grad, kw) in enumerate(_loss_cases())
    for red in REDUCTIONS
]


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss")
@pytest.mark.parametrize(("name", "values", "grad", "kw", "reduction"), LOSS_CASES)
def test_losses_agree_with_torch(name, values, grad, kw, reduction):
    jkw = {k: jg.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    tkw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    js, ts = _both(values, grad)
    jo = getattr(F, name)(*js, reduction=reduction, **jkw)
    to = getattr(TF, name)(*ts, reduction=reduction, **tkw)
    assert tuple(jo.shape) == tuple(to.shape)
    np.testing.assert_allclose(jo.detach().numpy(), to.detach().numpy(), rtol=1e-10, atol=1e-12)
    cot = np.random.default_rng(3).standard_normal(tuple(to.shape))
    jg_g = jg.autograd.grad(jo, [js[k] for k in grad], jg.tensor(cot))
    t_g = torch.autograd.grad(to, [ts[k] for k in grad], torch.tensor(cot))
    for a, b in zip(jg_g, t_g):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-12)


def test_kl_div_batchmean_divides_by_the_batch_and_mean_warns():
    p = np.array([[0.2, 0.8], [0.5, 0.5], [0.0, 1.0]])
    logq = np.log(np.array([[0.3, 0.7], [0.6, 0.4], [0.1, 0.9]]))
    got = F.kl_div(jg.tensor(logq), jg.tensor(p), reduction="batchmean").item()
    # sum p (log p - log q) over all, 0 log 0 = 0, over the batch size 3
    terms = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1)) - logq), 0.0)
    assert got == pytest.approx(terms.sum() / 3, rel=1e-12)
    with pytest.warns(UserWarning, match="'batchmean' divides only by the batch size"):
        F.kl_div(jg.tensor(logq), jg.tensor(p))


def test_gaussian_nll_loss_var_forms_and_errors():
    js, ts = _both([X, T])
    got = F.gaussian_nll_loss(*js, 0.5)
    assert got.item() == pytest.approx(TF.gaussian_nll_loss(*ts, 0.5).item(), rel=1e-12)
    with pytest.raises(ValueError, match="var is of incorrect size"):
        F.gaussian_nll_loss(*js, jg.tensor(np.ones((2, 4))))
    with pytest.raises(ValueError, match="var has negative entry/entries"):
        F.gaussian_nll_loss(*js, jg.tensor(-np.ones((3, 4))))
    with pytest.raises(ValueError, match="foo is not valid"):
        F.gaussian_nll_loss(*js, jg.tensor(np.ones((3, 4))), reduction="foo")
    # the clamp at eps does not enter the gradient (PyTorch clamps a copy under no_grad)
    v = jg.tensor(np.full((3, 4), 1e-9), requires_grad=True)
    tv = torch.tensor(np.full((3, 4), 1e-9), requires_grad=True)
    F.gaussian_nll_loss(*js, v).backward()
    TF.gaussian_nll_loss(*ts, tv).backward()
    np.testing.assert_allclose(v.grad.numpy(), tv.grad.numpy(), rtol=1e-10)


def test_huber_weight_and_legacy_reduction_arguments():
    w = np.abs(T)
    got = F.huber_loss(jg.tensor(X), jg.tensor(T), delta=0.5, weight=jg.tensor(w))
    want = TF.huber_loss(torch.tensor(X), torch.tensor(T), delta=0.5, weight=torch.tensor(w))
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        got = F.smooth_l1_loss(jg.tensor(X), jg.tensor(T), reduce=False)
    assert tuple(got.shape) == (3, 4)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: F.huber_loss(jg.tensor(X), jg.tensor(T), delta=0.0), RuntimeError,
         "huber_loss does not support non-positive values for delta."),
        (lambda: F.smooth_l1_loss(jg.tensor(X), jg.tensor(T), beta=-1.0), RuntimeError,
         "smooth_l1_loss does not support negative values for beta."),
        (lambda: F.soft_margin_loss(jg.tensor(X), jg.tensor(T), reduction="foo"), ValueError,
         "foo is not a valid value for reduction"),
        (lambda: F.multi_margin_loss(jg.tensor(X), jg.tensor(np.array([0, 1, 2])), p=3),
         ValueError, "only p == 1 and p == 2 supported"),
        (lambda: F.multi_margin_loss(jg.tensor(X), jg.tensor(np.array([0, 4, 2]))),
         RuntimeError, "target out of range"),
        (lambda: F.multi_margin_loss(jg.tensor(X), jg.tensor(np.array([0, 1]))), RuntimeError,
         r"Expected target size \[3\], but got \[2\]"),
        (lambda: F.multi_margin_loss(jg.tensor(X), jg.tensor(np.array([0, 1, 2])),
                                     weight=jg.tensor(np.ones(3))),
         RuntimeError, r"inconsistent weight size, expected 4 but got \[3\]"),
        (lambda: F.cosine_embedding_loss(jg.tensor(X), jg.tensor(T), jg.tensor(1.0)),
         RuntimeError, "0D target tensor expects 1D input tensors"),
        (lambda: F.margin_ranking_loss(jg.tensor(X), jg.tensor(T), jg.tensor(np.ones(3))),
         RuntimeError, "margin_ranking_loss : All input tensors should have same dimension"),
        (lambda: F.triplet_margin_loss(jg.tensor(X), jg.tensor(T), jg.tensor(T[0])),
         RuntimeError, "anchor 2D, positive 2D, and negative 1D inputs"),
    ],
)  # fmt: skip
def test_loss_errors_read_like_pytorch(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize(
    "name", ["huber_loss", "smooth_l1_loss", "soft_margin_loss", "kl_div", "poisson_nll_loss"]
)
def test_float32_input_with_float64_target_gives_pytorchs_dtype(name):
    x, t = X.astype(np.float32), np.abs(T) + 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kl_div's 'mean' warns
        got = getattr(F, name)(jg.tensor(x), jg.tensor(t))
        want = getattr(TF, name)(torch.tensor(x), torch.tensor(t))
    assert str(got.dtype).split(".")[-1] == str(want.dtype).split(".")[-1]
    assert got.item() == pytest.approx(want.item(), rel=1e-6)


def test_targets_other_than_plus_minus_one_select_as_pytorch():
    t = np.array([[1.0, -1.0, 0.0, 2.0]] * 3)
    _agree(F.hinge_embedding_loss, TF.hinge_embedding_loss, [X, t], grad=(0,))
    _agree(F.cosine_embedding_loss, TF.cosine_embedding_loss, [X, T, np.array([1, 0, -1])],
           grad=(0, 1))  # fmt: skip


# -- cross_entropy --------------------------------------------------------------------------------
CE_CASES = [
    pytest.param(shape, tgt, weighted, ls, red, ii, id=f"{shape}-{tgt}-w{weighted}-{ls}-{red}-{ii}")
    for shape in ("nd", "2d", "1d")
    for tgt in ("index", "probs")
    for weighted, ls, red, ii in itertools.product((False, True), (0.0, 0.3), REDUCTIONS, (-100, 1))
    if not (tgt == "probs" and ii != -100)
]


@pytest.mark.parametrize(("shape", "tgt", "weighted", "ls", "red", "ii"), CE_CASES)
def test_cross_entropy_options_together_agree_with_torch(shape, tgt, weighted, ls, red, ii):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3, 2))
    t = rng.integers(0, 3, (4, 2))
    t[1, 1] = 1
    if ii == -100:
        t[0, 0] = -100
    p = rng.random((4, 3, 2))
    p /= p.sum(1, keepdims=True)
    x, t, p = {
        "nd": (x, t, p),
        "2d": (x[..., 0], t[:, 0], p[..., 0]),
        "1d": (x[2, :, 0], np.array(t[2, 0]), p[2, :, 0]),
    }[shape]
    w = np.array([0.5, 2.0, 1.5]) if weighted else None
    jkw = {"weight": None if w is None else jg.tensor(w), "label_smoothing": ls,
           "reduction": red, "ignore_index": ii}  # fmt: skip
    tkw = dict(jkw, weight=None if w is None else torch.tensor(w))
    target = t if tgt == "index" else p
    a, b = jg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    la = F.cross_entropy(a, jg.tensor(target), **jkw)
    lb = TF.cross_entropy(b, torch.tensor(target), **tkw)
    assert tuple(la.shape) == tuple(lb.shape)
    np.testing.assert_allclose(la.detach().numpy(), lb.detach().numpy(), rtol=1e-12, atol=1e-14)
    cot = rng.standard_normal(tuple(lb.shape))
    la.backward(jg.tensor(cot))
    lb.backward(torch.tensor(cot))
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_cross_entropy_all_targets_ignored_with_smoothing_has_zero_gradient():
    a = jg.tensor(np.array([[0.3, -1.0, 2.0]]), requires_grad=True)
    with np.errstate(all="ignore"):
        loss = F.cross_entropy(a, jg.tensor(np.array([1])), ignore_index=1, label_smoothing=0.2)
        loss.backward()
    assert math.isnan(loss.item())  # 0 / 0, as PyTorch
    np.testing.assert_array_equal(a.grad.numpy(), np.zeros((1, 3)))


# -- ctc_loss -------------------------------------------------------------------------------------
def _ctc_inputs(seed=0, steps=6, n=3, c=4, s=3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((steps, n, c))
    targets = rng.integers(1, c, (n, s))
    targets[1, 1] = targets[1, 0]  # a repeated label: the alignment needs a blank between
    return x, targets, [steps, steps - 1, 2], [s, 2, 0]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("form", ["padded", "concatenated", "tensors"])
def test_ctc_loss_agrees_with_torch_through_log_softmax(reduction, form):
    x, targets, il, tl = _ctc_inputs()
    if form == "concatenated":
        targets = np.concatenate([targets[i, : tl[i]] for i in range(3)])
    if form == "tensors":
        il, tl = np.array(il), np.array(tl)
    js, ts = _both([x, targets, il, tl], grad=(0,))

    def jfn(x, *rest, **kw):
        return F.ctc_loss(x.log_softmax(2), *rest, **kw)

    def tfn(x, *rest, **kw):
        return TF.ctc_loss(x.log_softmax(2), *rest, **kw)

    _agree(jfn, tfn, [x, targets, il, tl], grad=(0,), rtol=1e-9, reduction=reduction)


def test_ctc_loss_gradient_is_the_exact_one_with_respect_to_log_probs():
    # PyTorch's own backward returns exp(log_probs) - posterior (the logits' gradient through
    # a log_softmax); the exact derivative with respect to log_probs, by finite differences:
    x, targets, il, tl = _ctc_inputs(steps=4, s=2)
    tl = [2, 1, 0]
    lp = x - np.log(np.exp(x).sum(2, keepdims=True))
    a = jg.tensor(lp, requires_grad=True)

    def loss(v):
        return F.ctc_loss(jg.tensor(v), jg.tensor(targets), il, tl, reduction="sum").item()

    F.ctc_loss(a, jg.tensor(targets), il, tl, reduction="sum").backward()
    fd = np.zeros_like(lp)
    for i in np.ndindex(lp.shape):
        d = np.zeros_like(lp)
        d[i] = 1e-6
        fd[i] = (loss(lp + d) - loss(lp - d)) / 2e-6
    np.testing.assert_allclose(a.grad.numpy(), fd, rtol=1e-6, atol=1e-8)
    with torch.no_grad():
        torch_grad = fd + np.exp(lp) * (np.arange(4)[:, None, None] < np.array(il)[None, :, None])
    b = torch.tensor(lp, requires_grad=True)
    TF.ctc_loss(b, torch.tensor(targets), il, tl, reduction="sum").backward()
    np.testing.assert_allclose(b.grad.numpy(), torch_grad, rtol=1e-6, atol=1e-8)


def test_ctc_loss_impossible_alignments_unbatched_and_zero_infinity():
    x, targets, _, _ = _ctc_inputs()
    lp = jg.tensor(x).log_softmax(2)
    tlp = torch.tensor(x).log_softmax(2)
    il, tl = [6, 1, 2], [3, 3, 0]  # one frame cannot emit three labels
    got = F.ctc_loss(lp, jg.tensor(targets), il, tl, reduction="none").numpy()
    want = TF.ctc_loss(tlp, torch.tensor(targets), il, tl, reduction="none").numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert np.isinf(got[1])
    a = jg.tensor(x, requires_grad=True)
    z = F.ctc_loss(a.log_softmax(2), jg.tensor(targets), il, tl, zero_infinity=True)
    b = torch.tensor(x, requires_grad=True)
    tz = TF.ctc_loss(b.log_softmax(2), torch.tensor(targets), il, tl, zero_infinity=True)
    assert z.item() == pytest.approx(tz.item(), rel=1e-10)
    z.backward()
    tz.backward()
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-9, atol=1e-12)
    one = F.ctc_loss(lp[:, 0], jg.tensor(targets[0]), 6, 3, reduction="none")
    t_one = TF.ctc_loss(tlp[:, 0], torch.tensor(targets[0]), torch.tensor(6), torch.tensor(3),
                        reduction="none")  # fmt: skip
    assert tuple(one.shape) == () and one.item() == pytest.approx(t_one.item(), rel=1e-12)


def test_ctc_loss_errors():
    x, targets, il, tl = _ctc_inputs()
    lp = jg.tensor(x).log_softmax(2)
    with pytest.raises(RuntimeError, match="Expected input_lengths to have value at most 6"):
        F.ctc_loss(lp, jg.tensor(targets), [7, 1, 1], tl)
    with pytest.raises(RuntimeError, match="Expected tensor to have size at least 4 at dim"):
        F.ctc_loss(lp, jg.tensor(targets), il, [4, 1, 1])
    with pytest.raises(ValueError, match="foo is not a valid value for reduction"):
        F.ctc_loss(lp, jg.tensor(targets), il, tl, reduction="foo")
    with pytest.raises(RuntimeError, match="input_lengths must be integral"):
        F.ctc_loss(lp, jg.tensor(targets), jg.tensor(np.array(il, dtype=float)), tl)


def test_ctc_loss_with_concatenated_targets_cannot_be_traced():
    x, targets, il, tl = _ctc_inputs()
    flat = jg.tensor(np.concatenate([targets[i, : tl[i]] for i in range(3)]))
    fn = jg.compile(lambda lp: F.ctc_loss(lp, flat, il, jg.tensor(np.array(tl))),
                    backend="interpreter")  # fmt: skip
    with pytest.raises(jg.TraceError):
        fn(jg.tensor(x).log_softmax(2))


# -- scaled_dot_product_attention -----------------------------------------------------------------
Q = RNG.standard_normal((2, 2, 3, 4))
K = RNG.standard_normal((2, 2, 5, 4))
V = RNG.standard_normal((2, 2, 5, 6))


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"is_causal": True},
        {"scale": 0.3},
        {"attn_mask": RNG.random((3, 5)) < 0.6},
        {"attn_mask": RNG.standard_normal((2, 1, 3, 5))},
        {"attn_mask": np.array([[False] * 5, [True] * 5, [True, False] * 2 + [True]])},
    ],
    ids=["plain", "causal", "scale", "bool-mask", "float-mask", "row-masked-throughout"],
)
def test_sdpa_agrees_with_torch(kw):
    jkw = {k: jg.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    tkw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    js, ts = _both([Q, K, V], grad=(0, 1, 2))
    jo = F.scaled_dot_product_attention(*js, **jkw)
    to = TF.scaled_dot_product_attention(*ts, **tkw)
    np.testing.assert_allclose(jo.detach().numpy(), to.detach().numpy(), rtol=1e-10, atol=1e-12)
    cot = np.random.default_rng(2).standard_normal(tuple(to.shape))
    for a, b in zip(jg.autograd.grad(jo, js, jg.tensor(cot)),
                    torch.autograd.grad(to, ts, torch.tensor(cot))):  # fmt: skip
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-12)


def test_sdpa_grouped_query_heads_dropout_and_errors():
    k2, v2 = K[:, :1].copy(), V[:, :1].copy()
    q4 = np.concatenate([Q, Q[:, ::-1]], 1)  # 4 query heads over 1 key/value head
    got = F.scaled_dot_product_attention(jg.tensor(q4), jg.tensor(k2), jg.tensor(v2),
                                         enable_gqa=True)  # fmt: skip
    want = TF.scaled_dot_product_attention(torch.tensor(q4), torch.tensor(k2), torch.tensor(v2),
                                           enable_gqa=True)  # fmt: skip
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10)
    jg.manual_seed(0)
    ones = jg.tensor(np.ones((1, 200, 4)))
    out = F.scaled_dot_product_attention(ones, ones, ones, dropout_p=0.5).numpy()
    # uniform weights 1/200 each, half dropped and the rest scaled by 2: rows average to ~1
    assert abs(out.mean() - 1.0) < 0.05 and out.std() > 0
    with pytest.raises(RuntimeError, match="Explicit attn_mask should not be set when is_causal"):
        F.scaled_dot_product_attention(*_both([Q, K, V])[0], attn_mask=jg.tensor(np.ones((3, 5))),
                                       is_causal=True)  # fmt: skip
    with pytest.raises(RuntimeError, match="attn_mask.dtype: long int and  query.dtype: double"):
        F.scaled_dot_product_attention(*_both([Q, K, V])[0], attn_mask=jg.tensor(np.ones((3, 5),
                                       dtype=np.int64)))  # fmt: skip
    mask32 = RNG.standard_normal((3, 5)).astype(np.float32)
    got = F.scaled_dot_product_attention(*_both([Q, K, V])[0], attn_mask=jg.tensor(mask32))
    want = TF.scaled_dot_product_attention(*_both([Q, K, V])[1], attn_mask=torch.tensor(mask32))
    assert got.dtype == jg.float64
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10)
    with pytest.raises(RuntimeError, match="Expected query, key, and value to have the same"):
        F.scaled_dot_product_attention(jg.tensor(Q), jg.tensor(K.astype(np.float32)), jg.tensor(V))


# -- modules --------------------------------------------------------------------------------------
MODULES = [
    "ELU", "CELU", "SELU", "GLU", "Hardswish", "Hardsigmoid", "ReLU6", "RReLU", "Mish",
    "Softmin", "Softshrink", "Hardshrink", "Threshold", "PReLU", "HuberLoss", "SmoothL1Loss",
    "KLDivLoss", "PoissonNLLLoss", "GaussianNLLLoss", "CosineEmbeddingLoss", "MarginRankingLoss",
    "HingeEmbeddingLoss", "TripletMarginLoss", "MultiMarginLoss", "MultiLabelSoftMarginLoss",
    "SoftMarginLoss", "CTCLoss",
]  # fmt: skip


@pytest.mark.parametrize("name", MODULES)
def test_module_constructors_take_pytorchs_arguments(name):
    def params(cls):
        sig = inspect.signature(cls.__init__)
        return [(p.name, p.default, p.kind) for p in sig.parameters.values()][1:]

    assert params(getattr(jg.nn, name)) == params(getattr(torch.nn, name))


def test_modules_hold_options_reprs_and_buffers_like_pytorch():
    for args in [("Softshrink", 0.3), ("Threshold", 0.1, 20.0), ("CELU", 2.0), ("GLU",),
                 ("Hardswish",), ("PReLU", 3)]:  # fmt: skip
        name, *rest = args
        assert repr(getattr(jg.nn, name)(*rest)) == repr(getattr(torch.nn, name)(*rest))
    m = jg.nn.MultiMarginLoss(p=2, weight=jg.tensor(np.arange(1.0, 5.0)))
    assert list(m.state_dict()) == ["weight"] and m.reduction == "mean"
    with pytest.warns(UserWarning, match="size_average and reduce args"):
        assert jg.nn.SoftMarginLoss(reduce=False).reduction == "none"
    got = jg.nn.TripletMarginLoss(margin=2.0, swap=True)(*_both([X, T, T * 0.5])[0])
    want = torch.nn.TripletMarginLoss(margin=2.0, swap=True)(*_both([X, T, T * 0.5])[1])
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    p = jg.nn.PReLU(4)
    assert [n for n, _ in p.named_parameters()] == ["weight"]
    np.testing.assert_array_equal(p.weight.detach().numpy(), np.full(4, 0.25))


# -- compiled -------------------------------------------------------------------------------------
@pytest.fixture
def _cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("JITGRAD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "jg-cache"))


def _program(x, w, q, k, v, lp, targets):
    h = F.mish(F.prelu(F.hardswish(x) + F.selu(x), w))
    h = F.glu(F.softshrink(h, 0.2) + F.softmin(h, 1), 1)
    loss = F.huber_loss(h, x[:, :2], delta=0.3) + F.kl_div(
        F.log_softmax(x, 1), F.softmax(x * 0.5, 1), reduction="batchmean"
    )
    loss = loss + F.triplet_margin_loss(x, x * 0.5, x.flip(0), swap=True)
    loss = loss + F.multi_margin_loss(x, targets[:, 0], p=2)
    att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    ctc = F.ctc_loss(lp.log_softmax(2), targets, (4, 3, 3), (2, 1, 2))
    return loss + att.sum() * 0.1 + ctc


@pytest.mark.filterwarnings("error")  # (a fallback to the interpreter warns: strict)
def test_ops_compile_with_numba_like_eager(_cache_dir):
    rng = np.random.default_rng(0)
    x = jg.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    w = jg.tensor(np.array([0.1, 0.2, 0.3, 0.4]), requires_grad=True)
    q, k, v = (jg.tensor(rng.standard_normal((2, 3, 4))) for _ in range(3))
    lp = jg.tensor(rng.standard_normal((4, 3, 5)), requires_grad=True)
    targets = jg.tensor(rng.integers(1, 4, (3, 2)))

    def step(x, w, q, k, v, lp):
        loss = _program(x, w, q, k, v, lp, targets)
        return (loss, *jg.autograd.grad(loss, [x, w, lp]))

    fn = jg.compile(step, backend="numba", check=True)
    for seed in (1, 2):  # the second call replays the compiled code on new values
        got, want = fn(x, w, q, k, v, lp), step(x, w, q, k, v, lp)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-9, atol=1e-12)
        x = jg.tensor(np.random.default_rng(seed).standard_normal((3, 4)), requires_grad=True)
    assert fn.stats.traces == 1


@pytest.mark.filterwarnings("error")
def test_compiled_rrelu_and_attention_dropout_draw_afresh_each_call(_cache_dir):
    x = jg.tensor(-np.ones((4, 5)))
    fn = jg.compile(lambda x: F.rrelu(x, 0.1, 0.3, training=True), backend="numba")
    a, b = fn(x).numpy(), fn(x).numpy()
    assert -0.3 <= a.min() and a.max() <= -0.1 and (a != b).any()
    q = jg.tensor(np.ones((1, 50, 4)))
    att = jg.compile(lambda q: F.scaled_dot_product_attention(q, q, q, dropout_p=0.5),
                     backend="numba")  # fmt: skip
    first, second = att(q).numpy(), att(q).numpy()
    assert (first != second).any() and abs(first.mean() - 1.0) < 0.2


def test_hardtanh_and_relu6_gradients_are_zero_at_their_bounds():
    # PyTorch's hardtanh_backward: 1 strictly inside (min, max) and on NaN, 0 elsewhere
    x = jg.tensor([-2.0, -1.0, 0.0, 0.5, 1.0, 6.0, 7.0, float("nan")], requires_grad=True)
    F.hardtanh(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 0, 1, 1, 0, 0, 0, 1])
    x.grad = None
    F.relu6(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 0, 0, 1, 1, 0, 0, 1])
