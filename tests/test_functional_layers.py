"""jitgrad.nn.functional's layer ops (padding, convolutions, pooling, resizing, normalization,
distances, embedding) against torch.nn.functional over many parameter combinations: values,
dtypes, shapes, gradients and error messages; and a few of them compiled with the Numba backend
against eager."""

from __future__ import annotations

import math

import numpy as np
import pytest

import jitgrad as jg
import jitgrad.nn.functional as F


def _torch():
    return pytest.importorskip("torch")


def _lib_call(lib, fn, arrays, args, kw, grad):
    ins = []
    for k, a in enumerate(arrays):
        if isinstance(a, np.ndarray):
            t = lib.tensor(a)
            if k in grad and a.dtype.kind == "f":
                t.requires_grad_(True)
            ins.append(t)
        else:
            ins.append(a)
    try:
        return ins, fn(*ins, *args, **kw)
    except Exception as e:  # noqa: BLE001  (compared with the other library's)
        return ins, e


def agree(name, arrays, *args, grad=(0,), rtol=1e-9, atol=1e-11, **kw):
    """Call ``name`` in torch.nn.functional and jitgrad.nn.functional on the same inputs:
    the same exception (type, and message prefix), or the same results and gradients."""
    torch = _torch()
    tf = getattr(torch.nn.functional, name)
    t_in, t_out = _lib_call(torch, tf, arrays, args, kw, grad)
    j_in, j_out = _lib_call(jg, getattr(F, name), arrays, args, kw, grad)
    if isinstance(t_out, Exception) or isinstance(j_out, Exception):
        assert type(j_out) is type(t_out), (t_out, j_out)
        t_msg, j_msg = str(t_out).split("\n")[0], str(j_out).split("\n")[0]
        assert j_msg.startswith(t_msg[:60]), (t_msg, j_msg)
        return None
    t_outs = t_out if isinstance(t_out, tuple) else (t_out,)
    j_outs = j_out if isinstance(j_out, tuple) else (j_out,)
    assert len(t_outs) == len(j_outs)
    for t, j in zip(t_outs, j_outs):
        assert tuple(j.shape) == tuple(t.shape), name
        assert str(j.dtype).split(".")[-1] == str(t.dtype).split(".")[-1], name
        np.testing.assert_allclose(j.detach().numpy(), t.detach().numpy(), rtol=rtol, atol=atol)
    t_wrt = [x for x in t_in if isinstance(x, torch.Tensor) and x.requires_grad]
    j_wrt = [x for x in j_in if isinstance(x, jg.Tensor) and x.requires_grad]
    if t_wrt and t_outs[0].dtype.is_floating_point:
        cot = np.random.default_rng(1).standard_normal(tuple(t_outs[0].shape))
        tg = torch.autograd.grad(t_outs[0], t_wrt, torch.tensor(cot, dtype=t_outs[0].dtype))
        jg_ = jg.autograd.grad(j_outs[0], j_wrt, jg.tensor(cot, dtype=j_outs[0].dtype))
        for a, b in zip(tg, jg_):
            np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=rtol * 10, atol=atol * 10)
    return t_in, j_in


