"""Backends: each lowers a Tape to an executable (``lower(tape) -> Executable``)."""

from __future__ import annotations

from . import interpreter

BACKENDS = {"interpreter": interpreter}


def get(name: str):
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(
            f"unknown backend {name!r}; available: {', '.join(sorted(BACKENDS))}"
        ) from None


def default_for(device: str = "cpu") -> str:
    """The best backend available for tensors on ``device``."""
    return "interpreter"
