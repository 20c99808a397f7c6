"""Autograd engine semantics, checked against PyTorch's documented behaviour (errors included)."""

from __future__ import annotations

import gc
import time
import warnings
import weakref

import numpy as np
import pytest

import jitgrad as jg
from jitgrad import autograd


def t64(values, requires_grad: bool = False) -> jg.Tensor:
    return jg.tensor(values, dtype=jg.float64, requires_grad=requires_grad)


def np_of(t: jg.Tensor) -> np.ndarray:
    return t.detach().numpy()


# -- backward / autograd.backward / autograd.grad ------------------------------------------------
def test_backward_scalar_default_gradient():
    x = t64([1.0, 2.0, 3.0], True)
    (x * x).sum().backward()
    np.testing.assert_allclose(np_of(x.grad), [2.0, 4.0, 6.0])
    assert x.grad.dtype is jg.float64


def test_backward_with_gradient_argument_is_a_vjp():
    x = t64([1.0, 2.0, 3.0], True)
    y = x * x
    y.backward(gradient=t64([1.0, 10.0, 100.0]))
    np.testing.assert_allclose(np_of(x.grad), [2.0, 40.0, 600.0])


def test_backward_inputs_restricts_accumulation():
    a, b = t64([1.0, 2.0], True), t64([3.0, 4.0], True)
    (a * b).sum().backward(inputs=[a])
    np.testing.assert_allclose(np_of(a.grad), [3.0, 4.0])
    assert b.grad is None
    (a * b).sum().backward(inputs=b)
    np.testing.assert_allclose(np_of(b.grad), [1.0, 2.0])


def test_backward_inputs_empty_is_an_error():
    x = t64([1.0], True)
    with pytest.raises(
        RuntimeError, match="inputs.? argument to .?backward\\(\\).? cannot be empty"
    ):
        (x * 2).sum().backward(inputs=[])


def test_autograd_backward_several_tensors_and_grad_tensors():
    x = t64([1.0, 2.0], True)
    y1, y2 = x * 3, (x * x).sum()
    autograd.backward([y1, y2], grad_tensors=[t64([1.0, 1.0]), None])
    # d/dx [sum(3x) + sum(x^2)] = 3 + 2x
    np.testing.assert_allclose(np_of(x.grad), [5.0, 7.0])


def test_grad_returns_tuple_and_leaves_dot_grad_untouched():
    x, w = t64([1.0, 2.0], True), t64([3.0, 5.0], True)
    out = autograd.grad((x * w).sum(), [x, w])
    assert isinstance(out, tuple) and len(out) == 2
    np.testing.assert_allclose(np_of(out[0]), [3.0, 5.0])
    np.testing.assert_allclose(np_of(out[1]), [1.0, 2.0])
    assert x.grad is None and w.grad is None
    assert not out[0].requires_grad


def test_grad_single_tensor_input_and_grad_outputs():
    x = t64([1.0, 2.0], True)
    (g,) = autograd.grad(x * x, x, grad_outputs=t64([1.0, -1.0]))
    np.testing.assert_allclose(np_of(g), [2.0, -4.0])


def test_grad_allow_unused_gives_none():
    x, unused = t64([1.0], True), t64([1.0], True)
    gx, gu = autograd.grad((x * 2).sum(), [x, unused], allow_unused=True)
    np.testing.assert_allclose(np_of(gx), [2.0])
    assert gu is None


def test_grad_unused_input_error():
    x, unused = t64([1.0], True), t64([1.0], True)
    with pytest.raises(RuntimeError) as info:
        autograd.grad((x * 2).sum(), [x, unused])
    msg = str(info.value)
    assert "appears to not have been used in the graph" in msg
    assert "Set allow_unused=True if this is the desired behavior." in msg


def test_grad_of_input_not_requiring_grad():
    x = t64([1.0], True)
    with pytest.raises(
        RuntimeError, match="One of the differentiated Tensors does not require grad"
    ):
        autograd.grad((x * 2).sum(), [t64([1.0])])


def test_retain_graph_defaults_to_create_graph():
    x = t64([1.0, 2.0], True)
    y = (x * x).sum()
    autograd.grad(y, x, create_graph=True)
    autograd.grad(y, x)  # the graph was retained by create_graph=True
    with pytest.raises(RuntimeError, match="Trying to backward through the graph a second time"):
        autograd.grad(y, x)


