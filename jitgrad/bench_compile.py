"""The compile-time table of ``python -m jitgrad bench``: time to a first compiled step.

Each case runs in a fresh process, with its own cache directories, because start-up is what a
user pays when a program starts: ``JITGRAD_CACHE_DIR`` (generated kernels) and
``NUMBA_CACHE_DIR`` (Numba's compiled code, the runtime's helpers among it) are either new
(empty) or kept from an earlier case. "Runtime helpers cached" means a process compiled them
first (``numba_cpu.compile_runtime``, the eager loops), as any earlier jitgrad run on the
machine would have.

A case's time is the wall time from the first call until the end of the first call that ran
compiled code (``compile(wait=True)``: the calls before it traced). The background case
(``wait=False``) counts the eager calls that ran meanwhile instead of waiting.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from . import bench

# MLPs of the compile-time table: 64 -> 128 (x hidden) -> 10, Adam, batch 64
HIDDEN_WIDTH = 128


def setup_adam_mlp_step(lib, hidden: int = 2, seed: int = 0):
    """An MLP 64 -> 128 x ``hidden`` -> 10 with ReLUs, Adam, batch 64: its step."""
    sizes = (bench.MLP_IN, *([HIDDEN_WIDTH] * hidden), bench.MLP_OUT)
    fn, (model, loss, _, x, y) = bench._setup_mlp(lib, sizes, bench.MLP_BATCH, seed)
    optim = __import__(lib.__name__ + ".optim", fromlist=["Adam"])
    return fn, (model, loss, optim.Adam(model.parameters(), lr=1e-3), x, y)


MODELS = {
    "W1": bench.setup_mlp_step,
    "mlp2": partial(setup_adam_mlp_step, hidden=2),
    "mlp8": partial(setup_adam_mlp_step, hidden=8),
    "cnn": bench.setup_digits_cnn_step,
}
MODEL_TITLES = {
    "W1": "W1 (SGD MLP 64-128-10)",
    "mlp2": "Adam MLP 64-128-128-10",
    "mlp8": "Adam MLP, 8 hidden layers of 128",
    "cnn": "demo CNN (W6)",
}


@dataclass(frozen=True)
class Case:
    key: str
    model: str
    caches: str  # which jitgrad and Numba cache directories (see _DIRS)
    title: str
    target: str = ""
    wait: bool = True


# (jitgrad cache, Numba cache) per case: "cold" directories start empty; "warm" is the Numba
# cache with the runtime's helpers compiled; a case with the directory of another model reuses
# what that case compiled
_DIRS = {
    "cold": ("w1", "cold"),
    "same": ("w1", "cold"),
    "new": (None, "warm"),
    "mlp2": ("mlp2", "warm"),
}
CASES = (
    Case("cold", "W1", "cold", "new process, empty caches", "<= 1.0 s"),
    Case("warm", "W1", "same", "new process, same caches", "< 0.5 s"),
    Case("mlp2", "mlp2", "new", "empty jitgrad cache, runtime cached", "<= 1.5 s"),
    Case("mlp8", "mlp8", "new", "empty jitgrad cache, runtime cached", "<= 1.3x mlp2"),
    Case("cnn", "cnn", "new", "empty jitgrad cache, runtime cached", "<= 4 s"),
    Case("second", "mlp8", "mlp2", "second model, its kernels cached", "<= 0.5 s"),
    Case("background", "mlp2", "new", "wait=False: eager until compiled", wait=False),
)
# the backends without a compiler have nothing to measure past W1's traces
TRACE_ONLY = ("cold", "warm")
_TAG = "jitgrad-compile-times: "
_TIMEOUT_S = 900


def first_compiled(step: Any, args: tuple, timeout: float = 120.0) -> dict:
    """Call ``step`` until a call runs its compiled code: the seconds to the end of that call
    (``seconds``), of the first call, and how many calls traced or ran eagerly meanwhile."""
    stats = step.stats
    hits, t0 = stats.cache_hits, time.perf_counter()
    first = None
    while stats.cache_hits == hits and time.perf_counter() - t0 < timeout:
        step(*args)
        first = first if first is not None else time.perf_counter() - t0
    return {
        "seconds": time.perf_counter() - t0,
        "first_call": first,
        "traces": stats.traces,
        "eager_calls": stats.eager_calls,
        "backend_compiles": stats.backend_compiles,
        "compile_seconds": stats.compile_seconds,
        "compiled": stats.cache_hits > hits,
    }


def child(case_key: str, backend: str) -> None:
    """The measuring process: one case (and for "warm", a new batch size after it)."""
    jg = bench._load_jitgrad()
    case = next(c for c in CASES if c.key == case_key)
    fn, args = MODELS[case.model](jg)
    step = jg.compile(fn, backend=backend, wait=case.wait)
    result = {case.key: first_compiled(step, args)}
    if case.key == "warm":
        model, loss_fn, opt = args[:3]
        x, y = jg.randn(bench.RETRACE_BATCH, bench.MLP_IN), jg.randint(0, 10, (32,))
        result["new_batch"] = first_compiled(step, (model, loss_fn, opt, x, y))
    print(_TAG + json.dumps(result), flush=True)


def prepare_runtime() -> None:
    """Compile the runtime's helpers into this process's caches (a "runtime cached" case's
    Numba cache), as an earlier jitgrad run would have."""
    from .backends import numba_cpu
    from .ops import loops
    from .optim import fused

    numba_cpu.compile_runtime()
    loops.compile_all()
    fused.compile_all()


def _run(code: str, env: dict, tag: str = _TAG, what: str = "compile times") -> dict:
    """Run ``code`` in a fresh process; the JSON it printed after ``tag`` (required when the
    code names the measuring child: ``b.child``/``b.demo_child``)."""
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=_TIMEOUT_S
    )
    tagged = [ln for ln in proc.stdout.splitlines() if ln.startswith(tag)]
    if proc.returncode != 0 or (not tagged and "child(" in code):
        raise RuntimeError(
            f"measuring {what} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return json.loads(tagged[-1][len(tag) :]) if tagged else {}


def measure(backend: str) -> dict:
    """{case key: first_compiled result} for ``backend`` (the cases its compiler has)."""
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="jitgrad-compile-times-") as root:

        def env_for(case: Case) -> dict:
            jit, numba = _DIRS[case.caches]
            jit = jit or case.key
            return dict(
                os.environ,
                JITGRAD_CACHE_DIR=os.path.join(root, "jitgrad-" + jit),
                NUMBA_CACHE_DIR=os.path.join(root, "numba-" + numba),
            )

        warm = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(root, "numba-warm"))
        warm["JITGRAD_CACHE_DIR"] = os.path.join(root, "jitgrad-prepare")
        _run("import jitgrad.bench_compile as b; b.prepare_runtime()", warm)
        for case in CASES:
            if backend != "numba" and case.key not in TRACE_ONLY:
                continue
            code = f"import jitgrad.bench_compile as b; b.child({case.key!r}, {backend!r})"
            results.update(_run(code, env_for(case)))
    return results


def _empty_caches(root: str) -> dict:
    """The environment of a process whose jitgrad and Numba caches are new directories under
    ``root`` (as on a new machine)."""
    return dict(
        os.environ,
        JITGRAD_CACHE_DIR=os.path.join(root, "j"),
        NUMBA_CACHE_DIR=os.path.join(root, "n"),
    )


def cold_seconds(backend: str) -> float:
    """W1's time to a first compiled step in a fresh process with empty caches."""
    with tempfile.TemporaryDirectory(prefix="jitgrad-compile-times-") as root:
        code = f"import jitgrad.bench_compile as b; b.child('cold', {backend!r})"
        return float(_run(code, _empty_caches(root))["cold"]["seconds"])


