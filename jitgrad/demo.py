"""``python -m jitgrad demo``: train digit classifiers with a compiled whole training step.

The data set is scikit-learn's handwritten digits (1797 greyscale 8x8 images, shipped inside
scikit-learn, no download), split 75/25 into training and test sets. The demo trains an MLP, then
a small CNN (``--model`` picks one), each with Adam and a cosine learning-rate schedule; the whole
step (zero_grad, forward, loss, backward, optimizer update) is one ``jitgrad.compile`` call. At
the end it reports test accuracy, time per step compiled vs eager (and vs PyTorch eager when
importable), compile seconds, and an agreement check of the compiled step against the reference
interpreter on one batch.

The model builders take the library module (``jitgrad`` or ``torch``), so the benchmark
workloads in ``jitgrad.bench`` time exactly the demo's steps on both.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import time
from types import ModuleType
from typing import Any

import numpy as np

import jitgrad as jg

MODELS = ("mlp", "cnn")
N_CLASSES = 10
IMAGE = 8  # the digits are 8x8 pixels
TEST_FRACTION = 0.25


def build_model(lib: ModuleType, kind: str) -> Any:
    """The demo's classifier on `lib` (jitgrad or torch): logits for 10 digit classes.

    mlp: 64 -> 128 -> ReLU -> 64 -> ReLU -> 10 on flattened images.
    cnn: conv 3x3 (16) -> ReLU -> max pool 2 -> conv 3x3 (32) -> ReLU -> max pool 2 -> linear.
    """
    nn = importlib.import_module(lib.__name__ + ".nn")
    if kind == "mlp":
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(IMAGE * IMAGE, 128),
            nn.ReLU(),
            nn.Linear(128, 64),
            nn.ReLU(),
            nn.Linear(64, N_CLASSES),
        )
    if kind == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * (IMAGE // 4) ** 2, N_CLASSES),
        )
    raise ValueError(f"unknown model {kind!r}: choose one of {', '.join(MODELS)}")


def train_step(model: Any, loss_fn: Any, opt: Any, x: Any, y: Any) -> Any:
    """One training step; the same code runs eagerly, compiled, and on torch."""
    opt.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    return loss


def setup_step(
    lib: ModuleType, kind: str, batch: int = 64, lr: float = 1e-3, seed: int = 0
) -> tuple[Any, tuple]:
    """(train_step, args) for `kind` on `lib` with a random batch of digit-shaped inputs."""
    lib.manual_seed(seed)
    optim = importlib.import_module(lib.__name__ + ".optim")
    nn = importlib.import_module(lib.__name__ + ".nn")
    model = build_model(lib, kind)
    opt = optim.Adam(model.parameters(), lr=lr)
    x = lib.rand(batch, 1, IMAGE, IMAGE)
    y = lib.randint(0, N_CLASSES, (batch,))
    return train_step, (model, nn.CrossEntropyLoss(), opt, x, y)


# -- data ---------------------------------------------------------------------------------------
def load_digits(seed: int) -> tuple[jg.Tensor, jg.Tensor, jg.Tensor, jg.Tensor]:
    """The digits as float32 images in [0, 1], shape (N, 1, 8, 8), split 75/25 (stratified)."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise SystemExit(
            "the demo needs scikit-learn for its data set: pip install -e '.[demo]'"
        ) from exc
    data = sk_load_digits()
    images = (data.images / 16.0).astype(np.float32)[:, None]
    labels = data.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=TEST_FRACTION, random_state=seed, stratify=labels
    )
    return tuple(jg.from_numpy(np.ascontiguousarray(a)) for a in (x_tr, y_tr, x_te, y_te))


def accuracy(model: Any, x: jg.Tensor, y: jg.Tensor) -> float:
    was_training = model.training
    model.eval()
    with jg.no_grad():
        correct = int((model(x).argmax(dim=1) == y).sum().item())
    model.train(was_training)
    return correct / len(y)


# -- timing -------------------------------------------------------------------------------------
def _seconds_per_step(run) -> float:
    from .bench import time_call  # the benchmarks' timer (bench imports this module)

    return time_call(run, repeat=3)


