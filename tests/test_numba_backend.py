"""The Numba CPU backend against the reference interpreter (``check=True`` compares every stored
value) and against eager execution. Compiles are few and shared: each costs seconds."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_compile import _compiled_call, _make_step
from test_properties import _run, step

import jitgrad as jg
import jitgrad.nn as nn
import jitgrad.optim as optim
from jitgrad.ops import OPS, PRIMS
from jitgrad.ops.spec import Arg

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("JITGRAD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "jg-cache"))


def _entries(kind: str) -> dict:
    """name -> (run(inputs), spec) for every primitive or every op with a NumPy reference."""
    if kind == "prims":
        return {
            n: (lambda ins, p=p: jg.apply(p, tuple(ins), p.spec.params), p.spec)
            for n, p in PRIMS.items()
            if p.spec is not None and p.spec.ref is not None
        }
    out = {}
    for n, o in OPS.items():
        if o.spec is None or o.spec.ref is None:
            continue
        call = o.spec.call or (lambda fn, *ins, **params: fn(*ins, **params))
        out[n] = (lambda ins, o=o, call=call: call(o.fn, *ins, **o.spec.params), o.spec)
    return out


def _flat(out) -> list:
    return list(out) if isinstance(out, tuple) else [out]


def _inputs(spec, tensors):
    """The spec's inputs with ``tensors`` at its ``Arg`` positions (constants as drawn)."""
    it = iter(tensors)
    return [next(it) if isinstance(a, Arg) else v for a, v in zip(spec.args, spec.draw())]


def _all_entries(entries: dict, tensors: dict, cotangents: dict):
    """Every entry forward, and its VJP for fixed cotangents: one tape, one compile."""
    results = []
    for name, (run, spec) in entries.items():
        ins = _inputs(spec, tensors[name])
        outs = _flat(run(ins))
        results.extend(outs)
        if spec.differentiable:
            floats = [o for o in outs if o.dtype.is_floating_point]
            wanted = [ins[k] for k in spec.differentiable]
            results.extend(
                jg.autograd.grad(
                    floats, wanted, cotangents[name], allow_unused=True, materialize_grads=True
                )
            )
    return results


@pytest.mark.filterwarnings("error")  # (a fallback to the interpreter warns: strict)
@pytest.mark.parametrize("kind", ["prims", "ops"])
def test_every_entry_forward_and_vjp_matches_interpreter(kind):
    """Every primitive (and, in a second tape, every op of the op table) on its spec's inputs:
    the numba backend against the interpreter, every stored value."""
    entries = _entries(kind)
    tensors, cotangents = {}, {}
    rng = np.random.default_rng(1)

    def leaves(spec, seed):
        return [
            jg.tensor(v, requires_grad=k in spec.differentiable)
            for k, (a, v) in enumerate(zip(spec.args, spec.draw(seed)))
            if isinstance(a, Arg)
        ]

    for name, (run, spec) in entries.items():
        tensors[name] = leaves(spec, 0)
        outs = _flat(run(_inputs(spec, tensors[name])))
        cotangents[name] = [
            jg.tensor(rng.standard_normal(o.shape), dtype=o.dtype)
            for o in outs
            if o.dtype.is_floating_point
        ]
    fn = jg.compile(lambda t, c: _all_entries(entries, t, c), backend="numba", check=True)
    got = fn(tensors, cotangents)  # check=True: every stored value vs the interpreter
    want = _all_entries(entries, tensors, cotangents)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.detach().numpy(), rtol=1e-9, atol=1e-12)
    # replay on new values of the same shapes
    for name, (_, spec) in entries.items():
        for t, new in zip(tensors[name], leaves(spec, 7)):
            t.data = new.detach()
    got = fn(tensors, cotangents)
    want = _all_entries(entries, tensors, cotangents)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.detach().numpy(), rtol=1e-9, atol=1e-12)
    assert fn.stats.traces == 1


def test_layouts_broadcasting_keepdim_float32_and_transposed_inputs():
    def f(a, b, c):
        s = (a.T * b).sum(dim=0, keepdim=True)  # a transposed view, broadcasting
        m = jg.amax(jg.exp(a), dim=1)  # a reduction over a non-innermost axis of a.T
        z = jg.logsumexp(a[:, 1:3] * 2.0, dim=1, keepdim=True)
        w = (c @ a).relu()  # matmul with a transposed operand
        return s, m, z, w, jg.argmax(a, dim=0), jg.softmax(a, dim=0)

    rng = np.random.default_rng(0)
    a = jg.tensor(rng.standard_normal((5, 4)).astype(np.float32)).T  # non-contiguous (4, 5)
    b = jg.tensor(rng.standard_normal((5, 1)).astype(np.float32))
    c = jg.tensor(rng.standard_normal((3, 4)).astype(np.float32))
    cf = jg.compile(f, backend="numba", check=True)
    for _ in range(2):
        for g, w in zip(cf(a, b, c), f(a, b, c)):
            np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-5, atol=1e-6)


def _model(seed=0):
    jg.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)
    )


