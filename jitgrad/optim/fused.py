"""Fused eager updates: a parameter's whole optimizer update in one compiled loop.

Eagerly, ``Adam._update`` is two dozen primitive applications per parameter (``lerp_``,
``mul_``, ``addcmul_``, ``sqrt``, ``addcdiv_`` and the bias corrections), and their dispatch
cost more than their arithmetic: the demo MLP's Adam step took 360 us for 17K parameters. Here
each update is one loop over the parameter that reads and writes every buffer once.

Every loop performs the op-by-op update's floating-point operations, operation for operation
(the same products, sums, square roots and divisions, each rounded to the parameter's dtype,
with the same scalars: Python numbers rounded to that dtype as ``const`` rounds them), and is
compiled without fast-math, so nothing is reassociated or contracted into a fused multiply-add:
eager results are bit for bit what the op-by-op path computes (and so what the reference
interpreter computes for a traced step). ``tests/test_optim.py`` checks that, option by option.
Under a tracer the op-by-op path runs, so tapes keep the core primitives.

The loops are compiled by Numba once per machine and dtype (``cache=True``); until one is
(``ops.loops.ready``: by the compile worker), the same update runs as whole-array NumPy
operations, in the same order (``_adam_arrays``, ``_sgd_arrays``): the same bits again, without
the per-op dispatch, at a few passes over memory instead of one.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..autograd.grad_mode import STATE
from ..ops.loops import ready, warmed_by

# how a weight decay enters (Adam's option names): none, added to the gradient, decoupled
NO_DECAY, COUPLED, DECOUPLED = 0, 1, 2


def _warm_adam(t):
    a, s = [np.zeros(1, t) for _ in range(5)], t.type
    _adam_loop(*a, False, NO_DECAY, *[s(0)] * 5, s(1), s(0))


def _warm_sgd(t):
    a, s = [np.zeros(1, t) for _ in range(3)], t.type
    _sgd_loop(*a, False, False, *[s(0)] * 3, False, True, s(0))


@warmed_by(_warm_adam)
@njit(cache=True, nogil=True, error_model="numpy")
def _adam_loop(p, g, m, v, vmax, maximize, decay, wd, w1, b2, w2, bc2, eps, step):
    # (Adam._update, operation for operation)
    for i in range(p.size):
        gi = -g[i] if maximize else g[i]
        pi = p[i]
        if decay == COUPLED:
            gi = gi + pi * wd  # grad + p * wd
        elif decay == DECOUPLED:
            pi = pi * wd  # p.mul_(1 - lr * wd)
        mi = m[i]
        mi = mi + w1 * (gi - mi)  # exp_avg.lerp_(grad, 1 - beta1)
        m[i] = mi
        vi = v[i] * b2 + (gi * gi) * w2  # exp_avg_sq.mul_(beta2).addcmul_(g, g, 1 - beta2)
        v[i] = vi
        if vmax.size:  # amsgrad: np.maximum (a NaN in either wins)
            top = vmax[i]
            if not (top >= vi or top != top):
                top = vi
            vmax[i] = top
            vi = top
        p[i] = pi + (mi / (math.sqrt(vi) / bc2 + eps)) * step  # p.addcdiv_(m, denom, -step)


@warmed_by(_warm_sgd)
@njit(cache=True, nogil=True, error_model="numpy")
def _sgd_loop(p, g, buf, maximize, decay, wd, momentum, damp, nesterov, first, lr):
    # (SGD._update, operation for operation)
    for i in range(p.size):
        gi = -g[i] if maximize else g[i]
        if decay:
            gi = gi + p[i] * wd
        if buf.size:
            if first:
                b = gi  # the buffer starts as a copy of the first gradient
            else:
                b = buf[i] * momentum + gi * damp
            buf[i] = b
            gi = gi + b * momentum if nesterov else b
        p[i] = p[i] - gi * lr


def _adam_arrays(p, g, m, v, vmax, maximize, decay, wd, w1, b2, w2, bc2, eps, step):
    # (_adam_loop's operations, each over whole arrays)
    gi = np.negative(g) if maximize else g
    if decay == COUPLED:
        gi = gi + p * wd
    pi = p * wd if decay == DECOUPLED else p
    t = np.subtract(gi, m)
    t *= w1
    m += t
    v *= b2
    t = np.multiply(gi, gi)
    t *= w2
    v += t
    if vmax.size:
        np.maximum(vmax, v, out=vmax)  # (a NaN in either wins, as in the loop)
        v = vmax
    d = np.sqrt(v)
    d /= bc2
    d += eps
    np.divide(m, d, out=d)
    d *= step
    np.add(pi, d, out=p)


def _sgd_arrays(p, g, buf, maximize, decay, wd, momentum, damp, nesterov, first, lr):
    # (_sgd_loop's operations, each over whole arrays)
    gi = np.negative(g) if maximize else g
    if decay:
        gi = gi + p * wd
    if buf.size:
        if first:
            buf[...] = gi
        else:
            buf *= momentum
            buf += gi * damp
        gi = gi + buf * momentum if nesterov else buf
    np.subtract(p, gi * lr, out=p)


def usable(p, grad, *state) -> bool:
    """Whether the fused update may update ``p`` with ``grad`` and these state tensors: not
    tracing, one floating dtype and shape, the tensors it writes in C-contiguous memory (the
    gradient, only read, may be a view), no tensor requiring grad."""
    if STATE.tracer is not None:
        return False
    d = p._data
    # (float32 and float64 only: the Numba loops have no 16-bit floats)
    if d.dtype.kind != "f" or d.itemsize < 4 or not d.flags.c_contiguous or not d.flags.writeable:
        return False
    for b in (grad, *state):
        bd = b._data
        if b._requires_grad or bd.dtype != d.dtype or bd.shape != d.shape:
            return False
        if b is not grad and not (bd.flags.c_contiguous and bd.flags.writeable):
            return False
    return not p._requires_grad or not STATE.grad_enabled


def _flat(t) -> np.ndarray:
    """A tensor's values as a flat array (a copy when its memory is not in order)."""
    return np.ascontiguousarray(t._data).reshape(-1)


