"""Random numbers from an explicit, counter-based generator state.

A generator's state is a ``uint64[2]`` tensor ``(seed, counter)``. Each draw is the ``rand``
primitive applied to that state (a pure function of it and the element index), after which the
counter moves on with an ordinary in-place update. Eager code and traced code therefore draw the
same way, and a compiled step that captures the state draws fresh numbers on every call.
"""

from __future__ import annotations

import math

import numpy as np

from . import dtypes
from .autograd.grad_mode import no_grad
from .ops import functions as F
from .ops import prims as P
from .tensor import Tensor, apply, inplace

DEFAULT_SEED = 67280421310721
_STEP = np.array([0, 1], dtype=np.uint64)


class Generator:
    """Holds a seed and a counter; ``manual_seed`` resets both."""

    def __init__(self, device="cpu"):
        self.device = dtypes.device(device)
        self.state = Tensor._wrap(np.array([DEFAULT_SEED, 0], dtype=np.uint64))

    def manual_seed(self, seed: int) -> Generator:
        seed = int(seed) % (1 << 64)
        with no_grad():
            inplace(self.state, lambda _: Tensor._wrap(np.array([seed, 0], dtype=np.uint64)))
        return self

    def initial_seed(self) -> int:
        return int(self.state._data[0])

    def get_state(self) -> Tensor:
        return Tensor._wrap(self.state._data.copy())

    def set_state(self, new_state: Tensor) -> None:
        with no_grad():
            inplace(self.state, lambda _: F.cast(new_state, dtypes.uint64))

    def uniform(self, shape: tuple, dtype: dtypes.dtype) -> Tensor:
        """Uniform [0, 1) numbers of ``shape``; advances the counter."""
        with no_grad():
            out = apply(P.rand_p, (self.state,), {"shape": tuple(shape), "dtype": dtype})
            inplace(self.state, lambda s: F.add(s, Tensor._wrap(_STEP)))
        return out


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seed the default generator (what makes runs reproducible)."""
    return default_generator.manual_seed(seed)


def seed() -> int:
    s = int.from_bytes(np.random.bytes(8), "little") >> 1
    manual_seed(s)
    return s


def initial_seed() -> int:
    return default_generator.initial_seed()


def get_rng_state() -> Tensor:
    return default_generator.get_state()


def set_rng_state(new_state: Tensor) -> None:
    default_generator.set_state(new_state)


def _size(size) -> tuple:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = size[0]
    return tuple(int(s) for s in size)


def _float(dtype) -> dtypes.dtype:
    d = dtypes.as_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()
    if not d.is_floating_point:
        raise RuntimeError(f"expected a floating point dtype for random numbers, got {d}")
    return d


def _finish(t: Tensor, requires_grad: bool) -> Tensor:
    return t.requires_grad_(True) if requires_grad else t


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Uniform numbers on [0, 1)."""
    gen = generator or default_generator
    return _finish(gen.uniform(_size(size), _float(dtype)), requires_grad)


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Standard normal numbers (Box-Muller over two uniform draws)."""
    gen = generator or default_generator
    d = _float(dtype)
    shape = _size(size)
    with no_grad():
        u1 = gen.uniform(shape, d)
        u2 = gen.uniform(shape, d)
        radius = F.sqrt(F.mul(F.log(F.rsub(u1, 1.0)), -2.0))
        out = F.mul(radius, F.cos(F.mul(u2, 2.0 * math.pi)))
    return _finish(out, requires_grad)


def randint(low, high=None, size=None, *, generator=None, dtype=None, device=None) -> Tensor:
    if high is None:
        low, high = 0, low
    if size is None:
        raise TypeError("randint() missing required argument 'size'")
    gen = generator or default_generator
    with no_grad():
        u = gen.uniform(_size((size,)), dtypes.float64)
        out = F.add(F.floor(F.mul(u, float(high - low))), float(low))
    return F.cast(out, dtype if dtype is not None else dtypes.int64)


def randperm(n: int, *, generator=None, dtype=None, device=None) -> Tensor:
    """A random permutation of ``0 .. n-1``: the order that sorts ``n`` uniform keys."""
    n = int(n)
    if n < 0:
        raise RuntimeError(f"Trying to create tensor with negative dimension {n}: [{n}]")
    gen = generator or default_generator
    keys = gen.uniform((n,), dtypes.float64)
    with no_grad():
        order = F.argsort(keys, dim=0, stable=True)
    return F.cast(order, dtype if dtype is not None else dtypes.int64)


def bernoulli_mask(shape: tuple, p: float, dtype: dtypes.dtype, generator=None) -> Tensor:
    """A 0/1 mask that is 1 with probability ``1 - p`` (what dropout keeps)."""
    gen = generator or default_generator
    return F.cast(F.ge(gen.uniform(shape, dtype), p), dtype)
