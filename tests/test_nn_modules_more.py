"""The remaining nn modules against PyTorch: the same constructor call in both libraries, the
torch module's state_dict loaded into the jitgrad one, then forward values, input and parameter
gradients, state_dict keys and shapes, and the repr compared."""

from __future__ import annotations

import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jitgrad as jg  # noqa: E402

RNG = np.random.default_rng(7)


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("JITGRAD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "jg-cache"))


def _jg_state(module) -> dict:
    return {k: jg.tensor(v.detach().numpy()) for k, v in module.state_dict().items()}


def _np(t):
    return t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)


def _torch_repr(module) -> str:
    return repr(module).replace("torch.", "jitgrad.")


def _check_module(name, args, kwargs, inputs, *, train=False, tol=1e-5, call=None, grads=True):
    """Build ``nn.<name>(*args, **kwargs)`` in both libraries and compare them on ``inputs``
    (NumPy arrays; float ones get gradients)."""
    torch.manual_seed(0)
    tm = getattr(torch.nn, name)(*args, **kwargs)
    jm = getattr(jg.nn, name)(*args, **kwargs)
    t_state, j_state = tm.state_dict(), jm.state_dict()
    assert list(j_state) == list(t_state)
    for key in t_state:
        assert tuple(j_state[key].shape) == tuple(t_state[key].shape), key
    jm.load_state_dict(_jg_state(tm))
    assert repr(jm) == _torch_repr(tm)
    tm.train(train)
    jm.train(train)
    t_in = [torch.tensor(x, requires_grad=x.dtype.kind == "f" and grads) for x in inputs]
    j_in = [jg.tensor(x, requires_grad=x.dtype.kind == "f" and grads) for x in inputs]
    t_out = (call or (lambda m, *a: m(*a)))(tm, *t_in)
    j_out = (call or (lambda m, *a: m(*a)))(jm, *j_in)
    t_outs = t_out if isinstance(t_out, tuple) else (t_out,)
    j_outs = j_out if isinstance(j_out, tuple) else (j_out,)
    for t, j in zip(t_outs, j_outs, strict=True):
        assert tuple(j.shape) == tuple(t.shape)
        np.testing.assert_allclose(_np(j), _np(t), rtol=tol, atol=tol)
    if not grads:
        return tm, jm
    weight = RNG.standard_normal(tuple(t_outs[0].shape)).astype(np.float32)
    (t_outs[0] * torch.tensor(weight)).sum().backward()
    (j_outs[0] * jg.tensor(weight)).sum().backward()
    for t, j in zip(t_in, j_in):
        if t.requires_grad:
            np.testing.assert_allclose(_np(j.grad), _np(t.grad), rtol=tol, atol=tol)
    t_params = dict(tm.named_parameters())
    for key, p in jm.named_parameters():
        if t_params[key].grad is None:
            assert p.grad is None or not np.any(_np(p.grad)), key
        else:
            np.testing.assert_allclose(_np(p.grad), _np(t_params[key].grad), rtol=tol, atol=tol)
    for key, b in jm.named_buffers():  # running statistics after a training step
        np.testing.assert_allclose(_np(b), _np(dict(tm.named_buffers())[key]), rtol=tol, atol=tol)
    return tm, jm


