"""Products, contractions and linear algebra beyond their specs: einsum's subscripts (implicit
and explicit output, ellipsis, repeated subscripts, broadcasting, the sublist form), the
add-products' beta/alpha rules, cdist's modes and its gradient at zero distance, linalg's
decompositions (gradients of gauge-invariant functions against PyTorch and finite
differences), PyTorch's errors, and compiled use on the Numba backend."""

from __future__ import annotations

import math

import numpy as np
import pytest

import jitgrad as jg

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(0)


def _randn(*shape):
    return RNG.standard_normal(shape)


def _pair(*arrays, grad=True):
    """The same float64 arrays as jitgrad and torch leaves."""
    j = [jg.tensor(a, requires_grad=grad) for a in arrays]
    t = [torch.tensor(a, requires_grad=grad) for a in arrays]
    return j, t


def _close(j, t, rtol=1e-10, atol=1e-12):
    assert tuple(j.shape) == tuple(t.shape)
    np.testing.assert_allclose(j.detach().numpy(), t.detach().numpy(), rtol=rtol, atol=atol)


def _grads_agree(j_out, t_out, j_in, t_in, rtol=1e-8, atol=1e-10):
    cot = _randn(*t_out.shape)
    gj = jg.autograd.grad(j_out, j_in, jg.tensor(cot), allow_unused=True)
    gt = torch.autograd.grad(t_out, t_in, torch.tensor(cot), allow_unused=True)
    for a, b in zip(gj, gt):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=rtol, atol=atol)


def _error(fn_j, fn_t, exc=RuntimeError):
    """Both raise ``exc``; jitgrad's message starts with torch's."""
    with pytest.raises(exc) as t_err:
        fn_t()
    with pytest.raises(exc) as j_err:
        fn_j()
    _same_start(j_err, t_err)


def _same_error(case, exc=RuntimeError):
    """``case(jg)`` raises as ``case(torch)`` does."""
    with pytest.raises(exc) as t_err:
        case(torch)
    with pytest.raises(exc) as j_err:
        case(jg)
    _same_start(j_err, t_err)


def _same_start(j_err, t_err):
    assert str(j_err.value).startswith(str(t_err.value).split("\n")[0]), (
        str(j_err.value),
        str(t_err.value),
    )


# -- einsum ---------------------------------------------------------------------------------------
EQUATIONS = [
    ("ij,jk", [(3, 4), (4, 5)]),
    ("ij,jk->", [(3, 4), (4, 5)]),
    ("ii", [(3, 3)]),
    ("ii->i", [(3, 3)]),
    ("iij->ji", [(3, 3, 2)]),
    ("ijij->ij", [(2, 3, 2, 3)]),
    ("iji,j->i", [(3, 2, 3), (2,)]),
    ("ij,j->i", [(3, 4), (1,)]),  # a size-1 subscript broadcasts
    ("ij,i->j", [(1, 4), (3,)]),
    ("Ba,aB->", [(2, 3), (3, 2)]),
    ("ba", [(2, 3)]),  # implicit: subscripts sorted
    ("bA", [(2, 3)]),  # (upper case first)
    ("...ij,...jk", [(2, 1, 3, 4), (5, 4, 2)]),
    ("...ij->ij", [(2, 3, 4)]),  # ellipsis dims summed when the output leaves them out
    ("ij->...ij", [(3, 4)]),
    ("...ii->...i", [(2, 3, 3)]),
    ("i...->...", [(3, 2)]),
    ("i j -> j i", [(3, 4)]),
    ("...", [()]),
    ("", [()]),
    ("bij,bjk,kl->bil", [(2, 3, 3), (2, 3, 4), (4, 2)]),
    ("ab,bc,ca->", [(2, 3), (3, 4), (4, 2)]),
    ("i,j,k->ijk", [(2,), (3,), (4,)]),
    ("bn,anm,bm->ba", [(2, 3), (4, 3, 5), (2, 5)]),
    ("ij,kl->ikjl", [(2, 3), (4, 5)]),
    ("ij,jk", [(3, 0), (0, 5)]),
]


