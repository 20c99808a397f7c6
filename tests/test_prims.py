"""Every primitive: forward vs NumPy, shape rule vs impl, VJP (first and second order) vs finite
differences in float64, and each scalar template vs its impl."""

from __future__ import annotations

import math

import numpy as np
import pytest
from prim_specs import FUSED_CASES, SPECS

import jitgrad as jg
from jitgrad.ops import loops
from jitgrad.ops.registry import PRIMS, scalar_expr

EPS = 1e-6


def test_every_primitive_has_a_spec():
    missing = sorted(set(PRIMS) - set(SPECS))
    assert not missing, f"primitives without a test spec in tests/prim_specs.py: {missing}"


def _inputs(spec, seed=0):
    rng = np.random.default_rng(seed)
    return [a.draw(rng) for a in spec.args]


def _run(prim, arrays, params):
    tensors = [jg.tensor(a) for a in arrays]
    return jg.apply(prim, tuple(tensors), params)


NAMES = sorted(n for n in SPECS if SPECS[n].ref is not None)


@pytest.mark.parametrize("name", NAMES)
def test_forward_matches_numpy(name):
    spec, prim = SPECS[name], PRIMS[name]
    arrays = _inputs(spec)
    out = _run(prim, arrays, spec.params)
    expected = spec.ref(*arrays, **spec.params)
    assert out.shape == tuple(np.shape(expected))
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_shape_rule_matches_impl(name):
    spec, prim = SPECS[name], PRIMS[name]
    tensors = [jg.tensor(a) for a in _inputs(spec)]
    out = jg.apply(prim, tuple(tensors), spec.params)
    shape, dtype = prim.shape(tensors, **spec.params)
    assert tuple(shape) == tuple(out.shape)
    assert dtype is out.dtype


def _directional_fd(f, arrays, i, v):
    """d/dt f(arrays with arrays[i] + t v) at t=0, central differences."""
    plus = list(arrays)
    minus = list(arrays)
    plus[i] = arrays[i] + EPS * v
    minus[i] = arrays[i] - EPS * v
    return (f(plus) - f(minus)) / (2 * EPS)


def _diff_names(order):
    out = []
    for n in NAMES:
        spec = SPECS[n]
        if spec.differentiable and (order == 1 or spec.smooth):
            out.append(n)
    return out


@pytest.mark.parametrize("name", _diff_names(1))
def test_vjp_matches_finite_differences(name):
    spec, prim = SPECS[name], PRIMS[name]
    arrays = _inputs(spec, seed=1)
    rng = np.random.default_rng(2)
    out0 = _run(prim, arrays, spec.params)
    g = rng.standard_normal(out0.shape)

    def scalar(arrs):  # <g, f(x)> in float64
        return float(np.sum(g * _run(prim, arrs, spec.params).numpy().astype(np.float64)))

    tensors = [jg.tensor(a, requires_grad=k in spec.differentiable) for k, a in enumerate(arrays)]
    out = jg.apply(prim, tuple(tensors), spec.params)
    grads = jg.autograd.grad(
        out, [tensors[k] for k in spec.differentiable], jg.tensor(g, dtype=out.dtype)
    )
    for k, gk in zip(spec.differentiable, grads):
        assert gk.shape == tensors[k].shape
        for _ in range(3):
            v = rng.standard_normal(arrays[k].shape)
            numeric = _directional_fd(scalar, arrays, k, v)
            analytic = float(np.sum(gk.numpy() * v))
            assert analytic == pytest.approx(numeric, rel=max(spec.tol, 1e-5), abs=1e-6), (k, name)


