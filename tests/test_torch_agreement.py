"""Small programs run in jitgrad and in PyTorch on the same float64 data: values and gradients
agree.

Each program is written once against a namespace ``m`` (``jitgrad`` or ``torch``) so both libraries
run literally the same code. Skipped when torch is not installed (it is never a dependency).
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jitgrad as jg  # noqa: E402

TOL = 1e-10


def _nn_functional(m):
    if m is torch:
        return torch.nn.functional
    try:
        from jitgrad.nn import functional
    except ImportError:
        return None
    return functional


def _cross_entropy(m, a, b):
    F = _nn_functional(m)
    if F is None or not hasattr(F, "cross_entropy"):
        pytest.skip("jitgrad.nn.functional.cross_entropy is not available")
    target = m.tensor([1, 0, 3])
    return F.cross_entropy(a @ b, target) + F.cross_entropy(a @ b, target, reduction="sum") * 0.1


def _inplace_views(m, a, b):
    y = a * 1
    y[0] += b
    y[:, 1:3].mul_(y[:, :2].clone())
    y.T[3].mul_(a[:, 0])
    y.T[2].sub_(1.5)
    y[m.tensor([2, 0])] = b * 3
    return y * a


def _setitem_mask(m, a, b):
    y = m.tanh(a) * 1
    y[a > 0.3] = 0.5
    y[1, 2:] = b[:2]
    return y.sum(0) * b


# (name, input shapes, program(m, *inputs) -> tensor); inputs are float64 and require grad
PROGRAMS = [
    ("arith_broadcast", [(3, 4), (4,)], lambda m, a, b: (a * b - b / (a * a + 1) + 2.0 - a).sum()),
    ("rsub_rdiv_pow", [(3, 4), (1, 4)], lambda m, a, b: (1 - a) * (3 / (b * b + 1)) + a**3 - 2**b),
    ("exp_log_tanh", [(2, 5)], lambda m, a: m.log(m.exp(a) + 1) * m.tanh(a) + m.sqrt(a * a + 0.5)),
    ("trig_abs", [(4, 3), (4, 1)], lambda m, a, b: m.sin(a) * m.cos(b) + m.abs(a - b)),
    ("sigmoid_relu", [(3, 4)], lambda m, a: m.sigmoid(a) * m.relu(a - 0.1) + m.relu(-a).sum(0)),
    ("sum_dims_keepdim", [(2, 3, 4)], lambda m, a: a.sum((0, 2)) + a.sum(1, keepdim=True).sum()),
    ("mean_var_std", [(3, 5)], lambda m, a: a.mean(1) * a.var(1) + a.std(0, keepdim=True).sum()),
    ("amax_amin", [(3, 4)], lambda m, a: m.amax(a, 1) - m.amin(a, 0, keepdim=True).sum()),
    ("max_dim_values", [(4, 3)], lambda m, a: a.max(1).values * a.min(0).values.sum()),
    ("matmul_2d", [(3, 4), (4, 2)], lambda m, a, b: m.tanh(a @ b)),
    ("matmul_batched_broadcast", [(2, 3, 4), (4, 5), (5,)], lambda m, a, b, c: (a @ b) @ c),
    ("bmm", [(2, 3, 4), (2, 4, 2)], lambda m, a, b: m.matmul(a, b).exp().sum(-1)),
    ("softmax", [(3, 5)], lambda m, a: m.softmax(a * 3, 1) * m.softmax(a, 0)),
    ("log_softmax", [(4, 6)], lambda m, a: m.log_softmax(a, -1)[:, 1:4]),
    ("logsumexp", [(3, 4, 2)], lambda m, a: m.logsumexp(a * 5, 1) + m.logsumexp(a, (0, 2)).sum()),
    ("index_basic", [(4, 5)], lambda m, a: a[1:, ::2] * a[0, ::2] + a[..., None, 2].sum()),
    (
        "index_advanced",
        [(4, 5), (3,)],
        lambda m, a, b: (
            a[m.tensor([0, 2, 2])] * b[:, None] + a[m.tensor([1, 3]), m.tensor([4, 0])].sum()
        ),
    ),
    (
        "where_maximum",
        [(3, 4), (3, 4)],
        lambda m, a, b: m.where(a > b, a * b, b - a) + m.maximum(a, b * 0.5),
    ),
    ("clamp", [(5, 3)], lambda m, a: m.clamp(a, -0.5, 0.7) * a),
    (
        "cat_stack_reshape",
        [(2, 3), (2, 3)],
        lambda m, a, b: m.cat([a, b * 2], 1).reshape(3, 4).T @ m.stack([a, b], 0).reshape(3, 4),
    ),
    (
        "permute_transpose_expand",
        [(2, 3, 4), (3, 1)],
        lambda m, a, b: a.permute(2, 0, 1) * b.expand(3, 4).transpose(0, 1)[:, None],
    ),
    (
        "unsqueeze_squeeze_flatten",
        [(3, 1, 4)],
        lambda m, a: a.squeeze(1).unsqueeze(0).flatten() ** 2,
    ),
    ("gather", [(3, 4)], lambda m, a: m.gather(a, 1, m.tensor([[0, 0], [3, 1], [2, 2]])) * 2),
    ("inplace_views", [(3, 4), (4,)], _inplace_views),
    ("setitem_mask", [(3, 4), (4,)], _setitem_mask),
    ("cross_entropy", [(3, 4), (4, 5)], _cross_entropy),
]


def _run(m, program, arrays):
    if m is torch:
        inputs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    else:
        inputs = [jg.tensor(a, dtype=jg.float64, requires_grad=True) for a in arrays]
    out = program(m, *inputs)
    cotangent = np.random.default_rng(1).normal(size=tuple(out.shape))
    ct = torch.tensor(cotangent) if m is torch else jg.tensor(cotangent, dtype=jg.float64)
    grads = (
        torch.autograd.grad(out, inputs, ct, allow_unused=True)
        if m is torch
        else jg.autograd.grad(out, inputs, ct, allow_unused=True)
    )
    value = out.detach().numpy()
    grads = [None if g is None else g.detach().numpy() for g in grads]
    return value, grads


@pytest.mark.parametrize("name, shapes, program", PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_values_and_gradients_agree_with_torch(name, shapes, program):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    arrays = [rng.normal(size=s) for s in shapes]
    got_value, got_grads = _run(jg, program, arrays)
    want_value, want_grads = _run(torch, program, arrays)
    assert got_value.shape == want_value.shape
    np.testing.assert_allclose(got_value, want_value, rtol=TOL, atol=TOL)
    for got, want in zip(got_grads, want_grads):
        if want is None:
            assert got is None or not np.any(got)
            continue
        np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)


def test_second_order_gradients_agree_with_torch():
    rng = np.random.default_rng(7)
    a_np, b_np = rng.normal(size=(3, 4)), rng.normal(size=(4,))

    def second(m, a, b):
        y = (m.tanh(a * b) ** 2 + m.exp(a).sum(1, keepdim=True) * b).sum()
        (ga,) = m.autograd.grad(y, a, create_graph=True)
        (hb,) = m.autograd.grad((ga * ga).sum(), b)
        return hb.detach().numpy()

    got = second(jg, *(jg.tensor(x, dtype=jg.float64, requires_grad=True) for x in (a_np, b_np)))
    want = second(torch, *(torch.tensor(x, requires_grad=True) for x in (a_np, b_np)))
    np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)


_REPRS = [
    6.0,
    -0.0,
    [1.0, 2.0],
    [1.0, -2.0, 300.0],
    [[1.0, 2.0], [3.0, 40.0]],
    [float("nan"), 1.0],
    [float("inf"), -2.0],
    [0.0, 0.0],
    [1.5, 2.25],
    [1e9, 1.0],
    [1.0, 2000.0],
    list(range(30)),
    np.linspace(-3, 3, 30).tolist(),
    (np.arange(36).reshape(3, 12) / 7).tolist(),
    (np.arange(36).reshape(3, 12) - 18.0).tolist(),
]


@pytest.mark.parametrize("values", _REPRS, ids=range(len(_REPRS)))
def test_float32_tensors_print_as_pytorch_prints_them(values):
    # whole numbers in PyTorch's "int mode" (6., [1., 2.]), else four fixed digits or
    # scientific notation, and PyTorch's line wrapping
    ours = repr(jg.tensor(values, dtype=jg.float32))
    assert ours == repr(torch.tensor(values, dtype=torch.float32))
