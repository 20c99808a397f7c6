"""Benchmark workloads and the side-by-side runner behind ``python -m jitgrad bench``.

A workload is written once against the PyTorch-shaped API and run on several *engines*. Since
jitgrad follows PyTorch's names, ``setup(lib)`` receives either the ``jitgrad`` or the ``torch``
module and builds the same program on it. JAX has no such API, so a workload also carries a
``setup_jax(jax)`` twin (a pure step under ``jax.jit``, in ``jitgrad.bench_jax``). The asv suites
in ``benchmarks/`` import the same builders, so there is exactly one definition of each workload.

An engine turns ``(fn, args)`` from a workload into a zero-argument callable that runs one
iteration. Eager engines just call ``fn(*args)``; compiled engines wrap the whole step (zero_grad,
forward, loss, backward, optimizer step) in ``jitgrad.compile`` or ``torch.compile`` and warm it
up, so the table shows steady-state time. Compile times are measured apart
(``measure_compile_times``), in fresh processes: what a user pays when a program starts.
"""

from __future__ import annotations

import argparse
import importlib
import os
import random
import subprocess
import sys
import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import Any

from . import bench_jax, demo, demo_gpt

Step = Callable[..., Any]

# --------------------------------------------------------------------------------------------
# Workloads: setup(lib) -> (fn, args); one call fn(*args) is one timed iteration.
# --------------------------------------------------------------------------------------------

# W1: the MLP of the README: 64 -> 128 -> ReLU -> 10, batch 64, cross-entropy, SGD lr 0.1.
MLP_IN, MLP_HIDDEN, MLP_OUT, MLP_BATCH, MLP_LR = 64, 128, 10, 64, 0.1
MLP_SIZES = (MLP_IN, MLP_HIDDEN, MLP_OUT)
# W1b: wider and deeper, so matmuls (BLAS) dominate rather than per-op overhead.
WIDE_SIZES, WIDE_BATCH = (64, 512, 512, 10), 256
# W2: elementwise chain over a large vector (memory- and transcendental-bound).
CHAIN_SIZE = 1_000_000
# W3 / W4: tiny inputs, so the time is the per-op dispatch overhead, not arithmetic.
TINY_SIZE = 10
# W8: a 2-layer LSTM language model: embedding, LSTM, linear head over the vocabulary, Adam.
LM_VOCAB, LM_HIDDEN, LM_LAYERS, LM_SEQ, LM_BATCH, LM_LR = 64, 128, 2, 32, 32, 1e-3
# The compile-time table's retrace case: W1 with this batch instead of MLP_BATCH.
RETRACE_BATCH = 32
# Idle time before each timed round: BLAS and OpenMP worker threads keep spinning for a while
# after their last call (OpenBLAS about 0.1 s), and on a 2-core machine another engine's
# spinning threads would take a core from the one being timed.
QUIET_S = float(os.environ.get("JITGRAD_BENCH_QUIET_S", "0.2"))


def _setup_mlp(lib: ModuleType, sizes: Sequence[int], batch: int, seed: int) -> tuple[Step, tuple]:
    lib.manual_seed(seed)
    nn = importlib.import_module(lib.__name__ + ".nn")
    optim = importlib.import_module(lib.__name__ + ".optim")
    layers: list = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])  # no ReLU after the last layer: it outputs logits
    opt = optim.SGD(model.parameters(), lr=MLP_LR)
    x = lib.randn(batch, sizes[0])
    y = lib.randint(0, sizes[-1], (batch,))
    return demo.train_step, (model, nn.CrossEntropyLoss(), opt, x, y)


def setup_mlp_step(lib: ModuleType, seed: int = 0, batch: int = MLP_BATCH) -> tuple[Step, tuple]:
    """W1: one SGD training step of a 64-128-10 ReLU MLP on a batch of 64."""
    return _setup_mlp(lib, MLP_SIZES, batch, seed)


