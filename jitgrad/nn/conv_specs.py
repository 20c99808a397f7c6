"""The test specs of the convolution and max-pooling primitives (``conv.py``, ``pooling.py``):
NumPy references by the definitions, and geometries written out by hand.

A geometry is ``((kh, kw), stride, dilation, (oh, ow), ((top, bottom), (left, right)))``.
"""

from __future__ import annotations

import numpy as np

from ..ops.spec import Spec, arg


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


# 3x3, padding 1: (2, 3, 5, 5) -> (2, 4, 5, 5)
_CONV = {"geometry": ((3, 3), (1, 1), (1, 1), (5, 5), ((1, 1), (1, 1))), "groups": 1}
CONV2D = Spec(
    [arg(2, 3, 5, 5), arg(4, 3, 3, 3), arg(4)],
    _conv_ref,
    params=_CONV,
    differentiable=(0, 1, 2),
    cases=(
        ([arg(2, 3, 5, 5), arg(4, 3, 3, 3), arg(4)], _CONV),
        ([arg(2, 3, 5, 5), arg(4, 3, 3, 3)], _CONV),  # no bias
        (  # 2x3, stride (2, 1), dilation (1, 2), two groups
            [arg(2, 4, 7, 6), arg(6, 2, 2, 3), arg(6)],
            {"geometry": ((2, 3), (2, 1), (1, 2), (3, 2), ((0, 0), (0, 0))), "groups": 2},
        ),
        (  # 1x1: the plane is the columns
            [arg(2, 3, 4, 4), arg(5, 3, 1, 1), arg(5)],
            {"geometry": ((1, 1), (1, 1), (1, 1), (4, 4), ((0, 0), (0, 0))), "groups": 1},
        ),
    ),
)

# 2x2, stride 2: (2, 3, 6, 6) -> (2, 3, 3, 3)
_POOL = {"geometry": ((2, 2), (2, 2), (1, 1), (3, 3), ((0, 0), (0, 0)))}
MAX_POOL2D = Spec(
    [arg(2, 3, 6, 6)],
    _pool_ref,
    params=_POOL,
    differentiable=(0,),
    smooth=False,
    cases=(
        ([arg(2, 3, 6, 6)], _POOL),
        # 3x3, stride 2, padding 1, ceil mode
        ([arg(2, 3, 7, 6)], {"geometry": ((3, 3), (2, 2), (1, 1), (4, 4), ((1, 1), (1, 2)))}),
        # 2x3, stride 1, dilation (2, 1)
        ([arg(2, 2, 6, 7)], {"geometry": ((2, 3), (1, 1), (2, 1), (4, 5), ((0, 0), (0, 0)))}),
    ),
)
