"""gradcheck / gradgradcheck: they pass on correct gradients and catch wrong ones."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from test_custom_function import Cube

import jitgrad as jg
from jitgrad.autograd import Function, GradcheckError, gradcheck, gradgradcheck, once_differentiable

RNG = np.random.default_rng(7)


def rand(*shape, lo: float = -1.0, hi: float = 1.0, requires_grad: bool = True) -> jg.Tensor:
    data = RNG.uniform(lo, hi, shape)
    return jg.tensor(data, dtype=jg.float64, requires_grad=requires_grad)


# -- functions with known-bad gradients ----------------------------------------------------------


class ScaledExpWrong(Function):
    """exp with a backward that is 1% off."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.exp()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x.exp() * 1.01


class MulSwapped(Function):
    """x * y whose backward hands each input the other's gradient."""

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x * y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        return g * x, g * y


class SinDetachedBackward(Function):
    """sin with a correct first derivative whose backward is not differentiable in x: it reads a
    detached cos(x), so the second derivative misses the -sin(x) term."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sin()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x.detach().cos()


class CubeOnce(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x * x

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 3 * x * x


# Cube: x^3 with a backward in jitgrad ops (differentiable again, so gradgradcheck passes)


# -- gradcheck -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fast_mode", [False, True])
def test_gradcheck_passes_on_correct_ops(fast_mode):
    x, w = rand(3, 4), rand(4, 2)
    assert gradcheck(lambda a, b: (a @ b).tanh(), (x, w), fast_mode=fast_mode) is True
    assert gradcheck(lambda a: a.softmax(-1), (x,), fast_mode=fast_mode)
    assert gradcheck(lambda a: (a.exp(), a.sin().sum(0)), x, fast_mode=fast_mode)
    assert gradcheck(lambda a: a / (1.5 + a), x, fast_mode=fast_mode)
    assert gradcheck(Cube.apply, (x,), fast_mode=fast_mode)


@pytest.mark.parametrize("fast_mode", [False, True])
def test_gradcheck_fails_on_wrong_backward(fast_mode):
    x = rand(2, 3)
    assert (
        gradcheck(ScaledExpWrong.apply, (x,), raise_exception=False, fast_mode=fast_mode) is False
    )
    with pytest.raises(GradcheckError) as info:
        gradcheck(ScaledExpWrong.apply, (x,), fast_mode=fast_mode)
    assert isinstance(info.value, RuntimeError)
    msg = str(info.value)
    assert msg.startswith("Jacobian mismatch for output 0 with respect to input 0,\nnumerical:")
    assert "\nanalytical:" in msg


def test_gradcheck_mismatch_names_the_input():
    x, y = rand(3), rand(3)
    with pytest.raises(GradcheckError, match="output 0 with respect to input 0"):
        gradcheck(MulSwapped.apply, (x, y))
    # only y checked: it becomes differentiable input 0
    with pytest.raises(GradcheckError, match="with respect to input 0"):
        gradcheck(MulSwapped.apply, (x.detach(), y))


def test_gradcheck_message_shows_both_jacobians():
    x = jg.tensor([0.5], dtype=jg.float64, requires_grad=True)
    with pytest.raises(GradcheckError) as info:
        gradcheck(ScaledExpWrong.apply, (x,))
    msg = str(info.value)
    numerical = np.exp(0.5)
    assert f"{numerical:.4f}" in msg.split("analytical:")[0]
    assert f"{numerical * 1.01:.4f}" in msg.split("analytical:")[1]


def test_gradcheck_restores_inputs():
    x = rand(3, 2)
    before = x.detach().numpy().copy()
    version = x._version
    gradcheck(lambda a: a.tanh() * a, (x,))
    gradcheck(lambda a: a.tanh() * a, (x,), fast_mode=True)
    np.testing.assert_array_equal(x.detach().numpy(), before)
    assert x._version == version and x.grad is None


def test_gradcheck_numerical_side_is_independent_of_autograd():
    # a backward that is exactly right only because finite differences say so: if the numerical
    # jacobian were taken from autograd, a wrong rule would pass
    x = rand(4, lo=0.5, hi=2.0)
    assert not gradcheck(ScaledExpWrong.apply, (x,), raise_exception=False, atol=1e-3)
    assert gradcheck(ScaledExpWrong.apply, (x,), atol=1e-1, rtol=2e-2)


def test_gradcheck_warns_on_float32():
    x = jg.tensor([0.3, 0.6], dtype=jg.float32, requires_grad=True)
    with pytest.warns(UserWarning, match="is not a double precision floating point"):
        gradcheck(lambda a: a * 2, (x,), eps=1e-2, atol=1e-2, raise_exception=False)
    y = rand(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gradcheck(lambda a: a * 2, (y,))


def test_gradcheck_input_errors():
    x = rand(3, requires_grad=False)
    with pytest.raises(ValueError, match="at least one input tensor to require gradient"):
        gradcheck(lambda a: a * 2, (x,))
    broadcast = jg.tensor([1.0, 2.0], dtype=jg.float64).expand(3, 2).requires_grad_()
    with pytest.raises(RuntimeError, match="has a dimension with stride 0"):
        gradcheck(lambda a: a * 2, (broadcast,))


def test_gradcheck_non_tensor_arguments_pass_through():
    x = rand(3)
    assert gradcheck(lambda a, k: a * k, (x, 2.5))


def test_gradcheck_no_differentiable_outputs():
    x = rand(3)
    assert gradcheck(lambda a: jg.zeros(3, dtype=jg.float64), (x,))
    with pytest.raises(GradcheckError, match="Numerical gradient for function expected to be zero"):
        gradcheck(lambda a: a.detach() * 2, (x,))
    with pytest.raises(GradcheckError, match="Numerical gradient for function expected to be zero"):
        gradcheck(lambda a: a.detach() * 2, (x,), fast_mode=True)


def test_gradcheck_backward_not_multiplied_by_grad_output():
    class IgnoresZeroGrad(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            # right for the unit grad_outputs of the jacobian, wrong for an all-zero one
            return g * 2 + (1.0 - g.abs().sum()).clamp(min=0.0)

    with pytest.raises(GradcheckError, match="backward not multiplied by grad_output"):
        gradcheck(IgnoresZeroGrad.apply, (rand(3),))


def test_gradcheck_nondeterministic_backward():
    calls = []

    class Jitter(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            calls.append(1)
            return g * (2 + 1e-9 * len(calls))

    with pytest.raises(GradcheckError, match="Backward is not reentrant"):
        gradcheck(Jitter.apply, (rand(3),))
    assert gradcheck(Jitter.apply, (rand(3),), nondet_tol=1e-6)


def test_gradcheck_wrong_gradient_shape():
    class BadShape(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return (g * 2).sum(0)

    with pytest.raises(GradcheckError, match="Analytical gradient has incorrect size"):
        gradcheck(BadShape.apply, (rand(2, 3),))


class TwoOutputs(Function):
    """(2x, 3x); backward gets None for an output whose gradient is undefined."""

    @staticmethod
    def forward(ctx, x):
        ctx.set_materialize_grads(False)
        return x * 2, x * 3

    @staticmethod
    def backward(ctx, ga, gb):
        return ga * 2 + gb * 3  # fails when one of them is None


class TwoOutputsOk(TwoOutputs):
    @staticmethod
    def backward(ctx, ga, gb):
        total = None
        for g, k in ((ga, 2), (gb, 3)):
            if g is not None:
                total = g * k if total is None else total + g * k
        return total


class TwoOutputsNonzeroWhenUndefined(TwoOutputs):
    @staticmethod
    def backward(ctx, ga, gb):
        if ga is not None and gb is not None:
            return ga * 2 + gb * 3
        g, k = (ga, 2) if ga is not None else (gb, 3)
        # right for unit gradients, but an undefined partner plus a zero gradient gives ones
        return g * k + (1.0 - g.abs().sum()).clamp(min=0.0)


def test_gradcheck_undefined_output_grads():
    x = rand(3)
    assert gradcheck(TwoOutputsOk.apply, (x,))
    # as in PyTorch: the jacobian of output 0 already leaves output 1's gradient undefined
    with pytest.raises(TypeError):
        gradcheck(TwoOutputs.apply, (x,))
    with pytest.raises(GradcheckError, match="Expected all input grads to be undefined or zero"):
        gradcheck(TwoOutputsNonzeroWhenUndefined.apply, (x,))
    assert gradcheck(TwoOutputsNonzeroWhenUndefined.apply, (x,), check_undefined_grad=False)


def test_gradcheck_unsupported_flags():
    with pytest.raises(NotImplementedError, match="forward-mode"):
        gradcheck(lambda a: a, (rand(2),), check_forward_ad=True)
    with pytest.raises(NotImplementedError, match="vmap"):
        gradcheck(lambda a: a, (rand(2),), check_batched_grad=True)


# -- gradgradcheck -------------------------------------------------------------------------------


SMOOTH = {
    "tanh": (lambda a: a.tanh(), lambda: (rand(2, 3),)),
    "exp": (lambda a: a.exp(), lambda: (rand(2, 3),)),
    "mul": (lambda a, b: a * b, lambda: (rand(2, 3), rand(2, 3))),
    "div": (lambda a, b: a / b, lambda: (rand(2, 3), rand(2, 3, lo=0.5, hi=2.0))),
    "matmul": (lambda a, b: a @ b, lambda: (rand(2, 3), rand(3, 2))),
    "log_softmax": (lambda a: a.log_softmax(-1), lambda: (rand(2, 4),)),
    "cube_function": (Cube.apply, lambda: (rand(3),)),
}


@pytest.mark.parametrize("name", sorted(SMOOTH))
@pytest.mark.parametrize("fast_mode", [False, True])
def test_gradgradcheck_passes_on_smooth_ops(name, fast_mode):
    fn, make = SMOOTH[name]
    assert gradgradcheck(fn, make(), fast_mode=fast_mode) is True


def test_gradgradcheck_explicit_and_noncontiguous_grad_outputs():
    x, w = rand(3, 4), rand(4, 2)
    g = rand(3, 2)
    assert gradgradcheck(lambda a, b: (a @ b).sin(), (x, w), g)
    assert gradgradcheck(lambda a, b: (a @ b).sin(), (x, w), gen_non_contig_grad_outputs=True)


@pytest.mark.parametrize("fast_mode", [False, True])
def test_gradgradcheck_fails_when_backward_is_not_differentiated_correctly(fast_mode):
    x = rand(4)
    # first derivatives are right ...
    assert gradcheck(SinDetachedBackward.apply, (x,), fast_mode=fast_mode)
    # ... second derivatives are not
    assert not gradgradcheck(
        SinDetachedBackward.apply, (x,), raise_exception=False, fast_mode=fast_mode
    )
    with pytest.raises(GradcheckError, match="Jacobian mismatch for output 0 with respect to"):
        gradgradcheck(SinDetachedBackward.apply, (x,), fast_mode=fast_mode)


def test_gradgradcheck_fails_on_once_differentiable():
    x = rand(3)
    assert gradcheck(CubeOnce.apply, (x,))
    # PyTorch raises "trying to differentiate twice ..." here; a GradcheckError (a mismatch, or
    # gradients without history) is a failure too
    with pytest.raises(RuntimeError):
        gradgradcheck(CubeOnce.apply, (x,))


# -- agreement with PyTorch ----------------------------------------------------------------------


@pytest.mark.torch
def test_verdicts_and_message_agree_with_torch():
    torch = pytest.importorskip("torch")
    from torch.autograd.gradcheck import GradcheckError as TorchGradcheckError

    class TorchWrong(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.exp()

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * x.exp() * 1.01

    data = RNG.uniform(-1, 1, (2, 2))
    tx = torch.tensor(data, requires_grad=True)
    jx = jg.tensor(data, dtype=jg.float64, requires_grad=True)
    with pytest.raises(TorchGradcheckError) as theirs:
        torch.autograd.gradcheck(TorchWrong.apply, (tx,))
    with pytest.raises(GradcheckError) as ours:
        gradcheck(ScaledExpWrong.apply, (jx,))
    first_line = str(theirs.value).split("\n")[0]
    assert str(ours.value).split("\n")[0] == first_line
    assert torch.autograd.gradgradcheck(lambda a: a.log_softmax(-1), (tx,))
    assert gradgradcheck(lambda a: a.log_softmax(-1), (jx,))