@pytest.mark.parametrize(("equation", "shapes"), EQUATIONS)
def test_einsum_matches_torch_values_and_gradients(equation, shapes):
    arrays = [_randn(*s) for s in shapes]
    j_in, t_in = _pair(*arrays)
    j = jg.einsum(equation, *j_in)
    t = torch.einsum(equation, *t_in)
    _close(j, t)
    _grads_agree(j, t, j_in, t_in)
    if not equation.startswith("...ij->"):  # (NumPy does not sum an ellipsis left out)
        np.testing.assert_allclose(
            j.detach().numpy(), np.einsum(equation.replace(" ", ""), *arrays)
        )


def test_einsum_operand_list_and_sublist_forms():
    a, b = _randn(3, 4), _randn(4, 5)
    ja, jb = jg.tensor(a), jg.tensor(b)
    np.testing.assert_allclose(jg.einsum("ij,jk", [ja, jb]).numpy(), a @ b)
    np.testing.assert_allclose(jg.einsum(ja, [0, 1], jb, [1, 2], [0, 2]).numpy(), a @ b)
    np.testing.assert_allclose(jg.einsum(ja, [..., 1], jb, [1, 2]).numpy(), a @ b)
    np.testing.assert_allclose(jg.einsum(ja, [0, 1], jb, [1, 2]).numpy(), a @ b)


@pytest.mark.parametrize(
    ("equation", "shapes"),
    [
        ("ij,jk", [(3, 4), (3, 5)]),
        ("ijk,jk", [(3, 4), (4, 5)]),
        ("ii", [(4, 3)]),
        ("ij->k", [(3, 4)]),
        ("ij->ii", [(3, 4)]),
        ("ij,jk", [(3, 4)]),
        ("ij", [(3, 4), (3,)]),
        ("i.j", [(3, 4)]),
        ("i1", [(3, 4)]),
        ("i...j...", [(3, 4)]),
        ("...i,...i", [(2, 3, 4), (5, 4)]),
        ("ij-", [(3, 4)]),
    ],
)
def test_einsum_errors_match_torch(equation, shapes):
    arrays = [_randn(*s) for s in shapes]
    _error(
        lambda: jg.einsum(equation, *[jg.tensor(a) for a in arrays]),
        lambda: torch.einsum(equation, *[torch.tensor(a) for a in arrays]),
    )


def test_einsum_dtype_rules():
    a = np.ones((3, 4), np.float32)
    b = np.ones((4, 5))
    _error(
        lambda: jg.einsum("ij,jk", jg.tensor(a), jg.tensor(b)),
        lambda: torch.einsum("ij,jk", torch.tensor(a), torch.tensor(b)),
    )
    ints = np.arange(12).reshape(3, 4)
    out = jg.einsum("ij,ij->", jg.tensor(ints), jg.tensor(ints))
    assert out.dtype == jg.int64 and out.item() == int((ints * ints).sum())
    with pytest.raises(ValueError, match="must specify the equation string"):
        jg.einsum("ij")


# -- products -------------------------------------------------------------------------------------
def _tensors(lib, *shapes):
    return [lib.tensor(_randn(*s)) for s in shapes]


