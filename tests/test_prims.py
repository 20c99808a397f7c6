"""The shared per-op tests: every entry of the op table and every primitive, read from their
test specs (``ops.spec.Spec``): forward against NumPy in each dtype, shape rule against impl,
first and second order against finite differences in float64, linearity as declared, eager
against the interpreter bit for bit, and each scalar template against its impl. A new entry
with a spec is covered here with nothing else written; one without a spec fails."""

from __future__ import annotations

import math

import numpy as np
import pytest

import jitgrad as jg
from jitgrad.backends import numba_cpu
from jitgrad.ops import loops
from jitgrad.ops.registry import KEYWORD_ALIASES, OPS, PRIMS, scalar_expr
from jitgrad.ops.scalar_math import SCALAR_FUNCTIONS
from jitgrad.ops.spec import Arg

EPS = 1e-6


def test_every_entry_has_a_spec():
    prims = sorted(n for n, p in PRIMS.items() if p.spec is None)
    ops = sorted(n for n, o in OPS.items() if o.spec is None)
    assert not prims, f"primitives registered without a test spec (register(..., spec=)): {prims}"
    assert not ops, f"ops declared without a test spec (op(spec=)): {ops}"


def test_lowering_and_simplification_rules_name_registered_primitives():
    from jitgrad.backends.numba_cpu.inline import INLINE
    from jitgrad.backends.numba_cpu.kernels import KERNELS
    from jitgrad.ir.passes import SIMPLIFY
    from jitgrad.ops.registry import KINDS

    assert set(INLINE) <= set(PRIMS) and set(SIMPLIFY) <= set(PRIMS)
    assert set(KERNELS) <= set(KINDS)


def test_every_primitive_has_a_numba_lowering():
    missing = sorted(n for n, p in PRIMS.items() if not numba_cpu.lowers(p))
    assert not missing, f"primitives the numba backend cannot lower: {missing}"


# -- cases: a primitive applied, or an op called, on its spec's inputs -----------------------------


class Case:
    def __init__(self, spec, run, prim=None):
        self.spec, self.run, self.prim = spec, run, prim

    def tensors(self, values, wanted=(), dtype=None):
        """Tensors for the ``Arg`` positions of ``values`` (float ones in ``dtype``), those in
        ``wanted`` requiring grad; constants as they are."""
        out = []
        for k, (a, v) in enumerate(zip(self.spec.args, values)):
            if isinstance(a, Arg):
                if dtype is not None and v.dtype.kind == "f":
                    v = v.astype(dtype)
                v = jg.tensor(v, requires_grad=k in wanted)
            out.append(v)
        return out

    def outputs(self, values, wanted=(), dtype=None):
        ins = self.tensors(values, wanted, dtype)
        return ins, _flat(self.run(ins, self.spec.params))


def _flat(out) -> list:
    return list(out) if isinstance(out, tuple) else [out]


def _apply(prim):
    return lambda ins, params: jg.apply(prim, tuple(ins), params)


def _call(entry):
    call = entry.spec.call
    if call is not None:
        return lambda ins, params: call(entry.fn, *ins, **params)
    return lambda ins, params: entry.fn(*ins, **params)


# primitives as ``<name>_p``, ops by their names; rand (no reference) has a test of its own
CASES = {f"{n}_p": Case(p.spec, _apply(p), p) for n, p in PRIMS.items() if p.spec and p.spec.ref}
CASES.update({n: Case(o.spec, _call(o)) for n, o in OPS.items() if o.spec and o.spec.ref})
NAMES = sorted(CASES)
PRIM_NAMES = [n for n in NAMES if CASES[n].prim is not None]
DIFF = [n for n in NAMES if CASES[n].spec.differentiable]
SMOOTH = [n for n in DIFF if CASES[n].spec.smooth]
DTYPE_CASES = [(n, d) for n in NAMES for d in CASES[n].spec.dtypes]


def _ref(case, values):
    return _flat(case.spec.ref(*values, **case.spec.params))


@pytest.mark.parametrize(("name", "dtype"), DTYPE_CASES)
def test_forward_matches_numpy(name, dtype):
    case = CASES[name]
    values = case.spec.draw()
    _, outs = case.outputs(values, dtype=dtype)
    expected = _ref(case, values)  # in float64
    tol = case.spec.ref_tol if dtype == "float64" else max(case.spec.ref_tol, 2e-5)
    assert len(outs) == len(expected)
    for out, want in zip(outs, expected):
        assert out.shape == tuple(np.shape(want))
        if out.dtype.is_floating_point:
            assert out.dtype.name == dtype or case.spec.params.get("dtype") is out.dtype
        np.testing.assert_allclose(out.numpy(), want, rtol=tol, atol=tol)


