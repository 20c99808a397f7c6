"""Normalization: ``layer_norm``/``LayerNorm`` and ``batch_norm``/``BatchNorm1d``/``BatchNorm2d``.

Everything is a composite of jitgrad ops (mean, sub, mul, sqrt ...), so autograd derives the
backward and a trace records the whole computation. Batch norm's running statistics are buffers
updated in place under ``no_grad`` (``running_mean.mul_(1 - m).add_(m * mean)``, as PyTorch does):
under ``jitgrad.compile`` those updates become tape writes, applied after every compiled call.
"""

from __future__ import annotations

import math

import numpy as np

from .. import dtypes
from ..autograd.grad_mode import no_grad
from ..factories import empty, ones, tensor, zeros
from ..ops import functions as _F
from ..ops.registry import op
from ..ops.spec import Spec, arg
from ..tensor import Tensor
from . import init
from .module import Module, Parameter

__all__ = [
    "layer_norm",
    "batch_norm",
    "group_norm",
    "instance_norm",
    "local_response_norm",
    "rms_norm",
    "LayerNorm",
    "BatchNorm1d",
    "BatchNorm2d",
]

_NS = "nn.functional"


def _layer_norm_ref(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * weight + bias


def _batch_norm_ref(x, running_mean, running_var, weight=None, bias=None, training=False,
                    momentum=0.1, eps=1e-5):  # fmt: skip
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    mean, var = running_mean.reshape(shape), running_var.reshape(shape)
    return (x - mean) / np.sqrt(var + eps) * weight.reshape(shape) + bias.reshape(shape)


def _as_shape(normalized_shape) -> tuple:
    if isinstance(normalized_shape, int):
        return (normalized_shape,)
    return tuple(int(s) for s in normalized_shape)


def _normalize(x: Tensor, axes: tuple, eps: float) -> Tensor:
    """``(x - mean) / sqrt(var + eps)`` over ``axes`` with the biased variance."""
    mu = _F.mean(x, axes, keepdim=True)
    xc = _F.sub(x, mu)
    var = _F.mean(_F.mul(xc, xc), axes, keepdim=True)
    return _F.mul(xc, _F.rsqrt(_F.add(var, eps)))


# -- layer norm -----------------------------------------------------------------------------------
@op(
    namespace=_NS,
    spec=Spec(
        [arg(2, 3, 4), (3, 4), arg(3, 4), arg(3, 4)], _layer_norm_ref, differentiable=(0, 2, 3)
    ),
)
def layer_norm(
    input: Tensor,
    normalized_shape,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Normalize over the trailing ``normalized_shape`` dims, then scale by ``weight`` and shift
    by ``bias`` (both of shape ``normalized_shape``)."""
    shape = _as_shape(normalized_shape)
    k = len(shape)
    if k == 0 or input.ndim < k or tuple(input.shape[input.ndim - k :]) != shape:
        dims = ", ".join(str(s) for s in shape)
        raise RuntimeError(
            f"Given normalized_shape={list(shape)}, expected input with shape [*, {dims}], but "
            f"got input of size{list(input.shape)}; normalized_shape must equal the input's "
            "trailing dimensions (e.g. the feature size for (batch, features) input)."
        )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != shape:
            raise RuntimeError(
                f"Expected {name} to be of same shape as normalized_shape, but got {name} of "
                f"shape {list(t.shape)} and normalized_shape = {list(shape)}; pass a {name} of "
                "shape normalized_shape (or None)."
            )
    if not input.dtype.is_floating_point:
        raise RuntimeError(
            f"\"LayerNormKernelImpl\" not implemented for '{input.dtype}'; layer_norm needs a "
            "floating point input: cast it first, e.g. x.float()."
        )
    out = _normalize(input, tuple(range(input.ndim - k, input.ndim)), eps)
    if weight is not None:
        out = _F.mul(out, weight)
    if bias is not None:
        out = _F.add(out, bias)
    return out


class LayerNorm(Module):
    """Layer normalization over the trailing ``normalized_shape`` dims (PyTorch's LayerNorm)."""

    def __init__(
        self,
        normalized_shape,
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.normalized_shape = _as_shape(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        dtype = dtypes.as_dtype(dtype) if dtype is not None else None
        affine_parameters(self, self.normalized_shape, elementwise_affine, bias, dtype, device)

    def reset_parameters(self) -> None:
        reset_affine(self)

    def forward(self, input: Tensor) -> Tensor:
        return layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
            f", bias={self.bias is not None}"
        )


def affine_parameters(module, shape, affine: bool, bias: bool, dtype, device) -> None:
    """A normalization's ``weight`` (ones) and ``bias`` (zeros) of ``shape``, registered as
    None where ``affine`` (or ``bias``) is off, as PyTorch's norm layers register them."""
    if affine:
        module.weight = Parameter(empty(shape, dtype=dtype, device=device))
        if bias:
            module.bias = Parameter(empty(shape, dtype=dtype, device=device))
        else:
            module.register_parameter("bias", None)
    else:
        module.register_parameter("weight", None)
        module.register_parameter("bias", None)
    reset_affine(module)


def reset_affine(module) -> None:
    if module.weight is not None:
        init.ones_(module.weight)
    if module.bias is not None:
        init.zeros_(module.bias)


# -- batch norm -----------------------------------------------------------------------------------
def _verify_batch_size(shape: tuple) -> None:
    size = shape[0] * math.prod(shape[2:])
    if size == 1:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got input size {list(shape)};"
            " batch statistics need at least 2 values per channel: use a larger batch, or call "
            "model.eval() to normalize with the running statistics."
        )


def _update_running(buf: Tensor, stat: Tensor, momentum) -> None:
    """``buf = (1 - m) * buf + m * stat`` in place; ``m`` a float or a 0-d tensor."""
    keep = 1.0 - momentum if not isinstance(momentum, Tensor) else _F.rsub(momentum, 1.0)
    buf.mul_(keep).add_(_F.mul(stat, momentum))


@op(
    namespace=_NS,
    spec=Spec(
        [arg(4, 3, 2), arg(3), arg(3, lo=0.5), arg(3), arg(3)],
        _batch_norm_ref,
        differentiable=(0, 3, 4),
    ),
)
def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum=0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Normalize (N, C, ...) input per channel C.

    Training: with the batch's mean and biased variance; given running buffers, they are updated
    in place with the batch mean and the unbiased variance (``momentum`` may be a 0-d tensor, e.g.
    a cumulative-average factor). Evaluation: with ``running_mean`` and ``running_var``.
    """
    if input.ndim < 2:
        raise ValueError(
            f"expected at least 2D input (N, C, *), got {input.ndim}D input; add a batch "
            "dimension with x.unsqueeze(0)."
        )
    if not input.dtype.is_floating_point:
        raise RuntimeError(
            f"\"batch_norm\" not implemented for '{input.dtype}'; cast the input to a floating "
            "point dtype first, e.g. x.float()."
        )
    c = input.shape[1]
    for name, t in (
        ("running_mean", running_mean),
        ("running_var", running_var),
        ("weight", weight),
        ("bias", bias),
    ):
        if t is not None and t.numel() != c:
            raise RuntimeError(
                f"{name} should contain {c} elements not {t.numel()}; num_features must equal "
                "the input's channel dimension (dim 1)."
            )
    stat_shape = (1, c) + (1,) * (input.ndim - 2)
    axes = (0,) + tuple(range(2, input.ndim))
    if training:
        _verify_batch_size(tuple(input.shape))
        mu = _F.mean(input, axes, keepdim=True)
        xc = _F.sub(input, mu)
        var = _F.mean(_F.mul(xc, xc), axes, keepdim=True)
        if running_mean is not None or running_var is not None:
            if momentum is None:
                raise ValueError(
                    "batch_norm momentum=None (a cumulative average) needs a batch count: use "
                    "nn.BatchNorm1d/2d(momentum=None), or pass the factor 1 / num_batches."
                )
            n = input.numel() // c
            with no_grad():
                if running_mean is not None:
                    _update_running(running_mean, _F.reshape(mu, (c,)), momentum)
                if running_var is not None:
                    # the running variance is the unbiased one: var * n / (n - 1)
                    unbiased = _F.mul(_F.reshape(var, (c,)), n / (n - 1))
                    _update_running(running_var, unbiased, momentum)
    else:
        if running_mean is None or running_var is None:
            raise RuntimeError(
                "running_mean must be defined in evaluation mode; pass running_mean and "
                "running_var, or training=True to normalize with the batch statistics."
            )
        mu = _F.reshape(_F.cast(running_mean, input.dtype), stat_shape)
        var = _F.reshape(_F.cast(running_var, input.dtype), stat_shape)
        xc = _F.sub(input, mu)
    out = _F.mul(xc, _F.rsqrt(_F.add(var, eps)))
    if weight is not None:
        out = _F.mul(out, _F.reshape(weight, stat_shape))
    if bias is not None:
        out = _F.add(out, _F.reshape(bias, stat_shape))
    return out


class _BatchNorm(Module):
    """Shared by BatchNorm1d/2d: parameters, running buffers and the train/eval switch."""

    _expected = ""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        dtype = dtypes.as_dtype(dtype) if dtype is not None else None
        if affine:
            self.weight = Parameter(empty(num_features, dtype=dtype, device=device))
            if bias:
                self.bias = Parameter(empty(num_features, dtype=dtype, device=device))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", zeros(num_features, dtype=dtype, device=device))
            self.register_buffer("running_var", ones(num_features, dtype=dtype, device=device))
            self.register_buffer("num_batches_tracked", tensor(0, dtype=dtypes.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            with no_grad():
                self.running_mean.zero_()
                self.running_var.fill_(1)
                self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)

    def _check_input_dim(self, input: Tensor) -> None:
        raise NotImplementedError

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            with no_grad():
                self.num_batches_tracked.add_(1)
            if self.momentum is None:
                # cumulative average: 1 / batches seen, as a tensor op so a compiled step reads
                # the count it updates (a Python float would be frozen into the compiled code)
                f = self.running_mean.dtype if self.running_mean is not None else input.dtype
                factor = _F.div(1.0, _F.cast(self.num_batches_tracked, f))
        # eval mode without running statistics normalizes with the batch's, as PyTorch does
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        keep = not self.training or self.track_running_stats
        return batch_norm(
            input,
            self.running_mean if keep else None,
            self.running_var if keep else None,
            self.weight,
            self.bias,
            use_batch,
            factor,
            self.eps,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, bias={self.bias is not None}, "
            f"track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """Batch normalization over (N, C) or (N, C, L) input, per channel C."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.ndim not in (2, 3):
            raise ValueError(
                f"expected 2D or 3D input (got {input.ndim}D input); BatchNorm1d takes (N, C) "
                "or (N, C, L): use BatchNorm2d for (N, C, H, W)."
            )


class BatchNorm2d(_BatchNorm):
    """Batch normalization over (N, C, H, W) input, per channel C."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.ndim != 4:
            raise ValueError(
                f"expected 4D input (got {input.ndim}D input); BatchNorm2d takes (N, C, H, W): "
                "use BatchNorm1d for (N, C) or (N, C, L)."
            )


# -- op-table entries: group, instance, local response and RMS norm ------------------------------
def _norm_ref(x, axes, eps):
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    return (x - mu) / np.sqrt(var + eps)


def _channel_view(t: Tensor, ndim: int) -> Tensor:
    return _F.reshape(t, (1, t.shape[0]) + (1,) * (ndim - 2))


def _group_norm_ref(x, num_groups, weight=None, bias=None, eps=1e-5):
    n, c = x.shape[:2]
    g = x.reshape(n, num_groups, -1)
    out = _norm_ref(g, (2,), eps).reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    return out * weight.reshape(shape) + bias.reshape(shape)


@op(
    namespace=_NS,
    spec=Spec([arg(2, 6, 3), 3, arg(6), arg(6)], _group_norm_ref, differentiable=(0, 2, 3)),
)
def group_norm(input, num_groups: int, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """Normalize (N, C, *) input over each group of C / num_groups channels (and all of *)."""
    if input.ndim < 2:
        raise RuntimeError(
            f"Expected at least 2 dimensions for input tensor but received {input.ndim}"
        )
    n, c = input.shape[:2]
    if num_groups <= 0 or c % num_groups:
        raise RuntimeError(
            "Expected number of channels in input to be divisible by num_groups, but got input "
            f"of shape {list(input.shape)} and num_groups={num_groups}"
        )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and (t.ndim != 1 or t.shape[0] != c):
            raise RuntimeError(
                f"Expected {name} to be a vector of size equal to the number of channels in "
                f"input, but got {name} of shape {list(t.shape)} and input of shape "
                f"{list(input.shape)}"
            )
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"\"GroupNormKernelImpl\" not implemented for '{input.dtype}'")
    g = _F.reshape(input, (n, num_groups, -1))
    out = _F.reshape(_normalize(g, (2,), eps), tuple(input.shape))
    if weight is not None:
        out = _F.mul(out, _channel_view(weight, input.ndim))
    if bias is not None:
        out = _F.add(out, _channel_view(bias, input.ndim))
    return out


def _instance_norm_ref(x, running_mean=None, running_var=None, weight=None, bias=None, **kw):
    out = _norm_ref(x, tuple(range(2, x.ndim)), kw.get("eps", 1e-5))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    return out * weight.reshape(shape) + bias.reshape(shape)


@op(
    namespace=_NS,
    spec=Spec(
        [arg(2, 3, 4, 2), None, None, arg(3), arg(3)],
        _instance_norm_ref,
        differentiable=(0, 3, 4),
    ),
)
def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats: bool = True, momentum: float = 0.1,
                  eps: float = 1e-5) -> Tensor:  # fmt: skip
    """Normalize each (sample, channel) of (N, C, *) input over *; with ``use_input_stats``
    the given running buffers take the batch's average statistics in place, without it they
    normalize."""
    if input.ndim < 2:
        raise ValueError(f"expected 2D or higher input (got {input.ndim}D input)")
    c = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):  # fmt: skip
        if t is not None and t.numel() != c:
            raise RuntimeError(f"{name} should contain {c} elements not {t.numel()}")
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"\"batch_norm\" not implemented for '{input.dtype}'")
    axes = tuple(range(2, input.ndim))
    if use_input_stats:
        if math.prod(input.shape[2:]) == 1:
            raise ValueError(
                "Expected more than 1 spatial element when training, got input size "
                f"torch.Size({list(input.shape)})"
            )
        mu = _F.mean(input, axes, keepdim=True)
        xc = _F.sub(input, mu)
        var = _F.mean(_F.mul(xc, xc), axes, keepdim=True)
        m = math.prod(input.shape[2:])
        with no_grad():  # the running statistics: the batch's mean of the instances'
            if running_mean is not None:
                stat = _F.mean(_F.reshape(mu, (input.shape[0], c)), 0)
                _update_running(running_mean, stat, momentum)
            if running_var is not None:
                stat = _F.mul(_F.mean(_F.reshape(var, (input.shape[0], c)), 0), m / (m - 1))
                _update_running(running_var, stat, momentum)
    else:
        if running_mean is None or running_var is None:
            raise RuntimeError(
                "Expected running_mean and running_var to be defined when use_input_stats is false"
            )
        shape = (1, c) + (1,) * (input.ndim - 2)
        xc = _F.sub(input, _F.reshape(_F.cast(running_mean, input.dtype), shape))
        var = _F.reshape(_F.cast(running_var, input.dtype), shape)
    out = _F.mul(xc, _F.rsqrt(_F.add(var, eps)))
    if weight is not None:
        out = _F.mul(out, _channel_view(weight, input.ndim))
    if bias is not None:
        out = _F.add(out, _channel_view(bias, input.ndim))
    return out


def _lrn_ref(x, size, alpha=1e-4, beta=0.75, k=1.0):
    c = x.shape[1]
    sq = np.pad(x * x, [(0, 0), (size // 2, (size - 1) // 2)] + [(0, 0)] * (x.ndim - 2))
    div = sum(sq[:, i : i + c] for i in range(size)) / size
    return x / (div * alpha + k) ** beta


@op(
    namespace=_NS,
    spec=Spec([arg(2, 5, 3), 3], _lrn_ref, params={"alpha": 0.1, "beta": 0.75, "k": 1.5},
              differentiable=(0,)),
)  # fmt: skip
def local_response_norm(input, size: int, alpha: float = 1e-4, beta: float = 0.75,
                        k: float = 1.0) -> Tensor:  # fmt: skip
    """``x / (k + alpha * mean of x^2 over a window of `size` channels) ** beta``."""
    if input.ndim < 3:
        raise ValueError(  # (PyTorch's wording, spaces and all)
            "Expected 3D or higher dimensionality                          input (got "
            f"{input.ndim} dimensions)"
        )
    if input.numel() == 0:
        return input
    c = input.shape[1]
    sq = _F.mul(input, input)
    widths = [(0, 0, 0), (size // 2, (size - 1) // 2, 0)] + [(0, 0, 0)] * (input.ndim - 2)
    padded = _F.pad_interior(sq, widths)
    shape = tuple(input.shape)
    total = None
    for i in range(size):  # one slice per channel tap (the window runs along channels)
        start = (0, i) + (0,) * (input.ndim - 2)
        stop = (shape[0], i + c) + shape[2:]
        part = _F.slice_(padded, start, stop, (1,) * input.ndim)
        total = part if total is None else _F.add(total, part)
    div = _F.pow(_F.add(_F.mul(_F.div(total, float(size)), alpha), k), beta)
    return _F.div(input, div)


def _rms_ref(x, normalized_shape, weight=None, eps=None):
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    eps = np.finfo(x.dtype).eps if eps is None else eps
    out = x / np.sqrt((x * x).mean(axis=axes, keepdims=True) + eps)
    return out if weight is None else out * weight


@op(
    namespace=_NS,
    spec=Spec([arg(2, 3, 4), (3, 4), arg(3, 4)], _rms_ref, differentiable=(0, 2)),
)
def rms_norm(input, normalized_shape, weight=None, eps: float | None = None) -> Tensor:
    """``x / sqrt(mean(x^2) + eps) * weight`` over the trailing ``normalized_shape`` dims;
    ``eps=None`` is the dtype's machine epsilon."""
    shape = _as_shape(normalized_shape)
    k = len(shape)
    if input.ndim < k or tuple(input.shape[input.ndim - k :]) != shape:
        dims = ", ".join(str(s) for s in shape)
        raise RuntimeError(
            f"Given normalized_shape={list(shape)}, expected input with shape [*{dims}], but got "
            f"input of size{list(input.shape)}"
        )
    if weight is not None and tuple(weight.shape) != shape:
        raise RuntimeError(
            f"Expected weight to be of same shape as normalized_shape, but got weight of shape "
            f"{list(weight.shape)} and normalized_shape = {list(shape)}"
        )
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"\"rms_norm\" not implemented for '{input.dtype}'")
    if eps is None:
        eps = float(np.finfo(input.dtype.np).eps)
    axes = tuple(range(input.ndim - k, input.ndim))
    out = _F.mul(input, _F.rsqrt(_F.add(_F.mean(_F.mul(input, input), axes, keepdim=True), eps)))
    return out if weight is None else _F.mul(out, weight)
