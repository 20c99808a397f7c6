"""MultiheadAttention and the Transformer modules against PyTorch: torch modules' state_dicts
loaded into jitgrad ones give the same outputs, attention weights and gradients (eval mode, so
dropout is off); PyTorch's errors for bad input; a compiled training step agrees with eager."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from test_compile import _make_step

import jitgrad as jg
import jitgrad.nn as nn
import jitgrad.nn.functional as F
import jitgrad.optim as optim

torch = pytest.importorskip("torch")
# torch's note that its nested-tensor fast path is off (there is none here)
pytestmark = pytest.mark.filterwarnings("ignore:enable_nested_tensor is True:UserWarning")

DTYPES = {"float32": (jg.float32, torch.float32), "float64": (jg.float64, torch.float64)}
TOL = {"float32": {"rtol": 2e-4, "atol": 2e-5}, "float64": {"rtol": 1e-9, "atol": 1e-10}}


def _load(jg_module, torch_module):
    state = {k: jg.tensor(v.detach().numpy()) for k, v in torch_module.state_dict().items()}
    assert list(jg_module.state_dict()) == list(state)
    jg_module.load_state_dict(state)
    return jg_module.eval(), torch_module.eval()


def _inputs(arrays, jdt, tdt, grad=True):
    """The same arrays as leaf tensors of both libraries; bool arrays stay bool, no grad."""
    pairs = []
    for a in arrays:
        if a is None:
            pairs.append((None, None))
        elif a.dtype == bool:
            pairs.append((jg.tensor(a), torch.tensor(a)))
        else:
            pairs.append(
                (
                    jg.tensor(a, dtype=jdt, requires_grad=grad),
                    torch.tensor(a, dtype=tdt, requires_grad=grad),
                )
            )
    return pairs


def _close(a, b, tol, msg=""):
    b = b.detach().numpy() if hasattr(b, "detach") else b
    np.testing.assert_allclose(a.detach().numpy(), b, err_msg=msg, **tol)


def _check_grads(jm, tm, pairs, j_out, t_out, tol):
    rng = np.random.default_rng(5)
    g = rng.standard_normal(tuple(t_out.shape))
    (j_out * jg.tensor(g, dtype=j_out.dtype)).sum().backward()
    (t_out * torch.tensor(g, dtype=t_out.dtype)).sum().backward()
    for j, t in pairs:
        if t is not None and t.requires_grad:
            _close(j.grad, t.grad, tol, "input grad")
    tparams = dict(tm.named_parameters())
    for name, p in jm.named_parameters():
        _close(p.grad, tparams[name].grad, tol, name)


def _causal_bool(n):
    return np.triu(np.ones((n, n), dtype=bool), 1)


def _padding(n, s):
    kpm = np.zeros((n, s), dtype=bool)
    kpm[0, -2:] = True
    return kpm


L, S, N, E, H = 4, 5, 3, 8, 2
R = np.random.default_rng(0)
MHA_CASES = {
    # name: (constructor kwargs, (query, key, value) shapes, forward kwargs as NumPy arrays)
    "self": ({}, "self", {}),
    "per-head-weights": ({}, "self", {"average_attn_weights": False}),
    "no-weights": ({}, "self", {"need_weights": False}),
    "bool-causal-mask": ({}, "self", {"attn_mask": _causal_bool(L)}),
    "bool-mask-no-weights": ({}, "self", {"attn_mask": _causal_bool(L), "need_weights": False}),
    "float-3d-mask": ({}, "cross", {"attn_mask": R.standard_normal((N * H, L, S))}),
    "float-3d-mask-no-weights": (
        {},
        "cross",
        {"attn_mask": R.standard_normal((N * H, L, S)), "need_weights": False},
    ),
    "key-padding": ({}, "cross", {"key_padding_mask": _padding(N, S)}),
    "key-padding-and-mask": (
        {},
        "cross",
        {"key_padding_mask": _padding(N, S), "attn_mask": np.eye(L, S, dtype=bool)},
    ),
    "float-key-padding": (
        {},
        "cross",
        {"key_padding_mask": R.standard_normal((N, S)), "need_weights": False},
    ),
    "kdim-vdim": ({"kdim": 3, "vdim": 6}, "kv", {"key_padding_mask": _padding(N, S)}),
    "kdim-vdim-no-weights": ({"kdim": 3, "vdim": 6}, "kv", {"need_weights": False}),
    "bias-kv-zero-attn": (
        {"add_bias_kv": True, "add_zero_attn": True},
        "cross",
        {"key_padding_mask": _padding(N, S), "attn_mask": np.eye(L, S, dtype=bool)},
    ),
    "bias-kv-no-weights": ({"add_bias_kv": True}, "self", {"need_weights": False}),
    "no-bias": ({"bias": False}, "cross", {}),
    "batch-first": ({"batch_first": True}, "self", {"key_padding_mask": _padding(N, L)}),
    "batch-first-cross": ({"batch_first": True}, "cross", {"need_weights": False}),
    "unbatched": ({}, "unbatched", {"attn_mask": _causal_bool(L)}),
    "unbatched-key-padding": (
        {},
        "unbatched-cross",
        {"key_padding_mask": np.array([False, False, True, False, True])},
    ),
    "distinct-key-value": ({}, "kv-same", {"attn_mask": np.eye(L, S, dtype=bool)}),
    "unbatched-3d-mask": ({}, "unbatched-cross", {"attn_mask": R.standard_normal((H, L, S))}),
    "is-causal-hint": (
        {},
        "self",
        {"attn_mask": _causal_bool(L), "is_causal": True, "need_weights": False},
    ),
}


def _qkv(kind, batch_first, rng):
    if kind == "unbatched":
        x = rng.standard_normal((L, E))
        return x, None, None
    if kind == "unbatched-cross":
        return rng.standard_normal((L, E)), rng.standard_normal((S, E)), None
    lead = (lambda n: (N, n)) if batch_first else (lambda n: (n, N))
    if kind == "self":
        return rng.standard_normal((*lead(L), E)), None, None
    if kind == "cross":
        return rng.standard_normal((*lead(L), E)), rng.standard_normal((*lead(S), E)), None
    kdim, vdim = (3, 6) if kind == "kv" else (E, E)  # "kv": key and value of their own sizes
    return (
        rng.standard_normal((*lead(L), E)),
        rng.standard_normal((*lead(S), kdim)),
        rng.standard_normal((*lead(S), vdim)),
    )


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", list(MHA_CASES))
def test_multihead_attention_matches_torch(case, dtype):
    ctor, kind, fwd = MHA_CASES[case]
    jdt, tdt = DTYPES[dtype]
    torch.manual_seed(0)
    tm = torch.nn.MultiheadAttention(E, H, dropout=0.3, dtype=tdt, **ctor)
    jm, tm = _load(nn.MultiheadAttention(E, H, dropout=0.3, dtype=jdt, **ctor), tm)
    q, k, v = _qkv(kind, ctor.get("batch_first", False), np.random.default_rng(1))
    pairs = _inputs([q, k, v], jdt, tdt)
    # self-attention passes one tensor three times; cross attention one key for key and value
    (jq, tq) = pairs[0]
    jk, tk = pairs[1] if k is not None else pairs[0]
    jv, tv = pairs[2] if v is not None else (jk, tk)
    masks = {n: _inputs([a], jdt, tdt, grad=False)[0] for n, a in fwd.items() if n.endswith("mask")}
    opts = {n: a for n, a in fwd.items() if not n.endswith("mask")}
    j_out, j_w = jm(jq, jk, jv, **{n: m[0] for n, m in masks.items()}, **opts)
    t_out, t_w = tm(tq, tk, tv, **{n: m[1] for n, m in masks.items()}, **opts)
    tol = TOL[dtype]
    assert j_out.dtype == jdt and tuple(j_out.shape) == tuple(t_out.shape)
    _close(j_out, t_out, tol, "output")
    if t_w is None:
        assert j_w is None
    else:
        assert tuple(j_w.shape) == tuple(t_w.shape)
        _close(j_w, t_w, tol, "weights")
    _check_grads(jm, tm, pairs, j_out, t_out, tol)


def test_multihead_attention_parameters_and_init():
    jg.manual_seed(0)
    m = nn.MultiheadAttention(8, 2, add_bias_kv=True, kdim=3, vdim=5)
    t = torch.nn.MultiheadAttention(8, 2, add_bias_kv=True, kdim=3, vdim=5)
    assert list(m.state_dict()) == list(t.state_dict())
    for name, p in t.named_parameters():
        assert tuple(getattr(m, name.split(".")[0]).shape if "." not in name else p.shape) == (
            tuple(p.shape)
        )
    assert m.in_proj_weight is None and m.q_proj_weight.shape == (8, 8)
    assert m.k_proj_weight.shape == (8, 3) and m.v_proj_weight.shape == (8, 5)
    assert type(m.out_proj).__name__ == "NonDynamicallyQuantizableLinear"
    assert isinstance(m.out_proj, nn.Linear)
    np.testing.assert_array_equal(m.in_proj_bias.detach().numpy(), 0)
    np.testing.assert_array_equal(m.out_proj.bias.detach().numpy(), 0)
    assert np.abs(m.k_proj_weight.detach().numpy()).max() <= math.sqrt(
        6 / (8 + 3)
    )  # xavier_uniform_
    big = nn.MultiheadAttention(64, 4)
    w = big.in_proj_weight.detach().numpy()
    bound = math.sqrt(6 / (64 + 192))  # fan_in 64, fan_out 192 (the packed (3E, E) weight)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert nn.MultiheadAttention(8, 2, bias=False).out_proj.bias is None


def _layer_pair(cls, kw, dtype):
    jdt, tdt = DTYPES[dtype]
    torch.manual_seed(0)
    t = getattr(torch.nn, cls)(**kw, dtype=tdt)
    return _load(getattr(nn, cls)(**kw, dtype=jdt), t)


LAYER_CASES = {
    "post-norm": {},
    "norm-first-gelu": {"norm_first": True, "activation": "gelu"},
    "batch-first": {"batch_first": True},
    "no-bias": {"bias": False, "activation": F.gelu},
}


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_encoder_stack_matches_torch(case, dtype):
    kw = LAYER_CASES[case]
    tkw = {**kw, "activation": torch.nn.functional.gelu} if kw.get("activation") is F.gelu else kw
    jdt, tdt = DTYPES[dtype]
    torch.manual_seed(0)
    t_layer = torch.nn.TransformerEncoderLayer(8, 2, 16, dtype=tdt, **tkw)
    t = torch.nn.TransformerEncoder(t_layer, 2, norm=torch.nn.LayerNorm(8, dtype=tdt))
    j_layer = nn.TransformerEncoderLayer(8, 2, 16, dtype=jdt, **kw)
    jm, t = _load(nn.TransformerEncoder(j_layer, 2, norm=nn.LayerNorm(8, dtype=jdt)), t)
    batch_first = kw.get("batch_first", False)
    x = np.random.default_rng(2).standard_normal((3, 5, 8) if batch_first else (5, 3, 8))
    pairs = _inputs([x], jdt, tdt)
    mask, kpm = _causal_bool(5), _padding(3, 5)
    if case in ("norm-first-gelu", "no-bias"):  # float masks: -inf where bool ones say True
        mask, kpm = (np.where(m, -np.inf, 0.0) for m in (mask, kpm))
    (j_mask, t_mask), (j_kpm, t_kpm) = _inputs([mask, kpm], jdt, tdt, grad=False)
    j_out = jm(pairs[0][0], mask=j_mask, src_key_padding_mask=j_kpm)
    t_out = t(pairs[0][1], mask=t_mask, src_key_padding_mask=t_kpm)
    _close(j_out, t_out, TOL[dtype], "encoder output")
    _check_grads(jm, t, pairs[:1], j_out, t_out, TOL[dtype])


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", ["post-norm", "norm-first-gelu", "batch-first"])
def test_transformer_matches_torch(case, dtype):
    kw = LAYER_CASES[case]
    jdt, tdt = DTYPES[dtype]
    torch.manual_seed(0)
    args = {"d_model": 8, "nhead": 2, "num_encoder_layers": 2, "num_decoder_layers": 1}
    args["dim_feedforward"] = 16
    t = torch.nn.Transformer(**args, **kw, dtype=tdt)
    jm, t = _load(nn.Transformer(**args, **kw, dtype=jdt), t)
    batch_first = kw.get("batch_first", False)
    rng = np.random.default_rng(3)
    src = rng.standard_normal((2, 5, 8) if batch_first else (5, 2, 8))
    tgt = rng.standard_normal((2, 4, 8) if batch_first else (4, 2, 8))
    pairs = _inputs([src, tgt], jdt, tdt)
    tgt_mask = torch.nn.Transformer.generate_square_subsequent_mask(4, dtype=tdt)
    j_mask = nn.Transformer.generate_square_subsequent_mask(4, dtype=jdt)
    np.testing.assert_array_equal(j_mask.numpy(), tgt_mask.numpy())
    mem_kpm = _inputs([_padding(2, 5)], jdt, tdt)[0]
    opts = {"tgt_mask": (j_mask, tgt_mask), "memory_key_padding_mask": mem_kpm}
    opts["src_key_padding_mask"] = mem_kpm
    j_out = jm(pairs[0][0], pairs[1][0], **{k: v[0] for k, v in opts.items()})
    t_out = t(pairs[0][1], pairs[1][1], **{k: v[1] for k, v in opts.items()})
    _close(j_out, t_out, TOL[dtype], "transformer output")
    _check_grads(jm, t, pairs, j_out, t_out, TOL[dtype])


def test_decoder_layer_matches_torch_with_bool_masks():
    jm, t = _layer_pair("TransformerDecoderLayer", {"d_model": 8, "nhead": 4}, "float64")
    rng = np.random.default_rng(4)
    pairs = _inputs(
        [rng.standard_normal((4, 2, 8)), rng.standard_normal((6, 2, 8))], *DTYPES["float64"]
    )
    masks = _inputs([_causal_bool(4), _padding(2, 4), np.eye(4, 6, dtype=bool)], None, None)
    names = ["tgt_mask", "tgt_key_padding_mask", "memory_mask"]
    j_out = jm(pairs[0][0], pairs[1][0], **{n: m[0] for n, m in zip(names, masks)})
    t_out = t(pairs[0][1], pairs[1][1], **{n: m[1] for n, m in zip(names, masks)})
    _close(j_out, t_out, TOL["float64"])
    _check_grads(jm, t, pairs, j_out, t_out, TOL["float64"])


def test_transformer_init_and_layer_copies():
    jg.manual_seed(0)
    m = nn.Transformer(16, 2, 2, 2, 32)
    t = torch.nn.Transformer(16, 2, 2, 2, 32)
    assert list(m.state_dict()) == list(t.state_dict())
    shapes = {k: tuple(v.shape) for k, v in t.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == shapes
    for name, p in m.named_parameters():
        if p.ndim > 1:  # xavier_uniform_ everywhere
            fan_out, fan_in = p.shape
            assert np.abs(p.detach().numpy()).max() <= math.sqrt(6 / (fan_in + fan_out)), name
    # TransformerEncoder deep-copies its layer: equal starting values, separate parameters
    layer = nn.TransformerEncoderLayer(8, 2, 16)
    enc = nn.TransformerEncoder(layer, 3, enable_nested_tensor=False)
    w = [enc.layers[i].linear1.weight for i in range(3)]
    assert w[0] is not w[1] and w[0] is not layer.linear1.weight
    np.testing.assert_array_equal(w[0].detach().numpy(), layer.linear1.weight.detach().numpy())
    np.testing.assert_array_equal(w[2].detach().numpy(), layer.linear1.weight.detach().numpy())
    assert len(list(enc.parameters())) == 3 * len(list(layer.parameters()))
    assert nn.TransformerEncoderLayer(8, 2).linear1.weight.shape == (2048, 8)
    assert nn.TransformerEncoderLayer(8, 2).dropout.p == 0.1


def _raises(exc, match, fn, *args, **kwargs):
    with pytest.raises(exc, match=match):
        fn(*args, **kwargs)


def test_bad_input_gets_torchs_errors():
    m = nn.MultiheadAttention(8, 2)
    x = jg.randn(4, 3, 8)
    _raises(AssertionError, "embed_dim must be divisible by num_heads", nn.MultiheadAttention, 8, 3)
    with pytest.raises(AssertionError):
        torch.nn.MultiheadAttention(8, 3)
    _raises(
        ValueError, "embed_dim and num_heads must be greater than 0", nn.MultiheadAttention, 0, 1
    )
    _raises(
        AssertionError,
        "was expecting embedding dimension of 8, but got 6",
        m,
        *[jg.randn(4, 3, 6)] * 3,
    )
    _raises(
        RuntimeError,
        "mat1 and mat2 shapes cannot be multiplied",
        m,
        x,
        jg.randn(5, 3, 6),
        jg.randn(5, 3, 6),
    )
    _raises(AssertionError, "key shape .* does not match value shape", m, x, x, jg.randn(5, 3, 8))
    _raises(
        AssertionError, "expected `key` and `value` to be 3-D", m, x, jg.randn(4, 8), jg.randn(4, 8)
    )
    _raises(AssertionError, "query should be unbatched 2D or batched 3D", m, *[jg.randn(8)] * 3)
    bad2d = jg.zeros(4, 5, dtype=jg.bool)
    _raises(
        RuntimeError,
        r"The shape of the 2D attn_mask is .*\[4, 5\].*, but should be \(4, 4\)",
        m,
        x,
        x,
        x,
        attn_mask=bad2d,
    )
    bad3d = jg.zeros(2, 4, 4, dtype=jg.bool)
    _raises(
        RuntimeError,
        r"The shape of the 3D attn_mask .* should be \(6, 4, 4\)",
        m,
        x,
        x,
        x,
        attn_mask=bad3d,
    )
    _raises(
        AssertionError,
        "expected `attn_mask` to be `None`, 2-D or 3-D",
        m,
        x,
        x,
        x,
        attn_mask=jg.zeros(1, 1, 4, 4),
    )
    _raises(
        AssertionError,
        "only bool and floating types of attn_mask are supported",
        m,
        x,
        x,
        x,
        attn_mask=jg.zeros(4, 4, dtype=jg.int64),
    )
    kpm = jg.zeros(4, 3, dtype=jg.bool)
    _raises(
        AssertionError,
        r"expecting key_padding_mask shape of \(3, 4\)",
        m,
        x,
        x,
        x,
        key_padding_mask=kpm,
    )
    batch_major = jg.randn(3, 4, 8)  # (N, L, E) given to a batch_first=False module
    with pytest.raises(AssertionError, match="look batch-major, so build MultiheadAttention with"):
        m(*[batch_major] * 3, key_padding_mask=jg.zeros(3, 4, dtype=jg.bool))
    _raises(
        RuntimeError, "Need attn_mask if specifying the is_causal hint", m, x, x, x, is_causal=True
    )
    with pytest.warns(UserWarning, match="Support for mismatched key_padding_mask and attn_mask"):
        m(x, x, x, key_padding_mask=jg.zeros(3, 4, dtype=jg.bool), attn_mask=jg.zeros(4, 4))
    _raises(
        RuntimeError,
        "activation should be relu/gelu, not tanh",
        nn.TransformerEncoderLayer,
        8,
        2,
        activation="tanh",
    )
    tr = nn.Transformer(8, 2, 1, 1, 16)
    _raises(
        RuntimeError,
        "the batch number of src and tgt must be equal",
        tr,
        jg.randn(5, 2, 8),
        jg.randn(5, 3, 8),
    )
    _raises(
        RuntimeError,
        "the feature number of src and tgt must be equal to d_model",
        tr,
        jg.randn(5, 2, 8),
        jg.randn(5, 2, 4),
    )
    trb = nn.Transformer(8, 2, 1, 1, 16, batch_first=True)
    _raises(RuntimeError, "batch_first=True", trb, jg.randn(2, 5, 8), jg.randn(3, 5, 8))


def test_torch_agrees_on_the_error_types():
    """The types and leading wording checked above are PyTorch's own."""
    m = torch.nn.MultiheadAttention(8, 2)
    x = torch.randn(4, 3, 8)
    for call, exc, match in [
        (
            lambda: m(*[torch.randn(4, 3, 6)] * 3),
            AssertionError,
            "was expecting embedding dimension",
        ),
        (
            lambda: m(x, x, x, attn_mask=torch.zeros(4, 5, dtype=torch.bool)),
            RuntimeError,
            "The shape of the 2D attn_mask",
        ),
        (
            lambda: m(x, x, x, attn_mask=torch.zeros(4, 4, dtype=torch.int64)),
            AssertionError,
            "only bool and floating",
        ),
        (lambda: m(x, x, x, is_causal=True), RuntimeError, "Need attn_mask"),
        (
            lambda: torch.nn.TransformerEncoderLayer(8, 2, activation="tanh"),
            RuntimeError,
            "activation should be relu/gelu",
        ),
    ]:
        with pytest.raises(exc, match=match):
            call()


