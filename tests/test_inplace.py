"""In-place updates, version counters, views, ``.data`` and ``detach``: PyTorch's semantics."""

from __future__ import annotations

import re

import numpy as np
import pytest

import jitgrad as jg


def t64(values, requires_grad: bool = False) -> jg.Tensor:
    return jg.tensor(values, dtype=jg.float64, requires_grad=requires_grad)


def np_of(t: jg.Tensor) -> np.ndarray:
    return t.detach().numpy()


def test_inplace_on_leaf_requiring_grad():
    x = t64([1.0, 2.0], True)
    with pytest.raises(
        RuntimeError,
        match=re.escape("a leaf Variable that requires grad is being used in an in-place"),
    ):
        x.add_(1)
    # failed calls change nothing
    np.testing.assert_allclose(np_of(x), [1.0, 2.0])
    assert x._version == 0 and x.is_leaf and x.grad_fn is None
    with jg.no_grad():
        x.add_(1)  # what optimizers do
    assert x._version == 1
    np.testing.assert_allclose(np_of(x), [2.0, 3.0])


def test_modified_saved_tensor_is_detected():
    a = t64([1.0, 2.0], True)
    b = a * 1
    c = b * b
    b.mul_(2)
    with pytest.raises(RuntimeError) as info:
        c.sum().backward()
    msg = str(info.value)
    assert (
        "one of the variables needed for gradient computation has been modified by an inplace "
        "operation" in msg
    )
    assert "is at version 1; expected version 0 instead" in msg


def test_modified_saved_output_is_detected():
    # exp saves its result for backward; changing it in place would corrupt the gradient
    x = t64([1.0, 2.0], True)
    y = x.exp()
    y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation") as info:
        y.sum().backward()
    assert "ExpBackward0" in str(info.value) and "expected version 0" in str(info.value)


def test_inplace_on_tensor_not_saved_is_fine():
    a = t64([1.0, 2.0], True)
    b = a * 3
    c = b + 1  # add saves nothing
    b.mul_(2)
    c.sum().backward()
    np.testing.assert_allclose(np_of(a.grad), [3.0, 3.0])


def test_inplace_on_non_leaf_differentiates_through_update():
    a = t64([1.0, 2.0], True)
    b = a * 1
    b.mul_(3)
    b.exp_()  # b = exp(3a)
    b.sum().backward()
    v = np.array([1.0, 2.0])
    np.testing.assert_allclose(np_of(a.grad), 3 * np.exp(3 * v), rtol=1e-12)


def test_inplace_that_overwrites_its_own_saved_input_errors_like_pytorch():
    a = t64([1.0, 2.0], True)
    b = a * 1
    b.mul_(b)  # mul saved b at version 0, then wrote it
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        b.sum().backward()


def test_inplace_on_view_of_leaf_requiring_grad():
    x = t64([1.0, 2.0], True)
    with pytest.raises(
        RuntimeError,
        match="a view of a leaf Variable that requires grad is being used in an in-place",
    ):
        x[0].add_(1)
    assert x.tolist() == [1.0, 2.0] and x._version == 0


def test_inplace_on_views_of_non_leaf_reaches_the_base():
    # like PyTorch's CopySlices: the base's history includes updates made through its views
    a = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    x = t64(a, True)
    y = x * 1
    y[0] += 1
    y[:, 1].mul_(3)
    y.T[2].exp_()
    assert y._version == 4  # += on an indexed view is an update plus a __setitem__
    (y * y).sum().backward()
    b = a.copy()
    b[0] += 1
    b[:, 1] *= 3
    b[:, 2] = np.exp(b[:, 2])
    np.testing.assert_allclose(np_of(y), b, rtol=1e-12)
    # d/dx of sum(y^2): 2y times dy/dx, elementwise
    dy = np.ones_like(a)
    dy[:, 1] = 3
    dy[:, 2] = b[:, 2]
    np.testing.assert_allclose(np_of(x.grad), 2 * b * dy, rtol=1e-12)


