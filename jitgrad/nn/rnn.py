"""Recurrent layers: ``RNN``, ``LSTM``, ``GRU`` (the cells are in ``rnn_cells``), PyTorch-shaped.

Everything is a composition of existing ops (linear, sigmoid, tanh, split, cat, stack), so it
has gradients, traces and compiles with nothing of its own; under ``jitgrad.compile`` the time
loop unrolls at trace time for the traced sequence length.

Each layer and direction first projects the whole input sequence with one product
(``x @ W_ih^T + b_ih`` over all time steps at once); the loop then only adds ``h @ W_hh^T + b_hh``
per step. A padded input runs every sequence at every step; a ``PackedSequence`` (sequences
sorted by decreasing length) runs step ``t`` on the first ``batch_sizes[t]`` rows only, so each
sequence's last state is the one at its last real step.
"""

from __future__ import annotations

import math
import numbers
import warnings

from .. import dtypes
from ..factories import empty, zeros
from ..ops import functions as _F
from ..tensor import Tensor
from . import functional as F
from . import init
from .module import Module, Parameter
from .rnn_cells import (  # noqa: F401  (the cells: re-exported, as in torch.nn.modules.rnn)
    GRUCell,
    LSTMCell,
    RNNCell,
    RNNCellBase,
    _activation,
    _gru_step,
    _lstm_step,
    _rnn_step,
    _split,
)
from .utils.rnn import PackedSequence

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _run_direction(mode, xp_steps, sizes, state, weights, reverse: bool):
    """One layer, one direction over the steps. ``xp_steps[t]``: the input projection of step
    ``t`` (``sizes[t]`` rows); ``state``: the initial (h,) or (h, c), ``sizes[0]`` rows each.
    Returns the per-step outputs (in time order) and the final state of every row."""
    w_hh, b_hh, w_hr = weights
    act = _activation(mode)

    def step(xp, st):
        if mode == "LSTM":
            return _lstm_step(xp, st[0], st[1], w_hh, b_hh, w_hr)
        if mode == "GRU":
            return (_gru_step(xp, st[0], w_hh, b_hh),)
        return (_rnn_step(act, xp, st[0], w_hh, b_hh),)

    n_steps = len(sizes)
    outs: list = [None] * n_steps
    if not reverse:
        done: list = []  # final states of rows whose sequences ended, later rows first
        cur = state
        for t in range(n_steps):
            bs = sizes[t]
            if cur[0].shape[0] > bs:  # sequences bs.. ended at step t-1
                done.append(tuple(s[bs:] for s in cur))
                cur = tuple(s[:bs] for s in cur)
            cur = step(xp_steps[t], cur)
            outs[t] = cur[0]
        done.append(cur)
        final = tuple(_F.cat([d[k] for d in reversed(done)], 0) for k in range(len(cur)))
        return outs, final
    # reverse: sequences start (at their last real step) as the batch grows
    cur = tuple(s[: sizes[-1]] for s in state)
    for t in range(n_steps - 1, -1, -1):
        bs, have = sizes[t], cur[0].shape[0]
        if have < bs:
            cur = tuple(_F.cat([c, s[have:bs]], 0) for c, s in zip(cur, state))
        cur = step(xp_steps[t], cur)
        outs[t] = cur[0]
    return outs, cur


