"""Shape, scatter and indexing ops: what the op-table specs do not cover (data-dependent
shapes, tracing errors, PyTorch's gradients of scatter_reduce, keyword forms, errors)."""

from __future__ import annotations

import numpy as np
import pytest

import jitgrad as jg

torch = pytest.importorskip("torch")


def _both(fn, *arrays, grad=True):
    j = [jg.tensor(a, requires_grad=grad and a.dtype.kind == "f") for a in arrays]
    t = [torch.tensor(a, requires_grad=grad and a.dtype.kind == "f") for a in arrays]
    return fn(jg, *j), fn(torch, *t), j, t


@pytest.mark.parametrize("reduce", ["prod", "amax", "amin", "mean", "sum"])
@pytest.mark.parametrize("include_self", [True, False])
def test_scatter_reduce_matches_torch_with_ties(reduce, include_self):
    if reduce in ("amax", "amin") and not include_self:
        pytest.xfail("torch counts self among the ties even with include_self=False")
    x = np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 0.5]])
    src = np.array([[2.0, 2.0, 3.0], [2.0, -1.0, 3.0]])
    idx = np.array([[0, 0, 1], [0, 1, 1]])

    def f(m, a, s):
        return m.scatter_reduce(a, 0, m.tensor(idx), s, reduce, include_self=include_self)

    jo, to, j, t = _both(f, x, src)
    np.testing.assert_allclose(jo.detach().numpy(), to.detach().numpy())
    g = np.arange(6.0).reshape(2, 3) + 1
    jg_g = jg.autograd.grad(jo, j, jg.tensor(g))
    t_g = torch.autograd.grad(to, t, torch.tensor(g))
    for a, b in zip(jg_g, t_g):
        np.testing.assert_allclose(a.numpy(), b.numpy())


def test_data_dependent_ops_eagerly_match_torch():
    x = np.array([[0.0, 1.5, 0.0], [2.0, 0.0, -1.0]])
    mask = x > 0
    for name in ("nonzero", "argwhere"):
        np.testing.assert_array_equal(
            getattr(jg, name)(jg.tensor(x)).numpy(), getattr(torch, name)(torch.tensor(x)).numpy()
        )
    for a, b in zip(
        jg.nonzero(jg.tensor(x), as_tuple=True), torch.nonzero(torch.tensor(x), as_tuple=True)
    ):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(jg.where(jg.tensor(mask)), torch.where(torch.tensor(mask))):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(jg.masked_select(jg.tensor(x), jg.tensor(mask)).numpy(), x[mask])
    src = np.arange(6.0)
    got = jg.masked_scatter(jg.tensor(x), jg.tensor(mask), jg.tensor(src))
    want = torch.masked_scatter(torch.tensor(x), torch.tensor(mask), torch.tensor(src))
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    counts = np.array([1, 0, 2])
    np.testing.assert_array_equal(
        jg.repeat_interleave(jg.tensor(counts)).numpy(),
        torch.repeat_interleave(torch.tensor(counts)).numpy(),
    )


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: jg.nonzero(x),
        lambda x: jg.masked_select(x, x > 0),
        lambda x: x[x > 0],
        lambda x: jg.argwhere(x),
    ],
)
def test_data_dependent_shapes_raise_while_tracing(fn):
    f = jg.compile(fn)
    with pytest.raises(jg.TraceError, match="data-dependent output shape"):
        f(jg.tensor([1.0, -1.0, 2.0]))


def test_take_and_scatter_add_have_pytorch_signatures():
    x = np.arange(12.0).reshape(3, 4)
    idx = np.array([[-1, 0], [5, 5]])
    np.testing.assert_array_equal(
        jg.take(jg.tensor(x), jg.tensor(idx)).numpy(),
        torch.take(torch.tensor(x), torch.tensor(idx)).numpy(),
    )
    with pytest.raises(IndexError, match="out of range: tried to access index 12"):
        jg.take(jg.tensor(x), jg.tensor([12]))
    si = np.array([[2, 0, 1, 1]])
    got = jg.tensor(x).scatter_add(0, jg.tensor(si), jg.ones(1, 4, dtype=jg.float64))
    want = torch.tensor(x).scatter_add(0, torch.tensor(si), torch.ones(1, 4, dtype=torch.float64))
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    with pytest.raises(RuntimeError, match="index 3 is out of bounds for dimension 0 with size 3"):
        jg.scatter_add(jg.tensor(x), 0, jg.tensor([[3]]), jg.tensor(x))
    with pytest.raises(RuntimeError, match="Expected self.dtype to be equal to src.dtype"):
        jg.scatter_add(jg.tensor(x), 0, jg.tensor([[1]]), jg.ones(3, 4, dtype=jg.float32))


