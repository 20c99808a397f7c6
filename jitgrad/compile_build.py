"""Lowering and building for ``jitgrad.compile``: a traced tape becomes an executable on the
backend (or the reference interpreter, with one warning, when the backend fails), built now or
in the compile worker while calls run eagerly, and loaded in slices of LOAD_SLICE_S. A mixin of
``CompiledFunction``, and ``_Entry``, one traced signature.
"""

from __future__ import annotations

import os
import time
import traceback
import warnings

from . import backends
from .compile_backward import _split
from .compile_host import _make_runner, guard_check
from .ir import passes
from .ir.tape import Tape

_BUILDING = object()  # a cached trace whose compiled code is not built yet: run eagerly
# seconds a call spends loading a background build's code (then it runs eagerly, once more)
LOAD_SLICE_S = 0.01
# a waited-for build shares its jobs with the compile worker from this many new kernels on
SHARE_MIN = 3
# set to 1, a backend that cannot compile a tape raises instead of falling back (tests)
STRICT_ENV = "JITGRAD_STRICT_BACKENDS"


class _Entry:
    """One traced signature: tapes, executables, guards and how to bind and write back."""

    def __init__(self, mode, tape, exe, out_tree, guards, bwd=None):
        self.mode = mode  # "step" | "inside"
        self.tape = tape
        self.exe = exe
        self.out_tree = out_tree
        self.guards = guards
        self.bwd = bwd  # (tape, exe, diff_inputs, out_slots) for inside mode
        self.n_outputs = 0  # user outputs; an inside-mode forward returns residuals after them
        self.fetch = None  # the input bindings in order (filled on first run)
        self.runner = None  # generated straight-line host code for a whole-step call
        self.guards_hold = guard_check(guards)  # (leaves) -> bool
        self.ready = True  # False while a background build of its code is in flight
        self.loading = None  # once the worker has built it: the steps loading its code
        self.failed = None  # why its background build failed (it then stays eager)
        self.warned = False


