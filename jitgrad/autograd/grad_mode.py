"""Autograd state (per thread) and the grad-mode context managers (no_grad, enable_grad, ...)."""

from __future__ import annotations

import functools
import threading


class _Anomaly:
    __slots__ = ("enabled", "check_nan")

    def __init__(self):
        self.enabled = False
        self.check_nan = True


_ANOMALY = _Anomaly()


def _process_wide(name: str) -> property:
    """``_ANOMALY``'s attribute ``name``, read and set through a thread's state like the rest."""
    return property(
        lambda self: getattr(_ANOMALY, name), lambda self, value: setattr(_ANOMALY, name, value)
    )


class _State(threading.local):
    """Flags read on every dispatch. Grad mode and the tape recorder belong to the thread, as
    PyTorch's grad mode does: ``no_grad`` in one thread leaves the others recording, a thread
    starts with gradients enabled, and a compiled function traced in one thread records only
    that thread's operations. Anomaly detection is process-wide, as in PyTorch."""

    def __init__(self):
        self.grad_enabled = True
        self.tracer = None  # the active tape recorder, if any (see jitgrad.ir)

    anomaly = _process_wide("enabled")
    anomaly_check_nan = _process_wide("check_nan")


STATE = _State()


def is_grad_enabled() -> bool:
    return STATE.grad_enabled


class _GradModeBase:
    """Context manager that is also a decorator, like PyTorch's."""

    _mode = True

    def __new__(cls, orig_func=None):
        # bare ``@no_grad`` (without parentheses) decorates directly, as in PyTorch 2
        if callable(orig_func):
            return cls()(orig_func)
        return super().__new__(cls)

    def __enter__(self):
        self._prev = STATE.grad_enabled
        STATE.grad_enabled = self._mode
        return self

    def __exit__(self, *exc):
        STATE.grad_enabled = self._prev
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.__class__():
                return fn(*args, **kwargs)

        return wrapper


class no_grad(_GradModeBase):  # noqa: N801
    """Disable gradient recording inside the block (or the decorated function)."""

    _mode = False


class enable_grad(_GradModeBase):  # noqa: N801
    """Enable gradient recording inside the block, even within ``no_grad``."""

    _mode = True


class inference_mode(_GradModeBase):  # noqa: N801
    """Like ``no_grad``: nothing inside records a graph (``mode=False`` makes it a no-op)."""

    def __init__(self, mode: bool = True):
        self._enabled = bool(mode)

    def __enter__(self):
        self._prev = STATE.grad_enabled
        if self._enabled:
            STATE.grad_enabled = False
        return self

    def __call__(self, fn):
        enabled = self._enabled

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with inference_mode(enabled):
                return fn(*args, **kwargs)

        return wrapper


class set_grad_enabled:  # noqa: N801
    """Set grad mode on; usable as a function call, a context manager or a decorator."""

    def __init__(self, mode: bool):
        self._prev = STATE.grad_enabled
        self._mode = bool(mode)
        STATE.grad_enabled = self._mode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        STATE.grad_enabled = self._prev
        return False

    def __call__(self, fn):
        mode = self._mode
        STATE.grad_enabled = self._prev

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(mode):
                return fn(*args, **kwargs)

        return wrapper


class detect_anomaly:  # noqa: N801
    """Record where each node was created and fail on NaN produced by a backward function."""

    def __init__(self, check_nan: bool = True):
        self._check_nan = check_nan

    def __enter__(self):
        self._prev = (STATE.anomaly, STATE.anomaly_check_nan)
        STATE.anomaly, STATE.anomaly_check_nan = True, self._check_nan
        return self

    def __exit__(self, *exc):
        STATE.anomaly, STATE.anomaly_check_nan = self._prev
        return False


def set_detect_anomaly(mode: bool, check_nan: bool = True) -> None:
    STATE.anomaly, STATE.anomaly_check_nan = bool(mode), check_nan


def is_anomaly_enabled() -> bool:
    return STATE.anomaly