@pytest.mark.parametrize(("name", "dtype"), [(n, d) for n, d in DTYPE_CASES if n in PRIM_NAMES])
def test_shape_rule_matches_impl(name, dtype):
    case = CASES[name]
    ins, (out,) = case.outputs(case.spec.draw(), dtype=dtype)
    shape, out_dtype = case.prim.shape(ins, **case.spec.params)
    assert tuple(shape) == tuple(out.shape)
    assert out_dtype is out.dtype


def _directional_fd(f, values, i, v):
    """d/dt f(values with values[i] + t v) at t=0, central differences."""
    plus, minus = list(values), list(values)
    plus[i] = values[i] + EPS * v
    minus[i] = values[i] - EPS * v
    return (f(plus) - f(minus)) / (2 * EPS)


def _cotangents(outs, rng) -> list:
    """A random cotangent (float64) for each float output, None for the others."""
    return [rng.standard_normal(o.shape) if o.dtype.is_floating_point else None for o in outs]


def _pairing(outs, cots) -> float:
    """<g, f(x)> in float64 over the float outputs."""
    return sum(
        float(np.sum(g * o.numpy().astype(np.float64))) for o, g in zip(outs, cots) if g is not None
    )


def _float_outs(outs, cots):
    return [(o, g) for o, g in zip(outs, cots) if g is not None]


@pytest.mark.parametrize("name", DIFF)
def test_vjp_matches_finite_differences(name):
    case = CASES[name]
    spec = case.spec
    values = spec.draw(seed=1)
    rng = np.random.default_rng(2)
    wanted = spec.differentiable
    ins, outs = case.outputs(values, wanted)
    cots = _cotangents(outs, rng)
    pairs = _float_outs(outs, cots)
    grads = jg.autograd.grad(
        [o for o, _ in pairs],
        [ins[k] for k in wanted],
        [jg.tensor(g, dtype=o.dtype) for o, g in pairs],
        allow_unused=True,
        materialize_grads=True,
    )

    def scalar(vals):
        return _pairing(case.outputs(vals)[1], cots)

    for k, gk in zip(wanted, grads):
        assert gk.shape == ins[k].shape
        for _ in range(3):
            v = rng.standard_normal(values[k].shape)
            numeric = _directional_fd(scalar, values, k, v)
            analytic = float(np.sum(gk.numpy() * v))
            assert analytic == pytest.approx(numeric, rel=max(spec.tol, 1e-5), abs=1e-6), (k, name)


@pytest.mark.parametrize("name", SMOOTH)
def test_second_order_matches_finite_differences(name):
    """The first-order gradient h = sum_k <vjp_k(g), w_k>, differentiated again, against finite
    differences of h in each input and in the cotangent g. The cotangent requires grad, so h
    always does unless a rule detached its result; such a rule fails here."""
    case = CASES[name]
    spec = case.spec
    values = spec.draw(seed=3)
    rng = np.random.default_rng(4)
    outs0 = case.outputs(values)[1]
    cots = _cotangents(outs0, rng)
    float_at = [j for j, g in enumerate(cots) if g is not None]
    w = {k: rng.standard_normal(values[k].shape) for k in spec.differentiable}

    def first_order(vals, cot_values, create_graph=False):
        ins, outs = case.outputs(vals, spec.differentiable)
        gs = [
            jg.tensor(cot_values[j], dtype=outs[j].dtype, requires_grad=create_graph)
            for j in float_at
        ]
        grads = jg.autograd.grad(
            [outs[j] for j in float_at],
            [ins[k] for k in spec.differentiable],
            gs,
            create_graph=create_graph,
            allow_unused=True,
            materialize_grads=True,
        )
        total = None
        for k, gk in zip(spec.differentiable, grads):
            term = (gk * jg.tensor(w[k], dtype=gk.dtype)).sum()
            total = term if total is None else total + term
        return total, ins, gs

    h, ins, gs = first_order(values, cots, create_graph=True)
    assert h.requires_grad, f"{name}: its first-order gradient is detached from the graph"
    wrt = [ins[k] for k in spec.differentiable] + gs
    second = jg.autograd.grad(h, wrt, allow_unused=True, materialize_grads=True)
    for k, sk in zip(spec.differentiable, second):
        v = rng.standard_normal(values[k].shape)
        numeric = _directional_fd(lambda a: first_order(a, cots)[0].item(), values, k, v)
        analytic = float(np.sum(sk.numpy() * v))
        assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-5), (k, name)
    for j, sg in zip(float_at, second[len(spec.differentiable) :]):
        v = rng.standard_normal(cots[j].shape)
        moved = list(cots)
        numeric = []
        for t in (EPS, -EPS):
            moved[j] = cots[j] + t * v
            numeric.append(first_order(values, moved)[0].item())
        analytic = float(np.sum(sg.numpy() * v))
        assert analytic == pytest.approx(
            (numeric[0] - numeric[1]) / (2 * EPS), rel=1e-4, abs=1e-5
        ), ("cotangent", name)