def _x(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


CASES = [
    ("Conv1d", (4, 6, 3), {"padding": "same", "padding_mode": "reflect", "groups": 2}, [(2, 4, 7)]),
    ("Conv1d", (3, 3, 2), {"stride": 2, "dilation": 2, "groups": 3, "bias": False}, [(2, 3, 9)]),
    ("Conv1d", (2, 4, 3), {"padding": 2, "padding_mode": "circular"}, [(2, 6)]),
    ("Conv1d", (2, 3, 4), {"padding": "same", "padding_mode": "replicate"}, [(2, 2, 7)]),
    ("Conv3d", (2, 2, (2, 1, 4)), {"padding": "same"}, [(1, 2, 3, 3, 5)]),
    (
        "Conv3d",
        (2, 2, 2),
        {"padding": "same", "padding_mode": "reflect", "dilation": 2},
        [(1, 2, 3, 3, 5)],
    ),  # noqa: E501
    ("Conv3d", (2, 4, (2, 3, 2)), {"padding": 1, "padding_mode": "replicate"}, [(1, 2, 3, 4, 4)]),
    ("Conv3d", (4, 4, 3), {"padding": "same", "groups": 4}, [(1, 4, 3, 4, 3)]),
    ("Conv3d", (2, 2, 2), {"padding": "valid", "stride": (1, 2, 1)}, [(1, 2, 3, 5, 3)]),
    ("ConvTranspose1d", (4, 6, 3), {"stride": 2, "output_padding": 1, "groups": 2}, [(2, 4, 5)]),
    ("ConvTranspose2d", (3, 2, (2, 3)), {"stride": 2, "padding": 1, "dilation": 2}, [(2, 3, 3, 4)]),
    ("ConvTranspose2d", (2, 4, 3), {"bias": False, "groups": 2}, [(2, 3, 3)]),
    (
        "ConvTranspose3d",
        (2, 2, 2),
        {"stride": (2, 1, 2), "output_padding": (1, 0, 0)},
        [(1, 2, 2, 3, 2)],
    ),  # noqa: E501
    ("MaxPool1d", (3,), {"stride": 2, "padding": 1}, [(2, 3, 8)]),
    ("MaxPool3d", (2,), {"stride": 1, "dilation": (1, 2, 1)}, [(1, 2, 3, 5, 3)]),
    ("AvgPool1d", (3,), {"padding": 1, "count_include_pad": False}, [(2, 3, 7)]),
    ("AvgPool3d", (2,), {"ceil_mode": True}, [(1, 2, 3, 5, 4)]),
    ("AdaptiveAvgPool1d", (3,), {}, [(2, 3, 7)]),
    ("AdaptiveAvgPool2d", ((3, None),), {}, [(2, 2, 5, 4)]),
    ("AdaptiveAvgPool3d", (2,), {}, [(1, 2, 3, 5, 4)]),
    ("AdaptiveMaxPool1d", (3,), {"return_indices": True}, [(2, 3, 7)]),
    ("AdaptiveMaxPool2d", ((2, 3),), {}, [(2, 2, 5, 7)]),
    ("AdaptiveMaxPool3d", (2,), {}, [(1, 2, 3, 5, 4)]),
    ("LPPool1d", (2, 3), {"stride": 2}, [(2, 3, 7)]),
    ("LPPool2d", (2, 2), {}, [(2, 2, 4, 5)]),
    ("Upsample", (), {"scale_factor": 2}, [(2, 2, 3, 3)]),
    ("Upsample", (), {"size": (5, 4), "mode": "bilinear"}, [(1, 2, 3, 3)]),
    ("Upsample", (), {"scale_factor": 1.5, "mode": "linear", "align_corners": True}, [(1, 2, 4)]),
    ("UpsamplingNearest2d", (), {"size": 5}, [(1, 2, 3, 3)]),
    ("UpsamplingBilinear2d", (), {"scale_factor": 2}, [(1, 2, 3, 3)]),
    ("PixelShuffle", (2,), {}, [(1, 8, 2, 3)]),
    ("PixelUnshuffle", (2,), {}, [(1, 2, 4, 6)]),
    ("ChannelShuffle", (3,), {}, [(2, 6, 2, 2)]),
    ("Fold", ((4, 5), 2), {"stride": 1}, [(2, 12, 12)]),
    ("Unfold", ((2, 3),), {"padding": 1, "stride": 2}, [(2, 3, 4, 5)]),
    ("ZeroPad1d", ((1, 2),), {}, [(2, 3, 4)]),
    ("ZeroPad2d", (1,), {}, [(2, 3, 4)]),
    ("ZeroPad3d", ((1, 0, 2, 1, 0, 1),), {}, [(1, 2, 2, 3, 2)]),
    ("ConstantPad1d", (2, 3.5), {}, [(2, 3, 4)]),
    ("ConstantPad2d", ((1, 0, 2, 1), -1.0), {}, [(2, 3, 4)]),
    ("ConstantPad3d", (1, 0.5), {}, [(1, 2, 2, 3, 2)]),
    ("ReflectionPad1d", (2,), {}, [(2, 3, 4)]),
    ("ReflectionPad2d", ((1, 2, 0, 1),), {}, [(2, 3, 4)]),
    ("ReflectionPad3d", (1,), {}, [(1, 2, 2, 3, 2)]),
    ("ReplicationPad1d", ((3, 1),), {}, [(2, 3, 4)]),
    ("ReplicationPad2d", (2,), {}, [(1, 2, 3, 4)]),
    ("ReplicationPad3d", (1,), {}, [(1, 2, 2, 3, 2)]),
    ("CircularPad1d", (2,), {}, [(2, 3, 4)]),
    ("CircularPad2d", ((1, 2, 0, 1),), {}, [(1, 2, 3, 4)]),
    ("CircularPad3d", (1,), {}, [(1, 2, 2, 3, 2)]),
    ("GroupNorm", (2, 4), {}, [(3, 4, 5)]),
    ("GroupNorm", (3, 6), {"affine": False, "eps": 1e-3}, [(2, 6, 2, 2)]),
    ("GroupNorm", (1, 4), {"bias": False}, [(2, 4)]),
    ("InstanceNorm1d", (3,), {}, [(2, 3, 5)]),
    ("InstanceNorm2d", (3,), {"affine": True, "track_running_stats": True}, [(2, 3, 4, 4)]),
    ("InstanceNorm3d", (2,), {"affine": True, "bias": False}, [(2, 2, 3, 2, 2)]),
    ("InstanceNorm1d", (3,), {"track_running_stats": True, "momentum": 0.3}, [(3, 5)]),
    ("RMSNorm", (4,), {}, [(3, 4)]),
    ("RMSNorm", ((2, 3),), {"eps": 1e-5, "elementwise_affine": False}, [(4, 2, 3)]),
    ("LocalResponseNorm", (3,), {"alpha": 0.1, "k": 2.0}, [(2, 5, 3, 3)]),
    ("BatchNorm3d", (2,), {}, [(3, 2, 2, 3, 2)]),
    ("BatchNorm3d", (2,), {"momentum": None, "bias": False}, [(3, 2, 2, 3, 2)]),
    ("Bilinear", (3, 4, 2), {}, [(5, 3), (5, 4)]),
    ("Bilinear", (2, 3, 4), {"bias": False}, [(2, 3, 2), (2, 3, 3)]),
    ("CosineSimilarity", (), {"dim": 0}, [(3, 4), (3, 4)]),
    ("PairwiseDistance", (), {"p": 1.0, "keepdim": True}, [(3, 4), (3, 4)]),
    ("Softmax2d", (), {}, [(2, 3, 2, 2)]),
    ("Identity", (3,), {"unused": 4}, [(2, 3)]),
    ("TripletMarginWithDistanceLoss", (), {"margin": 0.5, "swap": True}, [(4, 3)] * 3),
]


@pytest.mark.parametrize(
    "name, args, kwargs, shapes",
    CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)],
)
def test_module_matches_torch(name, args, kwargs, shapes):
    train = "Norm" in name  # normalization: the training path (running statistics move)
    _check_module(name, args, kwargs, [_x(*s) for s in shapes], train=train)


