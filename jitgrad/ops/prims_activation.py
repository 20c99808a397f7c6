"""Elementwise primitives for activations and their gradients, as PyTorch has them
(``sigmoid``, ``tanh_backward``, ``sigmoid_backward``).

Written as compositions, sigmoid is four passes over memory eagerly and the gradients of tanh
and sigmoid three to six more; on large tensors eager code is bound by those passes. Each of
these is one primitive instead: its NumPy definition does the composition's operations in the
same order (so its bits are the composition's), in place in one output, cache-sized piece by
piece; compiled backends paste its scalar template into their fused loops.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..tensor import apply
from . import functions as F
from .prims import _same
from .registry import register
from .spec import Spec, arg

_PIECE = 1 << 16  # elements per cache-sized piece of a large array


def _in_pieces(steps):
    """An impl ``(*arrays, out=None) -> out`` running ``steps(out, *arrays)`` (operations in
    place on ``out``) over pieces of ``_PIECE`` elements, so each piece stays in cache across
    the steps; the pieces' bits are the whole arrays'. ``writes_out`` tells ``ops.parallel``
    that it may hand each thread a piece of one output."""

    def impl(*arrays, out=None):
        first = arrays[0].shape
        if all(a.shape == first for a in arrays[1:]):  # (broadcast_shapes costs 2 us a call)
            shape = first
        else:
            shape = np.broadcast_shapes(*[a.shape for a in arrays])
        dtype = next(a.dtype for a in arrays if a.ndim) if shape else arrays[0].dtype
        if dtype.itemsize == 2 and dtypes.is_half_np(dtype):  # float32 steps, rounded once
            wide = impl(*[a.astype(np.float32) if a.dtype == dtype else a for a in arrays])
            if out is None:
                return wide.astype(dtype)
            np.copyto(out, wide, casting="unsafe")
            return out
        if out is None:
            out = np.empty(shape, dtype)
        n = out.size
        if n <= _PIECE or not all(a.ndim == 0 or a.flags.c_contiguous for a in arrays):
            steps(
                out,
                *[np.broadcast_to(a, shape) if a.ndim and a.shape != shape else a for a in arrays],
            )
            return out
        flat_out = out.reshape(-1)
        flat = [a.reshape(-1) if a.ndim else a for a in arrays]
        for lo in range(0, n, _PIECE):
            hi = min(lo + _PIECE, n)
            steps(flat_out[lo:hi], *[a[lo:hi] if a.ndim else a for a in flat])
        return out

    impl.writes_out = True
    return impl


def _sigmoid_steps(out, x):
    # (1 + tanh(x / 2)) / 2 as the composite computed it: x * 0.5, tanh, * 0.5, + 0.5
    h = out.dtype.type(0.5)
    np.multiply(x, h, out=out)
    np.tanh(out, out=out)
    np.multiply(out, h, out=out)
    np.add(out, h, out=out)


def _tanh_backward_steps(out, g, y):
    # g * (1 - y * y)
    np.multiply(y, y, out=out)
    np.subtract(out.dtype.type(1), out, out=out)
    np.multiply(g, out, out=out)


def _sigmoid_backward_steps(out, g, y):
    # g * (1 - y) * y, PyTorch's order
    np.subtract(out.dtype.type(1), y, out=out)
    np.multiply(g, out, out=out)
    np.multiply(out, y, out=out)


def _from_output(name: str, steps, scalar: str, ref, dy, y_range: tuple):
    """The gradient of an activation from its output ``y``, ``g * f'(y)``, as one primitive
    (``steps``: its in-place NumPy operations; ``scalar``: its template; ``ref``: its
    reference). Its own gradient: the same primitive for ``g``, ``gg * g * dy(y)`` for ``y``
    (``dy``: the derivative of f'(y), in jitgrad ops)."""

    def vjp(n, gg):
        g, y = n.inputs
        return (
            apply(prim, (gg, y)) if n.needs[0] else None,
            F.mul(F.mul(gg, g), dy(y)) if n.needs[1] else None,
        )

    lo, hi = y_range
    prim = register(
        name,
        impl=_in_pieces(steps),
        vjp=vjp,
        shape=_same,
        kind="elementwise",
        scalar=scalar,
        spec=Spec([arg(*S34), arg(*S34, lo=lo, hi=hi)], ref, differentiable=(0, 1)),
    )
    return prim


S34 = (3, 4)

# sigmoid(x) = (1 + tanh(x / 2)) / 2: no overflow for any x, a finite gradient everywhere
sigmoid_p = register(
    "sigmoid",
    impl=_in_pieces(_sigmoid_steps),
    vjp=lambda n, g: (apply(sigmoid_backward_p, (g, n.out)),),
    shape=_same,
    kind="elementwise",
    scalar="((math.tanh({0} * {half}) * {half}) + {half})",
    save_out=True,
    saves=False,
    spec=Spec(
        [arg(*S34, lo=-4.0, hi=4.0)], lambda x: 1.0 / (1.0 + np.exp(-x)), differentiable=(0,)
    ),
)
# the gradient of tanh from its output y: g * (1 - y^2)
tanh_backward_p = _from_output(
    "tanh_backward",
    _tanh_backward_steps,
    "({0} * (1.0 - {1} * {1}))",
    lambda g, y: g * (1.0 - y * y),
    lambda y: F.mul(y, -2.0),
    (-0.95, 0.95),
)
# the gradient of sigmoid from its output y: g * (1 - y) * y
sigmoid_backward_p = _from_output(
    "sigmoid_backward",
    _sigmoid_backward_steps,
    "(({0} * (1.0 - {1})) * {1})",
    lambda g, y: g * (1.0 - y) * y,
    lambda y: F.rsub(F.mul(y, 2.0), 1.0),
    (0.05, 0.95),
)