def numbers(*values) -> bool:
    """Whether hyperparameters are plain Python numbers (not a compiler's runtime inputs)."""
    return all(type(v) in (int, float) for v in values)


def adam(p, grad, exp_avg, exp_avg_sq, max_sq, *, maximize, decay, wd, w1, b2, w2, bc2, eps,
         step) -> None:  # fmt: skip
    """One Adam update of ``p`` and its state in place (the scalars already rounded to its
    dtype, see Adam._update); the version counters move as the in-place ops move them."""
    t = p._data.dtype.type
    vmax = max_sq._data.reshape(-1) if max_sq is not None else np.empty(0, p._data.dtype)
    flat = [_flat(x) for x in (p, grad, exp_avg, exp_avg_sq)]
    scalars = (t(wd), t(w1), t(b2), t(w2), t(bc2), t(eps), t(step))
    update = _adam_loop if ready(_adam_loop, p._data.dtype) else _adam_arrays
    update(*flat, vmax, maximize, decay, *scalars)
    for x in (exp_avg, exp_avg_sq, p) + (() if max_sq is None else (max_sq,)):
        x._vc[0] += 1


def sgd(p, grad, buf, *, maximize, wd, momentum, damp, nesterov, first, lr) -> None:
    """One SGD update of ``p`` (and its momentum buffer) in place; see SGD._update."""
    t = p._data.dtype.type
    flat = buf._data.reshape(-1) if buf is not None else np.empty(0, p._data.dtype)
    args = (wd != 0, t(wd), t(momentum), t(damp), nesterov, first, t(lr))
    update = _sgd_loop if ready(_sgd_loop, p._data.dtype) else _sgd_arrays
    update(p._data.reshape(-1), _flat(grad), flat, maximize, *args)
    p._vc[0] += 1
    if buf is not None and not first:
        buf._vc[0] += 1


def compile_all() -> None:
    """Compile (or load from Numba's cache) the loops for float32 and float64 parameters."""
    for dtype in (np.float32, np.float64):
        _warm_adam(np.dtype(dtype))
        _warm_sgd(np.dtype(dtype))
