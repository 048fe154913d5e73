"""A GMN forward + backward on the parameter graph of a full-size network, on CPU: time and peak memory.

    python benchmarks/gmn_memory.py [--model resnet50] [--hidden 32] [--layers 4] [--edge-chunk-size 2097152]

The graph is compiled in a child process and loaded here, so the peak reported is the metanetwork's
(plus the loaded graph), not the compiler's. ResNet-50 has 25.6M parameters: its parameter graph about 25.6M
edges. ``--edge-chunk-size 0`` turns chunked recomputation off (expect it to need several times the memory).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gmnfx  # noqa: E402
from memory import PeakMemory, resident_bytes  # noqa: E402

GIB = 2 ** 30


def compile_in_child(model: str, path: str) -> None:
    code = (f"import sys, torch, gmnfx; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
            f"import resnet_models, transformer_models; "
            f"m = getattr(resnet_models, {model!r})().eval(); "
            f"gmnfx.compile(m, torch.randn(1, 3, 64, 64)).save({path!r})")
    subprocess.run([sys.executable, "-c", code], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet50", choices=["resnet34", "resnet50"])
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--readout", default="graph", choices=["graph", "node", "edge"])
    parser.add_argument("--edge-chunk-size", type=int, default=2 ** 19)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "graph.safetensors")
        start = time.perf_counter()
        compile_in_child(args.model, path)
        print(f"compiled {args.model} in a child process: {time.perf_counter() - start:.1f} s")
        graph = gmnfx.load_graph(path)
    batch = gmnfx.batch([graph])
    del graph
    print(f"{args.model}: {batch.num_nodes:,} nodes, {batch.num_edges:,} edges; resident after loading "
          f"{resident_bytes() / GIB:.2f} GiB")
    chunk = args.edge_chunk_size or None
    gmn = gmnfx.nn.GMN(out_dim=1, hidden_dim=args.hidden, num_layers=args.layers, readout=args.readout,
                       edge_chunk_size=chunk)
    backend = gmnfx.kernels.resolve_backend(batch.edge_weight)
    with PeakMemory() as memory:
        start = time.perf_counter()
        out = gmn(batch)
        forward = time.perf_counter() - start
        out.float().square().mean().backward()
        total = time.perf_counter() - start
    one_state = batch.num_edges * args.hidden * 4 / GIB
    print(f"GMN hidden {args.hidden}, {args.layers} layers, readout {args.readout}, edge_chunk_size {chunk}, "
          f"backend {backend}, {torch.get_num_threads()} threads")
    print(f"forward {forward:.1f} s, forward+backward {total:.1f} s")
    print(f"peak resident {memory.peak / GIB:.2f} GiB ({memory.above_start / GIB:.2f} GiB above the loaded graph); "
          f"one [E, hidden] fp32 tensor is {one_state:.2f} GiB")


if __name__ == "__main__":
    main()