@pytest.mark.parametrize("name", _diff_names(2))
def test_second_order_matches_finite_differences(name):
    spec, prim = SPECS[name], PRIMS[name]
    arrays = _inputs(spec, seed=3)
    rng = np.random.default_rng(4)
    shape = _run(prim, arrays, spec.params).shape
    g = rng.standard_normal(shape)
    w = {k: rng.standard_normal(arrays[k].shape) for k in spec.differentiable}

    def first_order(arrs, create_graph=False, tensors=None):
        if tensors is None:
            tensors = [
                jg.tensor(a, requires_grad=k in spec.differentiable) for k, a in enumerate(arrs)
            ]
        out = jg.apply(prim, tuple(tensors), spec.params)
        grads = jg.autograd.grad(
            out,
            [tensors[k] for k in spec.differentiable],
            jg.tensor(g, dtype=out.dtype),
            create_graph=create_graph,
        )
        total = None
        for k, gk in zip(spec.differentiable, grads):
            term = (gk * jg.tensor(w[k], dtype=gk.dtype)).sum()
            total = term if total is None else total + term
        return total, tensors

    h, tensors = first_order(arrays, create_graph=True)
    if not h.requires_grad:  # the first-order gradient does not depend on the inputs
        return
    second = jg.autograd.grad(
        h, [tensors[k] for k in spec.differentiable], allow_unused=True, materialize_grads=True
    )
    for k, sk in zip(spec.differentiable, second):
        v = rng.standard_normal(arrays[k].shape)
        numeric = _directional_fd(lambda a: first_order(a)[0].item(), arrays, k, v)
        analytic = float(np.sum(sk.numpy() * v))
        assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-5), (k, name)


