"""Primitives (``prims``), the op table (``registry``), front-end functions and Tensor methods."""

from . import functions, prims, shape_ops  # noqa: F401
from .methods import install as _install
from .registry import OPS, PRIMS, Op, Prim  # noqa: F401

_install()
