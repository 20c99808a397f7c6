"""``jitgrad.nn.init``: in-place initialisers with PyTorch's formulas.

All draws come from ``jitgrad.random`` (so ``manual_seed`` reproduces them) and all writes are
in-place updates under ``no_grad``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .. import dtypes, linalg
from .. import random as _random
from .. import random_dist as _dist
from ..autograd.grad_mode import no_grad
from ..ops import functions as F
from ..tensor import Tensor

_LINEAR_FNS = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
)


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for an activation (PyTorch's table)."""
    if nonlinearity in _LINEAR_FNS or nonlinearity == "sigmoid":
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            negative_slope = 0.01
        elif not isinstance(param, bool) and isinstance(param, (int, float)):
            negative_slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + negative_slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    if tensor.dim() < 2:
        raise ValueError(
            "Fan in and fan out can not be computed for tensor with fewer than 2 dimensions"
        )
    receptive = 1
    for s in tensor.shape[2:]:
        receptive *= s
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _calculate_correct_fan(tensor: Tensor, mode: str) -> int:
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of ['fan_in', 'fan_out']")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator=None) -> Tensor:
    with no_grad():
        return _dist.uniform_(tensor, a, b, generator=generator)


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator=None) -> Tensor:
    with no_grad():
        return _dist.normal_(tensor, mean, std, generator=generator)


def constant_(tensor: Tensor, val: float) -> Tensor:
    with no_grad():
        return tensor.fill_(val)


def ones_(tensor: Tensor) -> Tensor:
    return constant_(tensor, 1.0)


def zeros_(tensor: Tensor) -> Tensor:
    return constant_(tensor, 0.0)


def eye_(tensor: Tensor) -> Tensor:
    if tensor.ndim != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    from ..factories import eye

    with no_grad():
        return tensor.copy_(eye(tensor.shape[0], tensor.shape[1], dtype=tensor.dtype))


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    a = math.sqrt(3.0) * std  # U(-a, a) has standard deviation std
    return uniform_(tensor, -a, a, generator)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator)


def _zero_element(tensor: Tensor) -> bool:
    if tensor.numel() == 0:
        warnings.warn("Initializing zero-element tensors is a no-op", UserWarning, stacklevel=3)
        return True
    return False


def kaiming_uniform_(
    tensor: Tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator=None,
) -> Tensor:
    if _zero_element(tensor):
        return tensor
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(
    tensor: Tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator=None,
) -> Tensor:
    if _zero_element(tensor):
        return tensor
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity), generator)


def _kaiming_std(tensor: Tensor, a: float, mode: str, nonlinearity: str) -> float:
    # He et al.: std = gain / sqrt(fan), fan chosen by mode
    return calculate_gain(nonlinearity, a) / math.sqrt(_calculate_correct_fan(tensor, mode))


# Acklam's rational approximation of the standard normal quantile (relative error < 1.2e-9).
_A = (-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.3577518672690,
      -30.66479806614716, 2.506628277459239)  # fmt: skip
_B = (-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972,
      -13.28068155288572, 1.0)  # fmt: skip
_C = (-7.784894002430293e-03, -0.3223964580411365, -2.400758277161838, -2.549732539343734,
      4.374664141464968, 2.938163982698783)  # fmt: skip
_D = (7.784695709041462e-03, 0.3224671290700398, 2.445134137142996, 3.754408661907416, 1.0)
_P_LOW = 0.02425


def _horner(coeffs: tuple, x: Tensor) -> Tensor:
    acc = F.mul(x, coeffs[0])
    for c in coeffs[1:-1]:
        acc = F.mul(F.add(acc, c), x)
    return F.add(acc, coeffs[-1])


def _ndtri(p: Tensor) -> Tensor:
    """Inverse of the standard normal CDF for p in (0, 1), as elementwise ops."""
    q = F.sub(p, 0.5)
    r = F.mul(q, q)
    central = F.div(F.mul(_horner(_A, r), q), _horner(_B, r))
    # the tails use t = sqrt(-2 log(min(p, 1-p))); the sign follows q
    tail_p = F.minimum(p, F.rsub(p, 1.0))
    t = F.sqrt(F.mul(F.log(tail_p), -2.0))
    tail = F.div(_horner(_C, t), _horner(_D, t))
    tail = F.where(F.lt(q, 0.0), tail, F.neg(tail))
    return F.where(F.lt(tail_p, _P_LOW), tail, central)