def _time_torch(kind: str, batch: int, lr: float) -> float | None:
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        return None
    step, args = setup_step(torch, kind, batch, lr)
    return _seconds_per_step(lambda: step(*args))


def _torch_training_seconds(kind: str, args: argparse.Namespace, data, step=None) -> float | None:
    """PyTorch eager's time for the same training: the same model, optimizer, schedule, batches
    and per-epoch evaluation as ``run`` (None without torch). Timed once jitgrad's background
    builds (``step``'s, the eager loops') are done, so that they do not slow PyTorch down."""
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        return None
    from .ops import loops

    if isinstance(step, jg.CompiledFunction):
        step.wait()
    loops.wait()
    x_tr, y_tr, x_te, y_te = (torch.from_numpy(np.array(t.numpy())) for t in data)
    torch.manual_seed(args.seed)
    model = build_model(torch, kind)
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    gen = torch.Generator().manual_seed(args.seed)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x_tr, y_tr),
        batch_size=args.batch_size,
        shuffle=True,
        generator=gen,
    )
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        for xb, yb in loader:
            train_step(model, loss_fn, opt, xb, yb).item()
        sched.step()
        model.eval()
        with torch.no_grad():
            (model(x_te).argmax(dim=1) == y_te).sum().item()
        model.train()
    return time.perf_counter() - t0


def _agreement(model, loss_fn, opt, x, y, backend: str) -> str:
    """Run the compiled step with check=True on copies: compiled vs the reference interpreter."""
    model, opt = copy.deepcopy((model, opt))
    step = jg.compile(train_step, backend=backend, check=True)
    try:
        # a traced call runs eagerly and is not compared: go on to a compiled (cached) call
        while not step.stats.cache_hits and step.stats.calls < 3:
            step(model, loss_fn, opt, x, y)
    except jg.AgreementError as exc:
        return f"FAILED: {exc}"
    if not step.stats.cache_hits:
        return f"not checked: every call was traced again ({step.stats.retrace_reasons})"
    return "compiled step agrees with the reference interpreter (one batch, every value checked)"


# -- the main job -------------------------------------------------------------------------------
def train(kind: str, args: argparse.Namespace, data, progress: bool = True) -> dict:
    """Train one classifier as the demo does; returns the model, its optimizer and step, the
    history, and the seconds it took (the PyTorch twin's are measured separately)."""
    import jitgrad.nn as nn
    import jitgrad.optim as optim
    from jitgrad.optim.lr_scheduler import CosineAnnealingLR
    from jitgrad.utils.data import DataLoader, TensorDataset

    x_tr, y_tr, x_te, y_te = data
    jg.manual_seed(args.seed)
    model = build_model(jg, kind)
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=args.lr)
    sched = CosineAnnealingLR(opt, T_max=args.epochs)
    gen = jg.Generator().manual_seed(args.seed)
    loader = DataLoader(
        TensorDataset(x_tr, y_tr), batch_size=args.batch_size, shuffle=True, generator=gen
    )
    eager = args.backend == "eager"
    step = train_step if eager else jg.compile(train_step, backend=args.backend, check=args.check)
    n_params = sum(p.numel() for p in model.parameters())
    if progress:
        print(
            f"\n{kind.upper()}: {n_params} parameters, Adam lr {args.lr} with cosine annealing, "
            f"batch {args.batch_size}, {args.epochs} epochs, "
            f"{'eager' if eager else f'compiled ({args.backend})'}"
        )
    history = {"epoch": [], "loss": [], "accuracy": []}
    bar = _progress(args.epochs * len(loader), kind) if progress else None
    t0 = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        total, count = 0.0, 0
        for xb, yb in loader:
            loss = step(model, loss_fn, opt, xb, yb).item()
            total += loss * len(yb)
            count += len(yb)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{loss:.4f}", refresh=False)
        sched.step()
        history["epoch"].append(epoch)
        history["loss"].append(total / count)
        history["accuracy"].append(accuracy(model, x_te, y_te))
    if bar is not None:
        bar.close()
    train_seconds = time.perf_counter() - t0
    return {
        "model": model,
        "loss_fn": loss_fn,
        "opt": opt,
        "step": step,
        "history": history,
        "train_seconds": train_seconds,
        "stats": None if eager else copy.copy(step.stats),  # (the training's)
    }