def setup_wide_mlp_step(lib: ModuleType, seed: int = 0) -> tuple[Step, tuple]:
    """W1b: one SGD training step of a 64-512-512-10 ReLU MLP on a batch of 256."""
    return _setup_mlp(lib, WIDE_SIZES, WIDE_BATCH, seed)


def _chain_step(lib: ModuleType, x: Any) -> Any:
    x.grad = None
    out = (lib.tanh(1.5 * x + 0.5) * lib.sigmoid(x) + lib.exp(-x * x)).sum()
    out.backward()
    return out


def setup_elementwise_chain(lib: ModuleType, seed: int = 0) -> tuple[Step, tuple]:
    """W2: sum(tanh(1.5x+0.5)*sigmoid(x) + exp(-x*x)) forward+backward, 1e6 float32."""
    lib.manual_seed(seed)
    x = lib.randn(CHAIN_SIZE, dtype=lib.float32, requires_grad=True)
    return _chain_step, (lib, x)


def _tiny_step(x: Any) -> Any:
    x.grad = None
    out = (x * 2 + 1).sum()
    out.backward()
    return out


def setup_tiny_graph(lib: ModuleType, seed: int = 0) -> tuple[Step, tuple]:
    """W3: (x*2+1).sum() forward+backward on 10 elements: per-op overhead of autograd."""
    lib.manual_seed(seed)
    x = lib.randn(TINY_SIZE, requires_grad=True)
    return _tiny_step, (x,)


def _add_step(a: Any, b: Any) -> Any:
    return a + b


def setup_single_add(lib: ModuleType, seed: int = 0) -> tuple[Step, tuple]:
    """W4: one add of two 10-element tensors, no autograd: the bare dispatch cost."""
    lib.manual_seed(seed)
    return _add_step, (lib.randn(TINY_SIZE), lib.randn(TINY_SIZE))


def setup_digits_mlp_step(lib: ModuleType, seed: int = 0) -> tuple[Step, tuple]:
    """W5: the demo's MLP step (64-128-64-10, Adam), batch 64 of 8x8 digit images."""
    return demo.setup_step(lib, "mlp", seed=seed)


def setup_digits_cnn_step(lib: ModuleType, seed: int = 0) -> tuple[Step, tuple]:
    """W6: the demo's CNN step (two 3x3 convs with max pools, Adam), batch 64 of 8x8 images."""
    return demo.setup_step(lib, "cnn", seed=seed)


def _lstm_language_model(nn: ModuleType) -> Any:
    class LSTMLanguageModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(LM_VOCAB, LM_HIDDEN)
            self.lstm = nn.LSTM(LM_HIDDEN, LM_HIDDEN, num_layers=LM_LAYERS)
            self.head = nn.Linear(LM_HIDDEN, LM_VOCAB)

        def forward(self, tokens: Any) -> Any:
            out, _ = self.lstm(self.embed(tokens))  # (seq, batch, hidden)
            return self.head(out).reshape(-1, LM_VOCAB)  # next-token logits, one row a token

    return LSTMLanguageModel()


def setup_lstm_lm_step(lib: ModuleType, seed: int = 0) -> tuple[Step, tuple]:
    """W8: one Adam step of a 2-layer LSTM language model (embedding 128, hidden 128, vocabulary
    64) on a batch of 32 sequences of 32 tokens, cross-entropy on every position."""
    lib.manual_seed(seed)
    nn = importlib.import_module(lib.__name__ + ".nn")
    optim = importlib.import_module(lib.__name__ + ".optim")
    model = _lstm_language_model(nn)
    opt = optim.Adam(model.parameters(), lr=LM_LR)
    x = lib.randint(0, LM_VOCAB, (LM_SEQ, LM_BATCH))
    y = lib.randint(0, LM_VOCAB, (LM_SEQ * LM_BATCH,))
    return demo.train_step, (model, nn.CrossEntropyLoss(), opt, x, y)


