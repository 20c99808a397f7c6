"""Recurrent layers and packed sequences against PyTorch: torch modules' state_dicts load into
jitgrad's, and outputs, final states and the gradients of every parameter and of the input
agree; PyTorch's errors for bad input; a compiled LSTM language-model step agrees with eager."""

from __future__ import annotations

import warnings
from functools import partial

import numpy as np
import pytest

import jitgrad as jg
import jitgrad.nn.functional as JF
from jitgrad import nn, optim
from jitgrad.nn.utils import rnn as jrnn

torch = pytest.importorskip("torch")
from torch.nn.utils import rnn as trnn  # noqa: E402

# PyTorch warns that its oneDNN path lacks projections; not about the results compared here.
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections:UserWarning")

DTYPES = {"float32": (torch.float32, 2e-5), "float64": (torch.float64, 1e-10)}


def arr(t) -> np.ndarray:
    return np.array(t.detach().numpy())


def as_jg(t: torch.Tensor, requires_grad: bool = False) -> jg.Tensor:
    return jg.tensor(t.detach().numpy().copy(), requires_grad=requires_grad)


def twin(tmod, jmod):
    """Load ``tmod``'s state_dict into ``jmod`` (the keys and shapes must already agree)."""
    tstate = tmod.state_dict()
    jstate = jmod.state_dict()
    assert list(tstate) == list(jstate)
    assert [tuple(v.shape) for v in tstate.values()] == [tuple(v.shape) for v in jstate.values()]
    jmod.load_state_dict({k: as_jg(v) for k, v in tstate.items()})
    return jmod


def close(a, b, tol, what=""):
    np.testing.assert_allclose(arr(a), b.detach().numpy(), rtol=tol, atol=tol, err_msg=what)


def flat_states(h):
    return list(h) if isinstance(h, tuple) else [h]


def loss_of(out, states, data=lambda o: o):
    """A loss that weights every output and state element differently."""
    terms = [data(out)] + states
    return sum((t * t).sum() * (k + 1) + t.sum() for k, t in enumerate(terms))


def check_module(tmod, jmod, x, hx=None, tol=1e-5, packed=None):
    """Forward and backward of both modules; ``packed``: (lengths, enforce_sorted) packs the
    padded ``x`` first (on both sides, so the packing's own gradient is covered too)."""
    tx = x.clone().requires_grad_(True)
    jx = as_jg(x, requires_grad=True)
    thx = None if hx is None else tuple(h.clone().requires_grad_(True) for h in hx)
    jhx = None if hx is None else tuple(as_jg(h, requires_grad=True) for h in thx)
    tin, jin = tx, jx
    if packed is not None:
        lengths, enforce_sorted = packed
        bf = tmod.batch_first
        tin = trnn.pack_padded_sequence(tx, lengths, bf, enforce_sorted=enforce_sorted)
        jin = jrnn.pack_padded_sequence(jx, lengths, bf, enforce_sorted=enforce_sorted)
        close(jin.data, tin.data, 0, "packed input")
    targ = thx if thx is None or len(thx) == 2 else thx[0]
    jarg = jhx if jhx is None or len(jhx) == 2 else jhx[0]
    tout, th = tmod(tin, targ)
    jout, jh = jmod(jin, jarg)
    if packed is not None:
        assert isinstance(jout, jrnn.PackedSequence)
        assert jout.batch_sizes.tolist() == tout.batch_sizes.tolist()
        close(jout.data, tout.data, tol, "output")
        tp, tl = trnn.pad_packed_sequence(tout, tmod.batch_first)
        jp, jl = jrnn.pad_packed_sequence(jout, jmod.batch_first)
        assert jl.tolist() == tl.tolist()
        close(jp, tp, tol, "padded output")
    else:
        close(jout, tout, tol, "output")
    tstates, jstates = flat_states(th), flat_states(jh)
    assert len(tstates) == len(jstates)
    for k, (a, b) in enumerate(zip(jstates, tstates)):
        close(a, b, tol, f"state {k}")

    def data(o):
        return o.data if packed is not None else o

    loss_of(tout, tstates, data).backward()
    loss_of(jout, jstates, data).backward()
    close(jx.grad, tx.grad, tol, "input grad")
    for a, b in zip(jhx or (), thx or ()):
        close(a.grad, b.grad, tol, "initial state grad")
    for (name, p), (jname, q) in zip(tmod.named_parameters(), jmod.named_parameters()):
        assert name == jname
        close(q.grad, p.grad, tol, name)


