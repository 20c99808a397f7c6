"""Random sampling ops, the in-place random fills and nn.init: distributions (statistical checks
with fixed seeds), determinism, dtypes, errors and compiled use; agreement with torch where it
is installed."""

import math

import numpy as np
import pytest
from scipy import stats

import jitgrad as jg
from jitgrad.nn import init

N = 20000  # samples per statistical check: a standard error of about 0.7% of the spread


def _mean_ok(x, mean, var, k=5.0):
    """The sample mean lies within k standard errors of the true mean."""
    assert abs(x.mean() - mean) < k * math.sqrt(var / x.size), (x.mean(), mean)


def _var_ok(x, var, rel=0.05):
    assert abs(x.var() - var) < rel * var, (x.var(), var)


# -- in-place fills --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [jg.float32, jg.float64])
def test_uniform_normal_and_log_normal_fills(dtype):
    jg.manual_seed(0)
    t = jg.zeros(N, dtype=dtype)
    u = t.uniform_(-1.0, 3.0).numpy()
    assert t.dtype == dtype and u.min() >= -1 and u.max() < 3
    _mean_ok(u, 1.0, 16 / 12)
    _var_ok(u, 16 / 12)
    z = jg.zeros(N, dtype=dtype).normal_(2.0, 0.5).numpy()
    _mean_ok(z, 2.0, 0.25)
    _var_ok(z, 0.25)
    assert stats.kstest(z, "norm", args=(2.0, 0.5)).pvalue > 1e-3
    ln = jg.zeros(N, dtype=dtype).log_normal_(0.5, 0.25).numpy()
    assert ln.min() > 0
    assert stats.kstest(np.log(ln), "norm", args=(0.5, 0.25)).pvalue > 1e-3


def test_exponential_cauchy_and_geometric_fills():
    jg.manual_seed(1)
    e = jg.zeros(N, dtype=jg.float64).exponential_(4.0).numpy()
    assert e.min() >= 0
    _mean_ok(e, 0.25, 1 / 16)
    assert stats.kstest(e, "expon", args=(0, 0.25)).pvalue > 1e-3
    c = jg.zeros(N, dtype=jg.float64).cauchy_(1.0, 2.0).numpy()
    assert stats.kstest(c, "cauchy", args=(1.0, 2.0)).pvalue > 1e-3
    g = jg.zeros(N, dtype=jg.int64).geometric_(0.25)
    assert g.dtype == jg.int64
    g = g.numpy()
    assert g.min() >= 1 and np.all(g == np.round(g))
    _mean_ok(g, 4.0, 0.75 / 0.25**2)
    # P(K = 1) = p, P(K = 2) = p (1 - p)
    assert abs((g == 1).mean() - 0.25) < 0.02 and abs((g == 2).mean() - 0.1875) < 0.02