def case_seconds(case_key: str) -> float:
    """One case's seconds, measured alone (for asv): the cases it builds on run first."""
    return float(measure("numba")[case_key]["seconds"])


def format_table(results: dict) -> str:
    """One row per (backend, case) with its target; a failed measurement shows ``error``."""
    headers = ["backend", "model", "case", "to compiled (s)", "target", "first call (s)"]
    headers += ["traces", "eager calls", "compiles"]
    table = [headers]
    for backend, cases in results.items():
        keys = [c.key for c in CASES] + ["new_batch"]
        for key in keys:
            case = next((c for c in CASES if c.key == key), None)
            model = MODEL_TITLES[case.model] if case else MODEL_TITLES["W1"]
            title = case.title if case else f"new batch {bench.RETRACE_BATCH}, same process"
            target = case.target if case else "< 0.2 s"
            r = None if cases is None else cases.get(key)
            if r is None:
                if cases is None:
                    table.append([backend, model, title, "error", target, "", "", "", ""])
                continue
            if key == "mlp8" and "mlp2" in cases:
                target += f" ({r['seconds'] / cases['mlp2']['seconds']:.2f}x)"
            seconds = f"{r['seconds']:.3f}" if r["compiled"] else "not compiled"
            table.append(
                [backend, model, title, seconds, target, f"{r['first_call']:.3f}"]
                + [str(r[k]) for k in ("traces", "eager_calls", "backend_compiles")]
            )
    return bench._grid(table, left=3)


