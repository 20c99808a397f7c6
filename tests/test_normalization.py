"""LayerNorm, BatchNorm1d/2d and Embedding: NumPy references, finite differences, PyTorch
agreement (optional) and compiled training steps that update running statistics."""

import numpy as np
import pytest
from test_compile import _make_step

import jitgrad as jg
import jitgrad.nn as nn
import jitgrad.nn.functional as F
from jitgrad import optim
from jitgrad.autograd import gradcheck

RNG = np.random.default_rng(0)


def _np(t):
    return t.detach().numpy()


# -- NumPy references -----------------------------------------------------------------------------
def _ln_ref(x, k, w=None, b=None, eps=1e-5):
    axes = tuple(range(x.ndim - k, x.ndim))
    mu = x.mean(axes, keepdims=True)
    out = (x - mu) / np.sqrt(x.var(axes, keepdims=True) + eps)
    return out * (1 if w is None else w) + (0 if b is None else b)


def _bn_stats(x):
    axes = (0,) + tuple(range(2, x.ndim))
    return x.mean(axes), x.var(axes), x.var(axes, ddof=1)


def _bn_ref(x, mean, var, w, b, eps=1e-5):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * w.reshape(
        shape
    ) + b.reshape(shape)


# -- layer norm -----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, norm", [((4, 6), 6), ((2, 3, 5), (3, 5)), ((7,), [7])])
def test_layer_norm_matches_numpy(shape, norm):
    x = RNG.standard_normal(shape) * 3 + 1
    k = 1 if isinstance(norm, int) else len(norm)
    w, b = RNG.standard_normal(shape[-k:]), RNG.standard_normal(shape[-k:])
    got = F.layer_norm(jg.tensor(x), norm, jg.tensor(w), jg.tensor(b), eps=1e-3)
    np.testing.assert_allclose(_np(got), _ln_ref(x, k, w, b, 1e-3), rtol=1e-12, atol=1e-12)
    plain = F.layer_norm(jg.tensor(x.astype(np.float32)), norm)
    assert plain.dtype == jg.float32
    np.testing.assert_allclose(_np(plain), _ln_ref(x, k), rtol=1e-5, atol=1e-5)


def test_layer_norm_module_parameters_and_options():
    ln = nn.LayerNorm((2, 3))
    assert ln.normalized_shape == (2, 3) and ln.eps == 1e-5
    np.testing.assert_array_equal(_np(ln.weight), np.ones((2, 3)))
    np.testing.assert_array_equal(_np(ln.bias), np.zeros((2, 3)))
    assert [n for n, _ in nn.LayerNorm(4, bias=False).named_parameters()] == ["weight"]
    bare = nn.LayerNorm(4, elementwise_affine=False)
    assert bare.weight is None and bare.bias is None and not list(bare.parameters())
    x = RNG.standard_normal((3, 4))
    np.testing.assert_allclose(_np(bare(jg.tensor(x))), _ln_ref(x, 1), atol=1e-12)
    assert repr(bare) == ("LayerNorm((4,), eps=1e-05, elementwise_affine=False, bias=False)")