def setup_gpt_step(lib: ModuleType, seed: int = 0) -> tuple[Step, tuple]:
    """W7: the GPT demo's training step (2 layers, 4 heads, width 64, context 32, vocabulary
    96, tied embeddings, AdamW with two groups, gradient clipping), batch 16."""
    return demo_gpt.setup_gpt_step(lib, seed=seed)


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    setup: Callable[[ModuleType], tuple[Step, tuple]]
    setup_jax: Callable[[ModuleType], tuple[Step, tuple]] | None = None


# fmt: off
WORKLOADS: tuple[Workload, ...] = (
    Workload("W1", "MLP train step 64-128-10, b=64", setup_mlp_step,
             partial(bench_jax.mlp_step, sizes=MLP_SIZES, batch=MLP_BATCH, lr=MLP_LR)),
    Workload("W1b", "MLP train step 64-512-512-10, b=256", setup_wide_mlp_step,
             partial(bench_jax.mlp_step, sizes=WIDE_SIZES, batch=WIDE_BATCH, lr=MLP_LR)),
    Workload("W2", "elementwise chain fwd+bwd, 1e6", setup_elementwise_chain,
             partial(bench_jax.elementwise_chain, size=CHAIN_SIZE)),
    Workload("W3", "tiny graph fwd+bwd, 10 elems", setup_tiny_graph,
             partial(bench_jax.tiny_graph, size=TINY_SIZE)),
    Workload("W4", "single add, 10 elems", setup_single_add,
             partial(bench_jax.single_add, size=TINY_SIZE)),
    Workload("W5", "demo MLP step (digits, Adam), b=64", setup_digits_mlp_step),
    Workload("W6", "demo CNN step (digits, Adam), b=64", setup_digits_cnn_step),
    Workload("W7", "demo GPT step (2 layers, d=64, ctx 32), b=16", setup_gpt_step),
    Workload("W8", "2-layer LSTM LM step, h=128, seq=32, b=32", setup_lstm_lm_step),
)
# fmt: on


def workload(key: str) -> Workload:
    return next(w for w in WORKLOADS if w.key == key)


# --------------------------------------------------------------------------------------------
# Engines: how a workload is run. `load` returns None when the engine is unavailable.
# --------------------------------------------------------------------------------------------

# A compiled step is called this many times at most to reach steady state: a step may trace more
# than once (e.g. its first call starts with .grad None, later ones with .grad allocated).
MAX_WARMUP_CALLS = 5
STAT_FIELDS = ("traces", "compiles", "trace_seconds", "compile_seconds")


def _load_jitgrad() -> ModuleType:
    return importlib.import_module("jitgrad")


def _load_torch() -> ModuleType | None:
    # torch is optional: only for comparison, never a dependency.
    try:
        return importlib.import_module("torch")
    except ImportError:
        return None


def _load_jax() -> ModuleType | None:
    # jitgrad's compiled backends here run on the CPU: compare JAX on the same device.
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    try:
        return importlib.import_module("jax")
    except Exception:  # not installed, or a jaxlib that fails to load: the column is n/a
        return None


def _eager(fn: Step, args: tuple) -> Callable[[], Any]:
    return lambda: fn(*args)


def _jitgrad_eager(fn: Step, args: tuple) -> Callable[[], Any]:
    # steady state: the eager loops the step uses are compiled (see jitgrad.ops.loops)
    fn(*args)
    importlib.import_module("jitgrad.ops.loops").wait()
    return lambda: fn(*args)


def first_calls(step: Any, args: tuple, max_calls: int = MAX_WARMUP_CALLS) -> dict[str, float]:
    """Call a compiled jitgrad step until a call runs from its cache (steady state).

    Returns the wall time of the first call, the wall time of all calls that traced
    (``warmup``) and how many did (``traced_calls``), and the ``.stats`` deltas over them."""
    stats = step.stats
    before = {k: getattr(stats, k) for k in STAT_FIELDS}
    first = warmup = 0.0
    traced_calls = 0
    for i in range(max_calls):
        traces = stats.traces
        t0 = time.perf_counter()
        step(*args)
        elapsed = time.perf_counter() - t0
        if i == 0:
            first = elapsed
        if stats.traces == traces:
            break
        warmup += elapsed
        traced_calls += 1
    out = {"first_call": first, "warmup": warmup, "traced_calls": traced_calls}
    out.update({k: getattr(stats, k) - before[k] for k in STAT_FIELDS})
    return out


