"""Test specs for every primitive: inputs in a safe range, a NumPy reference, smoothness.

A primitive registered without a spec here fails ``test_every_primitive_has_a_spec``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

import jitgrad as jg


@dataclass
class Arg:
    """How to draw one input: a float array in [lo, hi], or ints/bools."""

    shape: tuple
    lo: float = -2.0
    hi: float = 2.0
    kind: str = "float"  # float | int | bool
    away_from: tuple = ()  # values (kinks, poles) to keep at least `margin` away from
    margin: float = 0.2

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        if self.kind == "bool":
            return rng.random(self.shape) < 0.5
        if self.kind == "int":
            return rng.integers(int(self.lo), int(self.hi), self.shape).astype(np.int64)
        x = rng.uniform(self.lo, self.hi, self.shape)
        for v in self.away_from:
            close = np.abs(x - v) < self.margin
            x = np.where(close, v + np.sign(x - v + 1e-300) * self.margin * 1.5, x)
        return x


@dataclass
class Spec:
    args: list
    ref: Callable  # NumPy reference of the forward: ref(*arrays, **params)
    params: dict = field(default_factory=dict)
    differentiable: tuple = ()  # indices of inputs to check gradients for
    smooth: bool = True  # check second order too
    tol: float = 1e-6


def F(*shape, **kw) -> Arg:
    return Arg(shape, **kw)


S34 = (3, 4)
_reduce = {"axes": (0, 2), "keepdim": False}
_pad = {"widths": ((1, 2, 0), (0, 1, 2))}


def _pad_ref(x, widths):
    out = np.zeros((1 + 2 + 3, 1 + 3 + 2 * 2), x.dtype)
    out[1:4, 0:7:3] = x
    return out


def _scatter_ref(x, idx, src, axis):
    out = x.copy()
    for i, j in enumerate(idx):
        out[j] += src[i]
    return out


def _conv_ref(x, w, b=None, *, geometry, groups):
    """Cross-correlation by the definition: zero padding, stride, dilation, groups."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow), ((top, _), (left, _)) = geometry
    n, c, h, wd = x.shape
    oc, cg = w.shape[:2]
    xp = np.zeros((n, c, h + 2 * kh * dh, wd + 2 * kw * dw), x.dtype)
    xp[:, :, top : top + h, left : left + wd] = x
    out = np.zeros((n, oc, oh, ow), np.float64)
    for o in range(oc):
        g = o // (oc // groups)
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * cg : (g + 1) * cg, i * dh : i * dh + sh * oh : sh][
                    :, :, :oh, j * dw : j * dw + sw * ow : sw
                ][:, :, :, :ow]
                out[:, o] += np.einsum("nchw,c->nhw", patch, w[o, :, i, j])
        if b is not None:
            out[:, o] += b[o]
    return out


