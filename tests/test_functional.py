"""autograd.functional: vjp, jvp, jacobian, hessian, vhp, hvp against closed forms in NumPy."""

from __future__ import annotations

import numpy as np
import pytest

import jitgrad as jg
from jitgrad.autograd.functional import hessian, hvp, jacobian, jvp, vhp, vjp

RNG = np.random.default_rng(1234)


def t64(values, requires_grad: bool = False) -> jg.Tensor:
    return jg.tensor(np.asarray(values, dtype=np.float64), requires_grad=requires_grad)


def rand(*shape) -> jg.Tensor:
    return t64(RNG.uniform(-1.0, 1.0, shape))


def npy(t: jg.Tensor) -> np.ndarray:
    return t.detach().numpy()


def close(actual, expected, tol: float = 1e-10) -> None:
    np.testing.assert_allclose(npy(actual), expected, rtol=tol, atol=tol)


def softmax_np(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


# -- jacobian ------------------------------------------------------------------------------------


def test_jacobian_square_is_diagonal():
    x = rand(4)
    j = jacobian(lambda a: a**2, x)
    assert isinstance(j, jg.Tensor) and tuple(j.shape) == (4, 4)
    close(j, np.diag(2 * npy(x)))


def test_jacobian_shape_is_output_then_input():
    x = rand(2, 3)
    j = jacobian(lambda a: a.sin(), x)
    assert tuple(j.shape) == (2, 3, 2, 3)
    expected = np.zeros((2, 3, 2, 3))
    for i in range(2):
        for k in range(3):
            expected[i, k, i, k] = np.cos(npy(x)[i, k])
    close(j, expected)


def test_jacobian_matmul_two_inputs():
    a, b = rand(3, 4), rand(4, 2)
    ja, jb = jacobian(lambda p, q: p @ q, (a, b))
    # d(AB)_ij / dA_kl = delta_ik B_lj ;  d(AB)_ij / dB_kl = A_ik delta_jl
    eye3, eye2 = np.eye(3), np.eye(2)
    close(ja, np.einsum("ik,lj->ijkl", eye3, npy(b)))
    close(jb, np.einsum("ik,jl->ijkl", npy(a), eye2))
    assert tuple(ja.shape) == (3, 2, 3, 4) and tuple(jb.shape) == (3, 2, 4, 2)


def test_jacobian_softmax_closed_form():
    x = rand(5)
    s = softmax_np(npy(x))
    close(jacobian(lambda a: a.softmax(-1), x), np.diag(s) - np.outer(s, s))


def test_jacobian_log_softmax_closed_form():
    x = rand(4)
    s = softmax_np(npy(x))
    close(jacobian(lambda a: a.log_softmax(-1), x), np.eye(4) - s[None, :])


def test_jacobian_tuple_structures():
    x, y = rand(3), rand(2)
    # one input, tuple of outputs -> tuple over outputs
    j = jacobian(lambda a: (a**2, a.sum()), x)
    assert isinstance(j, tuple) and len(j) == 2
    close(j[0], np.diag(2 * npy(x)))
    close(j[1], np.ones(3))
    assert tuple(j[1].shape) == (3,)
    # tuple of inputs, one output -> tuple over inputs
    j = jacobian(lambda a, b: a.sum() * b, (x, y))
    assert isinstance(j, tuple) and len(j) == 2
    close(j[0], np.outer(npy(y), np.ones(3)))
    close(j[1], np.eye(2) * npy(x).sum())
    # both tuples -> tuple (outputs) of tuples (inputs)
    j = jacobian(lambda a, b: (a * 2, b.exp()), (x, y))
    assert len(j) == 2 and all(isinstance(row, tuple) and len(row) == 2 for row in j)
    close(j[0][0], 2 * np.eye(3))
    close(j[0][1], np.zeros((3, 2)))
    close(j[1][0], np.zeros((2, 3)))
    close(j[1][1], np.diag(np.exp(npy(y))))
    # a one-element tuple still counts as a tuple
    j = jacobian(lambda a: a * 3, (x,))
    assert isinstance(j, tuple) and len(j) == 1
    close(j[0], 3 * np.eye(3))


def test_jacobian_inputs_are_detached_copies():
    x = t64([1.0, 2.0], requires_grad=True)
    seen = []

    def f(a):
        seen.append(a)
        return a * x  # x captured by closure is not the argument

    j = jacobian(f, x)
    assert seen[0] is not x and seen[0].requires_grad
    close(j, np.diag(npy(x)))
    assert not j.requires_grad and x.grad is None


def test_jacobian_create_graph_differentiates_again():
    x = rand(3)
    j = jacobian(lambda a: a**3, x, create_graph=True)
    assert j.requires_grad
    x2 = x.detach().requires_grad_()
    j = jacobian(lambda a: a**3, x2, create_graph=True)
    (g,) = jg.autograd.grad(j.sum(), x2)
    close(g, 6 * npy(x))


def test_jacobian_of_unused_input_is_zero_or_strict_error():
    x, y = rand(3), rand(2)
    j = jacobian(lambda a, b: a * 2, (x, y))
    close(j[1], np.zeros((3, 2)))
    with pytest.raises(RuntimeError, match="Output 0 of the user-provided function is independent"):
        jacobian(lambda a, b: a * 2, (x, y), strict=True)
    with pytest.raises(RuntimeError, match="does not require gradients"):
        jacobian(lambda a: a.detach() * 2, x, strict=True)
    # non-strict: an output without history has a zero jacobian
    close(jacobian(lambda a: a.detach() * 2, x), np.zeros((3, 3)))


def test_jacobian_forward_mode_matches_reverse():
    a, b = rand(3, 2), rand(2)
    f = lambda p, q: ((p @ q).tanh(), p.sum(0) * q)  # noqa: E731
    rev = jacobian(f, (a, b))
    fwd = jacobian(f, (a, b), vectorize=True, strategy="forward-mode")
    for r_row, f_row in zip(rev, fwd):
        for r, fw in zip(r_row, f_row):
            assert r.shape == fw.shape
            close(fw, npy(r))
    with pytest.raises(NotImplementedError, match="vectorize=True"):
        jacobian(f, (a, b), strategy="forward-mode")
    with pytest.raises(NotImplementedError, match="create_graph=True"):
        jacobian(f, (a, b), strategy="forward-mode", vectorize=True, create_graph=True)
    with pytest.raises(ValueError, match="forward-mode"):
        jacobian(f, (a, b), strategy="sideways")


def test_jacobian_rejects_lists():
    with pytest.raises(TypeError, match="must be either a Tensor or a tuple of Tensors"):
        jacobian(lambda a: a, [rand(2)])


# -- vjp / jvp ------------------------------------------------------------------------------------


def test_vjp_matches_numpy():
    a, w = rand(3, 4), rand(4, 2)
    v = rand(3, 2)
    out, (ga, gw) = vjp(lambda p, q: (p @ q).tanh(), (a, w), v)
    z = npy(a) @ npy(w)
    close(out, np.tanh(z))
    g = npy(v) * (1 - np.tanh(z) ** 2)
    close(ga, g @ npy(w).T)
    close(gw, npy(a).T @ g)


def test_vjp_scalar_output_without_v_and_create_graph():
    x = rand(4)
    out, g = vjp(lambda a: (a**2).sum(), x)
    close(out, (npy(x) ** 2).sum())
    close(g, 2 * npy(x))
    assert not out.requires_grad and not g.requires_grad
    out, g = vjp(lambda a: (a**2).sum(), x, create_graph=True)
    # as in PyTorch: the results hang off the fresh input copy, so they carry history
    assert out.requires_grad and g.requires_grad


def test_jvp_matches_numpy():
    x, y = rand(3), rand(3)
    u, w = rand(3), rand(3)
    out, jv = jvp(lambda a, b: (a * b.exp(), a.sin().sum()), (x, y), (u, w))
    xn, yn, un, wn = map(npy, (x, y, u, w))
    close(out[0], xn * np.exp(yn))
    close(jv[0], un * np.exp(yn) + xn * np.exp(yn) * wn)
    close(jv[1], (np.cos(xn) * un).sum())


def test_jvp_of_matmul_and_softmax():
    x, v = rand(4), rand(4)
    s = softmax_np(npy(x))
    _, jv = jvp(lambda a: a.softmax(-1), x, v)
    close(jv, (np.diag(s) - np.outer(s, s)) @ npy(v))
    a, w, va = rand(2, 3), rand(3, 3), rand(2, 3)
    _, jv = jvp(lambda p: p @ w, a, va)
    close(jv, npy(va) @ npy(w))


def test_jvp_and_vjp_zero_for_independent_parts():
    x, y = rand(3), rand(3)
    _, g = vjp(lambda a, b: a * 2, (x, y), rand(3))
    close(g[1], np.zeros(3))
    with pytest.raises(RuntimeError, match="independent of input 1"):
        vjp(lambda a, b: a * 2, (x, y), rand(3), strict=True)
    # linear in x: the backward does not depend on x itself, yet J v is still right
    _, jv = jvp(lambda a: a * 2, x, rand(3).fill_(1.0))
    close(jv, 2 * np.ones(3))
    with pytest.raises(RuntimeError, match="independent of the inputs"):
        jvp(lambda a: a.sign() * 1.0, x, rand(3), strict=True)


def test_v_validation_errors():
    x = rand(3)
    with pytest.raises(RuntimeError, match=r"v has invalid size: should be .*\[3\].* but got .*"):
        vjp(lambda a: a * 2, x, rand(2))
    with pytest.raises(RuntimeError, match="Entry 1 in v has invalid size"):
        jvp(lambda a, b: a * b, (x, x), (rand(3), rand(4)))
    with pytest.raises(RuntimeError, match="v is a tuple of invalid length: should be 2 but got 1"):
        jvp(lambda a, b: a * b, (x, x), (rand(3),))
    with pytest.raises(RuntimeError, match="The given v should contain a single Tensor."):
        vjp(lambda a: a * 2, x, (rand(3), rand(3)))
    with pytest.raises(RuntimeError, match="v can only be None if the user-provided function"):
        vjp(lambda a: a * 2, x)
    with pytest.raises(RuntimeError, match="v can only be None if the input to the user-provided"):
        jvp(lambda a: a * 2, x)
    with pytest.raises(TypeError, match="The v given to vjp must be either a Tensor or a tuple"):
        vjp(lambda a: a * 2, x, [1.0, 2.0, 3.0])


# -- hessian / hvp / vhp -------------------------------------------------------------------------


def test_hessian_of_cubic_and_quadratic_form():
    x = rand(4)
    h = hessian(lambda a: (a**3).sum(), x)
    assert tuple(h.shape) == (4, 4)
    close(h, np.diag(6 * npy(x)))
    m = rand(4, 4)
    close(hessian(lambda a: a @ (m @ a), x), npy(m) + npy(m).T)


def test_hessian_of_logsumexp_closed_form():
    x = rand(5)
    s = softmax_np(npy(x))
    close(hessian(lambda a: a.logsumexp(0), x), np.diag(s) - np.outer(s, s))


def test_hessian_matrix_input_shape():
    x = rand(2, 3)
    h = hessian(lambda a: (a.exp()).sum(), x)
    assert tuple(h.shape) == (2, 3, 2, 3)
    expected = np.diag(np.exp(npy(x)).ravel()).reshape(2, 3, 2, 3)
    close(h, expected)


def test_hessian_tuple_inputs():
    x, y = rand(2), rand(3)
    h = hessian(lambda a, b: (a**2).sum() * b.sum() + (3 * b**2).sum(), (x, y))
    assert len(h) == 2 and all(len(row) == 2 for row in h)
    xn, yn = npy(x), npy(y)
    close(h[0][0], 2 * yn.sum() * np.eye(2))
    close(h[0][1], np.outer(2 * xn, np.ones(3)))
    close(h[1][0], np.outer(np.ones(3), 2 * xn))
    close(h[1][1], 6 * np.eye(3))


def test_hessian_forward_over_reverse_matches():
    x = rand(3)
    f = lambda a: (a.tanh() * a).sum()  # noqa: E731
    rev = hessian(f, x)
    fwd = hessian(f, x, vectorize=True, outer_jacobian_strategy="forward-mode")
    close(fwd, npy(rev))


def test_hessian_errors():
    x = rand(3)
    with pytest.raises(RuntimeError, match="should contain a single element"):
        hessian(lambda a: a**2, x)
    with pytest.raises(RuntimeError, match="should return a single Tensor"):
        hessian(lambda a: (a.sum(), a.sum()), x)
    # a linear function: its jacobian does not depend on the input
    close(hessian(lambda a: (a * 2).sum(), x), np.zeros((3, 3)))
    with pytest.raises(RuntimeError, match="jacobian of the user-provided function"):
        hessian(lambda a: (a * 2).sum(), x, strict=True)


@pytest.mark.parametrize("fn", [hvp, vhp])
def test_hvp_vhp_match_closed_form_hessian(fn):
    x, v = rand(4), rand(4)
    m = rand(4, 4)
    xn, vn, mn = npy(x), npy(v), npy(m)
    out, hv = fn(lambda a: a @ (m @ a) + (a**3).sum(), x, v)
    close(out, xn @ mn @ xn + (xn**3).sum())
    close(hv, (mn + mn.T + np.diag(6 * xn)) @ vn)


@pytest.mark.parametrize("fn", [hvp, vhp])
def test_hvp_vhp_tuple_inputs_and_errors(fn):
    x, y = rand(2), rand(2)
    _, hv = fn(lambda a, b: (2 * a**2 + 3 * b**2).sum(), (x, y), (rand(2).fill_(1.0), t64([1, 1])))
    close(hv[0], 4 * np.ones(2))
    close(hv[1], 6 * np.ones(2))
    with pytest.raises(RuntimeError, match="should contain a single element"):
        fn(lambda a: a**2, x, x)
    with pytest.raises(RuntimeError, match="v has invalid size"):
        fn(lambda a: (a**2).sum(), x, rand(3))
    with pytest.raises(RuntimeError, match="independent of"):
        fn(lambda a, b: (a**2).sum(), (x, y), (x, y), strict=True)


def test_hvp_create_graph_gives_third_derivative():
    x = rand(3).requires_grad_()
    v = rand(3)
    _, hv = hvp(lambda a: (a**4).sum(), x, v, create_graph=True)
    assert hv.requires_grad
    (g,) = jg.autograd.grad(hv.sum(), x)
    # hv = 12 x^2 v  =>  d/dx sum(hv) = 24 x v
    close(g, 24 * npy(x) * npy(v))


# -- agreement with PyTorch ----------------------------------------------------------------------


def _to_np(res):
    if isinstance(res, tuple):
        return tuple(_to_np(r) for r in res)
    return res.detach().numpy()


def _assert_same(ours, theirs):
    if isinstance(theirs, tuple):
        assert isinstance(ours, tuple) and len(ours) == len(theirs)
        for o, t in zip(ours, theirs):
            _assert_same(o, t)
    else:
        assert not isinstance(ours, tuple)
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.torch
def test_jacobian_and_hessian_agree_with_torch():
    torch = pytest.importorskip("torch")
    TF = torch.autograd.functional
    a, b = RNG.normal(size=(3, 4)), RNG.normal(size=(4,))
    ja, jb = t64(a), t64(b)
    ta, tb = torch.tensor(a), torch.tensor(b)

    def f_ours(p, q):
        return (p @ q).tanh() * p.sum(1), (p * p).sum()

    def f_torch(p, q):
        return (p @ q).tanh() * p.sum(1), (p * p).sum()

    _assert_same(_to_np(jacobian(f_ours, (ja, jb))), _to_np(TF.jacobian(f_torch, (ta, tb))))
    _assert_same(
        _to_np(jacobian(lambda p: f_ours(p, jb)[0], ja)),
        _to_np(TF.jacobian(lambda p: f_torch(p, tb)[0], ta)),
    )

    def g_ours(p, q):
        return ((p @ q).log_softmax(0) * (p @ q)).sum()

    def g_torch(p, q):
        return ((p @ q).log_softmax(0) * (p @ q)).sum()

    _assert_same(_to_np(hessian(g_ours, (ja, jb))), _to_np(TF.hessian(g_torch, (ta, tb))))
    _assert_same(
        _to_np(hessian(lambda q: g_ours(ja, q), jb)),
        _to_np(TF.hessian(lambda q: g_torch(ta, q), tb)),
    )
    vb = RNG.normal(size=(4,))
    _assert_same(
        _to_np(hvp(lambda q: g_ours(ja, q), jb, t64(vb))),
        _to_np(TF.hvp(lambda q: g_torch(ta, q), tb, torch.tensor(vb))),
    )