class RNNBase(Module):
    """Shared parameters, checks and the layer/direction loop of RNN, LSTM and GRU."""

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if (
            not isinstance(dropout, numbers.Number)
            or isinstance(dropout, bool)
            or not 0 <= dropout <= 1
        ):
            raise ValueError(
                "dropout should be a number in range [0, 1] representing the probability of an "
                "element being zeroed"
            )
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero "
                "dropout expects num_layers greater than 1, but got "
                f"dropout={dropout} and num_layers={num_layers}",
                stacklevel=3,
            )
        for name, value in (("bias", bias), ("batch_first", batch_first)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} should be of type bool, got: {type(value).__name__}")
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, int):
                raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
            if value <= 0:
                raise ValueError(f"{name} must be greater than zero")
        if num_layers <= 0:
            raise ValueError("num_layers must be greater than zero")
        if proj_size < 0:
            raise ValueError(
                "proj_size should be a positive integer or zero to disable projections"
            )
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        if mode not in _GATES:
            raise ValueError("Unrecognized RNN mode: " + mode)
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        dtype = dtypes.as_dtype(dtype) if dtype is not None else None
        num_directions = 2 if bidirectional else 1
        gate_size = _GATES[mode] * hidden_size
        real_hidden = proj_size if proj_size > 0 else hidden_size

        def param(*shape):
            return Parameter(empty(shape, dtype=dtype, device=device))

        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else real_hidden * num_directions
            for direction in range(num_directions):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                shapes = {
                    "weight_ih": (gate_size, layer_input),
                    "weight_hh": (gate_size, real_hidden),
                }
                if bias:
                    shapes.update(bias_ih=(gate_size,), bias_hh=(gate_size,))
                if proj_size > 0:
                    shapes["weight_hr"] = (proj_size, hidden_size)
                names = []
                for kind, shape in shapes.items():
                    setattr(self, kind + suffix, param(*shape))
                    names.append(kind + suffix)
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    @property
    def _flat_weights(self) -> list:
        return [getattr(self, n, None) for n in self._flat_weights_names]

    @property
    def all_weights(self) -> list:
        return [[getattr(self, n) for n in names] for names in self._all_weights]

    def flatten_parameters(self) -> None:
        """A no-op, as in PyTorch off cuDNN: the weights are used where they are."""

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s

    # -- checks ----------------------------------------------------------------------------------
    def _check_input(self, input: Tensor, packed: bool) -> None:
        w = self._flat_weights[0]
        if input.dtype != w.dtype:
            raise ValueError(
                f"RNN input dtype ({input.dtype}) does not match weight dtype "
                f"({w.dtype}). Convert input: "
                f"input.to({w.dtype}), or convert model: "
                f"model.to({input.dtype})"
            )
        expected = 2 if packed else 3
        if input.ndim != expected:
            raise RuntimeError(f"input must have {expected} dimensions, got {input.ndim}")
        if input.shape[-1] != self.input_size:
            hint = ""
            if not packed and self.input_size in tuple(input.shape[:-1]):
                hint = (
                    " (the input's layout may not match batch_first="
                    f"{self.batch_first}: it expects "
                    + ("(batch, seq, feature)" if self.batch_first else "(seq, batch, feature)")
                    + ")"
                )
            raise RuntimeError(
                "input.size(-1) must be equal to input_size. "
                f"Expected {self.input_size}, got {input.shape[-1]}" + hint
            )

    def _check_hidden(self, hx: Tensor, batch: int, size: int, which: str | None) -> None:
        expected = (self.num_layers * (2 if self.bidirectional else 1), batch, size)
        if tuple(hx.shape) != expected:
            label = "hidden size" if which is None else f"hidden[{which}] size"
            raise RuntimeError(
                f"Expected {label} {expected}, got {list(hx.shape)}; the initial state is "
                "(num_layers * num_directions, batch, hidden) for batched input"
            )

    def _zeros(self, input: Tensor, batch: int, size: int) -> Tensor:
        n = self.num_layers * (2 if self.bidirectional else 1)
        return zeros((n, batch, size), dtype=input.dtype, device=input.device)

    # -- the layer loop --------------------------------------------------------------------------
    def _layers(self, x: Tensor, sizes: list | None, states: list) -> tuple:
        """Run every layer and direction. ``x``: (seq, batch, feature) or, when ``sizes`` is
        given, packed data (rows, feature). ``states``: the initial states, each
        (layers * directions, batch, size). Returns the output and the final states."""
        packed = sizes is not None
        if not packed:
            sizes = [x.shape[1]] * x.shape[0]
        num_directions = 2 if self.bidirectional else 1
        finals: list = [[] for _ in states]
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0 and self.training:
                x = F.dropout(x, self.dropout, True)
            rows = x if packed else _F.reshape(x, (-1, x.shape[-1]))
            outputs = []
            for direction in range(num_directions):
                names = self._all_weights[layer * num_directions + direction]
                w = {n.split("_l")[0]: getattr(self, n) for n in names}
                xp = F.linear(rows, w["weight_ih"], w.get("bias_ih"))
                steps = _split(xp, sizes, 0)
                index = layer * num_directions + direction
                init_state = tuple(s[index] for s in states)
                weights = (w["weight_hh"], w.get("bias_hh"), w.get("weight_hr"))
                outs, final = _run_direction(
                    self.mode, steps, sizes, init_state, weights, reverse=direction == 1
                )
                outputs.append(_F.cat(outs, 0) if packed else _F.stack(outs, 0))
                for k, f in enumerate(final):
                    finals[k].append(f)
            x = outputs[0] if num_directions == 1 else _F.cat(outputs, -1)
        return x, tuple(_F.stack(f, 0) for f in finals)

    def _forward(self, input, hx, state_sizes: tuple):
        """Shared forward: unbatched and batch_first handling, packed input, checks.
        ``hx``: None or a tuple of states (one for RNN/GRU, (h, c) for LSTM)."""
        name = "RNN" if self.mode.startswith("RNN") else self.mode
        lstm = self.mode == "LSTM"
        if isinstance(input, PackedSequence):
            data, batch_sizes, sorted_indices, unsorted_indices = input
            sizes = [int(b) for b in batch_sizes.tolist()]
            batch = sizes[0]
            self._check_input(data, packed=True)
            if hx is None:
                hx = tuple(self._zeros(data, batch, s) for s in state_sizes)
            else:
                self._check_states(hx, batch, state_sizes, lstm)
                if sorted_indices is not None:
                    hx = tuple(_F.index_select(h, 1, sorted_indices) for h in hx)
            out, hn = self._layers(data, sizes, list(hx))
            if unsorted_indices is not None:
                hn = tuple(_F.index_select(h, 1, unsorted_indices) for h in hn)
            return PackedSequence(out, batch_sizes, sorted_indices, unsorted_indices), hn
        if not isinstance(input, Tensor):
            raise TypeError(
                f"{name}: expected a Tensor or a PackedSequence as input, got "
                f"{type(input).__name__}"
            )
        if input.ndim not in (2, 3):
            tail = " tensor instead" if name == "RNN" else " instead"
            raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.ndim}D" + tail)
        batched = input.ndim == 3
        batch_dim = 0 if self.batch_first else 1
        if hx is not None:
            want = 3 if batched else 2
            if any(h.ndim != want for h in hx):
                kind = "batched 3-D" if batched else "unbatched 2-D"
                if lstm:
                    got = f"({hx[0].ndim}-D, {hx[1].ndim}-D) tensors"
                    raise RuntimeError(
                        f"For {kind} input, hx and cx should also be {want}-D but got {got}"
                    )
                raise RuntimeError(
                    f"For {kind} input, hx should also be {want}-D but got {hx[0].ndim}-D tensor"
                )
        if not batched:
            input = _F.unsqueeze(input, batch_dim)
            if hx is not None:
                hx = tuple(_F.unsqueeze(h, 1) for h in hx)
        batch = input.shape[batch_dim]
        self._check_input(input, packed=False)
        if input.shape[1 - batch_dim] == 0:
            raise RuntimeError(
                "Expected sequence length to be larger than 0 in RNN; pass at least one time step"
            )
        if hx is None:
            hx = tuple(self._zeros(input, batch, s) for s in state_sizes)
        else:
            self._check_states(hx, batch, state_sizes, lstm)
        x = _F.transpose(input, 0, 1) if self.batch_first else input
        out, hn = self._layers(x, None, list(hx))
        if self.batch_first:
            out = _F.transpose(out, 0, 1)
        if not batched:
            out = _F.squeeze(out, batch_dim)
            hn = tuple(_F.squeeze(h, 1) for h in hn)
        return out, hn

    def _check_states(self, hx, batch, state_sizes, lstm: bool) -> None:
        for k, (h, size) in enumerate(zip(hx, state_sizes)):
            self._check_hidden(h, batch, size, str(k) if lstm else None)