def run(kind: str, args: argparse.Namespace, data) -> dict:
    trained = train(kind, args, data)
    model, loss_fn, opt, step = (trained[k] for k in ("model", "loss_fn", "opt", "step"))
    history, train_seconds, stats = trained["history"], trained["train_seconds"], trained["stats"]
    eager = args.backend == "eager"
    x_tr, y_tr = data[0], data[1]
    torch_seconds = _torch_training_seconds(kind, args, data, step)

    # time per step on one fixed batch: compiled (if it was), eager, torch eager
    xb, yb = x_tr[: args.batch_size], y_tr[: args.batch_size]
    timings = {}
    if not eager:
        step.wait()  # (a background build may still be in flight: time the compiled code)
        timings["compiled"] = _seconds_per_step(lambda: step(model, loss_fn, opt, xb, yb))
    e_model, e_opt = copy.deepcopy((model, opt))
    timings["eager"] = _seconds_per_step(lambda: train_step(e_model, loss_fn, e_opt, xb, yb))
    timings["torch eager"] = _time_torch(kind, args.batch_size, args.lr)
    backend = "numba" if eager else args.backend
    check = _agreement(model, loss_fn, opt, xb, yb, backend)
    result = {
        "kind": kind,
        "history": history,
        "accuracy": history["accuracy"][-1],
        "timings": timings,
        "train_seconds": train_seconds,
        "torch_seconds": torch_seconds,
        "check": check,
        "stats": stats,
    }
    _report(result)
    return result


def _progress(total: int, kind: str):
    try:
        from tqdm import tqdm
    except ImportError as exc:
        raise SystemExit("the demo needs tqdm: pip install -e '.[demo]'") from exc
    return tqdm(total=total, desc=kind, unit="step", leave=False, mininterval=0.2)


def _report(r: dict) -> None:
    t = r["timings"]
    line = f"trained in {r['train_seconds']:.2f} s"
    if r.get("torch_seconds"):
        ratio = r["train_seconds"] / r["torch_seconds"]
        line += (f" (PyTorch eager: {r['torch_seconds']:.2f} s for the same steps; jitgrad took "
                 f"{ratio:.2f}x its time)")  # fmt: skip
    print(f"{line}; test accuracy {100 * r['accuracy']:.1f}%")
    cells = [f"{name} {1e6 * s:.0f} µs" for name, s in t.items() if s is not None]
    print("time per step: " + ", ".join(cells))
    if t.get("compiled"):
        ratios = [f"{t[k] / t['compiled']:.1f}x vs {k}" for k in ("eager", "torch eager") if t[k]]
        print("compiled speed-up: " + ", ".join(ratios))
    s = r["stats"]
    if s is not None:
        print(
            f"training calls: {s.traces} traced, {s.eager_calls} eager while the compiled code "
            f"was built ({s.build_seconds:.2f} s, in the background), {s.cache_hits} compiled; "
            f"{s.backend_compiles} kernels compiled, {s.trace_seconds + s.compile_seconds:.2f} "
            "s on the training thread"
        )
        for reason in s.retrace_reasons:
            print(f"  retrace: {reason}")
    print(f"check: {r['check']}")


