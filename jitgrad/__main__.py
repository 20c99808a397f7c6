"""Command line: ``python -m jitgrad demo`` trains a small MLP, ``python -m jitgrad bench`` times
the benchmark workloads eager and compiled, side by side with PyTorch and JAX (when installed),
and the compile times of a training step."""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence

import jitgrad as jg


def make_spirals(
    n_per_class: int, n_classes: int, *, turns: float = 4.0, noise: float = 0.2
) -> tuple[jg.Tensor, jg.Tensor]:
    """Interleaved spiral arms in 2-D, one per class: not linearly separable, so the network has
    to bend its decision boundary. Uses the current jitgrad random state."""
    labels = jg.arange(n_classes * n_per_class) // n_per_class
    t = (jg.arange(n_classes * n_per_class) % n_per_class).float() / n_per_class  # 0..1 per arm
    theta = labels.float() * (2 * math.pi / n_classes) + t * turns
    theta = theta + jg.randn(n_classes * n_per_class) * noise
    radius = t * 2.0
    points = jg.stack([radius * jg.cos(theta), radius * jg.sin(theta)], dim=1)
    return points, labels


def demo(args: argparse.Namespace) -> int:
    import jitgrad.nn as nn
    import jitgrad.optim as optim

    jg.manual_seed(args.seed)
    n_classes, n_per_class, hidden = 3, 300, 64
    x, y = make_spirals(n_per_class, n_classes)
    n = x.shape[0]
    model = nn.Sequential(
        nn.Linear(2, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, n_classes),
    )
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=args.lr)
    print(
        f"jitgrad demo: {n_classes} spiral arms, {n} points in 2-D; "
        f"MLP 2-{hidden}-{hidden}-{n_classes}, SGD lr={args.lr}, batch {args.batch_size}"
    )

    def full_loss() -> float:
        with jg.no_grad():
            return loss_fn(model(x), y).item()

    print(f"epoch {0:4d}  loss {full_loss():.4f}")
    every = max(1, args.epochs // 10)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        order = jg.randperm(n)
        for i in range(0, n, args.batch_size):
            idx = order[i : i + args.batch_size]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        if epoch % every == 0 or epoch == args.epochs:
            print(f"epoch {epoch:4d}  loss {full_loss():.4f}")
    elapsed = time.perf_counter() - start

    with jg.no_grad():
        correct = int((model(x).argmax(dim=1) == y).sum().item())
    print(f"trained {args.epochs} epochs in {elapsed:.2f} s (eager)")
    print(f"final accuracy: {100 * correct / n:.1f}% ({correct}/{n})")
    return 0


def bench(args: argparse.Namespace) -> int:
    from . import bench as bench_mod

    return bench_mod.main(args)


def build_parser() -> argparse.ArgumentParser:
    from . import bench as bench_mod

    parser = argparse.ArgumentParser(prog="python -m jitgrad", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="train a small MLP on synthetic 2-D spirals")
    p.add_argument("--epochs", type=int, default=30, help="passes over the data (default 30)")
    p.add_argument("--batch-size", type=int, default=32, help="minibatch size (default 32)")
    p.add_argument("--lr", type=float, default=0.1, help="SGD learning rate (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="jitgrad.manual_seed value (default 0)")
    p.set_defaults(func=demo)

    p = sub.add_parser(
        "bench", help="time the workloads eager and compiled (and PyTorch, JAX, if installed)"
    )
    bench_mod.add_arguments(p)
    p.set_defaults(func=bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "epochs", 1) < 1 or getattr(args, "batch_size", 1) < 1:
        print("error: --epochs and --batch-size must be positive", file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