@pytest.mark.filterwarnings("ignore:`nn.functional.upsample")
def test_functional_aliases_match_torch():
    x = _x(1, 2, 4, 6)
    for name, args in (
        ("max_pool2d_with_indices", (2,)),
        ("max_pool1d_with_indices", (3,)),
        ("max_pool3d_with_indices", (2,)),
        ("adaptive_max_pool1d_with_indices", (3,)),
        ("adaptive_max_pool2d_with_indices", ((2, 3),)),
        ("adaptive_max_pool3d_with_indices", (2,)),
        ("adaptive_max_pool3d", (2,)),
        ("upsample", (None, 2)),
        ("upsample_nearest", ((5, 7),)),
        ("upsample_bilinear", (None, 2)),
        ("channel_shuffle", (2,)),
    ):
        data = x.reshape(1, 2, 2, 2, 6) if "3d" in name else x[0] if "1d" in name else x
        t_out = getattr(torch.nn.functional, name)(torch.tensor(data), *args)
        j_out = getattr(jg.nn.functional, name)(jg.tensor(data), *args)
        t_outs = t_out if isinstance(t_out, tuple) else (t_out,)
        j_outs = j_out if isinstance(j_out, tuple) else (j_out,)
        for t, j in zip(t_outs, j_outs, strict=True):
            np.testing.assert_allclose(_np(j), t.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
    with pytest.warns(UserWarning, match="`nn.functional.upsample` is deprecated"):
        jg.nn.functional.upsample(jg.tensor(x), scale_factor=2)
    assert isinstance(jg.nn.NLLLoss2d(), jg.nn.NLLLoss)


def test_instance_norm_eval_uses_running_stats_and_unbatched():
    tm, jm = _check_module(
        "InstanceNorm2d", (3,), {"affine": True, "track_running_stats": True}, [_x(2, 3, 4, 4)],
        train=True,
    )  # fmt: skip
    tm.eval()
    jm.eval()
    x = _x(3, 4, 4)  # unbatched
    np.testing.assert_allclose(_np(jm(jg.tensor(x))), _np(tm(torch.tensor(x))), atol=1e-5)
    with pytest.raises(ValueError, match="expected input's size at dim=1 to match num_features"):
        jm(jg.tensor(_x(2, 4, 4, 4)))


def test_conv_transpose_output_size():
    tm, jm = _check_module(
        "ConvTranspose2d", (2, 3, 3), {"stride": 2, "padding": 1}, [_x(1, 2, 3, 4)],
        call=lambda m, x: m(x, output_size=[6, 8]),
    )  # fmt: skip
    assert tuple(jm(jg.tensor(_x(1, 2, 3, 4)), output_size=(1, 3, 5, 7)).shape) == (1, 3, 5, 7)
    with pytest.raises(ValueError) as t_err:
        tm(torch.tensor(_x(1, 2, 3, 4)), output_size=[9, 8])
    with pytest.raises(ValueError) as j_err:
        jm(jg.tensor(_x(1, 2, 3, 4)), output_size=[9, 8])
    assert str(j_err.value) == str(t_err.value).replace("torch.", "jitgrad.")


def test_max_unpool_round_trip():
    x = _x(1, 2, 4, 6)
    for lib in (torch, jg):
        pool, unpool = lib.nn.MaxPool2d(2, return_indices=True), lib.nn.MaxUnpool2d(2)
        out, idx = pool(lib.tensor(x))
        back = unpool(out, idx)
        if lib is torch:
            expect, t_repr = back.numpy(), repr(unpool)
    np.testing.assert_allclose(_np(back), expect)
    assert repr(unpool) == t_repr
    for nd, shape in ((1, (2, 3, 6)), (3, (1, 2, 2, 4, 4))):
        x = _x(*shape)
        t_out, t_idx = getattr(torch.nn, f"MaxPool{nd}d")(2, return_indices=True)(torch.tensor(x))
        j_unpool = getattr(jg.nn, f"MaxUnpool{nd}d")(2)
        got = j_unpool(jg.tensor(t_out.numpy()), jg.tensor(t_idx.numpy()))
        want = getattr(torch.nn, f"MaxUnpool{nd}d")(2)(t_out, t_idx)
        np.testing.assert_allclose(_np(got), want.numpy())


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_embedding_bag_offsets_and_padding(mode):
    idx = np.array([1, 2, 4, 5, 4, 3, 2, 0, 2])
    offsets = np.array([0, 2, 2, 6])
    kwargs = {"mode": mode, "padding_idx": 2}
    tm, jm = _check_module(
        "EmbeddingBag", (6, 3), kwargs, [idx, offsets], call=lambda m, i, o: m(i, o)
    )
    # (B, N) input: fixed-length bags; include_last_offset
    _check_module("EmbeddingBag", (6, 3), {"mode": mode}, [idx[:8].reshape(2, 4)])
    _check_module(
        "EmbeddingBag", (6, 3), {"mode": mode, "include_last_offset": True},
        [idx, np.array([0, 3, 3, 9])], call=lambda m, i, o: m(i, o),
    )  # fmt: skip


def test_embedding_bag_per_sample_weights_and_errors():
    idx, offsets = np.array([1, 2, 4, 5, 4]), np.array([0, 3])
    w = RNG.random(5).astype(np.float32)
    _check_module(
        "EmbeddingBag", (6, 3), {"mode": "sum"}, [idx, offsets, w],
        call=lambda m, i, o, w: m(i, o, per_sample_weights=w),
    )  # fmt: skip
    jm = jg.nn.EmbeddingBag(6, 3)
    with pytest.raises(NotImplementedError, match="only supported for mode='sum'"):
        jm(jg.tensor(idx), jg.tensor(offsets), per_sample_weights=jg.tensor(w))
    with pytest.raises(ValueError, match="offsets has to be a 1D Tensor but got None"):
        jm(jg.tensor(idx))
    with pytest.raises(ValueError, match="if input is 2D, then offsets has to be None"):
        jm(jg.tensor(idx.reshape(1, 5)), jg.tensor(offsets))
    bag = jg.nn.EmbeddingBag(5, 3, max_norm=1.0, mode="max", padding_idx=0)
    assert repr(bag) == "EmbeddingBag(5, 3, max_norm=1.0, mode='max', padding_idx=0)"
    assert not np.any(_np(bag.weight)[0])


def test_multilabel_margin_loss():
    x = _x(3, 5)
    target = np.array([[3, 0, -1, 1, 1], [1, 2, 4, 0, 3], [-1, 1, 2, 0, 0]])
    for reduction in ("mean", "sum", "none"):
        _check_module("MultiLabelMarginLoss", (), {"reduction": reduction}, [x, target])
    _check_module("MultiLabelMarginLoss", (), {}, [x[0], target[0]])


@pytest.mark.filterwarnings("ignore:dropout2d. Received a 3D input")
@pytest.mark.parametrize("name", ["Dropout1d", "Dropout2d", "Dropout3d"])
def test_channel_dropout(name):
    nd = int(name[-2])
    shape = (40, 30) + (3,) * nd
    m = getattr(jg.nn, name)(p=0.4)
    assert repr(m) == repr(getattr(torch.nn, name)(p=0.4))
    x = jg.ones(*shape, requires_grad=True)
    y = m(x)
    y.sum().backward()
    flat = _np(y).reshape(40, 30, -1)
    # whole channels kept (scaled by 1/(1-p)) or dropped; about 40% dropped
    assert np.all(flat == flat[..., :1])
    assert np.all(np.isclose(flat, 0.0) | np.isclose(flat, 1 / 0.6))
    assert 0.3 < np.mean(flat[..., 0] == 0) < 0.5
    np.testing.assert_allclose(_np(x.grad), _np(y))  # d(x * mask)/dx = mask
    m.eval()
    assert m(x) is x
    unbatched = getattr(jg.nn, name)(p=0.5)(jg.ones(*shape[1:]))
    assert tuple(unbatched.shape) == shape[1:]


@pytest.mark.parametrize("name", ["AlphaDropout", "FeatureAlphaDropout"])
def test_alpha_dropout_keeps_mean_and_variance(name):
    m = getattr(jg.nn, name)(p=0.2)
    assert repr(m) == repr(getattr(torch.nn, name)(p=0.2))
    x = jg.tensor(RNG.standard_normal((400, 100, 4)).astype(np.float32))
    y = _np(m(x))
    assert abs(y.mean()) < 0.05 and abs(y.std() - 1) < 0.05
    # a dropped element takes SELU's saturation value, then the affine rescale
    p, alpha = 0.2, 1.7580993408473766
    a = 1 / np.sqrt((alpha**2 * p + 1) * (1 - p))
    dropped = np.isclose(y, a * -alpha + a * alpha * p, rtol=0, atol=1e-6)
    if name == "FeatureAlphaDropout":  # one draw per (sample, channel): whole channels
        dropped = np.broadcast_to(np.all(dropped, axis=-1, keepdims=True), y.shape)
    assert 0.15 < dropped.mean() < 0.25
    kept = ~dropped
    np.testing.assert_allclose(y[kept], a * _np(x)[kept] + a * alpha * p, rtol=1e-5, atol=1e-5)
    m.eval()
    assert m(x) is x


def test_parameter_list_and_dict():
    t_list = torch.nn.ParameterList(
        [torch.nn.Parameter(torch.ones(2)), torch.zeros(2, 3), torch.ones(1, dtype=torch.float64)]
    )
    j_list = jg.nn.ParameterList(
        [jg.nn.Parameter(jg.ones(2)), jg.zeros(2, 3), jg.ones(1, dtype=jg.float64)]
    )
    assert repr(j_list) == _torch_repr(t_list)
    assert isinstance(j_list[1], jg.nn.Parameter) and len(j_list) == 3
    j_list.append(jg.zeros(4))
    assert list(j_list.state_dict()) == ["0", "1", "2", "3"]
    t_dict = torch.nn.ParameterDict({"a": torch.nn.Parameter(torch.ones(2)), "b": torch.zeros(3)})
    j_dict = jg.nn.ParameterDict({"a": jg.nn.Parameter(jg.ones(2)), "b": jg.zeros(3)})
    assert repr(j_dict) == _torch_repr(t_dict)
    assert list(j_dict.keys()) == ["a", "b"] and "a" in j_dict

    class Holder(jg.nn.Module):
        def __init__(self):
            super().__init__()
            self.ps = j_list
            self.pd = j_dict

    class THolder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ps = t_list
            self.pd = t_dict

    t_list.append(torch.zeros(4))
    assert repr(Holder()) == _torch_repr(THolder()).replace("THolder", "Holder")
    names = [n for n, _ in Holder().named_parameters()]
    assert names == [n for n, _ in THolder().named_parameters()]
    del j_dict["a"]
    assert list(j_dict.state_dict()) == ["b"]


def _sets_sorted(message: str) -> str:
    # (PyTorch formats Python sets, whose order changes with the hash seed)
    return re.sub(
        r"\{([^{}]*)\}", lambda m: "{" + ", ".join(sorted(m[1].split(", "))) + "}", message
    )


def test_conv_module_errors_match_torch():
    calls = [
        ("Conv1d", (4, 6, 3), {"groups": 4}),
        ("Conv3d", (3, 6, 3), {"groups": 0}),
        ("Conv1d", (4, 6, 3), {"padding": "full"}),
        ("Conv1d", (4, 6, 3), {"padding": "same", "stride": 2}),
        ("Conv3d", (4, 6, 3), {"padding_mode": "mirror"}),
        ("ConvTranspose2d", (4, 6, 3), {"padding_mode": "reflect"}),
        ("GroupNorm", (3, 4), {}),
    ]
    for name, args, kwargs in calls:
        with pytest.raises(ValueError) as t_err:
            getattr(torch.nn, name)(*args, **kwargs)
        with pytest.raises(ValueError) as j_err:
            getattr(jg.nn, name)(*args, **kwargs)
        assert _sets_sorted(str(j_err.value)) == _sets_sorted(str(t_err.value)), name


def test_conv_default_init_matches_torch_statistics():
    # kaiming_uniform_(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
    for name, args, fan_in in (
        ("Conv1d", (4, 8, 3), 12),
        ("Conv3d", (2, 4, 3), 54),
        ("ConvTranspose2d", (4, 6, 3, 1, 0, 0, 2), 27),
    ):
        m = getattr(jg.nn, name)(*args)
        bound = 1 / np.sqrt(fan_in)
        for p in (m.weight, m.bias):
            values = _np(p)
            assert values.min() >= -bound and values.max() <= bound
        assert _np(m.weight).max() > 0.5 * bound


class _BagModel:
    @staticmethod
    def make(lib):
        nn = lib.nn

        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.bag = nn.EmbeddingBag(9, 4, mode="mean", padding_idx=0)
                # (no bias: instance norm removes it, its gradient is rounding only)
                self.up = nn.ConvTranspose1d(1, 2, 3, stride=2, output_padding=1, bias=False)
                self.norm = nn.InstanceNorm1d(2, affine=True, track_running_stats=True)
                self.pool = nn.AdaptiveMaxPool1d(4)
                self.bilinear = nn.Bilinear(8, 4, 3)

            def forward(self, idx, offsets):
                h = self.bag(idx, offsets)  # (B, 4)
                u = self.pool(self.norm(self.up(h.unsqueeze(1))))  # (B, 2, 4)
                return self.bilinear(u.flatten(1), h)

        return Model()


@pytest.mark.filterwarnings("error")
def test_compiled_training_step_with_new_modules_matches_eager():
    torch.manual_seed(0)
    state = {k: v.detach().numpy().copy() for k, v in _BagModel.make(torch).state_dict().items()}
    idx = np.array([1, 0, 4, 5, 4, 3, 2, 8, 8])
    offsets = np.array([0, 2, 5, 6])
    target = np.array([0, 2, 1, 2])

    def run(compiled):
        model = _BagModel.make(jg)
        model.load_state_dict({k: jg.tensor(v) for k, v in state.items()})
        opt = jg.optim.Adam(model.parameters(), lr=0.05)

        def step(i, o, y):
            opt.zero_grad(set_to_none=True)
            loss = jg.nn.functional.cross_entropy(model(i, o), y)
            loss.backward()
            jg.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            return loss

        if compiled:
            step = jg.compile(step, backend="numba")
        losses = [float(step(jg.tensor(idx), jg.tensor(offsets), jg.tensor(target)))
                  for _ in range(4)]  # fmt: skip
        return model, losses, step

    eager_model, eager, _ = run(False)
    model, compiled, step = run(True)
    assert step.stats.cache_hits >= 2, step.stats
    np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-6)
    for key, value in eager_model.state_dict().items():
        np.testing.assert_allclose(
            _np(model.state_dict()[key]), _np(value), rtol=1e-5, atol=1e-6, err_msg=key
        )


