"""Reductions, scans, sorting and selection beyond what their specs cover: PyTorch's dtypes,
result types and field names, keyword forms, NaN and tie rules, edge cases, error messages,
gradients where inputs have zeros or NaNs, and compiled use on the Numba backend."""

from __future__ import annotations

import math

import numpy as np
import pytest

import jitgrad as jg

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(0)
X = RNG.standard_normal((3, 4, 5))
XI = RNG.integers(-3, 4, (3, 4))
XB = XI > 0


def _lib_args(lib, args):
    return [lib.tensor(a) if isinstance(a, np.ndarray) else a for a in args]


def _flat(out) -> list:
    if isinstance(out, (tuple, list)):
        return [o for x in out for o in _flat(x)]
    return [out]


def _same(j, t):
    assert tuple(j.shape) == tuple(t.shape)
    assert str(j.dtype).split(".")[-1] == str(t.dtype).split(".")[-1]
    np.testing.assert_allclose(j.detach().numpy(), t.detach().numpy(), rtol=1e-12, atol=1e-12)


# -- values, dtypes and result types against torch ------------------------------------------------
NAN_ROW = np.array([3.0, np.nan, 1.0, np.nan, -np.inf])
CASES = {
    "cumsum negative dim": (lambda L, t: L.cumsum(t, -2), X),
    "cumsum int32 is int64": (lambda L, t: L.cumsum(t.int(), 0), XI),
    "cumsum bool is int64": (lambda L, t: L.cumsum(t, 1), XB),
    "cumsum dtype": (lambda L, t: L.cumsum(t, 1, dtype=L.float32), XI),
    "cumsum 0-d": (lambda L, t: L.cumsum(t, 0), np.array(2.0)),
    "cumsum empty": (lambda L, t: L.cumsum(t, 0), np.zeros((0, 3))),
    "cumsum method axis": (lambda L, t: t.cumsum(axis=1), X),
    "cumprod int": (lambda L, t: L.cumprod(t, 1), XI),
    "cumprod bool": (lambda L, t: L.cumprod(t, 1), XB),
    "cummax int ties": (lambda L, t: L.cummax(t, 1), XI),
    "cummin int ties": (lambda L, t: L.cummin(t, 0), XI),
    "cummax nan": (lambda L, t: L.cummax(t, 0), np.array([1.0, np.nan, 5.0, np.nan])),
    "cummax 0-d": (lambda L, t: L.cummax(t, 0), np.array(2.0)),
    "logcumsumexp infinities": (
        lambda L, t: L.logcumsumexp(t, 0),
        np.array([-np.inf, -np.inf, 1.0, np.inf]),
    ),
    "sort": (lambda L, t: L.sort(t), X),
    "sort descending dim 0": (lambda L, t: L.sort(t, 0, True), X),
    "sort stable ties": (lambda L, t: L.sort(t, dim=1, descending=True, stable=True), XI),
    "sort nan": (lambda L, t: L.sort(t, stable=True), NAN_ROW),
    "sort nan descending": (lambda L, t: L.sort(t, descending=True, stable=True), NAN_ROW),
    "sort bool": (lambda L, t: L.sort(t, stable=True), XB),
    "sort 0-d": (lambda L, t: L.sort(t), np.array(2.0)),
    "argsort descending": (lambda L, t: L.argsort(t, dim=0, descending=True), X),
    "argsort method": (lambda L, t: t.argsort(), X),
    "msort": (lambda L, t: L.msort(t), X),
    "topk": (lambda L, t: L.topk(t, 3), X),
    "topk smallest": (lambda L, t: L.topk(t, 2, dim=0, largest=False), X),
    "topk 0": (lambda L, t: L.topk(t, 0), X),
    "kthvalue keepdim": (lambda L, t: L.kthvalue(t, 2, 1, True), X),
    "median": (lambda L, t: L.median(t), X),
    "median dim": (lambda L, t: L.median(t, 1), X),
    "median even count": (lambda L, t: L.median(t), RNG.standard_normal(6)),
    "median nan": (lambda L, t: L.median(t, 0), np.array([[1.0, np.nan], [np.nan, 2], [3, 4]])),
    "median nan whole": (lambda L, t: L.median(t), np.array([1.0, np.nan, 3])),
    "median int": (lambda L, t: L.median(t, 1), RNG.permutation(12).reshape(3, 4)),
    "median empty": (lambda L, t: L.median(t), np.zeros(0)),
    "nanmedian": (lambda L, t: L.nanmedian(t), np.array([1.0, np.nan, 3, 7, np.nan])),
    "mode": (lambda L, t: L.mode(t), XI),
    "mode keepdim": (lambda L, t: L.mode(t, 0, True), XI),
    "mode float": (lambda L, t: L.mode(t, 1), np.round(X * 1.3) + 0.0),
    "quantile": (lambda L, t: L.quantile(t, 0.3), X),
    "quantile keepdim": (lambda L, t: L.quantile(t, 0.3, dim=1, keepdim=True), X),
    "quantile nan": (lambda L, t: L.quantile(t, 0.5, dim=1), np.array([[1.0, np.nan], [1, 2]])),
    "nanquantile": (
        lambda L, t: L.nanquantile(t, 0.4, dim=1),
        np.array([[1.0, np.nan, 2], [1, 2, 3], [np.nan] * 3]),
    ),
    "searchsorted 2-d values": (
        lambda L, s, v: L.searchsorted(s, v),
        np.array([1.0, 2, 3, 4]),
        np.array([[0.0, 2, 2.5, 9]]),
    ),
    "searchsorted right": (
        lambda L, s, v: L.searchsorted(s, v, right=True),
        np.array([1.0, 2, 3, 4]),
        np.array([0.0, 2, 2.5, 9]),
    ),
    "searchsorted side": (
        lambda L, s, v: L.searchsorted(s, v, side="right"),
        np.array([1.0, 2, 3, 4]),
        np.array([0.0, 2, 2.5, 9]),
    ),
    "searchsorted scalar": (lambda L, s: L.searchsorted(s, 2.0), np.array([1.0, 2, 3, 4])),
    "searchsorted out_int32": (
        lambda L, s, v: L.searchsorted(s, v, out_int32=True),
        np.array([1.0, 2, 3, 4]),
        np.array([0.0, 2, 2.5, 9]),
    ),
    "searchsorted batched": (
        lambda L, s, v: L.searchsorted(s, v),
        np.sort(RNG.standard_normal((2, 5)), 1),
        RNG.standard_normal((2, 3)),
    ),
    "searchsorted sorter": (
        lambda L, s, v, o: L.searchsorted(s, v, sorter=o),
        np.array([3.0, 1, 2]),
        np.array([1.5, 3]),
        np.array([1, 2, 0]),
    ),
    "searchsorted nan": (
        lambda L, s, v: L.searchsorted(s, v),
        np.array([1.0, 2, 3]),
        np.array([np.nan]),
    ),
    "bucketize": (
        lambda L, v, b: L.bucketize(v, b, right=True),
        np.array([[0.0, 2, 2.5, 9]]),
        np.array([1.0, 2, 3, 4]),
    ),
    "bucketize scalar": (lambda L, b: L.bucketize(2, b), np.array([1.0, 2, 3, 4])),
    "unique": (lambda L, t: L.unique(t), XI),
    "unique inverse counts": (
        lambda L, t: L.unique(t, return_inverse=True, return_counts=True),
        XI,
    ),
    "unique dim": (
        lambda L, t: L.unique(t, dim=0, return_inverse=True, return_counts=True),
        np.array([[1, 2], [0, 1], [1, 2]]),
    ),
    "unique method": (lambda L, t: t.unique(return_counts=True), XI),
    "unique_consecutive": (
        lambda L, t: L.unique_consecutive(t, return_inverse=True, return_counts=True),
        np.array([[1, 1, 2], [1, 1, 2], [3, 3, 3], [1, 1, 2]]),
    ),
    "unique_consecutive dim": (
        lambda L, t: L.unique_consecutive(t, dim=0, return_inverse=True, return_counts=True),
        np.array([[1, 1, 2], [1, 1, 2], [3, 3, 3], [1, 1, 2]]),
    ),
    "cumsum_ keeps int32": (lambda L, t: t.int().cumsum_(1), XI),
    "cumprod_": (lambda L, t: t.clone().cumprod_(0), X),
    "searchsorted promotes": (
        lambda L, s, v: L.searchsorted(s, v),
        np.array([1, 2, 3]),
        np.array([1.5, 3.0]),
    ),
    "searchsorted empty": (lambda L, s, v: L.searchsorted(s, v), np.zeros(0), np.array([1.0])),
    "var_mean": (lambda L, t: L.var_mean(t), X),
    "var_mean keepdim": (lambda L, t: L.var_mean(t, 1, keepdim=True), X),
    "var_mean correction": (lambda L, t: L.var_mean(t, (0, 2), correction=0), X),
    "var_mean unbiased positional": (lambda L, t: L.var_mean(t, 1, False), X),
    "var_mean unbiased alone": (lambda L, t: L.var_mean(t, False), X),
    "std_mean": (lambda L, t: L.std_mean(t, dim=[0, 1], correction=2), X),
    "nansum": (lambda L, t: L.nansum(t, 1, keepdim=True), np.array([[1.0, np.nan], [np.nan] * 2])),
    "nansum int": (lambda L, t: L.nansum(t), XI),
    "nanmean": (lambda L, t: L.nanmean(t, 1), np.array([[1.0, np.nan, 2], [4, 5, 9]])),
    "count_nonzero": (lambda L, t: L.count_nonzero(t), XI),
    "count_nonzero dims": (lambda L, t: L.count_nonzero(t, dim=(0, 1)), XI),
    "count_nonzero method": (lambda L, t: t.count_nonzero(0), XI),
    "aminmax": (lambda L, t: L.aminmax(t), X),
    "aminmax dim": (lambda L, t: L.aminmax(t, dim=1, keepdim=True), X),
    "aminmax keepdim whole": (lambda L, t: L.aminmax(t, keepdim=True), X),
    "aminmax int method": (lambda L, t: t.aminmax(dim=0), XI),
    "all keepdim": (lambda L, t: L.all(t, 1, keepdim=True), XB),
    "any dim": (lambda L, t: L.any(t, dim=0), XI),
    "all dims": (lambda L, t: L.all(t, dim=(0, 1)), XB),
    "prod keepdim": (lambda L, t: L.prod(t, 1, keepdim=True), X),
    "prod dtype": (lambda L, t: L.prod(t, 1, dtype=L.float32), XI),
    "prod int32 is int64": (lambda L, t: L.prod(t.int()), XI),
    "prod bool is int64": (lambda L, t: L.prod(t, 0), XB),
    "norm fro dims": (lambda L, t: L.norm(t, "fro", dim=(0, 2)), X),
    "norm method": (lambda L, t: t.norm(p=1, dim=0), X),
    "vector_norm keepdim": (lambda L, t: L.linalg.vector_norm(t, keepdim=True), X),
    "linalg.norm vector": (lambda L, t: L.linalg.norm(t, 3, dim=1), X),
    "linalg.norm all": (lambda L, t: L.linalg.norm(t), X),
    "linalg.norm 1-d inf": (lambda L, t: L.linalg.norm(t, math.inf), X[0, 0]),
    "linalg.norm matrix dims": (lambda L, t: L.linalg.norm(t, 1, dim=(0, 2)), X),
}
for _p in (2, 1, 3, 0, math.inf, -math.inf, "fro", 0.5):
    CASES[f"norm p={_p}"] = (lambda L, t, p=_p: L.norm(t, p, dim=1, keepdim=True), X)
