"""Sampling from distributions, and PyTorch's in-place random fills (``Tensor.uniform_`` ...).

Every draw comes from a ``jitgrad.Generator`` (``jitgrad.random``): uniform numbers from the
``rand`` primitive, shaped into each distribution by ordinary ops. So ``manual_seed`` reproduces
them, and under ``jitgrad.compile`` the fills and samplers built from ops are recorded like
dropout is: each compiled call draws fresh numbers. ``poisson`` needs a rejection loop whose
length depends on the draws, so it runs eagerly only (a ``TraceError`` under tracing).

Samples carry no gradient. Where PyTorch's result joins the graph (``bernoulli`` of a tensor
that requires grad, ``normal`` of such a mean), it does here too, with a zero gradient.
"""

from __future__ import annotations

import math

import numpy as np

from . import dtypes
from .autograd.grad_mode import STATE, no_grad
from .ops import functions as F
from .random import _size, default_generator, rand, randn
from .tensor import LEAF_INPLACE, Tensor, inplace

_C_NAMES = {"int64": "long int", "int32": "int", "bool": "bool", "uint64": "unsigned long"}


def _not_implemented(kernel: str, d: dtypes.dtype) -> NotImplementedError:
    return NotImplementedError(f"\"{kernel}\" not implemented for '{dtypes.type_name(d)}'")


def _require_float(t: Tensor, kernel: str) -> None:
    if not t.dtype.is_floating_point:
        raise _not_implemented(kernel, t.dtype)


def _continuous(t: Tensor, what: str, type_name: str) -> None:
    if not t.dtype.is_floating_point:
        raise RuntimeError(
            f"{what} distribution is a continuous probability distribution. dtype must be a "
            f"floating point but you specified {type_name}"
        )


def _g(x: float) -> str:
    return f"{x:g}"


def _gen(generator):
    return generator if generator is not None else default_generator


def _uniform(shape: tuple, dtype: dtypes.dtype, generator) -> Tensor:
    return _gen(generator).uniform(tuple(shape), dtype)


def _tracing() -> bool:
    return STATE.tracer is not None


def _joins_graph(sample: Tensor, input: Tensor) -> Tensor:
    """``sample``, or (when ``input`` requires grad) ``sample`` as a result of ``input`` with a
    zero gradient: ``where(True, sample, input)`` sends nothing back to ``input``."""
    if STATE.grad_enabled and input.requires_grad:
        return F.where(F.const(True, dtypes.bool_), sample, input)
    return sample


def _check_leaf(t: Tensor) -> None:
    # before anything is drawn, so a refused fill leaves the generator where it was
    if STATE.grad_enabled and t.requires_grad and t.grad_fn is None:
        raise RuntimeError(
            LEAF_INPLACE + " Fill it inside `with jitgrad.no_grad():` (as nn.init does), or "
            "work on a clone()."
        )


def _fill(t: Tensor, value: Tensor) -> Tensor:
    """Write the sample ``value`` into ``t`` in place, keeping ``t``'s dtype; a ``t`` inside a
    graph gets a zero gradient from here on (the fill does not depend on its old value)."""
    value = F.cast(value, t.dtype)
    return inplace(t, lambda src: value)  # (inplace gives a t inside a graph a zero gradient)


# -- continuous fills ------------------------------------------------------------------------------
def uniform_(self: Tensor, from_: float = 0.0, to: float = 1.0, *, generator=None, **kw) -> Tensor:
    """Fill with numbers uniform on ``[from, to)``."""
    from_ = kw.pop("from", from_)
    _no_extra("uniform_", kw)
    _require_float(self, "check_uniform_bounds")
    if from_ > to:
        raise RuntimeError(
            f"uniform_ expects to return a [from, to) range, but found from={_g(from_)} > "
            f"to={_g(to)}"
        )
    _check_leaf(self)
    with no_grad():
        u = _uniform(self.shape, self.dtype, generator)
        value = F.add(F.mul(u, float(to) - float(from_)), float(from_))
    return _fill(self, value)


def normal_(self: Tensor, mean: float = 0.0, std: float = 1.0, *, generator=None) -> Tensor:
    """Fill with normal numbers of mean ``mean`` and standard deviation ``std``."""
    _require_float(self, "normal_kernel_cpu")
    if std < 0:
        raise RuntimeError(f"normal expects std >= 0.0, but found std {_g(std)}")
    _check_leaf(self)
    with no_grad():
        z = randn(self.shape, dtype=self.dtype, generator=generator)
        value = F.add(F.mul(z, float(std)), float(mean))
    return _fill(self, value)