@pytest.mark.parametrize(
    "make_opt",
    [lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9), lambda ps: optim.Adam(ps, lr=1e-2)],
    ids=["sgd-momentum", "adam"],
)
def test_compiled_training_tracks_eager_for_50_steps(make_opt):
    eager, comp = _model(), _model()
    opt_e, opt_c = make_opt(eager.parameters()), make_opt(comp.parameters())
    step_e = _make_step(eager, opt_e)
    step_c = jg.compile(_make_step(comp, opt_c), backend="numba")
    params = [p for p in comp.parameters()]
    buffers = [p.detach().numpy() for p in params]
    rng = np.random.default_rng(0)
    for i in range(50):
        x = jg.tensor(rng.standard_normal((16, 8)).astype(np.float32))
        y = jg.tensor(rng.integers(0, 4, 16))
        le, lc = step_e(x, y), step_c(x, y)
        assert lc.item() == pytest.approx(le.item(), rel=1e-4, abs=1e-5), i
    for pe, pc in zip(eager.parameters(), comp.parameters()):
        np.testing.assert_allclose(pc.detach().numpy(), pe.detach().numpy(), rtol=1e-3, atol=1e-4)
    # same Parameter objects, same buffers: updated in place
    assert all(p is q for p, q in zip(params, comp.parameters()))
    assert all(np.shares_memory(b, p.detach().numpy()) for b, p in zip(buffers, params))
    assert step_c.stats.cache_hits >= 47


