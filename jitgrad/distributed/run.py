"""``python -m jitgrad.distributed.run -n N train.py [args]``: mpiexec with what a user should
not have to know.

- every rank runs through ``jitgrad.distributed._rank``: when one raises, its traceback and rank
  are printed and MPI_Abort stops every rank (instead of the others hanging);
- threads per rank = cores / ranks on the machine (NUMBA_NUM_THREADS, OMP_NUM_THREADS,
  OPENBLAS_NUM_THREADS), unless ``--threads-per-rank`` or the environment says otherwise;
- Open MPI: the flags root needs, ``--oversubscribe`` when there are more ranks than cores, no
  core binding when a rank has several threads, and (on one machine) no libfabric probe at
  start-up, which costs about a second.

The program is ``script.py``, ``-m module`` or ``-c code`` (a leading ``python`` is dropped, so
``... run -n 2 python -m jitgrad demo --distributed`` works). Options before it:
``-n/--nproc N``, ``--hostfile FILE`` (one machine per line: ``node1 slots=8``),
``--threads-per-rank T``, ``--mpiexec PATH``, ``--mpiexec-arg ARG`` (repeatable).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ._rank import threads_per_rank

USAGE = (
    "usage: python -m jitgrad.distributed.run [-n N] [--hostfile FILE] [--threads-per-rank T] "
    "[--mpiexec PATH] [--mpiexec-arg ARG ...] (script.py | -m module | -c code) [args ...]"
)


def _fail(msg: str) -> None:
    sys.stderr.write(f"{USAGE}\njitgrad.distributed.run: error: {msg}\n")
    raise SystemExit(2)


def parse(argv: list[str]) -> tuple[dict, list[str]]:
    opts = {"n": 1, "hostfile": None, "threads": None, "mpiexec": None, "extra": []}
    takes = {
        "-n": "n",
        "-np": "n",
        "--nproc": "n",
        "--nproc-per-node": "n",
        "--hostfile": "hostfile",
        "--threads-per-rank": "threads",
        "--mpiexec": "mpiexec",
        "--mpiexec-arg": "extra",
    }
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            print(__doc__)
            raise SystemExit(0)
        key, value = a, None
        if a.startswith("--") and "=" in a:
            key, value = a.split("=", 1)
        if key not in takes:
            break
        if value is None:
            if i + 1 >= len(argv):
                _fail(f"{a} expects a value")
            value = argv[i + 1]
            i += 1
        i += 1
        name = takes[key]
        if name == "extra":
            opts["extra"].append(value)
        elif name in ("n", "threads"):
            if not value.isdigit() or int(value) < 1:
                _fail(f"{key} expects a positive integer, got {value!r}")
            opts[name] = int(value)
        else:
            opts[name] = value
    program = argv[i:]
    if program and Path(program[0]).name.startswith("python") and not program[0].endswith(".py"):
        program = program[1:]
    if not program:
        _fail("no program given: pass a script, -m module or -c code")
    if program[0] in ("-m", "-c") and len(program) < 2:
        _fail(f"argument expected for {program[0]}")
    return opts, program


def find_mpiexec(given: str | None) -> str:
    if given:
        return given
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.exists():
        return str(beside)
    found = shutil.which("mpiexec") or shutil.which("mpirun")
    if found is None:
        from .process_group import INSTALL_HINT

        raise SystemExit(f"jitgrad.distributed.run: no mpiexec found. {INSTALL_HINT}")
    return found


def _flavour(mpiexec: str) -> str:
    try:
        out = subprocess.run(
            [mpiexec, "--version"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if "Open MPI" in out or "OpenRTE" in out or "PRRTE" in out:
        return "openmpi"
    if "HYDRA" in out or "MPICH" in out or "Intel" in out:
        return "mpich"
    return "unknown"


def command(opts: dict, program: list[str], cores: int | None = None) -> tuple[list, dict]:
    """The mpiexec command line and environment for ``program``."""
    mpiexec = find_mpiexec(opts["mpiexec"])
    flavour = _flavour(mpiexec)
    n = opts["n"]
    cores = cores or os.cpu_count() or 1
    env = dict(os.environ)
    cmd = [mpiexec, "-n", str(n)]
    single_machine = opts["hostfile"] is None
    threads = opts["threads"] or (threads_per_rank(cores, n) if single_machine else None)
    if threads:
        env["JITGRAD_THREADS_PER_RANK"] = str(threads)
    if opts["threads"]:
        env["JITGRAD_THREADS_EXPLICIT"] = "1"
    if opts["hostfile"]:
        cmd += ["--hostfile", opts["hostfile"]]
    if flavour == "openmpi":
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
            env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        if single_machine:
            env.setdefault("OMPI_MCA_btl", "^ofi")
            env.setdefault("OMPI_MCA_mtl", "^ofi")
            if n > cores:
                cmd.append("--oversubscribe")
        if not single_machine or n > cores or (threads or 1) > 1:
            # a rank bound to one core would squeeze its threads onto it
            cmd += ["--bind-to", "none"]
        for name in ("JITGRAD_THREADS_PER_RANK", "JITGRAD_THREADS_EXPLICIT"):
            if name in env:
                cmd += ["-x", name]
    elif flavour == "mpich":
        for name in ("JITGRAD_THREADS_PER_RANK", "JITGRAD_THREADS_EXPLICIT"):
            if name in env:
                cmd += ["-genv", name, env[name]]
    cmd += opts["extra"]
    cmd += [sys.executable, "-m", "jitgrad.distributed._rank", *program]
    return cmd, env


def main(argv: list[str] | None = None) -> int:
    opts, program = parse(list(sys.argv[1:] if argv is None else argv))
    cmd, env = command(opts, program)
    try:
        code = subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        code = 130
    if code:
        sys.stderr.write(f"jitgrad.distributed.run: the job failed (exit status {code})\n")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
