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