LAZY = [
    ("LazyLinear", (3,), {}, (2, 4)),
    ("LazyLinear", (2,), {"bias": False}, (3, 2, 5)),
    ("LazyConv1d", (4, 3), {"padding": 1, "groups": 2}, (2, 2, 6)),
    ("LazyConv2d", (3, 2), {"bias": False}, (2, 2, 4, 4)),
    ("LazyConv3d", (2, 2), {}, (1, 3, 3, 3, 3)),
    ("LazyConvTranspose1d", (4, 3), {"stride": 2}, (2, 2, 5)),
    ("LazyConvTranspose2d", (2, 3), {}, (1, 3, 3, 3)),
    ("LazyConvTranspose3d", (2, 2), {}, (1, 2, 2, 2, 2)),
    ("LazyBatchNorm1d", (), {}, (4, 3)),
    ("LazyBatchNorm2d", (), {"affine": False}, (2, 3, 2, 2)),
    ("LazyBatchNorm3d", (), {"bias": False}, (2, 2, 2, 2, 2)),
    ("LazyInstanceNorm1d", (), {}, (2, 3, 5)),
    ("LazyInstanceNorm2d", (), {"track_running_stats": False}, (2, 3, 3, 3)),
    ("LazyInstanceNorm3d", (), {"affine": False}, (1, 2, 2, 3, 2)),
]


