"""Data-parallel scaling of the W1b step (64-512-512-10 MLP, SGD, batch 256 per rank), eager.

    python -m jitgrad.distributed.run -n 1 --threads-per-rank 1 benchmarks/ddp_scaling.py
    python -m jitgrad.distributed.run -n 2 --threads-per-rank 1 benchmarks/ddp_scaling.py

Each rank trains on its own batch of 256 (weak scaling), so samples/s = ranks * 256 / step
time. Also prints the time of the gradient all-reduce per step, alone (one flat buffer, the
buckets' messages) and as seen inside the step (the reducer's end-of-backward work).
"""

import statistics
import time

import jitgrad as jg
import jitgrad.distributed as dist
from jitgrad import bench
from jitgrad.nn.parallel import DistributedDataParallel

STEPS, WARMUP, ROUNDS = 20, 5, 5


def main() -> None:
    """(Run as a script only: asv imports this directory to discover suites.)"""
    dist.init_process_group(backend="mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    step, (model, loss_fn, opt, x, y) = bench.setup_wide_mlp_step(jg, seed=rank)
    ddp = DistributedDataParallel(model)
    opt = jg.optim.SGD(ddp.parameters(), lr=bench.MLP_LR)

    finish_seconds = []
    original_finish = ddp.reducer.finish

    def timed_finish():
        t0 = time.perf_counter()
        original_finish()
        finish_seconds.append(time.perf_counter() - t0)

    ddp.reducer.finish = timed_finish

    for _ in range(WARMUP):
        step(ddp, loss_fn, opt, x, y)
    rounds = []
    for _ in range(ROUNDS):
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(STEPS):
            step(ddp, loss_fn, opt, x, y)
        dist.barrier()
        rounds.append((time.perf_counter() - t0) / STEPS)
    step_s = min(rounds)  # the least disturbed round: the machine is shared

    flat = jg.zeros(sum(b.size for b in ddp.reducer.buffers))._data
    times = []
    for _ in range(50):
        dist.barrier()
        t0 = time.perf_counter()
        ddp.reducer.average_flat(flat)
        times.append(time.perf_counter() - t0)

    if rank == 0:
        n_params = sum(p.numel() for p in model.parameters())
        print(
            f"ranks {world}: step {1e3 * step_s:.2f} ms (best of {ROUNDS} rounds of {STEPS}), "
            f"{world * x.shape[0] / step_s:.0f} samples/s; {n_params} parameters "
            f"({4 * n_params / 1e6:.2f} MB) in {len(ddp.reducer.buckets)} buckets; all-reduce "
            f"alone {1e3 * statistics.median(times):.3f} ms, end-of-backward reduction in the step "
            f"{1e3 * statistics.median(finish_seconds[WARMUP:]):.3f} ms"
        )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