def build(cls_name, dtype, *args, **kwargs):
    tmod = getattr(torch.nn, cls_name)(*args, **kwargs).to(dtype)
    jdt = jg.float64 if dtype == torch.float64 else jg.float32
    jmod = getattr(nn, cls_name)(*args, **kwargs, dtype=jdt)
    return tmod, twin(tmod, jmod)


# name, class, constructor kwargs, with an initial state
MODULE_CASES = [
    ("rnn_tanh_h0", "RNN", {}, True),
    ("rnn_relu_2l_bi_bf", "RNN", dict(nonlinearity="relu", num_layers=2, bidirectional=True,
                                      batch_first=True), False),
    ("lstm_2l_bi_proj", "LSTM", dict(num_layers=2, bidirectional=True, proj_size=2), True),
    ("lstm_bf_nobias", "LSTM", dict(batch_first=True, bias=False), True),
    ("gru_2l_bi", "GRU", dict(num_layers=2, bidirectional=True), True),
    ("gru_bf", "GRU", dict(batch_first=True), False),
]  # fmt: skip


def initial_state(cls_name, kwargs, batch, dtype, unbatched=False):
    n = kwargs.get("num_layers", 1) * (2 if kwargs.get("bidirectional") else 1)
    h = kwargs.get("proj_size") or 3
    shape = (n, h) if unbatched else (n, batch, h)
    cshape = (n, 3) if unbatched else (n, batch, 3)
    if cls_name == "LSTM":
        return (torch.randn(*shape, dtype=dtype), torch.randn(*cshape, dtype=dtype))
    return (torch.randn(*shape, dtype=dtype),)


@pytest.mark.parametrize("dt", list(DTYPES))
@pytest.mark.parametrize("case", MODULE_CASES, ids=[c[0] for c in MODULE_CASES])
def test_module_matches_torch_padded_packed_and_unbatched(case, dt):
    _, cls_name, kwargs, with_h0 = case
    dtype, tol = DTYPES[dt]
    torch.manual_seed(0)
    tmod, jmod = build(cls_name, dtype, 4, 3, **kwargs)
    seq, batch = 5, 3
    bf = kwargs.get("batch_first", False)
    x = torch.randn(*((batch, seq) if bf else (seq, batch)), 4, dtype=dtype)
    hx = initial_state(cls_name, kwargs, batch, dtype) if with_h0 else None
    check_module(tmod, jmod, x, hx, tol)
    # packed: sorted lengths, and unsorted ones (hx follows the caller's batch order)
    for lengths, enforce in (([5, 3, 2], True), ([2, 5, 4], False)):
        for p in (*tmod.parameters(), *jmod.parameters()):
            p.grad = None
        check_module(tmod, jmod, x, hx, tol, packed=(lengths, enforce))
    # one unbatched sequence (seq, feature): the batch dim is added and removed again
    for p in (*tmod.parameters(), *jmod.parameters()):
        p.grad = None
    hx1 = initial_state(cls_name, kwargs, 1, dtype, unbatched=True) if with_h0 else None
    check_module(tmod, jmod, torch.randn(seq, 4, dtype=dtype), hx1, tol)