# -- batch norm ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls, shape",
    [(nn.BatchNorm1d, (5, 3)), (nn.BatchNorm1d, (4, 3, 2)), (nn.BatchNorm2d, (2, 3, 2, 2))],
)
@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
def test_batch_norm_train_running_stats_and_eval_match_numpy(cls, shape, momentum):
    bn = cls(3, momentum=momentum).double()
    w, b = RNG.standard_normal(3), RNG.standard_normal(3)
    with jg.no_grad():
        bn.weight.copy_(jg.tensor(w))
        bn.bias.copy_(jg.tensor(b))
    run_mean, run_var = np.zeros(3), np.ones(3)
    for step in range(1, 4):
        x = RNG.standard_normal(shape) * (step + 1) + step
        y = bn(jg.tensor(x))
        mean, var, unbiased = _bn_stats(x)
        np.testing.assert_allclose(_np(y), _bn_ref(x, mean, var, w, b), rtol=1e-10, atol=1e-10)
        m = 1.0 / step if momentum is None else momentum  # None: cumulative average
        run_mean = (1 - m) * run_mean + m * mean
        run_var = (1 - m) * run_var + m * unbiased
        np.testing.assert_allclose(_np(bn.running_mean), run_mean, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(_np(bn.running_var), run_var, rtol=1e-12, atol=1e-12)
        assert bn.num_batches_tracked.dtype == jg.int64
        assert bn.num_batches_tracked.item() == step
    bn.eval()
    x = RNG.standard_normal(shape)
    np.testing.assert_allclose(
        _np(bn(jg.tensor(x))), _bn_ref(x, run_mean, run_var, w, b), rtol=1e-10, atol=1e-10
    )
    assert bn.num_batches_tracked.item() == 3  # eval leaves the statistics alone


def test_batch_norm_module_state_and_no_running_stats():
    bn = nn.BatchNorm2d(4)
    assert [n for n, _ in bn.named_buffers()] == [
        "running_mean",
        "running_var",
        "num_batches_tracked",
    ]
    assert set(bn.state_dict()) == {
        "weight",
        "bias",
        "running_mean",
        "running_var",
        "num_batches_tracked",
    }
    assert repr(bn) == (
        "BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)"
    )
    free = nn.BatchNorm1d(2, affine=False, track_running_stats=False)
    assert not list(free.parameters()) and free.running_mean is None
    x = RNG.standard_normal((6, 2))
    mean, var, _ = _bn_stats(x)
    ref = _bn_ref(x, mean, var, np.ones(2), np.zeros(2))
    np.testing.assert_allclose(_np(free(jg.tensor(x))), ref, atol=1e-7)
    free.eval()  # no running statistics: eval mode still uses the batch's
    np.testing.assert_allclose(_np(free(jg.tensor(x))), ref, atol=1e-7)


def test_functional_batch_norm_without_and_with_buffers():
    x = RNG.standard_normal((4, 3, 2))
    mean, var, unbiased = _bn_stats(x)
    one, zero = np.ones(3), np.zeros(3)
    y = F.batch_norm(jg.tensor(x), None, None, training=True)
    np.testing.assert_allclose(_np(y), _bn_ref(x, mean, var, one, zero), atol=1e-12)
    rm, rv = jg.tensor(np.full(3, 0.5)), jg.tensor(np.full(3, 2.0))
    F.batch_norm(jg.tensor(x), rm, rv, training=True, momentum=0.25)
    np.testing.assert_allclose(_np(rm), 0.75 * 0.5 + 0.25 * mean, atol=1e-12)
    np.testing.assert_allclose(_np(rv), 0.75 * 2.0 + 0.25 * unbiased, atol=1e-12)
    y = F.batch_norm(jg.tensor(x), rm, rv)
    np.testing.assert_allclose(_np(y), _bn_ref(x, _np(rm), _np(rv), one, zero), atol=1e-12)


# -- embedding ------------------------------------------------------------------------------------
def test_embedding_forward_and_dense_gradient_match_numpy():
    w = RNG.standard_normal((6, 3))
    idx = np.array([[0, 2, 2], [5, 0, 1]])
    g = RNG.standard_normal((2, 3, 3))
    wt = jg.tensor(w, requires_grad=True)
    out = F.embedding(jg.tensor(idx), wt)
    np.testing.assert_array_equal(_np(out), w[idx])
    (out * jg.tensor(g)).sum().backward()
    want = np.zeros_like(w)
    np.add.at(want, idx.reshape(-1), g.reshape(-1, 3))
    np.testing.assert_allclose(wt.grad.numpy(), want, atol=1e-12)


def test_embedding_padding_idx_zero_row_and_no_gradient():
    jg.manual_seed(0)
    emb = nn.Embedding(5, 4, padding_idx=-2)
    assert emb.padding_idx == 3
    w = _np(emb.weight)
    np.testing.assert_array_equal(w[3], 0.0)
    assert np.all(np.any(w[[0, 1, 2, 4]] != 0, axis=1))  # the other rows are drawn N(0, 1)
    idx = np.array([3, 1, 3, 4])
    out = emb(jg.tensor(idx))
    np.testing.assert_array_equal(_np(out), w[idx])
    (out * 2.0).sum().backward()
    want = np.zeros((5, 4))
    np.add.at(want, idx, 2.0)
    want[3] = 0.0  # the padding row is never updated
    np.testing.assert_array_equal(emb.weight.grad.numpy(), want)
    assert repr(emb) == "Embedding(5, 4, padding_idx=3)"


def test_embedding_max_norm_and_scale_grad_by_freq_match_numpy():
    w = RNG.standard_normal((5, 3)) * 2
    idx = np.array([1, 4, 1, 0])
    wt = jg.tensor(w.copy(), requires_grad=True)
    out = F.embedding(jg.tensor(idx), wt, max_norm=1.5, scale_grad_by_freq=True)
    want_w = w.copy()
    for r in np.unique(idx):  # only looked-up rows are renormalized, in place
        n = np.linalg.norm(w[r])
        if n > 1.5:
            want_w[r] *= 1.5 / (n + 1e-7)
    np.testing.assert_allclose(_np(wt), want_w, rtol=1e-12)
    np.testing.assert_allclose(_np(out), want_w[idx], rtol=1e-12)
    out.sum().backward()
    counts = np.bincount(idx, minlength=5)
    want_g = np.where(counts > 0, 1.0, 0.0)[:, None] * np.ones((5, 3))  # sum / count = 1
    np.testing.assert_allclose(wt.grad.numpy(), want_g, rtol=1e-12)


def test_embedding_from_pretrained_shares_and_freezes():
    w = jg.tensor(RNG.standard_normal((4, 2)))
    emb = nn.Embedding.from_pretrained(w)
    assert not emb.weight.requires_grad and emb.padding_idx is None
    np.testing.assert_array_equal(_np(emb(jg.tensor([2, 0]))), _np(w)[[2, 0]])
    trainable = nn.Embedding.from_pretrained(w, freeze=False, padding_idx=1)
    assert trainable.weight.requires_grad
    assert np.all(_np(trainable.weight)[1] == _np(w)[1])  # a given weight is kept as is


# -- errors ---------------------------------------------------------------------------------------
def test_errors_keep_pytorch_wording():
    x = jg.randn(2, 3)
    with pytest.raises(RuntimeError, match=r"Given normalized_shape=\[4\], expected input with"):
        F.layer_norm(x, 4)
    with pytest.raises(RuntimeError, match="Expected weight to be of same shape"):
        F.layer_norm(x, 3, weight=jg.ones(4))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        nn.BatchNorm1d(3)(jg.randn(1, 3))
    nn.BatchNorm1d(3).eval()(jg.randn(1, 3))  # fine with running statistics
    with pytest.raises(ValueError, match=r"expected 2D or 3D input \(got 4D input\)"):
        nn.BatchNorm1d(3)(jg.randn(2, 3, 2, 2))
    with pytest.raises(ValueError, match=r"expected 4D input \(got 2D input\)"):
        nn.BatchNorm2d(3)(x)
    with pytest.raises(RuntimeError, match="running_mean should contain 3 elements not 4"):
        F.batch_norm(x, jg.zeros(4), jg.ones(4), training=True)
    with pytest.raises(RuntimeError, match="running_mean must be defined in evaluation mode"):
        F.batch_norm(x, None, None)
    emb = nn.Embedding(4, 2)
    for bad in ([0, 4], [-1]):
        with pytest.raises(IndexError, match="index out of range in self"):
            emb(jg.tensor(bad))
    with pytest.raises(RuntimeError, match="'indices' to have one of the following scalar types"):
        emb(jg.tensor([0.0, 1.0]))
    with pytest.raises(AssertionError, match="Padding_idx must be within num_embeddings"):
        nn.Embedding(4, 2, padding_idx=4)
    with pytest.raises(NotImplementedError, match="sparse gradients"):
        nn.Embedding(4, 2, sparse=True)
    with pytest.raises(AssertionError, match="Embeddings parameter is expected to be 2-dim"):
        nn.Embedding.from_pretrained(jg.ones(3))
    with pytest.raises(AssertionError, match="Shape of weight does not match"):
        nn.Embedding(4, 2, _weight=jg.ones(2, 4))


# -- finite differences ---------------------------------------------------------------------------
def _leaf(shape):
    return jg.tensor(RNG.standard_normal(shape), requires_grad=True)


def test_gradcheck_layer_norm_batch_norm_embedding():
    x, w, b = _leaf((3, 2, 4)), _leaf((2, 4)), _leaf((2, 4))
    assert gradcheck(lambda x, w, b: F.layer_norm(x, (2, 4), w, b), (x, w, b))
    x, w, b = _leaf((4, 3, 2)), _leaf(3), _leaf(3)

    def bn(x, w, b):  # train mode, with buffers updated on the side
        return F.batch_norm(
            x, jg.zeros(3, dtype=jg.float64), jg.ones(3, dtype=jg.float64), w, b, True
        )

    assert gradcheck(bn, (x, w, b))
    # (padding_idx and scale_grad_by_freq change the gradient on purpose: tested against NumPy)
    idx = jg.tensor([[1, 3, 1], [0, 3, 2]])
    assert gradcheck(lambda w: F.embedding(idx, w), (_leaf((5, 2)),))


# -- compiled -------------------------------------------------------------------------------------
def _bn_forward(bn):
    return lambda x: bn(x)


def test_compiled_forward_reads_running_stats_and_updates_them_each_call():
    jg.manual_seed(0)
    eager, comp = nn.BatchNorm1d(3, momentum=None), nn.BatchNorm1d(3, momentum=None)
    step = jg.compile(_bn_forward(comp), backend="interpreter")
    for i in range(3):
        x = jg.randn(5, 3) * (i + 1)
        np.testing.assert_array_equal(_np(step(x)), _np(eager(x)))
    assert step.stats.traces == 1 and comp.num_batches_tracked.item() == 3
    for name in ("running_mean", "running_var"):
        np.testing.assert_array_equal(_np(getattr(comp, name)), _np(getattr(eager, name)))
    comp.eval()
    infer = jg.compile(_bn_forward(comp), backend="interpreter")
    x = jg.randn(2, 3)
    first = _np(infer(x))
    rm, rv = _np(comp.running_mean), _np(comp.running_var)
    np.testing.assert_allclose(first, (_np(x) - rm) / np.sqrt(rv + 1e-5), rtol=1e-5, atol=1e-6)
    with jg.no_grad():  # captured state, not a constant: new values are read on the next call
        comp.running_mean.add_(1.0)
    np.testing.assert_allclose(_np(infer(x)), first - 1 / np.sqrt(rv + 1e-5), rtol=1e-5, atol=1e-5)
    assert comp.num_batches_tracked.item() == 3


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(7, 4, padding_idx=0)
        self.ln = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 3)
        self.bn = nn.BatchNorm1d(3)

    def forward(self, idx):
        h = self.ln(self.emb(idx)).mean(1)  # (N, T, 4) -> (N, 4)
        return self.bn(self.fc(h))


