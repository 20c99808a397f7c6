"""DataLoader worker processes: each takes (batch number, indices) from its own queue, builds the
batch with the dataset and ``collate_fn``, and puts (batch number, batch) on a shared queue; the
loader hands batches back in order.

NOTE: workers start with the "forkserver" context ("spawn" where there is none), never "fork":
forking a process whose Numba (or BLAS) thread pool is running copies locks held by threads
that do not exist in the child, which can hang it. The fork server imports jitgrad once (about a
second, the first time a program starts workers); the dataset, ``collate_fn`` and
``worker_init_fn`` travel to the workers pickled, so they must be importable objects
(module-level classes and functions, not lambdas).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.util
import queue
import random
import sys
import traceback
from dataclasses import dataclass
from typing import Any

__all__ = ["WorkerInfo", "get_worker_info"]

_worker_info: WorkerInfo | None = None


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker process knows about itself (``get_worker_info()`` inside a worker)."""

    id: int
    num_workers: int
    seed: int
    dataset: Any


def get_worker_info() -> WorkerInfo | None:
    """This worker's ``WorkerInfo``; ``None`` in the main process."""
    return _worker_info


class _Done:
    """Sent to a worker: leave the loop."""


@dataclass
class _Failure:
    """An exception raised in a worker, carried back as its type and traceback text."""

    worker_id: int
    exc_type: type
    text: str

    def reraise(self):
        message = (
            f"Caught {self.exc_type.__name__} in DataLoader worker process {self.worker_id}.\n"
            f"Original {self.text}"
        )
        try:
            error = self.exc_type(message)
        except Exception:
            error = RuntimeError(message)
        raise error


class _Exhausted:
    """A worker's answer once its copy of an IterableDataset has run out."""

    def __init__(self, worker_id: int) -> None:
        self.worker_id = worker_id


class MapFetcher:
    """Builds the batch of the indices asked for (a map-style dataset)."""

    def __init__(self, dataset, collate_fn) -> None:
        self.dataset, self.collate_fn = dataset, collate_fn

    def __call__(self, indices):
        many = getattr(self.dataset, "__getitems__", None)
        samples = many(list(indices)) if callable(many) else [self.dataset[i] for i in indices]
        return self.collate_fn(samples)


class IterableFetcher:
    """The next batch (or sample, without ``batch_size``) of this worker's own pass over an
    IterableDataset; ``drop_last`` drops each worker's last, partial batch, as PyTorch does."""

    def __init__(self, dataset, collate_fn, batch_size, drop_last) -> None:
        self.dataset, self.collate_fn = dataset, collate_fn
        self.batch_size, self.drop_last = batch_size, drop_last
        self.iterator = None

    def __call__(self, _):
        if self.iterator is None:
            self.iterator = iter(self.dataset)
        if self.batch_size is None:
            return self.collate_fn(next(self.iterator))
        batch = []
        for sample in self.iterator:
            batch.append(sample)
            if len(batch) == self.batch_size:
                break
        if not batch or (self.drop_last and len(batch) < self.batch_size):
            raise StopIteration
        return self.collate_fn(batch)


def _loop(fetcher, init_fn, worker_id, num_workers, seed, index_queue, out_queue):
    global _worker_info
    from ...random import manual_seed

    random.seed(seed)
    manual_seed(seed)
    _worker_info = WorkerInfo(worker_id, num_workers, seed, fetcher.dataset)
    try:
        if init_fn is not None:
            init_fn(worker_id)
    except Exception:
        out_queue.put((None, _failure(worker_id)))
        return
    exhausted = False
    while True:
        task = index_queue.get()
        if isinstance(task, _Done):
            return
        number, indices = task
        if isinstance(indices, str):  # a new epoch of an IterableDataset: a fresh pass
            fetcher.iterator, exhausted = None, False
            continue
        if exhausted:
            out_queue.put((number, _Exhausted(worker_id)))
            continue
        try:
            out_queue.put((number, fetcher(indices)))
        except StopIteration:
            exhausted = True
            out_queue.put((number, _Exhausted(worker_id)))
        except Exception:
            out_queue.put((number, _failure(worker_id)))


