"""jitgrad.distributed: the process group and collectives (in this process: a world of one),
the launcher, and real 2-rank jobs (marked ``mpi``; skipped without mpi4py and mpiexec).

Each multi-process test starts ``python -m jitgrad.distributed.run -n 2`` on a script in
tests/mpi/ with a timeout, so a broken rank fails the test instead of hanging it.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import jitgrad as jg
import jitgrad.distributed as dist
from jitgrad.distributed import run as launcher

HERE = Path(__file__).parent
ROOT = HERE.parent
HAVE_MPI4PY = importlib.util.find_spec("mpi4py") is not None
needs_mpi4py = pytest.mark.skipif(not HAVE_MPI4PY, reason="needs mpi4py (jitgrad[distributed])")


def _mpiexec():
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


needs_mpiexec = pytest.mark.skipif(
    not HAVE_MPI4PY or _mpiexec() is None, reason="needs mpi4py and mpiexec (jitgrad[distributed])"
)


def run_ranks(*program, n=2, timeout=180, env=None):
    """``python -m jitgrad.distributed.run -n N program...`` from the repository root."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "jitgrad.distributed.run", "-n", str(n), *program],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def world():
    dist.init_process_group(backend="mpi")
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def test_import_does_not_start_mpi():
    code = "import sys, jitgrad, jitgrad.distributed; print('mpi4py' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr


