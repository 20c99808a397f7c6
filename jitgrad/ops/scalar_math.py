"""Scalar special functions that ``scalar`` templates may call by name (``erfinv({0})``,
``polygamma({0}, {1})``): plain Python over ``math``, so the template tests evaluate them as they
are, and the compiled backends compile them (``numba_cpu.runtime`` wraps each in ``njit``).
Each is accurate to a few ulp in float64; the eager ``impl`` is SciPy's. (Numba compiles each on
its own: they call ``math`` only, never each other.)

``SCALAR_FUNCTIONS`` lists them: a backend that pastes templates must provide every one.
"""

from __future__ import annotations

import math

_SQRT_PI_2 = 0.886226925452758  # sqrt(pi) / 2


def erfinv(y):
    """The inverse of erf on [-1, 1] (+-inf at +-1, NaN outside): Giles' single-precision
    approximation (2010), then Halley steps on erf (erfc in the tails, where 1 - |y| is
    exact), which bring it to float64 precision."""
    y = float(y)
    a = abs(y)
    if not a <= 1.0:
        return math.nan
    if a == 1.0:
        return math.copysign(math.inf, y)
    w = -math.log((1.0 - y) * (1.0 + y))
    if w < 5.0:
        w -= 2.5
        p = 2.81022636e-08
        p = 3.43273939e-07 + p * w
        p = -3.5233877e-06 + p * w
        p = -4.39150654e-06 + p * w
        p = 0.00021858087 + p * w
        p = -0.00125372503 + p * w
        p = -0.00417768164 + p * w
        p = 0.246640727 + p * w
        p = 1.50140941 + p * w
    else:
        w = math.sqrt(w) - 3.0
        p = -0.000200214257
        p = 0.000100950558 + p * w
        p = 0.00134934322 + p * w
        p = -0.00367342844 + p * w
        p = 0.00573950773 + p * w
        p = -0.0076224613 + p * w
        p = 0.00943887047 + p * w
        p = 1.00167406 + p * w
        p = 2.83297682 + p * w
    x = p * a
    for _ in range(8):
        # f(x) = erf(x) - a, f' = 2/sqrt(pi) e^(-x^2), f''/f' = -2x: Halley's step is
        # x - r / (1 + x r) with r = f / f'. (Far in the tail the start is a few percent off
        # and takes up to six steps; elsewhere two.)
        f = (1.0 - a) - math.erfc(x) if a > 0.5 else math.erf(x) - a
        r = f * _SQRT_PI_2 * math.exp(x * x)
        step = r / (1.0 + x * r)
        x -= step
        if abs(step) <= 1e-17 * x:
            break
    return math.copysign(x, y)


# Bernoulli numbers B_2k, k = 1..8, for the asymptotic series of the polygamma functions
_B2K = (
    1.0 / 6.0,
    -1.0 / 30.0,
    1.0 / 42.0,
    -1.0 / 30.0,
    5.0 / 66.0,
    -691.0 / 2730.0,
    7.0 / 6.0,
    -3617.0 / 510.0,
)


def polygamma(n, x):
    """The n-th derivative of digamma (n = 0: digamma itself), with PyTorch's values at the
    poles: digamma(+-0) = -+inf, NaN at negative integers; polygamma(n >= 1) is +inf at 0."""
    n = int(n)
    x = float(x)
    if x != x:
        return x
    if n == 0:
        if x == 0.0:
            return -math.copysign(math.inf, x)
        if x == math.inf:
            return x
        acc = 0.0
        if x < 0.0:
            if x == math.floor(x):
                return math.nan
            # reflection: psi(x) = psi(1 - x) - pi / tan(pi x) (tan has period pi: reducing x
            # first keeps pi x exact near the poles)
            acc = -math.pi / math.tan(math.pi * (x - math.floor(x)))
            x = 1.0 - x
        # psi(x) = psi(x + 1) - 1/x until x >= 10, then
        # psi(z) ~ log z - 1/(2z) - sum_k B_2k / (2k z^2k)
        while x < 10.0:
            acc -= 1.0 / x
            x += 1.0
        z2 = 1.0 / (x * x)
        s = 0.0
        zk = z2
        for k in range(8):
            s += _B2K[k] / (2.0 * (k + 1)) * zk
            zk *= z2
        return acc + math.log(x) - 0.5 / x - s
    if x == math.inf:
        return 0.0
    if x <= 0.0 and x == math.floor(x):
        return math.inf if (n % 2 == 1 or x == 0.0) else math.nan
    # psi^(n)(x) = psi^(n)(x + 1) + (-1)^(n+1) n! / x^(n+1) until x >= 15, then
    # psi^(n)(z) ~ (-1)^(n+1) [(n-1)!/z^n + n!/(2 z^(n+1)) + sum_k B_2k (2k+n-1)!/((2k)! z^(2k+n))]
    fact_n = math.gamma(n + 1.0)
    acc = 0.0
    while x < 15.0:
        inv = 1.0 / x
        term = fact_n * inv
        for _ in range(n):
            term *= inv
        acc += term
        x += 1.0
    s = math.gamma(float(n)) / x**n + fact_n / (2.0 * x ** (n + 1))
    for k in range(8):
        j = 2 * (k + 1)
        s += _B2K[k] * math.gamma(j + n + 0.0) / (math.gamma(j + 1.0) * x ** (j + n))
    sign = 1.0 if n % 2 == 1 else -1.0
    return sign * (acc + s)


SCALAR_FUNCTIONS = {"erfinv": erfinv, "polygamma": polygamma}