def _jitgrad_compiled(backend: str) -> Callable[[Step, tuple], Callable[[], Any]]:
    def prepare(fn: Step, args: tuple) -> Callable[[], Any]:
        # the whole step is one tape; steady state is the compiled code's (wait for it)
        step = _load_jitgrad().compile(fn, backend=backend, wait=True)
        first_calls(step, args)  # trace and compile before timing
        return lambda: step(*args)

    return prepare


def _torch_compiled(fn: Step, args: tuple) -> Callable[[], Any]:
    step = _load_torch().compile(fn)
    for _ in range(3):  # compile, then recompile once .grad exists (None on the first call)
        step(*args)
    return lambda: step(*args)


def available_backends() -> list[str]:
    """Names of the compiled backends registered in this jitgrad."""
    return list(importlib.import_module("jitgrad.backends").BACKENDS)


@dataclass(frozen=True)
class Engine:
    name: str
    load: Callable[[], ModuleType | None]
    prepare: Callable[[Step, tuple], Callable[[], Any]] = _eager
    # The engine the others are compared against in the default ratio columns.
    baseline: bool = False
    # Which Workload field builds the program for this engine's library.
    setup_attr: str = "setup"


def compiled_engine(backend: str) -> Engine:
    """``jitgrad.compile(step, backend=backend)``; n/a when the backend is not registered."""

    def load() -> ModuleType | None:
        return _load_jitgrad() if backend in available_backends() else None

    return Engine(f"jitgrad {backend}", load, _jitgrad_compiled(backend))


def build_engines(
    backends: Sequence[str], torch_compile: bool = False
) -> tuple[list[Engine], list[tuple[str, str]]]:
    """The table's engines and its ratio columns (numerator name, denominator name)."""
    compiled = [compiled_engine(b) for b in dict.fromkeys(backends)]
    engines = [Engine("jitgrad eager", _load_jitgrad, _jitgrad_eager), *compiled]
    if "interpreter" not in backends:  # the reference every backend is checked against
        engines.append(compiled_engine("interpreter"))
    engines.append(Engine("torch eager", _load_torch, baseline=True))
    if torch_compile:
        engines.append(Engine("torch.compile", _load_torch, _torch_compiled))
    engines.append(Engine("jax jit", _load_jax, setup_attr="setup_jax"))
    ratios = [("torch eager", e.name) for e in compiled] + [("torch eager", "jitgrad eager")]
    if _load_jax() is not None:
        ratios += [("jax jit", e.name) for e in compiled]
    return engines, ratios


def make_runner(workload: Workload, engine: Engine) -> Callable[[], Any] | None:
    """A zero-argument callable running one iteration of `workload` on `engine` (or None)."""
    lib = engine.load()
    setup = getattr(workload, engine.setup_attr, None)
    if lib is None or setup is None:
        return None
    fn, args = setup(lib)
    return engine.prepare(fn, args)


def compiled_runner(key: str, backend: str) -> Callable[[], Any] | None:
    """Workload `key`'s whole step compiled with `backend` and warmed up (None: no backend)."""
    return make_runner(workload(key), compiled_engine(backend))


def _calibrate(run: Callable[[], Any]) -> tuple[timeit.Timer, int, float]:
    """Warm ``run`` up, then let timeit's autorange pick a loop count (>= 0.2 s per
    measurement); returns the timer, the count and that first full measurement's seconds."""
    run()  # warm up: first-call costs (allocations, lazy imports, compiles) are not steady state
    timer = timeit.Timer(run)
    number, first = timer.autorange()
    return timer, number, first


