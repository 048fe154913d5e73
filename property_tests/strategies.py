"""Hypothesis strategies that draw small random architectures, bounded by construction."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from hypothesis import strategies as st

__all__ = ["Architecture", "mlp_architectures", "conv_architectures"]

ACTIVATIONS = (nn.ReLU, nn.GELU, nn.Tanh, nn.SiLU, nn.Sigmoid, nn.Identity, nn.LeakyReLU, nn.ReLU6)


@dataclass
class Architecture:
    """A drawn model with an example input and a second input of another batch size."""

    model: nn.Module
    example: torch.Tensor
    second: torch.Tensor
    description: str


@st.composite
def mlp_architectures(draw, *, min_layers: int = 1, max_layers: int = 4, max_width: int = 8) -> Architecture:
    widths = draw(st.lists(st.integers(1, max_width), min_size=min_layers + 1, max_size=max_layers + 1))
    layers, desc = [], []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        bias = draw(st.booleans())
        layers.append(nn.Linear(a, b, bias=bias))
        desc.append(f"Linear({a},{b},bias={bias})")
        if i < len(widths) - 2:
            act = draw(st.sampled_from(ACTIVATIONS))
            layers.append(act())
            desc.append(act.__name__)
            if draw(st.booleans()):
                norm = draw(st.sampled_from([nn.LayerNorm, nn.BatchNorm1d]))(b)
                layers.append(norm)
                desc.append(type(norm).__name__)
    seed = draw(st.integers(0, 2**16))
    torch.manual_seed(seed)
    model = nn.Sequential(*layers).eval()
    batch = draw(st.integers(1, 3))
    return Architecture(model, torch.randn(batch, widths[0]), torch.randn(batch + 1, widths[0]),
                        " -> ".join(desc) + f" (seed {seed})")


@st.composite
def conv_architectures(draw, *, max_blocks: int = 2, max_channels: int = 4, dims: tuple = (1, 2)) -> Architecture:
    nd = draw(st.sampled_from(dims))
    conv_cls = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[nd - 1]
    input_size = size = draw(st.integers(3, 6))
    input_channels = in_channels = draw(st.integers(1, max_channels))
    layers, desc = [], []
    for _ in range(draw(st.integers(1, max_blocks))):
        groups = draw(st.sampled_from(sorted({g for g in (1, 2, in_channels) if in_channels % g == 0})))
        out = groups * draw(st.integers(1, max(1, max_channels // groups)))
        kernel, dilation = draw(st.integers(1, 3)), draw(st.integers(1, 2))
        stride, padding = draw(st.integers(1, 2)), draw(st.integers(0, 1))
        if size + 2 * padding - dilation * (kernel - 1) < 1:  # keep the output non-empty by construction
            kernel, dilation = 1, 1
        layers.append(conv_cls(in_channels, out, kernel, stride, padding, dilation, groups, bias=draw(st.booleans())))
        desc.append(f"{conv_cls.__name__}({in_channels},{out},k={kernel},s={stride},p={padding},d={dilation},g={groups})")
        size = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
        act = draw(st.sampled_from(ACTIVATIONS))
        layers.append(act())
        desc.append(act.__name__)
        in_channels = out
    layers += [nn.Flatten(), nn.Linear(in_channels * size**nd, 2)]
    seed = draw(st.integers(0, 2**16))
    torch.manual_seed(seed)
    model = nn.Sequential(*layers).eval()
    shape = (input_channels,) + (input_size,) * nd
    batch = draw(st.integers(1, 3))
    return Architecture(model, torch.randn(batch, *shape), torch.randn(batch + 1, *shape),
                        " -> ".join(desc) + f" (seed {seed})")
