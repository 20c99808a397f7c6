import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

# Front-end tests compile with the reference interpreter (fast, and the behaviour under test is
# the same for every backend); the Numba backend has tests of its own that name it.
os.environ.setdefault("JITGRAD_BACKEND", "interpreter")
# Compiled functions wait for their compiled code (jitgrad.compile's ``wait``), so that a
# test's calls after a trace run compiled, as it asserts; the tests of background builds ask
# for ``wait=False``.
os.environ.setdefault("JITGRAD_COMPILE_WAIT", "1")
# A backend that cannot compile a tape raises instead of falling back to the interpreter, so a
# backend test never compares the interpreter with itself (the fallback's own tests unset it).
os.environ.setdefault("JITGRAD_STRICT_BACKENDS", "1")

# CI runs the property tests on a fixed sequence of examples, so a submission's result does not
# depend on which random programs a run happened to draw; locally they keep exploring.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
