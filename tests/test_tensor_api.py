"""Tensor API: creation, dtypes and promotion, attributes, operators, indexing (with gradients)."""

from __future__ import annotations

import numpy as np
import pytest

import jitgrad as jg
import jitgrad.nn.functional as F


def t64(values, requires_grad: bool = False) -> jg.Tensor:
    return jg.tensor(values, dtype=jg.float64, requires_grad=requires_grad)


def np_of(t: jg.Tensor) -> np.ndarray:
    return t.detach().numpy()


# -- creation --------------------------------------------------------------------------------------
def test_tensor_infers_pytorch_dtypes_and_copies():
    assert jg.tensor([1.0, 2.0]).dtype is jg.float32
    assert jg.tensor(3.0).dtype is jg.float32 and jg.tensor(3.0).shape == ()
    assert jg.tensor([1, 2]).dtype is jg.int64
    assert jg.tensor([True, False]).dtype is jg.bool
    assert jg.tensor(np.ones(2)).dtype is jg.float64  # arrays keep their dtype
    assert jg.tensor([1, 2], dtype=jg.float64).dtype is jg.float64
    a = np.zeros(3)
    t = jg.tensor(a)
    a[0] = 5
    assert t.tolist() == [0.0, 0.0, 0.0]
    assert jg.get_default_dtype() is jg.float32


def test_from_numpy_shares_memory():
    a = np.arange(4.0)
    t = jg.from_numpy(a)
    assert t.dtype is jg.float64
    a[1] = 10.0
    assert t.tolist() == [0.0, 10.0, 2.0, 3.0]
    t.add_(1)
    assert a.tolist() == [1.0, 11.0, 3.0, 4.0]
    assert jg.from_numpy(np.arange(3)).dtype is jg.int64


def test_zeros_ones_full_empty():
    assert jg.zeros(2, 3).shape == (2, 3) and jg.zeros((2, 3)).shape == (2, 3)
    assert jg.zeros(2).dtype is jg.float32 and jg.zeros(2, dtype=jg.int64).dtype is jg.int64
    np.testing.assert_array_equal(jg.ones(2, 2).numpy(), np.ones((2, 2)))
    f = jg.full((2, 3), 7.5)
    assert f.dtype is jg.float32 and f.shape == (2, 3) and np.all(f.numpy() == 7.5)
    assert jg.full((2,), 3).dtype is jg.int64  # PyTorch infers the dtype from the fill value
    assert jg.full((2,), True).dtype is jg.bool
    assert jg.empty(4, 5).shape == (4, 5)
    z = jg.zeros(3, requires_grad=True)
    assert z.requires_grad and z.is_leaf


def test_arange_linspace_eye():
    a = jg.arange(5)
    assert a.dtype is jg.int64 and a.tolist() == [0, 1, 2, 3, 4]
    assert jg.arange(1, 4).tolist() == [1, 2, 3]
    f = jg.arange(0, 1, 0.25)
    assert f.dtype is jg.float32 and f.tolist() == [0.0, 0.25, 0.5, 0.75]
    ls = jg.linspace(0, 1, 5)
    assert ls.dtype is jg.float32
    np.testing.assert_allclose(ls.numpy(), np.linspace(0, 1, 5))
    np.testing.assert_array_equal(jg.eye(3).numpy(), np.eye(3))
    np.testing.assert_array_equal(jg.eye(2, 3).numpy(), np.eye(2, 3))


def test_like_functions():
    x = jg.tensor([[1, 2], [3, 4]])
    z = jg.zeros_like(x)
    assert z.dtype is jg.int64 and z.shape == (2, 2) and z.tolist() == [[0, 0], [0, 0]]
    o = jg.ones_like(t64([1.0, 2.0]))
    assert o.dtype is jg.float64 and o.tolist() == [1.0, 1.0]
    r = jg.randn_like(t64(np.zeros((3, 4))))
    assert r.dtype is jg.float64 and r.shape == (3, 4)