def test_vector_products_errors_match_torch():
    v3, v4 = _randn(3), _randn(4)
    m = _randn(3, 4)
    cases = [
        (lambda lib: lib.dot(lib.tensor(m), lib.tensor(m))),
        (lambda lib: lib.dot(lib.tensor(v3), lib.tensor(v4))),
        (lambda lib: lib.dot(lib.tensor(v3), lib.tensor(v3.astype(np.float32)))),
        (lambda lib: lib.vdot(lib.tensor(m), lib.tensor(m))),
        (lambda lib: lib.mv(lib.tensor(m), lib.tensor(v3))),
        (lambda lib: lib.mv(lib.tensor(m), lib.tensor(m))),
        (lambda lib: lib.inner(lib.tensor(m), lib.tensor(_randn(4, 2)))),
        (lambda lib: lib.outer(lib.tensor(m), lib.tensor(v3))),
        (lambda lib: lib.addmv(lib.tensor(v3), lib.tensor(m), lib.tensor(_randn(5)))),
        (
            lambda lib: lib.baddbmm(
                *(lib.tensor(_randn(*s)) for s in [(2, 3, 5), (2, 3, 4), (3, 4, 5)])
            )
        ),
        (lambda lib: lib.addbmm(*_tensors(lib, (4, 5), (3, 4), (2, 4, 5)))),
        (lambda lib: lib.addmm(lib.tensor(_randn(2, 5)), lib.tensor(m), lib.tensor(_randn(4, 5)))),
        (lambda lib: lib.tensordot(lib.tensor(m), lib.tensor(m), dims=([0], [1]))),
        (lambda lib: lib.tensordot(lib.tensor(m), lib.tensor(m), dims=-1)),
        (lambda lib: lib.tensordot(lib.tensor(m), lib.tensor(m), dims=3)),
    ]
    for case in cases:
        _same_error(case)


def test_int_dot_and_inner_with_a_scalar():
    a = np.arange(4)
    assert jg.dot(jg.tensor(a), jg.tensor(a)).item() == 14
    assert jg.dot(jg.tensor(a), jg.tensor(a)).dtype == jg.int64
    m = _randn(2, 3)
    j, t = jg.inner(jg.tensor(m), jg.tensor(2.0)), torch.inner(torch.tensor(m), torch.tensor(2.0))
    _close(j, t)


@pytest.mark.parametrize("name", ["addmm", "addmv", "baddbmm", "addbmm"])
@pytest.mark.parametrize(("beta", "alpha"), [(1, 1), (0.5, -2.0), (0, 1.5)])
def test_add_products_match_torch(name, beta, alpha):
    shapes = {
        "addmm": [(5,), (3, 4), (4, 5)],  # input broadcast to the product
        "addmv": [(1,), (3, 4), (4,)],
        "baddbmm": [(3, 1), (2, 3, 4), (2, 4, 5)],
        "addbmm": [(3, 5), (2, 3, 4), (2, 4, 5)],
    }[name]
    arrays = [_randn(*s) for s in shapes]
    if beta == 0:
        arrays[0][...] = np.nan  # ignored: NaN must not propagate
    j_in, t_in = _pair(*arrays)
    j = getattr(jg, name)(*j_in, beta=beta, alpha=alpha)
    t = getattr(torch, name)(*t_in, beta=beta, alpha=alpha)
    _close(j, t)
    _grads_agree(j, t, j_in, t_in)
    # the method and in-place forms
    out = getattr(jg.tensor(np.broadcast_to(arrays[0], t.shape).copy()), name + "_")(
        *[jg.tensor(a) for a in arrays[1:]], beta=beta, alpha=alpha
    )
    _close(out, t)


def test_kron_and_tensordot_forms_match_torch():
    for sa, sb in [((2, 3), (4,)), ((2,), (3, 2, 2)), ((2, 1, 3), (1, 2, 2))]:
        a, b = _randn(*sa), _randn(*sb)
        j_in, t_in = _pair(a, b)
        j, t = jg.kron(*j_in), torch.kron(*t_in)
        _close(j, t)
        _grads_agree(j, t, j_in, t_in)
        assert np.allclose(j_in[0].kron(j_in[1]).detach().numpy(), np.kron(a, b))
    a, b = _randn(3, 4, 5), _randn(4, 5, 2)
    for dims in (2, ([1, 2], [0, 1]), [[2, 1], [1, 0]], ([1], [0]), 0):
        j_in, t_in = _pair(a, b)
        j, t = jg.tensordot(*j_in, dims=dims), torch.tensordot(*t_in, dims=dims)
        _close(j, t)
        _grads_agree(j, t, j_in, t_in)
    j = jg.tensordot(jg.tensor(a), jg.tensor(b), dims=jg.tensor(2))
    _close(j, torch.tensordot(torch.tensor(a), torch.tensor(b), dims=2))