def test_bernoulli_fill_with_number_and_tensor():
    jg.manual_seed(2)
    b = jg.zeros(N, dtype=jg.int64).bernoulli_(0.3)
    assert b.dtype == jg.int64 and set(np.unique(b.numpy())) <= {0, 1}
    _mean_ok(b.numpy(), 0.3, 0.21)
    p = jg.tensor([0.0, 1.0, 0.5])
    rows = jg.zeros(N // 4, 3).bernoulli_(p).numpy()
    assert np.all(rows[:, 0] == 0) and np.all(rows[:, 1] == 1)
    _mean_ok(rows[:, 2], 0.5, 0.25)
    assert jg.zeros(4).bernoulli_().dtype == jg.float32


def test_random_fill_ranges_and_defaults():
    jg.manual_seed(3)
    r = jg.zeros(N).random_(-3, 4).numpy()
    assert set(np.unique(r)) == set(range(-3, 4))
    assert stats.chisquare(np.bincount((r + 3).astype(int))).pvalue > 1e-4
    assert set(np.unique(jg.zeros(500).random_(3).numpy())) == {0, 1, 2}
    assert set(np.unique(jg.zeros(500).random_(**{"from": 5, "to": 7}).numpy())) == {5, 6}
    # defaults: [0, 2^mantissa] for floats, [0, max] for integers
    f32 = jg.zeros(N).random_().numpy()
    assert f32.min() >= 0 and f32.max() <= 2**24 and f32.max() > 2**23 and np.all(f32 % 1 == 0)
    i32 = jg.zeros(N, dtype=jg.int32).random_()
    assert i32.dtype == jg.int32 and i32.numpy().min() >= 0 and i32.numpy().max() > 2**30
    i64 = jg.zeros(N, dtype=jg.int64).random_().numpy()
    assert i64.min() >= 0 and i64.max() > 2**62
    # wide explicit ranges stay inside them
    wide = jg.zeros(N, dtype=jg.int64).random_(-(2**60), 2**60).numpy()
    assert wide.min() >= -(2**60) and wide.max() < 2**60 and (wide < 0).mean() > 0.45
    bools = jg.zeros(100, dtype=jg.bool_).random_().numpy()
    assert bools.dtype == np.bool_ and bools.any() and not bools.all()


def test_fills_are_reproducible_and_use_the_generator_given():
    def draws():
        t = jg.zeros(6)
        return [
            t.uniform_().numpy().copy(),
            t.normal_().numpy().copy(),
            t.random_(10).numpy().copy(),
            jg.multinomial(jg.ones(6), 3).numpy(),
            jg.poisson(jg.full((6,), 30.0)).numpy(),
        ]

    jg.manual_seed(7)
    a = draws()
    jg.manual_seed(7)
    b = draws()
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], a[1])
    # a private generator leaves the default stream alone
    jg.manual_seed(7)
    g = jg.Generator().manual_seed(1)
    jg.zeros(5).uniform_(generator=g)
    jg.multinomial(jg.ones(4), 2, generator=g)
    np.testing.assert_array_equal(jg.zeros(6).uniform_().numpy(), a[0])


def test_fill_on_a_leaf_that_requires_grad():
    w = jg.zeros(3, requires_grad=True)
    jg.manual_seed(0)
    state = jg.get_rng_state().numpy()
    for fill in (lambda: w.normal_(), lambda: w.uniform_(), lambda: w.random_(3)):
        with pytest.raises(RuntimeError, match="a leaf Variable that requires grad"):
            fill()
    assert np.all(w.detach().numpy() == 0) and w.grad is None
    np.testing.assert_array_equal(state, jg.get_rng_state().numpy())
    with jg.no_grad():
        w.uniform_(1.0, 2.0)
    assert w.requires_grad and w.detach().numpy().min() >= 1


def test_fill_of_a_non_leaf_sends_no_gradient_back():
    x = jg.ones(3, requires_grad=True)
    y = x * 2
    y.exponential_()
    (y * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros(3))


def test_fills_do_not_need_grad_and_keep_dtype():
    for fill in ("uniform_", "normal_", "exponential_", "log_normal_", "cauchy_"):
        t = jg.zeros(3, dtype=jg.float64)
        out = getattr(t, fill)()
        assert out is t and t.dtype == jg.float64 and not t.requires_grad


# -- samplers --------------------------------------------------------------------------------------
def test_multinomial_with_replacement_matches_the_weights():
    jg.manual_seed(4)
    w = np.array([1.0, 0.0, 2.0, 3.0, 4.0])
    s = jg.multinomial(jg.tensor(w), N, replacement=True)
    assert s.dtype == jg.int64 and s.shape == (N,)
    counts = np.bincount(s.numpy(), minlength=5)
    assert counts[1] == 0
    keep = w > 0
    assert stats.chisquare(counts[keep], N * w[keep] / w.sum()).pvalue > 1e-4
    rows = jg.multinomial(jg.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 5.0]]), 50, True).numpy()
    assert rows.shape == (2, 50) and set(rows[0]) <= {0, 1} and np.all(rows[1] == 2)


