"""``DistributedDataParallel``: one replica of a module per process, gradients averaged.

At construction every rank checks that the replicas have the same parameter shapes, and takes
rank 0's parameters and buffers. A forward pass arms the reducer (unless under ``no_sync()``);
the backward pass that follows averages the gradients over the ranks in fused buckets
(``jitgrad.distributed.reducer``) before it returns, so ``optimizer.step()`` sees the same
gradients on every rank. Buffers (BatchNorm's running statistics) are taken from rank 0 before
each forward, as PyTorch's ``broadcast_buffers`` does.

``state_dict()`` has PyTorch's keys: the wrapped module's, under ``module.``. To write a
checkpoint that loads into the bare module, save ``ddp.module.state_dict()`` on rank 0.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from ...autograd.engine import queue_callback
from ...autograd.grad_mode import STATE
from ...distributed import process_group as _pg
from ...distributed.reducer import DEFAULT_FIRST_BUCKET_CAP, Reducer
from ..module import Module

__all__ = ["DistributedDataParallel"]


class DistributedDataParallel(Module):
    """Wrap ``module`` for data-parallel training on the default process group.

    Accepted for PyTorch compatibility and ignored on the CPU: ``device_ids``,
    ``output_device``, ``dim``, ``check_reduction``, ``gradient_as_bucket_view``,
    ``static_graph``. ``bucket_cap_mb`` sets the bucket size (25 MB by default, the first
    bucket 1 MB); ``find_unused_parameters=True`` lets some parameters go without a gradient
    (on some or all ranks) in a step."""

    def __init__(
        self,
        module: Module,
        device_ids=None,
        output_device=None,
        dim: int = 0,
        broadcast_buffers: bool | None = None,
        init_sync: bool = True,
        process_group=None,
        bucket_cap_mb: float | None = None,
        find_unused_parameters: bool = False,
        check_reduction: bool = False,
        gradient_as_bucket_view: bool = False,
        static_graph: bool = False,
        **_ignored,
    ) -> None:
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(
                f"DistributedDataParallel expects a jitgrad.nn.Module, got {type(module).__name__}"
            )
        pg = _pg._default_group(process_group)
        self.module = module
        self.process_group = pg
        self.broadcast_buffers = True if broadcast_buffers is None else bool(broadcast_buffers)
        self.find_unused_parameters = bool(find_unused_parameters)
        self.require_backward_grad_sync = True
        cap = 25.0 if bucket_cap_mb is None else float(bucket_cap_mb)
        if cap <= 0:
            raise ValueError(f"bucket_cap_mb must be positive, got {bucket_cap_mb}")
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        if not named:
            raise RuntimeError(
                "DistributedDataParallel is not needed when a module doesn't have any "
                "parameter that requires a gradient."
            )
        self._params = [p for _, p in named]
        bucket_cap = int(cap * 1024 * 1024)
        self.reducer = Reducer(
            self._params,
            pg,
            bucket_cap=bucket_cap,
            first_bucket_cap=min(DEFAULT_FIRST_BUCKET_CAP, bucket_cap),
            find_unused_parameters=self.find_unused_parameters,
            names=[n for n, _ in named],
        )
        self._armed = False
        self._queued = False
        self._verify_same_shapes(module)
        if init_sync:
            everything = [p for p in module.parameters()] + [b for b in module.buffers()]
            _broadcast_coalesced(pg, everything)
        for i, p in enumerate(self._params):
            p.register_post_accumulate_grad_hook(self._hook(i))

    def _verify_same_shapes(self, module) -> None:
        """Every rank must wrap the same architecture: compare a digest of the shapes."""
        pg = self.process_group
        if pg.size() == 1:
            return
        desc = ";".join(f"{n}:{tuple(p.shape)}:{p.dtype}" for n, p in module.named_parameters())
        digest = np.frombuffer(
            __import__("hashlib").sha256(desc.encode()).digest()[:8], dtype=np.int64
        ).copy()
        every = np.empty(pg.size(), dtype=np.int64)
        pg.comm.Allgather(digest, every)
        if (every != every[0]).any():
            differ = [r for r in range(pg.size()) if every[r] != every[0]]
            raise RuntimeError(
                "DistributedDataParallel: the module's parameters (names, shapes, dtypes) "
                f"differ between rank 0 and rank(s) {differ}. Build the same model on every "
                "rank before wrapping it."
            )

    def _hook(self, i: int):
        def hook(param):
            if not self._armed:
                return
            if STATE.tracer is not None and self.process_group.size() > 1:
                raise RuntimeError(
                    "DistributedDataParallel's gradient all-reduce cannot run inside "
                    "jitgrad.compile yet: train the DDP model eagerly."
                )
            if not self._queued:
                self._queued = True
                queue_callback(self._finish)
            self.reducer.mark_ready(i)

        return hook

    def _finish(self) -> None:
        # NOTE: the reducer stays armed until the next forward: a second backward through a
        # retained graph averages again (the average of the accumulated sum, as it should be)
        self._queued = False
        self.reducer.finish()

    def forward(self, *inputs, **kwargs):
        if self.process_group.size() > 1 and STATE.tracer is not None:
            raise RuntimeError(
                "DistributedDataParallel cannot run inside jitgrad.compile yet (the compiled "
                "all-reduce is not there): train the DDP model eagerly."
            )
        if self.broadcast_buffers and self.process_group.size() > 1:
            buffers = list(self.module.buffers())
            if buffers:
                _broadcast_coalesced(self.process_group, buffers)
        self._armed = self.require_backward_grad_sync and STATE.grad_enabled
        return self.module(*inputs, **kwargs)

    @contextmanager
    def no_sync(self):
        """Backward passes of forwards run inside this block only accumulate local gradients;
        the first forward/backward after it averages the accumulated sum."""
        old = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = old


def _broadcast_coalesced(pg, tensors) -> None:
    """Rank 0's values of ``tensors`` on every rank: one message of all their bytes."""
    if pg.size() == 1 or not tensors:
        return
    from ...distributed.process_group import _mpi

    arrays = [t._data for t in tensors]
    flat = np.concatenate([np.ascontiguousarray(a).reshape(-1).view(np.uint8) for a in arrays])
    pg.comm.Bcast([flat, _mpi().BYTE], root=0)
    offset = 0
    for t, a in zip(tensors, arrays):
        n = a.nbytes
        np.copyto(a, flat[offset : offset + n].view(a.dtype).reshape(a.shape))
        offset += n
        t._vc[0] += 1