def log_normal_(self: Tensor, mean: float = 1.0, std: float = 2.0, *, generator=None) -> Tensor:
    """Fill with ``exp(N(mean, std^2))``."""
    _require_float(self, "log_normal_cpu")
    if not std > 0:
        raise RuntimeError(f"log_normal_ expects std > 0.0, but found std={_g(std)}")
    _check_leaf(self)
    with no_grad():
        z = randn(self.shape, dtype=self.dtype, generator=generator)
        value = F.exp(F.add(F.mul(z, float(std)), float(mean)))
    return _fill(self, value)


def exponential_(self: Tensor, lambd: float = 1.0, *, generator=None) -> Tensor:
    """Fill with exponential numbers of rate ``lambd`` (mean ``1/lambd``)."""
    _continuous(self, "Exponential", dtypes.type_name(self.dtype))
    if not lambd > 0:
        raise RuntimeError(f"exponential_ expects lambda > 0.0, but found lambda={_g(lambd)}")
    _check_leaf(self)
    with no_grad():
        u = _uniform(self.shape, self.dtype, generator)
        # inverse CDF: -log(1 - u) / lambda, with 1 - u in (0, 1]
        value = F.div(F.neg(F.log1p(F.neg(u))), float(lambd))
    return _fill(self, value)


def cauchy_(self: Tensor, median: float = 0.0, sigma: float = 1.0, *, generator=None) -> Tensor:
    """Fill with Cauchy numbers: ``median + sigma * tan(pi * (u - 1/2))``."""
    _continuous(self, "Cauchy", _C_NAMES.get(self.dtype.name, self.dtype.name))
    if not sigma > 0:
        raise RuntimeError(f"cauchy_ expects sigma > 0.0, but found sigma={_g(sigma)}")
    _check_leaf(self)
    with no_grad():
        u = _uniform(self.shape, dtypes.float64, generator)
        value = F.add(F.mul(F.tan(F.mul(F.sub(u, 0.5), math.pi)), float(sigma)), float(median))
    return _fill(self, value)


# -- discrete fills --------------------------------------------------------------------------------
def geometric_(self: Tensor, p: float, *, generator=None) -> Tensor:
    """Fill with the number of Bernoulli(p) trials up to the first success (1, 2, ...)."""
    if not 0 < p < 1:
        raise RuntimeError(f"geometric_ expects p to be in (0, 1), but got p={_g(p)}")
    _check_leaf(self)
    with no_grad():
        u = _uniform(self.shape, dtypes.float64, generator)
        # P(K > k) = (1-p)^k: K = floor(log(v) / log(1-p)) + 1 with v = 1 - u in (0, 1]
        k = F.floor(F.div(F.log1p(F.neg(u)), math.log1p(-p)))
        value = F.add(k, 1.0)
    return _fill(self, value)


def bernoulli_(self: Tensor, p=0.5, *, generator=None) -> Tensor:
    """Fill with 1 with probability ``p`` (a number or a tensor broadcast to ``self``), else 0."""
    if isinstance(p, Tensor):
        prob = F.broadcast_to(p.detach(), self.shape)
        if not _tracing():
            _check_probabilities(prob)
    else:
        prob = float(p)
    if not isinstance(p, Tensor) and not 0 <= p <= 1:
        raise RuntimeError(f"bernoulli_ expects p to be in [0, 1], but got p={_g(p)}")
    _check_leaf(self)
    with no_grad():
        value = F.lt(_uniform(self.shape, dtypes.float64, generator), prob)
    return _fill(self, value)


def _int_range(d: dtypes.dtype) -> tuple[int, int]:
    if d == dtypes.bool_:
        return 0, 1
    info = np.iinfo(d.np)
    return int(info.min), int(info.max)