def test_multinomial_without_replacement():
    jg.manual_seed(5)
    w = np.array([1.0, 2.0, 3.0, 4.0])
    s = jg.multinomial(jg.tensor(np.tile(w, (3000, 1))), 4).numpy()
    assert s.shape == (3000, 4)
    # every row is a permutation: no repeats
    np.testing.assert_array_equal(np.sort(s, axis=1), np.tile(np.arange(4), (3000, 1)))
    # the first draw follows the weights; the second, given the first, the rest renormalised
    first = np.bincount(s[:, 0], minlength=4)
    assert stats.chisquare(first, 3000 * w / w.sum()).pvalue > 1e-4
    after3 = s[s[:, 0] == 3, 1]
    rest = w[:3] / w[:3].sum()
    assert stats.chisquare(np.bincount(after3, minlength=3), after3.size * rest).pvalue > 1e-4
    # categories of weight zero come last
    z = jg.multinomial(jg.tensor([0.0, 1.0, 0.0, 2.0]), 2).numpy()
    assert set(z) == {1, 3}


@pytest.mark.parametrize(
    ("weights", "n", "replacement", "message"),
    [
        ([1.0, -1.0], 1, False, "probability tensor contains either `inf`, `nan` or element < 0"),
        ([1.0, math.inf], 1, True, "probability tensor contains either `inf`, `nan` or element"),
        ([1.0, math.nan], 1, False, "probability tensor contains either `inf`, `nan` or element"),
        ([0.0, 0.0], 1, True, "invalid multinomial distribution (sum of probabilities <= 0)"),
        ([1.0, 2.0], 3, False, "cannot sample n_sample > prob_dist.size(-1) samples without"),
        ([1.0, 2.0], 0, True, "cannot sample n_sample <= 0 samples"),
        ([[[1.0]]], 1, True, "prob_dist must be 1 or 2 dim"),
        (1.0, 1, True, "prob_dist must be 1 or 2 dim"),
    ],
)
def test_multinomial_errors(weights, n, replacement, message):
    with pytest.raises(RuntimeError) as err:
        jg.multinomial(jg.tensor(weights), n, replacement)
    assert message in str(err.value)
    with pytest.raises(RuntimeError, match="only supports floating-point dtypes"):
        jg.multinomial(jg.tensor([1, 2]), 1)


