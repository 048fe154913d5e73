"""``gmnfx accuracy``: task 1's full table (predictors x settings x seeds) on a zoo, resumable."""
from __future__ import annotations

import argparse
import os

__all__ = ["add_accuracy_command"]


def add_accuracy_command(sub) -> None:
    """Register ``gmnfx accuracy`` on the main parser's subparsers."""
    p = sub.add_parser(
        "accuracy", help="predict test accuracy from weights: GMN vs baselines, every setting and seed",
        description="Train and score accuracy predictors (R^2, Kendall's tau on the zoo's test split) in the "
                    "settings 50%% and 5%% of the training split and out of distribution (train on width <= 16, "
                    "test on wider), for each seed. Every run is appended to --results as it finishes; re-running "
                    "skips stored runs. Prints the mean +/- std table and writes a scatter plot of seed 0. "
                    "Runs data-parallel under `torchrun --nproc_per_node K -m gmnfx accuracy ...`.")
    p.add_argument("--zoo", required=True, metavar="DIR", help="a zoo built by `gmnfx zoo build`")
    p.add_argument("--results", metavar="FILE", help="JSON-lines file of runs (default DIR/accuracy-runs.jsonl)")
    p.add_argument("--predictors", default="gmn,deepsets,statnn", help="comma-separated (default all three)")
    p.add_argument("--settings", default="50%,5%,ood", help="comma-separated (default 50%%,5%%,ood)")
    p.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated integers (default 0,1,2,3,4)")
    p.add_argument("--epochs", type=int, default=50, help="training epochs of every predictor (default 50)")
    p.add_argument("--min-steps", type=int, default=0,
                   help="train at least this many optimizer steps, adding epochs for small training sets (default 0)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--schedule", default="constant", choices=("constant", "cosine"),
                   help="learning-rate schedule (default constant)")
    p.add_argument("--hidden", type=int, default=32, help="hidden width of every predictor (default 32)")
    p.add_argument("--gmn-layers", type=int, default=2, help="GMN message-passing layers (default 2)")
    p.add_argument("--plot", metavar="FILE", help="scatter plot of seed 0 (default DIR/accuracy_scatter.png)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_accuracy)


def _cmd_accuracy(args: argparse.Namespace) -> int:
    from gmnfx.cli import check_numbers, parse_list, usage_errors
    from gmnfx.tasks.accuracy import SETTINGS
    from gmnfx.tasks.distributed import Distributed
    from gmnfx.tasks.predictors import PREDICTORS
    from gmnfx.tasks.table import accuracy_table, format_table, plot_runs
    from gmnfx.zoo.storage import ZooError

    seeds = parse_list(args.seeds, "--seeds", cast=int)
    predictors = parse_list(args.predictors, "--predictors", allowed=tuple(PREDICTORS))
    settings = parse_list(args.settings, "--settings", allowed=SETTINGS)
    check_numbers(args, positive=["--epochs", "--hidden", "--gmn-layers", "--lr"], non_negative=["--min-steps"])
    results = args.results or os.path.join(args.zoo, "accuracy-runs.jsonl")
    with usage_errors(ValueError, ZooError, OSError):
        rows = accuracy_table(args.zoo, results, predictors=predictors, settings=settings, seeds=seeds,
                              epochs=args.epochs, hidden_dim=args.hidden, gmn_layers=args.gmn_layers, lr=args.lr,
                              schedule=args.schedule, min_steps=args.min_steps, progress=not args.quiet)
    ctx = Distributed.from_env()
    if ctx.is_main:
        print(f"\n{args.zoo}: test R^2 and Kendall's tau, mean ± std over seeds {seeds}\n")
        print(format_table(rows))
        if any(r["seed"] == 0 for r in rows):
            plot = args.plot or os.path.join(args.zoo, "accuracy_scatter.png")
            plot_runs(rows, plot)
            print(f"\nscatter plot (seed 0): {plot}; runs: {results}")
    ctx.close()
    return 0