def test_without_mpi4py_says_how_to_install():
    code = (
        "import sys; sys.modules['mpi4py'] = None\n"
        "import jitgrad as jg, jitgrad.distributed as dist\n"
        "print(float(jg.ones(2).sum()))\n"
        "try:\n    dist.init_process_group('mpi')\n"
        "except RuntimeError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.startswith("2.0\n"), out.stderr
    assert "pip install 'jitgrad[distributed]'" in out.stdout


def test_before_init_raises_pytorch_error():
    torch = pytest.importorskip("torch")
    import torch.distributed as tdist

    calls = [
        lambda d, T: d.get_rank(),
        lambda d, T: d.get_world_size(),
        lambda d, T: d.barrier(),
        lambda d, T: d.all_reduce(T.zeros(2)),
        lambda d, T: d.broadcast(T.zeros(2), src=0),
        lambda d, T: d.all_gather([T.zeros(2)], T.zeros(2)),
    ]
    for call in calls:
        with pytest.raises(ValueError) as ours:
            call(dist, jg)
        with pytest.raises(ValueError) as theirs:
            call(tdist, torch)
        assert str(ours.value) == str(theirs.value)
    assert not dist.is_initialized()
    assert dist.group.WORLD is None


def test_backend_and_twice():
    with pytest.raises(ValueError, match="backend 'nccl' is not available"):
        dist.init_process_group(backend="nccl")


@needs_mpi4py
def test_world_of_one(world):
    assert dist.is_initialized() and dist.get_rank() == 0 and dist.get_world_size() == 1
    assert dist.get_backend() == "mpi" and dist.get_node_local_rank(fallback_rank=0) == 0
    with pytest.raises(ValueError, match="twice"):
        dist.init_process_group()
    t = jg.tensor([[1.0, 2.0], [3.0, 4.0]])
    for op in (dist.ReduceOp.SUM, dist.ReduceOp.AVG, dist.ReduceOp.MAX, dist.ReduceOp.PRODUCT):
        dist.all_reduce(t, op=op)
        np.testing.assert_array_equal(t.numpy(), [[1, 2], [3, 4]])
    dist.broadcast(t, src=0)
    outs = [jg.zeros(2, 2)]
    dist.all_gather(outs, t)
    np.testing.assert_array_equal(outs[0].numpy(), t.numpy())
    big = jg.zeros(2, 2)
    dist.all_gather_into_tensor(big, t)
    dist.reduce_scatter_tensor(big, t)
    np.testing.assert_array_equal(big.numpy(), t.numpy())
    objs = [None]
    dist.all_gather_object(objs, ("a", 1))
    assert objs == [("a", 1)]
    with pytest.raises(ValueError, match="world_size"):
        dist.all_gather_object([], 1)
    dist.barrier()


@needs_mpi4py
def test_errors(world):
    t = jg.ones(3)
    with pytest.raises(RuntimeError, match="MPI cannot reduce tensors of dtype jitgrad.bfloat16"):
        dist.all_reduce(jg.ones(3, dtype=jg.bfloat16))
    with pytest.raises(ValueError, match="AVG needs a floating point"):
        dist.all_reduce(jg.ones(3, dtype=jg.int64), op=dist.ReduceOp.AVG)
    with pytest.raises(ValueError, match="src=3 is not a rank"):
        dist.broadcast(t, src=3)
    with pytest.raises(TypeError, match="must be Tensor"):
        dist.all_reduce(np.ones(3))
    with pytest.raises(ValueError, match="list of world_size"):
        dist.all_gather([t, t], t)
    with pytest.raises(ValueError, match="world_size times input"):
        dist.all_gather_into_tensor(jg.zeros(4), t)
    with pytest.raises(ValueError, match="world_size=4 was given"):
        dist.destroy_process_group()
        dist.init_process_group(world_size=4)
    assert not dist.is_initialized()
    dist.init_process_group(world_size=1, rank=0)
    np.testing.assert_array_equal(t.numpy(), np.ones(3))


def test_launcher_command_line():
    if _mpiexec() is None:
        pytest.skip("needs mpiexec")
    opts, program = launcher.parse(["-n", "3", "python", "-m", "jitgrad", "demo", "-n", "1"])
    assert opts["n"] == 3 and program == ["-m", "jitgrad", "demo", "-n", "1"]
    cmd, env = launcher.command(opts, program, cores=2)
    assert cmd[1:3] == ["-n", "3"] and "--oversubscribe" in cmd
    assert cmd[-8:] == [sys.executable, "-m", "jitgrad.distributed._rank", *program]
    assert env["JITGRAD_THREADS_PER_RANK"] == "1"
    cmd, env = launcher.command(launcher.parse(["-n", "1", "x.py"])[0], ["x.py"], cores=4)
    assert "--oversubscribe" not in cmd and env["JITGRAD_THREADS_PER_RANK"] == "4"
    with pytest.raises(SystemExit):
        launcher.parse(["-n", "2"])


@pytest.mark.mpi
@needs_mpiexec
def test_collectives_on_two_ranks():
    out = run_ranks("tests/mpi/collectives.py")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "rank 0: collectives ok" in out.stdout and "rank 1: collectives ok" in out.stdout


@pytest.mark.mpi
@needs_mpiexec
def test_a_rank_that_raises_stops_the_job():
    code = (
        "import jitgrad as jg, jitgrad.distributed as dist\n"
        "dist.init_process_group('mpi')\n"
        "if dist.get_rank() == 1:\n    raise ValueError('broken rank')\n"
        "dist.all_reduce(jg.ones(2))\n"  # rank 0 waits here for ever without the abort
    )
    out = run_ranks("-c", code, timeout=90)
    assert out.returncode != 0
    assert "rank 1 raised ValueError: broken rank" in out.stderr, out.stderr


def test_distributed_sampler_matches_torch():
    torch = pytest.importorskip("torch")
    from torch.utils.data.distributed import DistributedSampler as TorchSampler

    from jitgrad.utils.data.distributed import DistributedSampler

    for n in (0, 1, 2, 7, 10, 33):
        for replicas in (1, 2, 3, 4):
            for shuffle in (True, False):
                for drop_last in (True, False):
                    for seed in (0, 12345):
                        for rank in range(replicas):
                            kw = dict(num_replicas=replicas, rank=rank, shuffle=shuffle)
                            kw.update(seed=seed, drop_last=drop_last)
                            if n == 0 and not drop_last:
                                continue  # torch divides by zero padding an empty dataset
                            ours, theirs = (
                                DistributedSampler(range(n), **kw),
                                TorchSampler(range(n), **kw),
                            )
                            for epoch in (0, 3):
                                ours.set_epoch(epoch)
                                theirs.set_epoch(epoch)
                                assert list(ours) == list(theirs), (n, kw, epoch)
                                assert len(ours) == len(theirs)
    assert torch is not None


def test_distributed_sampler_errors_and_loader():
    from jitgrad.utils.data import DataLoader, DistributedSampler, TensorDataset

    with pytest.raises(
        ValueError, match=r"Invalid rank 2, rank should be in the interval \[0, 1\]"
    ):
        DistributedSampler(range(4), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="has not been initialized"):
        DistributedSampler(range(4))
    data = TensorDataset(jg.arange(10.0))
    shares = []
    for rank in range(3):
        sampler = DistributedSampler(data, num_replicas=3, rank=rank, shuffle=False)
        loader = DataLoader(data, batch_size=2, sampler=sampler)
        shares.append([float(v) for (batch,) in loader for v in batch.tolist()])
    # 10 samples padded to 12 by repeating the first two
    assert shares == [[0, 3, 6, 9], [1, 4, 7, 0], [2, 5, 8, 1]]


@needs_mpi4py
def test_distributed_sampler_from_the_group(world):
    from jitgrad.utils.data import DistributedSampler

    s = DistributedSampler(range(5), shuffle=False)
    assert (s.num_replicas, s.rank, list(s)) == (1, 0, [0, 1, 2, 3, 4])


@pytest.mark.mpi
@needs_mpiexec
def test_ddp_on_two_ranks_matches_one_process():
    out = run_ranks("tests/mpi/ddp.py")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "rank 0: ddp ok" in out.stdout and "rank 1: ddp ok" in out.stdout


def test_post_accumulate_grad_hook_and_final_callback():
    torch = pytest.importorskip("torch")
    from jitgrad.autograd.engine import queue_callback

    events = []
    w = jg.ones(2, requires_grad=True)
    w.register_post_accumulate_grad_hook(lambda p: events.append(("acc", p.grad.tolist())))
    w.register_hook(lambda g: queue_callback(lambda: events.append(("done", w.grad.tolist()))))
    (w * 3).sum().backward()
    assert events == [("acc", [3.0, 3.0]), ("done", [3.0, 3.0])]
    with pytest.raises(RuntimeError, match="only be installed during backward") as ours:
        queue_callback(lambda: None)
    with pytest.raises(RuntimeError) as theirs:
        torch.autograd.Variable._execution_engine.queue_callback(lambda: None)
    assert str(ours.value) == str(theirs.value)
    with pytest.raises(RuntimeError, match="non-leaf") as ours:
        (w * 2).register_post_accumulate_grad_hook(lambda p: None)
    tw = torch.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError) as theirs:
        (tw * 2).register_post_accumulate_grad_hook(lambda p: None)
    assert str(ours.value) == str(theirs.value)