# -- the demo from empty caches ---------------------------------------------------------------
# `python -m jitgrad demo` in a fresh process with both caches empty, as a first run on a new
# machine: each model's training seconds (traced, eager-while-building and compiled calls with
# the per-epoch evaluation, as the demo reports "trained in") against its PyTorch eager twin's
# for the same steps, measured in the same process after it. Also with ten times the epochs.
DEMO_EPOCHS = 30  # the demo's default
DEMO_CASES = (
    (1, "<= 1.5x PyTorch's time"),
    (10, ">= 2x faster than PyTorch"),
)
_DEMO_TAG = "jitgrad-demo-times: "


def demo_child(epochs: int, *argv: str) -> None:
    """The measuring process of one demo case: the demo's models in its order (``argv``: more
    demo options)."""
    import argparse

    from . import demo

    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    args = parser.parse_args(["--epochs", str(epochs), *argv])
    data = demo.load_digits(args.seed)
    result = {}
    for kind in demo.MODELS:
        trained = demo.train(kind, args, data, progress=False)
        stats = trained["stats"]
        result[kind] = {
            "seconds": trained["train_seconds"],
            "torch_seconds": demo._torch_training_seconds(kind, args, data, trained["step"]),
            "traced_calls": stats.traces,
            "eager_calls": stats.eager_calls,
            "compiled_calls": stats.cache_hits,
            "accuracy": trained["history"]["accuracy"][-1],
        }
    print(_DEMO_TAG + json.dumps(result), flush=True)


def measure_demo(factors=None) -> dict:
    """{epochs factor: {model: demo_child's result}}, each case in a fresh process with empty
    caches."""
    results = {}
    for factor, _ in DEMO_CASES:
        if factors is not None and factor not in factors:
            continue
        with tempfile.TemporaryDirectory(prefix="jitgrad-demo-times-") as root:
            code = f"import jitgrad.bench_compile as b; b.demo_child({DEMO_EPOCHS * factor})"
            results[factor] = _run(code, _empty_caches(root), _DEMO_TAG, "the demo")
    return results


def demo_ratio(result: dict) -> float | None:
    """PyTorch's seconds over jitgrad's for one model of a demo case (> 1: jitgrad is faster;
    None without torch)."""
    if result.get("torch_seconds") is None:
        return None
    return result["torch_seconds"] / result["seconds"]


def format_demo_table(results: dict) -> str:
    headers = ["model", "epochs", "trained in (s)", "PyTorch eager (s)", "PyTorch/jitgrad"]
    headers += ["target", "traced", "eager calls", "compiled calls", "accuracy"]
    table = [headers]
    targets = dict(DEMO_CASES)
    for factor, models in results.items():
        for kind, r in models.items():
            ratio = demo_ratio(r)
            table.append(
                [
                    kind.upper(),
                    str(DEMO_EPOCHS * factor),
                    f"{r['seconds']:.2f}",
                    "n/a" if r["torch_seconds"] is None else f"{r['torch_seconds']:.2f}",
                    "n/a" if ratio is None else f"{ratio:.2f}",
                    targets[factor],
                    str(r["traced_calls"]),
                    str(r["eager_calls"]),
                    str(r["compiled_calls"]),
                    f"{100 * r['accuracy']:.1f}%",
                ]
            )
    return bench._grid(table, left=2)