def _random_bounds(t: Tensor, from_, to) -> tuple[int, int]:
    """``[lo, hi)`` for ``random_``, with PyTorch's defaults and bound checks."""
    d = t.dtype
    if to is None:
        # the default: [from, largest integer the dtype holds exactly]
        hi = 2 ** (np.finfo(d.np).nmant + 1) + 1 if d.is_floating_point else _int_range(d)[1] + 1
        lo = int(from_)
    else:
        lo, hi = int(from_), int(to)
    if lo >= hi:
        raise RuntimeError(
            f"random_ expects 'from' to be less than 'to', but got from={lo} >= to={hi}"
        )
    if not d.is_floating_point:
        imin, imax = _int_range(d)
        name = _C_NAMES.get(d.name, d.name)
        if lo < imin or lo > imax:
            raise RuntimeError(f"from is out of bounds for {name}")
        if hi - 1 > imax:
            raise RuntimeError(f"to - 1 is out of bounds for {name}")
    return lo, hi


def _integers(shape: tuple, lo: int, hi: int, generator) -> Tensor:
    """int64 numbers uniform on ``[lo, hi)``."""
    n = hi - lo
    if n <= 2**53:
        u = _uniform(shape, dtypes.float64, generator)
        # floor(u * n) is exact below 2^53; the clamp guards u * n rounding up to n
        k = F.clamp(F.floor(F.mul(u, float(n))), max=float(n - 1))
        return F.add(F.cast(k, dtypes.int64), lo)
    # wider ranges: 63 random bits from two draws, folded into [0, n)
    hi_bits = F.cast(F.floor(F.mul(_uniform(shape, dtypes.float64, generator), 2.0**31)), "int64")
    lo_bits = F.cast(F.floor(F.mul(_uniform(shape, dtypes.float64, generator), 2.0**32)), "int64")
    k = F.add(F.mul(hi_bits, 2**32), lo_bits)
    if n < 2**63:
        k = F.remainder(k, n)
    return F.add(k, lo)


def random_(self: Tensor, *args, generator=None, **kw) -> Tensor:
    """``random_()``, ``random_(to)``, ``random_(from, to)``: integers uniform on ``[from, to)``;
    by default on ``[0, 2^mantissa]`` for floats and ``[0, max]`` for integers."""
    from_ = kw.pop("from", 0)
    to = kw.pop("to", None)
    _no_extra("random_", kw)
    if len(args) == 1:
        to = args[0]
    elif len(args) == 2:
        from_, to = args
    elif len(args) > 2:
        raise TypeError(f"random_() takes at most 2 positional arguments ({len(args)} given)")
    lo, hi = _random_bounds(self, from_, to)
    _check_leaf(self)
    with no_grad():
        value = _integers(self.shape, lo, hi, generator)
    return _fill(self, value)


def _no_extra(name: str, kw: dict) -> None:
    if kw:
        raise TypeError(f"{name}() got an unexpected keyword argument '{next(iter(kw))}'")


# -- out-of-place samplers -------------------------------------------------------------------------
def _check_probabilities(p: Tensor) -> None:
    p._concrete("bernoulli")
    v = p._data
    if not np.all((v >= 0) & (v <= 1)):
        raise RuntimeError(
            "Expected p_in >= 0 && p_in <= 1 to be true, but got false. (bernoulli takes "
            "probabilities in [0, 1].)"
        )


def bernoulli(input: Tensor, p: float | None = None, *, generator=None, out=None) -> Tensor:
    """1 with probability ``input`` (elementwise; or ``p`` for every element), else 0, in
    ``input``'s dtype."""
    if out is not None:
        raise TypeError("bernoulli(): out= is not supported; assign the result instead")
    if p is None:
        _require_float(input, "bernoulli_tensor_cpu_p_")
        if not _tracing():
            _check_probabilities(input)
        prob = input.detach()
    else:
        if not 0 <= p <= 1:
            raise RuntimeError(f"bernoulli_ expects p to be in [0, 1], but got p={_g(p)}")
        prob = float(p)
    with no_grad():
        sample = F.cast(F.lt(_uniform(input.shape, dtypes.float64, generator), prob), input.dtype)
    return _joins_graph(sample, input)


# PTRS (Hoermann 1993, "The transformed rejection method for generating Poisson random
# variables") for large rates; inversion of the CDF below this rate
_PTRS_FROM = 10.0


def _poisson_small(lam: np.ndarray, u: np.ndarray) -> np.ndarray:
    k = np.zeros(lam.shape)
    term = np.exp(-lam)
    cdf = term.copy()
    more = u > cdf
    for i in range(1, 200):  # P(K >= 200) is far below double precision for lam < 10
        if not more.any():
            break
        k[more] += 1
        term = term * lam / i
        cdf = cdf + term
        more &= u > cdf
    return k