def _norm_cdf(x: float) -> float:
    return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0


def trunc_normal_(
    tensor: Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    generator=None,
) -> Tensor:
    """Normal(mean, std) truncated to [a, b], by inverting the CDF of a uniform draw."""
    if mean < a - 2 * std or mean > b + 2 * std:
        warnings.warn(
            "mean is more than 2 std from [a, b] in nn.init.trunc_normal_. The distribution of "
            "values may be incorrect.",
            UserWarning,
            stacklevel=2,
        )
    lo, hi = _norm_cdf((a - mean) / std), _norm_cdf((b - mean) / std)
    tiny = 1e-300
    with no_grad():
        u = _random.rand(tuple(tensor.shape), dtype=dtypes.float64, generator=generator)
        p = F.clamp(F.add(F.mul(u, hi - lo), lo), min=tiny, max=1.0 - 1e-16)
        x = F.clamp(F.add(F.mul(_ndtri(p), std), mean), min=a, max=b)
        return tensor.copy_(x)


def orthogonal_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    """A (semi-)orthogonal matrix over dim 0 and the rest flattened (Saxe et al. 2013): the Q of
    a normal matrix's QR, its column signs fixed by R's diagonal so Q is uniform (Haar)."""
    if tensor.ndim < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    if tensor.numel() == 0:
        return tensor  # nothing to fill
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    with no_grad():
        flat = _random.randn(
            max(rows, cols), min(rows, cols), dtype=tensor.dtype, generator=generator
        )
        q, r = linalg.qr(flat)
        q = F.mul(q, F.sign(F.diagonal(r)))
        if rows < cols:
            q = F.transpose(q, 0, 1)
        return tensor.copy_(F.mul(F.reshape(q, tuple(tensor.shape)), gain))


def dirac_(tensor: Tensor, groups: int = 1) -> Tensor:
    """The identity convolution: in each group, output channel d copies input channel d at the
    kernel's centre (channels beyond the smaller count stay zero)."""
    if tensor.ndim not in (3, 4, 5):
        raise ValueError("Only tensors with 3, 4, or 5 dimensions are supported")
    sizes = tuple(tensor.shape)
    if sizes[0] % groups != 0:
        raise ValueError("dim 0 must be divisible by groups")
    per_group = sizes[0] // groups
    value = np.zeros(sizes, dtype=tensor.dtype.np)
    centre = tuple(s // 2 for s in sizes[2:])
    for g in range(groups):
        for d in range(min(per_group, sizes[1])):
            value[(g * per_group + d, d, *centre)] = 1
    with no_grad():
        return tensor.copy_(Tensor._wrap(value))


def sparse_(tensor: Tensor, sparsity: float, std: float = 0.01, generator=None) -> Tensor:
    """N(0, std^2) entries with ``ceil(sparsity * rows)`` of each column's set to zero, the rows
    chosen at random per column (Martens 2010)."""
    if tensor.ndim != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    rows, cols = tensor.shape
    num_zeros = int(math.ceil(sparsity * rows))
    with no_grad():
        z = _random.randn(rows, cols, dtype=tensor.dtype, generator=generator)
        keys = _random.rand(rows, cols, dtype=dtypes.float64, generator=generator)
        # a row's rank among its column's keys: the num_zeros lowest are zeroed
        rank = F.argsort(F.argsort(keys, dim=0, stable=True), dim=0, stable=True)
        kept = F.where(F.lt(rank, num_zeros), 0.0, F.mul(z, std))
        return tensor.copy_(kept)


# PyTorch's deprecated aliases without the trailing underscore are not provided on purpose.
__all__ = [
    "calculate_gain",
    "uniform_",
    "normal_",
    "constant_",
    "ones_",
    "zeros_",
    "eye_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "trunc_normal_",
    "orthogonal_",
    "dirac_",
    "sparse_",
]


def _reset_weight_and_bias(weight: Tensor, bias: Tensor | None) -> None:
    """PyTorch's default for Linear and Conv layers: kaiming_uniform_(a=sqrt(5)) for the weight,
    which is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias (PyTorch's
    historical default)."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = _calculate_fan_in_and_fan_out(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        uniform_(bias, -bound, bound)
