"""The IR: tapes, tracing and passes."""

from .passes import cse, dce, fold_constants, optimize, simplify
from .tape import Binding, Eqn, Tape, Var
from .tracer import TraceError, Tracer, hyper, tracing

__all__ = [
    "Binding",
    "Eqn",
    "Tape",
    "TraceError",
    "Tracer",
    "Var",
    "cse",
    "dce",
    "fold_constants",
    "hyper",
    "optimize",
    "simplify",
    "tracing",
]
