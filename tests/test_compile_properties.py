"""Property tests: random programs give bit-identical results eagerly and through the reference
interpreter, for values and gradients, in whole-step and inside-an-eager-graph use."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_properties import _run, step

import jitgrad as jg

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _arrays(seed, n=2):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1.5, 1.5, (3, 4)) for _ in range(n)]


@SETTINGS
@given(program=st.lists(step, min_size=1, max_size=6), seed=st.integers(0, 2**16))
def test_values_eager_equal_interpreter(program, seed):
    f = jg.compile(lambda a, b: _run(program, [a, b]), backend="interpreter")
    for k in range(3):  # trace, then two replays on new data
        a, b = (jg.tensor(x) for x in _arrays(seed + k))
        np.testing.assert_array_equal(f(a, b).numpy(), _run(program, [a, b]).numpy())


@SETTINGS
@given(program=st.lists(step, min_size=1, max_size=6), seed=st.integers(0, 2**16))
def test_whole_step_gradients_eager_equal_interpreter(program, seed):
    def grads(a, b):
        out = _run(program, [a, b])
        ga, gb = jg.autograd.grad(out, [a, b], allow_unused=True, materialize_grads=True)
        return out, ga, gb

    f = jg.compile(grads, backend="interpreter")
    for k in range(3):
        arrays = _arrays(seed + k)
        got = f(*(jg.tensor(x, requires_grad=True) for x in arrays))
        want = grads(*(jg.tensor(x, requires_grad=True) for x in arrays))
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g.numpy(), w.detach().numpy())


@SETTINGS
@given(program=st.lists(step, min_size=1, max_size=6), seed=st.integers(0, 2**16))
def test_inside_mode_gradients_eager_equal_interpreter(program, seed):
    f = jg.compile(lambda a, b: _run(program, [a, b]), backend="interpreter")
    for k in range(3):
        arrays = _arrays(seed + k)
        xs = [jg.tensor(x, requires_grad=True) for x in arrays]
        ys = [jg.tensor(x, requires_grad=True) for x in arrays]
        out = f(*xs)
        ref = _run(program, ys)
        np.testing.assert_array_equal(out.detach().numpy(), ref.detach().numpy())
        got = jg.autograd.grad(out, xs, allow_unused=True, materialize_grads=True)
        want = jg.autograd.grad(ref, ys, allow_unused=True, materialize_grads=True)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-13, atol=1e-13)
