"""Loop-level lowering choices of the Numba backend, each against NumPy: scatters with a constant
index summed per target, reductions over merged axes, uniform constants read as scalars."""

from __future__ import annotations

import numpy as np
import pytest
from test_compile import _compiled_call
from test_tape import trace

import jitgrad as jg
from jitgrad.backends.interpreter import evaluate
from jitgrad.ir import passes
from jitgrad.ops import functions as F

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("JITGRAD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "jg-cache"))


def _compiled(f, *arrays):
    return _compiled_call(f, *[jg.from_numpy(a) for a in arrays])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scatter_with_a_constant_index_adds_like_numpy(dtype):
    # duplicates, a negative index, a target nothing adds to, axis in the middle
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 6, 4)).astype(dtype)
    src = rng.standard_normal((3, 2, 6, 4)).astype(dtype)
    t = rng.standard_normal((3, 2, 6, 4)).astype(dtype)
    idx = np.array([[0, 4, 4, -1, 2, 0], [1, 1, 3, 3, 3, 0]])

    @jg.compile(backend="numba")
    def f(a, s, u):
        index = jg.tensor(idx)
        # a stored source, and an elementwise one read at flat positions
        return F.scatter_add_axis(a, index, s, 1), F.scatter_add_axis(a, index, s * u + 1, 1)

    got = _compiled(f, x, src, t)
    for g, s in zip(got, (src, src * t + 1)):
        want = x.copy()
        np.add.at(want, (slice(None), idx % 6), s)
        tol = 1e-6 if dtype == np.float32 else 1e-14
        np.testing.assert_allclose(g.numpy(), want, rtol=tol, atol=tol)


def test_scatter_of_a_transposed_source_with_a_constant_index():
    rng = np.random.default_rng(1)
    s = rng.standard_normal((5, 4)).astype(np.float32)
    idx = np.array([2, 0, 2, 1, 2])

    @jg.compile(backend="numba")
    def f(a):
        return F.scatter_add_axis(jg.zeros(3, 4), jg.tensor(idx), a.T.contiguous().T, 0)

    want = np.zeros((3, 4), np.float32)
    np.add.at(want, idx, s)
    np.testing.assert_allclose(_compiled(f, s).numpy(), want, rtol=1e-6)


def test_reductions_over_merged_axes_match_numpy():
    # runs of reduced (or kept) axes are looped over as one axis; keepdim and size-1 axes too
    rng = np.random.default_rng(2)
    a = rng.standard_normal((6, 5, 1, 4, 3)).astype(np.float32)
    cases = [((0, 3, 4), False), ((0, 2, 3, 4), True), ((1, 2), False), ((0, 1), True),
             ((4,), False), ((0,), False), ((3, 4), False), ((0, 1, 2, 3, 4), False),
             ((0, 4), True)]  # fmt: skip

    @jg.compile(backend="numba")
    def f(x):
        out = []
        for axes, keep in cases:
            out.append((x * 2).sum(axes, keepdim=keep))
            out.append(x.amax(axes, keepdim=keep))
            out.append(x.logsumexp(axes, keepdim=keep))
        return out

    got = iter(_compiled(f, a))
    for axes, keep in cases:
        wants = [
            (a * 2).sum(axes, keepdims=keep),
            a.max(axes, keepdims=keep),
            np.log(np.exp(a.astype(np.float64)).sum(axes, keepdims=keep)),
        ]
        for want in wants:
            np.testing.assert_allclose(next(got).numpy(), want, rtol=1e-5, atol=1e-5)


def test_uniform_constants_become_expanded_scalars():
    def f(x):
        return F.scatter_add_axis(jg.zeros(4, 3), jg.tensor([0, 2, 2]), x, 0) * jg.full((4, 3), 2.0)

    x = np.arange(9, dtype=np.float32).reshape(3, 3)
    tape = trace(f, jg.from_numpy(x))
    out = passes.broadcast_uniform_constants(tape)
    assert all(a.size == 1 or not (a == a.flat[0]).all() for a in out.consts.values())
    assert sum(e.prim.name == "expand" for e in out.eqns) == 2  # the zeros and the twos
    got = evaluate(out, [x])[out.outputs[0]]
    want = np.zeros((4, 3), np.float32)
    np.add.at(want, [0, 2, 2], x)
    np.testing.assert_array_equal(got, want * 2)

    @jg.compile(backend="numba")
    def g(x):
        return f(x)

    np.testing.assert_array_equal(_compiled(g, x).numpy(), want * 2)


