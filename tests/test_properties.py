"""Property tests: random small programs over the op set; gradients vs finite differences."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jitgrad as jg

# Smooth ops only (no kinks near random data), each: (arity, fn over jitgrad values).
# Values are [3, 4] tensors; ops that change shape map back to [3, 4].
UNARY = {
    "tanh": jg.tanh,
    "sin": jg.sin,
    "sigmoid": jg.sigmoid,
    "square": lambda x: x * x,
    "soft_recip": lambda x: 1.0 / (1.0 + x * x),
    "exp_tanh": lambda x: jg.exp(jg.tanh(x)),
    "log_1px2": lambda x: jg.log(1.0 + x * x),
    "softmax1": lambda x: jg.softmax(x, dim=1),
    "log_softmax0": lambda x: jg.log_softmax(x, dim=0),
    "row_mean": lambda x: x - x.mean(dim=1, keepdim=True),
    "col_sum_bcast": lambda x: x * x.sum(dim=0),
    "lse_bcast": lambda x: x + jg.logsumexp(x, dim=1, keepdim=True),
    "transpose_back": lambda x: x.T.reshape(4, 3).reshape(3, 4) * 0.5,
    "flip_rows": lambda x: x[[2, 1, 0]],
    "slice_cat": lambda x: jg.cat([x[:, 2:], x[:, :2]], dim=1),
    "scale": lambda x: 2.5 * x - 0.5,
    "sqrt_1px2": lambda x: jg.sqrt(1.0 + x * x),
    "var_bcast": lambda x: x * x.var(dim=1, keepdim=True),
    "gram": lambda x: (x @ x.T) @ x * 0.1,
    "stack_mean": lambda x: jg.stack([x, x * x]).mean(0),
    "unsqueeze_expand": lambda x: x[:, None, :].expand(3, 2, 4).sum(1),
}
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div_safe": lambda a, b: a / (1.5 + jg.tanh(b)),
    "matmul_t": lambda a, b: a @ b.T @ a * 0.1,
    "where": lambda a, b: jg.where(jg.tensor(_MASK), a, b),
    "pow_pos": lambda a, b: (1.0 + a * a) ** jg.tanh(b),
    "row_bcast": lambda a, b: a * b[0],
}
_MASK = np.array([[True, False, True, True], [False, False, True, False], [True] * 4])

step = st.one_of(
    st.tuples(st.just("u"), st.sampled_from(sorted(UNARY)), st.integers(0, 10)),
    st.tuples(
        st.just("b"), st.sampled_from(sorted(BINARY)), st.integers(0, 10), st.integers(0, 10)
    ),
)


def _run(program, xs):
    values = list(xs)
    for op in program:
        if op[0] == "u":
            values.append(UNARY[op[1]](values[op[2] % len(values)]))
        else:
            values.append(BINARY[op[1]](values[op[2] % len(values)], values[op[3] % len(values)]))
    w = jg.tensor(np.linspace(-1.0, 1.0, 12).reshape(3, 4))
    return (values[-1] * w).sum()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=st.lists(step, min_size=1, max_size=6), seed=st.integers(0, 2**16))
def test_random_program_gradients_match_finite_differences(program, seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.uniform(-1.5, 1.5, (3, 4)) for _ in range(2)]
    xs = [jg.tensor(a, requires_grad=True) for a in arrays]
    out = _run(program, xs)
    grads = jg.autograd.grad(out, xs, allow_unused=True, materialize_grads=True)
    eps = 1e-6
    for k in range(2):
        v = rng.standard_normal((3, 4))
        plus = [jg.tensor(a + (eps * v if i == k else 0)) for i, a in enumerate(arrays)]
        minus = [jg.tensor(a - (eps * v if i == k else 0)) for i, a in enumerate(arrays)]
        numeric = (_run(program, plus).item() - _run(program, minus).item()) / (2 * eps)
        analytic = float(np.sum(grads[k].numpy() * v))
        assert abs(analytic - numeric) <= 1e-5 * max(1.0, abs(numeric)), (program, k)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=st.lists(step, min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_random_program_second_order_matches_finite_differences(program, seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.uniform(-1.5, 1.5, (3, 4)) for _ in range(2)]
    u = rng.standard_normal((3, 4))

    def directional_grad(arrs, create_graph=False):
        xs = [jg.tensor(a, requires_grad=True) for a in arrs]
        (g,) = jg.autograd.grad(
            _run(program, xs), xs[0], create_graph=create_graph, materialize_grads=True
        )
        return (g * jg.tensor(u)).sum(), xs

    h, xs = directional_grad(arrays, create_graph=True)
    if not h.requires_grad:
        return
    (hv,) = jg.autograd.grad(h, xs[0], allow_unused=True, materialize_grads=True)
    eps = 1e-5
    v = rng.standard_normal((3, 4))
    numeric = (
        directional_grad([arrays[0] + eps * v, arrays[1]])[0].item()
        - directional_grad([arrays[0] - eps * v, arrays[1]])[0].item()
    ) / (2 * eps)
    analytic = float(np.sum(hv.numpy() * v))
    assert abs(analytic - numeric) <= 1e-4 * max(1.0, abs(numeric)), program