def test_copy_into_view_of_plain_tensor_makes_base_require_grad():
    w = t64([7.0, 8.0], True)
    buf = jg.zeros(2, 3, dtype=jg.float64)
    buf[:, 0].copy_(w * 2)
    assert buf.requires_grad and buf.grad_fn is not None
    (buf * buf).sum().backward()
    np.testing.assert_allclose(np_of(w.grad), [56.0, 64.0])


def test_inplace_with_grad_value_into_plain_tensor():
    # buf is outside the graph, so mul_ must keep its old value for w's gradient
    w = t64([2.0, 3.0], True)
    buf = t64([5.0, 5.0])
    buf.mul_(w)
    buf.sum().backward()
    np.testing.assert_allclose(np_of(w.grad), [5.0, 5.0])
    assert buf._version == 1


def test_reshape_that_copies_is_not_a_view():
    x = jg.arange(6.0).reshape(2, 3).T
    y = x.reshape(6)  # not contiguous: a copy, as in PyTorch
    y.add_(1)
    assert x._version == 0 and x.tolist() == [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]
    v = jg.arange(6.0).reshape(3, 2)  # contiguous: a view sharing the version counter
    v.add_(1)
    assert v._version == 1


def test_failed_inplace_changes_nothing():
    x = t64([1.0, 2.0])
    with pytest.raises(RuntimeError):
        x.add_(t64([1.0, 2.0, 3.0]))  # shape mismatch
    i = jg.tensor([1, 2])
    with pytest.raises(RuntimeError):
        i.add_(0.5)  # float result cannot be cast into an integer tensor
    np.testing.assert_allclose(np_of(x), [1.0, 2.0])
    assert x._version == 0 and i._version == 0 and i.tolist() == [1, 2]


def test_version_counter_counts_inplace_updates_and_is_shared_by_views():
    x = t64([1.0, 2.0, 3.0])
    assert x._version == 0
    x.add_(1)
    x.mul_(2)
    assert x._version == 2
    v = x[1:]
    v.zero_()
    assert x._version == 3 and v._version == 3
    np.testing.assert_allclose(np_of(x), [4.0, 0.0, 0.0])


def test_data_is_detached_and_shares_storage():
    x = t64([1.0, 2.0], True)
    d = x.data
    assert not d.requires_grad and d.is_leaf
    d.add_(1)  # allowed: .data hides the update from autograd
    np.testing.assert_allclose(np_of(x), [2.0, 3.0])
    assert x._version == 0  # .data does not share the version counter


def test_detach_shares_storage_and_version():
    x = t64([1.0, 2.0], True)
    y = x * 1
    d = y.detach()
    assert not d.requires_grad and d.grad_fn is None
    d.add_(5)
    np.testing.assert_allclose(np_of(y), [6.0, 7.0])
    assert y._version == 1


def test_detach_in_place():
    x = t64([1.0], True)
    y = x * 2
    assert y.detach_() is y
    assert not y.requires_grad and y.is_leaf


def test_requires_grad_errors():
    x = t64([1.0], True)
    with pytest.raises(RuntimeError, match="you can only change requires_grad flags of leaf"):
        (x * 2).requires_grad_(False)
    with pytest.raises(RuntimeError, match="only Tensors of floating point"):
        jg.tensor([1, 2]).requires_grad_()
    with pytest.raises(RuntimeError, match="only Tensors of floating point"):
        jg.tensor([1, 2], requires_grad=True)
    y = t64([1.0])
    assert y.requires_grad_() is y and y.requires_grad and y.is_leaf


@pytest.mark.parametrize(
    "write", [lambda y: y.fill_(1.0), lambda y: y.copy_(jg.zeros(3)), lambda y: y.zero_()]
)
def test_writing_a_constant_into_a_graph_tensor_cuts_its_old_history(write):
    # y's old value no longer reaches its result: x gets a zero gradient, y stays in the graph
    x = jg.ones(3, requires_grad=True)
    y = x * 2
    write(y)
    assert y.requires_grad
    (y * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros(3, np.float32))