def test_retain_graph_allows_second_backward():
    x = t64([1.0, 2.0], True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(np_of(x.grad), [4.0, 8.0])


def test_grad_stops_at_the_requested_tensor():
    # the part of the graph below h was freed by the first backward; PyTorch does not run it
    x = t64([1.0, 2.0], True)
    h = x.exp()
    h.sum().backward()
    (g,) = autograd.grad((h * h).sum(), h)
    np.testing.assert_allclose(np_of(g), 2 * np.exp([1.0, 2.0]), rtol=1e-12)


def test_backward_inputs_non_leaf_fills_its_grad():
    x = t64([1.0, 2.0], True)
    y = x * 3
    (y * y).sum().backward(inputs=[y])
    np.testing.assert_allclose(np_of(y.grad), [6.0, 12.0])
    assert x.grad is None


def test_grad_of_several_outputs_sums_them():
    x = t64([1.0, 2.0], True)
    (g,) = autograd.grad([(x * x).sum(), (x * 3).sum()], x)
    np.testing.assert_allclose(np_of(g), [5.0, 7.0])


# -- accumulation, create_graph, non-leaf .grad ----------------------------------------------------
def test_grad_accumulates_in_place_keeping_identity():
    x = t64([1.0, 2.0], True)
    (x * x).sum().backward()
    g = x.grad
    (x * x).sum().backward()
    assert x.grad is g
    np.testing.assert_allclose(np_of(g), [4.0, 8.0])


def test_grad_is_private_copy_not_alias_of_gradient_argument():
    x = t64([1.0, 2.0], True)
    v = t64([1.0, 1.0])
    (x * 1.0).backward(v)
    (x * 1.0).backward(v)
    np.testing.assert_allclose(np_of(v), [1.0, 1.0])
    np.testing.assert_allclose(np_of(x.grad), [2.0, 2.0])


def test_create_graph_grad_has_grad_fn():
    x = t64([1.0, 2.0], True)
    (x**3).sum().backward(create_graph=True)
    assert x.grad.grad_fn is not None and x.grad.requires_grad
    (gg,) = autograd.grad(x.grad.sum(), x)
    np.testing.assert_allclose(np_of(gg), [6.0, 12.0])  # d/dx 3x^2 = 6x


def test_non_leaf_grad_is_none_with_warning():
    x = t64([1.0, 2.0], True)
    y = x * 2
    (y * y).sum().backward()
    with pytest.warns(UserWarning, match="is not a leaf Tensor is being accessed"):
        assert y.grad is None


def test_retain_grad_on_non_leaf():
    x = t64([1.0, 2.0], True)
    y = x * 2
    assert not y.retains_grad
    y.retain_grad()
    assert y.retains_grad
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (y * y).sum().backward()
        np.testing.assert_allclose(np_of(y.grad), [4.0, 8.0])
    assert not x.retains_grad  # leaves keep their grad without the flag


def test_retain_grad_needs_requires_grad():
    with pytest.raises(
        RuntimeError, match="can't retain_grad on Tensor that has requires_grad=False"
    ):
        t64([1.0]).retain_grad()


# -- hooks -----------------------------------------------------------------------------------------
def test_leaf_hook_modifies_gradient_and_handle_removes_it():
    x = t64([1.0, 2.0], True)
    seen = []
    handle = x.register_hook(lambda g: (seen.append(np_of(g).copy()), g * 10)[1])
    (x * 3).sum().backward()
    np.testing.assert_allclose(np_of(x.grad), [30.0, 30.0])
    np.testing.assert_allclose(seen[0], [3.0, 3.0])
    handle.remove()
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_allclose(np_of(x.grad), [3.0, 3.0])
    assert len(seen) == 1


def test_non_leaf_hook_changes_what_flows_on():
    x = t64([1.0, 2.0], True)
    y = x * 2
    y.register_hook(lambda g: g + 1)
    y.retain_grad()
    (y * y).sum().backward()
    # dL/dy = 2y = [4, 8]; the hook adds 1; retain_grad sees the hooked value (as in PyTorch)
    np.testing.assert_allclose(np_of(y.grad), [5.0, 9.0])
    np.testing.assert_allclose(np_of(x.grad), [10.0, 18.0])


def test_hook_returning_none_keeps_gradient():
    x = t64([1.0], True)
    x.register_hook(lambda g: None)
    (x * 4).sum().backward()
    np.testing.assert_allclose(np_of(x.grad), [4.0])


def test_register_hook_needs_requires_grad():
    with pytest.raises(
        RuntimeError, match="cannot register a hook on a tensor that doesn't require"
    ):
        t64([1.0]).register_hook(lambda g: g)


def test_hook_runs_once_with_the_summed_gradient():
    x = t64([1.0, 2.0], True)
    y = x * 2
    seen = []
    y.register_hook(lambda g: seen.append(np_of(g).copy()))
    (y * y + y).sum().backward()
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], 2 * np.array([2.0, 4.0]) + 1)


