"""Helpers that generated kernels import: the counter-based random draw, vectorizable math."""

from __future__ import annotations

import numpy as np
from numba import njit

from ..vecmath import *  # noqa: F401,F403  (vexp, vlog, vtanh, ... used by kernels)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_COUNTER_MUL = np.uint64(0xD1B54A32D192ED03)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_S40, _S11 = np.uint64(40), np.uint64(11)


@njit(inline="always", cache=True)
def _bits(s0, s1, i):
    # the same splitmix64 mix of (seed, counter, index) as the rand primitive's impl
    z = np.uint64(i) + (s0 * _GOLDEN + s1 * _COUNTER_MUL)
    z = z ^ (z >> _S30)
    z = z * _MIX1
    z = z ^ (z >> _S27)
    z = z * _MIX2
    return z ^ (z >> _S31)


@njit(inline="always", cache=True)
def rand_f32(s0, s1, i):
    return np.float32(_bits(s0, s1, i) >> _S40) * np.float32(1.0 / 16777216.0)


@njit(inline="always", cache=True)
def rand_f64(s0, s1, i):
    return np.float64(_bits(s0, s1, i) >> _S11) * (1.0 / 9007199254740992.0)
