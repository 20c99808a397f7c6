"""Convolution and pooling: forward against naive NumPy loops, gradients against finite
differences, modules, error messages, and the Numba backend against the interpreter."""

from __future__ import annotations

import math

import numpy as np
import pytest

import jitgrad as jg
import jitgrad.nn as nn
import jitgrad.nn.functional as F

RNG = np.random.default_rng(0)


# -- naive references: a Python loop over every output element -----------------------------------
def _pad_np(x, pads, mode="zeros", value=0.0):
    widths = ((0, 0), (0, 0)) + tuple(pads)
    if mode == "zeros":
        return np.pad(x, widths, constant_values=value)
    return np.pad(x, widths, mode={"reflect": "reflect", "replicate": "edge"}.get(mode, "wrap"))


def ref_conv2d(x, w, b, stride, pads, dilation, groups=1, mode="zeros"):
    (sh, sw), (dh, dw) = stride, dilation
    xp = _pad_np(x, pads, mode)
    n, c = x.shape[:2]
    oc, cg, kh, kw = w.shape
    oh = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, oc, oh, ow))
    per_group = oc // groups
    for i in range(n):
        for o in range(oc):
            g = o // per_group
            for y in range(oh):
                for z in range(ow):
                    window = xp[
                        i,
                        g * cg : (g + 1) * cg,
                        y * sh : y * sh + dh * (kh - 1) + 1 : dh,
                        z * sw : z * sw + dw * (kw - 1) + 1 : dw,
                    ]
                    out[i, o, y, z] = (window * w[o]).sum() + (b[o] if b is not None else 0.0)
    return out


def _pool_out(size, k, s, p, d, ceil):
    o = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)) // s + 1
    if ceil and (o - 1) * s >= size + p:
        o -= 1
    return o


def ref_pool2d(x, kind, k, s, p, d=(1, 1), ceil=False, count_include_pad=True, divisor=None):
    """PyTorch's CPU pooling loops: windows start at o*s - p; max ignores padding; avg divides
    by the window clipped to the padded input (or to the input without count_include_pad)."""
    n, c, h, w = x.shape
    oh, ow = (_pool_out(sz, *a, ceil) for sz, a in zip((h, w), zip(k, s, p, d)))
    out = np.zeros((n, c, oh, ow))
    for y in range(oh):
        for z in range(ow):
            r0, c0 = y * s[0] - p[0], z * s[1] - p[1]
            if kind == "max":
                rows = [r for r in range(r0, r0 + d[0] * (k[0] - 1) + 1, d[0]) if 0 <= r < h]
                cols = [q for q in range(c0, c0 + d[1] * (k[1] - 1) + 1, d[1]) if 0 <= q < w]
                out[:, :, y, z] = x[:, :, rows][:, :, :, cols].max(axis=(2, 3))
                continue
            r1, c1 = min(r0 + k[0], h + p[0]), min(c0 + k[1], w + p[1])
            size = (r1 - r0) * (c1 - c0)
            r0, c0, r1, c1 = max(r0, 0), max(c0, 0), min(r1, h), min(c1, w)
            total = x[:, :, r0:r1, c0:c1].sum(axis=(2, 3))
            if divisor is None:
                divisor_here = size if count_include_pad else (r1 - r0) * (c1 - c0)
            else:
                divisor_here = divisor
            out[:, :, y, z] = total / divisor_here
    return out


def _t(a, grad=False):
    return jg.tensor(a, requires_grad=grad)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


# -- forward ---------------------------------------------------------------------------------------
CONV_CASES = [
    dict(),
    dict(stride=2),
    dict(padding=1),
    dict(stride=(2, 1), padding=(1, 2)),
    dict(dilation=2, padding=2),
    dict(stride=3, padding=(2, 0), dilation=(1, 2)),
    dict(padding="same"),
    dict(padding="same", dilation=(2, 1)),
    dict(padding="valid"),
    dict(groups=2, padding=1),
]