def _x(*shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# -- pad ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
@pytest.mark.parametrize(
    ("shape", "pad"),
    [
        ((2, 3, 5), (1, 2)),
        ((2, 3, 5), (-1, 3)),
        ((3, 4, 5), (2, -1, 1, 3)),
        ((2, 3, 4, 5), (1, 0, -2, 2)),
        ((1, 2, 3, 4, 5), (1, 1, 2, 0, 0, 2)),
        ((2, 3, 4, 5), (0, 0)),
    ],
)
def test_pad_matches_torch(mode, shape, pad):
    agree("pad", [_x(*shape)], pad, mode=mode)


def test_pad_constant_value_any_number_of_dims_and_dtypes():
    agree("pad", [_x(2, 3, 4)], (1, 2, 0, 1, 2, -1), value=2.5)
    agree("pad", [(_x(3, 4) * 5).astype(np.int64)], (1, 1), value=2.5)
    agree("pad", [_x(2, 3, 4, dtype=np.float32)], (3, 1, 1, 1), mode="constant")
    agree("pad", [_x(2, 3, 4)], (-2, -2))


@pytest.mark.parametrize(
    ("shape", "pad", "kw"),
    [
        ((2, 3, 4), (1, 2, 3), {}),
        ((2, 3), (1,) * 6, {}),
        ((2, 3, 4), (4, 4), {"mode": "reflect"}),
        ((2, 3, 4), (5, 1), {"mode": "circular"}),
        ((2, 3, 4, 5), (1, 1), {"mode": "reflect"}),
        ((5,), (1, 1), {"mode": "replicate"}),
        ((2, 3, 4), (1, 1), {"mode": "wrap"}),
        ((2, 3, 4), (1, 1), {"mode": "reflect", "value": 1.0}),
        ((2, 3, 4), (-3, -2), {}),
    ],
)
def test_pad_errors_match_torch(shape, pad, kw):
    agree("pad", [_x(*shape)], pad, **kw)


# -- convolutions ---------------------------------------------------------------------------------
_CONV_CASES = [
    dict(stride=1, padding=0, dilation=1, groups=1),
    dict(stride=2, padding=1, dilation=1, groups=2),
    dict(stride=(2, 1, 1)[:1], padding=2, dilation=2, groups=1),
    dict(stride=1, padding="same", dilation=2, groups=2),
    dict(stride=1, padding="valid", dilation=1, groups=4),
]


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("case", range(len(_CONV_CASES)))
@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_conv_matches_torch(nd, case):
    kw = dict(_CONV_CASES[case])
    if isinstance(kw["stride"], tuple):
        kw["stride"] = (2, 1, 1)[:nd]
    g = kw["groups"]
    kernel = (3, 2, 2)[:nd]
    x, w, b = _x(2, 4, *(7, 6, 5)[:nd]), _x(2 * g, 4 // g, *kernel, seed=1), _x(2 * g, seed=2)
    agree(f"conv{nd}d", [x, w, b], grad=(0, 1, 2), **kw)
    agree(f"conv{nd}d", [x[0], w], grad=(0, 1), **kw)  # unbatched, no bias


def test_depthwise_conv2d_matches_torch():
    agree("conv2d", [_x(2, 3, 6, 6), _x(6, 1, 3, 3, seed=1)], grad=(0, 1), groups=3, padding=1)


_TRANSPOSE_CASES = [
    dict(stride=1, padding=0, output_padding=0, groups=1, dilation=1),
    dict(stride=2, padding=1, output_padding=1, groups=1, dilation=1),
    dict(stride=3, padding=2, output_padding=2, groups=2, dilation=1),
    dict(stride=2, padding=0, output_padding=1, groups=2, dilation=2),
    dict(stride=1, padding=3, output_padding=0, groups=1, dilation=2),
]


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("case", range(len(_TRANSPOSE_CASES)))
def test_conv_transpose_matches_torch(nd, case):
    kw = _TRANSPOSE_CASES[case]
    g = kw["groups"]
    x, w, b = _x(2, 4, *(4, 3, 3)[:nd]), _x(4, 3, *(3, 2, 2)[:nd], seed=1), _x(3 * g, seed=2)
    agree(f"conv_transpose{nd}d", [x, w, b], grad=(0, 1, 2), **kw)


@pytest.mark.parametrize(
    ("name", "x", "w", "kw"),
    [
        ("conv1d", (2, 4, 5, 5), (2, 4, 3), {}),  # 4-D input
        ("conv1d", (2, 4, 5), (2, 3, 3), {}),  # channels
        ("conv1d", (2, 4, 5), (3, 2, 3), {"groups": 2}),  # out channels % groups
        ("conv3d", (2, 4, 5, 5, 5), (2, 4, 3, 3, 3), {"stride": 2, "padding": "same"}),
        ("conv3d", (2, 4, 2, 5, 5), (2, 4, 3, 3, 3), {}),  # kernel larger than the input
        ("conv_transpose2d", (2, 4, 5, 5), (3, 2, 3, 3), {}),  # channels
        ("conv_transpose2d", (2, 4, 5, 5), (4, 2, 3, 3), {"stride": 2, "output_padding": 2}),
        ("conv2d", (2, 4, 5, 5), (2, 4, 3, 3), {"padding": "full"}),
    ],
)
def test_conv_errors_match_torch(name, x, w, kw):
    agree(name, [_x(*x), _x(*w, seed=1)], **kw)


def test_conv_dtype_mismatch_is_an_error():
    agree("conv1d", [_x(2, 4, 5, dtype=np.float32), _x(2, 4, 3)])


# -- unfold / fold --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw",
    [
        dict(kernel_size=2),
        dict(kernel_size=(2, 3), stride=(1, 2), padding=1),
        dict(kernel_size=3, dilation=2, padding=2, stride=2),
    ],
)
def test_unfold_and_fold_match_torch(kw):
    x = _x(2, 3, 6, 7)
    agree("unfold", [x], **kw)
    agree("unfold", [x[0]], **kw)
    cols = _torch().nn.functional.unfold(_torch().tensor(x), **kw).numpy()
    agree("fold", [cols], (6, 7), **kw)
    agree("fold", [cols[0]], (6, 7), **kw)


def test_fold_errors_match_torch():
    agree("fold", [_x(2, 12, 5)], (4, 5), kernel_size=2)
    agree("fold", [_x(2, 11, 12)], (4, 5), kernel_size=2)
    agree("unfold", [_x(2, 3, 4)], kernel_size=5)


# -- pooling --------------------------------------------------------------------------------------
_POOL = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=2, stride=1, dilation=2),
    dict(kernel_size=3, stride=3, ceil_mode=True),
]


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("case", range(len(_POOL)))
@pytest.mark.parametrize("indices", [False, True])
def test_max_pool_matches_torch(nd, case, indices):
    x = _x(2, 3, *(7, 6, 5)[:nd])
    agree(f"max_pool{nd}d", [x], return_indices=indices, **_POOL[case])
    agree(f"max_pool{nd}d", [x[0]], return_indices=indices, **_POOL[case])


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("case", range(len(_POOL)))
@pytest.mark.parametrize("count_include_pad", [False, True])
def test_avg_pool_matches_torch(nd, case, count_include_pad):
    kw = {k: v for k, v in _POOL[case].items() if k != "dilation"}
    x = _x(2, 3, *(7, 6, 5)[:nd])
    agree(f"avg_pool{nd}d", [x], count_include_pad=count_include_pad, **kw)
    if nd > 1:
        agree(f"avg_pool{nd}d", [x], count_include_pad=count_include_pad, divisor_override=3, **kw)


