"""The contract between ``jitgrad.compile`` and a backend: ``lower(tape) -> Executable``.

A backend module has ``lower(tape, build=True)``, ``lowers(prim) -> bool`` (whether it has a
lowering for a primitive) and ``run_jobs(jobs) -> int`` (builds another process handed over).
What ``lower`` returns has exactly the members below; ``compile``, the host-side call code and
the compile worker use nothing else, and probe for nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, runtime_checkable

from ..ir.tape import Tape, Var


@runtime_checkable
class Executable(Protocol):
    backend: str  # the backend's name, as ``jitgrad.backends.get`` takes it
    tape: Tape  # the tape it runs
    compiled: int  # machine-code compilations its build did (0 when caches served it)
    # One call at a time when calls share state (a workspace): a lock, or None.
    lock: Any
    # Straight-line host code for a whole-step call (see ``compile_host._make_runner``), or None
    # where the general path is all there is.
    direct_call: Callable | None

    def __call__(self, inputs: list) -> tuple:
        """(outputs, write values) for the input arrays, in ``tape.inputs`` order."""

    def values(self, inputs: list) -> dict:
        """Every stored value of the last call (Var -> array), for agreement checks."""

    def kernel_of(self, var: Var) -> str | None:
        """Which kernel call computed ``var`` (for messages), or None."""

    def source(self) -> str:
        """What it runs, readable: the generated source, or the tape."""

    def profile(self, inputs: list) -> tuple:
        """One call timing each kernel call (each equation): ([(seconds, what)], outputs,
        writes)."""

    def jobs(self) -> list:
        """What another process can build for it (picklable), possibly nothing."""

    def build(self) -> None:
        """Build everything now, in this process."""

    def build_steps(self, shared=None, first: int = 0) -> Iterator:
        """Build (or load what ``shared`` built) in steps, one ``yield`` each."""

    def new_modules(self) -> int:
        """How many of its modules no cache holds."""


MEMBERS = (
    "backend", "tape", "compiled", "lock", "direct_call", "__call__", "values", "kernel_of",
    "source", "profile", "jobs", "build", "build_steps", "new_modules",
)  # fmt: skip
