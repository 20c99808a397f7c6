"""Builds compiled code in a separate process, so that training never waits for the compiler.

``jitgrad.compile`` (unless ``wait=True``) hands a backend's build jobs (``exe.jobs()``: the
generated sources to compile) to one worker process per Python process, and keeps running the
traced function eagerly until the worker is done. The worker compiles the sources into the
disk cache; a thread of the parent then loads them from there (``exe.build()``, all cache
hits) and the function switches to the compiled code. Compiling in another process keeps
Numba's compiler, which holds the GIL while it types and lowers, off the training thread.

The worker is ``python -m jitgrad.compile_worker`` at the lowest priority (``nice 19``), so it
compiles on the cores the training leaves idle (while a background build is in flight, NumPy's
BLAS runs on one thread, see ``jitgrad.blas``): it reads one JSON job per line on stdin
and answers one JSON line per job on stdout. It ignores SIGINT (a Ctrl-C in the terminal is
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
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable

from . import blas
from .locks import new_lock

__all__ = ["BuildError", "service", "main"]

# seconds a stopping worker gets to finish before it is killed (its build is not needed then)
_STOP_GRACE_S = 0.5


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
        self._log = None  # the worker's stderr, for the reason it died
        self._pending: dict = {}  # job id -> callback(error or None)
        self._shared: dict = {}  # job id -> the Shared build it belongs to
        self._next = 0
        self._reader = None
        self._pid = os.getpid()

    # -- the worker process ----------------------------------------------------------------------
    def _start(self) -> None:
        import jitgrad

        root = os.path.dirname(os.path.dirname(os.path.abspath(jitgrad.__file__)))
        env = dict(os.environ)
        # the worker imports this jitgrad, wherever it was imported from
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        self._log = tempfile.TemporaryFile()
        # at the lowest priority from the start (its imports too): it compiles on the cores the
        # training leaves idle
        # (in the parent's session: a session of its own is a scheduling group of its own on
        # Linux, which takes its fair share of the cores whatever its priority, and made each
        # BLAS call of an eager CNN step wait for a core: 64 ms steps instead of 3. A Ctrl-C
        # in the terminal, meant for the training, does not stop it: it ignores SIGINT.)
        boot = "import os, runpy, signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        boot += "if hasattr(os, 'nice'): os.nice(19)\n"
        boot += "runpy.run_module('jitgrad.compile_worker', run_name='__main__')"
        self._proc = subprocess.Popen(
            [sys.executable, "-c", boot, str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
        )
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
                done = self._pending.pop(reply.get("id"), None)
            if done is not None:
                error = reply.get("error")
                error = BuildError(error, reply.get("traceback", "")) if error else None
                done(error, reply.get("compiled", 0))
        proc.wait()  # (reaped: no zombie)
        with self._lock:
            pending, self._pending = self._pending, {}
            if self._proc is proc:
                self._proc = None
        if pending:
            why = self._died(proc)
            for done in pending.values():
                done(BuildError(why), 0)

    def _died(self, proc) -> str:
        tail = ""
        if self._log is not None:
            try:
                self._log.seek(0)
                tail = self._log.read()[-2000:].decode("utf-8", "replace").strip()
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
            self._pending[job_id] = done
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


def _read_messages(messages, claims: dict, lock) -> None:
    """The worker's stdin: builds go to ``messages``, claims into ``claims`` at once (so a
    build in progress sees them); EOF ends the worker after its current build."""
    for line in sys.stdin:
        message = json.loads(line)
        if "claim" in message:
            with lock:
                claims.setdefault(message["id"], set()).add(message["claim"])
            continue
        messages.put(message)
    messages.put(None)


def main(argv: list | None = None) -> None:
    import queue

    argv = sys.argv[1:] if argv is None else argv
    if argv:
        threading.Thread(target=_watch_parent, args=(int(argv[0]),), daemon=True).start()
    out = os.fdopen(os.dup(1), "w")  # the replies; anything printed goes to stderr
    os.dup2(2, 1)
    messages: queue.Queue = queue.Queue()
    claims: dict = {}
    lock = threading.Lock()
    threading.Thread(target=_read_messages, args=(messages, claims, lock), daemon=True).start()

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
