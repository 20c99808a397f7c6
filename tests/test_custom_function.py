"""Custom autograd.Function: PyTorch's ctx API, multiple outputs, double backward, errors."""

from __future__ import annotations

import numpy as np
import pytest

import jitgrad as jg
from jitgrad.autograd import Function, once_differentiable


def t64(values, requires_grad: bool = False) -> jg.Tensor:
    return jg.tensor(values, dtype=jg.float64, requires_grad=requires_grad)


def np_of(t: jg.Tensor) -> np.ndarray:
    return t.detach().numpy()


class Cube(Function):
    """x^3 with a backward written in jitgrad ops, so it is differentiable again."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 3 * x * x


def test_forward_backward_apply():
    x = t64([1.0, -2.0, 3.0], True)
    y = Cube.apply(x)
    np.testing.assert_allclose(np_of(y), [1.0, -8.0, 27.0])
    assert y.requires_grad and y.grad_fn is not None
    assert y.grad_fn.name() == "CubeBackward"
    y.sum().backward()
    np.testing.assert_allclose(np_of(x.grad), [3.0, 12.0, 27.0])


def test_forward_runs_without_recording():
    seen = []

    class Probe(Function):
        @staticmethod
        def forward(ctx, x):
            y = x * 2
            seen.append((jg.is_grad_enabled(), y.requires_grad))
            return y

        @staticmethod
        def backward(ctx, g):
            return g * 2

    Probe.apply(t64([1.0], True))
    assert seen == [(False, False)]


def test_no_node_when_no_input_requires_grad():
    y = Cube.apply(t64([2.0]))
    assert not y.requires_grad and y.grad_fn is None
    x = t64([2.0], True)
    with jg.no_grad():
        assert not Cube.apply(x).requires_grad


def test_needs_input_grad_and_none_gradients():
    record = []

    class Scale(Function):
        @staticmethod
        def forward(ctx, x, w, factor):
            ctx.save_for_backward(x, w)
            ctx.factor = factor  # non-tensor arguments live on ctx
            return x * w * factor

        @staticmethod
        def backward(ctx, g):
            record.append(ctx.needs_input_grad)
            x, w = ctx.saved_tensors
            gx = g * w * ctx.factor if ctx.needs_input_grad[0] else None
            gw = g * x * ctx.factor if ctx.needs_input_grad[1] else None
            return gx, gw, None

    x, w = t64([1.0, 2.0], True), t64([3.0, 4.0])
    Scale.apply(x, w, 0.5).sum().backward()
    assert record == [(True, False, False)]
    np.testing.assert_allclose(np_of(x.grad), [1.5, 2.0])
    assert w.grad is None


def test_multiple_outputs_and_unused_output_gets_zero_gradient():
    class SinCos(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return jg.sin(x), jg.cos(x)

        @staticmethod
        def backward(ctx, gs, gc):
            (x,) = ctx.saved_tensors
            return gs * jg.cos(x) - gc * jg.sin(x)

    v = np.array([0.3, 1.1])
    x = t64(v, True)
    s, c = SinCos.apply(x)
    assert s.grad_fn is c.grad_fn
    assert (s.output_nr, c.output_nr) == (0, 1)
    (s * 2 + c).sum().backward()
    np.testing.assert_allclose(np_of(x.grad), 2 * np.cos(v) - np.sin(v), rtol=1e-12)
    x.grad = None
    s, c = SinCos.apply(x)
    s.sum().backward()  # c unused: backward receives zeros for it (materialize_grads)
    np.testing.assert_allclose(np_of(x.grad), np.cos(v), rtol=1e-12)


def test_mark_non_differentiable():
    class SortWithIndex(Function):
        @staticmethod
        def forward(ctx, x):
            idx = jg.argmax(x, 0)
            m = jg.amax(x)
            ctx.mark_non_differentiable(idx)
            ctx.save_for_backward(x, idx)
            return m, idx

        @staticmethod
        def backward(ctx, g, g_idx):
            x, idx = ctx.saved_tensors
            out = jg.zeros_like(x)
            out[idx] = g
            return out

    x = t64([1.0, 5.0, 2.0], True)
    m, idx = SortWithIndex.apply(x)
    assert m.requires_grad and not idx.requires_grad
    m.backward()
    np.testing.assert_allclose(np_of(x.grad), [0.0, 1.0, 0.0])


def test_backward_returning_too_many_or_wrong_gradients():
    class Wrong(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1

        @staticmethod
        def backward(ctx, g):
            return g, g

    x = t64([1.0], True)
    with pytest.raises(RuntimeError, match="returned an incorrect number of gradients"):
        Wrong.apply(x).sum().backward()


def test_second_backward_errors_and_retain_graph_allows_it():
    x = t64([2.0], True)
    y = Cube.apply(x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="Trying to backward through the graph a second time"):
        y.backward()
    x.grad = None
    y = Cube.apply(x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(np_of(x.grad), [24.0])


def test_saved_tensor_modified_in_place_is_detected():
    a = t64([1.0, 2.0], True)
    b = a * 1
    y = Cube.apply(b)
    with jg.no_grad():
        b.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_double_backward_through_custom_function():
    x = t64([1.0, -2.0], True)
    (g,) = jg.autograd.grad(Cube.apply(x).sum(), x, create_graph=True)
    np.testing.assert_allclose(np_of(g), [3.0, 12.0])
    assert g.requires_grad
    (gg,) = jg.autograd.grad(g.sum(), x)
    np.testing.assert_allclose(np_of(gg), [6.0, -12.0])  # d/dx 3x^2 = 6x


def test_once_differentiable_first_order_works():
    class Sq(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        @once_differentiable
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * x * g

    x = t64([3.0], True)
    Sq.apply(x).sum().backward()
    np.testing.assert_allclose(np_of(x.grad), [6.0])
    # differentiating its gradient again is refused, as in PyTorch
    y = Sq.apply(x) * x
    (g,) = jg.autograd.grad(y.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="marked with @once_differentiable"):
        g.sum().backward()


def test_detect_anomaly_names_custom_function_returning_nan():
    class Bad(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1

        @staticmethod
        def backward(ctx, g):
            return g * float("nan")

    x = t64([1.0], True)
    with jg.autograd.detect_anomaly():
        y = Bad.apply(x).sum()
        with pytest.raises(RuntimeError) as info:
            y.backward()
    msg = str(info.value)
    assert "Function 'BadBackward' returned nan values in its 0th output." in msg
    assert "test_detect_anomaly_names_custom_function_returning_nan" in msg


def test_input_returned_unchanged_gets_new_identity():
    class Ident(Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, g):
            return g * 2

    x = t64([1.0], True)
    y = Ident.apply(x)
    assert y is not x and x.is_leaf and y.grad_fn is not None
    y.sum().backward()
    np.testing.assert_allclose(np_of(x.grad), [2.0])


def test_setup_context_style():
    class Mul(Function):
        @staticmethod
        def forward(x, y):
            return x * y

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(*inputs)

        @staticmethod
        def backward(ctx, g):
            x, y = ctx.saved_tensors
            return g * y, g * x

    x, y = t64([2.0], True), t64([5.0], True)
    Mul.apply(x, y).sum().backward()
    np.testing.assert_allclose(np_of(x.grad), [5.0])
    np.testing.assert_allclose(np_of(y.grad), [2.0])


def test_save_for_backward_rejects_non_tensors():
    class Bad(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(3.0)
            return x * 1

        @staticmethod
        def backward(ctx, g):
            return g

    with pytest.raises(TypeError, match="save_for_backward can only save"):
        Bad.apply(t64([1.0], True))


def test_custom_function_in_chain_with_builtin_ops():
    x = t64([0.5, 1.5], True)
    y = jg.exp(Cube.apply(x * 2))  # exp((2x)^3)
    y.sum().backward()
    v = np.array([0.5, 1.5])
    np.testing.assert_allclose(
        np_of(x.grad), np.exp((2 * v) ** 3) * 3 * (2 * v) ** 2 * 2, rtol=1e-12
    )