class BuildingMixin:
    """``CompiledFunction``'s lowering and building (see the module docstring)."""

    def _backend_module(self):
        return backends.get(self.backend or backends.default_for("cpu"))

    def _lower_tape(self, backend, tape: Tape):
        """``backend.lower(tape, build=False)``; if the backend cannot compile the tape, the
        reference interpreter runs it instead (with a warning): the traced call already
        happened, so failing here would leave its effects without a result."""
        try:
            return backend.lower(tape, build=False)
        except Exception as exc:  # noqa: BLE001 - any backend failure has the same remedy
            if backend is backends.interpreter:
                raise
            return self._fall_back(backend, tape, exc)

    def _fall_back(self, backend, tape: Tape, exc: Exception):
        """The interpreter's executable for ``tape``, which ``backend`` could not compile; with
        ``STRICT_ENV`` set (the test suite sets it) the failure is raised instead, so that a
        backend test never compares the interpreter with itself."""
        name = backend.__name__.rsplit(".", 1)[-1]
        if os.environ.get(STRICT_ENV) == "1":
            raise RuntimeError(
                f"jitgrad.compile: the {name} backend could not compile {tape.name!r} "
                f"({type(exc).__name__}: {exc}); {STRICT_ENV}=1 forbids running it with the "
                "reference interpreter instead."
            ) from exc
        warnings.warn(
            f"jitgrad.compile: the {name} backend could not "
            f"compile {tape.name!r} ({type(exc).__name__}: {exc}); running it with the "
            "reference interpreter instead. Please report this with the tape "
            "(cfn.tape(*args)).",
            RuntimeWarning,
            stacklevel=5,
        )
        self.stats.retrace_reasons.append(f"backend fell back to the interpreter: {exc}")
        return backends.interpreter.lower(tape)

    def _lower(self, tape: Tape, bwd_info, out_tree, guards, inside) -> _Entry:
        t0 = time.perf_counter()
        backend = self._backend_module()
        bwd = None
        if bwd_info is not None:
            tape, bwd_tape, diff_inputs, out_slots = _split(tape, *bwd_info)
            if self.optimize:
                bwd_tape = passes.optimize(bwd_tape)
            bwd = (bwd_tape, self._lower_tape(backend, bwd_tape), diff_inputs, out_slots)
        if self.optimize:
            tape = passes.optimize(tape)
        tape.verify()
        exe = self._lower_tape(backend, tape)
        self.stats.compiles += 1
        entry = _Entry("inside" if inside else "step", tape, exe, out_tree, guards, bwd)
        exes = [exe] + ([bwd[1]] if bwd is not None else [])
        jobs = [job for x in exes for job in x.jobs()]
        if jobs and not self.waits:  # the build goes to another process (compile_worker)
            entry.ready = False
            self._build_in_background(entry, exes, jobs)
        else:
            try:
                self._build_now(exes, jobs)
            except Exception as exc:  # noqa: BLE001 - as in _lower_tape
                if backend is backends.interpreter:
                    raise
                entry.exe = self._fall_back(backend, tape, exc)
                if bwd is not None:
                    entry.bwd = (bwd[0], backends.interpreter.lower(bwd[0]), *bwd[2:])
        self.stats.compile_seconds += time.perf_counter() - t0
        return entry

    def _build_now(self, exes: list, jobs: list) -> None:
        """Build ``exes`` before returning: with the compile worker's help when there is much
        to compile (it takes the jobs from the last, this process from the first)."""
        shared = None
        if sum(x.new_modules() for x in exes) >= SHARE_MIN:
            from . import compile_worker

            shared = compile_worker.service().share(self._backend_name(), jobs)
        first = 0
        for x in exes:
            for _ in x.build_steps(shared, first):
                pass
            first += len(x.jobs())
        self.stats.backend_compiles += sum(x.compiled for x in exes)
        self.stats.backend_compiles += shared.compiled if shared is not None else 0

    def _backend_name(self) -> str:
        return self._backend_module().__name__.rsplit(".", 1)[-1]

    def _build_in_background(self, entry: _Entry, exes: list, jobs: list) -> None:
        """Hand ``jobs`` to the compile worker. When it has built them (its result thread calls
        ``done``), the entry's calls load the code from the caches, a slice at a time
        (``_load``), then switch to it."""
        from . import compile_worker

        t0 = time.perf_counter()

        def steps(compiled):
            for x in exes:
                yield from x.build_steps()
            self.stats.backend_compiles += compiled + sum(x.compiled for x in exes)

        def done(error, compiled):
            self.stats.build_seconds += time.perf_counter() - t0
            if error is not None:
                self._build_failed(entry, error)
            else:
                entry.loading = steps(compiled)

        try:
            compile_worker.service().submit(self._backend_name(), jobs, done)
        except compile_worker.BuildError as exc:
            done(exc, 0)

    def _load(self, entry: _Entry, budget: float | None = LOAD_SLICE_S) -> None:
        """Advance the loading of ``entry``'s built code for up to LOAD_SLICE_S; when it is
        loaded, make its runner and mark it ready. (On the calling thread: a thread of its own
        would wait for the GIL after each of LLVM's many short calls, for minutes behind a
        busy training loop.)"""
        deadline = None if budget is None else time.perf_counter() + budget
        try:
            for _ in entry.loading:
                if deadline is not None and time.perf_counter() > deadline:
                    return
            if entry.mode == "step":
                entry.runner = _make_runner(entry, lambda leaves, e=entry: self._run(e, leaves))
        except Exception as exc:  # noqa: BLE001  (the function stays eager, see _eager)
            self._build_failed(entry, exc)
        entry.loading = None
        entry.ready = True

    def _build_failed(self, entry: _Entry, exc: Exception) -> None:
        """Record why ``entry``'s background build failed; its next call warns (``_eager``)."""
        entry.failed = str(exc) if hasattr(exc, "details") else f"{type(exc).__name__}: {exc}"
        details = getattr(exc, "details", "") or traceback.format_exc(limit=8)
        self.stats.retrace_reasons.append(f"background build failed:\n{details}")
        entry.ready = True

    # -- inside an eager graph -----------------------------------------------------------------