def _as_state(hx, name: str):
    if hx is None:
        return None
    if not isinstance(hx, Tensor):
        raise TypeError(f"{name}: hx must be a Tensor or None, got {type(hx).__name__}")
    return (hx,)


class RNN(RNNBase):
    """Elman RNN: ``h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``, act tanh or relu.

    ``RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None)``."""

    def __init__(self, *args, **kwargs) -> None:
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if len(args) > 3:
            nonlinearity, args = args[3], args[:3] + args[4:]
        else:
            nonlinearity = kwargs.pop("nonlinearity", "tanh")
        modes = {"tanh": "RNN_TANH", "relu": "RNN_RELU"}
        if nonlinearity not in modes:
            raise ValueError(
                f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'."
            )
        super().__init__(modes[nonlinearity], *args, **kwargs)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx: Tensor | None = None):
        out, (hn,) = self._forward(input, _as_state(hx, "RNN"), (self.hidden_size,))
        return out, hn


class GRU(RNNBase):
    """Gated recurrent unit, gates (r, z, n); ``GRU(input_size, hidden_size, num_layers=1,
    bias=True, batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None)``."""

    def __init__(self, *args, **kwargs) -> None:
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        super().__init__("GRU", *args, **kwargs)

    def forward(self, input, hx: Tensor | None = None):
        out, (hn,) = self._forward(input, _as_state(hx, "GRU"), (self.hidden_size,))
        return out, hn


class LSTM(RNNBase):
    """Long short-term memory, gates (i, f, g, o), optional output projection (``proj_size``);
    ``LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, proj_size=0, device=None, dtype=None)``. Returns
    ``(output, (h_n, c_n))``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__("LSTM", *args, **kwargs)

    def forward(self, input, hx: tuple | None = None):
        if hx is not None:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(
                    f"LSTM: hx must be a tuple (h_0, c_0) of two Tensors, got {type(hx).__name__}"
                )
            hx = tuple(hx)
        real_hidden = self.proj_size if self.proj_size > 0 else self.hidden_size
        out, (hn, cn) = self._forward(input, hx, (real_hidden, self.hidden_size))
        return out, (hn, cn)
