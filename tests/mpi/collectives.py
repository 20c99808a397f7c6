"""Run by tests/test_distributed.py on 2 ranks: every collective against NumPy."""

import numpy as np

import jitgrad as jg
import jitgrad.distributed as dist

dist.init_process_group(backend="mpi")
rank, size = dist.get_rank(), dist.get_world_size()
assert size == 2, size
assert dist.get_node_local_rank() == rank


def value(r, shape=(2, 3), dtype=np.float32):
    return (np.arange(np.prod(shape)).reshape(shape) + 10 * r + 1).astype(dtype)


every = [value(r) for r in range(size)]
for op, ref in [
    (dist.ReduceOp.SUM, sum(every)),
    (dist.ReduceOp.AVG, sum(every) / size),
    (dist.ReduceOp.MAX, np.maximum(*every)),
    (dist.ReduceOp.MIN, np.minimum(*every)),
    (dist.ReduceOp.PRODUCT, every[0] * every[1]),
]:
    t = jg.tensor(value(rank))
    v = t._version
    assert dist.all_reduce(t, op=op) is None
    np.testing.assert_allclose(t.numpy(), ref, rtol=1e-6)
    assert t._version > v

# integers, a non-contiguous view written back in place, async_op
t = jg.tensor(value(rank, dtype=np.int64))
dist.all_reduce(t)
np.testing.assert_array_equal(t.numpy(), sum(value(r, dtype=np.int64) for r in range(size)))
base = jg.tensor(value(rank, (3, 4)))
view = base.t()
work = dist.all_reduce(view, async_op=True)
assert work.wait() and work.is_completed()
np.testing.assert_allclose(base.numpy(), value(0, (3, 4)) + value(1, (3, 4)))

# broadcast from rank 1, any dtype (bytes)
t = jg.tensor(value(rank)).to(jg.bfloat16)
dist.broadcast(t, src=1)
np.testing.assert_array_equal(t.float().numpy(), value(1))

# all_gather, all_gather_into_tensor
outs = [jg.zeros(2, 3) for _ in range(size)]
dist.all_gather(outs, jg.tensor(value(rank)))
for r in range(size):
    np.testing.assert_array_equal(outs[r].numpy(), value(r))
out = jg.zeros(4, 3)
dist.all_gather_into_tensor(out, jg.tensor(value(rank)))
np.testing.assert_array_equal(out.numpy(), np.concatenate(every))

# reduce_scatter_tensor / reduce_scatter: piece `rank` of the sum over ranks
big = [value(r, (4, 3)) for r in range(size)]
out = jg.zeros(2, 3)
dist.reduce_scatter_tensor(out, jg.tensor(big[rank]))
np.testing.assert_allclose(out.numpy(), sum(big)[2 * rank : 2 * rank + 2])
out = jg.zeros(2, 3)
dist.reduce_scatter(out, [jg.tensor(big[rank][:2]), jg.tensor(big[rank][2:])], op=dist.ReduceOp.MAX)
np.testing.assert_allclose(out.numpy(), np.maximum(*big)[2 * rank : 2 * rank + 2])

# reduce, gather, scatter to/from rank 0
t = jg.tensor(value(rank))
dist.reduce(t, dst=0)
np.testing.assert_allclose(t.numpy(), sum(every) if rank == 0 else value(rank))
lst = [jg.zeros(2, 3) for _ in range(size)] if rank == 0 else None
dist.gather(jg.tensor(value(rank)), gather_list=lst, dst=0)
if rank == 0:
    for r in range(size):
        np.testing.assert_array_equal(lst[r].numpy(), value(r))
t = jg.zeros(2, 3)
dist.scatter(t, [jg.tensor(value(r + 5)) for r in range(size)] if rank == 0 else None, src=0)
np.testing.assert_array_equal(t.numpy(), value(rank + 5))

# send / recv (recv returns the sender)
if rank == 0:
    dist.send(jg.tensor(value(7)), dst=1)
    dist.send(jg.tensor(value(7)), dst=1, tag=3)
else:
    t = jg.zeros(2, 3)
    assert dist.recv(t, src=0) == 0
    np.testing.assert_array_equal(t.numpy(), value(7))
    small = jg.zeros(5)
    try:
        dist.recv(small, tag=3)
        raise AssertionError("expected a size error")
    except RuntimeError as e:
        assert "rank 0 sent 24 bytes" in str(e), e
    dist.recv(jg.zeros(2, 3), tag=3)

# shapes that differ across ranks: the same error on every rank, nothing changed
t = jg.ones(3 + rank)
try:
    dist.all_reduce(t)
    raise AssertionError("expected a shape error")
except RuntimeError as e:
    assert "rank 0: [3] jitgrad.float32, rank 1: [4] jitgrad.float32" in str(e), e
np.testing.assert_array_equal(t.numpy(), np.ones(3 + rank))
try:
    dist.broadcast(jg.ones(2, dtype=jg.float32 if rank == 0 else jg.float64), src=0)
    raise AssertionError("expected a dtype error")
except RuntimeError as e:
    assert "same shape and dtype on every rank" in str(e)

# picklable objects
objs = [None] * size
dist.all_gather_object(objs, {"rank": rank})
assert objs == [{"rank": r} for r in range(size)], objs
lst = ["config", 42] if rank == 1 else [None, None]
dist.broadcast_object_list(lst, src=1)
assert lst == ["config", 42], lst
got = [None] * size if rank == 0 else None
dist.gather_object(rank * 10, got, dst=0)
assert rank != 0 or got == [0, 10], got
# a dtype MPI cannot reduce on one rank only: every rank raises (none is left waiting)
try:
    dist.all_reduce(jg.ones(2, dtype=jg.bfloat16 if rank == 0 else jg.float32))
    raise AssertionError("expected a dtype error")
except RuntimeError as e:
    assert "rank 0: [2] jitgrad.bfloat16, rank 1: [2] jitgrad.float32" in str(e), e

dist.barrier()
dist.destroy_process_group()
print(f"rank {rank}: collectives ok", flush=True)