@pytest.mark.parametrize("dt", list(DTYPES))
@pytest.mark.parametrize(
    "cls_name, kwargs",
    [("RNNCell", {}), ("RNNCell", dict(nonlinearity="relu", bias=False)), ("LSTMCell", {}),
     ("GRUCell", {}), ("GRUCell", dict(bias=False))],
)  # fmt: skip
def test_cells_match_torch(cls_name, kwargs, dt):
    dtype, tol = DTYPES[dt]
    torch.manual_seed(1)
    tcell, jcell = build(cls_name, dtype, 4, 3, **kwargs)
    lstm = cls_name == "LSTMCell"
    for shape in ((2, 4), (4,)):
        for with_hx in (False, True):
            x = torch.randn(*shape, dtype=dtype, requires_grad=True)
            jx = as_jg(x, requires_grad=True)
            hshape = shape[:-1] + (3,)
            hx = [torch.randn(*hshape, dtype=dtype, requires_grad=True) for _ in range(1 + lstm)]
            jhx = [as_jg(h, requires_grad=True) for h in hx]
            targ = None if not with_hx else (tuple(hx) if lstm else hx[0])
            jarg = None if not with_hx else (tuple(jhx) if lstm else jhx[0])
            tout, jout = flat_states(tcell(x, targ)), flat_states(jcell(jx, jarg))
            for a, b in zip(jout, tout):
                assert tuple(a.shape) == tuple(b.shape)
                close(a, b, tol)
            loss_of(tout[0], tout[1:]).backward()
            loss_of(jout[0], jout[1:]).backward()
            close(jx.grad, x.grad, tol, "input grad")
            if with_hx:
                for a, b in zip(jhx, hx):
                    close(a.grad, b.grad, tol, "hx grad")
            for (name, p), (_, q) in zip(tcell.named_parameters(), jcell.named_parameters()):
                close(q.grad, p.grad, tol, name)
                p.grad = q.grad = None
    assert repr(jcell) == repr(tcell)


def test_constructor_names_defaults_init_and_repr_follow_torch():
    for cls_name, args, kwargs in [
        ("RNN", (4, 3, 2, "relu"), dict(batch_first=True, dropout=0.5)),
        ("LSTM", (4, 6), dict(num_layers=2, bidirectional=True, proj_size=2, bias=False)),
        ("GRU", (4, 3), dict(num_layers=3)),
    ]:
        tmod = getattr(torch.nn, cls_name)(*args, **kwargs)
        jmod = getattr(nn, cls_name)(*args, **kwargs)
        assert repr(jmod) == repr(tmod)
        assert list(jmod.state_dict()) == list(tmod.state_dict())
        assert jmod._flat_weights_names == tmod._flat_weights_names
        for k, v in tmod.state_dict().items():
            assert tuple(jmod.state_dict()[k].shape) == tuple(v.shape), k
        assert [len(w) for w in jmod.all_weights] == [len(w) for w in tmod.all_weights]
        for attr in ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
                     "bidirectional", "proj_size", "mode"):  # fmt: skip
            assert getattr(jmod, attr) == getattr(tmod, attr), attr
        bound = 1 / np.sqrt(jmod.hidden_size)
        values = np.concatenate([arr(p).ravel() for p in jmod.parameters()])
        assert np.abs(values).max() <= bound and np.abs(values).max() > 0.8 * bound
    assert nn.RNN(4, 3, nonlinearity="relu").nonlinearity == "relu"
    cell = nn.LSTMCell(4, 3)
    assert [n for n, _ in cell.named_parameters()] == [
        n for n, _ in torch.nn.LSTMCell(4, 3).named_parameters()
    ]
    assert nn.GRUCell(4, 3, bias=False).bias_ih is None


def test_dropout_between_layers_in_training_only():
    torch.manual_seed(2)
    tmod, jmod = build("LSTM", torch.float64, 4, 3, num_layers=2, dropout=0.5)
    x = torch.randn(6, 2, 4, dtype=torch.float64)
    tmod.eval()
    jmod.eval()
    check_module(tmod, jmod, x, tol=1e-10)
    jmod.train()
    jg.manual_seed(0)
    out_a, _ = jmod(as_jg(x))
    out_b, _ = jmod(as_jg(x))
    assert not np.allclose(arr(out_a), arr(out_b))  # fresh masks each call
    # one layer: no layer below the last, so dropout changes nothing (PyTorch warns)
    with pytest.warns(UserWarning, match="dropout option adds dropout after all but last"):
        single = nn.GRU(4, 3, dropout=0.5, dtype=jg.float64)
    a, _ = single(as_jg(x))
    single.eval()
    b, _ = single(as_jg(x))
    np.testing.assert_array_equal(arr(a), arr(b))