_train_step = _make_step  # cross-entropy of model(input) against y, backward, opt.step()


@pytest.mark.slow
def test_numba_compiled_training_step_matches_eager_with_running_stats():
    jg.manual_seed(0)
    eager, comp = _Net(), _Net()
    comp.load_state_dict(eager.state_dict())
    opt_e = optim.SGD(eager.parameters(), lr=0.1, momentum=0.9)
    opt_c = optim.SGD(comp.parameters(), lr=0.1, momentum=0.9)
    step_e = _train_step(eager, opt_e)
    step_c = jg.compile(_train_step(comp, opt_c), backend="numba", check=True)
    rng = np.random.default_rng(1)
    for _ in range(4):
        idx = jg.tensor(rng.integers(0, 7, size=(5, 3)))
        y = jg.tensor(rng.integers(0, 3, size=5))
        np.testing.assert_allclose(step_c(idx, y).item(), step_e(idx, y).item(), rtol=1e-5)
    # call 1 runs eagerly as a warm-up (it creates the optimizer's momentum buffers), calls 2-4
    # run the one compiled step
    assert step_c.stats.traces == 2 and step_c.stats.compiles == 1
    se, sc = eager.state_dict(), comp.state_dict()
    for k in se:
        np.testing.assert_allclose(_np(sc[k]), _np(se[k]), rtol=1e-5, atol=1e-6, err_msg=k)
    assert comp.bn.num_batches_tracked.item() == 4
    np.testing.assert_array_equal(_np(comp.emb.weight)[0], 0.0)  # padding row never trained