def test_max_pool_ties_pick_the_first_maximum_like_torch():
    x = np.zeros((1, 1, 4, 4, 4))
    x[0, 0, 1, 1, 1] = x[0, 0, 1, 1, 0] = 1.0
    agree("max_pool3d", [x], 2, return_indices=True)
    agree("adaptive_max_pool2d", [np.ones((1, 2, 5, 4))], (2, 3), return_indices=True)


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("size", [1, 3, 4])
def test_adaptive_pools_match_torch(nd, size):
    x = _x(2, 3, *(7, 5, 6)[:nd])
    agree(f"adaptive_avg_pool{nd}d", [x], size)
    agree(f"adaptive_avg_pool{nd}d", [x[0]], size)
    if nd < 3:
        agree(f"adaptive_max_pool{nd}d", [x], size, return_indices=True)
        agree(f"adaptive_max_pool{nd}d", [x[0]], size)


def test_adaptive_pools_keep_a_dim_given_none():
    agree("adaptive_avg_pool2d", [_x(2, 3, 5, 7)], (None, 3))
    agree("adaptive_max_pool2d", [_x(2, 3, 5, 7)], (4, None))


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1)])
def test_max_unpool_inverts_max_pool_like_torch(nd, kw):
    torch = _torch()
    x = _x(2, 3, *(6, 4, 4)[:nd])
    pool = getattr(torch.nn.functional, f"max_pool{nd}d")
    out, idx = pool(torch.tensor(x), return_indices=True, **kw)
    if kw["kernel_size"] == 2:  # (the default output size holds every index)
        agree(f"max_unpool{nd}d", [out.numpy(), idx.numpy()], **kw)
    size = x.shape[2:]
    agree(f"max_unpool{nd}d", [out.numpy(), idx.numpy()], output_size=size, **kw)