def _poisson_large(lam: np.ndarray, gen) -> np.ndarray:
    from scipy.special import gammaln

    out = np.zeros(lam.shape)
    todo = np.arange(lam.size)
    slam, loglam = np.sqrt(lam), np.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    v_r = 0.9277 - 3.6224 / (b - 2)
    while todo.size:
        u = gen.uniform((todo.size,), dtypes.float64)._data - 0.5
        v = gen.uniform((todo.size,), dtypes.float64)._data
        us = 0.5 - np.abs(u)
        a_, b_, lam_ = a[todo], b[todo], lam[todo]
        k = np.floor((2 * a_ / us + b_) * u + lam_ + 0.43)
        quick = (us >= 0.07) & (v <= v_r[todo])
        ok = (k >= 0) & ~((us < 0.013) & (v > us))
        with np.errstate(divide="ignore", invalid="ignore"):
            lhs = np.log(v) + np.log(inv_alpha[todo]) - np.log(a_ / (us * us) + b_)
            rhs = -lam_ + k * loglam[todo] - gammaln(k + 1)
        accept = quick | (ok & (lhs <= rhs))
        out[todo[accept]] = k[accept]
        todo = todo[~accept]
    return out


def poisson(input: Tensor, generator=None) -> Tensor:
    """Poisson counts with rates ``input`` (elementwise), in ``input``'s dtype. Eager only: the
    sampler's rejection loop depends on the draws."""
    _require_float(input, "poisson_cpu")
    input._concrete("poisson")
    lam = np.asarray(input._data, dtype=np.float64).reshape(-1)
    if not np.all(lam >= 0):
        raise RuntimeError("invalid Poisson rate, expected rate to be non-negative")
    gen = _gen(generator)
    counts = np.zeros(lam.shape)
    small = lam < _PTRS_FROM
    u = gen.uniform((lam.size,), dtypes.float64)._data
    counts[small] = _poisson_small(lam[small], u[small])
    if not small.all():
        counts[~small] = _poisson_large(lam[~small], gen)
    sample = Tensor._wrap(counts.reshape(input.shape).astype(input.dtype.np))
    return _joins_graph(sample, input)


def multinomial(
    input: Tensor, num_samples: int, replacement: bool = False, *, generator=None, out=None
) -> Tensor:
    """``num_samples`` category indices per row of the weights ``input`` (1-D or 2-D), drawn
    with or without replacement; int64, shaped ``(num_samples,)`` or ``(rows, num_samples)``."""
    if out is not None:
        raise TypeError("multinomial(): out= is not supported; assign the result instead")
    if input.ndim not in (1, 2):
        raise RuntimeError("prob_dist must be 1 or 2 dim")
    if not input.dtype.is_floating_point:
        raise RuntimeError(
            "multinomial only supports floating-point dtypes for input, got: "
            f"{dtypes.type_name(input.dtype)}"
        )
    n = int(num_samples)
    if n <= 0:
        raise RuntimeError("cannot sample n_sample <= 0 samples")
    categories = input.shape[-1]
    if not replacement and n > categories:
        raise RuntimeError(
            "cannot sample n_sample > prob_dist.size(-1) samples without replacement"
        )
    if not _tracing():
        w = input._data
        if not np.all(np.isfinite(w) & (w >= 0)):
            raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
        if not np.all(w.sum(-1) > 0):
            raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
    rows = input.shape[:-1]
    with no_grad():
        w = F.cast(input.detach(), dtypes.float64)
        if replacement:
            # inversion: the index is how many cumulative weights lie at or below u * total
            cdf = F.cumsum(w, -1)
            total = F.narrow(cdf, -1, categories - 1, 1)
            u = F.mul(_uniform((*rows, n), dtypes.float64, generator), total)
            idx = F.searchsorted(cdf, u, right=True)
            return F.clamp(idx, max=categories - 1)
        # without replacement: the n smallest of E_i / w_i (E_i exponential) are a sample of
        # the weighted draw without replacement; zero weights get an infinite key
        e = F.neg(F.log1p(F.neg(_uniform(w.shape, dtypes.float64, generator))))
        keys = F.where(F.gt(w, 0.0), F.div(e, F.where(F.gt(w, 0.0), w, 1.0)), math.inf)
        order = F.argsort(keys, dim=-1, stable=True)
        return F.narrow(order, -1, 0, n)


