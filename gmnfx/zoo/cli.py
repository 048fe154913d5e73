"""``gmnfx zoo ...`` subcommands (build a zoo, summarize one) and ``gmnfx demo``."""
from __future__ import annotations

import argparse

__all__ = ["add_zoo_commands", "add_demo_command"]


def add_zoo_commands(sub) -> None:
    """Register ``gmnfx zoo build`` and ``gmnfx zoo info`` on the main parser's subparsers."""
    zoo = sub.add_parser("zoo", help="build and inspect model zoos",
                         description="Model zoos: many trained networks with their test accuracies.")
    zoo_sub = zoo.add_subparsers(dest="zoo_command", metavar="ZOO_COMMAND", required=True)
    p = zoo_sub.add_parser("build", help="train and store a zoo (resumable, shardable)",
                           description="Sample architectures and hyperparameters, train the models in "
                                       "vectorized groups on the digits dataset, and store them in DIR. "
                                       "Re-running continues a killed build; --shard i/n builds part i of n.")
    p.add_argument("--family", required=True, choices=("varying-cnn", "diverse"))
    p.add_argument("--n", type=int, required=True, metavar="N", help="number of models in the zoo")
    p.add_argument("--out", required=True, metavar="DIR", help="zoo directory (created, or continued)")
    p.add_argument("--seed", type=int, default=0, help="zoo seed: configurations and data split (default 0)")
    p.add_argument("--shard", default="0/1", metavar="I/N", help="build part I of N (default 0/1: all)")
    p.add_argument("--group-size", type=int, default=32, metavar="K",
                   help="models trained together per vectorized group (default 32)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_build)
    p = zoo_sub.add_parser("info", help="summarize a zoo directory")
    p.add_argument("root", metavar="DIR")
    p.set_defaults(func=_cmd_info)


def add_demo_command(sub) -> None:
    """Register ``gmnfx demo``."""
    p = sub.add_parser("demo", help="zoo -> graphs -> GMN vs a baseline at predicting accuracy (minutes on a CPU)",
                       description="Build a small varying-CNN zoo on the digits dataset, compile it, train a GMN "
                                   "and the StatNN baseline to predict test accuracy from weights, print R^2 and "
                                   "Kendall's tau, and write a scatter plot. Re-running reuses the zoo.")
    p.add_argument("--out", default="gmnfx-demo", metavar="DIR", help="output directory (default gmnfx-demo)")
    p.add_argument("--n", type=int, default=192, metavar="N", help="models in the zoo (default 192)")
    p.add_argument("--epochs", type=int, default=150, help="predictor training epochs (default 150)")
    p.add_argument("--gmn-layers", type=int, default=2, help="GMN message-passing layers (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from gmnfx.cli import check_numbers, usage_errors
    from gmnfx.tasks.demo import run_demo

    check_numbers(args, positive=["--n", "--epochs", "--gmn-layers"])
    with usage_errors(ValueError, TypeError):
        run_demo(args.out, num_models=args.n, epochs=args.epochs, seed=args.seed, gmn_layers=args.gmn_layers,
                 progress=not args.quiet)
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from gmnfx.cli import check_numbers, usage_errors
    from gmnfx.zoo.build import build_zoo
    from gmnfx.zoo.storage import parse_shard

    check_numbers(args, positive=["--n", "--group-size"])
    with usage_errors(ValueError, TypeError):
        build_zoo(args.out, args.family, args.n, seed=args.seed, shard=parse_shard(args.shard),
                  group_size=args.group_size, progress=not args.quiet)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from gmnfx.cli import usage_errors
    from gmnfx.zoo.storage import Zoo

    with usage_errors(ValueError, OSError):
        zoo = Zoo.open(args.root)
    accuracies = sorted(r["metrics"]["test_acc"] for r in zoo.records if "metrics" in r)
    print(f"zoo {args.root}: family {zoo.manifest.get('family')}, {len(zoo)} of {zoo.manifest.get('n')} models")
    if accuracies:
        mid = accuracies[len(accuracies) // 2]
        print(f"  test accuracy: min {accuracies[0]:.3f}, median {mid:.3f}, max {accuracies[-1]:.3f}")
    missing = zoo.missing()
    if missing:
        print(f"  missing {len(missing)} models (first: {missing[:5]}): re-run `gmnfx zoo build` to finish")
    return 0
