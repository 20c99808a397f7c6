"""Process memory settings for eager tensors: large temporaries reuse freed memory.

Every eager operation returns a new array, and a training step makes and frees many of them.
With glibc's default malloc settings, arrays of a few megabytes are mapped fresh from the
operating system and unmapped when freed, so each operation first page-faults its whole output
in: the 1,000,000-element elementwise chain (W2) took 41 ms a step that way, 9 ms with its
temporaries taken from memory freed a moment before (2.4 million page faults against 31
thousand). PyTorch avoids the same cost with its caching allocator.

``tune_malloc`` (run when jitgrad is imported, on glibc) raises two thresholds: blocks up to
32 MiB come from the heap, and freed memory at the top of the heap goes back to the operating
system only beyond 128 MiB. The process may keep up to that much freed memory for reuse.
``JITGRAD_MALLOC_TUNING=0`` leaves malloc as it was.
"""

from __future__ import annotations

import ctypes
import os

ENV = "JITGRAD_MALLOC_TUNING"
MMAP_THRESHOLD = 32 << 20  # bytes: larger blocks are still mapped fresh
TRIM_THRESHOLD = 128 << 20  # bytes of free heap top kept for reuse

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def tune_malloc() -> bool:
    """Set glibc's thresholds (see the module docstring); False where this is not glibc or
    ``JITGRAD_MALLOC_TUNING=0``."""
    if os.environ.get(ENV, "1").strip() == "0":
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  (glibc only: other mallocs differ)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


TUNED = tune_malloc()