def test_bernoulli():
    jg.manual_seed(6)
    p = jg.tensor(np.tile([0.0, 0.2, 1.0], (N // 3, 1)), dtype=jg.float32)
    b = jg.bernoulli(p)
    assert b.dtype == jg.float32 and b.shape == p.shape
    b = b.numpy()
    assert np.all(b[:, 0] == 0) and np.all(b[:, 2] == 1)
    _mean_ok(b[:, 1], 0.2, 0.16)
    q = jg.bernoulli(jg.zeros(N, dtype=jg.float64), 0.7)
    assert q.dtype == jg.float64
    _mean_ok(q.numpy(), 0.7, 0.21)
    assert jg.zeros(3).bernoulli(p=0.5).shape == (3,)
    with pytest.raises(RuntimeError, match="Expected p_in >= 0 && p_in <= 1"):
        jg.bernoulli(jg.tensor([0.5, 2.0]))


def test_bernoulli_and_normal_join_the_graph_with_zero_gradient():
    p = jg.full((3,), 0.5, requires_grad=True)
    b = jg.bernoulli(p)
    assert b.requires_grad
    b.sum().backward()
    np.testing.assert_array_equal(p.grad.numpy(), np.zeros(3))
    m = jg.zeros(2, 3, requires_grad=True)
    s = jg.ones(3, requires_grad=True)
    jg.normal(m, s).sum().backward()
    np.testing.assert_array_equal(m.grad.numpy(), np.zeros((2, 3)))
    np.testing.assert_array_equal(s.grad.numpy(), np.zeros(3))
    assert not jg.multinomial(p, 2).requires_grad and not jg.rand_like(p).requires_grad


@pytest.mark.parametrize("rate", [0.0, 0.5, 4.0, 9.5, 12.0, 80.0, 5000.0])
def test_poisson_mean_and_variance(rate):
    jg.manual_seed(8)
    s = jg.poisson(jg.full((N,), rate, dtype=jg.float64))
    assert s.dtype == jg.float64
    s = s.numpy()
    assert np.all(s == np.round(s)) and s.min() >= 0
    if rate == 0:
        assert np.all(s == 0)
        return
    _mean_ok(s, rate, rate)
    _var_ok(s, rate, rel=0.06)


def test_poisson_distribution_and_errors():
    jg.manual_seed(9)
    for rate in (3.0, 20.0):
        s = jg.poisson(jg.full((N,), rate)).numpy().astype(int)
        assert jg.poisson(jg.full((2,), rate)).dtype == jg.float32
        ks = np.arange(s.max() + 1)
        expected = stats.poisson.pmf(ks, rate) * N
        keep = expected > 20
        observed = np.bincount(s, minlength=ks.size)[keep]
        scaled = expected[keep] * observed.sum() / expected[keep].sum()
        assert stats.chisquare(observed, scaled).pvalue > 1e-4
    with pytest.raises(RuntimeError, match="invalid Poisson rate, expected rate to be non-negat"):
        jg.poisson(jg.tensor([1.0, -1.0]))
    with pytest.raises(NotImplementedError, match="poisson_cpu"):
        jg.poisson(jg.tensor([1, 2]))


def test_normal_forms():
    jg.manual_seed(10)
    a = jg.normal(jg.full((N,), 3.0), 2.0).numpy()
    _mean_ok(a, 3.0, 4.0)
    _var_ok(a, 4.0)
    b = jg.normal(1.0, jg.full((N,), 0.5, dtype=jg.float64))
    assert b.dtype == jg.float64
    _var_ok(b.numpy(), 0.25)
    assert jg.normal(jg.zeros(2, 3), jg.ones(3)).shape == (2, 3)
    c = jg.normal(-1.0, 3.0, (N,))
    assert c.dtype == jg.float32 and c.shape == (N,)
    _mean_ok(c.numpy(), -1.0, 9.0)
    assert jg.normal(0.0, 1.0, size=(2, 2), dtype=jg.float64).dtype == jg.float64
    assert jg.normal(0.0, 1.0, (2,), requires_grad=True).requires_grad
    with pytest.raises(RuntimeError, match="must match the size of tensor"):
        jg.normal(jg.zeros(2, 3), jg.ones(4))
    with pytest.raises(RuntimeError, match=r"normal expects std >= 0.0, but found std -1"):
        jg.normal(0.0, -1.0, (2,))
    with pytest.raises(RuntimeError, match=r"normal expects all elements of std >= 0.0"):
        jg.normal(jg.zeros(2), -jg.ones(2))


def test_like_factories_and_randperm():
    jg.manual_seed(11)
    x = jg.zeros(2, 3, dtype=jg.float64)
    assert jg.rand_like(x).dtype == jg.float64 and jg.randn_like(x).shape == (2, 3)
    assert jg.rand_like(x, dtype=jg.float32).dtype == jg.float32
    assert jg.rand_like(x, requires_grad=True).requires_grad
    r = jg.randint_like(jg.zeros(N), 2, 5)
    assert r.dtype == jg.float32 and set(np.unique(r.numpy())) == {2, 3, 4}
    i = jg.randint_like(jg.zeros(N, dtype=jg.int32), 3)
    assert i.dtype == jg.int32 and set(np.unique(i.numpy())) == {0, 1, 2}
    assert set(np.unique(jg.randint_like(jg.zeros(200), high=2).numpy())) == {0, 1}
    with pytest.raises(TypeError, match="high"):
        jg.randint_like(jg.zeros(2))
    with pytest.raises(NotImplementedError, match="check_uniform_bounds"):
        jg.rand_like(jg.zeros(2, dtype=jg.int64))
    with pytest.raises(NotImplementedError, match="normal_kernel_cpu"):
        jg.randn_like(jg.zeros(2, dtype=jg.int64))
    p = jg.randperm(50)
    assert p.dtype == jg.int64
    np.testing.assert_array_equal(np.sort(p.numpy()), np.arange(50))
    assert jg.randperm(4, dtype=jg.float32).dtype == jg.float32
    with pytest.raises(RuntimeError, match="negative dimension -1"):
        jg.randperm(-1)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: jg.zeros(3).uniform_(2, 1), RuntimeError, "uniform_ expects to return a [from, "),
        (lambda: jg.zeros(3).normal_(0, -1), RuntimeError, "normal expects std >= 0.0"),
        (lambda: jg.zeros(3).exponential_(0), RuntimeError, "exponential_ expects lambda > 0.0"),
        (lambda: jg.zeros(3).geometric_(1), RuntimeError, "geometric_ expects p to be in (0, 1)"),
        (lambda: jg.zeros(3).log_normal_(0, 0), RuntimeError, "log_normal_ expects std > 0.0"),
        (lambda: jg.zeros(3).cauchy_(0, -1), RuntimeError, "cauchy_ expects sigma > 0.0"),
        (lambda: jg.zeros(3).random_(3, 3), RuntimeError, "random_ expects 'from' to be less"),
        (lambda: jg.zeros(3).bernoulli_(1.5), RuntimeError, "bernoulli_ expects p to be in [0, 1]"),
        (lambda: jg.zeros(3, dtype=jg.int64).uniform_(), NotImplementedError, "check_uniform"),
        (lambda: jg.zeros(3, dtype=jg.int64).exponential_(), RuntimeError, "continuous"),
        (lambda: jg.zeros(3, dtype=jg.int32).random_(2**40), RuntimeError, "to - 1 is out of"),
        (lambda: jg.zeros(3, dtype=jg.bool_).random_(3), RuntimeError, "to - 1 is out of"),
    ],
)
def test_fill_errors_leave_the_tensor_alone(call, error, message):
    with pytest.raises(error) as err:
        call()
    assert message in str(err.value)