def time_call(run: Callable[[], Any], repeat: int = 5) -> float:
    """Best time of one call in seconds: the minimum over `repeat` measurements discards
    scheduler noise. Autorange's last measurement is a full one, so it counts as the first."""
    timer, number, first = _calibrate(run)
    best = min([first, *timer.repeat(repeat=max(1, repeat) - 1, number=number)])
    return best / number


# --------------------------------------------------------------------------------------------
# The tables
# --------------------------------------------------------------------------------------------


def run_table(
    workloads: Sequence[Workload], engines: Sequence[Engine], repeat: int
) -> list[list[float | None]]:
    """Microseconds per iteration, one row per workload, one column per engine (None: n/a,
    NaN: the engine failed on that workload; the error goes to stderr).

    A workload's engines are measured in turns: each of the `repeat` rounds times every engine
    once, and each cell keeps its best round. On a busy machine a slow spell then reaches every
    column of the row alike instead of whichever engine ran during it, so the ratios are not
    skewed by when each engine happened to run. Each round takes the engines in a new order,
    after idle gaps of varying length, so that a disturbance that recurs with the period of a
    round does not meet the same engine every time."""
    return [_time_row(w, engines, repeat) for w in workloads]


def _time_row(w: Workload, engines: Sequence[Engine], repeat: int) -> list[float | None]:
    row: list[float | None] = [None] * len(engines)
    timers: dict[int, tuple[timeit.Timer, int]] = {}

    def failed(k: int, exc: Exception) -> None:
        # one failing cell should not hide the rest of the table
        print(f"{w.key} on {engines[k].name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        row[k] = float("nan")
        timers.pop(k, None)

    for k, e in enumerate(engines):
        try:
            run = make_runner(w, e)
            if run is not None:
                timer, number, first = _calibrate(run)
                timers[k] = (timer, number)
                row[k] = first / number * 1e6
        except Exception as exc:
            failed(k, exc)
    order = random.Random(w.key)  # the same orders on every run of the bench
    for _ in range(max(1, repeat) - 1):
        for k in order.sample(list(timers), len(timers)):
            timer, number = timers[k]
            try:
                time.sleep(QUIET_S * order.uniform(0.75, 1.25))
                row[k] = min(row[k], timer.timeit(number) / number * 1e6)
            except Exception as exc:
                failed(k, exc)
    return row


def _grid(table: list[list[str]], left: int = 1) -> str:
    """Aligned text columns: the first `left` columns flush left, the others flush right."""
    widths = [max(len(r[c]) for r in table) for c in range(len(table[0]))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(n) if k < left else c.rjust(n) for k, (c, n) in enumerate(zip(cells, widths))
        ).rstrip()

    return "\n".join(
        [line(table[0]), "  ".join("-" * n for n in widths)] + [line(r) for r in table[1:]]
    )


def _cell(t: float | None) -> str:
    if t is None:
        return "n/a"
    return "error" if t != t else f"{t:,.1f}"


def format_table(
    workloads: Sequence[Workload],
    engines: Sequence[Engine],
    rows: list[list[float | None]],
    ratios: Sequence[tuple[str, str]] | None = None,
) -> str:
    """The timing table. `ratios` lists (numerator, denominator) engine names, one column each;
    by default every baseline engine over every other engine."""
    names = [e.name for e in engines]
    if ratios is None:
        bases = [e.name for e in engines if e.baseline]
        ratios = [(b, e.name) for b in bases for e in engines if not e.baseline]
    pairs = [(names.index(a), names.index(b)) for a, b in ratios if a in names and b in names]
    headers = ["workload"] + [f"{n} (us)" for n in names]
    # ">1" means the denominator (a jitgrad engine) is faster than the numerator.
    headers += [f"{names[i].split()[0]}/{names[j]}" for i, j in pairs]
    table = [headers]
    for w, row in zip(workloads, rows):
        cells = [f"{w.key} {w.title}"] + [_cell(t) for t in row]
        for i, j in pairs:
            a, b = row[i], row[j]
            ok = a is not None and b is not None and a == a and b == b and b > 0
            cells.append(f"{a / b:.2f}" if ok else "n/a")
        table.append(cells)
    return _grid(table)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--repeat", type=int, default=5, help="timing repeats per cell; the best is reported"
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="W",
        choices=[w.key for w in WORKLOADS],
        help="run only this workload (repeatable), e.g. --only W1",
    )
    parser.add_argument(
        "--backend",
        action="append",
        metavar="NAME",
        help="compiled jitgrad backend to time (repeatable; default: numba). The reference "
        "interpreter is always timed too",
    )
    parser.add_argument(
        "--torch-compile",
        action="store_true",
        help="also time torch.compile (compiling takes ~20 s per workload)",
    )
    parser.add_argument(
        "--no-compile-times",
        action="store_true",
        help="skip the compile-time table (it starts a fresh process for each case)",
    )
    parser.add_argument(
        "--no-demo-times",
        action="store_true",
        help="skip the demo-from-empty-caches table (the demo twice, the second time with "
        "ten times the epochs: about a minute)",
    )