def test_cross_default_dim_broadcasting_and_errors():
    a, b = _randn(4, 3), _randn(1, 3)
    j_in, t_in = _pair(a, b)
    with pytest.warns(UserWarning, match="without specifying the dim arg is deprecated"):
        j = jg.cross(*j_in)
    t = torch.cross(*t_in, dim=1)
    _close(j, t)
    _grads_agree(j, t, j_in, t_in)
    _close(jg.linalg.cross(*j_in), torch.linalg.cross(*t_in))
    c, d = _randn(3, 4), _randn(3, 4)
    _close(jg.tensor(c).cross(jg.tensor(d), dim=0), torch.tensor(c).cross(torch.tensor(d), dim=0))
    m = _randn(4, 4)
    _error(
        lambda: jg.linalg.cross(jg.tensor(m), jg.tensor(m)),
        lambda: torch.linalg.cross(torch.tensor(m), torch.tensor(m)),
    )
    with pytest.warns(UserWarning):
        _error(
            lambda: jg.cross(jg.tensor(m), jg.tensor(m)),
            lambda: torch.cross(torch.tensor(m), torch.tensor(m)),
        )


# -- cdist ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.0, 1.0, 2.0, 3.0, 0.5, math.inf])
@pytest.mark.parametrize(
    "mode",
    [
        "use_mm_for_euclid_dist_if_necessary",
        "use_mm_for_euclid_dist",
        "donot_use_mm_for_euclid_dist",
    ],
)
def test_cdist_matches_torch(p, mode):
    for r1, r2 in [(3, 5), (30, 4)]:  # (30 rows: the default mode uses the product)
        a, b = _randn(2, r1, 4), _randn(1, r2, 4)
        j_in, t_in = _pair(a, b)
        j = jg.cdist(*j_in, p=p, compute_mode=mode)
        t = torch.cdist(*t_in, p=p, compute_mode=mode)
        _close(j, t, rtol=1e-9)
        if p != 0.0:
            _grads_agree(j, t, j_in, t_in, rtol=1e-7)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("mode", ["use_mm_for_euclid_dist", "donot_use_mm_for_euclid_dist"])
def test_cdist_gradient_at_zero_distance_follows_torch(p, mode):
    a = _randn(3, 4)
    b = np.concatenate([a[1:2], _randn(2, 4)])  # row 0 of b is row 1 of a: distance 0
    j_in, t_in = _pair(a, b)
    j = jg.cdist(*j_in, p=p, compute_mode=mode)
    t = torch.cdist(*t_in, p=p, compute_mode=mode)
    _close(j, t, rtol=1e-9, atol=1e-7)
    gj = jg.autograd.grad(j.sum(), j_in)
    gt = torch.autograd.grad(t.sum(), t_in)
    for x, y in zip(gj, gt):
        assert np.isfinite(x.numpy()).all()
        np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-7, atol=1e-7)


def test_cdist_errors_match_torch():
    a, b = _randn(3, 4), _randn(5, 3)
    cases = [
        lambda lib: lib.cdist(lib.tensor(a), lib.tensor(b)),
        lambda lib: lib.cdist(lib.tensor(a), lib.tensor(a), p=-1),
        lambda lib: lib.cdist(lib.tensor(np.ones((3, 4), np.int64)), lib.tensor(a)),
        lambda lib: lib.cdist(lib.tensor(_randn(3)), lib.tensor(_randn(3))),
        lambda lib: lib.cdist(lib.tensor(a.astype(np.float32)), lib.tensor(a)),
    ]
    for case in cases:
        _same_error(case)
    with pytest.raises(ValueError, match="is not a valid value for compute_mode"):
        jg.cdist(jg.tensor(a), jg.tensor(a), compute_mode="x")


# -- linalg: errors -------------------------------------------------------------------------------
SINGULAR = np.array([[1.0, 2, 3], [2, 4, 6], [1, 0, 1]])