def test_max_unpool_errors_match_torch():
    agree("max_unpool2d", [_x(1, 1, 2, 2), np.full((1, 1, 2, 2), 17, np.int64)], 2)
    agree("max_unpool2d", [_x(1, 1, 2, 2), np.zeros((1, 1, 2, 2), np.int64)], 2, output_size=(9, 9))


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("p", [1.0, 2.0, 3.5])
def test_lp_pool_matches_torch(nd, p):
    x = np.abs(_x(2, 3, *(7, 6, 5)[:nd])) + 0.2
    agree(f"lp_pool{nd}d", [x], p, 2)
    agree(f"lp_pool{nd}d", [x], p, 3, stride=2, ceil_mode=True)


@pytest.mark.parametrize(
    ("name", "shape", "args", "kw"),
    [
        ("max_pool2d", (2, 3, 5, 7), (3,), {"padding": 2}),
        ("max_pool1d", (2, 3, 5), (7,), {}),
        ("max_pool3d", (3, 5), (3,), {}),
        ("avg_pool3d", (2, 3, 5, 7, 6), (9,), {}),
        ("adaptive_avg_pool2d", (5,), (3,), {}),
    ],
)
def test_pool_errors_match_torch(name, shape, args, kw):
    agree(name, [_x(*shape)], *args, **kw)


# -- interpolate, pixel shuffle -------------------------------------------------------------------
_MODES = {1: ["nearest", "nearest-exact", "linear", "area"],
          2: ["nearest", "nearest-exact", "bilinear", "bicubic", "area"],
          3: ["nearest", "nearest-exact", "trilinear", "area"]}  # fmt: skip
_RESIZE = [
    dict(size=7),
    dict(size=2),
    dict(scale_factor=2.0),
    dict(scale_factor=1.7),
    dict(scale_factor=0.6, recompute_scale_factor=True),
]


_NO_CORNERS = ("nearest", "nearest-exact", "area")  # align_corners is for the interpolating modes


@pytest.mark.parametrize(
    ("nd", "mode", "align_corners"),
    [
        (nd, m, corners)
        for nd, modes in _MODES.items()
        for m in modes
        for corners in ([None] if m in _NO_CORNERS else [False, True])
    ],
)
@pytest.mark.parametrize("case", range(len(_RESIZE)))
def test_interpolate_matches_torch(nd, mode, case, align_corners):
    x = _x(2, 2, *(4, 5, 3)[:nd])
    agree("interpolate", [x], mode=mode, align_corners=align_corners, **_RESIZE[case])


def test_interpolate_per_dim_sizes_float32_and_errors():
    x = _x(2, 2, 4, 5)
    agree("interpolate", [x], size=(3, 8), mode="bilinear")
    agree("interpolate", [x], scale_factor=(1.5, 0.5), mode="bicubic", align_corners=True)
    agree("interpolate", [x.astype(np.float32)], size=(7, 3), mode="bilinear", rtol=1e-5,
          atol=1e-6)  # fmt: skip
    agree("interpolate", [x], size=(3, 3), mode="linear")
    agree("interpolate", [x], size=(3, 3), mode="nearest", align_corners=True)
    agree("interpolate", [x], size=(3,), mode="bilinear")
    agree("interpolate", [x])
    agree("interpolate", [x], size=3, scale_factor=2.0)
    agree("interpolate", [x], size=3, recompute_scale_factor=True)


@pytest.mark.parametrize(
    ("shape", "r"), [((2, 8, 2, 3), 2), ((9, 2, 3), 3), ((2, 2, 3, 9, 2, 3), 3), ((2, 7, 2, 3), 2)]
)
def test_pixel_shuffle_matches_torch(shape, r):
    agree("pixel_shuffle", [_x(*shape)], r)


@pytest.mark.parametrize(
    ("shape", "r"), [((2, 2, 4, 6), 2), ((2, 1, 2, 3, 6), 3), ((2, 2, 5, 6), 2), ((2, 3), 2)]
)
def test_pixel_unshuffle_matches_torch(shape, r):
    agree("pixel_unshuffle", [_x(*shape)], r)


