"""Zoo training throughput: models per minute trained in vectorized groups against one at a time.

    python benchmarks/zoo_throughput.py [--family varying-cnn] [--blocks 3] [--group-size 32] [--single 4]

For each of ``--blocks`` architecture blocks of the family, trains one group of ``--group-size`` models with
``train_group`` (one vmap over stacked parameters) and ``--single`` of the same models one at a time, in the
same run; prints models per minute for both and their ratio.
"""
from __future__ import annotations

import argparse
import time

import torch

from gmnfx.zoo.data import load_digits
from gmnfx.zoo.families import ARCH_BLOCK, sample_config
from gmnfx.zoo.train import train_group, train_one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="varying-cnn", choices=["varying-cnn", "diverse"])
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--group-size", type=int, default=32)
    parser.add_argument("--single", type=int, default=4, help="models trained one at a time per block")
    args = parser.parse_args()
    data = load_digits()
    print(f"{args.family}: digits ({len(data.y_train)} train images), {torch.get_num_threads()} threads")
    totals = {"group": [0, 0.0], "single": [0, 0.0]}
    for block in range(args.blocks):
        configs = [sample_config(args.family, block * ARCH_BLOCK + i, 0) for i in range(args.group_size)]
        start = time.perf_counter()
        train_group(configs, data)
        group_s = time.perf_counter() - start
        start = time.perf_counter()
        for c in configs[:args.single]:
            train_one(c, data)
        single_s = time.perf_counter() - start
        # models of a block have different epochs: compare per epoch trained, not per model
        group_epochs = sum(c.hyper["epochs"] for c in configs)
        single_epochs = sum(c.hyper["epochs"] for c in configs[:args.single])
        print(f"  {configs[0].arch}: group of {len(configs)} {60 * len(configs) / group_s:6.1f} models/min; "
              f"one at a time {60 * args.single / single_s:6.1f} models/min; per trained epoch "
              f"{(single_s / single_epochs) / (group_s / group_epochs):.1f}x faster in the group")
        totals["group"][0] += len(configs)
        totals["group"][1] += group_s
        totals["single"][0] += args.single
        totals["single"][1] += single_s
    g, s = (60 * n / t for n, t in totals.values())
    print(f"overall: vectorized {g:.1f} models/min, one at a time {s:.1f} models/min ({g / s:.1f}x); "
          f"a 2,000-model zoo: about {2000 / g:.0f} min vectorized")


if __name__ == "__main__":
    main()