# -- agreement with torch --------------------------------------------------------------------------
_TORCH_CALLS = [
    ("uniform_", (2.0, 1.0), "float32"),
    ("normal_", (0.0, -1.0), "float32"),
    ("normal_", (), "int64"),
    ("uniform_", (), "int64"),
    ("exponential_", (-1.0,), "float32"),
    ("exponential_", (), "int64"),
    ("exponential_", (), "int32"),
    ("geometric_", (0.0,), "float32"),
    ("geometric_", (1.5,), "float32"),
    ("log_normal_", (0.0, -1.0), "float32"),
    ("log_normal_", (), "int64"),
    ("cauchy_", (0.0, -1.0), "float32"),
    ("cauchy_", (), "int64"),
    ("cauchy_", (), "int32"),
    ("random_", (5, 3), "float32"),
    ("random_", (0,), "float32"),
    ("random_", (-3,), "float32"),
    ("random_", (2**40,), "int32"),
    ("random_", (-(2**40), 3), "int32"),
    ("random_", (3,), "bool"),
    ("bernoulli_", (1.5,), "float32"),
]


@pytest.mark.parametrize(("method", "args", "dtype"), _TORCH_CALLS)
def test_fill_errors_match_torch(method, args, dtype):
    torch = pytest.importorskip("torch")
    with pytest.raises(Exception) as want:
        getattr(torch.zeros(3, dtype=getattr(torch, dtype)), method)(*args)
    with pytest.raises(Exception) as got:
        getattr(jg.zeros(3, dtype=getattr(jg, "bool_" if dtype == "bool" else dtype)), method)(
            *args
        )
    assert type(got.value) is type(want.value)
    assert str(got.value) == str(want.value)


@pytest.mark.parametrize(
    "weights", [[1.0, -1.0], [1.0, math.inf], [0.0, 0.0], [[[1.0]]], [1, 2]], ids=str
)
@pytest.mark.parametrize("n", [1, 3, 0])
def test_multinomial_errors_match_torch(weights, n):
    torch = pytest.importorskip("torch")
    try:
        torch.multinomial(torch.tensor(weights), n)
        want = None
    except RuntimeError as e:
        want = str(e)
    if want is None:
        assert jg.multinomial(jg.tensor(weights), n).shape == (n,)
        return
    with pytest.raises(RuntimeError) as got:
        jg.multinomial(jg.tensor(weights), n)
    assert str(got.value) == want


