"""Collectives and point-to-point messages on the default group, with PyTorch's signatures.

Every call works on the tensors' NumPy buffers in place (as PyTorch's do on their storage),
outside autograd. Calls that need the same shape on every rank first exchange a small
description of each rank's tensor, so a mismatch raises the same error on every rank instead of
corrupting memory or hanging (checked before anything else that could fail on one rank only).
Data is carried as bytes where no arithmetic is needed, so any dtype can be broadcast, gathered
or sent; reductions need a dtype MPI can add.
"""

from __future__ import annotations

import enum

import numpy as np

from .. import dtypes
from ..autograd.grad_mode import STATE
from ..tensor import Tensor
from .process_group import _default_group, _mpi


class ReduceOp(enum.IntEnum):
    """How ``all_reduce`` and friends combine the ranks' values (PyTorch's ``ReduceOp``)."""

    SUM = 0
    AVG = 1
    PRODUCT = 2
    MIN = 3
    MAX = 4
    BAND = 5
    BOR = 6
    BXOR = 7


RedOpType = ReduceOp


class Work:
    """What an ``async_op=True`` call returns. MPI calls here complete before returning, so
    ``wait()`` has nothing left to do."""

    def wait(self, timeout=None) -> bool:
        return True

    def is_completed(self) -> bool:
        return True

    def is_success(self) -> bool:
        return True


def _done(async_op: bool):
    return Work() if async_op else None


def _check_tensor(name: str, t) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(
            f"{name}(): argument 'tensor' must be Tensor, not {type(t).__name__}. Wrap the "
            "data with jitgrad.tensor(...) first."
        )
    if t.is_cuda:
        raise RuntimeError(
            f"{name}(): the MPI process group carries CPU tensors only; move the tensor to the "
            "CPU with .cpu() first."
        )
    if STATE.tracer is not None:
        raise RuntimeError(
            f"{name}() cannot run inside jitgrad.compile yet: call collectives outside the "
            "compiled function."
        )


def _array(t: Tensor) -> np.ndarray:
    """A C-contiguous array holding ``t``'s values (``t``'s own buffer where possible)."""
    a = t._data
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def _store(t: Tensor, a: np.ndarray) -> None:
    """Write ``a`` into ``t`` (a no-op copy when ``a`` is ``t``'s buffer) and move its version."""
    if a is not t._data:
        np.copyto(t._data, a.reshape(t._data.shape))
    t._vc[0] += 1


def _bytes(a: np.ndarray):
    return [a.reshape(-1).view(np.uint8), _mpi().BYTE]


_CODES = {d.np: i for i, d in enumerate(dtypes.ALL)}
_RECORD = 10  # dtype code, ndim, up to 8 dims (a longer shape folds into the last)


def _describe(a: np.ndarray) -> np.ndarray:
    rec = np.full(_RECORD, -1, dtype=np.int64)
    rec[0] = _CODES.get(a.dtype, 999)
    rec[1] = a.ndim
    dims = list(a.shape)
    if len(dims) > _RECORD - 2:
        dims = dims[: _RECORD - 3] + [int(np.prod(dims[_RECORD - 3 :]))]
    rec[2 : 2 + len(dims)] = dims
    return rec


def _pretty(rec) -> str:
    names = {i: d for d, i in _CODES.items()}
    dims = [int(d) for d in rec[2 : 2 + int(rec[1])]]
    return f"{dims} {dtypes.from_numpy_dtype(names[int(rec[0])]) if int(rec[0]) in names else '?'}"


def _same_everywhere(name: str, pg, a: np.ndarray, what: str = "tensor") -> None:
    """Raise on every rank when the ranks' tensors differ in shape or dtype."""
    if pg.size() == 1:
        return
    rec = _describe(a)
    every = np.empty((pg.size(), _RECORD), dtype=np.int64)
    pg.comm.Allgather(rec, every)
    if (every != every[0]).any():
        seen = ", ".join(f"rank {r}: {_pretty(every[r])}" for r in range(pg.size()))
        raise RuntimeError(
            f"{name}(): the {what} must have the same shape and dtype on every rank, but got "
            f"{seen}. Make every rank pass a tensor of the same size."
        )