@pytest.mark.parametrize("name, args, kwargs, shape", LAZY, ids=[c[0] for c in LAZY])
def test_lazy_module_matches_torch(name, args, kwargs, shape):
    tm, jm = getattr(torch.nn, name)(*args, **kwargs), getattr(jg.nn, name)(*args, **kwargs)
    assert repr(jm) == repr(tm)
    assert list(jm.state_dict()) == list(tm.state_dict())
    assert [type(p).__name__ for p in jm.parameters()] == [
        type(p).__name__ for p in tm.parameters()
    ]
    x = _x(*shape)
    t_out, j_out = tm(torch.tensor(x)), jm(jg.tensor(x))
    assert type(jm).__name__ == type(tm).__name__ == name[4:]
    assert repr(jm) == repr(tm)
    assert not jm._forward_pre_hooks
    shapes = [tuple(v.shape) for v in jm.state_dict().values()]
    assert shapes == [tuple(v.shape) for v in tm.state_dict().values()]
    # the materialized module runs like the eager one built with the inferred sizes
    jm.load_state_dict(_jg_state(tm))
    tm.eval()
    jm.eval()
    np.testing.assert_allclose(
        _np(jm(jg.tensor(x))), _np(tm(torch.tensor(x))), rtol=1e-5, atol=1e-5
    )
    assert t_out.shape == tuple(j_out.shape)