def main(args: argparse.Namespace) -> int:
    workloads = [w for w in WORKLOADS if not args.only or w.key in args.only]
    backends = list(dict.fromkeys(args.backend or ["numba"]))
    engines, ratios = build_engines(backends, args.torch_compile)
    available = available_backends()
    print("Best time per iteration in microseconds; ratio > 1 means jitgrad is faster.")
    print("A workload's engines are timed in turns, best of --repeat rounds each.")
    print("Compiled columns run the whole step (zero_grad, forward, loss, backward, optimizer")
    print("step) as one compiled call, after warm-up; compile times are in the second table.")
    for b in backends:
        if b not in available:
            print(f"(backend {b!r} is not registered; available: {', '.join(available)})")
    missing = [e.name for e in engines if e.load() is None]
    if missing:
        print(f"(not available, shown as n/a: {', '.join(missing)})")
    torch = _load_torch()
    if torch is not None:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads")
    import numba

    print(f"jitgrad numba: {numba.config.NUMBA_NUM_THREADS} threads for large steps")
    if "OMP_NUM_THREADS" not in os.environ:
        print("(threads not pinned: on a busy machine OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1")
        print(" NUMBA_NUM_THREADS=1 steadies small workloads, where BLAS threads waking up can")
        print(" cost milliseconds)")
    jax = _load_jax()
    if jax is not None:
        print(f"jax {jax.__version__} on {jax.default_backend()}")
    rows = run_table(workloads, engines, args.repeat)
    print(format_table(workloads, engines, rows, ratios))
    if args.no_compile_times:
        return 0
    compiled = [b for b in dict.fromkeys([*backends, "interpreter"]) if b in available]
    print()
    print("Time to a first compiled step, in seconds: each case in a fresh process, from the")
    print("first call to the end of the first call that ran compiled code (wait=True). Caches:")
    print("empty, or kept from an earlier case; 'runtime cached': the runtime's own helpers")
    print("were compiled before, as by any earlier run (see jitgrad/bench_compile.py).")
    from . import bench_compile

    results: dict[str, dict | None] = {}
    for b in compiled:
        try:
            results[b] = bench_compile.measure(b)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(exc, file=sys.stderr)
            results[b] = None
    print(bench_compile.format_table(results))
    if args.no_demo_times:
        return 0
    print()
    print("The demo from empty caches (python -m jitgrad demo in a fresh process, as on a new")
    print("machine): each model's training seconds against PyTorch eager's for the same steps,")
    print("batches and per-epoch evaluation, measured in the same process; and with ten times")
    print("the epochs.")
    try:
        print(bench_compile.format_demo_table(bench_compile.measure_demo()))
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(exc, file=sys.stderr)
    return 0
