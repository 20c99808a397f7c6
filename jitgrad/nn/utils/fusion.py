"""Folding an eval-mode BatchNorm into the convolution or linear layer before it,
``skip_init``, and the (no-op) weight memory-format conversions."""

from __future__ import annotations

import copy

from ...autograd.grad_mode import no_grad
from ...ops import functions as _F
from ...tensor import Tensor
from ..module import Module, Parameter

__all__ = [
    "convert_conv2d_weight_memory_format",
    "convert_conv3d_weight_memory_format",
    "fuse_conv_bn_eval",
    "fuse_conv_bn_weights",
    "fuse_linear_bn_eval",
    "fuse_linear_bn_weights",
    "skip_init",
]


def _bn_scale(bn_rv: Tensor, bn_eps: float, bn_w: Tensor | None) -> Tensor:
    inv = _F.rsqrt(_F.add(bn_rv, bn_eps))
    return inv if bn_w is None else _F.mul(bn_w, inv)


def fuse_conv_bn_weights(conv_w, conv_b, bn_rm, bn_rv, bn_eps, bn_w, bn_b, transpose=False):
    """(weight, bias) of one convolution equal to the convolution followed by the batch norm:
    ``w' = w * gamma / sqrt(var + eps)`` per output channel, ``b' = (b - mean) * that + beta``."""
    with no_grad():
        conv_b = _F.zeros_like(bn_rm) if conv_b is None else conv_b
        bn_b = _F.zeros_like(bn_rm) if bn_b is None else bn_b
        scale = _bn_scale(bn_rv, bn_eps, bn_w)
        shape = [1] * conv_w.ndim
        shape[1 if transpose else 0] = -1
        w = _F.mul(conv_w, _F.reshape(_F.cast(scale, conv_w.dtype), tuple(shape)))
        b = _F.add(_F.mul(_F.sub(conv_b, bn_rm), scale), bn_b)
    return Parameter(w, conv_w.requires_grad), Parameter(_F.cast(b, conv_w.dtype), True)


def fuse_conv_bn_eval(conv: Module, bn: Module, transpose: bool = False) -> Module:
    """A copy of eval-mode ``conv`` with eval-mode ``bn`` folded into its weight and bias."""
    if conv.training or bn.training:
        raise AssertionError("Fusion only for eval!")
    fused = copy.deepcopy(conv)
    fused.weight, fused.bias = fuse_conv_bn_weights(
        fused.weight, fused.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias,
        transpose,
    )  # fmt: skip
    return fused


def fuse_linear_bn_weights(linear_w, linear_b, bn_rm, bn_rv, bn_eps, bn_w, bn_b):
    """(weight, bias) of one linear layer equal to the layer followed by the batch norm."""
    with no_grad():
        linear_b = _F.zeros_like(bn_rm) if linear_b is None else linear_b
        scale = _bn_scale(bn_rv, bn_eps, bn_w)
        w = _F.mul(linear_w, _F.unsqueeze(scale, -1))
        b = _F.add(_F.mul(_F.sub(linear_b, bn_rm), scale), bn_b if bn_b is not None else 0.0)
    return Parameter(w, linear_w.requires_grad), Parameter(b, True)


def fuse_linear_bn_eval(linear: Module, bn: Module) -> Module:
    """A copy of eval-mode ``linear`` with eval-mode ``bn`` folded into its weight and bias."""
    if linear.training or bn.training:
        raise AssertionError("Fusion only for eval!")
    if linear.out_features != bn.num_features and bn.num_features != 1:
        raise AssertionError(
            "To fuse, linear.out_features == bn.num_features or bn.num_features == 1"
        )
    fused = copy.deepcopy(linear)
    fused.weight, fused.bias = fuse_linear_bn_weights(
        fused.weight, fused.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
    )
    return fused


def skip_init(module_cls, *args, **kwargs) -> Module:
    """``module_cls(*args, **kwargs)``; PyTorch leaves the parameters uninitialised, here they
    are initialised as usual (the values are to be overwritten either way)."""
    import inspect

    if "device" not in inspect.signature(module_cls).parameters:
        raise RuntimeError("Module must support a 'device' arg to skip initialization")
    return module_cls(*args, **kwargs)


def convert_conv2d_weight_memory_format(module: Module, memory_format) -> Module:
    """Returns ``module``: jitgrad's tensors have one (contiguous) layout, so there is nothing
    to convert."""
    return module


def convert_conv3d_weight_memory_format(module: Module, memory_format) -> Module:
    """Returns ``module`` (see ``convert_conv2d_weight_memory_format``)."""
    return module