@pytest.mark.parametrize("name", DIFF)
def test_linearity_is_as_declared(name):
    """f(x + 2y) = f(x) + 2 f(y) in the differentiable inputs together exactly when the spec
    says the entry is linear."""
    case = CASES[name]
    spec = case.spec
    x, other = spec.draw(seed=5), spec.draw(seed=6)
    y, both = list(x), list(x)  # (the other inputs, indices say, stay as they are)
    for k in spec.differentiable:
        y[k] = other[k]
        both[k] = x[k] + 2.0 * y[k]
    fx, fy, fxy = (case.outputs(v)[1] for v in (x, y, both))
    linear = all(
        np.allclose(c.numpy(), a.numpy() + 2.0 * b.numpy(), rtol=1e-9, atol=1e-9)
        for a, b, c in zip(fx, fy, fxy)
        if c.dtype.is_floating_point
    )
    assert linear == spec.linear, f"{name}: linear={linear}, its spec says {spec.linear}"


# fused primitives are checked against their decompositions below
EAGER_VS_TAPE = [n for n in NAMES if CASES[n].prim is None or CASES[n].prim.kind != "fused"]


@pytest.mark.parametrize("name", EAGER_VS_TAPE)
def test_eager_and_interpreter_agree_bit_for_bit(name):
    """The traced forward and first-order gradients, run by the reference interpreter, give the
    eager bits (the same impls on the same arrays)."""
    case = CASES[name]
    spec = case.spec
    values = spec.draw(seed=7)
    tensor_at = [k for k, a in enumerate(spec.args) if isinstance(a, Arg)]
    cots = _cotangents(case.outputs(values)[1], np.random.default_rng(8))
    float_at = [j for j, g in enumerate(cots) if g is not None]

    def step(*tensors):
        ins = list(values)
        for k, t in zip(tensor_at, tensors):
            ins[k] = t
        outs = _flat(case.run(ins, spec.params))
        if not spec.differentiable:
            return tuple(outs)
        grads = jg.autograd.grad(
            [outs[j] for j in float_at],
            [ins[k] for k in spec.differentiable],
            [jg.tensor(cots[j], dtype=outs[j].dtype) for j in float_at],
            allow_unused=True,
            materialize_grads=True,
        )
        return (*outs, *grads)

    def fresh():
        return [jg.tensor(values[k], requires_grad=k in spec.differentiable) for k in tensor_at]

    eager = step(*fresh())
    traced = jg.compile(step, backend="interpreter")(*fresh())
    assert len(eager) == len(traced)
    for e, t in zip(eager, traced):
        e = e.detach().numpy()
        assert e.dtype == t.numpy().dtype and e.tobytes() == t.numpy().tobytes(), name


