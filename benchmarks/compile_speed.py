"""Compile speed against the memory floor: ResNet-34, ViT-Base and GPT-2-small-sized models.

The floor is what any converter must do at least: flatten all parameters and
write a 2 x P index. Run: ``python benchmarks/compile_speed.py [--model resnet34|vit-base|gpt2-small]
[--repeat 3]``. Prints seconds, edges per second and the ratio to the floor, all from one run.

Attention materializes one product neuron per term of ``q @ k^T`` and ``attn @ v``
(O(T^2 d) per layer), so the transformer models are traced at a short sequence:
``--image-size`` (ViT; 64 gives 17 tokens) and ``--tokens`` (GPT-2) set it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn as nn

import gmnfx


def memory_floor(model: nn.Module) -> float:
    start = time.perf_counter()
    flat = gmnfx.flat_parameters(model)
    index = torch.empty(2, flat.numel(), dtype=torch.long)
    torch.arange(flat.numel(), out=index[0])
    index[1].copy_(index[0])
    return time.perf_counter() - start


def build(name: str, image_size: int, tokens: int):
    """(model, example input, description) for a benchmark model name."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from resnet_models import resnet34
    from transformer_models import GPT2, ViT

    if name == "resnet34":
        return resnet34().eval(), torch.randn(1, 3, image_size, image_size), \
            f"ResNet-34 (plain torch), traced at {image_size}x{image_size}"
    if name == "vit-base":
        model = ViT(image_size=image_size).eval()
        return model, torch.randn(1, 3, image_size, image_size), \
            f"ViT-Base/16 layout (plain torch), {image_size}x{image_size} images = {(image_size // 16) ** 2 + 1} tokens"
    if name == "gpt2-small":
        # the position table has one row per traced token: rows no input reaches would sit on no edge
        return GPT2(positions=tokens).eval(), torch.randint(0, 50257, (1, tokens)), \
            f"GPT-2 small layout (plain torch, tied head), {tokens} tokens and positions"
    raise SystemExit(f"unknown model {name!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="resnet34", choices=["resnet34", "vit-base", "gpt2-small"])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=64, help="input size used for tracing")
    parser.add_argument("--tokens", type=int, default=16, help="sequence length used for tracing GPT-2")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, example, description = build(args.model, args.image_size, args.tokens)
    num_params = sum(p.numel() for p in model.parameters())
    gmnfx.compile(model, example)  # warm-up (imports, allocator)
    floors, times = [], []
    for _ in range(args.repeat):
        floors.append(memory_floor(model))
        graph = None  # free the previous graph first: only one lives at a time
        start = time.perf_counter()
        graph = gmnfx.compile(model, example)
        times.append(time.perf_counter() - start)
    best, floor = min(times), min(floors)
    median = sorted(times)[len(times) // 2]
    print(f"model: {description}, {num_params / 1e6:.2f}M parameters")
    print(f"parameter graph: {graph.num_nodes} nodes, {graph.num_edges} edges")
    print(f"compile: {best:.3f} s best, {median:.3f} s median of {args.repeat} (all: {', '.join(f'{t:.3f}' for t in times)})")
    print(f"edges/s: {graph.num_edges / best / 1e6:.2f} M")
    print(f"memory floor (flatten + 2xP index): {floor:.3f} s")
    print(f"ratio to floor: {best / floor:.1f}x best, {median / floor:.1f}x median")


if __name__ == "__main__":
    main()
