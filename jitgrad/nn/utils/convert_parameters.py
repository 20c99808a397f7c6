"""``parameters_to_vector`` / ``vector_to_parameters``: parameters as one flat vector."""

from __future__ import annotations

from collections.abc import Iterable

from ...ops import functions as _F
from ...tensor import Tensor

__all__ = ["parameters_to_vector", "vector_to_parameters"]


def _typename(value) -> str:
    cls = type(value)
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """The parameters flattened and concatenated, in order, into one 1-D tensor."""
    return _F.cat([_F.reshape(p, (-1,)) for p in parameters])


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Slice ``vec`` into the parameters, in order; each parameter's data becomes its slice."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"expected torch.Tensor, but got: {_typename(vec)}")
    pointer = 0
    for param in parameters:
        n = param.numel()
        param.data = _F.reshape(vec[pointer : pointer + n], tuple(param.shape)).data
        pointer += n
