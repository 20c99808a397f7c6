"""Reductions from the one table of fold rules (init, combine, finalize): every reduce primitive
in each kernel layout the numba backend has (rows, columns, a threaded full reduction, a full
reduction grouped with maps), against NumPy and the interpreter; prod's gradient at zeros."""

from __future__ import annotations

import numpy as np
import pytest

import jitgrad as jg
from jitgrad.backends.numba_cpu.codegen import PARALLEL_MIN
from jitgrad.ops import PRIMS

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("JITGRAD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "jg-cache"))


def test_every_reduction_is_an_entry_of_the_table():
    reductions = {n for n, p in PRIMS.items() if p.kind == "reduce"}
    assert {"sum", "prod", "max", "min", "argmax", "logsumexp"} <= reductions
    for name in reductions:
        assert PRIMS[name].reduction is not None, name


# (op, NumPy reference): each along rows (last axis), columns (first axis) and in full
FOLDS = [
    (jg.sum, np.sum),
    (jg.prod, np.prod),
    (jg.amax, np.max),
    (jg.amin, np.min),
]


def _layouts(x, big, flat):
    out = []
    for op, _ in FOLDS:
        out += [op(x, dim=1), op(x, dim=0), op(x * 0.5, dim=(0, 1))]
        out.append(op(big * 1.0001, dim=0))  # a threaded full reduction: parts, then folded
        # a full reduction in one loop with the map it reads (a group)
        mapped = flat * 0.999
        out += [mapped, op(mapped, dim=0)]
    return out


@pytest.mark.filterwarnings("error")  # (a fallback to the interpreter warns: strict)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_reductions_in_every_layout_match_numpy_and_the_interpreter(dtype):
    rng = np.random.default_rng(0)
    if dtype == np.int64:
        # small values: products stay exact; no scaling of integers (it would promote)
        x = jg.tensor(rng.integers(-3, 4, (7, 5)))
        big = jg.tensor(rng.choice([-1, 1, 1, 1], PARALLEL_MIN + 3))
        flat = jg.tensor(rng.choice([-1, 1], 64))

        def step(x, big, flat):
            out = []
            for op, _ in FOLDS:
                out += [op(x, dim=1), op(x, dim=0), op(x, dim=(0, 1)), op(big, dim=0)]
                out.append(op(flat * 2, dim=0))
            return out

    else:
        x = jg.tensor(rng.uniform(0.5, 1.5, (7, 5)).astype(dtype))
        big = jg.tensor(rng.uniform(0.9999, 1.0001, PARALLEL_MIN + 3).astype(dtype))
        flat = jg.tensor(rng.uniform(0.5, 1.5, 64).astype(dtype))
        step = _layouts
    cf = jg.compile(step, backend="numba", check=True)  # every stored value vs the interpreter
    got, want = cf(x, big, flat), step(x, big, flat)
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    for g, w in zip(got, want):
        assert g.dtype is w.dtype
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=rtol)
    # and eager against NumPy
    for (_, ref), k in zip(FOLDS, range(0, 4 * 6, 6)):
        if dtype != np.int64:
            np.testing.assert_allclose(want[k].numpy(), ref(x.numpy(), axis=1), rtol=rtol)
            np.testing.assert_allclose(want[k + 1].numpy(), ref(x.numpy(), axis=0), rtol=rtol)


def test_min_and_max_propagate_nan_compiled_as_numpy():
    x = np.array([[1.0, np.nan, -2.0], [3.0, 0.5, -np.inf], [np.inf, 2.0, 1.0]])

    def f(x):
        return jg.amin(x, 1), jg.amin(x, 0), jg.amax(x, 1), jg.amax(x, 0), jg.prod(x, 1)

    got = jg.compile(f, backend="numba", check=True)(jg.tensor(x))
    want = (x.min(1), x.min(0), x.max(1), x.max(0), x.prod(1))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.numpy(), w)


def _prod_grad_ref(x: np.ndarray) -> np.ndarray:
    """d prod(row) / dx_ij: the product of the row's other elements."""
    out = np.empty_like(x)
    for i, row in enumerate(x):
        for j in range(len(row)):
            out[i, j] = np.prod(np.delete(row, j))
    return out


@pytest.mark.filterwarnings("error")
def test_prod_gradient_with_zeros_eager_and_compiled():
    # no zero, one zero, two zeros in a row
    x = np.array([[1.5, -2.0, 3.0, 0.5], [2.0, 0.0, -1.5, 3.0], [0.0, 2.0, 0.0, 1.0]])

    def step(t):
        out = jg.prod(t, 1)
        (g,) = jg.autograd.grad(out.sum(), [t])
        return out, g

    t = jg.tensor(x, requires_grad=True)
    eager = step(t)
    compiled = jg.compile(step, backend="numba", check=True)(t)
    for out, g in (eager, compiled):
        np.testing.assert_allclose(out.detach().numpy(), x.prod(1))
        np.testing.assert_allclose(g.detach().numpy(), _prod_grad_ref(x))
    # the gradient of the full product too (one zero in the tensor)
    t = jg.tensor(x[1], requires_grad=True)
    t.prod().backward()
    np.testing.assert_allclose(t.grad.numpy(), _prod_grad_ref(x[1:2])[0])