for _o in (2, 1, 0, math.inf, -math.inf, 3.5):
    CASES[f"vector_norm ord={_o}"] = (
        lambda L, t, o=_o: L.linalg.vector_norm(t, o, dim=(0, 1)),
        X,
    )
for _o in (None, "fro", 1, -1, math.inf, -math.inf):
    CASES[f"linalg.norm ord={_o}"] = (lambda L, t, o=_o: L.linalg.norm(t, o), X[0])
    CASES[f"matrix_norm ord={_o}"] = (
        lambda L, t, o=_o: L.linalg.matrix_norm(t, "fro" if o is None else o, keepdim=True),
        X,
    )
_Q = np.array([0.0, 1 / 6, 0.5, 0.25, 0.7, 1.0])
for _m in ("linear", "lower", "higher", "midpoint", "nearest"):
    CASES[f"quantile {_m}"] = (
        lambda L, t, q, m=_m: L.quantile(t, q, dim=0, interpolation=m),
        RNG.standard_normal((4, 3)),
        _Q,
    )
    CASES[f"quantile {_m} whole keepdim"] = (
        lambda L, t, q, m=_m: L.nanquantile(t, q, keepdim=True, interpolation=m),
        X,
        _Q,
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_agrees_with_torch(name):
    fn, *args = CASES[name]
    got = fn(jg, *_lib_args(jg, args))
    want = fn(torch, *_lib_args(torch, args))
    if hasattr(want, "_fields"):
        assert type(got).__name__ == type(want).__name__.split(".")[-1]
        assert tuple(got._fields) == tuple(want._fields)
    assert isinstance(got, tuple) == isinstance(want, tuple)
    got, want = _flat(got), _flat(want)
    assert len(got) == len(want)
    for j, t in zip(got, want):
        _same(j, t)


def test_nanmedian_of_a_line_of_nans_is_nan():
    x = np.array([[1.0, np.nan, 3, 7, np.nan], [np.nan] * 5, [1, 2, 3, 4, 5.0]])
    values, indices = jg.nanmedian(jg.tensor(x), 1)
    np.testing.assert_array_equal(values.numpy(), [3.0, np.nan, 3.0])
    assert indices.numpy()[[0, 2]].tolist() == [2, 2]


# -- errors ---------------------------------------------------------------------------------------
ERRORS = {
    "topk k too large": lambda L, t: L.topk(t, 6),
    "kthvalue k too large": lambda L, t: L.kthvalue(t, 6),
    "kthvalue k zero": lambda L, t: L.kthvalue(t, 0),
    "cumsum dim": lambda L, t: L.cumsum(t, 3),
    "sort dim": lambda L, t: L.sort(t, 5),
    "median empty dim": lambda L, t: L.median(t[:, :0], 1),
    "mode empty dim": lambda L, t: L.mode(t[:, :, :0]),
    "quantile q range": lambda L, t: L.quantile(t, 1.5),
    "quantile int": lambda L, t: L.quantile(t.long(), 0.5),
    "quantile interpolation": lambda L, t: L.quantile(t, 0.5, interpolation="foo"),
    "quantile q 2-d": lambda L, t: L.quantile(t, L.tensor([[0.5]], dtype=L.float64)),
    "searchsorted side and right": lambda L, t: L.searchsorted(
        t[0, 0], t[0, 0], side="left", right=True
    ),
    "vector_norm int": lambda L, t: L.linalg.vector_norm(t.long()),
    "vector_norm narrowing dtype": lambda L, t: L.linalg.vector_norm(t, dtype=L.float32),
    "norm int": lambda L, t: L.norm(t.long()),
    "matrix_norm 1-d": lambda L, t: L.linalg.matrix_norm(t[0, 0]),
    "linalg.norm ord on 3-d": lambda L, t: L.linalg.norm(t, 2),
    "count_nonzero repeated dim": lambda L, t: L.count_nonzero(t, dim=(0, 0)),
    "aminmax empty": lambda L, t: L.aminmax(t[:0]),
    "var_mean int": lambda L, t: L.var_mean(t.long()),
    "std_mean int": lambda L, t: L.std_mean(t.long()),
    "nanmean int": lambda L, t: L.nanmean(t.int()),
}


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_errors_match_torch(name):
    fn = ERRORS[name]
    with pytest.raises(Exception) as want:
        fn(torch, torch.tensor(X))
    with pytest.raises(type(want.value)) as got:
        fn(jg, jg.tensor(X))
    assert str(got.value).splitlines()[0] == str(want.value).splitlines()[0]


def test_unique_under_compile_raises_trace_error():
    fn = jg.compile(lambda t: jg.unique(t), backend="interpreter")
    with pytest.raises(jg.TraceError, match="depends on the values"):
        fn(jg.tensor(XI))


def test_vector_norm_gradient_at_a_zero_row_is_zero():
    x = jg.tensor(np.vstack([X[0], np.zeros((1, 5))]), requires_grad=True)
    (g,) = jg.autograd.grad(jg.linalg.vector_norm(x, 3, dim=1).sum(), x)
    t = torch.tensor(x.detach().numpy(), requires_grad=True)
    (want,) = torch.autograd.grad(torch.linalg.vector_norm(t, 3, dim=1).sum(), t)
    np.testing.assert_allclose(g.numpy(), want.numpy(), rtol=1e-12)
    assert (g.numpy()[-1] == 0).all()


def test_namedtuple_results_unpack_and_index():
    values, indices = jg.sort(jg.tensor(X))
    assert jg.sort(jg.tensor(X))[0] is not None and indices.dtype == jg.int64
    r = jg.aminmax(jg.tensor(X))
    assert r.min.item() == X.min() and r[1].item() == X.max()
    assert jg.cummax(jg.tensor(X), 0).indices.dtype == jg.int64


# -- gradients against torch ----------------------------------------------------------------------
def _mix(pair):
    return pair[0] + 2.0 * pair[1]


ZEROS = np.array([[2.0, 0.0, 3.0, 0.5, 1.5], [0.0, 0.0, 1.0, 2.0, -1.0], [1.0, 2.0, 3.0, 4.0, 0.0]])
NANS = np.array([[1.0, np.nan, 2.0, 0.5], [np.nan, np.nan, 1.0, -3.0]])
GRADS = {
    "cumsum": (lambda L, t: L.cumsum(t, 0), X),
    "cumprod with zeros dim 1": (lambda L, t: L.cumprod(t, 1), ZEROS),
    "cumprod with zeros dim 0": (lambda L, t: L.cumprod(t, 0), ZEROS.T.copy()),
    "cummax values": (lambda L, t: L.cummax(t, 1).values, np.round(X * 2)),
    "cummin values": (lambda L, t: L.cummin(t, -1).values, np.round(X * 2)),
    "logcumsumexp": (lambda L, t: L.logcumsumexp(t, 1), X * 10),
    "sort values": (lambda L, t: L.sort(t, 1, descending=True).values, X),
    "topk values": (lambda L, t: L.topk(t, 2, dim=0).values, X),
    "kthvalue values": (lambda L, t: L.kthvalue(t, 3, 2).values, X),
    "median whole": (lambda L, t: L.median(t), X),
    "median dim": (lambda L, t: L.median(t, 2).values, X),
    "nanmedian": (lambda L, t: L.nanmedian(t, 1).values, NANS),
    "quantile linear": (lambda L, t: L.quantile(t, 0.35, dim=1), X),
    "quantile midpoint": (lambda L, t: L.quantile(t, 0.5, dim=0, interpolation="midpoint"), X),
    "nanquantile": (lambda L, t: L.nanquantile(t, 0.6, dim=1), NANS),
    "nansum": (lambda L, t: L.nansum(t, 1), NANS),
    "nanmean": (lambda L, t: L.nanmean(t), NANS),
    "var_mean": (lambda L, t: _mix(L.var_mean(t, 1)), X),
    "std_mean": (lambda L, t: _mix(L.std_mean(t, (0, 2), correction=0)), X),
    "aminmax ties": (lambda L, t: _mix(L.aminmax(t, dim=1)), np.round(X)),
    "norm 2 with a zero row": (lambda L, t: L.norm(t, dim=1), ZEROS * (ZEROS > 1)),
    "vector_norm 3": (lambda L, t: L.linalg.vector_norm(t, 3, dim=1), ZEROS),
    "vector_norm inf ties": (lambda L, t: L.linalg.vector_norm(t, math.inf), np.round(X)),
    "matrix_norm 1": (lambda L, t: L.linalg.matrix_norm(t, 1), X),
    "linalg.norm fro": (lambda L, t: L.linalg.norm(t, "fro", dim=(0, 2)), X),
}


def _grads(lib, fn, x, cot, second: bool):
    t = lib.tensor(x, requires_grad=True)
    out = fn(lib, t)
    g = lib.tensor(cot, requires_grad=second)
    (dx,) = lib.autograd.grad(out, t, g, create_graph=second)
    if not second:
        return [dx]
    w = lib.tensor(np.random.default_rng(3).standard_normal(x.shape))
    h = (dx * w).nansum() if lib is torch else jg.nansum(dx * w)
    return [dx, *lib.autograd.grad(h, (t, g), allow_unused=True, materialize_grads=True)]


@pytest.mark.parametrize("name", sorted(GRADS))
def test_gradients_agree_with_torch(name):
    fn, x = GRADS[name]
    out = fn(torch, torch.tensor(x)).detach().numpy()
    cot = np.random.default_rng(1).standard_normal(out.shape)
    for second in (False, True):
        got = _grads(jg, fn, x, cot, second)
        want = _grads(torch, fn, x, cot, second)
        for a, b in zip(got, want):
            np.testing.assert_allclose(
                a.detach().numpy(), b.detach().numpy(force=True), rtol=1e-9, atol=1e-12
            )


# -- compiled on the Numba backend ----------------------------------------------------------------
def _step(x, z, q):
    sv, si = jg.sort(x, 1, descending=True)
    tv, ti = jg.topk(x.t(), 2)
    med = jg.median(x, 0)
    mode = jg.mode(q, 1)
    outs = [
        sv,
        si,
        tv,
        ti,
        jg.argsort(x, 0),
        jg.msort(x),
        med.values,
        med.indices,
        jg.median(x),
        jg.kthvalue(x, 2, 1).values,
        jg.quantile(x, jg.tensor([0.2, 0.9], dtype=jg.float64), dim=1, keepdim=True),
        jg.nanquantile(x, 0.5),
        mode.values,
        mode.indices,
        jg.cumsum(x.t(), -1),
        jg.cumsum(q, 0),
        jg.cumprod(z, 1),
        *jg.cummax(x, 1),
        *jg.cummin(q, 0),
        jg.logcumsumexp(x, 0),
        jg.searchsorted(jg.msort(x.t()).t(), x),
        jg.bucketize(x, jg.tensor([-1.0, 0.0, 1.0])),
        jg.count_nonzero(q, 1),
        *jg.aminmax(x, dim=0),
        *jg.var_mean(x, 1),
        jg.nansum(x),
        jg.nanmean(x, 0),
        jg.norm(x, 3, dim=1),
        jg.linalg.vector_norm(x, math.inf),
        jg.linalg.matrix_norm(x, 1),
    ]
    loss = sum(o.sum() for o in outs if o.dtype.is_floating_point)
    gx, gz = jg.autograd.grad(loss, (x, z))
    return (*outs, gx, gz)


def _inputs(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((6, 7))
    z = rng.uniform(-2, 2, (4, 5)) * (rng.random((4, 5)) > 0.3)  # with zeros
    q = rng.integers(0, 3, (5, 6))
    return (jg.tensor(x, requires_grad=True), jg.tensor(z, requires_grad=True), jg.tensor(q))


@pytest.mark.slow
@pytest.mark.filterwarnings("error")
def test_compiled_on_numba_matches_eager_and_replays_new_values():
    fn = jg.compile(_step, backend="numba", check=True)
    for seed in (0, 1):
        got = fn(*_inputs(seed))
        want = _step(*_inputs(seed))
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.dtype == w.dtype
            np.testing.assert_allclose(g.numpy(), w.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert fn.stats.traces == 1


@pytest.mark.slow
@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("dtype", ["float32", "int64", "bool"])
def test_compiled_sort_of_long_lines_with_ties_and_nans_is_stable(dtype):
    rng = np.random.default_rng(5)
    x = rng.integers(0, 9, (3, 1001)).astype(dtype)
    if dtype == "float32":
        x[rng.random(x.shape) < 0.1] = np.nan

    def f(t):
        return jg.sort(t, 1, stable=True), jg.argsort(t.t(), 0, descending=True, stable=True)

    (values, indices), down = jg.compile(f, backend="numba")(jg.tensor(x))
    (tv, ti), tdown = (
        torch.sort(torch.tensor(x), dim=1, stable=True),
        torch.argsort(torch.tensor(x).t(), dim=0, descending=True, stable=True),
    )
    np.testing.assert_array_equal(values.numpy(), tv.numpy())
    np.testing.assert_array_equal(indices.numpy(), ti.numpy())
    np.testing.assert_array_equal(down.numpy(), tdown.numpy())


@pytest.mark.slow
@pytest.mark.filterwarnings("error")
def test_compiled_searchsorted_is_a_binary_search_of_each_line():
    rng = np.random.default_rng(9)
    bounds = np.sort(rng.standard_normal(257))
    lines = np.sort(rng.standard_normal((4, 33)), 1)
    x = rng.standard_normal((4, 50))
    x[0, :3] = bounds[:3]  # values equal to boundaries
    x[1, 0] = np.nan

    def f(x, b, s):
        return jg.bucketize(x, b), jg.bucketize(x, b, right=True), jg.searchsorted(s, x)

    got = jg.compile(f, backend="numba", check=True)(*map(jg.tensor, (x, bounds, lines)))
    want = (
        np.searchsorted(bounds, x, "left"),
        np.searchsorted(bounds, x, "right"),
        np.stack([np.searchsorted(s, v) for s, v in zip(lines, x)]),
    )
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.numpy(), w)


def test_unique_consecutive_under_compile_raises_trace_error():
    fn = jg.compile(lambda t: jg.unique_consecutive(t), backend="interpreter")
    with pytest.raises(jg.TraceError, match="unique_consecutive"):
        fn(jg.tensor(XI))


def test_logcumsumexp_gradients_with_leading_minus_infinities_are_finite():
    # PyTorch gives NaN at the -inf positions (first and second order); the gradient there is
    # 0 (e^{-inf - out_j} = 0), and elsewhere the two agree
    x = np.array([[-np.inf, -np.inf, 1.0, 2.0, -np.inf, 0.5]])
    rng = np.random.default_rng(0)
    g, w = rng.standard_normal(x.shape), rng.standard_normal(x.shape)
    results = []
    for lib in (jg, torch):
        t, gt = lib.tensor(x, requires_grad=True), lib.tensor(g, requires_grad=True)
        (d,) = lib.autograd.grad(lib.logcumsumexp(t, 1), t, gt, create_graph=True)
        second = lib.autograd.grad((d * lib.tensor(w)).sum(), (t, gt))
        results.append([d.detach().numpy(), *(s.numpy() for s in second)])
    for mine, theirs in zip(*results):
        assert np.isfinite(mine).all() and (mine[0, :2] == 0).all()
        np.testing.assert_allclose(mine[0, 2:], theirs[0, 2:], rtol=1e-12, atol=1e-15)