@pytest.mark.filterwarnings("error")
def test_adam_on_a_one_element_parameter_reads_its_new_moments():
    # the update of a one-element parameter fuses into one loop that stores the new moments
    # and reads them back through a view; such reads may not be hoisted before the loop
    def run(compiled):
        w = nn.Parameter(jg.tensor(np.array([0.5], np.float32)))
        opt = optim.Adam([w], lr=0.1)
        x = jg.tensor(np.linspace(0, 1, 8, dtype=np.float32))

        def step(x):
            loss = ((x * w).sum() - 1.0) ** 2
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss.detach()

        fn = jg.compile(step, backend="numba", wait=True) if compiled else step
        return [float(fn(x)) for _ in range(6)], w.detach().numpy()

    (eager_losses, eager_w), (losses, w) = run(False), run(True)
    np.testing.assert_allclose(losses, eager_losses, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(w, eager_w, rtol=1e-5)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("backend", ["numba", "interpreter"])
def test_profile_times_every_call_and_runs_the_step(backend):
    eager, comp = _model(), _model()
    opt_e, opt_c = optim.SGD(eager.parameters(), lr=0.1), optim.SGD(comp.parameters(), lr=0.1)
    step_e = _make_step(eager, opt_e)
    step_c = jg.compile(_make_step(comp, opt_c), backend=backend, wait=True)
    rng = np.random.default_rng(5)
    x = jg.tensor(rng.standard_normal((16, 8)).astype(np.float32))
    y = jg.tensor(rng.integers(0, 4, 16))
    step_c(x, y)
    table = step_c.profile(x, y, repeat=3, top=None)
    lines = table.splitlines()
    n_calls = int(lines[0].split(": ")[1].split()[0])
    assert n_calls > 5 and len(lines) == 2 + n_calls, table
    assert sorted(int(row.split("%")[1].split(":")[0]) for row in lines[2:]) == list(range(n_calls))
    for _ in range(4):  # the traced call, then the three profiled runs
        step_e(x, y)
    for pe, pc in zip(eager.parameters(), comp.parameters()):
        np.testing.assert_allclose(pc.detach().numpy(), pe.detach().numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.filterwarnings("error")
def test_concatenation_is_stored_piece_by_piece():
    def f(a, b, c):
        return jg.cat([a * 2.0, b.transpose(0, 1), c + 1.0], dim=1).exp()

    rng = np.random.default_rng(0)
    a, b, c = (
        jg.tensor(rng.standard_normal(s, dtype=np.float32)) for s in ((3, 4), (5, 3), (3, 2))
    )
    fn = jg.compile(f, backend="numba", wait=True)
    for _ in range(2):
        out = fn(a, b, c)
    want = np.exp(np.concatenate([a.numpy() * 2, b.numpy().T, c.numpy() + 1], 1))
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-6)
    src = fn.source(a, b, c)
    assert "elif" not in src and src.count("for i0 in range") >= 3, src  # a loop per piece


def test_new_batch_size_retraces_without_recompiling():
    w = jg.randn(6, 3, requires_grad=True)

    @jg.compile(backend="numba")
    def f(x):
        return jg.tanh(x @ w).sum()

    f(jg.randn(8, 6))
    exe = f._cache[next(iter(f._cache))][0].exe
    before = exe.driver.stats.cache_misses if hasattr(exe.driver, "stats") else None
    x = jg.randn(5, 6)
    out = _compiled_call(f, x)  # the reused driver run at the new size
    assert f.stats.traces == 2
    want = np.tanh(x.numpy() @ w.detach().numpy()).sum()
    np.testing.assert_allclose(out.item(), want, rtol=1e-5)
    new = f._cache[list(f._cache)[-1]][0].exe
    assert new.driver is exe.driver  # same generated source: the compiled driver is reused
    if before is not None:
        assert exe.driver.stats.cache_misses == before


def test_memory_stays_flat_over_10000_compiled_steps():
    w = jg.zeros(4, requires_grad=True)
    opt = optim.SGD([w], lr=0.01, momentum=0.9)

    @jg.compile(backend="numba")
    def step(x):
        opt.zero_grad()
        loss = ((x - w) ** 2).sum()
        loss.backward()
        opt.step()
        return loss

    x = jg.ones(4)
    for _ in range(200):
        step(x)
    tracemalloc.start()
    step(x)
    gc.collect()
    base, _ = tracemalloc.get_traced_memory()
    for _ in range(10_000):
        step(x)
    gc.collect()
    now, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert now - base < 64 * 1024, now - base
    np.testing.assert_allclose(w.detach().numpy(), np.ones(4), atol=1e-3)


WARM_SCRIPT = textwrap.dedent(
    """
    import jitgrad as jg
    w = jg.ones(5, requires_grad=True)

    @jg.compile(backend="numba")
    def step(x):
        loss = (jg.tanh(x * w) ** 2).sum()
        loss.backward()
        return loss

    step(jg.ones(5))
    print("compiled", step.stats.backend_compiles)
    """
)


def _python(script: str, cache_dir, **env) -> str:
    """The output of ``script`` run by a new Python process with its own jitgrad cache
    directory and ``env`` set; fails the test if the process fails."""
    env = dict(os.environ, JITGRAD_CACHE_DIR=str(cache_dir), **env)
    cmd = [sys.executable, "-c", script]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_second_process_starts_warm(tmp_path):
    runs = [_python(WARM_SCRIPT, tmp_path / "cache") for _ in range(2)]
    runs = [int(out.split("compiled")[1].split()[0]) for out in runs]
    assert runs[0] >= 1 and runs[1] == 0, runs


def test_source_is_readable_and_names_its_kernels():
    f = jg.compile(lambda x: (jg.exp(x) * 2.0).sum(), backend="numba")
    x = jg.randn(10)
    f(x)
    src = f.source(x)
    assert "def driver(" in src and "# call 0: reduce -> %" in src and "kernel jgk_" in src
    assert "def kernel(B, A, C, part, parts):" in src and "vexp(" in src
    # kernels compile with the lean pipeline, and nothing compiled allocates
    assert "pipeline_class=LeanPipeline" in src and "np.empty" not in src


def test_sum_and_gradient_share_one_fused_loop():
    def chain(x):
        y = (jg.tanh(1.5 * x + 0.5) * jg.sigmoid(x) + jg.exp(-x * x)).sum()
        (g,) = jg.autograd.grad(y, x)
        return y, g

    f = jg.compile(chain, backend="numba", check=True)
    x = jg.tensor(np.linspace(-3, 3, 1000), requires_grad=True)
    y, g = _compiled_call(f, x)
    ref_y, ref_g = chain(jg.tensor(np.linspace(-3, 3, 1000), requires_grad=True))
    np.testing.assert_allclose(y.numpy(), ref_y.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(g.numpy(), ref_g.numpy(), rtol=1e-12, atol=1e-14)
    src = f.source(x)
    assert src.count("# call") == 1 and ": group -> " in src  # one pass over x for both
    assert src.count("vtanh(") == 2  # shared subexpressions computed once per element


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=st.lists(step, min_size=1, max_size=5), seed=st.integers(0, 2**16))
def test_random_programs_whole_step_and_inside_mode_match_interpreter(program, seed):
    """Random programs (the property-test op menu): values and gradients, in whole-step use
    (autograd.grad inside the compiled function) and inside an eager graph."""

    def whole(a, b):
        out = _run(program, [a, b])
        ga, gb = jg.autograd.grad(out, [a, b], allow_unused=True, materialize_grads=True)
        return out, ga, gb

    rng = np.random.default_rng(seed)
    arrays = [rng.uniform(-1.5, 1.5, (3, 4)) for _ in range(2)]
    f = jg.compile(whole, backend="numba", check=True)
    got = _compiled_call(f, *(jg.tensor(x, requires_grad=True) for x in arrays))
    want = whole(*(jg.tensor(x, requires_grad=True) for x in arrays))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.detach().numpy(), rtol=1e-9, atol=1e-12)

    inside = jg.compile(lambda a, b: _run(program, [a, b]), backend="numba")
    for _ in range(2):  # trace (eager graph), then a replay with the compiled backward
        xs = [jg.tensor(x, requires_grad=True) for x in arrays]
        out = inside(*xs)
        got = jg.autograd.grad(out, xs, allow_unused=True, materialize_grads=True)
        ys = [jg.tensor(x, requires_grad=True) for x in arrays]
        want = jg.autograd.grad(_run(program, ys), ys, allow_unused=True, materialize_grads=True)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-9, atol=1e-12)