def _reduce_args(name: str, a: np.ndarray, op):
    """The MPI datatype and operation for reducing ``a`` with ``op``."""
    MPI = _mpi()
    try:
        op = ReduceOp(op)
    except ValueError:
        raise ValueError(f"{name}(): unknown reduce op {op!r}; use a dist.ReduceOp") from None
    kind = a.dtype.kind
    if a.dtype == np.dtype(np.float16) or kind not in "biufc":
        raise RuntimeError(
            f"{name}(): MPI cannot reduce tensors of dtype {dtypes.from_numpy_dtype(a.dtype)} (it "
            "has no arithmetic for it). Cast to float32 first, e.g. t32 = t.float(), reduce t32, "
            "then copy back with t.copy_(t32)."
        )
    if op == ReduceOp.AVG and kind not in "fc":
        raise ValueError(
            f"{name}(): ReduceOp.AVG needs a floating point tensor, got "
            f"{dtypes.from_numpy_dtype(a.dtype)}; reduce with SUM and divide."
        )
    if kind == "b":
        table = {
            ReduceOp.SUM: MPI.LOR,
            ReduceOp.MAX: MPI.LOR,
            ReduceOp.BOR: MPI.LOR,
            ReduceOp.MIN: MPI.LAND,
            ReduceOp.PRODUCT: MPI.LAND,
            ReduceOp.BAND: MPI.LAND,
            ReduceOp.BXOR: MPI.LXOR,
        }
    else:
        table = {
            ReduceOp.SUM: MPI.SUM,
            ReduceOp.AVG: MPI.SUM,
            ReduceOp.PRODUCT: MPI.PROD,
            ReduceOp.MIN: MPI.MIN,
            ReduceOp.MAX: MPI.MAX,
            ReduceOp.BAND: MPI.BAND,
            ReduceOp.BOR: MPI.BOR,
            ReduceOp.BXOR: MPI.BXOR,
        }
        if kind in "fc" and op in (ReduceOp.BAND, ReduceOp.BOR, ReduceOp.BXOR):
            raise RuntimeError(f"{name}(): bitwise {op.name} needs an integer or bool tensor")
    return op, table[op]


def _finish_avg(a: np.ndarray, op, size: int) -> None:
    if op == ReduceOp.AVG:
        np.divide(a, size, out=a, casting="unsafe")


def _check_rank(name: str, which: str, r, size: int) -> int:
    if r is None:
        raise ValueError(f"{name}(): pass the {which} rank ({which}=...)")
    r = int(r)
    if not 0 <= r < size:
        raise ValueError(
            f"{name}(): {which}={r} is not a rank of the group (ranks are 0 .. {size - 1})"
        )
    return r


def _peer(name, which, value, group_value, size):
    return _check_rank(name, which, value if value is not None else group_value, size)


def barrier(group=None, async_op: bool = False, device_ids=None, timeout=None):
    pg = _default_group(group)
    pg.comm.Barrier()
    return _done(async_op)


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op: bool = False):
    """Combine ``tensor`` over all ranks, in place on every rank."""
    _check_tensor("all_reduce", tensor)
    pg = _default_group(group)
    a = _array(tensor)
    _same_everywhere("all_reduce", pg, a)
    op, mpi_op = _reduce_args("all_reduce", a, op)
    if pg.size() > 1:
        pg.comm.Allreduce(_mpi().IN_PLACE, a, op=mpi_op)
    _finish_avg(a, op, pg.size())
    _store(tensor, a)
    return _done(async_op)


def reduce(tensor, dst=None, op=ReduceOp.SUM, group=None, async_op=False, group_dst=None):
    """Combine ``tensor`` over all ranks into ``dst``'s tensor (others keep theirs)."""
    _check_tensor("reduce", tensor)
    pg = _default_group(group)
    dst = _peer("reduce", "dst", dst, group_dst, pg.size())
    a = _array(tensor)
    _same_everywhere("reduce", pg, a)
    op, mpi_op = _reduce_args("reduce", a, op)
    if pg.size() > 1:
        if pg.rank() == dst:
            pg.comm.Reduce(_mpi().IN_PLACE, a, op=mpi_op, root=dst)
        else:
            pg.comm.Reduce(a, None, op=mpi_op, root=dst)
    if pg.rank() == dst:
        _finish_avg(a, op, pg.size())
        _store(tensor, a)
    return _done(async_op)


def broadcast(tensor, src=None, group=None, async_op: bool = False, group_src=None):
    """Copy ``src``'s tensor into every rank's ``tensor``."""
    _check_tensor("broadcast", tensor)
    pg = _default_group(group)
    src = _peer("broadcast", "src", src, group_src, pg.size())
    a = _array(tensor)
    _same_everywhere("broadcast", pg, a)
    if pg.size() > 1:
        pg.comm.Bcast(_bytes(a), root=src)
    _store(tensor, a)
    return _done(async_op)


