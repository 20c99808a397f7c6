"""Builds compiled code in a separate process, so that training never waits for the compiler.

``jitgrad.compile`` (unless ``wait=True``) hands a backend's build jobs (``exe.jobs()``: the
generated sources to compile) to one worker process per Python process, and keeps running the
traced function eagerly until the worker is done. The worker compiles the sources into the
disk cache; a thread of the parent then loads them from there (``exe.build()``, all cache
hits) and the function switches to the compiled code. Compiling in another process keeps
Numba's compiler, which holds the GIL while it types and lowers, off the training thread.

On Linux the worker is a fork of the process (``_fork_worker``): it starts compiling at once,
with the modules and compiled helpers the process already has, and is retired after
``_IDLE_S`` idle seconds (the next build forks anew). Elsewhere, or with
``JITGRAD_WORKER_START=spawn``, it is ``python -m jitgrad.compile_worker``, which first imports
jitgrad (about half a second). Either runs at the lowest priority (``nice 19``), so it
compiles on the cores the training leaves idle (while a background build is in flight, NumPy's
BLAS runs on one thread, see ``jitgrad.blas``): it reads one JSON job per line from a pipe
and answers one JSON line per job on another. It ignores SIGINT (a Ctrl-C in the terminal is
for the training process), is stopped and reaped when the parent exits, and exits by itself
when the parent dies. The caches it writes are written atomically
(generated sources by ``cache.load_module``, compiled code by Numba), so a worker stopped
mid-build leaves no half-written entry.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable

from . import blas
from .locks import new_lock

__all__ = ["BuildError", "service", "main"]

# seconds a stopping worker gets to finish before it is killed (its build is not needed then)
_STOP_GRACE_S = 0.5
# how the worker starts: "fork" or "spawn" (see _start_method)
START_ENV = "JITGRAD_WORKER_START"
# seconds a forked worker stays idle before the service retires it (a later build forks anew)
_IDLE_S = 10.0


class BuildError(RuntimeError):
    """The worker could not build a job: the message says why, ``details`` the traceback."""

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details


class _Service:
    """The parent's side: one worker process, the jobs in flight and their callbacks."""

    def __init__(self):
        self._lock = new_lock()
        self._proc = None
        self._pending: dict = {}  # job id -> (the worker building it, callback)
        self._shared: dict = {}  # job id -> the Shared build it belongs to
        self._next = 0
        self._reader = None
        self._pid = os.getpid()

    # -- the worker process ----------------------------------------------------------------------
    def _start(self) -> None:
        method = _start_method()
        log = tempfile.TemporaryFile()  # the worker's stderr, for the reason it died
        try:
            self._proc = (_fork_worker if method == "fork" else _spawn_worker)(log)
        except OSError as exc:
            log.close()
            raise BuildError(f"the compile worker could not start: {exc}") from exc
        self._proc.log = log
        self._reader = threading.Thread(
            target=self._read, args=(self._proc,), name="jitgrad-build-results", daemon=True
        )
        self._reader.start()

    def _read(self, proc) -> None:
        """Results as they come; when the worker is gone, every job still in flight fails."""
        for line in proc.stdout:
            try:
                reply = json.loads(line)
            except ValueError:
                continue
            if "started" in reply or "finished" in reply:  # a shared build's progress
                with self._lock:
                    shared = self._shared.get(reply["id"])
                if shared is not None:
                    shared._progress(reply)
                continue
            with self._lock:
                self._shared.pop(reply.get("id"), None)
                done = self._pending.pop(reply.get("id"), (None, None))[1]
                if isinstance(proc, _Forked) and not self._jobs_of(proc):
                    self._retire_later(proc)
            if done is not None:
                error = reply.get("error")
                error = BuildError(error, reply.get("traceback", "")) if error else None
                done(error, reply.get("compiled", 0))
        proc.stdout.close()  # (the worker closed its end)
        proc.wait()  # (reaped: no zombie)
        with self._lock:
            pending = self._jobs_of(proc)  # (a newer worker's jobs are not this one's)
            for job_id in pending:
                del self._pending[job_id]
            if self._proc is proc:
                self._proc = None
            try:
                proc.stdin.close()  # (nothing is sent to a worker that is gone)
            except OSError:
                pass
        why = self._died(proc) if pending else ""
        if getattr(proc, "log", None) is not None:
            proc.log.close()
        for done in pending.values():
            done(BuildError(why), 0)

    def _jobs_of(self, proc) -> dict:
        """{job id: callback} of the jobs in flight on ``proc`` (the caller holds the lock)."""
        return {j: done for j, (p, done) in self._pending.items() if p is proc}

    def _retire_later(self, proc) -> None:
        """Stop the forked worker ``proc`` if it is still idle ``_IDLE_S`` from now: its pages
        are copies of this process's that either side's writes duplicate."""

        def retire():
            with self._lock:
                if self._proc is not proc or self._jobs_of(proc):
                    return
                self._proc = None
                try:
                    proc.stdin.close()  # the worker's cue to exit (the reader reaps it)
                except OSError:
                    pass

        timer = threading.Timer(_IDLE_S, retire)
        timer.name, timer.daemon = "jitgrad-retire-worker", True
        timer.start()

    def _died(self, proc) -> str:
        tail = ""
        if getattr(proc, "log", None) is not None:
            try:
                proc.log.seek(0)
                tail = proc.log.read()[-2000:].decode("utf-8", "replace").strip()
            except (OSError, ValueError):
                pass
        return f"the compile worker exited with status {proc.returncode}" + (
            f":\n{tail}" if tail else " (it printed nothing)"
        )

    # -- jobs ------------------------------------------------------------------------------------
    def submit(self, backend: str, jobs: list, done: Callable, shared=None) -> int:
        """Have the worker build ``jobs`` for ``backend`` (a backend's name, or a module with a
        ``run_jobs`` function: ``jitgrad.ops.loops``); ``done(error, compiled)`` runs in
        another thread when they are built (error None; ``compiled``: how many modules the
        worker compiled rather than found in a cache) or failed (a BuildError). With
        ``shared`` (a Shared), the worker builds them from the last, skipping those the caller
        claims. Returns the job's id."""
        with self._lock:
            if os.getpid() != self._pid:
                raise BuildError("the compile worker belongs to the parent process")
            if self._proc is None:
                self._start()
            job_id = self._next
            self._next += 1
            if shared is None:  # a background build: NumPy's BLAS leaves a core to the worker
                blas.hold_one_thread()
                done = _releasing(done)
            self._pending[job_id] = (self._proc, done)
            message = {"id": job_id, "backend": backend, "jobs": jobs}
            if shared is not None:
                self._shared[job_id] = shared
                message["shared"] = True
            try:
                self._send(message)
            except OSError:
                self._pending.pop(job_id, None)
                self._shared.pop(job_id, None)
                if shared is None:
                    blas.release()
                raise BuildError("the compile worker is gone") from None
            return job_id

    def _send(self, message: dict) -> None:
        self._proc.stdin.write((json.dumps(message) + "\n").encode("utf-8"))
        self._proc.stdin.flush()

    def share(self, backend: str, jobs: list) -> Shared:
        """A build of ``jobs`` that the caller and the worker share: the caller builds them in
        order, claiming each first (``Shared.claim``), and the worker from the last."""
        shared = Shared(self, len(jobs))
        try:
            shared.id = self.submit(backend, jobs, shared._done, shared)
        except BuildError:
            shared._done(None, 0)  # (no worker: the caller builds everything)
        return shared

    def busy(self) -> int:
        """Jobs in flight."""
        with self._lock:
            return len(self._pending)

    def stop(self) -> None:
        """Stop the worker (jobs in flight fail) and reap it."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None or os.getpid() != self._pid:
            return
        try:
            proc.stdin.close()  # the worker's cue to exit
        except OSError:
            pass
        try:
            proc.wait(_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- starting the worker ---------------------------------------------------------------------------
def _start_method() -> str:
    """ "fork" (the worker is a copy of this process, ready at once: nothing to import) where
    the platform forks safely, else "spawn" (a new interpreter that imports jitgrad, about half
    a second). ``$JITGRAD_WORKER_START`` chooses one."""
    method = os.environ.get(START_ENV, "")
    if method in ("fork", "spawn"):
        return method
    if method:
        raise BuildError(f"{START_ENV}={method!r}: expected 'fork' or 'spawn'")
    return "fork" if _fork_is_safe() else "spawn"


# libraries whose threads make a fork unsafe (they warn when the process forks)
_FORK_HOSTILE = ("jax",)


def _fork_is_safe() -> bool:
    """On Linux, when no Python thread but this one and jitgrad's own is running (another one
    might hold a lock the child needs) and no library that forbids forks is loaded."""
    if not (hasattr(os, "fork") and sys.platform.startswith("linux")):
        return False
    if any(name in sys.modules for name in _FORK_HOSTILE):
        return False
    me = threading.current_thread()
    return all(t is me or t.name.startswith("jitgrad-") for t in threading.enumerate())


def _spawn_worker(log) -> subprocess.Popen:
    import jitgrad

    root = os.path.dirname(os.path.dirname(os.path.abspath(jitgrad.__file__)))
    env = dict(os.environ)
    # the worker imports this jitgrad, wherever it was imported from
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    # at the lowest priority from the start (its imports too): it compiles on the cores the
    # training leaves idle
    # (in the parent's session: a session of its own is a scheduling group of its own on
    # Linux, which takes its fair share of the cores whatever its priority, and made each
    # BLAS call of an eager CNN step wait for a core: 64 ms steps instead of 3. A Ctrl-C
    # in the terminal, meant for the training, does not stop it: it ignores SIGINT.)
    boot = "import os, runpy, signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    boot += "if hasattr(os, 'nice'): os.nice(19)\n"
    boot += "runpy.run_module('jitgrad.compile_worker', run_name='__main__')"
    return subprocess.Popen(
        [sys.executable, "-c", boot, str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        env=env,
    )


class _Forked:
    """A forked worker, with the part of ``subprocess.Popen``'s interface the service uses."""

    def __init__(self, pid: int, stdin, stdout):
        self.pid, self.stdin, self.stdout = pid, stdin, stdout
        self.returncode = None
        self._lock = threading.Lock()

    def poll(self):
        with self._lock:  # (the reader and stop() may both wait for it)
            if self.returncode is None:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode

    def wait(self, timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"compile worker {self.pid}", timeout)
            time.sleep(0.005)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _fork_worker(log) -> _Forked:
    """A worker that is a fork of this process: it has jitgrad, Numba and the modules this
    process loaded already, and starts compiling at once. It is forked while this thread holds
    Numba's compiler lock (no other thread is compiling then, so the child's copy of LLVM is
    in a consistent state) and it runs nothing but the compiler; jitgrad's own locks are freed
    in the child (``jitgrad.locks``). Its memory is shared with this process until either
    writes a page, so the service retires it when it has been idle a while (``_IDLE_S``)."""
    from numba.core.compiler_lock import global_compiler_lock

    jobs_r, jobs_w = os.pipe()
    replies_r, replies_w = os.pipe()
    parent = os.getpid()
    with global_compiler_lock, warnings.catch_warnings():
        # (Python 3.12+ warns when a process with threads forks: BLAS's idle pool is one)
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the worker: never returns into the caller's frames
        status = 0
        try:
            os.close(jobs_w)
            os.close(replies_r)
            os.dup2(log.fileno(), 2)
            os.dup2(2, 1)  # (anything printed goes to the log)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            if hasattr(os, "nice"):
                os.nice(19)
            inp = os.fdopen(jobs_r, "r", encoding="utf-8")
            out = os.fdopen(replies_w, "w", encoding="utf-8")
            main([str(parent)], inp, out)
        except BaseException:  # noqa: BLE001  (the parent reports a worker that died)
            traceback.print_exc()
            status = 1
        finally:
            os._exit(status)
    os.close(jobs_r)
    os.close(replies_w)
    return _Forked(pid, os.fdopen(jobs_w, "wb"), os.fdopen(replies_r, "rb"))