def test_large_loops_run_in_parallel_and_agree():
    def chain(x):
        y = (jg.tanh(x) * x).sum()
        (g,) = jg.autograd.grad(y, x)
        return y, g, (x * 2.0).amax()

    n = 300_000  # above the parallel threshold
    f = jg.compile(chain, backend="numba", check=True)
    x = jg.tensor(np.linspace(-3, 3, n), requires_grad=True)
    got = _compiled_call(f, x)
    want = chain(jg.tensor(np.linspace(-3, 3, n), requires_grad=True))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.detach().numpy(), rtol=1e-10)
    src = f.source(x)
    # threaded kernels run their part of the outer loop, on every thread at once (abi.launch)
    assert "on threads" in src and "part_range(" in src and "prange(" not in src


def test_threaded_compiled_code_keeps_numpys_blas_on_one_thread(monkeypatch):
    # OpenBLAS's threads spin after an eager product, on the cores a threaded driver's loops
    # wait for: once threaded code is built, NumPy's BLAS stays on one thread
    from jitgrad import blas

    if blas.threads() is None:
        pytest.skip("NumPy's BLAS thread count cannot be set here")
    before = blas.threads()
    monkeypatch.setattr(blas, "_kept", False)
    blas._functions()[0](2)
    try:
        f = jg.compile(lambda x: (jg.tanh(x) * 3.0).sum(), backend="numba")
        x = jg.tensor(np.linspace(-1, 1, 300_001))
        assert blas.threads() == 2  # (tracing builds nothing: the first call runs it eagerly)
        got = _compiled_call(f, x)
        assert "on threads" in f.source(x) and blas.threads() == 1 and blas._kept
        blas.hold_one_thread()
        blas.release()  # (a background build's release leaves it on one thread too)
        assert blas.threads() == 1
        np.testing.assert_allclose(got.numpy(), np.tanh(x.numpy()).sum() * 3.0, rtol=1e-9)
    finally:
        blas._functions()[0](before)


def test_without_control_of_blas_threads_a_step_with_products_runs_serially(monkeypatch):
    # a BLAS whose thread count cannot be set keeps its own threads: no loops on threads
    # beside it, no split products
    from jitgrad.backends.numba_cpu import runtime

    monkeypatch.setattr(runtime, "BLAS_THREADS", False)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((128, 512)).astype(np.float32)
    w = rng.standard_normal((256, 512)).astype(np.float32)
    f = jg.compile(lambda x, w: jg.relu(x @ w.T) * 3.0, backend="numba")
    args = (jg.from_numpy(x), jg.from_numpy(w))
    y = _compiled_call(f, *args)
    np.testing.assert_allclose(y.numpy(), np.maximum(x @ w.T, 0) * 3, rtol=1e-4, atol=1e-3)
    src = f.source(*args)
    assert "on threads" not in src and "split_" not in src and "BLAS thread count" not in src


def test_a_smaller_batch_reuses_the_source_with_threads():
    # threads are chosen by size: a batch too small for them after a larger one runs the code
    # generated for that one (a new source would be a new compile)
    rng = np.random.default_rng(4)
    big, small = (jg.from_numpy(rng.random((n, 256), np.float32)) for n in (300, 3))

    f = jg.compile(lambda x: jg.tanh(x * 2.0).sum(1), backend="numba")
    for x in (big, small):
        y = _compiled_call(f, x)
        np.testing.assert_allclose(y.numpy(), np.tanh(x.numpy() * 2).sum(1), rtol=1e-5)
    assert "on threads" in f.source(big)
    first, second = (f._cache[key][0].exe for key in f._cache)
    assert first.sources() == second.sources()  # the same modules, run with other sizes
    g = jg.compile(lambda x: jg.tanh(x * 2.0).sum(1) + 1.0, backend="numba")
    for x in (small, big, small):
        y = _compiled_call(g, x)
        np.testing.assert_allclose(y.numpy(), np.tanh(x.numpy() * 2).sum(1) + 1, rtol=1e-5)
    # the small batch first: serial code (kept for it), then the large one's with threads
    first, second = (g._cache[key][0].exe for key in g._cache)
    assert not any(c.threaded for c in first.calls) and any(c.threaded for c in second.calls)


def test_a_backend_failure_falls_back_to_the_interpreter(monkeypatch):
    from jitgrad.backends import numba_cpu

    def broken(tape):
        raise NotImplementedError("no kernel for this")

    monkeypatch.setattr(numba_cpu, "lower", broken)
    w = jg.ones(3, requires_grad=True)

    @jg.compile(backend="numba")
    def step(x):
        loss = (w * x).sum()
        loss.backward()
        return loss

    # strict (the suite's setting): the failure is raised
    with pytest.raises(RuntimeError, match="JITGRAD_STRICT_BACKENDS=1 forbids"):
        step(jg.ones(3))
    w.grad = None  # (the traced call ran, eagerly, before the lowering failed)
    monkeypatch.delenv("JITGRAD_STRICT_BACKENDS")  # what a user gets: a warning, and results
    step = jg.compile(step.fn, backend="numba")
    with pytest.warns(RuntimeWarning, match="could not compile.*reference interpreter"):
        step(jg.ones(3))
        step(jg.ones(3))  # .grad now exists: traced again, and again run by the interpreter
        step(jg.ones(3))  # a replay
    np.testing.assert_array_equal(w.grad.numpy(), np.full(3, 3.0))
    assert "interpreter" in step.stats.retrace_reasons[-1]


