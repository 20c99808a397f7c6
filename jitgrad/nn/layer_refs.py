"""NumPy references of the layer ops' test specs, by the definitions (loops over kernel taps and
output positions; never jitgrad), for 1-, 2- and 3-D inputs alike."""

from __future__ import annotations

import itertools
import math

import numpy as np


def _tup(v, n: int) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def conv_ref(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """Cross-correlation of (N, C, *L) with (OC, C/groups, *K): zero padding, stride, dilation."""
    nd = x.ndim - 2
    k = w.shape[2:]
    s, d = _tup(stride, nd), _tup(dilation, nd)
    if padding == "valid":
        pads = [(0, 0)] * nd
    elif padding == "same":
        pads = [(dd * (kk - 1) // 2, dd * (kk - 1) - dd * (kk - 1) // 2) for dd, kk in zip(d, k)]
    else:
        pads = [(p, p) for p in _tup(padding, nd)]
    xp = np.pad(x, [(0, 0), (0, 0)] + pads)
    out_sp = [(xp.shape[2 + i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(nd)]
    n, oc, cg = x.shape[0], w.shape[0], w.shape[1]
    out = np.zeros((n, oc, *out_sp))
    per = oc // groups
    for tap in itertools.product(*(range(kk) for kk in k)):
        sl = tuple(
            slice(t * dd, t * dd + (o - 1) * ss + 1, ss) for t, dd, o, ss in zip(tap, d, out_sp, s)
        )
        patch = xp[(slice(None), slice(None)) + sl]
        for g in range(groups):
            wg = w[(slice(g * per, (g + 1) * per), slice(None)) + tap]  # (per, cg)
            pg = patch[:, g * cg : (g + 1) * cg]
            out[:, g * per : (g + 1) * per] += np.einsum("nc...,oc->no...", pg, wg)
    if b is not None:
        out += b.reshape((1, oc) + (1,) * nd)
    return out


def conv_transpose_ref(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Each input element scattered through the (C, OC/groups, *K) kernel, by the definition."""
    nd = x.ndim - 2
    k = w.shape[2:]
    s, p, op, d = (_tup(v, nd) for v in (stride, padding, output_padding, dilation))
    n, c = x.shape[:2]
    per_in, per_out = c // groups, w.shape[1]
    full = [(x.shape[2 + i] - 1) * s[i] + d[i] * (k[i] - 1) + 1 + op[i] for i in range(nd)]
    out = np.zeros((n, per_out * groups, *full))
    for tap in itertools.product(*(range(kk) for kk in k)):
        sl = tuple(
            slice(t * dd, t * dd + (L - 1) * ss + 1, ss)
            for t, dd, L, ss in zip(tap, d, x.shape[2:], s)
        )
        for g in range(groups):
            xg = x[:, g * per_in : (g + 1) * per_in]
            wg = w[(slice(g * per_in, (g + 1) * per_in), slice(None)) + tap]  # (per_in, per_out)
            out[(slice(None), slice(g * per_out, (g + 1) * per_out)) + sl] += np.einsum(
                "nc...,co->no...", xg, wg
            )
    crop = tuple(slice(pp, f - pp) for pp, f in zip(p, full))
    out = out[(slice(None), slice(None)) + crop]
    if b is not None:
        out = out + b.reshape((1, -1) + (1,) * nd)
    return out


def _pool_out(size, k, s, p, d, ceil_mode):
    o = (size + 2 * p - d * (k - 1) - 1 + ((s - 1) if ceil_mode else 0)) // s + 1
    if ceil_mode and (o - 1) * s >= size + p:
        o -= 1
    return o


def max_pool_ref(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, nd=None):
    """Max over each window of the last ``nd`` dims; padding never wins."""
    k = _tup(kernel_size, nd)
    s = _tup(stride if stride is not None else kernel_size, nd)
    p, d = _tup(padding, nd), _tup(dilation, nd)
    lead = x.shape[: x.ndim - nd]
    sizes = x.shape[x.ndim - nd :]
    outs = [_pool_out(*a, ceil_mode) for a in zip(sizes, k, s, p, d)]
    out = np.full(lead + tuple(outs), -np.inf)
    for pos in itertools.product(*(range(o) for o in outs)):
        for tap in itertools.product(*(range(kk) for kk in k)):
            at = [q * ss - pp + t * dd for q, ss, pp, t, dd in zip(pos, s, p, tap, d)]
            if all(0 <= a < n for a, n in zip(at, sizes)):
                idx = (Ellipsis, *pos)
                out[idx] = np.maximum(out[idx], x[(Ellipsis, *at)])
    return out


def avg_pool_ref(
    x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
    divisor_override=None, nd=None,
):  # fmt: skip
    """Mean over each window (PyTorch's divisor: the window clipped to the padded input, or to
    the input without count_include_pad)."""
    k = _tup(kernel_size, nd)
    s = _tup(stride if stride is not None else kernel_size, nd)
    p = _tup(padding, nd)
    lead = x.shape[: x.ndim - nd]
    sizes = x.shape[x.ndim - nd :]
    outs = [_pool_out(n, kk, ss, pp, 1, ceil_mode) for n, kk, ss, pp in zip(sizes, k, s, p)]
    out = np.zeros(lead + tuple(outs))
    for pos in itertools.product(*(range(o) for o in outs)):
        total, count_pad, count = 0.0, 1, 1
        for tap in itertools.product(*(range(kk) for kk in k)):
            at = [q * ss - pp + t for q, ss, pp, t in zip(pos, s, p, tap)]
            if all(0 <= a < n for a, n in zip(at, sizes)):
                total = total + x[(Ellipsis, *at)]
        for q, ss, pp, kk, n in zip(pos, s, p, k, sizes):
            start = q * ss - pp
            end = min(start + kk, n + pp)
            count_pad *= end - start
            count *= min(end, n) - max(start, 0)
        div = divisor_override or (count_pad if count_include_pad else count)
        out[(Ellipsis, *pos)] = total / div
    return out


def adaptive_windows(n: int, o: int):
    return [(math.floor(i * n / o), math.ceil((i + 1) * n / o)) for i in range(o)]


def adaptive_pool_ref(x, output_size, nd, fn):
    outs = _tup(output_size, nd)
    sizes = x.shape[x.ndim - nd :]
    outs = tuple(n if o is None else o for o, n in zip(outs, sizes))
    wins = [adaptive_windows(n, o) for n, o in zip(sizes, outs)]
    out = np.zeros(x.shape[: x.ndim - nd] + outs)
    for pos in itertools.product(*(range(o) for o in outs)):
        sl = tuple(slice(*wins[i][q]) for i, q in enumerate(pos))
        block = x[(Ellipsis, *sl)]
        out[(Ellipsis, *pos)] = fn(block.reshape(block.shape[: x.ndim - nd] + (-1,)), axis=-1)
    return out
