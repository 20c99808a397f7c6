"""Muon (momentum orthogonalized by Newton-Schulz iterations) with PyTorch's update."""

from __future__ import annotations

import math
from collections.abc import Iterable

from .. import dtypes
from ..autograd.grad_mode import STATE
from ..factories import zeros_like
from ..ops import functions as F
from ..tensor import Tensor
from .optimizer import Optimizer

EPS = 1e-7
DEFAULT_A = 3.4445
DEFAULT_B = -4.7750
DEFAULT_C = 2.0315
DEFAULT_NS_STEPS = 5


def _orthogonalize(g: Tensor, coefficients, steps: int, eps) -> Tensor:
    """Newton-Schulz iterations X <- a X + (b A + c A^2) X with A = X X^T from X = G / ||G||
    (transposed so that X X^T is the smaller Gram matrix): close to the orthogonal factor of
    G's polar decomposition, with singular values near 1.

    In bfloat16 as in PyTorch, rounded where PyTorch rounds: every matrix product (and
    ``addmm``'s whole ``beta C + alpha A B``) is computed in float32 and rounded to bfloat16
    once."""
    if steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    if g.ndim != 2:
        raise ValueError("Input tensor gradient must be a 2D matrix")
    if len(coefficients) != 3:
        raise ValueError("Coefficients must be a tuple of exactly 3 values")
    a, b, c = coefficients
    bf16, f32 = dtypes.bfloat16, dtypes.float32

    tracing = STATE.tracer is not None

    def rounded(x: Tensor) -> Tensor:  # a float32 result as PyTorch's bfloat16 one
        if tracing:  # (compiled backends have no bfloat16: the same rounding in float32)
            return _round_to_bfloat16(x)
        return F.cast(F.cast(x, bf16), f32)

    tall = g.shape[0] > g.shape[1]
    x = rounded(g)
    if tall:
        x = x.T
    norm = F.clamp(rounded(F.norm(x)), min=eps)
    x = rounded(F.div(x, rounded(norm)))
    for _ in range(steps):
        gram = rounded(F.matmul(x, x.T))
        poly = rounded(F.addmm(gram, gram, gram, beta=b, alpha=c))
        x = rounded(F.addmm(x, poly, x, beta=a))
    x = x.T if tall else x
    return x if tracing else F.cast(x, bf16)


def _round_to_bfloat16(x: Tensor) -> Tensor:
    """float32 ``x`` rounded to bfloat16's 8 significant bits, to nearest with ties to even
    (what a cast to bfloat16 and back gives), in float32 operations only: x / u rounded to an
    integer, times u, where u = 2^(e - 7) is bfloat16's spacing at x's binade 2^e (e exactly
    from log2, corrected by one where log2 rounded across a power of two; subnormals share
    the smallest binade's spacing)."""
    size = F.abs(x)
    safe = F.where(F.eq(size, 0), F.ones_like(size), size)
    e = F.clamp(F.floor(F.log2(safe)), min=-126.0, max=127.0)
    e = F.where(F.gt(F.exp2(e), safe), F.sub(e, 1), e)  # (exact: powers of two)
    e = F.where(F.ge(F.div(safe, F.exp2(e)), 2.0), F.add(e, 1), e)
    step = F.exp2(F.sub(F.clamp(e, min=-126.0, max=127.0), 7))
    return F.mul(F.round(F.div(x, step)), step)


def _lr_scale(adjust_lr_fn, shape) -> float:
    rows, cols = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return math.sqrt(max(1, rows / cols))
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return 1.0


class Muon(Optimizer):
    r"""PyTorch's Muon, for 2-D parameters (use another optimizer, e.g. AdamW, for the rest):

    B <- B + (1 - mu)(g - B);  U = g + mu (B - g) if nesterov else B
    O = NewtonSchulz(U);  p <- p (1 - lr wd);  p <- p - lr s O
    where s = sqrt(max(1, rows / cols)) (``adjust_lr_fn`` None or ``"original"``) or
    0.2 sqrt(max(rows, cols)) (``"match_rms_adamw"``).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = (DEFAULT_A, DEFAULT_B, DEFAULT_C),
        eps: float = EPS,
        ns_steps: int = DEFAULT_NS_STEPS,
        adjust_lr_fn: str | None = None,
    ) -> None:
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= lr:
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if not 0.0 <= momentum:
            raise ValueError(f"momentum should be >= 0 but is: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"weight decay should be >= 0 but is: {weight_decay}")
        if adjust_lr_fn is not None and adjust_lr_fn not in ("original", "match_rms_adamw"):
            raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported")
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            ns_coefficients=ns_coefficients,
            eps=eps,
            ns_steps=ns_steps,
            adjust_lr_fn=adjust_lr_fn,
        )
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(
                        "Muon only supports 2D parameters whereas we found a parameter with "
                        f"size: {p.size()}"
                    )

    def _init_state(self, p: Tensor, state: dict, group: dict) -> None:
        state["momentum_buffer"] = zeros_like(p)

    def _update(self, p: Tensor, grad: Tensor, state: dict, group: dict) -> None:
        if grad.ndim != 2:
            raise ValueError("Param gradient must be a 2D matrix")
        lr, momentum = self._hyper(group, "lr"), self._hyper(group, "momentum")
        buf = state["momentum_buffer"]
        buf.lerp_(grad, 1 - momentum)
        update = F.lerp(grad, buf, momentum) if self._option(group, "nesterov") else buf
        update = _orthogonalize(
            update,
            self._hyper(group, "ns_coefficients"),
            self._option(group, "ns_steps"),
            self._hyper(group, "eps"),
        )
        scale = _lr_scale(self._option(group, "adjust_lr_fn"), p.shape)
        p.mul_(1 - lr * self._hyper(group, "weight_decay"))
        # (the bfloat16 update enters in the parameter's dtype, as PyTorch's mixed add_ does)
        p.sub_(F.mul(F.cast(update, p.dtype), lr * scale))