# -- PyTorch agreement (optional) -----------------------------------------------------------------
@pytest.mark.torch
def test_agrees_with_torch_outputs_grads_and_running_stats():
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal((4, 3, 5))
    for cls, tcls in ((nn.BatchNorm1d, torch.nn.BatchNorm1d), (nn.LayerNorm, torch.nn.LayerNorm)):
        arg = 3 if cls is nn.BatchNorm1d else (3, 5)
        mj, mt = cls(arg).double(), tcls(arg).double()
        for i in range(2):
            xj = jg.tensor(x + i, requires_grad=True)
            xt = torch.tensor(x + i, requires_grad=True)
            gj, gt = mj(xj), mt(xt)
            (gj * gj).sum().backward()
            (gt * gt).sum().backward()
            np.testing.assert_allclose(_np(gj), gt.detach().numpy(), atol=1e-10)
            np.testing.assert_allclose(xj.grad.numpy(), xt.grad.numpy(), atol=1e-10)
        for (name, a), b in zip(mj.state_dict().items(), mt.state_dict().values()):
            np.testing.assert_allclose(_np(a), b.numpy(), atol=1e-10, err_msg=name)
        for pj, pt in zip(mj.parameters(), mt.parameters()):
            np.testing.assert_allclose(pj.grad.numpy(), pt.grad.numpy(), atol=1e-10)
    w, idx = RNG.standard_normal((6, 3)), np.array([[0, 2, 2], [5, 0, 1]])
    for kw in ({"padding_idx": 2}, {"max_norm": 1.0, "scale_grad_by_freq": True}):
        wj, wt = jg.tensor(w, requires_grad=True), torch.tensor(w, requires_grad=True)
        oj = F.embedding(jg.tensor(idx), wj, **kw)
        ot = torch.nn.functional.embedding(torch.tensor(idx), wt, **kw)
        (oj * oj).sum().backward()
        (ot * ot).sum().backward()
        np.testing.assert_allclose(_np(oj), ot.detach().numpy(), atol=1e-12)
        np.testing.assert_allclose(wj.grad.numpy(), wt.grad.numpy(), atol=1e-12)