ELEMENTWISE = [n for n in PRIM_NAMES if CASES[n].prim.kind == "elementwise"]


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_scalar_template_matches_impl(name):
    case = CASES[name]
    spec, prim = case.spec, case.prim
    arrays = spec.draw(seed=5)
    args = [f"a{i}" for i in range(len(arrays))]
    expr = scalar_expr(prim, args, spec.params)
    # (templates may call the special functions of ops.scalar_math by name)
    namespace = {"math": math, "np": np, **SCALAR_FUNCTIONS}
    fn = eval(f"lambda {', '.join(args)}: {expr}", namespace)  # noqa: S307
    expected = prim.impl(*arrays, **spec.params)
    got = np.array(
        [fn(*[a.flat[i] for a in arrays]) for i in range(expected.size)], dtype=expected.dtype
    ).reshape(expected.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


ALIASED = [n for n, o in OPS.items() if o.spec and set(o.spec.params) & set(KEYWORD_ALIASES)]


@pytest.mark.parametrize("name", ALIASED)
def test_keyword_aliases_give_the_same_result(name):
    # PyTorch's NumPy-style names: x.sum(axis=0, keepdims=True) is x.sum(dim=0, keepdim=True)
    case, entry = CASES[name], OPS[name]
    spec = case.spec
    aliased = {KEYWORD_ALIASES.get(k, (k,))[0]: v for k, v in spec.params.items()}
    values = spec.draw()
    want = case.outputs(values)[1]
    got = _flat(case.run(case.tensors(values), aliased))
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    if entry.method:
        x, *rest = case.tensors(values)
        for a, b in zip(_flat(getattr(x, name)(*rest, **aliased)), want):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(TypeError, match="alias"):
        both = dict(spec.params, **aliased)
        case.run(case.tensors(values), both)


def test_each_op_is_a_function_and_a_method_as_declared():
    import importlib

    for entry in OPS.values():
        if entry.namespace == "Tensor":  # methods only (Tensor.repeat, Tensor.new_zeros)
            assert entry.method and getattr(jg.Tensor, entry.name) is entry.fn, entry.key
            continue
        module = importlib.import_module(
            "jitgrad" if entry.namespace == "jitgrad" else f"jitgrad.{entry.namespace}"
        )
        for name in (entry.name, *entry.names):
            assert getattr(module, name) is entry.fn, entry.key
            assert entry.namespace == "jitgrad" or name in module.__all__, entry.key
            assert (getattr(jg.Tensor, name, None) is entry.fn) == entry.method, name
            assert hasattr(jg.Tensor, name + "_") == (entry.method and entry.inplace), name


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
        kinds = ("elementwise", "reduce", "scan", "sort", "movement", "matmul", "index")
        kinds += ("scatter", "random", "linalg", "other", "fused")
        assert prim.kind in kinds
        assert callable(prim.impl) and callable(prim.shape)
        assert (prim.kind == "fused") == callable(prim.decompose), prim.name
        if prim.differentiable:
            assert callable(prim.vjp), prim.name
        if prim.kind == "elementwise":
            assert prim.scalar is not None, prim.name
        assert (prim.kind in ("reduce", "scan")) == (prim.reduction is not None), prim.name


# -- fused primitives: one eager step standing for a composite ------------------------------------

FUSED = sorted(n for n, p in PRIMS.items() if p.kind == "fused")


def _fused_cases():
    for name in FUSED:
        for dtype in (np.float32, np.float64):
            for k in range(len(PRIMS[name].spec.cases)):
                yield name, dtype, k


def _fused_inputs(name, dtype, k, seed):
    args, params = PRIMS[name].spec.cases[k]
    arrays = PRIMS[name].spec.draw(seed, args)
    return [a.astype(dtype) if a.dtype.kind == "f" else a for a in arrays], params


class _NoLoopReady(dict):
    """An ops.loops state table in which no loop is ready (every caller takes its NumPy path)."""

    def get(self, key, default=None):
        return loops._NUMPY


@pytest.mark.parametrize(("name", "dtype", "k"), list(_fused_cases()))
def test_fused_primitive_agrees_with_its_decomposition_bit_for_bit(name, dtype, k):
    """The fused impl and VJP repeat the decomposition's arithmetic: eager runs (fused) and traced
    runs (decomposed) give identical bits, values and first-order gradients."""
    prim = PRIMS[name]
    for seed in range(3):
        arrays, params = _fused_inputs(name, dtype, k, seed)
        results = []
        # fused with its compiled loops (ops.loops), fused on their NumPy paths (taken while
        # the loops are being compiled), decomposed
        for run, loops_ready in (
            (lambda ts, p=params: jg.apply(prim, tuple(ts), p), True),
            (lambda ts, p=params: jg.apply(prim, tuple(ts), p), False),
            (lambda ts, p=params: prim.decompose(*ts, **p), True),
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
        for j, (fused, decomposed) in enumerate(zip(results[0], results[2])):
            assert fused.dtype == decomposed.dtype
            if j and name == "cross_entropy_backward":
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
    args, params = PRIMS["max_pool2d"].spec.cases[case]
    rng = np.random.default_rng(case)
    x = rng.choice([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan], args[0].shape)
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

    spec, prim = CASES[name].spec, CASES[name].prim
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
