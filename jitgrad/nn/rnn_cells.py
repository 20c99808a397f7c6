"""One-step recurrent cells (``RNNCell``, ``LSTMCell``, ``GRUCell``) and the step math that
the cells and the multi-layer ``RNN``/``LSTM``/``GRU`` share.

Each step takes the input projection ``xp = x W_ih^T + b_ih`` and adds ``h W_hh^T + b_hh``; the
gate layouts are PyTorch's: LSTM rows (i, f, g, o), GRU rows (r, z, n) with
``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`` and ``h' = (1 - z) * n + z * h``.
"""

from __future__ import annotations

import math

from .. import dtypes
from ..autograd.function import Function
from ..factories import empty, zeros
from ..ops import functions as _F
from ..tensor import Tensor
from . import functional as F
from . import init
from .module import Module, Parameter

__all__ = ["RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]


class _Split(Function):
    """``split`` whose backward is one ``cat`` of the pieces' gradients. (Each slice's own
    backward pads its gradient to the whole input, and the pads are summed: work quadratic in
    the number of pieces, e.g. time steps.)"""

    @staticmethod
    def forward(ctx, x: Tensor, sizes, dim: int):
        ctx.dim = dim
        return tuple(_F.split(x, sizes, dim))

    @staticmethod
    def backward(ctx, *grads):
        return _F.cat(list(grads), ctx.dim), None, None


def _split(x: Tensor, sizes, dim: int) -> tuple:
    return _Split.apply(x, sizes, dim)


# -- one time step, given the input projection xp = x W_ih^T + b_ih ----------------------------
def _rnn_step(act, xp: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    return act(_F.add(xp, F.linear(h, w_hh, b_hh)))


def _lstm_step(xp, h, c, w_hh, b_hh, w_hr):
    gates = _F.add(xp, F.linear(h, w_hh, b_hh))
    i, f, g, o = _split(gates, gates.shape[1] // 4, 1)
    c = _F.add(_F.mul(_F.sigmoid(f), c), _F.mul(_F.sigmoid(i), _F.tanh(g)))
    h = _F.mul(_F.sigmoid(o), _F.tanh(c))
    if w_hr is not None:
        h = F.linear(h, w_hr)
    return h, c


def _gru_step(xp: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    xr, xz, xn = _split(xp, xp.shape[1] // 3, 1)
    hp = F.linear(h, w_hh, b_hh)
    hr, hz, hn = _split(hp, hp.shape[1] // 3, 1)
    r = _F.sigmoid(_F.add(xr, hr))
    z = _F.sigmoid(_F.add(xz, hz))
    n = _F.tanh(_F.add(xn, _F.mul(r, hn)))
    return _F.add(n, _F.mul(z, _F.sub(h, n)))  # (1 - z) * n + z * h


def _activation(mode: str):
    return _F.relu if mode == "RNN_RELU" else _F.tanh


class RNNCellBase(Module):
    """Parameters ``weight_ih`` (chunks * hidden, input), ``weight_hh`` (chunks * hidden,
    hidden), ``bias_ih`` and ``bias_hh``; all U(-1/sqrt(hidden), 1/sqrt(hidden))."""

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool, num_chunks: int, device=None,
        dtype=None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        dtype = dtypes.as_dtype(dtype) if dtype is not None else None

        def param(*shape):
            return Parameter(empty(shape, dtype=dtype, device=device))

        self.weight_ih = param(num_chunks * hidden_size, input_size)
        self.weight_hh = param(num_chunks * hidden_size, hidden_size)
        if bias:
            self.bias_ih = param(num_chunks * hidden_size)
            self.bias_hh = param(num_chunks * hidden_size)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        nonlinearity = getattr(self, "nonlinearity", "tanh")
        if nonlinearity != "tanh":
            s += f", nonlinearity={nonlinearity}"
        return s

    def _prepare(self, input: Tensor, hx, n_states: int):
        """Check ranks and sizes; returns (batched input, states, was_batched)."""
        name = type(self).__name__
        if input.ndim not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.ndim}D instead")
        if hx is not None:
            for k, h in enumerate(hx):
                label = "hidden" if n_states == 1 else f"hx[{k}]"
                if h.ndim not in (1, 2):
                    raise ValueError(
                        f"{name}: Expected {label} to be 1D or 2D, got {h.ndim}D instead"
                    )
        batched = input.ndim == 2
        if not batched:
            input = _F.unsqueeze(input, 0)
            if hx is not None:
                hx = tuple(_F.unsqueeze(h, 0) for h in hx)
        if input.shape[1] != self.input_size:
            raise RuntimeError(
                f"input has inconsistent input_size: got {input.shape[1]} expected "
                f"{self.input_size}"
            )
        batch = input.shape[0]
        if hx is None:
            z = zeros((batch, self.hidden_size), dtype=input.dtype, device=input.device)
            hx = (z,) * n_states
        for k, h in enumerate(hx):
            if h.shape[0] != batch:
                raise RuntimeError(
                    f"Input batch size {batch} doesn't match hidden{k} batch size {h.shape[0]}"
                )
            if h.shape[1] != self.hidden_size:
                raise RuntimeError(
                    f"hidden{k} has inconsistent hidden_size: got {h.shape[1]}, expected "
                    f"{self.hidden_size}"
                )
        return input, hx, batched

    def _project(self, input: Tensor) -> Tensor:
        return F.linear(input, self.weight_ih, self.bias_ih)


class RNNCell(RNNCellBase):
    """One step of an Elman RNN: ``h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)``."""

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
        device=None, dtype=None,
    ) -> None:  # fmt: skip
        super().__init__(input_size, hidden_size, bias, 1, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        if self.nonlinearity not in ("tanh", "relu"):
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        x, (h,), batched = self._prepare(input, None if hx is None else (hx,), 1)
        act = _F.relu if self.nonlinearity == "relu" else _F.tanh
        out = _rnn_step(act, self._project(x), h, self.weight_hh, self.bias_hh)
        return out if batched else _F.squeeze(out, 0)


class LSTMCell(RNNCellBase):
    """One LSTM step; returns ``(h', c')``."""

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None
    ) -> None:
        super().__init__(input_size, hidden_size, bias, 4, device=device, dtype=dtype)

    def forward(self, input: Tensor, hx: tuple | None = None) -> tuple:
        x, (h, c), batched = self._prepare(input, None if hx is None else tuple(hx), 2)
        h, c = _lstm_step(self._project(x), h, c, self.weight_hh, self.bias_hh, None)
        return (h, c) if batched else (_F.squeeze(h, 0), _F.squeeze(c, 0))


class GRUCell(RNNCellBase):
    """One GRU step: gates (r, z, n)."""

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None
    ) -> None:
        super().__init__(input_size, hidden_size, bias, 3, device=device, dtype=dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, None if hx is None else (hx,), 1)
        out = _gru_step(self._project(x), h, self.weight_hh, self.bias_hh)
        return out if batched else _F.squeeze(out, 0)