# -- grad modes ------------------------------------------------------------------------------------
def test_no_grad_and_enable_grad():
    x = t64([1.0], True)
    with jg.no_grad():
        y = x * 2
        with jg.enable_grad():
            z = x * 2
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad and z.grad_fn is not None
    assert jg.is_grad_enabled()


def test_no_grad_as_decorator():
    x = t64([1.0], True)

    @jg.no_grad()
    def f(a):
        return a * 2

    assert not f(x).requires_grad
    assert jg.is_grad_enabled()


def test_bare_decorators_without_parentheses():
    x = t64([1.0], True)

    @jg.no_grad
    def off(a):
        return a * 2

    @jg.enable_grad
    def on(a):
        return a * 2

    @jg.inference_mode
    def inference(a):
        return a * 2

    assert not off(x).requires_grad and not inference(x).requires_grad
    with jg.no_grad():
        assert on(x).requires_grad
    assert jg.is_grad_enabled()


def test_set_grad_enabled_function_context_and_decorator():
    x = t64([1.0], True)
    jg.set_grad_enabled(False)
    try:
        assert not jg.is_grad_enabled()
        assert not (x * 2).requires_grad
    finally:
        jg.set_grad_enabled(True)
    with jg.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert jg.is_grad_enabled()

    @jg.set_grad_enabled(False)
    def f(a):
        return a * 2

    assert jg.is_grad_enabled()  # decorating does not switch the mode
    assert not f(x).requires_grad
    assert jg.is_grad_enabled()


def test_grad_mode_restored_after_exception():
    with pytest.raises(ValueError):
        with jg.no_grad():
            raise ValueError
    assert jg.is_grad_enabled()


def test_grad_mode_is_per_thread():
    # as in PyTorch: no_grad in one thread leaves the others recording, and a new thread
    # starts with gradients enabled; anomaly detection is process-wide
    import threading

    seen = {}

    def other():
        seen["enabled"] = jg.is_grad_enabled()
        seen["recorded"] = (t64([1.0], True) * 2).requires_grad
        seen["anomaly"] = jg.autograd.is_anomaly_enabled()
        with jg.no_grad():
            seen["inner"] = jg.is_grad_enabled()

    with jg.no_grad(), jg.autograd.detect_anomaly():
        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert not jg.is_grad_enabled()
    assert jg.is_grad_enabled() and not jg.autograd.is_anomaly_enabled()
    assert seen == {"enabled": True, "recorded": True, "anomaly": True, "inner": False}


def test_inference_mode():
    x = t64([1.0], True)
    with jg.inference_mode():
        y = x * 2
    assert not y.requires_grad
    with jg.inference_mode(False):
        assert (x * 2).requires_grad
    assert jg.is_grad_enabled()


# -- higher order ----------------------------------------------------------------------------------
def test_third_derivative_of_x4():
    x = t64(1.5, True)
    y = x**4
    (g1,) = autograd.grad(y, x, create_graph=True)
    (g2,) = autograd.grad(g1, x, create_graph=True)
    (g3,) = autograd.grad(g2, x)
    assert g1.item() == pytest.approx(4 * 1.5**3)
    assert g2.item() == pytest.approx(12 * 1.5**2)
    assert g3.item() == pytest.approx(24 * 1.5)


def test_second_derivative_of_composite():
    # f = sin(x) * exp(x): f'' = 2 cos(x) exp(x)
    x = t64([0.3, -1.2], True)
    (g1,) = autograd.grad((jg.sin(x) * jg.exp(x)).sum(), x, create_graph=True)
    (g2,) = autograd.grad(g1.sum(), x)
    v = np.array([0.3, -1.2])
    np.testing.assert_allclose(np_of(g2), 2 * np.cos(v) * np.exp(v), rtol=1e-12)


def test_mixed_partial_through_create_graph():
    x, y = t64(2.0, True), t64(3.0, True)
    (gx,) = autograd.grad(x * x * y, x, create_graph=True)  # 2xy
    (gxy,) = autograd.grad(gx, y)  # 2x
    assert gxy.item() == pytest.approx(4.0)