# -- normalization --------------------------------------------------------------------------------
@pytest.mark.parametrize("groups", [1, 2, 3, 6])
def test_group_norm_matches_torch(groups):
    x = _x(2, 6, 3, 4)
    agree("group_norm", [x, groups, _x(6, seed=1), _x(6, seed=2)], grad=(0, 2, 3))
    agree("group_norm", [x[:, :, 0], groups], eps=0.1)


def test_group_norm_errors_match_torch():
    agree("group_norm", [_x(2, 6, 4), 4])
    agree("group_norm", [_x(2, 6, 4), 3, _x(5)])


@pytest.mark.parametrize("momentum", [0.1, 0.5])
def test_instance_norm_updates_running_stats_like_torch(momentum):
    x, rm, rv = _x(3, 4, 5, 2), _x(4, seed=1), np.abs(_x(4, seed=2)) + 0.5
    w, b = _x(4, seed=3), _x(4, seed=4)
    (t_in, j_in) = agree("instance_norm", [x, rm, rv, w, b], grad=(0, 3, 4), momentum=momentum)
    for k in (1, 2):
        np.testing.assert_allclose(j_in[k].numpy(), t_in[k].numpy(), rtol=1e-12)
    agree("instance_norm", [x, rm, rv, w, b], grad=(0, 3, 4), use_input_stats=False)
    agree("instance_norm", [x[0]])
    agree("instance_norm", [x[:, :, :1, :1]])
    agree("instance_norm", [x], use_input_stats=False)


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_local_response_norm_matches_torch(size):
    agree("local_response_norm", [_x(2, 6, 5, 4)], size, alpha=0.3, beta=0.6, k=1.2)
    agree("local_response_norm", [_x(2, 6, 5)], size)
    agree("local_response_norm", [_x(2, 5, 3, 2, 2)], size)


def test_local_response_norm_needs_3d():
    agree("local_response_norm", [_x(2, 6)], 3)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rms_norm_matches_torch(dtype):
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {}
    x = _x(2, 6, 3, 4, dtype=dtype)
    agree("rms_norm", [x, (3, 4), _x(3, 4, seed=1, dtype=dtype)], grad=(0, 2), **tol)
    agree("rms_norm", [x, [4]], eps=0.1, **tol)
    agree("rms_norm", [x * 1e-5, (4,)], **tol)  # eps=None: the dtype's epsilon matters here
    agree("rms_norm", [x, (5,)])


def test_layer_and_batch_norm_match_torch():
    x, rm, rv = _x(4, 3, 5), _x(3, seed=1), np.abs(_x(3, seed=2)) + 0.5
    agree("layer_norm", [x, (3, 5), _x(3, 5, seed=3), _x(3, 5, seed=4)], grad=(0, 2, 3))
    agree("batch_norm", [x, rm, rv, _x(3, seed=3), _x(3, seed=4)], grad=(0, 3, 4))
    t_in, j_in = agree("batch_norm", [x, rm, rv], training=True, momentum=0.3)
    for k in (1, 2):
        np.testing.assert_allclose(j_in[k].numpy(), t_in[k].numpy(), rtol=1e-12)


# -- distances ------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, math.inf])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_normalize_matches_torch(p, dim):
    agree("normalize", [_x(3, 4, 5)], p=p, dim=dim)


def test_cosine_similarity_and_pairwise_distance_match_torch():
    x = _x(3, 4, 5)
    agree("cosine_similarity", [x, x[0]], grad=(0, 1))
    agree("cosine_similarity", [x, _x(3, 1, 5, seed=1)], grad=(0, 1), dim=-1)
    # norms below eps: the value is clamped, the gradient the unclamped norm's (as torch)
    agree("cosine_similarity", [x * 1e-5, x[1] * 1e-4], grad=(0, 1), dim=2, eps=1e-3)
    agree("cosine_similarity", [x, _x(2, 4, 5)])
    for p in (1.0, 2.0, math.inf):
        agree("pairwise_distance", [x, _x(4, 5, seed=1)], grad=(0, 1), p=p)
        agree("pairwise_distance", [x[0], x[1]], grad=(0, 1), p=p, keepdim=True)
    agree("pairwise_distance", [x[0, 0], x[1, 1]], grad=(0, 1))