def test_linalg_error_is_a_runtime_error_with_torch_wording():
    assert issubclass(jg.linalg.LinAlgError, RuntimeError)
    cases = [
        lambda lib: lib.linalg.inv(lib.tensor(SINGULAR)),
        lambda lib: lib.linalg.inv(lib.tensor(np.stack([np.eye(3), SINGULAR]))),
        lambda lib: lib.linalg.inv(lib.tensor(np.zeros((3, 3)))),
        lambda lib: lib.inverse(lib.tensor(np.ones((2, 3, 3)))),
        lambda lib: lib.linalg.solve(lib.tensor(SINGULAR), lib.tensor(_randn(3))),
        lambda lib: lib.linalg.cholesky(lib.tensor(SINGULAR)),
        lambda lib: lib.linalg.cholesky(lib.tensor(np.stack([np.eye(3), -np.eye(3)]))),
        lambda lib: lib.linalg.cholesky(lib.tensor(np.full((3, 3), np.nan))),
        lambda lib: lib.linalg.svd(lib.tensor(np.full((3, 3), np.nan))),
    ]
    for case in cases:
        _same_error(case)
        with pytest.raises(jg.linalg.LinAlgError):
            case(jg)


def test_linalg_argument_errors_match_torch():
    m34, v3 = _randn(3, 4), _randn(3)
    cases = [
        lambda lib: lib.linalg.inv(lib.tensor(m34)),
        lambda lib: lib.linalg.inv(lib.tensor(v3)),
        lambda lib: lib.linalg.inv(lib.tensor(np.ones((3, 3), np.int64))),
        lambda lib: lib.linalg.det(lib.tensor(m34)),
        lambda lib: lib.linalg.slogdet(lib.tensor(m34)),
        lambda lib: lib.linalg.cholesky(lib.tensor(m34)),
        lambda lib: lib.linalg.eigh(lib.tensor(m34)),
        lambda lib: lib.linalg.eigh(lib.tensor(np.eye(3)), UPLO="X"),
        lambda lib: lib.linalg.svd(lib.tensor(v3)),
        lambda lib: lib.linalg.qr(lib.tensor(m34), mode="x"),
        lambda lib: lib.linalg.solve(lib.tensor(np.eye(3)), lib.tensor(_randn(4))),
        lambda lib: lib.linalg.solve(lib.tensor(np.eye(3)), lib.tensor(_randn(3, 2).astype("f4"))),
        lambda lib: lib.linalg.matrix_norm(lib.tensor(m34), ord=3),
        lambda lib: lib.linalg.solve(lib.tensor(np.eye(3)), lib.tensor(v3), left=False),
    ]
    for case in cases:
        _same_error(case)


# -- linalg: values and gradients against torch ---------------------------------------------------
def _spd(*batch, n=3):
    x = _randn(*batch, n, n)
    return x @ np.swapaxes(x, -1, -2) / n + np.eye(n)


def _sym(*batch, n=3):
    x = _randn(*batch, n, n)
    return (x + np.swapaxes(x, -1, -2)) / 2


def _sym_grads_agree(fn_j, fn_t, a, rtol=1e-7):
    """Outputs and gradients of fn(sym(a)) (symmetric perturbations) against torch."""
    j_in, t_in = _pair(a)
    j_out = fn_j((j_in[0] + j_in[0].transpose(-2, -1)) * 0.5)
    t_out = fn_t((t_in[0] + t_in[0].transpose(-2, -1)) * 0.5)
    _close(j_out, t_out, rtol=1e-9, atol=1e-10)
    _grads_agree(j_out, t_out, j_in, t_in, rtol=rtol, atol=1e-9)


