"""Time gmnfx.symmetry on real networks: colouring, decomposition and sampling, with the group order found.

    python benchmarks/symmetry_speed.py --model resnet34|vit-base|gpt2-small [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

import gmnfx
from gmnfx.symmetry import symmetry_structure

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compile_speed import build  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="resnet34", choices=["resnet34", "vit-base", "gpt2-small"])
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    model, x, description = build(args.model, args.image_size, args.tokens)
    start = time.perf_counter()
    graph = gmnfx.compile(model, x)
    compile_time = time.perf_counter() - start
    best = float("inf")
    for _ in range(args.repeat):
        start = time.perf_counter()
        structure = symmetry_structure(graph)
        best = min(best, time.perf_counter() - start)
    start = time.perf_counter()
    perm = structure.sample(torch.Generator().manual_seed(0))
    sample_time = time.perf_counter() - start
    moved = int((perm != torch.arange(graph.num_nodes)).sum())
    print(f"{description}: {graph.num_nodes:,} nodes, {graph.num_edges:,} edges")
    print(f"  compile {compile_time:.2f} s; symmetry structure {best:.2f} s (best of {args.repeat}), "
          f"{graph.num_edges / best / 1e6:.1f} M edges/s; ratio to compile {best / compile_time:.2f}")
    print(f"  group order {structure!r}; one sample {sample_time * 1e3:.1f} ms, moving {moved:,} nodes")


if __name__ == "__main__":
    main()