def _tiny_encoder_model():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)  # need_weights' path
            self.head = nn.Linear(8, 3)
            self.padding = jg.tensor(_padding(4, 5))
            self.causal = jg.tensor(_causal_bool(5))

        def forward(self, x):
            out = self.encoder(x, mask=self.causal, src_key_padding_mask=self.padding)
            out, weights = self.attn(out, out, out, key_padding_mask=self.padding)
            out = out + weights.sum(-1, keepdim=True)
            return self.head(out.mean(1))

    return Model()


@pytest.mark.filterwarnings("error")
def test_compiled_encoder_training_step_agrees_with_eager():
    jg.manual_seed(0)
    eager = _tiny_encoder_model()
    model = copy.deepcopy(eager)
    rng = np.random.default_rng(0)
    x = jg.tensor(rng.standard_normal((4, 5, 8)).astype(np.float32))
    y = jg.tensor(rng.integers(0, 3, 4))
    # NOTE: SGD, not Adam: the key projection's bias has a zero gradient in exact arithmetic
    # (softmax ignores a shift shared by a row's scores), and Adam would scale its rounding noise
    # up to lr-sized steps that differ between any two summation orders
    eager_step = _make_step(eager, optim.SGD(eager.parameters(), lr=0.1, momentum=0.9))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step = jg.compile(_make_step(model, opt), backend="numba")
    jg.manual_seed(1)  # the dropout masks (training mode): the same draws in both runs
    eager_losses = [eager_step(x, y).item() for _ in range(3)]
    jg.manual_seed(1)
    losses = [step(x, y).item() for _ in range(3)]
    # the first call creates the optimizer state and traces again with it; the third runs compiled
    assert step.stats.traces == 2 and step.stats.cache_hits == 1, step.stats
    np.testing.assert_allclose(losses, eager_losses, rtol=1e-5, atol=1e-6)
    state = model.state_dict()
    for name, value in eager.state_dict().items():
        np.testing.assert_allclose(
            state[name].detach().numpy(), value.detach().numpy(), rtol=1e-4, atol=1e-5, err_msg=name
        )


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy's note on the all -inf rows
def test_fully_padded_sequence_gives_torchs_values():
    """A sequence whose keys are all padding: NaN with need_weights (a softmax of -inf
    everywhere), zeros without (scaled_dot_product_attention), as PyTorch gives."""
    torch.manual_seed(0)
    jm, tm = _load(nn.MultiheadAttention(4, 2), torch.nn.MultiheadAttention(4, 2))
    x = np.random.default_rng(0).standard_normal((3, 2, 4)).astype(np.float32)
    kpm = np.array([[True] * 3, [False] * 3])
    for need_weights in (True, False):
        t_out = tm(
            *[torch.tensor(x)] * 3, key_padding_mask=torch.tensor(kpm), need_weights=need_weights
        )
        j_out = jm(*[jg.tensor(x)] * 3, key_padding_mask=jg.tensor(kpm), need_weights=need_weights)
        _close(j_out[0], t_out[0], TOL["float32"])
        assert np.isnan(j_out[0].detach().numpy()[:, 0]).all() == need_weights
