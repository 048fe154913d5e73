"""``gmnfx inr build`` (fit a SIREN zoo) and ``gmnfx inr edit`` (the INR-editing results table)."""
from __future__ import annotations

import argparse

__all__ = ["add_inr_commands"]


def add_inr_commands(sub) -> None:
    """Register ``gmnfx inr build`` and ``gmnfx inr edit`` on the main parser's subparsers."""
    inr = sub.add_parser("inr", help="INR editing: fit a SIREN zoo, train weight editors",
                         description="2D implicit neural representations of digits (SIRENs) and editors that "
                                     "change their weights so that they render the dilated or contrast-enhanced "
                                     "digit.")
    inr_sub = inr.add_subparsers(dest="inr_command", metavar="INR_COMMAND", required=True)
    p = inr_sub.add_parser("build", help="fit and store a zoo of SIRENs (resumable)",
                           description="Fit N SIRENs to upsampled scikit-learn digits, many at once, and store "
                                       "them in DIR. Re-running continues a killed build.")
    p.add_argument("--n", type=int, required=True, metavar="N", help="number of INRs")
    p.add_argument("--out", required=True, metavar="DIR", help="zoo directory (created, or continued)")
    p.add_argument("--seed", type=int, default=0, help="zoo seed: image assignment and initializations (default 0)")
    p.add_argument("--hidden", type=int, default=32, help="SIREN hidden width (default 32)")
    p.add_argument("--depth", type=int, default=2, help="SIREN sine layers (default 2)")
    p.add_argument("--image-size", type=int, default=16, metavar="S", help="image side in pixels (default 16)")
    p.add_argument("--steps", type=int, default=300, help="Adam steps per INR (default 300)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=_cmd_build)

    p = inr_sub.add_parser("edit", help="train weight editors and print the test-MSE table",
                           description="Train every editor on every target for every seed, print a markdown "
                                       "table of test MSE (mean +/- std over seeds), and write results.json and "
                                       "edits.png to --out.")
    p.add_argument("--zoo", required=True, metavar="DIR", help="a zoo written by `gmnfx inr build`")
    p.add_argument("--target", default="both", choices=("dilate", "contrast", "both"))
    p.add_argument("--editors", default="none,mlp,gmn", metavar="LIST", help="comma-separated: none, mlp, gmn")
    p.add_argument("--seeds", default="0,1,2", metavar="LIST", help="comma-separated integers (default 0,1,2)")
    p.add_argument("--epochs", type=int, default=40, help="training epochs per editor (default 40)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--gamma", type=float, default=0.01, help="initial update scale gamma (default 0.01)")
    p.add_argument("--hidden-dim", type=int, default=64, help="GMN width (default 64)")
    p.add_argument("--layers", type=int, default=3, help="GMN message-passing layers (default 3)")
    p.add_argument("--mlp-hidden", type=int, default=256, help="MLP baseline width (default 256)")
    p.add_argument("--mlp-layers", type=int, default=2, help="MLP baseline hidden layers (default 2)")
    p.add_argument("--out", default="inr-editing", metavar="DIR", help="output directory (default inr-editing)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_edit)


def _cmd_build(args: argparse.Namespace) -> int:
    from gmnfx.cli import check_numbers, usage_errors
    from gmnfx.zoo.siren import build_siren_zoo

    check_numbers(args, positive=["--n", "--steps", "--hidden", "--depth", "--image-size"])
    with usage_errors(ValueError, TypeError):
        build_siren_zoo(args.out, args.n, seed=args.seed, hidden=args.hidden, depth=args.depth,
                        image_size=args.image_size, steps=args.steps, log=None if args.quiet else print)
    return 0


def _cmd_edit(args: argparse.Namespace) -> int:
    from gmnfx.cli import check_numbers, parse_list, usage_errors
    from gmnfx.tasks.inr import EDITORS, inr_data, run_inr_table
    from gmnfx.zoo.storage import Zoo

    check_numbers(args, positive=["--epochs", "--lr", "--hidden-dim", "--layers", "--mlp-hidden"],
                  non_negative=["--mlp-layers"])
    with usage_errors(ValueError, OSError):
        editors = parse_list(args.editors, "--editors", allowed=EDITORS)
        seeds = parse_list(args.seeds, "--seeds", cast=int)
        data = inr_data(Zoo.open(args.zoo))
    targets = ["dilate", "contrast"] if args.target == "both" else [args.target]
    run_inr_table(data, editors, targets, seeds, args.out, epochs=args.epochs, lr=args.lr, gamma=args.gamma,
                  hidden_dim=args.hidden_dim, num_layers=args.layers, mlp_hidden=args.mlp_hidden,
                  mlp_layers=args.mlp_layers, progress=not args.quiet)
    return 0