@pytest.mark.parametrize("cfg", CONV_CASES, ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_forward_matches_naive_loops(cfg, bias):
    groups = cfg.get("groups", 1)
    x = RNG.standard_normal((2, 4, 7, 6))
    w = RNG.standard_normal((6, 4 // groups, 3, 2))  # non-square kernel
    b = RNG.standard_normal(6) if bias else None
    got = F.conv2d(_t(x), _t(w), None if b is None else _t(b), **cfg)
    stride, dilation = _pair(cfg.get("stride", 1)), _pair(cfg.get("dilation", 1))
    padding = cfg.get("padding", 0)
    if padding == "same":
        total = [d * (k - 1) for d, k in zip(dilation, (3, 2))]
        pads = tuple((t // 2, t - t // 2) for t in total)
    elif padding == "valid":
        pads = ((0, 0), (0, 0))
    else:
        pads = tuple((p, p) for p in _pair(padding))
    want = ref_conv2d(x, w, b, stride, pads, dilation, groups)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
    if padding == "same":
        assert got.shape[2:] == x.shape[2:]


def test_conv2d_unbatched_1x1_and_float32():
    x = RNG.standard_normal((3, 5, 4))
    w = RNG.standard_normal((2, 3, 3, 3))
    got = F.conv2d(_t(x), _t(w), padding=1)
    want = ref_conv2d(x[None], w, None, (1, 1), ((1, 1), (1, 1)), (1, 1))[0]
    assert got.shape == (2, 5, 4)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
    # 1x1 kernels skip the gather
    w1 = RNG.standard_normal((4, 3, 1, 1))
    got = F.conv2d(_t(x[None]), _t(w1))
    np.testing.assert_allclose(
        got.numpy(), ref_conv2d(x[None], w1, None, (1, 1), ((0, 0),) * 2, (1, 1))
    )
    # float32 stays float32, and the result is NCHW-contiguous (view works)
    out = F.conv2d(_t(x[None].astype(np.float32)), _t(w.astype(np.float32)), padding=1)
    assert out.dtype is jg.float32 and out.is_contiguous()
    assert out.view(-1).shape == (2 * 5 * 4,)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_conv2d_module_padding_modes(mode):
    jg.manual_seed(0)
    m = nn.Conv2d(2, 3, (3, 2), padding=(1, 1), padding_mode=mode, dtype=jg.float64)
    x = RNG.standard_normal((2, 2, 5, 4))
    want = ref_conv2d(
        x, m.weight.detach().numpy(), m.bias.detach().numpy(), (1, 1), ((1, 1), (1, 1)), (1, 1),
        mode=mode,
    )  # fmt: skip
    np.testing.assert_allclose(m(_t(x)).detach().numpy(), want, rtol=1e-12, atol=1e-12)


POOL_CASES = [  # up to 4 taps pool strided slices, more gather the windows
    dict(kernel_size=2),
    dict(kernel_size=2, stride=1, padding=1),
    dict(kernel_size=(1, 3), stride=2, padding=(0, 1), ceil_mode=True),
    dict(kernel_size=3, stride=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 1)),
    dict(kernel_size=3, stride=2, ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=(3, 1), padding=(1, 0), ceil_mode=True),
]


def _pool_args(cfg):
    k = _pair(cfg["kernel_size"])
    s = _pair(cfg.get("stride", k))
    return k, s, _pair(cfg.get("padding", 0)), cfg.get("ceil_mode", False)


@pytest.mark.parametrize("cfg", POOL_CASES, ids=str)
def test_pools_forward_match_naive_loops(cfg):
    x = RNG.standard_normal((2, 3, 7, 8))
    k, s, p, ceil = _pool_args(cfg)
    got = F.max_pool2d(_t(x), **cfg)
    np.testing.assert_array_equal(got.numpy(), ref_pool2d(x, "max", k, s, p, ceil=ceil))
    for cip in (True, False):
        got = F.avg_pool2d(_t(x), count_include_pad=cip, **cfg)
        want = ref_pool2d(x, "avg", k, s, p, ceil=ceil, count_include_pad=cip)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-15)
    got = F.avg_pool2d(_t(x), divisor_override=5, **cfg)
    want = ref_pool2d(x, "avg", k, s, p, ceil=ceil, divisor=5)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-15)


def test_max_pool_dilation_integers_unbatched_and_indices():
    x = RNG.standard_normal((2, 3, 9, 8))
    got = F.max_pool2d(_t(x), 3, stride=2, padding=1, dilation=2)
    want = ref_pool2d(x, "max", (3, 3), (2, 2), (1, 1), (2, 2))
    np.testing.assert_array_equal(got.numpy(), want)
    xi = RNG.integers(-50, 50, (3, 7, 8))  # unbatched int64, padding never wins
    got = F.max_pool2d(_t(xi), 3, 2, 1)
    assert got.dtype is jg.int64
    np.testing.assert_array_equal(
        got.numpy(), ref_pool2d(xi[None], "max", *[(3, 3), (2, 2), (1, 1)])[0]
    )
    # indices: flat h * W + w of the first maximum of each window
    values, idx = F.max_pool2d(_t(x), 3, stride=2, padding=1, return_indices=True)
    flat = x.reshape(2, 3, -1)
    picked = np.take_along_axis(flat, idx.numpy().reshape(2, 3, -1), 2).reshape(values.shape)
    np.testing.assert_array_equal(picked, values.numpy())
    assert idx.dtype is jg.int64
    tie = np.zeros((1, 1, 2, 2))
    assert F.max_pool2d(_t(tie), 2, return_indices=True)[1].item() == 0  # the first of a tie


def test_max_pool_gradient_goes_to_the_first_maximum_of_a_tie():
    # as PyTorch: the whole gradient of a window goes to its first maximum, none to the others
    x = jg.tensor([[[[1.0, 3.0, 2.0, 2.0], [3.0, 0.0, 2.0, 2.0]]]], requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[[[0, 1, 1, 0], [0, 0, 0, 0]]]])


# -- gradients -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cfg",
    [dict(), dict(stride=2, padding=1), dict(dilation=(2, 1), padding=(2, 1)), dict(groups=2)],
    ids=str,
)
def test_conv2d_gradcheck(cfg):
    groups = cfg.get("groups", 1)
    x = _t(RNG.standard_normal((2, 2, 5, 4)), True)
    w = _t(RNG.standard_normal((2, 2 // groups, 3, 2)), True)
    b = _t(RNG.standard_normal(2), True)
    assert jg.autograd.gradcheck(lambda x, w, b: F.conv2d(x, w, b, **cfg), (x, w, b))


def test_conv2d_padding_mode_gradcheck():
    m = nn.Conv2d(1, 2, 3, stride=2, padding=1, padding_mode="reflect", dtype=jg.float64)
    x = _t(RNG.standard_normal((1, 1, 4, 5)), True)
    # gradcheck perturbs the parameters in place, so m sees the perturbed values
    assert jg.autograd.gradcheck(lambda x, w, b: m(x), (x, m.weight, m.bias))


@pytest.mark.parametrize(
    "cfg",
    [
        dict(kernel_size=2),
        dict(kernel_size=2, stride=1, padding=1),
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=(2, 3), stride=1, ceil_mode=True),
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    ],
    ids=str,
)
def test_pool_gradcheck(cfg):
    # distinct values: the maximum is unique, so max pooling is differentiable there
    x = _t(RNG.permutation(2 * 2 * 5 * 5).reshape(2, 2, 5, 5) / 7.0, True)
    assert jg.autograd.gradcheck(lambda x: F.max_pool2d(x, **cfg), (x,))
    for cip in (True, False):
        avg = lambda x, cip=cip: F.avg_pool2d(x, count_include_pad=cip, **cfg)  # noqa: E731
        assert jg.autograd.gradcheck(avg, (x,))


# -- modules ---------------------------------------------------------------------------------------
def test_conv2d_module_init_repr_and_params():
    jg.manual_seed(0)
    m = nn.Conv2d(4, 16, 3, padding=1)
    assert m.weight.shape == (16, 4, 3, 3) and m.bias.shape == (16,)
    bound = 1 / math.sqrt(4 * 9)  # kaiming_uniform_(a=sqrt(5)) on fan_in = C * KH * KW
    w, b = m.weight.detach().numpy(), m.bias.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound
    assert np.abs(b).max() <= bound
    assert len(list(m.parameters())) == 2
    assert repr(m) == "Conv2d(4, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))"
    m2 = nn.Conv2d(1, 16, (3, 5), stride=2, dilation=2, bias=False, padding_mode="reflect")
    assert repr(m2) == (
        "Conv2d(1, 16, kernel_size=(3, 5), stride=(2, 2), dilation=(2, 2), bias=False, "
        "padding_mode=reflect)"
    )
    assert m2.bias is None and len(list(m2.parameters())) == 1
    assert repr(nn.Conv2d(2, 4, 3, padding="same", groups=2)) == (
        "Conv2d(2, 4, kernel_size=(3, 3), stride=(1, 1), padding=same, groups=2)"
    )
    assert repr(nn.MaxPool2d(2)) == (
        "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)"
    )
    assert repr(nn.AvgPool2d(3, 2, 1)) == "AvgPool2d(kernel_size=3, stride=2, padding=1)"
    x = jg.randn(2, 4, 6, 6)
    out = nn.AvgPool2d(2)(nn.MaxPool2d(3, 1, 1)(m(x)))
    assert out.shape == (2, 16, 3, 3)
    out.sum().backward()
    assert m.weight.grad.shape == m.weight.shape and m.bias.grad.shape == (16,)


@pytest.mark.torch
def test_agreement_with_torch():
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    x = RNG.standard_normal((2, 4, 9, 8))
    w = RNG.standard_normal((6, 2, 3, 2))
    b = RNG.standard_normal(6)
    g = RNG.standard_normal((2, 6, 3, 5))

    def run(lib, f):
        xs = [lib.tensor(a, requires_grad=True) for a in (x, w, b)]
        out = f(*xs)
        out.backward(lib.tensor(g))
        return [out.detach().numpy()] + [t.grad.numpy() for t in xs]

    def net(fn):
        def f(x, w, b):
            y = fn.conv2d(x, w, b, stride=(1, 2), padding=(1, 2), dilation=(2, 1), groups=2)
            y = fn.max_pool2d(fn.relu(y) + y, 3, stride=2, padding=1, ceil_mode=True)
            return fn.avg_pool2d(y, 2, stride=1, padding=1, count_include_pad=False)[:, :, :3]

        return f

    for a, t in zip(run(jg, net(F)), run(torch, net(tf))):
        np.testing.assert_allclose(a, t, rtol=1e-10, atol=1e-12)


# -- errors ----------------------------------------------------------------------------------------
def test_error_messages():
    x, w = jg.randn(2, 3, 8, 8), jg.randn(16, 3, 3, 3)
    cases = [
        (lambda: F.conv2d(jg.randn(3, 8), w), r"Expected 3D \(unbatched\) or 4D \(batched\) input"),
        (
            lambda: F.conv2d(jg.randn(2, 4, 8, 8), w),
            r"Given groups=1, weight of size \[16, 3, 3, 3\], expected input\[2, 4, 8, 8\] to "
            r"have 3 channels, but got 4 channels instead",
        ),
        (lambda: F.conv2d(jg.randn(4, 8, 8), w), r"expected input\[1, 4, 8, 8\] to have 3"),
        (
            lambda: F.conv2d(jg.randn(2, 3, 2, 2), w),
            r"Calculated padded input size per channel: \(2 x 2\). Kernel size: \(3 x 3\). "
            "Kernel size can't be greater than actual input size",
        ),
        (lambda: F.conv2d(x, w, jg.randn(15)), "expected bias to be 1-dimensional with 16"),
        (lambda: F.conv2d(x, w, stride=2, padding="same"), "padding='same' is not supported"),
        (lambda: F.conv2d(x, w, padding="full"), "Invalid padding string: 'full'"),
        (lambda: F.conv2d(x, w, stride=0), "non-positive stride is not supported"),
        (lambda: F.conv2d(x, w, padding=-1), "negative padding is not supported"),
        (lambda: F.conv2d(x, w, stride=(1, 1, 1)), "expected stride to be a single integer"),
        (lambda: F.conv2d(x, jg.randn(16, 3, 3)), "expected a 4-D weight"),
        (lambda: F.conv2d(x.double(), w), "expected scalar type Double but found Float"),
        (
            lambda: F.max_pool2d(x, 2, padding=2),
            "pad should be at most half of effective kernel size, but got pad=2, kernel_size=2 "
            "and dilation=1",
        ),
        (lambda: F.avg_pool2d(x, 3, padding=2), "pad should be at most half of effective"),
        (lambda: F.max_pool2d(x, 3, padding=2, dilation=2), "pad should be smaller than or equal"),
        (
            lambda: F.max_pool2d(jg.randn(2, 3, 1, 1), 2),
            r"Given input size: \(3x1x1\). Calculated output size: \(3x0x0\). Output size is too "
            "small",
        ),
        (lambda: F.max_pool2d(jg.randn(3, 8), 2), "non-empty 3D or 4D"),
        (lambda: F.max_pool2d(x, (2, 2, 2)), "kernel_size must either be a single int"),
        (lambda: F.max_pool2d(x, 2, stride=0), "stride should not be zero"),
        (lambda: F.avg_pool2d(x, 2, divisor_override=0), "divisor must be not zero"),
        (lambda: F.avg_pool2d(x.long(), 2), "convert the input to a floating point dtype"),
    ]
    for fn, pattern in cases:
        with pytest.raises(RuntimeError, match=pattern):
            fn()
    module_cases = [
        (lambda: nn.Conv2d(3, 16, 3, groups=2), "in_channels must be divisible by groups"),
        (lambda: nn.Conv2d(4, 15, 3, groups=2), "out_channels must be divisible by groups"),
        (lambda: nn.Conv2d(1, 4, 3, padding_mode="edge"), "padding_mode must be one of"),
        (lambda: nn.Conv2d(1, 4, 3, stride=2, padding="same"), "not supported for strided"),
        (lambda: nn.Conv2d(1, 4, 3, padding="full"), "Invalid padding string 'full'"),
    ]
    for fn, pattern in module_cases:
        with pytest.raises(ValueError, match=pattern):
            fn()
    with pytest.raises(RuntimeError, match="Padding size should be less than"):
        nn.Conv2d(1, 1, 3, padding=3, padding_mode="reflect")(jg.randn(1, 1, 3, 3))


# -- compiled --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_numba_conv_pool_forward_backward_match_interpreter(tmp_path, monkeypatch):
    monkeypatch.setenv("JITGRAD_CACHE_DIR", str(tmp_path))
    jg.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    conv2 = nn.Conv2d(3, 2, 2, stride=2, bias=False)
    params = [conv.weight, conv.bias, conv2.weight]

    def f(x):
        for p in params:
            p.grad = None
        y = F.relu(conv(x))
        big = F.max_pool2d(y, 3, stride=2, padding=1, ceil_mode=True)
        y = F.max_pool2d(y, 2) + big[:, :, :2, 1:]
        z = F.avg_pool2d(y, 3, stride=1, padding=1, count_include_pad=False)
        loss = (z * z).sum() + conv2(y).sum()
        loss.backward()
        return (loss, x.grad, *[p.grad for p in params])

    step = jg.compile(f, backend="numba", check=True)  # check: every value vs the interpreter
    for i, batch in enumerate((3, 3, 2, 2)):  # each size: a trace, then the compiled step
        x = RNG.standard_normal((batch, 2, 5, 5)).astype(np.float32)
        if i == 2:  # a new batch size
            compiles = step.stats.backend_compiles
        got = [t.detach().numpy().copy() for t in step(jg.tensor(x, requires_grad=True))]
        want = [t.detach().numpy() for t in f(jg.tensor(x, requires_grad=True))]
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # a new batch size costs a retrace, not a Numba compile (sizes are runtime values)
    assert step.stats.backend_compiles == compiles, step.stats
    assert step.stats.cache_hits == 2, step.stats  # the compiled step ran at both sizes