def _failure(worker_id: int) -> _Failure:
    exc_type, _, _ = sys.exc_info()
    return _Failure(worker_id, exc_type, "".join(traceback.format_exc()))


def default_context():
    """ "forkserver" where the platform has it, with jitgrad imported once in the server so that
    each worker is a cheap fork of a process that runs no threads; "spawn" elsewhere."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # NOTE: the preload list only matters before the server starts (it is one per program)
    context.set_forkserver_preload(["__main__", "jitgrad"])
    return context


_END = object()


class WorkerPool:
    """``num_workers`` processes serving batches; ``run(batches)`` yields them in order with at
    most ``prefetch_factor`` batches outstanding per worker."""

    def __init__(self, fetcher, num_workers, init_fn, seed, context, prefetch_factor, timeout):
        if context is None:
            context = default_context()
        elif isinstance(context, str):
            context = multiprocessing.get_context(context)
        self.num_workers = num_workers
        self.prefetch = max(1, prefetch_factor) * num_workers
        self.timeout = timeout
        self.next_number = 0
        self.out_queue = context.Queue()
        self.index_queues = []
        self.processes = []
        for wid in range(num_workers):
            q = context.Queue()
            p = context.Process(
                target=_loop,
                args=(fetcher, init_fn, wid, num_workers, seed + wid, q, self.out_queue),
                daemon=True,
            )
            p.start()
            self.index_queues.append(q)
            self.processes.append(p)
        # NOTE: at interpreter exit this runs before multiprocessing closes the queues (higher
        # exit priority); a pool closed later could no longer tell its workers to stop
        self._finalizer = multiprocessing.util.Finalize(
            self, WorkerPool._shutdown, (self.index_queues, self.processes), exitpriority=20
        )

    def run(self, tasks):
        """Yield the batches of ``tasks`` (index lists; ``None`` each for an IterableDataset,
        whose workers answer until they run out) in order."""
        # task numbers keep counting across epochs: results left over from an epoch that was
        # abandoned part-way (a persistent pool) are told apart and dropped
        tasks = iter(tasks)
        sent = received = self.next_number
        for q in self.index_queues:
            q.put((None, "epoch"))
        active = [True] * self.num_workers
        turn = 0  # every epoch starts with worker 0, then goes round the workers still active
        ready: dict[int, Any] = {}
        exhausted = False
        while True:
            while not exhausted and sent - received < self.prefetch and any(active):
                task = next(tasks, _END)
                if task is _END:
                    exhausted = True
                    break
                while not active[turn % self.num_workers]:
                    turn += 1
                self.index_queues[turn % self.num_workers].put((sent, task))
                turn += 1
                sent += 1
                self.next_number = sent
            if received == sent:
                return
            while received not in ready:
                number, data = self._get()
                if isinstance(data, _Failure) and (number is None or number >= received):
                    data.reraise()
                if number is not None and number >= received:
                    ready[number] = data
            data = ready.pop(received)
            received += 1
            if isinstance(data, _Exhausted):
                active[data.worker_id] = False
                continue
            yield data

    def _get(self):
        waited = 0.0
        while True:
            try:
                return self.out_queue.get(timeout=1.0)
            except queue.Empty:
                waited += 1.0
                dead = [p.pid for p in self.processes if not p.is_alive()]
                if dead:
                    self.close()
                    pids = ", ".join(str(pid) for pid in dead)
                    raise RuntimeError(
                        f"DataLoader worker (pid(s) {pids}) exited unexpectedly (its error, if "
                        "any, is on stderr). Workers are new processes that import the main "
                        "script again and receive the dataset, collate_fn and worker_init_fn "
                        "pickled: put a script's top-level code under `if __name__ == "
                        "'__main__':`, and define those objects in a module (not in an "
                        "interactive session), or use num_workers=0."
                    ) from None
                if self.timeout and waited >= self.timeout:
                    raise RuntimeError(
                        f"DataLoader timed out after {self.timeout} seconds"
                    ) from None

    def close(self) -> None:
        self._finalizer()

    @staticmethod
    def _shutdown(index_queues, processes) -> None:
        for q, p in zip(index_queues, processes):
            if p.is_alive():
                q.put(_Done())
        for p in processes:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=1)
        processes.clear()
