"""nn.functional activations declared in the op table (``namespace="nn.functional"``)."""

from __future__ import annotations

import numpy as np

from ..ops import functions as _F
from ..ops.registry import op
from ..ops.spec import Spec, arg
from ..tensor import Tensor


def _inplace(input: Tensor, out: Tensor, inplace: bool) -> Tensor:
    return input.copy_(out) if inplace else out


@op(
    namespace="nn.functional",
    spec=Spec(
        [arg(3, 4, away_from=(-1.0, 1.0))], lambda x: np.clip(x, -1.0, 1.0), differentiable=(0,)
    ),
)
def hardtanh(
    input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False
) -> Tensor:
    """``clamp(input, min_val, max_val)``."""
    if min_val > max_val:
        raise ValueError("min_val cannot be greater than max_val")
    return _inplace(input, _F.clamp(input, min_val, max_val), inplace)


@op(
    namespace="nn.functional",
    spec=Spec(
        [arg(3, 4, lo=-1.0, hi=7.0, away_from=(0.0, 6.0))],
        lambda x: np.clip(x, 0.0, 6.0),
        differentiable=(0,),
    ),
)
def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    """``min(max(0, x), 6)``."""
    return _inplace(input, _F.clamp(input, 0.0, 6.0), inplace)


@op(
    namespace="nn.functional",
    spec=Spec([arg(3, 4, away_from=(0.0,))], lambda x: x / (1 + np.abs(x)), differentiable=(0,)),
)
def softsign(input: Tensor) -> Tensor:
    """``x / (1 + |x|)``."""
    return input / (input.abs() + 1)


@op(
    namespace="nn.functional",
    spec=Spec([arg(3, 4)], lambda x: x - np.tanh(x), differentiable=(0,)),
)
def tanhshrink(input: Tensor) -> Tensor:
    """``x - tanh(x)``."""
    return input - input.tanh()