def test_bucket_assignment():
    from jitgrad.distributed.reducer import assign_buckets

    # reverse order, dtypes apart, a small first bucket, then buckets up to the cap
    params = [jg.zeros(n) for n in (100, 100, 100, 100)] + [jg.zeros(10, dtype=jg.float64)]
    # (an unfilled bucket is closed at the end, in the order its first parameter came)
    assert assign_buckets(params, bucket_cap=1200, first_bucket_cap=800) == [[3, 2], [4], [1, 0]]
    assert assign_buckets(params, bucket_cap=400, first_bucket_cap=100) == [[3], [2], [1], [0], [4]]
    assert assign_buckets(params, bucket_cap=10**6, first_bucket_cap=10**6) == [[4], [3, 2, 1, 0]]


@needs_mpi4py
def test_ddp_world_of_one(world):
    from jitgrad.nn.parallel import DistributedDataParallel as DDP

    jg.manual_seed(0)
    net = jg.nn.Linear(3, 2)
    ddp = DDP(net, find_unused_parameters=True)
    assert ddp.module is net
    assert list(ddp.state_dict()) == ["module.weight", "module.bias"]
    x = jg.ones(4, 3)
    ddp(x).sum().backward()
    np.testing.assert_allclose(net.weight.grad.numpy(), np.full((2, 3), 4.0))
    with ddp.no_sync():
        ddp(x).sum().backward()
    np.testing.assert_allclose(net.weight.grad.numpy(), np.full((2, 3), 8.0))
    with pytest.raises(RuntimeError, match="doesn't have any parameter"):
        DDP(jg.nn.ReLU())