def test_shapes_and_dtypes_match_torch():
    torch = pytest.importorskip("torch")
    cases = [
        (lambda m: m.multinomial(m.ones(2, 5), 3), None),
        (lambda m: m.multinomial(m.ones(5, dtype=m.float64), 7, True), None),
        (lambda m: m.bernoulli(m.zeros(2, 3, dtype=m.float64)), None),
        (lambda m: m.poisson(m.ones(4)), None),
        (lambda m: m.normal(m.zeros(2, 3), m.ones(3)), None),
        (lambda m: m.normal(0.0, m.ones(2, dtype=m.float64)), None),
        (lambda m: m.normal(0.0, 1.0, (4, 1)), None),
        (lambda m: m.randint_like(m.zeros(3, dtype=m.float64), 5), None),
        (lambda m: m.randint_like(m.zeros(3, dtype=m.int32), 1, 5), None),
        (lambda m: m.rand_like(m.zeros(3), dtype=m.float64), None),
        (lambda m: m.randperm(5, dtype=m.float32), None),
        (lambda m: m.zeros(2, dtype=m.int64).geometric_(0.5), None),
        (lambda m: m.zeros(2, dtype=m.int32).random_(), None),
    ]
    for make, _ in cases:
        want, got = make(torch), make(jg)
        assert tuple(got.shape) == tuple(want.shape)
        assert str(got.dtype).split(".")[-1] == str(want.dtype).split(".")[-1]
        assert got.requires_grad == want.requires_grad


# -- under compile ---------------------------------------------------------------------------------
def _sampling_step(x):
    a = jg.zeros_like(x).uniform_(2.0, 3.0)
    b = jg.zeros_like(x).exponential_(2.0)
    c = jg.zeros_like(x).random_(0, 10)
    d = jg.bernoulli(jg.full_like(x, 0.3))
    e = jg.zeros_like(x).normal_(1.0, 2.0)
    f = jg.zeros_like(x).geometric_(0.5)
    g = jg.multinomial(jg.tensor([1.0, 2.0, 3.0]), 4, True)
    h = jg.multinomial(jg.tensor([[1.0, 2.0, 3.0]]), 2)
    i = jg.randperm(4)
    j = jg.zeros(x.shape, dtype=jg.int64).random_()
    k = jg.zeros_like(x).bernoulli_(jg.full((40,), 0.5))
    return a, b, c, d, e, f, g, h, i, j, k


@pytest.mark.filterwarnings("error")
def test_compiled_sampling_matches_eager_and_draws_anew():
    step = jg.compile(_sampling_step, backend="numba")
    x = jg.zeros(40)
    jg.manual_seed(12)
    eager = _sampling_step(x)
    jg.manual_seed(12)
    compiled = step(x)
    for e, c in zip(eager, compiled):
        assert e.dtype == c.dtype
        np.testing.assert_allclose(c.numpy(), e.numpy(), rtol=1e-6)
    again = step(x)
    assert not np.array_equal(again[0].numpy(), compiled[0].numpy())
    assert not np.array_equal(again[4].numpy(), compiled[4].numpy())


def test_poisson_refuses_to_be_traced():
    with pytest.raises(jg.TraceError, match="poisson"):
        jg.compile(lambda r: jg.poisson(r))(jg.ones(3))


# -- nn.init ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (4, 4), (4, 2, 3)])
def test_orthogonal(shape):
    jg.manual_seed(13)
    w = init.orthogonal_(jg.zeros(*shape, dtype=jg.float64), gain=2.0)
    m = w.numpy().reshape(shape[0], -1)
    small = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    np.testing.assert_allclose(small, 4.0 * np.eye(min(m.shape)), atol=1e-10)
    jg.manual_seed(13)
    np.testing.assert_array_equal(init.orthogonal_(jg.zeros(*shape, dtype=jg.float64), 2.0), w)
    with pytest.raises(ValueError, match="Only tensors with 2 or more dimensions are supported"):
        init.orthogonal_(jg.zeros(3))
    assert init.orthogonal_(jg.zeros(0, 3)).shape == (0, 3)