def test_replaced_captured_buffers_are_read_and_guarded():
    # Compiled calls keep flat views of captured buffers and check only their identity: a new
    # buffer must be noticed (same shape: used; non-contiguous: copied; new shape: retrace).
    jg.manual_seed(0)
    model = nn.Linear(3, 2)

    @jg.compile(backend="numba")
    def f(x):
        with jg.no_grad():
            return model(x).sum(0)

    def eager(x):
        w, b = model.weight.detach().numpy(), model.bias.detach().numpy()
        return (x.numpy() @ w.T + b).sum(0)

    x = jg.randn(4, 3)
    np.testing.assert_allclose(f(x).numpy(), eager(x), rtol=1e-5)
    model.weight.data = jg.randn(2, 3)
    np.testing.assert_allclose(f(x).numpy(), eager(x), rtol=1e-5)
    model.weight.data = jg.randn(3, 2).t()  # not C-contiguous
    np.testing.assert_allclose(f(x).numpy(), eager(x), rtol=1e-5)
    assert f.stats.traces == 1
    model.weight.data = jg.randn(5, 3)
    model.bias.data = jg.randn(5)
    np.testing.assert_allclose(f(x).numpy(), eager(x), rtol=1e-5)
    assert f.stats.traces == 2 and "guard failed" in f.stats.retrace_reasons[-1]


def test_stored_transposes_match_numpy():
    # permuted copies of stored buffers merge dims that stay adjacent (NCHW <-> CNHW moves whole
    # H*W rows); every kind of permutation, unit dims and a reshape after the permute
    a = np.random.default_rng(0).standard_normal((3, 4, 2, 5)).astype(np.float32)
    u = np.random.default_rng(1).standard_normal((1, 3, 1, 4)).astype(np.float32)
    perms = [(1, 0, 2, 3), (0, 2, 3, 1), (3, 2, 1, 0), (2, 3, 0, 1), (0, 1, 3, 2)]

    @jg.compile(backend="numba")
    def f(x, y):
        outs = [x.permute(p).contiguous() for p in perms]
        outs.append(x.permute(1, 0, 2, 3).reshape(4, 30))
        outs.append(y.permute(2, 0, 3, 1).contiguous())
        return outs

    got = _compiled_call(f, jg.from_numpy(a), jg.from_numpy(u))
    want = [a.transpose(p) for p in perms]
    want += [a.transpose(1, 0, 2, 3).reshape(4, 30), u.transpose(2, 0, 3, 1)]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.numpy(), w)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_products_with_a_transposed_right_operand_match_numpy(dtype):
    # A @ B^T with fewer rows than columns and a long inner dim is computed as (B @ A^T)^T
    # (faster in OpenBLAS), batched too; other shapes go straight to BLAS
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 3, 300)).astype(dtype)
    b = rng.standard_normal((2, 7, 300)).astype(dtype)
    c = rng.standard_normal((7, 300)).astype(dtype)

    @jg.compile(backend="numba")
    def f(x, y, z):
        return x @ y.transpose(1, 2), z @ x[0].T, x[1] @ z.T

    tol = 1e-4 if dtype == np.float32 else 1e-12
    # the sizes pick the form at run time: a short inner dim (10) reuses the same compiled code
    for k in (300, 10):
        ak, bk, ck = a[..., :k].copy(), b[..., :k].copy(), c[:, :k].copy()
        args = (jg.from_numpy(ak), jg.from_numpy(bk), jg.from_numpy(ck))
        got = _compiled_call(f, *args)
        assert "^T (2x3x7x" in f.source(*args)  # a right operand stored transposed
        want = (ak @ bk.transpose(0, 2, 1), ck @ ak[0].T, ak[1] @ ck.T)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g.numpy(), w, rtol=tol, atol=tol)
    first, second = (f._cache[key][0].exe for key in f._cache)
    assert f.stats.traces == 2 and second.driver is first.driver


def _blas_threads() -> tuple:
    """(getter, setter) of BLAS's thread count; skips where this BLAS's count cannot be set."""
    from jitgrad.backends.numba_cpu import runtime

    if not runtime.BLAS_THREADS:
        pytest.skip("this BLAS's thread count cannot be set")
    return runtime.get_blas_threads, runtime.set_blas_threads


def _call_restoring_blas_threads(cf, *args):
    """``cf(*args)``, checking that BLAS's thread count after the call is the one before it."""
    get, _ = _blas_threads()
    before = get()
    out = _compiled_call(cf, *args)
    assert get() == before
    return out