def test_random_functions_and_manual_seed():
    jg.manual_seed(123)
    a, b = jg.rand(1000), jg.randn(1000)
    jg.manual_seed(123)
    a2, b2 = jg.rand(1000), jg.randn(1000)
    np.testing.assert_array_equal(a.numpy(), a2.numpy())
    np.testing.assert_array_equal(b.numpy(), b2.numpy())
    assert a.dtype is jg.float32 and b.dtype is jg.float32
    assert 0.0 <= a.numpy().min() and a.numpy().max() < 1.0
    assert abs(a.numpy().mean() - 0.5) < 0.05
    assert abs(b.numpy().mean()) < 0.15 and abs(b.numpy().std() - 1.0) < 0.1
    c = jg.rand(1000)
    assert not np.array_equal(a.numpy(), c.numpy())  # the generator moves on
    r = jg.randint(3, 7, (500,))
    assert r.dtype is jg.int64 and set(r.tolist()) == {3, 4, 5, 6}
    assert jg.randn(2, 3).shape == (2, 3) and jg.rand((2, 3)).shape == (2, 3)


# -- type promotion --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: jg.ones(2) + 2.5, "float32"),  # a Python float does not upcast float32
        (lambda: 2.5 * jg.ones(2), "float32"),
        (lambda: jg.tensor([1, 2]) + 1.5, "float32"),  # int tensor + float -> default float
        (lambda: jg.tensor([1, 2]) / 2, "float32"),  # true division of ints -> float
        (lambda: jg.tensor([1, 2]) / jg.tensor([1, 2]), "float32"),
        (lambda: jg.tensor([1, 2]) + 1, "int64"),
        (lambda: jg.ones(2) + jg.ones(2, dtype=jg.float64), "float64"),
        (lambda: jg.ones(2) + jg.tensor(1.0, dtype=jg.float64), "float32"),  # 0-dim same category
        (lambda: jg.tensor([1]) + jg.tensor(1.0, dtype=jg.float64), "float64"),  # higher category
        (lambda: jg.tensor([1], dtype=jg.int32) + jg.tensor(1), "int32"),
        (lambda: jg.tensor(1.0, dtype=jg.float64) + jg.tensor(1.0), "float64"),  # both 0-dim
        (lambda: jg.tensor([True]) + 1, "int64"),
        (lambda: jg.tensor([True]) + True, "bool"),
        (lambda: jg.tensor([2]) ** 2, "int64"),
        (lambda: jg.tensor([2]) ** 0.5, "float32"),
        (lambda: 2 ** jg.tensor([2]), "int64"),
        (lambda: jg.tensor([1.0]) > 0, "bool"),
        (lambda: jg.where(jg.tensor([True]), 1.0, 0.0), "float32"),
        (lambda: jg.tensor([1, 5]).clamp(0, 3.5), "float32"),
        (lambda: jg.tensor([1, 2]).sum(), "int64"),
        (lambda: jg.tensor([True, False]).sum(), "int64"),
    ],
)
def test_type_promotion_like_pytorch(make, expected):
    assert make().dtype.name == expected