def test_ddp_needs_a_group():
    torch = pytest.importorskip("torch")
    from jitgrad.nn.parallel import DistributedDataParallel as DDP

    with pytest.raises(ValueError) as ours:
        DDP(jg.nn.Linear(2, 2))
    with pytest.raises(ValueError) as theirs:
        torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))
    assert str(ours.value) == str(theirs.value)


@pytest.mark.mpi
@needs_mpiexec
def test_demo_distributed_prints_the_single_process_accuracy():
    pytest.importorskip("sklearn")
    import argparse

    from jitgrad import demo

    args = argparse.Namespace(seed=0, lr=1e-2, batch_size=64, epochs=2, backend="eager")
    alone = demo.train("mlp", args, demo.load_digits(0), progress=False)["history"]["accuracy"]
    out = run_ranks(
        "python", "-m", "jitgrad", "demo", "--model", "mlp", "--epochs", "2", "--distributed"
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "data-parallel on 2 rank(s)" in out.stdout
    assert out.stdout.count("test accuracy:") == 1  # printed by rank 0 only
    assert f"test accuracy: {100 * alone[-1]:.1f}%" in out.stdout, out.stdout


@pytest.mark.mpi
@needs_mpiexec
def test_readme_training_script_runs_on_two_ranks(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Distributed training", 1)[1].split("\n## ", 1)[0]
    (script,) = re.findall(r"```py\n(.*?)```", section, re.S)
    (tmp_path / "train.py").write_text(script + "print('done', flush=True)\n")
    out = subprocess.run(
        [sys.executable, "-m", "jitgrad.distributed.run", "-n", "2", "train.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("done") == 2, out.stdout


@needs_mpi4py
@pytest.mark.filterwarnings("error")
def test_ddp_step_compiles_in_a_world_of_one(world):
    # (in a world of one there is nothing to reduce; with more ranks a compiled DDP step raises
    # until the all-reduce runs inside the compiled code)
    from jitgrad.nn.parallel import DistributedDataParallel as DDP

    def step(model, opt, x, y):
        opt.zero_grad()
        loss = jg.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    x, y = jg.randn(8, 4), jg.randint(0, 3, (8,))
    models = []
    for _ in range(2):
        jg.manual_seed(0)
        models.append(DDP(jg.nn.Sequential(jg.nn.Linear(4, 8), jg.nn.Tanh(), jg.nn.Linear(8, 3))))
    opts = [jg.optim.Adam(m.parameters(), lr=0.01) for m in models]
    compiled = jg.compile(step, backend="numba")
    for _ in range(3):
        step(models[0], opts[0], x, y)
        compiled(models[1], opts[1], x, y)
    compiled.wait()
    for _ in range(2):
        step(models[0], opts[0], x, y)
        compiled(models[1], opts[1], x, y)
    assert compiled.stats.cache_hits >= 1
    for p, q in zip(models[0].parameters(), models[1].parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_init_in_a_worker_importing_the_script_says_to_guard_it(monkeypatch):
    import multiprocessing

    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)
    with pytest.raises(RuntimeError, match='if __name__ == "__main__":'):
        dist.init_process_group()
    assert not dist.is_initialized()


def test_threads_per_rank(monkeypatch):
    from jitgrad.distributed import _rank

    assert [_rank.threads_per_rank(16, n) for n in (1, 2, 3, 16, 32)] == [16, 8, 5, 1, 1]
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "2")
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # the user's own setting stays
    for name in (*_rank.THREAD_VARS[:1], *_rank.THREAD_VARS[2:], "JITGRAD_THREADS_PER_RANK"):
        monkeypatch.setenv(name, "")  # (so that the test's own writes are undone too)
        monkeypatch.delenv(name)
    monkeypatch.setenv("JITGRAD_THREADS_EXPLICIT", "")
    monkeypatch.delenv("JITGRAD_THREADS_EXPLICIT")
    assert _rank.set_threads() == 4
    assert os.environ["NUMBA_NUM_THREADS"] == "4" and os.environ["OMP_NUM_THREADS"] == "7"
    monkeypatch.setenv("JITGRAD_THREADS_PER_RANK", "3")  # --threads-per-rank 3 wins
    monkeypatch.setenv("JITGRAD_THREADS_EXPLICIT", "1")
    assert _rank.set_threads() == 3 and os.environ["OMP_NUM_THREADS"] == "3"