def test_packing_utilities_match_torch_with_gradients():
    torch.manual_seed(3)
    seqs = [torch.randn(n, 2, dtype=torch.float64, requires_grad=True) for n in (2, 4, 1)]
    jseqs = [as_jg(s, requires_grad=True) for s in seqs]
    for bf in (False, True):
        for side in ("right", "left"):
            t = trnn.pad_sequence(seqs, batch_first=bf, padding_value=-1.0, padding_side=side)
            j = jrnn.pad_sequence(jseqs, batch_first=bf, padding_value=-1.0, padding_side=side)
            close(j, t, 0, f"pad_sequence {bf} {side}")
    tp = trnn.pack_sequence(seqs, enforce_sorted=False)
    jp = jrnn.pack_sequence(jseqs, enforce_sorted=False)
    close(jp.data, tp.data, 0)
    for name in ("batch_sizes", "sorted_indices", "unsorted_indices"):
        assert getattr(jp, name).tolist() == getattr(tp, name).tolist(), name
    assert jp.batch_sizes.dtype == jg.int64
    t, tl = trnn.pad_packed_sequence(tp, batch_first=True, padding_value=7.0, total_length=6)
    j, jl = jrnn.pad_packed_sequence(jp, batch_first=True, padding_value=7.0, total_length=6)
    close(j, t, 0)
    assert jl.tolist() == tl.tolist() and jl.dtype == jg.int64
    w = torch.arange(t.numel(), dtype=torch.float64).reshape(t.shape)
    (t * w).sum().backward()
    (j * as_jg(w)).sum().backward()
    for a, b in zip(jseqs, seqs):
        close(a.grad, b.grad, 0)
    for a, b in zip(jrnn.unpack_sequence(jp), trnn.unpack_sequence(tp)):
        close(a, b, 0)
    # lengths given as a tensor; a padded tensor treated as a batch of rows
    x = torch.randn(4, 3, 2)
    tp = trnn.pack_padded_sequence(x, torch.tensor([4, 2, 1]))
    jp = jrnn.pack_padded_sequence(as_jg(x), jg.tensor([4, 2, 1]))
    close(jp.data, tp.data, 0)
    assert jp.sorted_indices is None and jp.unsorted_indices is None
    close(jrnn.pad_sequence(as_jg(x)), trnn.pad_sequence(x), 0)
    assert repr(jp).startswith("PackedSequence(data=")
    assert jp.double().data.dtype == jg.float64