def _check_list(name, what, tensors, size, like: np.ndarray):
    if not isinstance(tensors, (list, tuple)) or len(tensors) != size:
        got = len(tensors) if isinstance(tensors, (list, tuple)) else type(tensors).__name__
        raise ValueError(
            f"{name}(): {what} must be a list of world_size ({size}) tensors, got {got}"
        )
    for t in tensors:
        _check_tensor(name, t)
        if t._data.shape != like.shape or t._data.dtype != like.dtype:
            raise ValueError(
                f"{name}(): every tensor in {what} must have the input's shape "
                f"{list(like.shape)} and dtype {dtypes.from_numpy_dtype(like.dtype)}, got "
                f"{list(t.shape)} {t.dtype}"
            )


def all_gather(tensor_list, tensor, group=None, async_op=False):
    """Every rank's ``tensor`` into ``tensor_list[rank]``, on every rank."""
    _check_tensor("all_gather", tensor)
    pg = _default_group(group)
    a = _array(tensor)
    _check_list("all_gather", "tensor_list", tensor_list, pg.size(), a)
    _same_everywhere("all_gather", pg, a)
    out = np.empty((pg.size(),) + a.shape, dtype=a.dtype)
    pg.comm.Allgather(_bytes(a), _bytes(out))
    for t, piece in zip(tensor_list, out):
        _store(t, piece)
    return _done(async_op)


def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op=False):
    """Every rank's input, concatenated along dim 0 (or stacked), into ``output_tensor``."""
    name = "all_gather_into_tensor"
    _check_tensor(name, output_tensor)
    _check_tensor(name, input_tensor)
    pg = _default_group(group)
    a = _array(input_tensor)
    o = output_tensor._data
    if o.size != a.size * pg.size() or o.dtype != a.dtype:
        raise ValueError(
            f"{name}(): output tensor size must be equal to world_size times input tensor "
            f"size: the output has {o.size} elements of {output_tensor.dtype}, the input "
            f"{a.size} of {input_tensor.dtype} with world_size {pg.size()}"
        )
    _same_everywhere(name, pg, a, "input tensor")
    out = o if o.flags.c_contiguous else np.empty_like(o)
    pg.comm.Allgather(_bytes(a), _bytes(out))
    _store(output_tensor, out)
    return _done(async_op)


def reduce_scatter_tensor(output, input, op=ReduceOp.SUM, group=None, async_op=False):
    """``input`` (world_size pieces along dim 0) reduced over ranks; piece ``rank`` into
    ``output``."""
    name = "reduce_scatter_tensor"
    _check_tensor(name, output)
    _check_tensor(name, input)
    pg = _default_group(group)
    a = _array(input)
    o = _array(output)
    if a.size != o.size * pg.size() or o.dtype != a.dtype:
        raise ValueError(
            f"{name}(): input tensor must be the same size as output size times world size: "
            f"the input has {a.size} elements of {input.dtype}, the output {o.size} of "
            f"{output.dtype} with world_size {pg.size()}"
        )
    _same_everywhere(name, pg, a, "input tensor")
    op, mpi_op = _reduce_args(name, a, op)
    if pg.size() > 1:
        pg.comm.Reduce_scatter_block(a.reshape(-1), o.reshape(-1), op=mpi_op)
    else:
        np.copyto(o.reshape(-1), a.reshape(-1))
    _finish_avg(o, op, pg.size())
    _store(output, o)
    return _done(async_op)


def reduce_scatter(output, input_list, op=ReduceOp.SUM, group=None, async_op=False):
    """``input_list[i]`` reduced over ranks lands in rank ``i``'s ``output``."""
    _check_tensor("reduce_scatter", output)
    pg = _default_group(group)
    o = _array(output)
    _check_list("reduce_scatter", "input_list", input_list, pg.size(), o)
    flat = np.concatenate([_array(t).reshape(-1) for t in input_list])
    _same_everywhere("reduce_scatter", pg, o, "output tensor")
    op, mpi_op = _reduce_args("reduce_scatter", flat, op)
    if pg.size() > 1:
        pg.comm.Reduce_scatter_block(flat, o.reshape(-1), op=mpi_op)
    else:
        np.copyto(o.reshape(-1), flat)
    _finish_avg(o, op, pg.size())
    _store(output, o)
    return _done(async_op)


def gather(tensor, gather_list=None, dst=None, group=None, async_op=False, group_dst=None):
    """Every rank's ``tensor`` into ``gather_list`` on ``dst`` (other ranks pass none)."""
    _check_tensor("gather", tensor)
    pg = _default_group(group)
    dst = _peer("gather", "dst", dst, group_dst, pg.size())
    a = _array(tensor)
    if pg.rank() == dst:
        _check_list("gather", "gather_list", gather_list, pg.size(), a)
    elif gather_list:
        raise ValueError(
            "gather(): Argument ``gather_list`` must NOT be specified on non-root ranks."
        )
    _same_everywhere("gather", pg, a)
    out = np.empty((pg.size(),) + a.shape, dtype=a.dtype) if pg.rank() == dst else None
    pg.comm.Gather(_bytes(a), _bytes(out) if out is not None else None, root=dst)
    if out is not None:
        for t, piece in zip(gather_list, out):
            _store(t, piece)
    return _done(async_op)


