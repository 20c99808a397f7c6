"""Locks that a forked child gets back free.

A thread holding a lock when another thread forks does not exist in the child, so the child's
copy of that lock would stay held for good, and the child's first compiled call (or trace, or
load of a generated module) would wait forever. jitgrad makes the locks it takes around those
here, and ``os.register_at_fork`` frees them all in the child, as the standard library does
for its own (``logging``, ``concurrent.futures``). What they guard is left fit for the next
call: a driver's workspace is overwritten by every call, a trace enters its function's cache
only when done, and a generated module's file is written whole (a temporary file, renamed).
(The spin lock generated drivers take around BLAS's thread count is freed the same way, in
``numba_cpu.runtime``.)"""

from __future__ import annotations

import os
import threading
import weakref

_LOCKS: weakref.WeakSet = weakref.WeakSet()


def new_lock(reentrant: bool = True):
    """A ``threading.RLock`` (or ``Lock``) that a forked child starts with free."""
    lock = threading.RLock() if reentrant else threading.Lock()
    _LOCKS.add(lock)
    return lock


def _free_in_child() -> None:
    for lock in list(_LOCKS):
        lock._at_fork_reinit()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_free_in_child)