def test_lazy_module_materializes_from_state_dict():
    source = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.BatchNorm1d(3))
    jm = jg.nn.Sequential(jg.nn.LazyLinear(3), jg.nn.LazyBatchNorm1d())
    jm.load_state_dict(_jg_state(source))
    assert type(jm[0]).__name__ == "LazyLinear"
    assert type(jm[0].weight) is jg.nn.Parameter and tuple(jm[0].weight.shape) == (3, 5)
    x = _x(4, 5)
    source.eval()
    jm.eval()
    np.testing.assert_allclose(_np(jm(jg.tensor(x))), _np(source(torch.tensor(x))), atol=1e-5)
    assert repr(jm[0]) == repr(source[0]) and repr(jm[1]) == repr(source[1])


def test_adaptive_log_softmax_with_loss_matches_torch():
    args, kwargs = (8, 10, [3, 6]), {"div_value": 2.0, "head_bias": True}
    tm = torch.nn.AdaptiveLogSoftmaxWithLoss(*args, **kwargs)
    jm = jg.nn.AdaptiveLogSoftmaxWithLoss(*args, **kwargs)
    assert repr(jm) == repr(tm)
    assert list(jm.state_dict()) == list(tm.state_dict())
    jm.load_state_dict(_jg_state(tm))
    x, target = _x(6, 8), np.array([0, 4, 9, 2, 7, 5])
    t_out = tm(torch.tensor(x), torch.tensor(target))
    j_out = jm(jg.tensor(x), jg.tensor(target))
    assert j_out._fields == ("output", "loss")
    np.testing.assert_allclose(_np(j_out.output), _np(t_out.output), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(j_out.loss), _np(t_out.loss), rtol=1e-5)
    t_out.loss.backward()
    j_out.loss.backward()
    for p, tp in zip(jm.parameters(), tm.parameters(), strict=True):
        np.testing.assert_allclose(_np(p.grad), _np(tp.grad), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        _np(jm.log_prob(jg.tensor(x))), _np(tm.log_prob(torch.tensor(x))), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(_np(jm.predict(jg.tensor(x))), _np(tm.predict(torch.tensor(x))))
    one = jm(jg.tensor(x[1]), jg.tensor(target[1]))
    np.testing.assert_allclose(_np(one.output), _np(t_out.output)[1], rtol=1e-5)
    for bad in (np.array([0, 4, 10, 2, 7, 5]), np.array([0, 4])):
        with pytest.raises(RuntimeError) as t_err:
            tm(torch.tensor(x), torch.tensor(bad))
        with pytest.raises(RuntimeError) as j_err:
            jm(jg.tensor(x), jg.tensor(bad))
        assert str(j_err.value) == str(t_err.value)
    with pytest.raises(ValueError) as t_err:
        torch.nn.AdaptiveLogSoftmaxWithLoss(8, 10, [6, 3])
    with pytest.raises(ValueError) as j_err:
        jg.nn.AdaptiveLogSoftmaxWithLoss(8, 10, [6, 3])
    assert str(j_err.value) == str(t_err.value)


def test_embedding_bag_scale_grad_by_freq_and_max_norm():
    idx, offsets = np.array([1, 2, 4, 5, 4, 3, 2, 0, 2]), np.array([0, 2, 2, 6])
    _check_module(
        "EmbeddingBag", (6, 3), {"max_norm": 1.0, "mode": "sum"}, [idx, offsets],
        call=lambda m, i, o: m(i, o),
    )  # fmt: skip
    _check_module(
        "EmbeddingBag", (6, 3), {"max_norm": 0.5, "norm_type": 1.0, "mode": "max"},
        [idx, offsets], call=lambda m, i, o: m(i, o),
    )  # fmt: skip
    # scale_grad_by_freq: each row's gradient divided by how often the row is looked up, as
    # F.embedding does (PyTorch's CPU embedding_bag divides some rows by another row's count)
    m = jg.nn.EmbeddingBag(6, 3, mode="sum", scale_grad_by_freq=True)
    m(jg.tensor(idx), jg.tensor(offsets)).sum().backward()
    np.testing.assert_allclose(_np(m.weight.grad), np.ones((6, 3)), rtol=1e-6)


@pytest.mark.filterwarnings("error")
def test_compiled_step_with_image_modules_and_dropout_matches_eager():
    nn = jg.nn

    def model():
        jg.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.Dropout2d(0.2),
            nn.ReflectionPad2d(1),
            nn.LocalResponseNorm(2),
            nn.PixelShuffle(2),  # (N, 1, 12, 12)
            nn.Upsample(scale_factor=0.5, mode="bilinear"),  # 6 x 6
            nn.Softplus(),
            nn.LPPool2d(2, 2),  # 3 x 3
            nn.ZeroPad2d((0, 1, 0, 1)),  # 4 x 4
            nn.Unfold(2, stride=2),  # (N, 4, 4)
            nn.Flatten(),
            nn.RMSNorm(16),
            nn.AlphaDropout(0.1),
            nn.Linear(16, 3),
        )

    x, y = jg.tensor(_x(4, 1, 6, 6)), jg.tensor(np.array([0, 1, 2, 1]))

    def run(compiled):
        m = model()
        opt = jg.optim.SGD(m.parameters(), lr=0.1)

        def step(x, y):
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(m(x), y)
            loss.backward()
            nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            opt.step()
            return loss

        if compiled:
            step = jg.compile(step, backend="numba")
        jg.manual_seed(5)  # the dropout draws: the same in both runs
        return [float(step(x, y)) for _ in range(4)], step

    eager, _ = run(False)
    compiled, step = run(True)
    assert step.stats.cache_hits >= 2, step.stats
    np.testing.assert_allclose(compiled, eager, rtol=1e-5)