def _pool_ref(x, geometry):
    """Max over each window by the definition; padding never wins."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow), ((top, _), (left, _)) = geometry
    n, c, h, w = x.shape
    out = np.full((n, c, oh, ow), -np.inf)
    for i in range(kh):
        for j in range(kw):
            for y in range(oh):
                for z in range(ow):
                    r, q = y * sh - top + i * dh, z * sw - left + j * dw
                    if 0 <= r < h and 0 <= q < w:
                        out[:, :, y, z] = np.maximum(out[:, :, y, z], x[:, :, r, q])
    return out


def _geometry(kind, x_shape, *args):
    from jitgrad.nn import conv, pooling

    x = jg.zeros(x_shape)
    if kind == "pool":
        return pooling._pool_geometry(x, "max_pool2d", *args)
    (kh, kw), stride, dilation, padding = args
    pads = conv._conv_padding(padding, (kh, kw), stride, dilation)
    eff = [d * (k - 1) + 1 for d, k in zip(dilation, (kh, kw))]
    out = [
        conv._out_size(n, p[0], p[1], e, s) for n, p, e, s in zip(x_shape[2:], pads, eff, stride)
    ]
    return ((kh, kw), stride, dilation, tuple(out), pads)


CONV = {"geometry": _geometry("conv", (2, 3, 5, 5), (3, 3), (1, 1), (1, 1), 1), "groups": 1}
POOL = {"geometry": _geometry("pool", (2, 3, 6, 6), 2, None, 0, 1, False)}
# the fused primitives' bit-for-bit cases (see test_prims): (inputs, params) each
FUSED_CASES = {
    "conv2d": [
        ([F(2, 3, 5, 5), F(4, 3, 3, 3), F(4)], CONV),
        ([F(2, 3, 5, 5), F(4, 3, 3, 3)], CONV),  # no bias
        (
            [F(2, 4, 7, 6), F(6, 2, 2, 3), F(6)],
            {"geometry": _geometry("conv", (2, 4, 7, 6), (2, 3), (2, 1), (1, 2), 0), "groups": 2},
        ),
        (
            [F(2, 3, 4, 4), F(5, 3, 1, 1), F(5)],  # 1x1: the plane is the columns
            {"geometry": _geometry("conv", (2, 3, 4, 4), (1, 1), (1, 1), (1, 1), 0), "groups": 1},
        ),
    ],  # fmt: skip
    "max_pool2d": [
        ([F(2, 3, 6, 6)], POOL),
        ([F(2, 3, 7, 6)], {"geometry": _geometry("pool", (2, 3, 7, 6), 3, 2, 1, 1, True)}),
        (
            [F(2, 2, 6, 7)],
            {"geometry": _geometry("pool", (2, 2, 6, 7), (2, 3), 1, 0, (2, 1), False)},
        ),
    ],
}


def _cast_ref(x, dtype):
    return x.astype(dtype.np)


def _softmax_ref(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _ce_ref(x, t, ignore_index, reduction):
    keep = t != ignore_index
    logp = np.log(_softmax_ref(x))
    loss = np.where(keep, -logp[np.arange(len(t)), np.where(keep, t, 0)], 0.0)
    return loss.sum() / keep.sum() if reduction == "mean" else loss


def _ce_backward_ref(x, t, g, ignore_index, reduction):
    keep = t != ignore_index
    onehot = np.eye(x.shape[1])[np.where(keep, t, 0)]
    return (_softmax_ref(x) - onehot) * np.where(keep, g, 0.0)[:, None]


SPECS: dict[str, Spec] = {
    "neg": Spec([F(*S34)], np.negative, differentiable=(0,)),
    "exp": Spec([F(*S34)], np.exp, differentiable=(0,)),
    "log": Spec([F(*S34, lo=0.3, hi=3.0)], np.log, differentiable=(0,)),
    "log1p": Spec([F(*S34, lo=-0.6, hi=3.0)], np.log1p, differentiable=(0,)),
    "sin": Spec([F(*S34)], np.sin, differentiable=(0,)),
    "cos": Spec([F(*S34)], np.cos, differentiable=(0,)),
    "tanh": Spec([F(*S34)], np.tanh, differentiable=(0,)),
    "sqrt": Spec([F(*S34, lo=0.3, hi=3.0)], np.sqrt, differentiable=(0,)),
    "abs": Spec([F(*S34, away_from=(0.0,))], np.abs, differentiable=(0,), smooth=False),
    "sign": Spec([F(*S34, away_from=(0.0,))], np.sign, differentiable=(0,), smooth=False),
    "floor": Spec(
        [F(*S34, away_from=(-2.0, -1.0, 0.0, 1.0, 2.0), margin=0.05)],
        np.floor,
        differentiable=(0,),
        smooth=False,
    ),
    "copy": Spec([F(*S34)], lambda x: x.copy(), differentiable=(0,)),
    # float64 -> float64 keeps finite differences exact; dtype changes are tested elsewhere
    "cast": Spec([F(*S34)], _cast_ref, params={"dtype": jg.float64}, differentiable=(0,)),
    "add": Spec([F(*S34), F(*S34)], np.add, differentiable=(0, 1)),
    "sub": Spec([F(*S34), F(*S34)], np.subtract, differentiable=(0, 1)),
    "mul": Spec([F(*S34), F(*S34)], np.multiply, differentiable=(0, 1)),
    "div": Spec([F(*S34), F(*S34, lo=0.5, hi=2.0)], np.true_divide, differentiable=(0, 1)),
    "pow": Spec(
        [F(*S34, lo=0.5, hi=2.0), F(*S34, lo=-1.5, hi=2.5)], np.power, differentiable=(0, 1)
    ),
    "maximum": Spec([F(*S34), F(*S34)], np.maximum, differentiable=(0, 1), smooth=False),
    "minimum": Spec([F(*S34), F(*S34)], np.minimum, differentiable=(0, 1), smooth=False),
    "lt": Spec([F(*S34), F(*S34)], np.less),
    "le": Spec([F(*S34), F(*S34)], np.less_equal),
    "eq": Spec([F(*S34, kind="int", lo=0, hi=3), F(*S34, kind="int", lo=0, hi=3)], np.equal),
    "ne": Spec([F(*S34, kind="int", lo=0, hi=3), F(*S34, kind="int", lo=0, hi=3)], np.not_equal),
    "where": Spec([F(*S34, kind="bool"), F(*S34), F(*S34)], np.where, differentiable=(1, 2)),
    "sum": Spec(
        [F(3, 4, 5)],
        lambda x, axes, keepdim: x.sum(axis=axes, keepdims=keepdim),
        params=_reduce,
        differentiable=(0,),
    ),
    "max": Spec(
        [F(3, 4, 5)],
        lambda x, axes, keepdim: x.max(axis=axes, keepdims=keepdim),
        params=_reduce,
        differentiable=(0,),
        smooth=False,
    ),
    "argmax": Spec(
        [F(3, 4, 5)],
        lambda x, axis, keepdim: np.argmax(x, axis=axis, keepdims=keepdim),
        params={"axis": 1, "keepdim": True},
    ),
    "reshape": Spec(
        [F(3, 4)], lambda x, shape: x.reshape(shape), params={"shape": (2, 6)}, differentiable=(0,)
    ),
    "permute": Spec(
        [F(2, 3, 4)],
        lambda x, perm: x.transpose(perm),
        params={"perm": (2, 0, 1)},
        differentiable=(0,),
    ),
    "expand": Spec(
        [F(3, 1, 4)],
        lambda x, shape: np.broadcast_to(x, shape),
        params={"shape": (2, 3, 5, 4)},  # a new leading dim and a stretched one
        differentiable=(0,),
    ),
    "logsumexp": Spec(
        [F(3, 4, 5, lo=-30.0, hi=30.0)],
        lambda x, axes, keepdim: np.log(np.sum(np.exp(x), axis=axes, keepdims=keepdim)),
        params=_reduce,
        differentiable=(0,),
    ),
    "slice": Spec(
        [F(5, 7)],
        lambda x, starts, stops, steps: x[1:4, 0:7:3],
        params={"starts": (1, 0), "stops": (4, 7), "steps": (1, 3)},
        differentiable=(0,),
    ),
    "pad": Spec([F(3, 3)], _pad_ref, params=_pad, differentiable=(0,)),
    "cat": Spec(
        [F(2, 3), F(4, 3)],
        lambda a, b, axis: np.concatenate([a, b], axis),
        params={"axis": 0},
        differentiable=(0, 1),
    ),
    "matmul": Spec(
        [F(2, 3, 4), F(2, 4, 5)],
        lambda a, b: np.einsum("bij,bjk->bik", a, b),
        differentiable=(0, 1),
    ),
    "take": Spec(
        [F(5, 3), F(2, 2, kind="int", lo=0, hi=5)],
        lambda x, idx, axis: x[idx],
        params={"axis": 0},
        differentiable=(0,),
    ),
    "scatter_add": Spec(
        [F(5, 3), Arg((4,), kind="int", lo=0, hi=5), F(4, 3)],
        _scatter_ref,
        params={"axis": 0},
        differentiable=(0, 2),
    ),
    # fused primitives (composites run as one eager step); class 2 plays ignore_index
    "linear": Spec([F(4, 3), F(5, 3), F(5)], lambda x, w, b: x @ w.T + b, differentiable=(0, 1, 2)),
    "cross_entropy": Spec(
        [F(6, 5), Arg((6,), kind="int", lo=0, hi=5)],
        _ce_ref,
        params={"ignore_index": 2, "reduction": "mean"},
        differentiable=(0,),
    ),
    "cross_entropy_backward": Spec(
        [F(6, 5), Arg((6,), kind="int", lo=0, hi=5), F(6)],
        _ce_backward_ref,
        params={"ignore_index": 2, "reduction": "none"},
        differentiable=(0, 2),
    ),
    "conv2d": Spec(
        [F(2, 3, 5, 5), F(4, 3, 3, 3), F(4)], _conv_ref, params=CONV, differentiable=(0, 1, 2)
    ),
    "max_pool2d": Spec([F(2, 3, 6, 6)], _pool_ref, params=POOL, differentiable=(0,), smooth=False),
    # rand is checked for determinism and distribution in test_prims.py
    "rand": Spec([], None),
}