ELEMENTWISE = sorted(n for n in NAMES if PRIMS[n].kind == "elementwise")


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_scalar_template_matches_impl(name):
    spec, prim = SPECS[name], PRIMS[name]
    arrays = _inputs(spec, seed=5)
    args = [f"a{i}" for i in range(len(arrays))]
    expr = scalar_expr(prim, args, spec.params)
    fn = eval(f"lambda {', '.join(args)}: {expr}", {"math": math, "np": np})  # noqa: S307
    expected = prim.impl(*arrays, **spec.params)
    got = np.array(
        [fn(*[a.flat[i] for a in arrays]) for i in range(expected.size)], dtype=expected.dtype
    ).reshape(expected.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_rand_is_deterministic_and_uniform():
    state = jg.tensor(np.array([1234, 7], dtype=np.uint64))
    a = jg.apply(PRIMS["rand"], (state,), {"shape": (200, 50), "dtype": jg.float64})
    b = jg.apply(PRIMS["rand"], (state,), {"shape": (200, 50), "dtype": jg.float64})
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    u = a.numpy().ravel()
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.01
    hist, _ = np.histogram(u, bins=10, range=(0, 1))
    assert hist.min() > 850 and hist.max() < 1150  # each bin holds ~1000
    # a different counter gives unrelated numbers
    other = jg.tensor(np.array([1234, 8], dtype=np.uint64))
    c = jg.apply(PRIMS["rand"], (other,), {"shape": (200, 50), "dtype": jg.float64}).numpy()
    assert abs(np.corrcoef(u, c.ravel())[0, 1]) < 0.05
    f32 = jg.apply(PRIMS["rand"], (state,), {"shape": (1000,), "dtype": jg.float32})
    assert f32.dtype is jg.float32 and float(f32.max()) < 1.0


def test_every_prim_declares_its_rules():
    for prim in PRIMS.values():
        kinds = ("elementwise", "reduce", "movement", "matmul", "index", "random", "fused")
        assert prim.kind in kinds
        assert callable(prim.impl) and callable(prim.shape)
        assert (prim.kind == "fused") == callable(prim.decompose), prim.name
        if prim.differentiable:
            assert callable(prim.vjp), prim.name
        if prim.kind == "elementwise":
            assert prim.scalar is not None, prim.name


# -- fused primitives: one eager step standing for a composite ------------------------------------

FUSED = sorted(n for n, p in PRIMS.items() if p.kind == "fused")
_CE_PARAMS = [
    {"ignore_index": ii, "reduction": r} for ii in (-100, 2) for r in ("mean", "sum", "none")
]


def _fused_cases():
    for name in FUSED:
        for dtype in (np.float32, np.float64):
            if name == "linear":
                yield name, dtype, {}, 3
                yield name, dtype, {}, 2  # without a bias
            elif name in FUSED_CASES:
                for k in range(len(FUSED_CASES[name])):
                    yield name, dtype, FUSED_CASES[name][k][1], k
            else:
                for params in _CE_PARAMS:
                    yield name, dtype, params, None


def _fused_inputs(name, dtype, params, n_inputs, seed):
    rng = np.random.default_rng(seed)
    args = FUSED_CASES[name][n_inputs][0] if name in FUSED_CASES else SPECS[name].args
    arrays = [a.draw(rng) for a in args]
    if name not in FUSED_CASES:
        arrays = arrays[: n_inputs or None]
    if name == "cross_entropy_backward" and params["reduction"] != "none":
        arrays[2] = np.asarray(rng.standard_normal())
    return [a.astype(dtype) if a.dtype.kind == "f" else a for a in arrays]


class _NoLoopReady(dict):
    """An ops.loops state table in which no loop is ready (every caller takes its NumPy path)."""

    def get(self, key, default=None):
        return loops._NUMPY


@pytest.mark.parametrize(("name", "dtype", "params", "n_inputs"), list(_fused_cases()))
def test_fused_primitive_agrees_with_its_decomposition_bit_for_bit(name, dtype, params, n_inputs):
    """The fused impl and VJP repeat the decomposition's arithmetic: eager runs (fused) and traced
    runs (decomposed) give identical bits, values and first-order gradients."""
    prim = PRIMS[name]
    for seed in range(3):
        arrays = _fused_inputs(name, dtype, params, n_inputs, seed)
        results = []
        # fused with its compiled loops (ops.loops), fused on their NumPy paths (taken while
        # the loops are being compiled), decomposed
        for run, loops_ready in (
            (lambda ts: jg.apply(prim, tuple(ts), params), True),
            (lambda ts: jg.apply(prim, tuple(ts), params), False),
            (lambda ts: prim.decompose(*ts, **params), True),
        ):
            ts = [jg.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
            with pytest.MonkeyPatch.context() as mp:
                if not loops_ready:
                    mp.setattr(loops, "_state", _NoLoopReady())
                out = run(ts)
                cot = jg.tensor(
                    np.random.default_rng(9).standard_normal(out.shape), dtype=out.dtype
                )
                wanted = [t for t in ts if t.requires_grad]
                grads = jg.autograd.grad(out, wanted, cot)
            results.append([out.detach().numpy(), *[g.numpy() for g in grads]])
        for with_loops, numpy_path in zip(results[0], results[1]):
            np.testing.assert_array_equal(with_loops, numpy_path)
        for k, (fused, decomposed) in enumerate(zip(results[0], results[2])):
            assert fused.dtype == decomposed.dtype
            if k and name == "cross_entropy_backward":
                # its own VJP (second order of the loss) is a closed form, not the decomposition's
                # product rule: equal up to rounding
                rtol = 1e-5 if dtype == np.float32 else 1e-12
                np.testing.assert_allclose(fused, decomposed, rtol=rtol, atol=rtol * 1e-2)
            else:
                np.testing.assert_array_equal(fused, decomposed)


def test_tapes_hold_the_decomposition_of_fused_primitives():
    from jitgrad.ir import Tracer, tracing
    from jitgrad.ir.tape import Binding

    model = jg.nn.Linear(3, 4)
    x, y = jg.randn(5, 3), jg.tensor([0, 1, 2, 3, 1])

    def step(x):
        loss = jg.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    tracer = Tracer("step")
    with tracing(tracer):
        tracer.add_input(x, Binding("arg", key=0, name="x"))
        step(x)
    names = {e.prim.name for e in tracer.tape.eqns}
    assert {"matmul", "logsumexp"} <= names
    assert not names & set(FUSED), names
    # eager, the same calls apply one primitive each
    assert model(x).grad_fn.name() == "AddmmBackward0"
    assert jg.nn.functional.cross_entropy(model(x), y).grad_fn.name() == "NllLossBackward0"


def test_fused_cross_entropy_all_targets_ignored_is_nan_like_pytorch():
    x = jg.randn(3, 4, requires_grad=True)
    loss = jg.nn.functional.cross_entropy(x, jg.tensor([-100, -100, -100]))
    assert np.isnan(loss.item())
    loss.backward()
    assert x.grad.shape == (3, 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_where_with_a_zero_side_is_np_where_bit_for_bit(dtype):
    # large where(c, 0, x) / where(c, x, 0) select bits instead of branching: same results,
    # NaN, infinities and signed zeros included; -0.0 as the constant is not taken for +0.0
    rng = np.random.default_rng(0)
    x = rng.standard_normal(3000).astype(dtype)
    x[:6] = [np.nan, np.inf, -np.inf, -0.0, 0.0, -np.nan]
    c = rng.random(3000) < 0.5
    c[:6] = [True, False, True, False, True, False]
    impl = PRIMS["where"].impl
    for zero in (np.zeros((), dtype), np.array(-0.0, dtype), np.array(1.5, dtype)):
        for a, b in ((zero, x), (x, zero)):
            got, want = impl(c, a, b), np.where(c, a, b)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got.view(f"u{x.itemsize}"), want.view(f"u{x.itemsize}"))


def test_fused_linear_saves_input_and_weight_not_bias():
    # as PyTorch's addmm node: the bias may change in place before backward, the weight may not
    lin = jg.nn.Linear(3, 2)
    x = jg.randn(4, 3)
    out = lin(x)
    with jg.no_grad():
        lin.bias.add_(1.0)
    out.sum().backward()
    np.testing.assert_array_equal(lin.bias.grad.numpy(), np.full(2, 4.0, np.float32))
    np.testing.assert_allclose(lin.weight.grad.numpy(), np.tile(x.numpy().sum(0), (2, 1)))
    out = lin(x)
    with jg.no_grad():
        lin.weight.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


@pytest.mark.parametrize("case", range(3))
def test_fused_max_pool_picks_what_argmax_picks_on_ties_nans_and_infinities(case):
    # which element wins decides both the value's bits (+0.0 or -0.0) and where the gradient
    # goes: the fused loop must pick as the composite's argmax does
    arrays, params = FUSED_CASES["max_pool2d"][case]
    rng = np.random.default_rng(case)
    x = rng.choice([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan], arrays[0].shape)
    x = x.astype(np.float32)
    prim = PRIMS["max_pool2d"]
    got = []
    for run in (lambda t: jg.apply(prim, (t,), params), lambda t: prim.decompose(t, **params)):
        t = jg.tensor(x, requires_grad=True)
        out = run(t)
        (g,) = jg.autograd.grad(out, [t], jg.ones_like(out))
        got.append((out.detach().numpy(), g.numpy()))
    (a, ga), (b, gb) = got
    assert a.tobytes() == b.tobytes() and np.array_equal(ga, gb)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_large_elementwise_primitives_in_pieces_give_the_same_bits(name):
    # ops.parallel cuts large elementwise inputs into pieces, one per core: each element is
    # computed by the same loop, so the result must not change by a bit
    from jitgrad.ops import parallel

    spec, prim = SPECS[name], PRIMS[name]
    rng = np.random.default_rng(11)
    n = parallel.MIN_ELEMENTS + 12345
    arrays = []
    for a in spec.args:
        drawn = [a.draw(rng) for _ in range(-(-n // max(1, int(np.prod(a.shape)))))]
        flat = np.concatenate([d.reshape(-1) for d in drawn])[:n]
        arrays.append(flat.astype(np.float32) if flat.dtype.kind == "f" else flat)
    whole = prim.impl(*arrays, **spec.params)
    pieces = parallel.elementwise(prim.impl, arrays, spec.params)
    if parallel.CORES < 2:
        pytest.skip("one core: nothing is cut")
    assert pieces is not None
    assert pieces.dtype == whole.dtype and pieces.tobytes() == np.asarray(whole).tobytes()
