"""Benchmark workloads and the side-by-side runner behind ``python -m jitgrad bench``.

A workload is written once against the PyTorch-shaped API and run on several *engines*. Since
jitgrad follows PyTorch's names, ``setup(lib)`` receives either the ``jitgrad`` or the ``torch``
module and builds the same program on it. The asv suites in ``benchmarks/`` import the same
builders, so there is exactly one definition of each workload.

An engine turns ``(fn, args)`` from a workload into a zero-argument callable that runs one
iteration. Eager engines just call ``fn(*args)``; a compiled engine will wrap ``fn`` first.
"""

from __future__ import annotations

import argparse
import importlib
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

Step = Callable[..., Any]

# --------------------------------------------------------------------------------------------
# Workloads: setup(lib) -> (fn, args); one call fn(*args) is one timed iteration.
# --------------------------------------------------------------------------------------------

# W1: the MLP of the README: 64 -> 128 -> ReLU -> 10, batch 64, cross-entropy, SGD lr 0.1.
MLP_IN, MLP_HIDDEN, MLP_OUT, MLP_BATCH, MLP_LR = 64, 128, 10, 64, 0.1
# W2: elementwise chain over a large vector (memory- and transcendental-bound).
CHAIN_SIZE = 1_000_000
# W3 / W4: tiny inputs, so the time is the per-op dispatch overhead, not arithmetic.
TINY_SIZE = 10


def _mlp_step(model: Any, loss_fn: Any, opt: Any, x: Any, y: Any) -> Any:
    opt.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    return loss


def setup_mlp_step(lib: ModuleType, seed: int = 0) -> tuple[Step, tuple]:
    """W1: one SGD training step of a 64-128-10 ReLU MLP on a batch of 64."""
    lib.manual_seed(seed)
    nn = importlib.import_module(lib.__name__ + ".nn")
    optim = importlib.import_module(lib.__name__ + ".optim")
    model = nn.Sequential(nn.Linear(MLP_IN, MLP_HIDDEN), nn.ReLU(), nn.Linear(MLP_HIDDEN, MLP_OUT))
    opt = optim.SGD(model.parameters(), lr=MLP_LR)
    x = lib.randn(MLP_BATCH, MLP_IN)
    y = lib.randint(0, MLP_OUT, (MLP_BATCH,))
    return _mlp_step, (model, nn.CrossEntropyLoss(), opt, x, y)


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


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    setup: Callable[[ModuleType], tuple[Step, tuple]]


WORKLOADS: tuple[Workload, ...] = (
    Workload("W1", "MLP train step 64-128-10, b=64", setup_mlp_step),
    Workload("W2", "elementwise chain fwd+bwd, 1e6", setup_elementwise_chain),
    Workload("W3", "tiny graph fwd+bwd, 10 elems", setup_tiny_graph),
    Workload("W4", "single add, 10 elems", setup_single_add),
)


# --------------------------------------------------------------------------------------------
# Engines: how a workload is run. `load` returns None when the engine is unavailable.
# --------------------------------------------------------------------------------------------


def _load_jitgrad() -> ModuleType:
    return importlib.import_module("jitgrad")


def _load_torch() -> ModuleType | None:
    # torch is optional: only for comparison, never a dependency.
    try:
        return importlib.import_module("torch")
    except ImportError:
        return None


def _eager(fn: Step, args: tuple) -> Callable[[], Any]:
    return lambda: fn(*args)


@dataclass(frozen=True)
class Engine:
    name: str
    load: Callable[[], ModuleType | None]
    prepare: Callable[[Step, tuple], Callable[[], Any]] = _eager
    # The engine the others are compared against in the ratio columns.
    baseline: bool = False


ENGINES: tuple[Engine, ...] = (
    Engine("jitgrad eager", _load_jitgrad),
    Engine("torch eager", _load_torch, baseline=True),
)


def make_runner(workload: Workload, engine: Engine) -> Callable[[], Any] | None:
    """A zero-argument callable running one iteration of `workload` on `engine` (or None)."""
    lib = engine.load()
    if lib is None:
        return None
    fn, args = workload.setup(lib)
    return engine.prepare(fn, args)


def time_call(run: Callable[[], Any], repeat: int = 5) -> float:
    """Best time of one call in seconds: timeit's autorange picks the loop count (>= 0.2 s per
    measurement), then the minimum over `repeat` measurements discards scheduler noise."""
    run()  # warm up: first-call costs (allocations, lazy imports, compiles) are not steady state
    timer = timeit.Timer(run)
    number, _ = timer.autorange()
    best = min(timer.repeat(repeat=max(1, repeat), number=number))
    return best / number


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


def run_table(
    workloads: Sequence[Workload], engines: Sequence[Engine], repeat: int
) -> list[list[float | None]]:
    """Microseconds per iteration, one row per workload, one column per engine (None: n/a)."""
    rows = []
    for w in workloads:
        row: list[float | None] = []
        for e in engines:
            run = make_runner(w, e)
            row.append(None if run is None else time_call(run, repeat) * 1e6)
        rows.append(row)
    return rows


def format_table(
    workloads: Sequence[Workload], engines: Sequence[Engine], rows: list[list[float | None]]
) -> str:
    base = next((i for i, e in enumerate(engines) if e.baseline), None)
    others = [i for i, e in enumerate(engines) if not e.baseline]
    base_name = engines[base].name.split()[0] if base is not None else ""
    headers = ["workload"] + [f"{e.name} (us)" for e in engines]
    if base is not None:
        # ">1" means the jitgrad engine is faster than the baseline.
        headers += [f"{base_name}/{engines[i].name}" for i in others]
    table = [headers]
    for w, row in zip(workloads, rows):
        cells = [f"{w.key} {w.title}"]
        cells += ["n/a" if t is None else f"{t:,.1f}" for t in row]
        if base is not None:
            for i in others:
                b, t = row[base], row[i]
                cells.append("n/a" if b is None or t is None else f"{b / t:.2f}")
        table.append(cells)
    widths = [max(len(r[c]) for r in table) for c in range(len(headers))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first] + [c.rjust(n) for c, n in zip(cells[1:], widths[1:])])

    out = [line(table[0]), "  ".join("-" * n for n in widths)]
    out += [line(r) for r in table[1:]]
    return "\n".join(out)


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


def main(args: argparse.Namespace) -> int:
    workloads = [w for w in WORKLOADS if not args.only or w.key in args.only]
    engines = list(ENGINES)
    print("Best time per iteration in microseconds; ratio > 1 means jitgrad is faster.")
    missing = [e.name for e in engines if e.load() is None]
    if missing:
        print(f"(not installed, shown as n/a: {', '.join(missing)})")
    torch = _load_torch()
    if torch is not None:
        # Small workloads are sensitive to threading; OMP_NUM_THREADS=1 pins both libraries.
        print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads")
    rows = run_table(workloads, engines, args.repeat)
    print(format_table(workloads, engines, rows))
    return 0