@pytest.mark.parametrize("batch", [(), (2,)])
def test_inv_det_slogdet_solve_match_torch(batch):
    a = _randn(*batch, 3, 3) + 2 * np.eye(3)
    for name in ("inv", "det"):
        j_in, t_in = _pair(a)
        j, t = getattr(jg.linalg, name)(*j_in), getattr(torch.linalg, name)(*t_in)
        _close(j, t)
        _grads_agree(j, t, j_in, t_in)
    j_in, t_in = _pair(-a)
    (js, jl), (ts, tl) = jg.linalg.slogdet(*j_in), torch.linalg.slogdet(*t_in)
    _close(js, ts)
    _close(jl, tl)
    _grads_agree(jl, tl, j_in, t_in)
    _close(jg.logdet(jg.tensor(-a)), torch.logdet(torch.tensor(-a)), atol=0)  # NaN where det < 0
    for b_shape, left in [
        ((3,), True),
        (batch + (3, 2), True),
        ((5, 3), False),
        ((4, 1, 3, 2), True),
    ]:
        b = _randn(*b_shape)
        j_in, t_in = _pair(a, b)
        j, t = jg.linalg.solve(*j_in, left=left), torch.linalg.solve(*t_in, left=left)
        _close(j, t, rtol=1e-9)
        _grads_agree(j, t, j_in, t_in)


def test_cholesky_matches_torch_and_reads_the_lower_triangle():
    a = _spd(2)
    for upper in (False, True):
        _sym_grads_agree(
            lambda x, u=upper: jg.linalg.cholesky(x, upper=u),
            lambda x, u=upper: torch.linalg.cholesky(x, upper=u),
            a,
        )
    lopsided = np.tril(a) + np.triu(np.full((3, 3), 100.0), 1)
    _close(jg.linalg.cholesky(jg.tensor(lopsided)), torch.linalg.cholesky(torch.tensor(lopsided)))
    _close(jg.cholesky(jg.tensor(a), upper=True), torch.cholesky(torch.tensor(a), upper=True))


@pytest.mark.parametrize("shape", [(4, 3), (3, 3), (3, 5), (2, 4, 3)])
@pytest.mark.parametrize("mode", ["reduced", "complete"])
def test_qr_matches_torch(shape, mode):
    a = _randn(*shape)
    j_in, t_in = _pair(a)
    (jq, jr), (tq, tr) = jg.linalg.qr(*j_in, mode=mode), torch.linalg.qr(*t_in, mode=mode)
    # both Householder (LAPACK's geqrf): the same signs
    _close(jq, tq, rtol=1e-9, atol=1e-10)
    _close(jr, tr, rtol=1e-9, atol=1e-10)
    if mode == "complete" and shape[-2] > shape[-1]:
        with pytest.raises(RuntimeError, match="not differentiable when mode='complete'"):
            jg.autograd.grad(jq.sum(), j_in)
        return
    gq, gr = _randn(*tq.shape), _randn(*tr.shape)
    j_f = (jq * jg.tensor(gq)).sum() + (jr * jg.tensor(gr)).sum()
    t_f = (tq * torch.tensor(gq)).sum() + (tr * torch.tensor(gr)).sum()
    _grads_agree(j_f, t_f, j_in, t_in)