def test_scatter_value_put_and_masked_fill_forms():
    x = np.zeros((2, 3))
    idx = np.array([[1, 0, 1]])
    got = jg.scatter(jg.tensor(x), 0, jg.tensor(idx), 2.5)
    want = torch.scatter(torch.tensor(x), 0, torch.tensor(idx), 2.5)
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    a, b = jg.tensor(x), torch.tensor(x)
    a.put_(jg.tensor([0, -1, 0]), jg.tensor([1.0, 2.0, 3.0]), accumulate=True)
    b.put_(
        torch.tensor([0, -1, 0]),
        torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64),
        accumulate=True,
    )
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(RuntimeError, match="only supports boolean masks"):
        jg.tensor(x).masked_fill(jg.ones(3), 1.0)
    assert (
        jg.masked_fill(jg.tensor(x), jg.tensor([True, False, True]), 1.0).tolist()
        == [[1.0, 0.0, 1.0]] * 2
    )


@pytest.mark.filterwarnings("error")
def test_compiled_movement_and_scatter_match_eager():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4))
    idx = np.array([[2, 0, 1, 1]])

    def fn(a):
        return (
            jg.flip(a, (0, 1)) + jg.roll(a, 1, 1),
            jg.rot90(a),
            a.repeat(2, 1),
            jg.tril(a, 1),
            jg.diag_embed(a, 1),
            jg.diagonal(a, -1),
            a.unfold(1, 2, 1),
            jg.scatter(a, 0, jg.tensor(idx), a[:1] * 2),
            jg.index_fill(a, 1, jg.tensor([0, 3]), -1.0),
        )

    eager = fn(jg.tensor(x))
    compiled = jg.compile(fn, backend="numba")(jg.tensor(x))
    for e, c in zip(eager, compiled):
        np.testing.assert_allclose(c.numpy(), e.numpy(), rtol=1e-12)


def test_factories_take_pytorch_size_forms():
    assert jg.zeros(2, 3).shape == jg.zeros((2, 3)).shape == jg.zeros(size=[2, 3]).shape
    assert jg.ones([]).shape == ()
    assert jg.full((2,), True).dtype is jg.bool
    assert jg.full([2], 1).dtype is jg.int64
    with pytest.raises(RuntimeError, match="negative dimension"):
        jg.zeros(-1)
    x = jg.zeros(2, dtype=jg.float64)
    assert x.new_zeros(3).dtype is jg.float64 and x.new_tensor([1, 2]).dtype is jg.float64
    np.testing.assert_array_equal(
        jg.tril_indices(3, 4, 1).numpy(), torch.tril_indices(3, 4, 1).numpy()
    )
    np.testing.assert_array_equal(
        jg.triu_indices(4, 3, -1).numpy(), torch.triu_indices(4, 3, -1).numpy()
    )


def test_shape_errors_follow_pytorch():
    x = jg.zeros(2, 3)
    with pytest.raises(RuntimeError, match="Input must be >= 2-d."):
        jg.fliplr(jg.zeros(3))
    with pytest.raises(RuntimeError, match="expected total rotation dims == 2"):
        jg.rot90(x, 1, [0])
    with pytest.raises(RuntimeError, match="can not be smaller than number of dimensions"):
        x.repeat(2)
    with pytest.raises(RuntimeError, match="maximum size for tensor at dimension 1 is 3"):
        x.unfold(1, 4, 1)
    with pytest.raises(RuntimeError, match="not divisible by the split_size 2"):
        jg.hsplit(x, 2)
    with pytest.raises(RuntimeError, match="chunk expects `chunks` to be greater than 0"):
        x.chunk(0)
    assert jg.movedim(jg.zeros(2, 3, 4), (0, 1), (2, 0)).shape == (3, 4, 2)
