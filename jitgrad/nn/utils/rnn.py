"""Packed and padded batches of variable-length sequences (``torch.nn.utils.rnn``'s API).

A ``PackedSequence`` holds the sequences of a batch sorted by decreasing length and interleaved
by time step: ``data`` has the ``batch_sizes[0]`` rows of step 0, then the ``batch_sizes[1]``
rows of step 1 (the sequences still running), and so on. ``sorted_indices`` maps the sorted
order back to the caller's batch order (``None`` when the batch came sorted).

Packing, padding and unpacking are each one row gather (``index_select``) with an index map
computed from the lengths, so they carry gradients and trace like any other op. The lengths and
batch sizes are host values (Python ints), as in PyTorch, where they live on the CPU.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from ... import dtypes
from ...factories import full, tensor
from ...ops import functions as _F
from ...tensor import Tensor

__all__ = [
    "PackedSequence",
    "invert_permutation",
    "pack_padded_sequence",
    "pad_packed_sequence",
    "pad_sequence",
    "unpad_sequence",
    "pack_sequence",
    "unpack_sequence",
]

_Fields = namedtuple(
    "PackedSequence_", ["data", "batch_sizes", "sorted_indices", "unsorted_indices"]
)


def _ints(values, what: str) -> list[int]:
    if isinstance(values, Tensor):
        if values.ndim != 1:
            raise RuntimeError(f"{what} must be a 1D tensor, got {values.ndim}D")
        values = values.tolist()
    return [int(v) for v in values]


def _index(values, device=None) -> Tensor:
    return tensor(np.asarray(values, dtype=np.int64).reshape(-1), device=device)


class PackedSequence(_Fields):
    """``(data, batch_sizes, sorted_indices, unsorted_indices)``; build one with
    ``pack_padded_sequence`` or ``pack_sequence`` rather than by hand."""

    __slots__ = ()

    def __new__(cls, data, batch_sizes=None, sorted_indices=None, unsorted_indices=None):
        if unsorted_indices is None:
            unsorted_indices = invert_permutation(sorted_indices)
        if batch_sizes is None:
            if not isinstance(data, (list, tuple)) or len(data) != 2:
                raise AssertionError("Expected data to be a list or tuple of length 2")
            data, batch_sizes = data
        return super().__new__(cls, data, batch_sizes, sorted_indices, unsorted_indices)

    def to(self, *args, **kwargs) -> PackedSequence:
        """``data.to(...)``; the index tensors follow ``data`` to its device."""
        data = self.data.to(*args, **kwargs)
        if data is self.data:
            return self
        move = lambda t: None if t is None else t.to(data.device)  # noqa: E731
        return type(self)(data, self.batch_sizes, move(self.sorted_indices),
                          move(self.unsorted_indices))  # fmt: skip

    def cpu(self) -> PackedSequence:
        return self.to("cpu")

    def cuda(self, *args, **kwargs) -> PackedSequence:
        return self.to("cuda", *args[1:], **kwargs) if not args else self.to(*args, **kwargs)

    def double(self) -> PackedSequence:
        return self.to(dtype=dtypes.float64)

    def float(self) -> PackedSequence:
        return self.to(dtype=dtypes.float32)

    def half(self) -> PackedSequence:
        return self.to(dtype=dtypes.float16)

    @property
    def is_cuda(self) -> bool:
        return self.data.device.type == "cuda"


def invert_permutation(permutation: Tensor | None) -> Tensor | None:
    """The permutation ``inv`` with ``inv[permutation[i]] = i`` (None stays None)."""
    if permutation is None:
        return None
    order = np.asarray(_ints(permutation, "permutation"), dtype=np.int64)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    return _index(inverse, permutation.device)


def _gather_rows(rows: list, index: np.ndarray, tail: tuple, padding_value) -> Tensor:
    """``cat(rows + [a padding row])`` gathered at ``index`` (the padding row is index
    ``sum(len(r))``), shaped ``index.shape + tail``."""
    first = rows[0]
    pad = full((1, *tail), padding_value, dtype=first.dtype, device=first.device)
    source = _F.cat([*rows, pad], 0)
    out = _F.index_select(source, 0, _index(index, first.device))
    return _F.reshape(out, (*index.shape, *tail))


def pack_padded_sequence(
    input: Tensor, lengths, batch_first: bool = False, enforce_sorted: bool = True
) -> PackedSequence:
    """Pack a padded batch (seq, batch, *) — (batch, seq, *) with ``batch_first`` — whose
    sequences have the given ``lengths`` (a list or a 1-D tensor)."""
    lengths = _ints(lengths, "lengths")
    seq_dim, batch_dim = (1, 0) if batch_first else (0, 1)
    if input.ndim < 2:
        raise IndexError(
            f"Dimension out of range (expected to be in range of [-{input.ndim}, "
            f"{input.ndim - 1}], but got 1): pack_padded_sequence expects a padded batch "
            "(seq, batch, *) or, with batch_first=True, (batch, seq, *)"
        )
    if input.numel() == 0:
        raise RuntimeError("Cannot pack empty tensors.")
    steps, batch = input.shape[seq_dim], input.shape[batch_dim]
    if len(lengths) != batch:
        raise RuntimeError(
            f"Expected `len(lengths)` to be equal to batch_size, but got {len(lengths)} "
            f"(batch_size={batch})"
        )
    if enforce_sorted:
        order = np.arange(batch)
        sorted_indices = None
    else:
        order = np.argsort(-np.asarray(lengths), kind="stable")
        sorted_indices = _index(order, input.device)
    sorted_lengths = np.asarray(lengths, dtype=np.int64)[order]
    if batch and sorted_lengths[-1] <= 0:
        raise RuntimeError(
            "Length of all samples has to be greater than 0, but found an element in 'lengths' "
            "that is <= 0"
        )
    if np.any(np.diff(sorted_lengths) > 0):
        raise RuntimeError(
            "`lengths` array must be sorted in decreasing order when `enforce_sorted` is True. "
            "You can pass `enforce_sorted=False` to pack_padded_sequence and/or pack_sequence "
            "to sidestep this requirement if you do not need ONNX exportability."
        )
    if batch and sorted_lengths[0] > steps:
        raise RuntimeError(
            f"a length ({int(sorted_lengths[0])}) exceeds the padded sequence length ({steps}); "
            "lengths count the real steps of each sequence in the padded input"
        )
    longest = int(sorted_lengths[0]) if batch else 0
    running = np.arange(longest)[:, None] < sorted_lengths[None, :]  # (step, sorted column)
    t, j = np.nonzero(running)  # row-major: step by step, sorted columns in order
    b = order[j]
    flat = b * steps + t if batch_first else t * batch + b
    tail = tuple(input.shape[2:])
    rows = _F.reshape(input, (steps * batch, *tail))
    data = _F.index_select(rows, 0, _index(flat, input.device))
    batch_sizes = _index(running.sum(1))
    return PackedSequence(data, batch_sizes, sorted_indices, None)


def pad_packed_sequence(
    sequence: PackedSequence,
    batch_first: bool = False,
    padding_value: float = 0.0,
    total_length: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Undo ``pack_padded_sequence``: the padded batch in the caller's order and the lengths
    (an int64 tensor)."""
    data = sequence.data
    sizes = np.asarray(_ints(sequence.batch_sizes, "batch_sizes"), dtype=np.int64)
    steps, batch = len(sizes), int(sizes[0])
    if total_length is not None:
        if total_length < steps:
            raise ValueError(
                "Expected total_length to be at least the length of the longest sequence in "
                f"input, but got total_length={total_length} and max sequence length being "
                f"{steps}"
            )
        steps_out = total_length
    else:
        steps_out = steps
    n_rows = data.shape[0]
    index = np.full((steps_out, batch), n_rows, dtype=np.int64)
    running = np.arange(batch)[None, :] < sizes[:, None]
    index[:steps][running] = np.arange(n_rows)
    lengths = running.sum(0)
    if sequence.unsorted_indices is not None:
        unsorted = np.asarray(_ints(sequence.unsorted_indices, "unsorted_indices"))
        index, lengths = index[:, unsorted], lengths[unsorted]
    if batch_first:
        index = index.T
    padded = _gather_rows([data], index, tuple(data.shape[1:]), padding_value)
    return padded, _index(lengths)