def test_qr_mode_r_and_torch_qr():
    a = _randn(4, 3)
    j_in, t_in = _pair(a)
    (jq, jr), (tq, tr) = jg.linalg.qr(*j_in, mode="r"), torch.linalg.qr(*t_in, mode="r")
    assert tuple(jq.shape) == tuple(tq.shape) == (0,)
    _close(jr, tr, rtol=1e-9, atol=1e-10)
    with pytest.raises(RuntimeError, match="depends on Q, which is not computed when mode='r'"):
        jg.autograd.grad(jr.sum(), j_in)
    for some in (True, False):
        for x, y in zip(jg.qr(jg.tensor(a), some=some), torch.qr(torch.tensor(a), some=some)):
            _close(x, y, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("shape", [(4, 3), (3, 3), (3, 5), (2, 4, 3)])
@pytest.mark.parametrize("full_matrices", [False, True])
def test_svd_matches_torch_on_gauge_invariant_functions(shape, full_matrices):
    a = _randn(*shape)
    j_in, t_in = _pair(a)
    ju, js, jvh = jg.linalg.svd(*j_in, full_matrices=full_matrices)
    tu, ts, tvh = torch.linalg.svd(*t_in, full_matrices=full_matrices)
    _close(js, ts)
    assert tuple(ju.shape) == tuple(tu.shape) and tuple(jvh.shape) == tuple(tvh.shape)
    k = min(shape[-2:])
    # U diag(S) Vh reconstructs A; |U| and |Vh| (first k vectors) do not depend on signs
    _close(jg.matmul(ju[..., :k] * js.unsqueeze(-2), jvh[..., :k, :]), torch.tensor(a))
    gu, gv, gs = _randn(*shape[:-1], k), _randn(*shape[:-2], k, shape[-1]), _randn(*ts.shape)

    def f(lib, u, s, vh):
        t = lib.tensor
        return (
            (u[..., :k].abs() * t(gu)).sum()
            + (vh[..., :k, :].abs() * t(gv)).sum()
            + (s * t(gs)).sum()
        )

    _grads_agree(f(jg, ju, js, jvh), f(torch, tu, ts, tvh), j_in, t_in, rtol=1e-6)
    j, t = jg.linalg.svdvals(*j_in), torch.linalg.svdvals(*t_in)
    _close(j, t)
    _grads_agree(j, t, j_in, t_in)


def test_svd_gradient_against_finite_differences():
    a = _randn(4, 3)
    g = _randn(4, 3)

    def f(x):  # sum(|U| * g) + sum(S^2): gauge-invariant
        u, s, _ = np.linalg.svd(x, full_matrices=False)
        return float((np.abs(u) * g).sum() + (s**2).sum())

    x = jg.tensor(a, requires_grad=True)
    u, s, _ = jg.linalg.svd(x, full_matrices=False)
    (grad,) = jg.autograd.grad((u.abs() * jg.tensor(g)).sum() + (s * s).sum(), [x])
    v = _randn(4, 3)
    eps = 1e-6
    fd = (f(a + eps * v) - f(a - eps * v)) / (2 * eps)
    assert float((grad.numpy() * v).sum()) == pytest.approx(fd, rel=1e-6)


def test_torch_svd_alias_returns_v():
    a = _randn(4, 3)
    for some in (True, False):
        (ju, js, jv), (tu, ts, tv) = (
            jg.svd(jg.tensor(a), some=some),
            torch.svd(torch.tensor(a), some=some),
        )
        _close(js, ts)
        assert tuple(ju.shape) == tuple(tu.shape) and tuple(jv.shape) == tuple(tv.shape)
        _close(jv.abs(), tv.abs(), atol=1e-10)
    ju, js, jv = jg.svd(jg.tensor(a), compute_uv=False)
    tu, ts, tv = torch.svd(torch.tensor(a), compute_uv=False)
    assert tuple(ju.shape) == tuple(tu.shape) and not ju.numpy().any()
    _close(js, ts)


@pytest.mark.parametrize("uplo", ["L", "U"])
def test_eigh_matches_torch(uplo):
    a = _sym(2)
    lopsided = np.tril(a) if uplo == "L" else np.triu(a)  # only one triangle is read
    jw, jq = jg.linalg.eigh(jg.tensor(lopsided), UPLO=uplo)
    tw, tq = torch.linalg.eigh(torch.tensor(lopsided), UPLO=uplo)
    _close(jw, tw)
    _close(jq.abs(), tq.abs(), atol=1e-10)
    _close(jg.linalg.eigvalsh(jg.tensor(lopsided), UPLO=uplo), tw)
    g = _randn(2, 3, 3)
    _sym_grads_agree(
        lambda x: jg.linalg.eigh(x)[1].abs() * jg.tensor(g) + jg.linalg.eigh(x)[0].unsqueeze(-1),
        lambda x: (
            torch.linalg.eigh(x)[1].abs() * torch.tensor(g) + torch.linalg.eigh(x)[0].unsqueeze(-1)
        ),
        a,
    )
    _sym_grads_agree(jg.linalg.eigvalsh, torch.linalg.eigvalsh, a)


@pytest.mark.parametrize("ord", ["fro", "nuc", 2, -2, 1, -1, math.inf, -math.inf])
def test_matrix_norm_matches_torch(ord):
    a = _randn(2, 3, 4)
    for dim, keepdim in [((-2, -1), False), ((0, 2), True), ((2, 1), False)]:
        j_in, t_in = _pair(a)
        j = jg.linalg.matrix_norm(*j_in, ord=ord, dim=dim, keepdim=keepdim)
        t = torch.linalg.matrix_norm(*t_in, ord=ord, dim=dim, keepdim=keepdim)
        _close(j, t)
        _grads_agree(j, t, j_in, t_in, rtol=1e-7)


def test_tensor_methods():
    a = _spd()
    for name in ("det", "inverse", "logdet", "cholesky"):
        _close(getattr(jg.tensor(a), name)(), getattr(torch.tensor(a), name)())
    for x, y in zip(jg.tensor(a).slogdet(), torch.tensor(a).slogdet()):
        _close(x, y)
    for x, y in zip(jg.tensor(a).qr(), torch.tensor(a).qr()):
        _close(x, y, atol=1e-10)
    _close(jg.tensor(a).svd()[1], torch.tensor(a).svd()[1])


# -- compiled -------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.filterwarnings("error")
def test_compiled_contractions_and_linalg_match_eager(tmp_path, monkeypatch):
    monkeypatch.setenv("JITGRAD_CACHE_DIR", str(tmp_path))

    def step(a, s, r, x1, x2):
        e = jg.einsum("bii,bij->bj", a, r @ r.transpose(-1, -2))
        d = jg.cdist(x1, x2) + jg.cdist(x1, x2, p=1.0)
        q, rr = jg.linalg.qr(r)
        u, sv, vh = jg.linalg.svd(r, full_matrices=False)
        w, v = jg.linalg.eigh(s)
        outs = [
            e, d, jg.linalg.inv(a), jg.linalg.det(a), jg.linalg.slogdet(a)[1],
            jg.linalg.solve(a, r), jg.linalg.cholesky(s), q * rr.sum(), sv, w, v.abs(),
            u.abs(), vh.abs(), jg.kron(x1[:2, :2], x1[:2, :2]),
        ]  # fmt: skip
        loss = sum((o * o).sum() for o in outs)
        return (*outs, *jg.autograd.grad(loss, [a, s, r, x1, x2]))

    a = jg.tensor(_randn(2, 3, 3) + 2 * np.eye(3), requires_grad=True)
    s = jg.tensor(_spd(2), requires_grad=True)
    r = jg.tensor(_randn(2, 3, 2), requires_grad=True)
    x1 = jg.tensor(_randn(5, 4), requires_grad=True)
    x2 = jg.tensor(_randn(6, 4), requires_grad=True)
    fn = jg.compile(step, backend="numba", check=True)
    for _ in range(2):
        for got, want in zip(fn(a, s, r, x1, x2), step(a, s, r, x1, x2)):
            np.testing.assert_allclose(got.numpy(), want.detach().numpy(), rtol=1e-9, atol=1e-12)
    # a singular matrix in a compiled call: PyTorch's error, raised after the call
    bad = jg.tensor(np.stack([np.eye(3), SINGULAR]), requires_grad=True)
    with pytest.raises(jg.linalg.LinAlgError, match=r"\(Batch element 1\): The diagonal element 3"):
        fn(bad, s, r, x1, x2)
    not_pd = jg.tensor(np.stack([np.eye(3), -np.eye(3)]), requires_grad=True)
    with pytest.raises(jg.linalg.LinAlgError, match="leading minor of order 1"):
        fn(a, not_pd, r, x1, x2)


def test_complete_qr_of_a_tall_matrix_is_not_traced():
    fn = jg.compile(lambda x: jg.linalg.qr(x, mode="complete")[0], backend="interpreter")
    with pytest.raises(jg.TraceError, match="linalg.qr"):
        fn(jg.tensor(_randn(4, 3)))
    wide = _randn(3, 4)  # wide or square: traced
    got = jg.compile(lambda x: jg.linalg.qr(x, mode="complete")[0], backend="interpreter")
    np.testing.assert_allclose(got(jg.tensor(wide)).numpy(), np.linalg.qr(wide, "complete")[0])
