"""GMN forward+backward time and peak memory against the same edge-MPNN on PyG ``MessagePassing``.

    python benchmarks/gmn_throughput.py [--hidden 32] [--layers 4] [--repeat 3] [--families mlp resnet vit]
                                        [--device cpu|cuda] [--kernels]

Batches of real parameter graphs (MLPs, a ResNet, ViTs; see ``FAMILIES``). Both models hold the same weights
(``pyg_baseline.pyg_twin``) and are checked to agree before timing. Times are medians over ``--repeat``
runs after one warm-up, alternating the two models; ratios are GMN / PyG from the same run (below 1: GMN is
faster / leaner). Peak memory: resident set above the start of the step on CPU (sampled), the CUDA allocator's
peak on GPU. ``--kernels`` (CUDA only) also times the segment-reduce and fused message kernels and reports the
memory bandwidth they reach.
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gmnfx  # noqa: E402
from memory import PeakMemory  # noqa: E402
from pyg_baseline import pyg_twin  # noqa: E402
from resnet_models import BasicBlock, ResNet  # noqa: E402
from transformer_models import ViT  # noqa: E402

MIB = 2 ** 20


def _mlps():
    models = []
    for seed in range(4):
        torch.manual_seed(seed)
        models.append(nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                                    nn.Linear(128, 10)).eval())
    return [gmnfx.compile(m, torch.randn(1, 784)) for m in models], "4 MLPs 784-128-128-10"


def _resnet():
    torch.manual_seed(0)
    model = ResNet(BasicBlock, (1, 1, 1, 1), (32, 64, 128, 256), num_classes=10, stem=32).eval()
    return [gmnfx.compile(model, torch.randn(1, 3, 32, 32))], "ResNet-10 (widths 32-256, basic blocks)"


def _vits():
    graphs = []
    for seed in range(2):
        torch.manual_seed(seed)
        model = ViT(image_size=32, patch=8, dim=64, depth=4, heads=4, num_classes=10).eval()
        graphs.append(gmnfx.compile(model, torch.randn(1, 3, 32, 32)))
    return graphs, "2 ViTs (dim 64, depth 4, 4 heads, 17 tokens)"


FAMILIES = {"mlp": _mlps, "resnet": _resnet, "vit": _vits}


def _step(model, batch):
    out = model(batch)
    out.square().mean().backward()
    model.zero_grad(set_to_none=True)


def _measure(model, batch, device: str):
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start_alloc = torch.cuda.memory_allocated()
        start = time.perf_counter()
        _step(model, batch)
        torch.cuda.synchronize()
        return time.perf_counter() - start, torch.cuda.max_memory_allocated() - start_alloc
    with PeakMemory() as memory:
        start = time.perf_counter()
        _step(model, batch)
        seconds = time.perf_counter() - start
    return seconds, memory.above_start


def compare(family: str, args) -> dict:
    graphs, description = FAMILIES[family]()
    batch = gmnfx.batch(graphs).to(args.device)
    torch.manual_seed(0)
    gmn = gmnfx.nn.GMN(out_dim=1, hidden_dim=args.hidden, num_layers=args.layers).to(args.device)
    pyg = pyg_twin(gmn).to(args.device)
    with torch.no_grad():
        agree = float((gmn(batch) - pyg(batch)).abs().max())
    models = {"gmn": gmn, "pyg": pyg}
    times = {name: [] for name in models}
    peaks = {name: [] for name in models}
    for name, model in models.items():  # warm-up
        _measure(model, batch, args.device)
    for _ in range(args.repeat):
        for name, model in models.items():
            seconds, peak = _measure(model, batch, args.device)
            times[name].append(seconds)
            peaks[name].append(peak)
    t = {n: statistics.median(v) for n, v in times.items()}
    m = {n: max(v) for n, v in peaks.items()}
    print(f"{family:7s} {description}: {len(graphs)} graphs, {batch.num_nodes:,} nodes, {batch.num_edges:,} edges; "
          f"max |GMN - PyG| = {agree:.1e}")
    print(f"        forward+backward  GMN {t['gmn'] * 1e3:9.1f} ms   PyG {t['pyg'] * 1e3:9.1f} ms   "
          f"ratio {t['gmn'] / t['pyg']:.2f}")
    print(f"        peak memory       GMN {m['gmn'] / MIB:9.1f} MiB  PyG {m['pyg'] / MIB:9.1f} MiB  "
          f"ratio {m['gmn'] / max(m['pyg'], 1):.2f}")
    return {"time_ratio": t["gmn"] / t["pyg"], "memory_ratio": m["gmn"] / max(m["pyg"], 1)}


def kernel_bandwidth(args) -> None:
    """Achieved bandwidth of segment_reduce and gather_act_reduce on a ResNet-sized CSR (CUDA only)."""
    from gmnfx.kernels import gather_act_reduce, segment_reduce, segments_of

    torch.manual_seed(0)
    num_nodes, num_edges, h = 100_000, 25_000_000, args.hidden
    dst = torch.randint(0, num_nodes, (num_edges,), device="cuda").sort().values
    src = torch.randint(0, num_nodes, (num_edges,), device="cuda")
    rowptr, _ = segments_of(dst, num_nodes)
    for dtype in (torch.float32, torch.bfloat16):
        values = torch.randn(num_edges, h, device="cuda", dtype=dtype)
        nodes = torch.randn(num_nodes, h, device="cuda", dtype=dtype)
        elt = values.element_size()
        cases = {
            "segment_reduce(sum)": (lambda: segment_reduce(values, rowptr, None, "sum"),
                                    num_edges * h * elt + num_nodes * h * elt + rowptr.numel() * 8),
            "gather_act_reduce(mean)": (lambda: gather_act_reduce(nodes, src, values, rowptr, None, "mean"),
                                        num_edges * (h * elt + 8) + 2 * num_nodes * h * elt + rowptr.numel() * 8),
        }
        for name, (fn, nbytes) in cases.items():
            fn()
            torch.cuda.synchronize()
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(10):
                fn()
            stop.record()
            torch.cuda.synchronize()
            seconds = start.elapsed_time(stop) / 10 / 1e3
            print(f"kernel {name:24s} {str(dtype)[6:]:9s} E={num_edges:,} H={h}: {seconds * 1e3:.2f} ms, "
                  f"{nbytes / seconds / 1e9:.0f} GB/s of unique bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--kernels", action="store_true", help="also time the kernels alone (CUDA)")
    args = parser.parse_args()
    backend = gmnfx.kernels.resolve_backend(torch.empty(0, device=args.device))
    name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device {name}; GMNFX backend {backend}; hidden {args.hidden}, {args.layers} layers, mean aggregation")
    for family in args.families:
        compare(family, args)
    if args.kernels and args.device == "cuda":
        kernel_bandwidth(args)


if __name__ == "__main__":
    main()
