"""jitgrad: PyTorch's eager autograd API, plus a JIT that compiles whole training steps.

import jitgrad as jg
x = jg.randn(3, requires_grad=True)
(x * 2 + 1).sum().backward()
x.grad  # tensor([2., 2., 2.])
"""

import warnings as _warnings

# (memory: malloc settings for eager temporaries; ops installs the Tensor methods)
from . import autograd, linalg, memory, nn, ops, optim, utils  # noqa: F401
from .autograd.grad_mode import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
)
from .compile import AgreementError, CompiledFunction, compile  # noqa: A004
from .dtypes import (
    Size,
    bfloat16,
    bool_,
    device,
    double,
    dtype,
    float16,
    float32,
    float64,
    get_default_dtype,
    half,
    int8,
    int16,
    int32,
    int64,
    long,
    set_default_dtype,
    short,
    uint8,
    uint64,
)
from .dtypes import bool_ as bool  # noqa: A004
from .dtypes import float32 as float  # noqa: A004
from .dtypes import int32 as int  # noqa: A004
from .factories import (
    arange,
    as_tensor,
    empty,
    empty_like,
    eye,
    from_numpy,
    full,
    full_like,
    linspace,
    ones,
    ones_like,
    tensor,
    zeros,
    zeros_like,
)
from .ir import TraceError
from .ops.functions import *  # noqa: F403
from .ops.functions import abs, all, any, max, min, pow, sum  # noqa: A004
from .random import (
    Generator,
    default_generator,
    get_rng_state,
    initial_seed,
    manual_seed,
    rand,
    randint,
    randn,
    randperm,
    seed,
    set_rng_state,
)
from .random_dist import (
    bernoulli,
    multinomial,
    normal,
    poisson,
    rand_like,
    randint_like,
    randn_like,
)
from .serialization import load, save
from .tensor import Tensor, apply

# PyTorch computes inf and nan silently (log(0), 0/0, a softmax over a row of -inf); NumPy, under
# jitgrad's eager ops, warns. Its floating-point warnings raised from jitgrad's own code are
# ignored (a filter costs nothing per op, unlike an errstate); jitgrad's own warnings and NumPy's
# in the caller's code are not touched.
_QUIET_FLOATING_POINT = dict(
    action="ignore",
    message=r"(invalid value|divide by zero|overflow|underflow) encountered",
    category=RuntimeWarning,
    module=r"jitgrad(\.|$)",
)
_warnings.filterwarnings(**_QUIET_FLOATING_POINT)

__version__ = "0.1.0"


def is_tensor(obj) -> bool:
    return isinstance(obj, Tensor)


def numel(input: Tensor) -> int:
    return input.numel()


def is_floating_point(input: Tensor) -> bool:
    return input.is_floating_point()


def promote_types(type1: dtype, type2: dtype) -> dtype:
    """The dtype two dtypes promote to (``torch.promote_types``: int8 with uint8 is int16,
    float16 with bfloat16 is float32)."""
    from .dtypes import as_dtype, promote

    return promote(as_dtype(type1), as_dtype(type2))
