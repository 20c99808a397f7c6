"""Backends: each lowers a Tape to an executable (``lower(tape) -> Executable``, the contract in
``contract.py``)."""

from __future__ import annotations

import os

from . import interpreter

BACKENDS = {"interpreter": interpreter}
try:
    from . import numba_cpu

    BACKENDS["numba"] = numba_cpu
except ImportError as exc:  # pragma: no cover - numba is a dependency; keep a clear message
    _NUMBA_ERROR = exc


def get(name: str):
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(
            f"unknown backend {name!r}; available: {', '.join(sorted(BACKENDS))}"
        ) from None


def default_for(device: str = "cpu") -> str:
    """The best backend available for tensors on ``device`` ($JITGRAD_BACKEND overrides)."""
    forced = os.environ.get("JITGRAD_BACKEND")
    if forced:
        get(forced)
        return forced
    return "numba" if "numba" in BACKENDS else "interpreter"