def test_large_products_split_across_the_drivers_threads():
    # a parallel driver runs BLAS on one thread per part (and restores BLAS's own count
    # after the call); its large products are split across its threads
    rng = np.random.default_rng(3)
    x = rng.standard_normal((128, 256)).astype(np.float32)
    w = rng.standard_normal((64, 256)).astype(np.float32)

    def f(x, w):
        y = jg.relu(x @ w.T)  # 128 x 256 x 64: above the split size
        (gw,) = jg.autograd.grad((y * y).sum(), w)
        return y, gw

    cf = jg.compile(f, backend="numba", check=True)
    args = (jg.from_numpy(x), jg.tensor(w, requires_grad=True))
    y, gw = _call_restoring_blas_threads(cf, *args)
    src = cf.source(*args)
    assert src.count("runtime split_float32") == 2 and "BLAS thread count" in src
    want_y = np.maximum(x @ w.T, 0)
    np.testing.assert_allclose(y.numpy(), want_y, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gw.numpy(), (2 * want_y).T @ x, rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("out_features", [64, 16])
def test_a_products_two_gradients_share_one_parallel_loop(out_features):
    # dx = dy @ w and dw = dy^T @ x read nothing of each other: one parallel loop runs them,
    # side by side on half of the threads each when both are large in every dim (64), else
    # (16: skinny) each thread runs its part of one, then of the other
    rng = np.random.default_rng(5)
    x = rng.standard_normal((128, 4096 // out_features * 8)).astype(np.float32)
    w = rng.standard_normal((out_features, x.shape[1])).astype(np.float32)
    g = rng.standard_normal((128, out_features)).astype(np.float32)

    def f(x, w, g):
        return jg.autograd.grad(((x @ w.T) * g).sum(), (x, w))

    cf = jg.compile(f, backend="numba")
    args = (jg.tensor(x, requires_grad=True), jg.tensor(w, requires_grad=True), jg.from_numpy(g))
    gx, gw = _call_restoring_blas_threads(cf, *args)
    np.testing.assert_allclose(gx.numpy(), g @ w, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(gw.numpy(), g.T @ x, rtol=1e-4, atol=1e-3)
    src = cf.source(*args)
    assert src.count("pair -> ") == 1 and "runtime pair_float32" in src and "split_" not in src


def test_a_serial_step_with_small_products_runs_blas_on_one_thread():
    # products too small to split gain nothing from BLAS's threads (waking them cost more):
    # a serial driver runs BLAS on one thread too, and restores BLAS's own count after the call
    rng = np.random.default_rng(4)
    x = rng.standard_normal((64, 64)).astype(np.float32)
    w = rng.standard_normal((128, 64)).astype(np.float32)
    cf = jg.compile(lambda x, w: jg.relu(x @ w.T), backend="numba")
    args = (jg.from_numpy(x), jg.from_numpy(w))
    y = _call_restoring_blas_threads(cf, *args)
    src = cf.source(*args)
    assert "on threads" not in src and "BLAS thread count" in src and "split_" not in src
    np.testing.assert_allclose(y.numpy(), np.maximum(x @ w.T, 0), rtol=1e-4, atol=1e-4)


def _in_threads(fns) -> None:
    """Runs each of ``fns`` in its own Python thread, at once; re-raises the first failure."""
    import threading

    errors = []

    def guarded(fn):
        try:
            fn()
        except BaseException as e:  # noqa: BLE001  (reported in the test's thread)
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(fn,)) for fn in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def test_one_compiled_function_called_from_two_threads_at_once():
    # the driver's workspace belongs to its executable: concurrent calls take turns (they
    # used to overwrite each other's intermediate values and return wrong results)
    rng = np.random.default_rng(5)
    w = rng.standard_normal((64, 64)).astype(np.float32)
    xs = [rng.standard_normal((64, 64)).astype(np.float32) for _ in range(2)]
    cf = jg.compile(lambda x, w: (jg.relu(x @ w.T) * 2.0 + 1.0) @ w, backend="numba")
    wt = jg.from_numpy(w)
    want = [(np.maximum(x @ w.T, 0) * 2 + 1) @ w for x in xs]

    def calls(i):
        x = jg.from_numpy(xs[i])
        for _ in range(400):
            np.testing.assert_allclose(cf(x, wt).numpy(), want[i], rtol=1e-4, atol=1e-3)

    _in_threads([lambda: calls(0), lambda: calls(1)])
    assert cf.stats.traces == 1


def test_concurrent_steps_leave_blas_thread_count_as_it_was():
    # each driver with a product runs BLAS on one thread; with two running at once, the count
    # from before the first is the one restored after the last (not the 1 the other set)
    get, put = _blas_threads()
    rng = np.random.default_rng(6)
    x = jg.from_numpy(rng.standard_normal((64, 64)).astype(np.float32))
    fns = [jg.compile(lambda x: jg.relu(x @ x.T) @ x, backend="numba") for _ in range(2)]
    for f in fns:
        f(x)
    before = get()
    put(2)
    try:

        def calls(f):
            for _ in range(1000):
                f(x)

        _in_threads([lambda: calls(fns[0]), lambda: calls(fns[1])])
        assert get() == 2
    finally:
        put(before)


def _in_forked_child(check) -> bool:
    """Whether ``check()`` is true in a child forked from this process. The child reports
    through its exit status and never returns into pytest; one still waiting after 20 s (on a
    lock it inherited held) is ended by its alarm, which counts as false."""
    with warnings.catch_warnings():  # (Python 3.12 warns on fork with threads running)
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        signal.alarm(20)
        ok = False
        try:
            ok = check()
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
# where another test imported jax, jax warns about forking its threads; the child runs only
# jitgrad's code and exits
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
def test_a_child_forked_while_a_driver_runs_starts_with_blas_state_free():
    # a fork while another thread's driver holds BLAS at one thread (or the lock) must not
    # leave the child's drivers spinning, or its BLAS at one thread for good
    from jitgrad.backends.numba_cpu import runtime

    get, put = _blas_threads()
    before, state = get(), list(runtime._BLAS_STATE)
    try:
        put(1)
        runtime._BLAS_STATE[0], runtime._BLAS_STATE[1], runtime._BLAS_STATE[2] = 1, 1, 2
        assert _in_forked_child(lambda: list(runtime._BLAS_STATE[:2]) == [0, 0] and get() == 2)
    finally:
        for i, v in enumerate(state):
            runtime._BLAS_STATE[i] = v
        put(before)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
def test_a_child_forked_while_another_thread_is_in_a_call_can_call_the_step():
    # the thread inside the call (holding the step's lock) does not exist in the child: the
    # child gets the lock back free (jitgrad.locks) instead of waiting for it forever
    import threading

    f = jg.compile(lambda x: x * 2.0 + 1.0, backend="numba")
    x = jg.tensor(np.arange(6, dtype=np.float32))
    f(x)
    f(x)
    lock = f._cache[next(iter(f._cache))][-1].exe.lock
    held, done = threading.Event(), threading.Event()

    def inside_a_call():
        with lock:
            held.set()
            done.wait(30)

    t = threading.Thread(target=inside_a_call)
    t.start()
    try:
        held.wait(30)
        assert _in_forked_child(lambda: np.array_equal(f(x).numpy(), np.arange(6) * 2 + 1))
    finally:
        done.set()
        t.join()


THREADED_SCRIPT = """
import threading
import numpy as np
import jitgrad as jg
import numba
rng = np.random.default_rng(0)
xs = [jg.from_numpy(rng.standard_normal((512, 256)).astype(np.float32)) for _ in range(2)]
fns = [jg.compile(lambda x: jg.tanh(x) * 2.0 + 1.0, backend="numba") for _ in range(2)]
for f, x in zip(fns, xs):
    f(x)
assert "on threads" in fns[0].source(xs[0])
want = [np.tanh(x.numpy()) * 2 + 1 for x in xs]
bad = []
def calls(i):
    try:
        for _ in range(200):
            if not np.allclose(fns[i](xs[i]).numpy(), want[i], atol=1e-5):
                bad.append(i)
    except BaseException as e:
        bad.append(e)
threads = [threading.Thread(target=calls, args=(i,)) for i in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(numba.threading_layer(), "wrong", len(bad))
"""


def test_threaded_steps_from_two_python_threads_under_the_workqueue_layer(tmp_path):
    # Numba's workqueue threading layer aborts the process when two threads launch parallel
    # code at once: threaded drivers take turns
    out = _python(THREADED_SCRIPT, tmp_path / "c", NUMBA_THREADING_LAYER="workqueue")
    assert out.split() == ["workqueue", "wrong", "0"]


def test_gathers_wrap_negative_indices_and_reject_out_of_range_ones():
    # compiled loops do not bounds-check: the host checks gather indices that come from the
    # arguments before each call, and a failed call changes nothing
    jg.manual_seed(0)
    table = nn.Parameter(jg.randn(5, 3))
    opt = optim.SGD([table], lr=0.1)

    @jg.compile(backend="numba")
    def step(idx):
        opt.zero_grad()
        loss = table[idx].sum()
        loss.backward()
        opt.step()
        return loss

    idx = jg.tensor([0, 4, 4, 1])
    step(idx)
    before = table.detach().numpy().copy()
    rows = np.array([-1, 2, -5, 2])
    loss = step(jg.tensor(rows))
    np.testing.assert_allclose(loss.numpy(), before[rows].sum(), rtol=1e-5)
    counts = np.bincount(rows % 5, minlength=5)[:, None]
    np.testing.assert_allclose(table.detach().numpy(), before - 0.1 * counts, atol=1e-6)
    kept = table.detach().numpy().copy()
    with pytest.raises(IndexError, match="index out of range in self: index 5 is outside"):
        step(jg.tensor([1, 5, 0, 2]))
    with pytest.raises(IndexError, match="index -6"):
        step(jg.tensor([1, -6, 0, 2]))
    np.testing.assert_array_equal(table.detach().numpy(), kept)


def test_a_cheap_computed_index_is_recomputed_in_its_gather():
    # max pooling offsets each window's argmax (argmax + tap offsets: one add on a stored
    # value) before gathering a table with it; the add is fused into that gather, while the
    # final flat position (itself a gather) is stored for the gathers that read it
    from jitgrad.backends.numba_cpu.plan import Plan
    from jitgrad.nn import functional as F

    f = jg.compile(lambda x: F.max_pool2d(x, 2).sum(), backend="numba", check=True)
    x = jg.randn(2, 3, 4, 4)
    got = _compiled_call(f, x)
    want = x.numpy().reshape(2, 3, 2, 2, 2, 2).max(axis=(3, 5)).sum()
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
    tape = f.tape(x)
    plan = Plan(tape)
    producer = {e.out: e for e in tape.eqns}

    def computed(v):  # the value under an index's views
        while v in producer and producer[v].prim.kind == "movement":
            v = producer[v].inputs[0]
        return producer.get(v)

    indices = [computed(e.inputs[1]) for e in tape.eqns if e.prim.name == "take"]
    offset, flat = [p for p in indices if p is not None and p.prim.name == "add"]
    assert computed(offset.inputs[0]).prim.name == "argmax"
    assert offset.out not in plan.materialized
    assert computed(flat.inputs[0]).prim.name == "take" and flat.out in plan.materialized


SHARED_SCRIPT = """
import jitgrad as jg
from jitgrad import nn, optim

def model(depth, width):
    layers = [nn.Linear(16, width), nn.ReLU()]
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 4))

def compiled_step(net):
    opt = optim.Adam(net.parameters(), lr=1e-3)
    @jg.compile(backend="numba")
    def step(x, y):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        return loss
    return step

x, y = jg.randn(8, 16), jg.randint(0, 4, (8,))
for depth, width in ((1, 32), (4, 32), (2, 24)):
    step = compiled_step(model(depth, width))
    for _ in range(3):
        step(x, y)
    exe = step._cache[next(iter(step._cache))][-1].exe
    kernels = len(exe.sources()) - 1
    print(depth, width, len(exe.calls), kernels, step.stats.backend_compiles)
"""


def test_kernels_are_compiled_once_per_distinct_source(tmp_path):
    # A kernel's source names no tensor or size of its own: every parameter's Adam update is
    # one kernel, a deeper model of the same layers compiles nothing new, nor does another
    # width, nor a second process
    for run in range(2):
        rows = [line.split() for line in _python(SHARED_SCRIPT, tmp_path / "c").splitlines()]
        (_, _, calls1, kernels1, compiled1), (_, _, calls4, kernels4, compiled4) = rows[:2]
        compiled24 = rows[2][4]
        assert int(kernels1) < int(calls1) // 2 and kernels4 == kernels1, rows
        assert int(calls4) > int(calls1), rows
        if run == 0:
            assert int(compiled1) > 0 and compiled4 == "0" and compiled24 == "0", rows
        else:  # every kernel and the driver come from the disk cache
            assert compiled1 == compiled4 == compiled24 == "0", rows


@pytest.mark.filterwarnings("error")  # (a fallback to the interpreter warns: strict)
def test_a_tape_with_an_empty_backward_compiles():
    # the output is a parameter the step updates: its backward tape has no equations (it
    # used to generate an empty driver that did not compile)
    jg.manual_seed(0)
    p = nn.Parameter(jg.randn(3))
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = jg.ones(3)

    @jg.compile(backend="numba")
    def step():
        opt.step()
        return p

    want = p.detach().numpy().copy()
    buf = np.zeros(3)
    for _ in range(3):
        out = step()
        buf = 0.9 * buf + 1 if _ else np.ones(3)
        want = want - 0.1 * buf
        np.testing.assert_allclose(out.detach().numpy(), want, rtol=1e-6)
    assert step.stats.cache_hits >= 1 and step.stats.backend_compiles >= 1
    p.grad = None
    out.sum().backward()  # its gradient reaches the parameter
    np.testing.assert_array_equal(p.grad.numpy(), np.ones(3))


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("name", sorted(__import__("jitgrad.backends").backends.BACKENDS))
def test_every_backend_meets_the_executable_contract(name):
    from jitgrad import backends
    from jitgrad.backends import contract
    from jitgrad.backends.interpreter import evaluate
    from jitgrad.ir import Tracer, tracing
    from jitgrad.ir.tape import Binding

    x = jg.randn(3, 4)
    tracer = Tracer("f")
    with tracing(tracer):
        tracer.add_input(x, Binding("arg", key=0, name="x"))
        tracer.tape.outputs = [tracer.var_of((x * 2.0).exp().sum(1))]
    tape = tracer.tape
    exe = backends.get(name).lower(tape)
    assert isinstance(exe, contract.Executable)
    assert all(hasattr(exe, m) for m in contract.MEMBERS), [
        m for m in contract.MEMBERS if not hasattr(exe, m)
    ]
    assert exe.backend == name and exe.tape is not None
    outs, writes = exe([x.numpy()])
    want = evaluate(tape, [x.numpy()])[tape.outputs[0]]
    np.testing.assert_allclose(outs[0], want, rtol=1e-5)
    rows, outs2, _ = exe.profile([x.numpy()])
    assert rows and all(t >= 0 for t, _ in rows)
    np.testing.assert_allclose(outs2[0], want, rtol=1e-5)
    assert isinstance(exe.source(), str) and exe.values([x.numpy()]) is not None