def scatter(tensor, scatter_list=None, src=None, group=None, async_op=False, group_src=None):
    """Piece ``rank`` of ``src``'s ``scatter_list`` into every rank's ``tensor``."""
    _check_tensor("scatter", tensor)
    pg = _default_group(group)
    src = _peer("scatter", "src", src, group_src, pg.size())
    a = _array(tensor)
    if pg.rank() == src:
        _check_list("scatter", "scatter_list", scatter_list, pg.size(), a)
        send = np.stack([_array(t) for t in scatter_list])
    elif scatter_list:
        raise ValueError(
            "scatter(): Argument ``scatter_list`` must NOT be specified on non-source ranks."
        )
    else:
        send = None
    _same_everywhere("scatter", pg, a)
    pg.comm.Scatter(_bytes(send) if send is not None else None, _bytes(a), root=src)
    _store(tensor, a)
    return _done(async_op)


def send(tensor, dst=None, group=None, tag: int = 0, group_dst=None) -> None:
    """Send ``tensor`` to rank ``dst`` (blocks until MPI has taken the data)."""
    _check_tensor("send", tensor)
    pg = _default_group(group)
    dst = _peer("send", "dst", dst, group_dst, pg.size())
    if dst == pg.rank():
        raise ValueError(
            "Invalid destination rank: should not be the same as the rank of the current process."
        )
    pg.comm.Send(_bytes(_array(tensor)), dest=dst, tag=tag)


def recv(tensor, src=None, group=None, tag: int = 0, group_src=None) -> int:
    """Receive into ``tensor`` from rank ``src`` (any rank when None); returns the sender."""
    _check_tensor("recv", tensor)
    pg = _default_group(group)
    MPI = _mpi()
    source = MPI.ANY_SOURCE
    if src is not None or group_src is not None:
        source = _peer("recv", "src", src, group_src, pg.size())
        if source == pg.rank():
            raise ValueError(
                "Invalid source rank: should not be the same as the rank of the current process."
            )
    status = MPI.Status()
    pg.comm.Probe(source=source, tag=tag, status=status)
    a = _array(tensor)
    got = status.Get_count(MPI.BYTE)
    if got != a.nbytes:
        raise RuntimeError(
            f"recv(): rank {status.Get_source()} sent {got} bytes, but the receiving tensor "
            f"({list(tensor.shape)} {tensor.dtype}) holds {a.nbytes}. Receive into a tensor of "
            "the sent shape and dtype."
        )
    pg.comm.Recv(_bytes(a), source=status.Get_source(), tag=tag)
    _store(tensor, a)
    return status.Get_source()


# -- picklable Python objects (configurations, seeds, metrics) ----------------------------------
def all_gather_object(object_list, obj, group=None) -> None:
    """Every rank's ``obj`` into ``object_list[rank]`` (a list of world_size entries)."""
    pg = _default_group(group)
    if not isinstance(object_list, list) or len(object_list) != pg.size():
        raise ValueError(
            f"all_gather_object(): object_list must be a list of world_size ({pg.size()}) "
            "entries, e.g. [None] * dist.get_world_size()"
        )
    object_list[:] = pg.comm.allgather(obj)


def broadcast_object_list(object_list, src=None, group=None, device=None, group_src=None) -> None:
    """``src``'s ``object_list`` entries into every rank's list (the lists are equally long)."""
    pg = _default_group(group)
    src = _peer("broadcast_object_list", "src", src, group_src, pg.size())
    got = pg.comm.bcast(list(object_list) if pg.rank() == src else len(object_list), root=src)
    if len(got) != len(object_list):
        raise ValueError(
            f"broadcast_object_list(): rank {src} sent {len(got)} objects, but this rank's list "
            f"has {len(object_list)} entries; pass lists of the same length on every rank"
        )
    object_list[:] = got


def gather_object(obj, object_gather_list=None, dst=None, group=None, group_dst=None) -> None:
    """Every rank's ``obj`` into ``object_gather_list`` on ``dst``."""
    pg = _default_group(group)
    dst = _peer("gather_object", "dst", dst, group_dst, pg.size())
    if pg.rank() == dst and (
        not isinstance(object_gather_list, list) or len(object_gather_list) != pg.size()
    ):
        raise ValueError(
            f"gather_object(): object_gather_list on rank {dst} must be a list of world_size "
            f"({pg.size()}) entries"
        )
    got = pg.comm.gather(obj, root=dst)
    if pg.rank() == dst:
        object_gather_list[:] = got
