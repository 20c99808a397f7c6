"""JAX twins of the benchmark workloads in ``jitgrad.bench``, for the ``jax jit`` column.

JAX has no PyTorch-shaped API, so each program is rewritten as a pure function under
``jax.jit``: same sizes, dtypes (float32) and math as its jitgrad/PyTorch original. Each builder
returns ``(run, ())``: ``run()`` does one step, keeps the updated state and waits for the result
(JAX dispatches asynchronously; without the wait only the launch would be timed). JAX is optional
and never imported here: the caller passes the module in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

Runner = tuple[Callable[[], Any], tuple]


def mlp_step(jax: ModuleType, sizes: Sequence[int], batch: int, lr: float, seed: int = 0) -> Runner:
    """One SGD step of a ReLU MLP with layer sizes `sizes`, cross-entropy loss."""
    jnp = jax.numpy
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / np.sqrt(fan_in)  # nn.Linear's default init range
        w = rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32)
        b = rng.uniform(-bound, bound, (fan_out,)).astype(np.float32)
        params.append((jnp.asarray(w), jnp.asarray(b)))
    x = jnp.asarray(rng.standard_normal((batch, sizes[0]), dtype=np.float32))
    y = jnp.asarray(rng.integers(0, sizes[-1], batch, dtype=np.int32))

    def loss_fn(params: list, x: Any, y: Any) -> Any:
        h = x
        for i, (w, b) in enumerate(params):
            h = h @ w + b
            if i < len(params) - 1:
                h = jax.nn.relu(h)
        logp = jax.nn.log_softmax(h, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    @jax.jit
    def step(params: list, x: Any, y: Any) -> tuple:
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads), loss

    state = [params]

    def run() -> Any:
        state[0], loss = step(state[0], x, y)
        return loss.block_until_ready()

    return run, ()


def _value_and_grad(jax: ModuleType, f: Callable, x: Any) -> Runner:
    step = jax.jit(jax.value_and_grad(f))
    return (lambda: jax.block_until_ready(step(x))), ()


def _randn(jax: ModuleType, n: int, seed: int) -> Any:
    return jax.numpy.asarray(np.random.default_rng(seed).standard_normal(n, dtype=np.float32))


def elementwise_chain(jax: ModuleType, size: int, seed: int = 0) -> Runner:
    """sum(tanh(1.5x+0.5)*sigmoid(x) + exp(-x*x)) and its gradient."""
    jnp = jax.numpy

    def f(x: Any) -> Any:
        return jnp.sum(jnp.tanh(1.5 * x + 0.5) * jax.nn.sigmoid(x) + jnp.exp(-x * x))

    return _value_and_grad(jax, f, _randn(jax, size, seed))


def tiny_graph(jax: ModuleType, size: int, seed: int = 0) -> Runner:
    """(x*2+1).sum() and its gradient."""
    return _value_and_grad(jax, lambda x: (x * 2 + 1).sum(), _randn(jax, size, seed))


def single_add(jax: ModuleType, size: int, seed: int = 0) -> Runner:
    """a + b, no gradient."""
    a, b = _randn(jax, size, seed), _randn(jax, size, seed + 1)
    add = jax.jit(lambda a, b: a + b)
    return (lambda: add(a, b).block_until_ready()), ()