def _conv_numpy(x, w, groups):
    """Direct 'same'-padded convolution (cross-correlation), N C L... layout, odd kernels."""
    k = w.shape[2:]
    pad = [(0, 0), (0, 0)] + [(s // 2, s // 2) for s in k]
    xp = np.pad(x, pad)
    out = np.zeros((x.shape[0], w.shape[0], *x.shape[2:]))
    cin = w.shape[1]
    per = w.shape[0] // groups
    for o in range(w.shape[0]):
        g = o // per
        for offs in np.ndindex(*k):
            sl = tuple(slice(d, d + n) for d, n in zip(offs, x.shape[2:]))
            patch = xp[(slice(None), slice(g * cin, (g + 1) * cin), *sl)]
            wv = w[(o, slice(None), *offs)].reshape(1, cin, *([1] * len(k)))
            out[:, o] += (patch * wv).sum(1)
    return out


@pytest.mark.parametrize(
    ("wshape", "groups"), [((3, 3, 3), 1), ((4, 2, 3, 3), 2), ((2, 4, 3, 1, 3), 1), ((6, 2, 5), 3)]
)
def test_dirac_is_the_identity_convolution(wshape, groups):
    w = init.dirac_(jg.full(wshape, 7.0, dtype=jg.float64), groups).numpy()
    cin = wshape[1] * groups
    x = np.random.default_rng(0).standard_normal((2, cin, *[4] * (len(wshape) - 2)))
    out = _conv_numpy(x, w, groups)
    per = wshape[0] // groups
    for o in range(wshape[0]):
        g, d = divmod(o, per)
        want = x[:, g * wshape[1] + d] if d < wshape[1] else 0.0
        np.testing.assert_allclose(out[:, o], want)


def test_dirac_errors():
    with pytest.raises(ValueError, match="Only tensors with 3, 4, or 5 dimensions are supported"):
        init.dirac_(jg.zeros(3, 3))
    with pytest.raises(ValueError, match="dim 0 must be divisible by groups"):
        init.dirac_(jg.zeros(4, 3, 3), groups=3)


def test_sparse():
    jg.manual_seed(14)
    w = init.sparse_(jg.zeros(40, 30, dtype=jg.float64), sparsity=0.3, std=0.5).numpy()
    zeros = (w == 0).sum(0)
    np.testing.assert_array_equal(zeros, np.full(30, 12))  # ceil(0.3 * 40) per column
    # the zeroed rows differ from column to column
    assert len({tuple(np.flatnonzero(w[:, j] == 0)) for j in range(30)}) > 20
    kept = w[w != 0]
    _var_ok(kept, 0.25, rel=0.15)
    with pytest.raises(ValueError, match="Only tensors with 2 dimensions are supported"):
        init.sparse_(jg.zeros(3, 3, 3), 0.5)


def test_init_draws_on_parameters_and_reproduces():
    p = jg.nn.Parameter(jg.zeros(8, 6))
    jg.manual_seed(15)
    init.orthogonal_(p)
    a = p.detach().numpy().copy()
    init.sparse_(p, 0.5)
    jg.manual_seed(15)
    init.orthogonal_(p)
    np.testing.assert_array_equal(p.detach().numpy(), a)
    assert p.requires_grad and p.grad is None


@pytest.mark.parametrize(
    "nonlinearity",
    ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
     "conv_transpose3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"],
)  # fmt: skip
def test_calculate_gain_matches_torch(nonlinearity):
    torch = pytest.importorskip("torch")
    assert init.calculate_gain(nonlinearity) == pytest.approx(
        torch.nn.init.calculate_gain(nonlinearity)
    )
    if nonlinearity == "leaky_relu":
        for param in (0.2, 1, 0):
            assert init.calculate_gain("leaky_relu", param) == pytest.approx(
                torch.nn.init.calculate_gain("leaky_relu", param)
            )


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.calculate_gain("softmax"),
        lambda m: m.calculate_gain("leaky_relu", True),
        lambda m: m.calculate_gain("leaky_relu", "0.1"),
        lambda m, z: m.xavier_uniform_(z(3)),
        lambda m, z: m.xavier_normal_(z(3)),
        lambda m, z: m.kaiming_uniform_(z(3)),
        lambda m, z: m.kaiming_normal_(z(3, 3), mode="bad"),
        lambda m, z: m.kaiming_uniform_(z(3, 3), nonlinearity="bad"),
        lambda m, z: m.eye_(z(3, 3, 3)),
        lambda m, z: m.orthogonal_(z(3)),
        lambda m, z: m.dirac_(z(3, 3)),
        lambda m, z: m.dirac_(z(4, 3, 3), groups=3),
        lambda m, z: m.sparse_(z(3), 0.5),
    ],
)
def test_init_errors_match_torch(call):
    torch = pytest.importorskip("torch")
    takes_zeros = call.__code__.co_argcount == 2

    def run(m, zeros):
        return call(m, zeros) if takes_zeros else call(m)

    with pytest.raises(Exception) as want:
        run(torch.nn.init, torch.zeros)
    with pytest.raises(Exception) as got:
        run(init, jg.zeros)
    assert type(got.value) is type(want.value)
    assert str(got.value) == str(want.value)