def pad_sequence(
    sequences, batch_first: bool = False, padding_value: float = 0.0, padding_side: str = "right"
) -> Tensor:
    """Stack sequences (each (L_i, *)) into one (max L, batch, *) tensor — (batch, max L, *)
    with ``batch_first`` — filling with ``padding_value`` on ``padding_side``."""
    if padding_side not in ("left", "right"):
        raise RuntimeError(
            f"Expected padding_side to be one of left or right, but got {padding_side}."
        )
    if isinstance(sequences, Tensor):
        sequences = _F.unbind(sequences, 0)
    sequences = list(sequences)
    if not sequences:
        raise RuntimeError("received an empty list of sequences")
    tail = tuple(sequences[0].shape[1:])
    for s in sequences:
        if s.ndim == 0 or tuple(s.shape[1:]) != tail:
            raise RuntimeError(
                "pad_sequence: every sequence needs the same trailing dimensions "
                f"(L, {', '.join(map(str, tail))}) as the first, got {tuple(s.shape)}"
            )
    lengths = [s.shape[0] for s in sequences]
    longest, starts = max(lengths), np.cumsum([0, *lengths])
    index = np.full((len(sequences), longest), starts[-1], dtype=np.int64)
    for b, n in enumerate(lengths):
        where = slice(0, n) if padding_side == "right" else slice(longest - n, longest)
        index[b, where] = np.arange(starts[b], starts[b] + n)
    if not batch_first:
        index = index.T
    return _gather_rows(sequences, index, tail, padding_value)


def unpad_sequence(padded_sequences: Tensor, lengths, batch_first: bool = False) -> list:
    """The list of sequences in a padded batch, each cut to its length."""
    if not batch_first:
        padded_sequences = _F.transpose(padded_sequences, 0, 1)
    return [padded_sequences[i, :n] for i, n in enumerate(_ints(lengths, "lengths"))]


def pack_sequence(sequences, enforce_sorted: bool = True) -> PackedSequence:
    """Pack a list of sequences (each (L_i, *)); ``pad_sequence`` then ``pack_padded_sequence``."""
    lengths = [s.shape[0] for s in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)


def unpack_sequence(packed_sequences: PackedSequence) -> list:
    """The list of sequences in a ``PackedSequence``, in the caller's order."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded, lengths, batch_first=True)