@pytest.mark.parametrize(
    "nd, shape, kernel, out",
    [
        (2, (2, 3, 7, 6), 2, (4, 3)),
        (2, (3, 9, 8), (3, 2), (5, 5)),
        (3, (1, 2, 5, 6, 7), 2, (3, 4, 5)),
    ],
)
def test_fractional_max_pool_matches_torch(nd, shape, kernel, out):
    batch = shape[0] if len(shape) == nd + 2 else 1
    samples = RNG.random((batch, shape[-nd - 1], nd)).astype(np.float32)
    name = f"FractionalMaxPool{nd}d"
    kwargs = {"output_size": out, "return_indices": True}
    tm = getattr(torch.nn, name)(kernel, _random_samples=torch.tensor(samples), **kwargs)
    jm = getattr(jg.nn, name)(kernel, _random_samples=jg.tensor(samples), **kwargs)
    assert repr(jm) == repr(tm)
    x = _x(*shape)
    tx, jx = torch.tensor(x, requires_grad=True), jg.tensor(x, requires_grad=True)
    (t_out, t_idx), (j_out, j_idx) = tm(tx), jm(jx)
    np.testing.assert_array_equal(_np(j_out), _np(t_out))
    np.testing.assert_array_equal(_np(j_idx), _np(t_idx))
    t_out.sum().backward()
    j_out.sum().backward()
    np.testing.assert_array_equal(_np(jx.grad), _np(tx.grad))
    # random samples drawn per call; output_ratio
    fresh = getattr(jg.nn, name)(kernel, output_ratio=0.5)
    assert tuple(fresh(jg.tensor(x)).shape) == tuple(
        getattr(torch.nn, name)(kernel, output_ratio=0.5)(torch.tensor(x)).shape
    )