@pytest.mark.parametrize("shape", [(30, 20), (16, 8, 3, 3), (12, 6, 5)])
def test_fans_and_scales_match_torch(shape):
    torch = pytest.importorskip("torch")
    fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(shape))
    assert init._calculate_fan_in_and_fan_out(jg.zeros(*shape)) == (fan_in, fan_out)
    jg.manual_seed(16)
    # xavier_uniform_: U(-a, a), a = gain sqrt(6 / (fan_in + fan_out))
    a = 1.5 * math.sqrt(6.0 / (fan_in + fan_out))
    w = init.xavier_uniform_(jg.zeros(*shape), gain=1.5).numpy()
    assert w.min() >= -a and w.max() <= a and w.max() > 0.9 * a
    # kaiming_normal_(a, mode, nonlinearity): std = gain / sqrt(fan)
    big = (200, *shape[1:])
    fin, fout = torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(big))
    k = init.kaiming_normal_(jg.zeros(*big), a=0.2, mode="fan_out").numpy()
    _var_ok(k, (math.sqrt(2 / (1 + 0.04)) / math.sqrt(fout)) ** 2, rel=0.1)
    u = init.kaiming_uniform_(jg.zeros(*big), nonlinearity="relu").numpy()
    bound = math.sqrt(2.0) * math.sqrt(3.0 / fin)
    assert u.min() >= -bound and u.max() <= bound and u.max() > 0.95 * bound
    x = init.xavier_normal_(jg.zeros(*big), gain=2.0).numpy()
    _var_ok(x, 4.0 * 2.0 / (fin + fout), rel=0.1)


def test_simple_initialisers():
    w = jg.nn.Parameter(jg.zeros(3, 4))
    assert np.all(init.constant_(w, 0.25).detach().numpy() == 0.25)
    assert np.all(init.ones_(w).detach().numpy() == 1)
    assert np.all(init.zeros_(w).detach().numpy() == 0)
    np.testing.assert_array_equal(init.eye_(w).detach().numpy(), np.eye(3, 4))
    jg.manual_seed(17)
    u = init.uniform_(jg.zeros(N), -2.0, 1.0).numpy()
    assert u.min() >= -2 and u.max() < 1
    _mean_ok(u, -0.5, 9 / 12)
    n = init.normal_(jg.zeros(N, dtype=jg.float64), 1.0, 3.0).numpy()
    _mean_ok(n, 1.0, 9.0)
    t = init.trunc_normal_(jg.zeros(N, dtype=jg.float64), 0.5, 1.0, a=-1.0, b=1.5).numpy()
    assert t.min() >= -1.0 and t.max() <= 1.5
    want = stats.truncnorm(-1.5, 1.0, loc=0.5, scale=1.0)
    assert stats.kstest(t, want.cdf).pvalue > 1e-3
    with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
        init.kaiming_uniform_(jg.zeros(0, 3))
