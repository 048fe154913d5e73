"""Strategies for set networks (DeepSets) and parameter grids read by grid_sample."""
from __future__ import annotations


import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import strategies as st

from strategies._base import Architecture, _activation, _finish, _mlp_head, _name, _seed


# ---------------------------------------------------------------------- sets
def _set_pool(x: torch.Tensor, kind: str, keepdim: bool) -> torch.Tensor:
    """Pool ``x`` [batch, N, D] over the set axis."""
    if kind == "mean":
        return x.mean(dim=1, keepdim=keepdim)
    if kind == "sum":
        return x.sum(1, keepdim=keepdim)
    return x.max(1, keepdim=keepdim).values


class _SetLayer(nn.Module):
    """``Lambda(x) + Gamma(pool(x))`` (form "pooled") or ``Lambda(x - x.mean(1, keepdim=True))`` ("centered")."""

    def __init__(self, d_in: int, d_out: int, form: str, pool: str, bias: bool):
        super().__init__()
        self.form, self.pool = form, pool
        self.lam = nn.Linear(d_in, d_out, bias=bias)
        self.gam = nn.Linear(d_in, d_out, bias=False) if form == "pooled" else None

    def forward(self, x):
        if self.form == "centered":
            return self.lam(x - x.mean(dim=1, keepdim=True))
        return self.lam(x) + self.gam(_set_pool(x, self.pool, keepdim=True))


class _DeepSet(nn.Module):
    """Permutation-equivariant set layers with activations, an invariant pooling over the set, a head."""

    def __init__(self, layers: list, activations: list, readout: str, head: nn.Module):
        super().__init__()
        self.layers, self.activations = nn.ModuleList(layers), nn.ModuleList(activations)
        self.readout, self.head = readout, head

    def forward(self, x):
        for layer, activation in zip(self.layers, self.activations):
            x = activation(layer(x))
        return self.head(_set_pool(x, self.readout, keepdim=False))


def _deepset(draw, *, max_layers: int, max_features: int, features: int, max_hidden: int = 0):
    """Drawn set layers, a readout and a head (an MLP with up to ``max_hidden`` hidden layers)."""
    layers, activations, desc, width = [], [], [], features
    for _ in range(draw(st.integers(1, max_layers))):
        out, bias = draw(st.integers(1, max_features)), draw(st.booleans())
        form, pool = draw(st.sampled_from(["pooled", "centered"])), draw(st.sampled_from(["mean", "sum", "max"]))
        layers.append(_SetLayer(width, out, form, pool, bias))
        activations.append(_activation(draw))
        desc.append(f"SetLayer({width},{out},{form if form == 'centered' else pool},bias={bias}) "
                    f"{_name(activations[-1])}")
        width = out
    readout = draw(st.sampled_from(["mean", "sum", "max"]))
    head, head_desc = _mlp_head(draw, width, max_hidden=max_hidden, max_width=max_features)
    desc.append(f"{readout} over the set -> {head_desc}")
    return _DeepSet(layers, activations, readout, head), " -> ".join(desc)


@st.composite
def deepsets_architectures(draw, *, max_layers: int = 3, max_set_size: int = 5,
                           max_features: int = 5) -> Architecture:
    """DeepSets on sets [batch, N, D]: set layers (pooled by mean/sum/max, or centered), an invariant readout."""
    seed = _seed(draw)
    set_size, features = draw(st.integers(1, max_set_size)), draw(st.integers(1, max_features))
    model, desc = _deepset(draw, max_layers=max_layers, max_features=max_features, features=features)
    return _finish(draw, model, (set_size, features), desc, seed)


# ---------------------------------------------------------------------- grid_sample
class _GridModel(nn.Module):
    """Sample points from a Linear on the input (tanh, scaled past the border), a parameter grid sampled there."""

    def __init__(self, in_features: int, points: int, size: tuple, channels: int, options: dict):
        super().__init__()
        self.nd, self.points, self.options = len(size), points, options
        self.to_points = nn.Linear(in_features, points * self.nd)
        self.grid = nn.Parameter(torch.randn(1, channels, *size))
        self.keep = [-1] * (1 + self.nd)
        self.head = nn.Linear(channels * points, 2)

    def forward(self, x):
        p = 1.25 * torch.tanh(self.to_points(x))
        p = p.view(x.shape[0], self.points, *([1] * (self.nd - 1)), self.nd)
        features = F.grid_sample(self.grid.expand(x.shape[0], *self.keep), p, **self.options)
        return self.head(features.flatten(1))


@st.composite
def grid_sample_architectures(draw, *, max_points: int = 4, max_size: int = 4, max_channels: int = 3,
                              dims: tuple = (2, 3)) -> Architecture:
    """A spatial parameter grid read by F.grid_sample at points computed from the input, then a head."""
    seed = _seed(draw)
    nd = draw(st.sampled_from(dims))
    size = tuple(draw(st.integers(1, max_size)) for _ in range(nd))
    channels, points, in_features = draw(st.integers(1, max_channels)), draw(st.integers(1, max_points)), 3
    options = dict(mode=draw(st.sampled_from(["bilinear", "nearest"])),
                   padding_mode=draw(st.sampled_from(["zeros", "border"])), align_corners=draw(st.booleans()))
    model = _GridModel(in_features, points, size, channels, options)
    return _finish(draw, model, (in_features,), f"grid {size} x {channels} channels at {points} points, {options}",
                   seed)