def test_fractional_max_pool_errors_match_torch():
    for kwargs in ({}, {"output_size": 3, "output_ratio": 0.5}, {"output_ratio": 1.5}):
        with pytest.raises(ValueError) as t_err:
            torch.nn.FractionalMaxPool2d(2, **kwargs)
        with pytest.raises(ValueError) as j_err:
            jg.nn.FractionalMaxPool2d(2, **kwargs)
        assert str(j_err.value) == str(t_err.value)
    x = _x(1, 2, 7, 6)
    with pytest.raises(RuntimeError) as t_err:
        torch.nn.functional.fractional_max_pool2d(torch.tensor(x), 2, output_size=(7, 3))
    with pytest.raises(RuntimeError) as j_err:
        jg.nn.functional.fractional_max_pool2d(jg.tensor(x), 2, output_size=(7, 3))
    assert str(j_err.value) == str(t_err.value)


def test_sync_batch_norm_single_process_and_conversion():
    _check_module("SyncBatchNorm", (3,), {}, [_x(4, 3, 2)], train=True)

    def make(nn):
        return nn.Sequential(
            nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3), nn.Sequential(nn.BatchNorm1d(2))
        )

    tm, jm = make(torch.nn), make(jg.nn)
    bn_weight = jm[1].weight
    tc = torch.nn.SyncBatchNorm.convert_sync_batchnorm(tm)
    jc = jg.nn.SyncBatchNorm.convert_sync_batchnorm(jm)
    assert repr(jc) == repr(tc)
    assert list(jc.state_dict()) == list(tc.state_dict())
    assert jc[1].weight is bn_weight
    with pytest.raises(ValueError, match="expected at least 2D input"):
        jg.nn.SyncBatchNorm(3)(jg.ones(3))


@pytest.mark.parametrize(
    "kwargs, target_shape",
    [
        ({}, (5,)),
        ({"out_features": (2,), "bias": True, "weight": [1.0, 2.0, 3.0]}, (5, 2)),
        ({"label_smoothing": 0.1, "reduction": "sum", "ignore_index": 1}, (5,)),
        ({"reduction": "none", "options": "default"}, (5,)),
    ],
)
def test_linear_cross_entropy_loss_matches_torch(kwargs, target_shape):
    def build(lib):
        kw = dict(kwargs)
        if "weight" in kw:
            kw["weight"] = lib.tensor(kw["weight"])
        if kw.get("options") == "default":
            kw["options"] = lib.nn.LinearCrossEntropyOptions()
        return lib.nn.LinearCrossEntropyLoss(4, 3, **kw)

    tm, jm = build(torch), build(jg)
    assert repr(jm) == repr(tm)
    assert list(jm.state_dict()) == list(tm.state_dict())
    jm.load_state_dict(_jg_state(tm))
    x, target = _x(5, 4), RNG.integers(0, 3, target_shape)
    tx, jx = torch.tensor(x, requires_grad=True), jg.tensor(x, requires_grad=True)
    t_loss, j_loss = tm(tx, torch.tensor(target)), jm(jx, jg.tensor(target))
    np.testing.assert_allclose(_np(j_loss), _np(t_loss), rtol=1e-5, atol=1e-6)
    t_loss.sum().backward()
    j_loss.sum().backward()
    np.testing.assert_allclose(_np(jx.grad), _np(tx.grad), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        _np(jm.linear.weight.grad), _np(tm.linear.weight.grad), rtol=1e-5, atol=1e-6
    )