def raised(fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - the type is what is compared
        return exc
    return None


def same_error(tfn, jfn):
    """Both raise the same exception type, and jitgrad's message starts with PyTorch's (up to
    the library name in dtype names)."""
    texc, jexc = raised(tfn), raised(jfn)
    assert texc is not None and jexc is not None, (texc, jexc)
    assert type(jexc) is type(texc), (texc, jexc)
    tmsg = str(texc).replace("torch.", "jitgrad.")
    assert str(jexc).startswith(tmsg.rstrip(".")), (str(texc), str(jexc))


def test_bad_input_raises_torchs_errors():
    torch.manual_seed(4)
    t_l, j_l = build("LSTM", torch.float32, 4, 3, num_layers=2)
    t_g, j_g = build("GRU", torch.float32, 4, 3, num_layers=2)
    t_r, j_r = build("RNN", torch.float32, 4, 3, batch_first=True)

    def both(tm, jm, x, hx=None):
        jx = as_jg(x)
        jhx = None if hx is None else (
            tuple(as_jg(h) for h in hx) if isinstance(hx, tuple) else as_jg(hx))  # fmt: skip
        same_error(lambda: tm(x, hx), lambda: jm(jx, jhx))

    r = torch.randn
    both(t_l, j_l, r(5, 2, 4, 1))  # rank
    both(t_r, j_r, r(5, 2, 4, 1))
    both(t_l, j_l, r(5, 2, 5))  # feature size
    both(t_r, j_r, r(2, 4, 5))  # batch_first layout mistaken: (seq, batch, feature) given
    both(t_l, j_l, r(5, 2, 4).double())  # dtype
    both(t_l, j_l, r(5, 2, 4), (r(2, 2, 3), r(2, 1, 3)))  # c0 batch
    both(t_l, j_l, r(5, 2, 4), (r(2, 3, 3), r(2, 2, 3)))  # h0 batch
    both(t_l, j_l, r(5, 2, 4), (r(2, 3), r(2, 3)))  # h0 rank
    both(t_g, j_g, r(5, 2, 4), r(2, 3, 3))  # h0 batch
    both(t_g, j_g, r(5, 2, 4), r(1, 2, 3))  # h0 layers
    both(t_g, j_g, r(5, 4), r(2, 1, 3))  # unbatched input, batched h0
    both(t_g, j_g, r(5, 2, 4), r(2, 3))
    both(t_l, j_l, r(0, 2, 4))  # no time steps
    both(t_r, j_r, r(2, 0, 4))
    tp, jp = trnn.pack_sequence([r(3, 5)]), jrnn.pack_sequence([as_jg(r(3, 5))])
    same_error(lambda: t_g(tp), lambda: j_g(jp))
    # constructors
    for cls_name, args, kwargs in [
        ("GRU", (4, 3), dict(proj_size=2)),
        ("RNN", (4, 3), dict(nonlinearity="sigmoid")),
        ("LSTM", (4, 3), dict(proj_size=3)),
        ("LSTM", (4, 3), dict(dropout=1.5)),
        ("LSTM", (4, 0), {}),
        ("LSTM", (4, 3.0), {}),
        ("LSTM", (4, 3), dict(num_layers=0)),
        ("LSTM", (4, 3), dict(bias=1)),
    ]:
        same_error(partial(getattr(torch.nn, cls_name), *args, **kwargs),
                   partial(getattr(nn, cls_name), *args, **kwargs))  # fmt: skip
    # cells
    for cls_name, x, hx in [
        ("RNNCell", r(2, 5), None),
        ("RNNCell", r(2, 4), r(3, 3)),
        ("RNNCell", r(2, 4), r(2, 2)),
        ("RNNCell", r(2, 2, 4), None),
        ("GRUCell", r(2, 4), r(2, 3, 1)),
        ("LSTMCell", r(2, 4), (r(2, 3), r(1, 3))),
    ]:
        tc, jc = build(cls_name, torch.float32, 4, 3)
        jhx = None if hx is None else (
            tuple(as_jg(h) for h in hx) if isinstance(hx, tuple) else as_jg(hx))  # fmt: skip
        same_error(partial(tc, x, hx), partial(jc, as_jg(x), jhx))
    # packing
    x = r(4, 3, 2)
    for lengths in ([2, 3, 1], [3, 2, 0], [3, 2]):
        same_error(partial(trnn.pack_padded_sequence, x, lengths),
                   partial(jrnn.pack_padded_sequence, as_jg(x), lengths))  # fmt: skip
    for args in ((r(3, 0, 2), []), (r(0, 2, 2), [1, 1]), (r(3), [3])):
        same_error(partial(trnn.pack_padded_sequence, *args),
                   partial(jrnn.pack_padded_sequence, as_jg(args[0]), args[1]))  # fmt: skip
    tp = trnn.pack_padded_sequence(x, [3, 2, 1])
    jp = jrnn.pack_padded_sequence(as_jg(x), [3, 2, 1])
    same_error(lambda: trnn.pad_packed_sequence(tp, total_length=2),
               lambda: jrnn.pad_packed_sequence(jp, total_length=2))  # fmt: skip
    same_error(lambda: trnn.pad_sequence([r(2, 3)], padding_side="up"),
               lambda: jrnn.pad_sequence([as_jg(r(2, 3))], padding_side="up"))  # fmt: skip
    same_error(lambda: trnn.pad_sequence([]), lambda: jrnn.pad_sequence([]))
    with pytest.raises(RuntimeError, match="pad_sequence"):
        jrnn.pad_sequence([jg.zeros(2, 3), jg.zeros(1, 4)])
    with pytest.raises(RuntimeError, match="exceeds the padded sequence length"):
        jrnn.pack_padded_sequence(as_jg(x), [5, 2, 1])


class _LanguageModel(nn.Module):
    def __init__(self, vocab, hidden):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.lstm = nn.LSTM(hidden, hidden, num_layers=2)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x):
        out, _ = self.lstm(self.embed(x))
        return self.head(out).reshape(-1, self.head.out_features)