def normal(mean=0.0, std=1.0, size=None, *, generator=None, out=None, dtype=None, **kw) -> Tensor:
    """``normal(mean, std)`` with a tensor mean and/or std (broadcast together), or
    ``normal(mean, std, size)`` with numbers."""
    if out is not None:
        raise TypeError("normal(): out= is not supported; assign the result instead")
    requires_grad = kw.pop("requires_grad", False)
    kw.pop("device", None)
    kw.pop("layout", None)
    kw.pop("pin_memory", None)
    _no_extra("normal", kw)
    tensors = [t for t in (mean, std) if isinstance(t, Tensor)]
    if not tensors:
        if size is None:
            raise TypeError("normal(): pass size= when mean and std are numbers")
        if std < 0:
            raise RuntimeError(f"normal expects std >= 0.0, but found std {_g(std)}")
        with no_grad():
            z = randn(_size((size,)), dtype=dtype, generator=generator)
            out = F.add(F.mul(z, float(std)), float(mean))
        return out.requires_grad_(True) if requires_grad else out
    for t in tensors:
        _require_float(t, "normal_kernel_cpu")
    if isinstance(std, Tensor):
        if not _tracing():
            std._concrete("normal")
            if not np.all(std._data >= 0):
                raise RuntimeError("normal expects all elements of std >= 0.0")
    elif std < 0:
        raise RuntimeError(f"normal expects std >= 0.0, but found std {_g(std)}")
    shape = F.broadcast_shapes(*(t.shape for t in tensors))
    d = dtypes.promote(*(t.dtype for t in tensors)) if len(tensors) == 2 else tensors[0].dtype
    with no_grad():
        z = randn(tuple(shape), dtype=d, generator=generator)
        s = std.detach() if isinstance(std, Tensor) else float(std)
        m = mean.detach() if isinstance(mean, Tensor) else float(mean)
        sample = F.add(F.mul(z, s), m)
    for t in tensors:
        sample = _joins_graph(sample, t)
    return sample


# -- *_like factories ------------------------------------------------------------------------------
def _like_dtype(input: Tensor, dtype):
    return dtypes.as_dtype(dtype) if dtype is not None else input.dtype


def _finish(t: Tensor, requires_grad: bool) -> Tensor:
    return t.requires_grad_(True) if requires_grad else t


def rand_like(
    input: Tensor, *, dtype=None, layout=None, device=None, requires_grad=False,
    memory_format=None, generator=None,
) -> Tensor:  # fmt: skip
    d = _like_dtype(input, dtype)
    if not d.is_floating_point:
        raise _not_implemented("check_uniform_bounds", d)
    return _finish(rand(tuple(input.shape), dtype=d, generator=generator), requires_grad)


def randn_like(
    input: Tensor, *, dtype=None, layout=None, device=None, requires_grad=False,
    memory_format=None, generator=None,
) -> Tensor:  # fmt: skip
    d = _like_dtype(input, dtype)
    if not d.is_floating_point:
        raise _not_implemented("normal_kernel_cpu", d)
    return _finish(randn(tuple(input.shape), dtype=d, generator=generator), requires_grad)


def randint_like(
    input: Tensor, low: int | None = None, high: int | None = None, *, dtype=None, layout=None,
    device=None, requires_grad=False, memory_format=None, generator=None,
) -> Tensor:  # fmt: skip
    """``randint_like(input, high)`` or ``randint_like(input, low, high)``, in ``input``'s
    dtype unless ``dtype`` says otherwise."""
    if high is None:
        if low is None:
            raise TypeError("randint_like() missing required argument 'high'")
        low, high = 0, low
    elif low is None:
        low = 0
    d = _like_dtype(input, dtype)
    probe = Tensor._wrap(np.zeros((), d.np))
    lo, hi = _random_bounds(probe, low, high)
    with no_grad():
        out = F.cast(_integers(tuple(input.shape), lo, hi, generator), d)
    return _finish(out, requires_grad)


_METHODS = (
    "uniform_",
    "normal_",
    "log_normal_",
    "exponential_",
    "cauchy_",
    "geometric_",
    "bernoulli_",
    "random_",
)


def install() -> None:
    """Bind the fills, ``bernoulli``, ``multinomial`` and ``poisson`` as Tensor methods."""
    g = globals()
    for name in _METHODS:
        setattr(Tensor, name, g[name])
    Tensor.bernoulli = bernoulli
    Tensor.multinomial = multinomial


install()