def test_argmax_max_and_sign_keep_their_rules_for_ties_nan_and_infinities():
    a = np.array(
        [[1.0, 3.0, 3.0, 2.0], [np.nan, 1.0, np.nan, 5.0], [-np.inf, -np.inf, -np.inf, -np.inf],
         [0.0, -1.0, np.inf, np.inf], [2.0, 5.0, np.nan, 7.0]],
        dtype=np.float32,
    )  # fmt: skip
    ints = np.array([[3, 9, 9, 1], [-5, -7, -5, -9]], dtype=np.int64)

    @jg.compile(backend="numba")
    def f(x, i):
        return x.argmax(1), x.amax(1), x.argmax(0), i.argmax(1), (i > 0).argmax(1), x.sign()

    got = [t.numpy() for t in _compiled(f, a, ints)]
    want = [a.argmax(1), a.max(1), a.argmax(0), ints.argmax(1), (ints > 0).argmax(1)]
    want.append(np.where(np.isnan(a), 0, np.sign(a)))  # sign(NaN) = 0, as PyTorch's
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_maps_over_views_with_merged_loops_match_numpy():
    # elementwise maps reading stored buffers through permutes, expands, reshapes and strided
    # slices: dims whose strides line up in every buffer are looped over as one
    rng = np.random.default_rng(3)
    y = rng.standard_normal((5, 3, 4, 6)).astype(np.float32)  # (C, N, H, W), as a matmul leaves
    b = rng.standard_normal(5).astype(np.float32)
    z = rng.standard_normal((3, 5, 4, 12)).astype(np.float32)
    w = rng.standard_normal((3, 5, 24)).astype(np.float32)

    @jg.compile(backend="numba")
    def f(y, b, z, w):
        nchw = y.permute(1, 0, 2, 3)
        out1 = F.relu(nchw + b.reshape(1, 5, 1, 1))  # (N, C, H*W) runs merge
        out2 = nchw * z[:, :, :, ::2] - w.reshape(3, 5, 4, 6)  # a strided slice: W stays apart
        out3 = nchw.transpose(2, 3) * 2.0  # H and W swapped: nothing merges
        out4 = (y + 1.0)[:, 1:, :, :] * b.reshape(5, 1, 1, 1)  # a sliced view, merged
        return out1, out2, out3, out4

    got = _compiled(f, y, b, z, w)
    nchw = y.transpose(1, 0, 2, 3)
    want = (
        np.maximum(nchw + b.reshape(1, 5, 1, 1), 0),
        nchw * z[:, :, :, ::2] - w.reshape(3, 5, 4, 6),
        nchw.transpose(0, 1, 3, 2) * 2,
        (y + 1)[:, 1:] * b.reshape(5, 1, 1, 1),
    )
    for g, w_ in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w_, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("parts", [1, 2, 3])
def test_products_whole_and_in_parts_match_numpy(parts):
    # gemm and gemm_swapped (whichever form the sizes pick), and their parts: each part
    # computes its share (of the batch, else of the rows or the columns, whichever are more)
    # with argument words and tmp of its own, in two calls on halves when it is small. (The
    # runtime helpers have no CPython wrapper: they are called from jitted code, as generated
    # code calls them.)
    from numba import njit

    from jitgrad.backends.numba_cpu import runtime

    @njit
    def run(a, b, out, args, batch, m, n, k, ta, tb, tmp, parts):
        if parts == 1 and tmp.size:
            runtime.gemm_swapped(a, b, out, args, batch, m, n, k, ta, tb, tmp)
        elif parts == 1:
            runtime.gemm(a, b, out, args, batch, m, n, k, ta, tb)
        for p in range(parts if parts > 1 else 0):
            if tmp.size:
                runtime.gemm_swapped_part(a, b, out, args, batch, m, n, k, ta, tb, tmp, p, parts)
            else:
                runtime.gemm_part(a, b, out, args, batch, m, n, k, ta, tb, p, parts)

    rng = np.random.default_rng(2)
    cases = [
        (1, 8, 40, 300, False, True),  # columns split, each part's rows < columns: swapped
        (1, 8, 40, 10, False, True),  # a short inner dimension: direct
        (1, 40, 8, 300, False, True),  # rows split, direct
        (1, 9, 7, 5, True, False),  # rows split with A stored transposed
        (1, 7, 9, 5, True, True),  # columns split with B stored transposed
        (4, 6, 5, 3, False, False),  # the batch split
        (1, 1, 2, 4, False, False),  # fewer rows than parts: a part may get nothing
        (1, 130, 128, 300, True, False),  # in two parts, each over SMALL_PART_MACS: one call
    ]
    for batch, m, n, k, ta, tb in cases:
        a = rng.standard_normal((batch, k, m) if ta else (batch, m, k))
        b = rng.standard_normal((batch, n, k) if tb else (batch, k, n))
        want = (a.swapaxes(1, 2) if ta else a) @ (b.swapaxes(1, 2) if tb else b)
        for swapped in (False, True):
            out = np.full(batch * m * n, np.nan)
            tmp = np.full(batch * m * n if swapped else 0, np.nan)
            args = np.zeros(12 * parts, np.int32)
            flags = np.bool_(ta), np.bool_(tb)
            run(a.ravel(), b.ravel(), out, args, batch, m, n, k, *flags, tmp, parts)
            np.testing.assert_allclose(out.reshape(want.shape), want, rtol=1e-12, atol=1e-12)
            if swapped and (m, n, k) == (8, 40, 300) and parts < 3:
                # every block swapped (8x40 whole, 8x10 halves of 8x20 parts): regions tile
                # tmp (in three parts the halves have fewer columns than rows: direct)
                assert not np.isnan(tmp).any()