# -- errors ----------------------------------------------------------------------------------------
def test_backward_on_tensor_without_grad():
    with pytest.raises(
        RuntimeError, match="element 0 of tensors does not require grad and does not have a grad_fn"
    ):
        (t64([1.0, 2.0]) * 2).sum().backward()


def test_implicit_gradient_needs_scalar_output():
    x = t64([1.0, 2.0], True)
    with pytest.raises(RuntimeError) as info:
        (x * 2).backward()
    msg = str(info.value)
    assert "grad can be implicitly created only for scalar outputs" in msg
    assert "[2]" in msg


def test_backward_twice_through_freed_graph():
    x = t64([1.0, 2.0], True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="Trying to backward through the graph a second time"):
        y.backward()


def test_backward_twice_through_nodes_that_saved_nothing_is_fine():
    # add/sum/reshape save no tensors, so PyTorch does not complain either
    x = t64([1.0, 2.0], True)
    y = (x + x).reshape(2, 1).sum()
    y.backward()
    y.backward()
    np.testing.assert_allclose(np_of(x.grad), [4.0, 4.0])


def test_gradient_shape_mismatch():
    x = t64([1.0, 2.0], True)
    with pytest.raises(RuntimeError, match="Mismatch in shape") as info:
        (x * 2).backward(t64([1.0, 1.0, 1.0]))
    assert "[3]" in str(info.value) and "[2]" in str(info.value)


def test_broadcast_error_names_both_sizes():
    with pytest.raises(RuntimeError) as info:
        jg.ones(2, 3) + jg.ones(4)
    msg = str(info.value)
    assert "The size of tensor a (3) must match the size of tensor b (4) at non-singleton" in msg


def test_integer_results_do_not_require_grad():
    x = t64([1.5, 2.5], True)
    assert not (x * 2).long().requires_grad
    assert not (x > 2).requires_grad
    assert not x.argmax().requires_grad


def test_detect_anomaly_names_backward_that_made_nan():
    x = t64([0.0, 1.0], True)
    with jg.autograd.detect_anomaly():
        y = (jg.sqrt(x) * 0).sum()
        with np.errstate(all="ignore"), pytest.raises(RuntimeError) as info:
            y.backward()
    msg = str(info.value)
    assert "Function 'SqrtBackward0' returned nan values in its 0th output." in msg
    assert "test_detect_anomaly_names_backward_that_made_nan" in msg  # the forward trace
    assert not jg.autograd.is_anomaly_enabled()


def test_without_anomaly_nan_flows_silently():
    x = t64([0.0, 1.0], True)
    with np.errstate(all="ignore"):
        (jg.sqrt(x) * 0).sum().backward()
    assert np.isnan(np_of(x.grad)[0])


# -- engine: iterative, frees memory ---------------------------------------------------------------
def test_chain_of_100k_ops():
    x = t64(1.0, True)
    y = x
    start = time.perf_counter()
    for _ in range(100_000):
        y = y + 1.0
    y.backward()
    assert x.grad.item() == 1.0
    assert time.perf_counter() - start < 30  # generous: only guards against quadratic blowups


def test_saved_tensors_released_after_backward():
    x = t64([1.0, 2.0], True)
    mid = x.exp()
    ref = weakref.ref(mid)
    y = (mid * mid).sum()
    del mid
    assert ref() is not None  # held by the graph for backward
    y.backward()
    gc.collect()
    assert ref() is None


def test_saved_tensors_kept_with_retain_graph():
    x = t64([1.0, 2.0], True)
    mid = x.exp()
    ref = weakref.ref(mid)
    y = (mid * mid).sum()
    del mid
    y.backward(retain_graph=True)
    gc.collect()
    assert ref() is not None


def _live_tensors() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if issubclass(type(o), jg.Tensor))


def test_training_loop_does_not_grow_memory():
    jg.manual_seed(0)
    w = jg.randn(8, 4, dtype=jg.float64, requires_grad=True)
    b = jg.zeros(4, dtype=jg.float64, requires_grad=True)
    data = jg.randn(16, 8, dtype=jg.float64)
    target = jg.randn(16, 4, dtype=jg.float64)

    def step():
        pred = jg.tanh(data @ w + b)
        loss = ((pred - target) ** 2).mean()
        loss.backward()
        with jg.no_grad():
            w.sub_(w.grad * 0.01)
            b.sub_(b.grad * 0.01)
        w.grad.zero_()
        b.grad.zero_()
        return loss.item()

    for _ in range(5):
        step()
    before = _live_tensors()
    losses = [step() for _ in range(200)]
    after = _live_tensors()
    assert after <= before + 2
    assert losses[-1] < losses[0]
