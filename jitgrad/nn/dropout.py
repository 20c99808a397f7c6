"""Channel-wise and alpha dropout: ``dropout1d/2d/3d``, ``alpha_dropout``,
``feature_alpha_dropout`` and their modules (``nn.Dropout`` itself: ``layers.py``).

A channel-wise mask has shape (N, C, 1, ...): one draw per (sample, channel), broadcast over
the spatial dims. Alpha dropout keeps SELU's self-normalizing mean and variance: a dropped
element becomes SELU's negative saturation value ``-alpha'``, and the result is rescaled by
``a = ((alpha'^2 p + 1)(1 - p))^-1/2`` and shifted by ``b = a alpha' p`` (``alpha' = lambda *
alpha``, about 1.7581), so ``out = a * (x * mask + alpha' * (mask - 1)) + b``.
"""

from __future__ import annotations

import math
import warnings

from .. import random as _random
from ..ops import functions as _F
from ..tensor import Tensor
from .module import Module

__all__ = [
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "alpha_dropout",
    "feature_alpha_dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "AlphaDropout",
    "FeatureAlphaDropout",
]

_SELU_SATURATION = 1.7580993408473766  # SELU's scale * alpha


def _check_p(p: float) -> None:
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _noise(input: Tensor, p: float, feature: bool) -> Tensor:
    """The kept mask (1 with probability 1 - p), per element or per (sample, channel)."""
    shape = tuple(input.shape)
    if feature:
        shape = shape[:2] + (1,) * (len(shape) - 2)
    return _random.bernoulli_mask(shape, p, input.dtype)


def _dropout(input: Tensor, p: float, training: bool, inplace: bool, feature: bool, alpha: bool):
    _check_p(p)
    if not training or p == 0.0 or input.numel() == 0:
        return input
    if p == 1.0:  # everything dropped (alpha dropout too: PyTorch returns zeros)
        out = _F.mul(input, _F.const(0.0, input.dtype))
        return input.copy_(out) if inplace else out
    mask = _noise(input, p, feature)
    if alpha:
        a = 1.0 / math.sqrt((_SELU_SATURATION**2 * p + 1.0) * (1.0 - p))
        shift = _F.add(_F.mul(_F.sub(mask, 1.0), _SELU_SATURATION * a), _SELU_SATURATION * a * p)
        out = _F.add(_F.mul(input, _F.mul(mask, a)), shift)
    else:
        out = _F.mul(input, _F.div(mask, 1.0 - p))
    return input.copy_(out) if inplace else out


def _unbatched(input: Tensor, batched_ndim: int, p, training, inplace, alpha=False) -> Tensor:
    if input.ndim == batched_ndim:
        return _dropout(input, p, training, inplace, True, alpha)
    out = _dropout(_F.unsqueeze(input, 0), p, training, False, True, alpha)
    out = _F.squeeze(out, 0)
    return input.copy_(out) if inplace and out is not input else out


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False):
    """Zero whole channels of (N, C, L) or (C, L) input with probability ``p``."""
    _check_p(p)
    if input.ndim not in (2, 3):
        raise RuntimeError(
            f"dropout1d: Expected 2D or 3D input, but received a {input.ndim}D input. Note that "
            "dropout1d exists to provide channel-wise dropout on inputs with 1 spatial "
            "dimension, a channel dimension, and an optional batch dimension (i.e. 2D or 3D "
            "inputs)."
        )
    return _unbatched(input, 3, p, training, inplace)


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False):
    """Zero whole channels of (N, C, H, W) input with probability ``p``."""
    _check_p(p)
    if input.ndim not in (3, 4):
        warnings.warn(
            f"dropout2d: Received a {input.ndim}-D input to dropout2d, which is deprecated and "
            "will result in an error in a future release. To retain the behavior and silence "
            "this warning, please use dropout instead. Note that dropout2d exists to provide "
            "channel-wise dropout on inputs with 2 spatial dimensions, a channel dimension, and "
            "an optional batch dimension (i.e. 3D or 4D inputs).",
            stacklevel=2,
        )
    if input.ndim == 3:
        warnings.warn(
            "dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D "
            "dropout behavior is desired - input is interpreted as shape (N, C, L), where C is "
            "the channel dim. This behavior will change in a future release to interpret the "
            "input as one without a batch dimension, i.e. shape (C, H, W). To maintain the 1D "
            "channel-wise dropout behavior, please switch to using dropout1d instead.",
            stacklevel=2,
        )
    return _dropout(input, p, training, inplace, True, False)


def dropout3d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False):
    """Zero whole channels of (N, C, D, H, W) or (C, D, H, W) input with probability ``p``."""
    _check_p(p)
    if input.ndim not in (4, 5):
        warnings.warn(
            f"dropout3d: Received a {input.ndim}-D input to dropout3d, which is deprecated and "
            "will result in an error in a future release. To retain the behavior and silence "
            "this warning, please use dropout instead. Note that dropout3d exists to provide "
            "channel-wise dropout on inputs with 3 spatial dimensions, a channel dimension, and "
            "an optional batch dimension (i.e. 4D or 5D inputs).",
            stacklevel=2,
        )
        return _dropout(input, p, training, inplace, True, False)
    return _unbatched(input, 5, p, training, inplace)


def alpha_dropout(input: Tensor, p: float = 0.5, training: bool = False, inplace: bool = False):
    """Dropout that keeps SELU's zero mean and unit variance (see the module docstring)."""
    return _dropout(input, p, training, inplace, False, True)


def feature_alpha_dropout(
    input: Tensor, p: float = 0.5, training: bool = False, inplace: bool = False
) -> Tensor:
    """Alpha dropout of whole channels: one draw per (sample, channel)."""
    return _dropout(input, p, training, inplace, True, True)


class _DropoutNd(Module):
    _fn = None

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        _check_p(p)
        self.p, self.inplace = p, inplace

    def forward(self, input: Tensor) -> Tensor:
        return type(self)._fn(input, self.p, self.training, self.inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout1d(_DropoutNd):
    _fn = staticmethod(dropout1d)


class Dropout2d(_DropoutNd):
    _fn = staticmethod(dropout2d)


class Dropout3d(_DropoutNd):
    _fn = staticmethod(dropout3d)


class AlphaDropout(_DropoutNd):
    _fn = staticmethod(alpha_dropout)


class FeatureAlphaDropout(_DropoutNd):
    _fn = staticmethod(feature_alpha_dropout)
