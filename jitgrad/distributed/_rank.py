"""What each rank runs under ``python -m jitgrad.distributed.run``: set threads per rank,
run the user's program, and abort the whole job (naming this rank) if it raises.

NOTE: a rank that raises under plain ``python`` leaves the others waiting in their next
collective (or in MPI's finalize) for ever; MPI_Abort is what ends every rank.
"""

from __future__ import annotations

import os
import sys
import traceback

THREAD_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def threads_per_rank(cores: int, local_ranks: int) -> int:
    """Cores shared evenly among the ranks on one machine, at least one thread each."""
    return max(1, cores // max(1, local_ranks))


def _env_int(names, default):
    for name in names:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return default


def rank_from_env() -> int | None:
    return _env_int(("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"), None)


def set_threads() -> int:
    """Threads for this rank: cores / ranks on this machine, or what ``--threads-per-rank``
    said. Thread variables the user set already are left alone, unless the flag was given."""
    local = _env_int(("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "LOCAL_WORLD_SIZE"), 1)
    n = _env_int(("JITGRAD_THREADS_PER_RANK",), 0) or threads_per_rank(os.cpu_count() or 1, local)
    explicit = os.environ.get("JITGRAD_THREADS_EXPLICIT") == "1"  # --threads-per-rank given
    for name in THREAD_VARS:
        if explicit:
            os.environ[name] = str(n)
        else:
            os.environ.setdefault(name, str(n))
    return n


def main(argv=None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    set_threads()
    try:
        from mpi4py.run import run_command_line
    except ImportError:
        from .process_group import INSTALL_HINT

        sys.stderr.write(f"jitgrad.distributed.run: {INSTALL_HINT}\n")
        raise SystemExit(1) from None

    try:
        run_command_line(args)
    except SystemExit as exc:
        code = exc.code
        if code not in (None, 0):
            _abort(code if isinstance(code, int) else 1, None)
        raise
    except BaseException as exc:
        _abort(130 if isinstance(exc, KeyboardInterrupt) else 1, exc)


def _abort(status: int, exc: BaseException | None) -> None:
    rank = rank_from_env()
    who = f"rank {rank}" if rank is not None else "a rank"
    if exc is not None:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        sys.stderr.write(text)
        sys.stderr.write(
            f"jitgrad.distributed.run: {who} raised {type(exc).__name__}: {exc}; "
            "aborting every rank.\n"
        )
    else:
        sys.stderr.write(f"jitgrad.distributed.run: {who} exited with status {status}; aborting.\n")
    sys.stderr.flush()
    MPI = sys.modules.get("mpi4py.MPI")
    if MPI is not None and MPI.Is_initialized() and not MPI.Is_finalized():
        MPI.COMM_WORLD.Abort(status)
    # MPI was never started here: exiting non-zero makes the launcher stop the others
    os._exit(status)


if __name__ == "__main__":
    main()
