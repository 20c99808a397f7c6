"""compile(wait=False): calls run eagerly while a worker process builds the compiled code, then
switch to it; a failed build leaves the function eager with one warning; the worker leaves
nothing behind."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import jitgrad as jg
from jitgrad import compile_worker, nn, optim

pytestmark = pytest.mark.worker

# a bound on how long a test waits for a build (a liveness bound, not a speed assertion)
BUILD_TIMEOUT_S = 120


def _model():
    jg.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def _step_fn(model, opt):
    def step(x, y):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def _params(model):
    return [p.detach().numpy().copy() for p in model.parameters()]


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    # nothing cached: the build takes long enough for calls to run eagerly meanwhile
    monkeypatch.setenv("JITGRAD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("JITGRAD_BACKEND", "numba")


@pytest.fixture(params=["fork", "spawn"])
def start_method(request, monkeypatch):
    # the worker as a fork of this process (Linux's default) and as a new interpreter
    monkeypatch.setenv(compile_worker.START_ENV, request.param)
    compile_worker.service().stop()
    yield request.param
    compile_worker.service().stop()


def test_calls_run_eagerly_until_the_build_is_ready_then_compiled(fresh_cache, start_method):
    a, b = _model(), _model()
    opt_a, opt_b = optim.Adam(a.parameters(), lr=0.01), optim.Adam(b.parameters(), lr=0.01)
    step = jg.compile(_step_fn(a, opt_a), wait=False)
    eager = _step_fn(b, opt_b)
    x, y = jg.randn(5, 6), jg.randint(0, 3, (5,))
    deadline = time.monotonic() + BUILD_TIMEOUT_S
    calls = 0
    while step.stats.cache_hits == 0:
        assert time.monotonic() < deadline, step.stats
        got, want = step(x, y), eager(x, y)
        calls += 1
        if step.stats.cache_hits == 0:  # traced or eager: the eager results, to the bit
            assert got.requires_grad is False and got.grad_fn is None
            np.testing.assert_array_equal(got.numpy(), want.detach().numpy())
            for p, q in zip(_params(a), _params(b)):
                np.testing.assert_array_equal(p, q)
    s = step.stats
    assert s.traces == 2 and s.eager_calls >= 1 and s.calls == calls, s
    assert s.traces + s.eager_calls + s.cache_hits == s.calls, s
    assert s.backend_compiles > 0 and s.build_seconds > 0, s
    for _ in range(3):  # compiled from now on, within the compiled code's tolerance
        got, want = step(x, y).numpy(), eager(x, y).detach().numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    # (Adam divides by the gradients' running scale: float32 rounding differences in a
    # near-zero gradient move a parameter by a fraction of lr = 0.01 a step)
    for p, q in zip(_params(a), _params(b)):
        np.testing.assert_allclose(p, q, rtol=1e-3, atol=1e-3)
    assert step.stats.eager_calls == s.eager_calls


def test_a_failed_build_keeps_the_function_eager_with_one_warning(fresh_cache, monkeypatch):
    from jitgrad.backends.numba_cpu import Executable

    bad = [{"source": "def broken(:\n", "prefix": "jgk"}]  # the worker cannot compile it
    monkeypatch.setattr(Executable, "jobs", lambda self: bad)
    w = jg.ones(3, requires_grad=True)

    @jg.compile(wait=False)
    def step(x):
        w.grad = None
        loss = (w * x).sum()
        loss.backward()
        return loss

    x = jg.tensor([1.0, 2.0, 3.0])
    step(x)  # traced, the build handed off
    deadline = time.monotonic() + BUILD_TIMEOUT_S
    entry = next(iter(step._cache.values()))[0]
    while not entry.ready:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.warns(RuntimeWarning, match="keeps running eagerly: SyntaxError: invalid syntax"):
        step(x)
    assert "File" in step.explain() and "def broken(:" in step.explain()  # the whole traceback
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2):
            assert step(x).item() == 6.0
    np.testing.assert_array_equal(w.grad.numpy(), [1.0, 2.0, 3.0])
    assert step.stats.cache_hits == 0 and step.stats.eager_calls == 3


def test_a_worker_that_dies_fails_its_jobs_and_is_reaped(fresh_cache, start_method):
    results = []
    service = compile_worker.service()
    slow = [{"source": "import time\ntime.sleep(60)\n", "prefix": "jgk"}]  # in flight
    service.submit("numba_cpu", slow, lambda error, n: results.append(error))
    proc = service._proc
    os.kill(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + BUILD_TIMEOUT_S
    while not results:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert isinstance(results[0], compile_worker.BuildError)
    assert "exited with status -9" in str(results[0])
    assert proc.returncode == -9  # waited for: no zombie
    # the next job starts a new worker
    again = []
    service.submit("numba_cpu", [], lambda error, n: again.append((error, n)))
    while not again:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert again == [(None, 0)]


def test_an_idle_forked_worker_is_retired_and_reaped_and_the_next_build_forks_anew(
    fresh_cache, monkeypatch
):
    monkeypatch.setenv(compile_worker.START_ENV, "fork")
    monkeypatch.setattr(compile_worker, "_IDLE_S", 0.2)
    service = compile_worker.service()
    service.stop()
    deadline = time.monotonic() + BUILD_TIMEOUT_S
    for _ in range(2):
        results = []
        service.submit("numba_cpu", [], lambda error, n, got=results: got.append((error, n)))
        proc = service._proc
        while not results:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert results == [(None, 0)]
        while proc.returncode is None:  # retired once idle, then waited for: no zombie
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert proc.returncode == 0 and service._proc is None
        assert not os.path.exists(f"/proc/{proc.pid}") or _zombie(proc.pid) is False


def _zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"


def test_the_worker_is_spawned_while_another_thread_runs(monkeypatch):
    import threading

    monkeypatch.delenv(compile_worker.START_ENV, raising=False)
    monkeypatch.setattr(compile_worker, "_FORK_HOSTILE", ())  # (whatever other tests loaded)
    assert compile_worker._start_method() == "fork"  # (Linux, this thread alone)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, name="a-data-loader")
    other.start()
    try:
        assert compile_worker._start_method() == "spawn"  # it might hold a lock the child needs
    finally:
        stop.set()
        other.join()


def test_an_unknown_start_method_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(compile_worker.START_ENV, "thread")
    service = compile_worker.service()
    service.stop()
    with pytest.raises(compile_worker.BuildError, match="expected 'fork' or 'spawn'"):
        service.submit("numba_cpu", [], lambda error, n: None)
    assert service._proc is None and service.busy() == 0


EXIT_SCRIPT = textwrap.dedent(
    """
    import time
    import jitgrad as jg
    from jitgrad import compile_worker
    w = jg.ones(200, requires_grad=True)

    @jg.compile(backend="numba", wait=False)
    def step(x):
        loss = (jg.tanh(w * x) ** 3).sum()
        loss.backward()
        return loss

    step(jg.ones(200))  # the build is in flight when the script ends
    print(compile_worker.service()._proc.pid, flush=True)
    """
)


def test_exiting_with_a_build_in_flight_stops_the_worker_and_leaves_no_partial_cache(tmp_path):
    cache = tmp_path / "cache"
    env = dict(os.environ, JITGRAD_CACHE_DIR=str(cache), JITGRAD_COMPILE_WAIT="0")
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert time.monotonic() - t0 < 60  # (no hang at exit: a liveness bound)
    pid = int(out.stdout.split()[-1])
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}"), "the worker outlived its parent"
    leftovers = [p.name for p in cache.rglob("*") if ".tmp" in p.name]
    assert leftovers == []
    from jitgrad.backends.numba_cpu import cache as gen

    for path in cache.glob("*.py"):  # every source file is whole (its name is its hash)
        assert path.stem == gen.module_name(path.read_text(), path.stem.split("_")[0])


EAGER_LOOP_SCRIPT = textwrap.dedent(
    """
    import time
    import numpy as np
    import jitgrad as jg
    from jitgrad import nn, optim
    from jitgrad.ops import loops
    from jitgrad.optim import fused

    def adam():
        jg.manual_seed(0)
        model = nn.Linear(4, 3)
        return model, optim.Adam(model.parameters(), lr=0.1)

    def step(model, opt, x):
        opt.zero_grad()
        (model(x) ** 2).sum().backward()
        opt.step()
        return [p.detach().numpy().copy() for p in model.parameters()]

    (a, opt_a), (b, opt_b) = adam(), adam()
    x = jg.randn(5, 4)
    loop, key = fused._adam_loop, (fused._adam_loop, np.dtype(np.float32))
    real = fused.usable
    deadline = time.monotonic() + {timeout}
    steps = 0  # with the loop ready
    while steps < 3:
        assert time.monotonic() < deadline, loops._state
        building = loops._state.get(key) != "ready"
        got = step(a, opt_a, x)
        fused.usable = lambda *args, **kw: False  # (the op-by-op update)
        want = step(b, opt_b, x)
        fused.usable = real
        for p, q in zip(got, want):
            np.testing.assert_array_equal(p, q)
        assert loops._state[key] in ("building", "ready")
        if building and loops._state[key] == "building":
            assert not loop.overloads  # nothing compiled on this thread
        steps += not building
        time.sleep(0.01)
    assert loop.overloads and sum(loop.stats.cache_misses.values()) == 0, loop.stats
    assert sum(loop.stats.cache_hits.values()) >= 1  # loaded: the worker compiled it
    print("ok")
    """
)


def test_eager_loops_are_compiled_by_the_worker_meanwhile_numpy_gives_the_same_bits(tmp_path):
    # a fresh install: no loop in Numba's cache. Eager Adam steps take the op-by-op update (the
    # same bits) until the worker has compiled the fused loop, then load it from the cache.
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"), JITGRAD_COMPILE_WAIT="0")
    script = EAGER_LOOP_SCRIPT.format(timeout=BUILD_TIMEOUT_S)
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]


def test_a_compiled_module_inside_an_eager_graph_switches_too(fresh_cache):
    a, b = _model(), _model()
    fa = jg.compile(a, wait=False)
    x = jg.randn(4, 6)
    deadline = time.monotonic() + BUILD_TIMEOUT_S
    while True:
        assert time.monotonic() < deadline, fa.stats
        compiled = fa.stats.cache_hits > 0
        for m, f in ((a, fa), (b, b)):
            m.zero_grad()
            (f(x) ** 2).sum().backward()
        hits = fa.stats.cache_hits
        for p, q in zip(a.parameters(), b.parameters()):
            if hits == 0:  # eager: the same graph, to the bit
                np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())
            else:
                np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-4, atol=1e-6)
        if compiled:
            break
    assert fa.stats.eager_calls >= 1 and fa.stats.traces == 1, fa.stats


def test_a_waited_build_shares_its_jobs_with_the_worker(fresh_cache):
    # compile(wait=True) with several new kernels: the worker takes jobs from the last, the
    # caller claims from the first; the caller then loads the worker's from the caches
    from jitgrad.backends import numba_cpu

    model = _model()
    step = jg.compile(_step_fn(model, optim.SGD(model.parameters(), lr=0.1)), backend="interpreter")
    x, y = jg.randn(5, 6), jg.randint(0, 3, (5,))
    step(x, y)  # (a tape, nothing compiled)
    exe = numba_cpu.lower(step.tape(x, y), build=False)
    jobs = exe.jobs()
    assert len(jobs) >= 5
    shared = compile_worker.service().share("numba_cpu", jobs)
    claimed = [j for j in range(2) if shared.claim(j)]  # before the worker gets to them
    assert claimed == [0, 1]
    deadline = time.monotonic() + BUILD_TIMEOUT_S
    while not shared.over:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert shared.finished == set(range(2, len(jobs)))  # the worker built all the others
    for _ in exe.build_steps(shared):
        pass
    # at most the two claimed kernels compiled here (fewer if an earlier test did); the rest
    # came from the caches
    assert exe.compiled <= 2