def _releasing(done: Callable) -> Callable:
    """``done``, then the BLAS thread hold of its build is released."""

    def wrapped(error, compiled):
        try:
            done(error, compiled)
        finally:
            blas.release()

    return wrapped


class Shared:
    """A build shared with the worker (``_Service.share``): which jobs the worker started and
    finished, and the caller's claims."""

    def __init__(self, service: _Service, n: int):
        self._service = service
        self._cond = threading.Condition(new_lock())
        self.started: set = set()
        self.finished: set = set()
        self.over = False  # the worker is done with the whole build (or gone)
        self.compiled = 0  # modules the worker compiled
        self.id = None

    def claim(self, j: int) -> bool:
        """Whether the caller builds job ``j`` (the worker has not started it; it then skips
        it). A job both start at once is built twice, harmlessly: caches are written whole."""
        with self._cond:
            if j in self.started or j in self.finished:
                return False
            if self.over:
                return True
        try:
            with self._service._lock:
                if self._service._proc is not None:
                    self._service._send({"id": self.id, "claim": j})
        except OSError:
            pass
        return True

    def wait(self, j: int) -> bool:
        """Wait until the worker has built job ``j``; False if it gave up (the caller builds
        it then)."""
        with self._cond:
            while j not in self.finished and not self.over:
                self._cond.wait()
            return j in self.finished

    def _progress(self, reply: dict) -> None:
        with self._cond:
            if "started" in reply:
                self.started.add(reply["started"])
            else:
                self.finished.add(reply["finished"])
            self._cond.notify_all()

    def _done(self, error, compiled: int) -> None:
        with self._cond:
            self.over, self.compiled = True, compiled if error is None else 0
            self._cond.notify_all()


