"""Command line: ``python -m jitgrad demo`` trains digit classifiers with a compiled training
step (see ``jitgrad.demo``); ``python -m jitgrad bench`` times the benchmark workloads eager and
compiled, side by side with PyTorch and JAX (when installed), and the compile times of a step."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def demo(args: argparse.Namespace) -> int:
    from . import demo as demo_mod

    return demo_mod.main(args)


def bench(args: argparse.Namespace) -> int:
    from . import bench as bench_mod

    return bench_mod.main(args)


def build_parser() -> argparse.ArgumentParser:
    from . import bench as bench_mod
    from . import demo as demo_mod

    parser = argparse.ArgumentParser(prog="python -m jitgrad", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "demo", help="train an MLP and a CNN on handwritten digits with a compiled training step"
    )
    demo_mod.add_arguments(p)
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