# -- embedding, one_hot ---------------------------------------------------------------------------
def test_embedding_padding_idx_gets_no_gradient_like_torch():
    idx = np.array([[0, 2, 4], [2, 2, 1]])
    agree("embedding", [idx, _x(5, 3)], grad=(1,), padding_idx=2)
    agree("embedding", [idx, _x(5, 3)], grad=(1,), padding_idx=-1)


def test_embedding_max_norm_renormalizes_the_rows_in_place_like_torch():
    idx = np.array([[0, 2, 4], [2, 2, 1]])
    weight = _x(5, 3) * 3
    torch = _torch()
    with torch.no_grad():
        t_w = torch.tensor(weight)
        t_out = torch.nn.functional.embedding(torch.tensor(idx), t_w, max_norm=1.5, norm_type=3.0)
    j_w = jg.tensor(weight)
    j_out = F.embedding(jg.tensor(idx), j_w, max_norm=1.5, norm_type=3.0)
    np.testing.assert_allclose(j_out.numpy(), t_out.numpy(), rtol=1e-12)
    np.testing.assert_allclose(j_w.numpy(), t_w.numpy(), rtol=1e-12)  # rows 0, 1, 2, 4 renormed
    assert np.array_equal(j_w.numpy()[3], weight[3])


def test_embedding_bad_index_leaves_the_weight_as_it_was():
    weight = _x(5, 3) * 3
    w = jg.tensor(weight)
    with pytest.raises(IndexError, match="index out of range in self"):
        F.embedding(jg.tensor(np.array([1, 7])), w, max_norm=1.0)
    assert np.array_equal(w.numpy(), weight)


def test_one_hot_matches_torch():
    agree("one_hot", [np.array([[0, 3], [1, 1]])], grad=())
    agree("one_hot", [np.array([0, 3, 1])], 6, grad=())


def test_one_hot_inferring_num_classes_cannot_be_traced():
    fn = jg.compile(lambda t: F.one_hot(t), backend="interpreter")
    with pytest.raises(jg.TraceError):
        fn(jg.tensor(np.array([0, 2, 1])))


# -- compiled -------------------------------------------------------------------------------------
@pytest.fixture
def _cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("JITGRAD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "jg-cache"))


def _layers(x, w1, wt, g):
    y = F.conv1d(F.pad(x, (2, 1), mode="reflect"), w1, stride=2, padding=1)  # (2, 4, 6)
    z = F.conv_transpose2d(y.reshape(2, 4, 2, 3), wt, stride=2, output_padding=1)  # (2, 4, 5, 7)
    z = F.group_norm(F.interpolate(z, scale_factor=1.5, mode="bilinear"), 2, weight=g)
    p = F.max_pool3d(z.unsqueeze(1), 2, ceil_mode=True)
    q = F.adaptive_avg_pool2d(F.pixel_shuffle(F.unfold(z, 2).reshape(2, 16, 6, 9), 2), (3, 2))
    return (p.sum() + F.lp_pool2d(F.relu(z) + 0.1, 2.0, 2).sum()) * q.mean()


@pytest.mark.filterwarnings("error")  # (a fallback to the interpreter warns: strict)
def test_layer_ops_compile_with_numba_like_eager(_cache_dir):
    rng = np.random.default_rng(0)
    x = jg.tensor(rng.standard_normal((2, 3, 9)))
    w1 = jg.tensor(rng.standard_normal((4, 3, 3)), requires_grad=True)
    wt = jg.tensor(rng.standard_normal((4, 4, 2, 2)), requires_grad=True)
    g = jg.tensor(rng.standard_normal(4), requires_grad=True)

    def step(x, w1, wt, g):
        loss = _layers(x, w1, wt, g)
        return (loss, *jg.autograd.grad(loss, [w1, wt, g]))

    fn = jg.compile(step, backend="numba", check=True)
    for seed in (1, 2):  # the second call replays the compiled code on new values
        got, want = fn(x, w1, wt, g), step(x, w1, wt, g)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-9, atol=1e-12)
        x = jg.tensor(np.random.default_rng(seed).standard_normal((2, 3, 9)))
    assert fn.stats.traces == 1