_service: _Service | None = None
_service_lock = new_lock()


def service() -> _Service:
    """This process's build service (its worker starts with the first job)."""
    global _service
    with _service_lock:
        if _service is None or _service._pid != os.getpid():
            _service = _Service()
        return _service


@atexit.register
def _stop_at_exit() -> None:
    if _service is not None and _service._pid == os.getpid():
        _service.stop()


if hasattr(os, "register_at_fork"):  # a forked child gets a service of its own when it asks
    os.register_at_fork(after_in_child=lambda: globals().__setitem__("_service", None))


# -- the worker ------------------------------------------------------------------------------------
def _watch_parent(parent: int) -> None:
    """Exit when the parent is gone (its pipe may only close after a long build)."""
    import time

    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


def _read_messages(inp, messages, claims: dict, lock) -> None:
    """The worker's stdin: builds go to ``messages``, claims into ``claims`` at once (so a
    build in progress sees them); EOF ends the worker after its current build."""
    for line in inp:
        message = json.loads(line)
        if "claim" in message:
            with lock:
                claims.setdefault(message["id"], set()).add(message["claim"])
            continue
        messages.put(message)
    messages.put(None)


def main(argv: list | None = None, inp=None, out=None) -> None:
    """The worker's loop: jobs from ``inp`` (stdin), replies to ``out`` (a copy of stdout, which
    then goes to stderr, so that anything printed stays out of the replies)."""
    import queue

    argv = sys.argv[1:] if argv is None else argv
    if argv:
        threading.Thread(target=_watch_parent, args=(int(argv[0]),), daemon=True).start()
    if out is None:
        out = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)
    messages: queue.Queue = queue.Queue()
    claims: dict = {}
    lock = threading.Lock()
    reader = threading.Thread(
        target=_read_messages, args=(inp or sys.stdin, messages, claims, lock), daemon=True
    )
    reader.start()

    def send(reply):
        out.write(json.dumps(reply) + "\n")
        out.flush()

    while (message := messages.get()) is not None:
        reply = {"id": message["id"]}
        try:
            name = message["backend"]  # a backend's name, or a module's (ops.loops)
            backend = importlib.import_module(name if "." in name else f"jitgrad.backends.{name}")
            jobs = message["jobs"]
            if not message.get("shared"):
                reply["compiled"] = backend.run_jobs(jobs)
            else:  # from the last job, skipping those the parent claims
                compiled = 0
                for j in reversed(range(len(jobs))):
                    with lock:
                        if j in claims.get(message["id"], ()):
                            continue
                    send({"id": message["id"], "started": j})
                    compiled += backend.run_jobs([jobs[j]])
                    send({"id": message["id"], "finished": j})
                reply["compiled"] = compiled
        except BaseException as exc:  # noqa: BLE001  (reported to the parent, which warns)
            reply["error"] = traceback.format_exception_only(exc)[-1].strip()
            reply["traceback"] = traceback.format_exc(limit=8)
        with lock:
            claims.pop(message["id"], None)
        send(reply)


if __name__ == "__main__":
    main()