def plot(results: list[dict], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise SystemExit("--plot needs matplotlib: pip install -e '.[demo]'") from exc
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for r in results:
        h = r["history"]
        ax_loss.plot(h["epoch"], h["loss"], label=r["kind"].upper())
        ax_acc.plot(h["epoch"], [100 * a for a in h["accuracy"]], label=r["kind"].upper())
    ax_loss.set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


def train_distributed(kind: str, args: argparse.Namespace, data) -> dict:
    """Data-parallel twin of the eager ``train``: every rank draws the same global batches
    (the same loader, generator and seed as one process), trains on its share of each through
    ``DistributedDataParallel``, and so ends with the single process's model.

    NOTE: a rank's mean loss is weighted by its share of the global batch (shares differ by one
    row when the batch does not split evenly), so the averaged gradient is the global batch's.
    The usual way to give each rank its own samples is ``DistributedSampler``; here the global
    order is kept to show the same accuracy as one process."""
    import jitgrad.distributed as dist
    import jitgrad.nn as nn
    import jitgrad.optim as optim
    from jitgrad.nn.parallel import DistributedDataParallel
    from jitgrad.optim.lr_scheduler import CosineAnnealingLR
    from jitgrad.utils.data import DataLoader, TensorDataset

    if not dist.is_initialized():
        dist.init_process_group(backend="mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    x_tr, y_tr, x_te, y_te = data
    jg.manual_seed(args.seed)
    model = DistributedDataParallel(build_model(jg, kind))
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=args.lr)
    sched = CosineAnnealingLR(opt, T_max=args.epochs)
    gen = jg.Generator().manual_seed(args.seed)
    loader = DataLoader(
        TensorDataset(x_tr, y_tr), batch_size=args.batch_size, shuffle=True, generator=gen
    )
    if rank == 0:
        print(
            f"\n{kind.upper()} data-parallel on {world} rank(s): global batch {args.batch_size} "
            f"split across ranks, Adam lr {args.lr} with cosine annealing, {args.epochs} epochs, "
            "eager"
        )
    samples = 0
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        for xb, yb in loader:
            n = len(yb)
            lo, hi = rank * n // world, (rank + 1) * n // world
            opt.zero_grad()
            loss = loss_fn(model(xb[lo:hi]), yb[lo:hi]) * ((hi - lo) * world / n)
            loss.backward()
            opt.step()
            samples += n
        sched.step()
    dist.barrier()
    seconds = time.perf_counter() - t0
    acc = accuracy(model.module, x_te, y_te)
    if rank == 0:
        print(
            f"trained in {seconds:.2f} s ({samples / seconds:.0f} samples/s over all ranks); "
            f"test accuracy {100 * acc:.1f}%"
        )
    return {"kind": kind, "accuracy": acc, "train_seconds": seconds, "rank": rank}


def main(args: argparse.Namespace) -> int:
    if args.model == "gpt":
        from . import demo_gpt

        demo_gpt.run(args)
        return 0
    data = load_digits(args.seed)
    if getattr(args, "distributed", False):
        kinds = MODELS if args.model == "both" else (args.model,)
        results = [train_distributed(kind, args, data) for kind in kinds]
        if results[-1]["rank"] == 0:
            print(f"test accuracy: {100 * results[-1]['accuracy']:.1f}%")
        return 0
    kinds = MODELS if args.model == "both" else (args.model,)
    print(
        f"jitgrad demo: handwritten digits (scikit-learn), {len(data[1])} training and "
        f"{len(data[3])} test images of 8x8 pixels, 10 classes"
    )
    results = [run(kind, args, data) for kind in kinds]
    if args.plot:
        plot(results, args.plot)
    print(f"test accuracy: {100 * results[-1]['accuracy']:.1f}%")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        choices=[*MODELS, "both", "gpt"],
        default="both",
        help="which model to train (default: both digit classifiers, the MLP then the CNN; "
        "gpt: a character-level GPT on the standard library's source)",
    )
    p.add_argument("--epochs", type=int, default=30, help="passes over the data (default 30)")
    p.add_argument("--batch-size", type=int, default=64, help="minibatch size (default 64)")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (default 1e-2)")
    from .backends import BACKENDS

    p.add_argument(
        "--backend",
        choices=[*BACKENDS, "eager"],
        default="numba",
        help="compiled backend (default numba; interpreter: the reference), or eager: no compile",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="check every compiled step against the reference interpreter (slow)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for the split, init and shuffling")
    p.add_argument("--plot", metavar="PATH", help="write a PNG of loss and accuracy curves")
    p.add_argument(
        "--gpt-steps", type=int, default=1000, help="training steps of --model gpt (default 1000)"
    )
    p.add_argument(
        "--gpt-lr", type=float, default=3e-3, help="peak AdamW learning rate of --model gpt"
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="train data-parallel (eagerly) on the processes of an MPI job: "
        "python -m jitgrad.distributed.run -n 2 python -m jitgrad demo --distributed",
    )