def _train_lm(compiled: bool, steps: int = 3):
    vocab, hidden, seq, batch = 11, 8, 5, 3
    jg.manual_seed(0)
    model = _LanguageModel(vocab, hidden)
    opt = optim.Adam(model.parameters(), lr=0.01)

    def step(x, y):
        opt.zero_grad()
        loss = JF.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    if compiled:
        step = jg.compile(step, backend="numba")
    rng = np.random.default_rng(0)
    xs = rng.integers(0, vocab, (steps, seq, batch))
    ys = rng.integers(0, vocab, (steps, seq * batch))
    losses = [step(jg.from_numpy(x), jg.from_numpy(y)).item() for x, y in zip(xs, ys)]
    return model, losses, step


@pytest.fixture
def _cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("JITGRAD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "jg-cache"))


@pytest.mark.filterwarnings("error")
def test_compiled_lstm_language_model_step_matches_eager(_cache_dir):
    eager_model, eager_losses, _ = _train_lm(compiled=False)
    model, losses, step = _train_lm(compiled=True)
    assert step.stats.cache_hits >= 1, step.stats  # the last step ran the compiled code
    np.testing.assert_allclose(losses, eager_losses, rtol=1e-5)
    eager_state = eager_model.state_dict()
    for name, value in model.state_dict().items():
        np.testing.assert_allclose(
            arr(value), arr(eager_state[name]), rtol=1e-5, atol=1e-6, err_msg=name
        )


def test_failed_forward_leaves_parameters_and_grads_alone():
    jmod = nn.LSTM(4, 3)
    before = {k: arr(v) for k, v in jmod.state_dict().items()}
    with pytest.raises(RuntimeError):
        jmod(jg.randn(5, 2, 4), (jg.zeros(1, 2, 3), jg.zeros(1, 3, 3)))
    for k, v in jmod.state_dict().items():
        np.testing.assert_array_equal(arr(v), before[k])
        assert getattr(jmod, k).grad is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn.LSTM(4, 3, num_layers=2, dropout=0.2)  # no warning with a layer below the last


@pytest.mark.filterwarnings("error")
def test_compiled_step_on_packed_sequences_matches_eager():
    # packing inside the step: the lengths are host values, fixed for the trace
    def train(compiled):
        jg.manual_seed(5)
        model = nn.GRU(4, 3, bidirectional=True, dtype=jg.float64)
        opt = optim.SGD(model.parameters(), lr=0.1)

        def step(x):
            opt.zero_grad()
            packed = jrnn.pack_padded_sequence(x, [5, 2, 3], enforce_sorted=False)
            out, h = model(packed)
            padded, _ = jrnn.pad_packed_sequence(out, padding_value=1.0)
            loss = (padded * padded).sum() + (h * h).sum()
            loss.backward()
            opt.step()
            return loss

        if compiled:
            step = jg.compile(step, backend="interpreter")
        x = jg.randn(5, 3, 4, dtype=jg.float64)
        return [step(x).item() for _ in range(3)], model, step

    eager_losses, eager_model, _ = train(False)
    losses, model, step = train(True)
    assert step.stats.cache_hits == 2, step.stats
    np.testing.assert_allclose(losses, eager_losses, rtol=1e-12)
    for (k, a), b in zip(model.state_dict().items(), eager_model.state_dict().values()):
        np.testing.assert_allclose(arr(a), arr(b), rtol=1e-12, err_msg=k)