def test_integer_arithmetic_follows_python_floor_semantics():
    assert (jg.tensor([-3, 5]) // 2).tolist() == [-2, 2]
    assert (jg.tensor([-3, 5]) % 3).tolist() == [0, 2]
    assert (jg.tensor([-3.5, 5.0]) % 3).tolist() == [2.5, 2.0]


def test_mean_of_integer_tensor_errors():
    with pytest.raises(RuntimeError, match="mean\\(\\): could not infer output dtype"):
        jg.tensor([1, 2]).mean()


# -- attributes and basic methods ------------------------------------------------------------------
def test_attributes():
    x = jg.zeros(2, 3)
    assert x.shape == (2, 3) and isinstance(x.shape, tuple)
    assert x.size() == (2, 3) and x.size(1) == 3 and x.size(-1) == 3
    assert x.numel() == 6 and x.dim() == 2 and x.ndim == 2
    assert str(x.device) == "cpu" and x.cpu() is x
    assert x.T.shape == (3, 2)
    assert x.dtype is jg.float32
    assert not x.requires_grad and x.is_leaf and x.grad is None and x.grad_fn is None
    assert len(x) == 2
    with pytest.raises(IndexError, match="Dimension out of range"):
        x.size(2)


def test_item_tolist_numpy():
    assert jg.tensor([2.5]).item() == 2.5
    assert isinstance(jg.tensor([2]).item(), int)
    assert jg.tensor([[1, 2], [3, 4]]).tolist() == [[1, 2], [3, 4]]
    with pytest.raises(
        RuntimeError, match="a Tensor with 3 elements cannot be converted to Scalar"
    ):
        jg.ones(3).item()
    x = jg.zeros(2)
    x.numpy()[0] = 5  # numpy() shares memory
    assert x.tolist() == [5.0, 0.0]
    with pytest.raises(RuntimeError, match=r"Can't call numpy\(\) on Tensor that requires grad"):
        jg.zeros(2, requires_grad=True).numpy()
    assert float(jg.tensor([1.5])) == 1.5 and int(jg.tensor(3)) == 3
    assert [10, 20, 30][jg.tensor(1)] == 20
    with pytest.raises(RuntimeError, match="Boolean value of Tensor with more than one value"):
        bool(jg.ones(2))


def test_grad_assignment_is_checked():
    x = jg.zeros(2, requires_grad=True)
    x.grad = jg.ones(2)
    assert x.grad.tolist() == [1.0, 1.0]
    with pytest.raises(RuntimeError, match="assigned grad has data of a different size"):
        x.grad = jg.ones(3)
    with pytest.raises(RuntimeError, match="assigned grad has data of a different type"):
        x.grad = jg.ones(2, dtype=jg.float64)
    assert x.grad.tolist() == [1.0, 1.0]  # failed assignments change nothing
    x.grad = None
    assert x.grad is None


def test_grad_fn_name_and_next_functions():
    x = jg.ones(2, requires_grad=True)
    y = x * 2
    assert y.grad_fn.name() == "MulBackward0"
    (acc, nr), (other, _) = y.grad_fn.next_functions
    assert type(acc).__name__ == "AccumulateGrad" and acc.variable is x and nr == 0
    assert other is None  # the constant needs no gradient
    z = y + x
    assert z.grad_fn.name() == "AddBackward0"
    assert z.grad_fn.next_functions[0][0] is y.grad_fn
    assert jg.exp(x).grad_fn.name() == "ExpBackward0"


def test_clone_is_a_differentiable_copy():
    x = t64([1.0, 2.0], True)
    c = x.clone()
    assert c.grad_fn is not None
    with jg.no_grad():
        c.add_(1)
    assert x.tolist() == [1.0, 2.0]
    (c * 3).sum().backward()
    np.testing.assert_allclose(np_of(x.grad), [3.0, 3.0])


def test_zero_fill_copy():
    x = jg.ones(2, 2)
    assert x.zero_() is x and x.tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert x.fill_(3).tolist() == [[3.0, 3.0], [3.0, 3.0]]
    assert x.copy_(jg.tensor([1, 2])).tolist() == [[1.0, 2.0], [1.0, 2.0]]  # broadcast + cast
    assert x.dtype is jg.float32 and x._version == 3
    i = jg.zeros(2, dtype=jg.int64)
    assert i.fill_(3.7).tolist() == [3, 3]


def test_copy_into_non_leaf_is_differentiable():
    src = t64([1.0, 2.0], True)
    dst = t64([0.0, 0.0], True) * 1
    dst.copy_(src * 2)
    dst.sum().backward()
    np.testing.assert_allclose(np_of(src.grad), [2.0, 2.0])


# -- operators -------------------------------------------------------------------------------------
def test_operators_with_broadcasting_and_scalars_on_both_sides():
    a = np.arange(6.0).reshape(2, 3) + 1
    b = np.array([0.5, 2.0, -1.0])
    x, y = t64(a), t64(b)
    cases = [
        (x + y, a + b), (x - y, a - b), (x * y, a * b), (x / y, a / b),
        (x**2, a**2), (2**x, 2**a), (1 - x, 1 - a), (3 / x, 3 / a), (x - 1, a - 1),
        (2 * x, 2 * a), (x + 0.5, a + 0.5), (-x, -a), (abs(y), np.abs(b)),
        (x @ t64(a.T), a @ a.T), (x // 2, a // 2), (x % 2, a % 2),
    ]  # fmt: skip
    for got, want in cases:
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    assert ((x > 2) == jg.tensor(a > 2)).all().item()
    assert (x >= y).tolist() == (a >= b).tolist() and (x != 3).tolist() == (a != 3).tolist()


def test_inplace_operators_keep_identity():
    x = t64([1.0, 2.0])
    ident = id(x)
    x += 1
    x *= 3
    x -= 1
    x /= 2
    assert id(x) == ident and x._version == 4
    np.testing.assert_allclose(x.numpy(), [2.5, 4.0])
    with pytest.raises(RuntimeError, match="doesn't match the broadcast shape"):
        x += jg.ones(2, 2, dtype=jg.float64)
    i = jg.tensor([1, 2])
    with pytest.raises(RuntimeError, match="result type Float can't be cast to the desired output"):
        i += 0.5


def test_max_min_with_dim_return_values_and_indices():
    x = t64([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]], True)
    values, indices = x.max(1)
    assert values.tolist() == [5.0, 7.0] and indices.tolist() == [1, 0]
    assert indices.dtype is jg.int64
    r = x.max(dim=0, keepdim=True)
    assert r.values.shape == (1, 3) and r.indices.tolist() == [[1, 0, 1]]
    assert x.min(1).indices.tolist() == [0, 1]
    assert x.max().item() == 7.0
    values.sum().backward()
    np.testing.assert_allclose(np_of(x.grad), [[0, 1, 0], [1, 0, 0]])


def test_reductions_with_dims():
    a = np.arange(24.0).reshape(2, 3, 4)
    x = t64(a)
    np.testing.assert_allclose(x.sum((0, 2)).numpy(), a.sum((0, 2)))
    assert x.sum(1, keepdim=True).shape == (2, 1, 4)
    np.testing.assert_allclose(x.mean(-1).numpy(), a.mean(-1))
    np.testing.assert_allclose(x.var(1).numpy(), a.var(1, ddof=1))
    np.testing.assert_allclose(x.std().numpy(), a.std(ddof=1))


# -- indexing --------------------------------------------------------------------------------------
A = np.arange(24.0).reshape(2, 3, 4)
INDICES = [
    1,
    -1,
    (1, 2),
    (0, -1, 3),
    slice(None, None, 2),
    (slice(None), slice(1, 3)),
    (Ellipsis, 1),
    (None, 0, None),
    (0, Ellipsis, None),
    (slice(None), [2, 0, 2]),
    ([1, 0], [2, 1]),
    ([1, 0], slice(None), [3, 3]),  # advanced indices separated by a slice go first
    (slice(None), [[0, 1], [2, 2]], slice(1, 3)),
    (Ellipsis, [0, 0, 3]),
]


def _as_jg_index(index):
    def conv(i):
        return jg.tensor(i) if isinstance(i, list) else i

    return tuple(conv(i) for i in index) if isinstance(index, tuple) else conv(index)


@pytest.mark.parametrize("index", INDICES, ids=[repr(i) for i in INDICES])
def test_getitem_values_and_gradients_match_numpy(index):
    x = t64(A, True)
    np_index = (
        tuple(np.array(i) if isinstance(i, list) else i for i in index)
        if isinstance(index, tuple)
        else index
    )
    y = x[_as_jg_index(index)]
    want = A[np_index]
    assert y.shape == want.shape
    np.testing.assert_array_equal(y.detach().numpy(), want)
    g = np.random.default_rng(0).normal(size=want.shape)
    y.backward(t64(g))
    ref = np.zeros_like(A)
    np.add.at(ref, np_index, g)  # repeated indices accumulate
    np.testing.assert_allclose(np_of(x.grad), ref, rtol=1e-12)


def test_int_index_is_selected_before_advanced_indices_like_pytorch():
    # NumPy gives (2, 3) here; PyTorch applies the integer first and gives (3, 2)
    y = jg.tensor(A)[1, :, jg.tensor([1, 2])]
    assert y.shape == (3, 2)
    np.testing.assert_array_equal(y.numpy(), A[1][:, [1, 2]])


def test_boolean_mask_indexing_and_gradient():
    x = t64(A, True)
    mask = x.detach() > 10
    y = x[mask]
    np.testing.assert_array_equal(y.detach().numpy(), A[A > 10])
    (y * y).sum().backward()
    np.testing.assert_allclose(np_of(x.grad), np.where(A > 10, 2 * A, 0.0))
    rows = x[jg.tensor([True, False])]
    assert rows.shape == (1, 3, 4)


def test_index_errors():
    x = jg.arange(3)
    with pytest.raises(IndexError, match="index 5 is out of bounds for dimension 0 with size 3"):
        x[5]
    with pytest.raises(IndexError, match="too many indices for tensor of dimension 1"):
        x[0, 0]
    with pytest.raises(IndexError, match="out of bounds"):
        x[jg.tensor([0, 3])]


def test_setitem_values():
    x = jg.zeros(3, 4)
    x[1] = 5.0
    x[:, 0] = jg.tensor([1.0, 2.0, 3.0])
    x[x > 4.5] = -1.0
    x[jg.tensor([0, 2]), jg.tensor([3, 3])] = jg.tensor([7.0, 8.0])
    x[..., 1:3] += 0.5
    ref = np.zeros((3, 4))
    ref[1] = 5.0
    ref[:, 0] = [1.0, 2.0, 3.0]
    ref[ref > 4.5] = -1.0
    ref[[0, 2], [3, 3]] = [7.0, 8.0]
    ref[..., 1:3] += 0.5
    np.testing.assert_array_equal(x.numpy(), ref)
    x[1, :] = 0  # an integer value into a float tensor
    assert x[1].tolist() == [0.0] * 4


def test_setitem_is_differentiable():
    x = t64(np.arange(6.0).reshape(2, 3), True)
    v = t64([10.0, 20.0], True)
    y = x * 1
    y[:, 1] = v * v
    g = np.arange(6.0).reshape(2, 3) + 1
    y.backward(t64(g))
    np.testing.assert_allclose(np_of(x.grad), g * np.array([1, 0, 1]))
    np.testing.assert_allclose(np_of(v.grad), g[:, 1] * 2 * np.array([10.0, 20.0]))


def test_setitem_with_index_array_is_differentiable():
    x = t64(np.arange(5.0), True)
    v = t64([1.0, 2.0], True)
    y = x * 2
    y[jg.tensor([4, 1])] = v
    y.backward(t64([1.0, 2.0, 3.0, 4.0, 5.0]))
    np.testing.assert_allclose(np_of(x.grad), [2.0, 0.0, 6.0, 8.0, 0.0])
    np.testing.assert_allclose(np_of(v.grad), [5.0, 2.0])


def test_setitem_on_leaf_requiring_grad_errors():
    x = t64([1.0, 2.0], True)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad"):
        x[0] = 3.0
    assert x.tolist() == [1.0, 2.0] and x._version == 0


def test_views_share_storage():
    x = jg.zeros(2, 3)
    row = x[1]
    row.fill_(4.0)
    assert x.tolist() == [[0.0, 0.0, 0.0], [4.0, 4.0, 4.0]]
    v = x.view(3, 2)
    v[0, 0] = 9.0
    assert x[0, 0].item() == 9.0


# -- gradients at kinks and ties: PyTorch's choices ------------------------------------------------
KINKS = [
    ("max_ties_split", lambda x: x.max(), [1.0, 3.0, 3.0], [0.0, 0.5, 0.5]),
    ("amax_ties_split", lambda x: jg.amax(x, 0), [1.0, 3.0, 3.0], [0.0, 0.5, 0.5]),
    ("max_dim_picks_index", lambda x: x.max(0).values, [1.0, 3.0, 3.0], [0.0, 1.0, 0.0]),
    ("min_ties_split", lambda x: x.min(), [1.0, 1.0, 3.0], [0.5, 0.5, 0.0]),
    ("maximum_tie_halves", lambda x: jg.maximum(x, t64([1.0, 3.0, 0.0])), [1.0, 3.0, 3.0],
     [0.5, 0.5, 1.0]),
    ("relu_at_zero", jg.relu, [0.0, -1.0, 2.0], [0.0, 0.0, 1.0]),
    ("abs_at_zero", jg.abs, [0.0, -1.0, 2.0], [0.0, -1.0, 1.0]),
    ("clamp_bounds_pass", lambda x: jg.clamp(x, 0.0, 1.0), [0.0, 1.0, 2.0], [1.0, 1.0, 0.0]),
    ("norm_at_zero", jg.norm, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),
    ("std_of_constant", lambda x: x.std(), [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]),
    ("sign", jg.sign, [0.0, -1.0, 2.0], [0.0, 0.0, 0.0]),
]  # fmt: skip


@pytest.mark.parametrize("name, fn, values, want", KINKS, ids=[k[0] for k in KINKS])
def test_gradients_at_kinks_follow_pytorch(name, fn, values, want):
    x = t64(values, True)
    fn(x).sum().backward()
    np.testing.assert_array_equal(np_of(x.grad), want)


def test_softplus_and_elu_gradients_at_zero_and_nan_follow_pytorch():
    x = t64([0.0, -1.0, 2.0, np.nan, 60.0, -60.0], True)
    F.softplus(x).sum().backward()  # sigmoid(x): 1/2 at 0 (not 0), 1 past the threshold
    sig = 1.0 / (1.0 + np.exp(-np.array([0.0, -1.0, 2.0, np.nan, 60.0, -60.0])))
    np.testing.assert_allclose(np_of(x.grad), sig, rtol=1e-12)
    y = t64([0.0, -1.0, 2.0, np.nan, 800.0], True)
    out = F.elu(y, alpha=1.5)
    out.sum().backward()  # alpha * e^x up to and including 0, 1 above; NaN passes through
    np.testing.assert_allclose(np_of(out.detach()), [0.0, 1.5 * np.expm1(-1.0), 2.0, np.nan, 800.0])
    np.testing.assert_allclose(np_of(y.grad), [1.5, 1.5 * np.exp(-1.0), 1.0, 1.0, 1.0])


def test_sign_of_nan_is_zero_like_pytorch():
    x = t64([np.nan, -2.0, 0.0, 3.0], True)
    np.testing.assert_array_equal(np_of(jg.sign(x)), [0.0, -1.0, 0.0, 1.0])
    jg.abs(x).sum().backward()  # abs' = sign: 0 at NaN, as in PyTorch
    np.testing.assert_array_equal(np_of(x.grad), [0.0, -1.0, 0.0, 1.0])


def test_relu_passes_nan_through_like_pytorch():
    # forward and gradient: NaN stays NaN, and its gradient passes (PyTorch's threshold rule)
    x = t64([np.nan, -1.0, 0.0, 2.0], True)
    y = jg.relu(x)
    y.sum().backward()
    np.testing.assert_array_equal(np_of(y.detach()), [np.nan, 0.0, 0.0, 2.0])
    np.testing.assert_array_equal(np_of(x.grad), [1.0, 0.0, 0.0, 1.0])


@pytest.mark.torch
def test_a_number_divided_by_a_tensor_rounds_as_pytorch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal(4096).astype(np.float32)
    for num in (1.3, 3, True):
        got = (num / jg.tensor(x)).numpy()
        want = (num / torch.from_numpy(x)).numpy()
        np.testing.assert_array_equal(got, want)
    xi = np.arange(1, 9)
    np.testing.assert_array_equal((3 / jg.tensor(xi)).numpy(), (3 / torch.from_numpy(xi)).numpy())
