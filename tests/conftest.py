import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

# Front-end tests compile with the reference interpreter (fast, and the behaviour under test is
# the same for every backend); the Numba backend has tests of its own that name it.
os.environ.setdefault("JITGRAD_BACKEND", "interpreter")
