"""Run by tests/test_distributed.py on 2 ranks: DistributedDataParallel against one process.

Each rank trains its DDP replica on its own batch of B rows; beside it, the same rank trains a
plain copy of the model on the concatenated batch of 2B rows (what a single process would do).
Parameters must agree after every step, for SGD (momentum) and Adam.
"""

import numpy as np

import jitgrad as jg
import jitgrad.distributed as dist
from jitgrad import nn
from jitgrad.nn.parallel import DistributedDataParallel as DDP

dist.init_process_group(backend="mpi")
rank, size = dist.get_rank(), dist.get_world_size()
B, STEPS = 4, 10


def model(seed):
    jg.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def copy_params(dst, src):
    dst.load_state_dict(
        {k: jg.tensor(v.detach().numpy().copy()) for k, v in src.state_dict().items()}
    )


data = np.random.RandomState(0)
X = data.randn(STEPS, size * B, 5).astype(np.float32)
Y = data.randint(0, 3, size=(STEPS, size * B))

for make_opt in (
    lambda ps: jg.optim.SGD(ps, lr=0.1, momentum=0.9),
    lambda ps: jg.optim.Adam(ps, lr=0.01),
):
    # each rank starts from different weights: DDP must take rank 0's
    ddp = DDP(model(seed=100 + rank), bucket_cap_mb=0.0002)  # tiny buckets: several messages
    assert len(ddp.reducer.buckets) > 1
    ref = model(seed=100)
    copy_params(ref, ddp.module)
    opt, ref_opt = make_opt(ddp.parameters()), make_opt(ref.parameters())
    loss_fn = nn.CrossEntropyLoss()
    for step in range(STEPS):
        mine = slice(rank * B, (rank + 1) * B)
        opt.zero_grad()
        loss_fn(ddp(jg.tensor(X[step, mine])), jg.tensor(Y[step, mine])).backward()
        opt.step()
        ref_opt.zero_grad()
        loss_fn(ref(jg.tensor(X[step])), jg.tensor(Y[step])).backward()
        ref_opt.step()
        for (name, p), q in zip(ddp.module.named_parameters(), ref.parameters()):
            np.testing.assert_allclose(
                p.detach().numpy(),
                q.detach().numpy(),
                rtol=1e-5,
                atol=1e-6,
                err_msg=f"{name} step {step}",
            )

# no_sync: two local micro-batches, then one averaged step == the sum of two big-batch grads
ddp = DDP(model(seed=7 + rank))
ref = model(seed=7)
copy_params(ref, ddp.module)
for k in range(2):
    rows = slice((2 * k + rank) * B, (2 * k + rank + 1) * B)
    if k == 0:
        with ddp.no_sync():
            ddp(jg.tensor(X[0, rows])).sum().backward()
    else:
        ddp(jg.tensor(X[0, rows])).sum().backward()
for k in range(2):
    both = np.concatenate([X[0, (2 * k + r) * B : (2 * k + r + 1) * B] for r in range(size)])
    (ref(jg.tensor(both)).sum() / size).backward()
for p, q in zip(ddp.parameters(), ref.parameters()):
    np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, atol=1e-6)


# two backward passes through a retained graph: each averages (the sum of both, averaged)
net = DDP(model(seed=5 + rank))
ref = model(seed=5)
copy_params(ref, net.module)
out = net(jg.tensor(X[2, rank * B : (rank + 1) * B])).sum()
out.backward(retain_graph=True)
(out * 2).backward()
ref_out = ref(jg.tensor(X[2, : size * B])).sum() / size
ref_out.backward(retain_graph=True)
(ref_out * 2).backward()
for p, q in zip(net.parameters(), ref.parameters()):
    np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, atol=1e-6)

# gradients in different memory orders on the two ranks (rank 1 makes its weight gradients
# row-major): the buckets are still read the same way everywhere
net = DDP(model(seed=3))
ref = model(seed=3)
copy_params(ref, net.module)
if rank == 1:
    for layer in (net.module[0], net.module[2]):
        layer.weight.register_hook(lambda g: g.contiguous())
rows = slice(rank * B, (rank + 1) * B)
net(jg.tensor(X[1, rows])).sum().backward()
(ref(jg.tensor(X[1, : size * B])).sum() / size).backward()
assert net.module[0].weight.grad._data.flags.c_contiguous == (rank == 1)
for p, q in zip(net.parameters(), ref.parameters()):
    np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, atol=1e-6)


# unused parameters: branch b is used on rank 1 only, branch c nowhere
class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(3, 2), nn.Linear(3, 2), nn.Linear(3, 2)

    def forward(self, x, use_b):
        return self.a(x) + (self.b(x) if use_b else 0)


jg.manual_seed(0)
net = DDP(Branchy(), find_unused_parameters=True)
x = jg.ones(2, 3)
net(x, use_b=rank == 1).sum().backward()
assert net.module.c.weight.grad is None
np.testing.assert_allclose(net.module.b.weight.grad.numpy(), np.full((2, 3), 2.0 / size))
np.testing.assert_allclose(net.module.a.weight.grad.numpy(), np.full((2, 3), 2.0))

strict = DDP(Branchy())
try:
    strict(x, use_b=True).sum().backward()
    raise AssertionError("expected an unused-parameter error")
except RuntimeError as e:
    assert "c.weight" in str(e) and "find_unused_parameters=True" in str(e), e

# state_dict keys: PyTorch's, with the module. prefix
assert list(strict.state_dict()) == [f"module.{k}" for k in strict.module.state_dict()]

# buffers follow rank 0
bn = DDP(nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)))
bn.module[1].running_mean.add_(float(rank))
bn.eval()  # in training each rank would then update them from its own batch
bn(jg.ones(4, 3) * (rank + 1))
rm = jg.tensor(bn.module[1].running_mean.numpy())
every = [jg.zeros(3) for _ in range(size)]
dist.all_gather(every, rm)
np.testing.assert_array_equal(every[0].numpy(), every[1].numpy())


# one flat gradient buffer laid out like the buckets (what a compiled step will hand over)
layout = net.reducer.layout()
n_flat = sum(numel for bucket in layout for _, _, numel in bucket)
flat = np.arange(n_flat, dtype=np.float32) * (rank + 1)
net.reducer.average_flat(flat)
np.testing.assert_allclose(flat, np.arange(n_flat, dtype=np.float32) * (size + 1) / 2)


# under jitgrad.compile with several ranks: a clear error, until the all-reduce is compiled in
def step(model, x):
    model(x).sum().backward()


try:
    jg.compile(step, backend="numba")(bn, jg.ones(4, 3))
    raise AssertionError("expected an error under compile")
except RuntimeError as e:
    assert "cannot run inside jitgrad.compile yet" in str(e), e

dist.destroy_process_group()
print(f"rank {rank}: ddp ok", flush=True)
