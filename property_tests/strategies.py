"""Hypothesis strategies that draw small random architectures, bounded by construction."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import strategies as st

__all__ = ["Architecture", "mlp_architectures", "conv_architectures", "residual_cnn_architectures",
           "sequence_architectures"]
__all__ += ["deepsets_architectures", "grid_sample_architectures", "attention_architectures"]

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


class _Block(nn.Module):
    """conv -> optional norm -> activation, with an optional (projection) residual and layer scale."""

    def __init__(self, conv: nn.Module, norm: nn.Module, act: nn.Module, residual: str, layer_scale: bool,
                 shortcut: nn.Module):
        super().__init__()
        self.conv, self.norm, self.act, self.shortcut = conv, norm, act, shortcut
        self.residual = residual
        self.scale = nn.Parameter(torch.rand(conv.out_channels, 1, 1) + 0.5) if layer_scale else None

    def forward(self, x):
        h = self.act(self.norm(self.conv(x)))
        if self.scale is not None:
            h = h * self.scale
        if self.residual != "none":
            h = h + self.shortcut(x)
        return h


@st.composite
def residual_cnn_architectures(draw, *, max_blocks: int = 3, max_channels: int = 6) -> Architecture:
    """2-d CNNs of blocks with norms (BN/GN/IN/none), residuals, layer scale, then a pooling head."""
    channels = draw(st.integers(1, max_channels))
    size = draw(st.integers(4, 7))
    blocks, desc, c_in = [], [], channels
    for _ in range(draw(st.integers(1, max_blocks))):
        residual = draw(st.sampled_from(["none", "identity", "projection"]))
        c_out = c_in if residual == "identity" else draw(st.integers(1, max_channels))
        groups = draw(st.sampled_from(sorted({g for g in (1, c_in) if c_in % g == 0 and c_out % g == 0})))
        conv = nn.Conv2d(c_in, c_out, 3, padding=1, groups=groups, bias=draw(st.booleans()))
        norm_kind = draw(st.sampled_from(["none", "batch", "group", "instance"]))
        norm = {"none": nn.Identity(), "batch": nn.BatchNorm2d(c_out),
                "group": nn.GroupNorm(draw(st.sampled_from([g for g in (1, 2, c_out) if c_out % g == 0])), c_out),
                "instance": nn.InstanceNorm2d(c_out, affine=draw(st.booleans()))}[norm_kind]
        act = draw(st.sampled_from(ACTIVATIONS))()
        shortcut = nn.Conv2d(c_in, c_out, 1) if residual == "projection" else nn.Identity()
        layer_scale = draw(st.booleans())
        blocks.append(_Block(conv, norm, act, residual, layer_scale, shortcut))
        desc.append(f"Block({c_in}->{c_out}, g={groups}, {norm_kind}, {type(act).__name__}, "
                    f"residual={residual}, scale={layer_scale})")
        c_in = c_out
    pool = draw(st.sampled_from(["max", "avg", "adaptive", "mean"]))
    head = {"max": nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), nn.AdaptiveMaxPool2d(1)),
            "avg": nn.Sequential(nn.AvgPool2d(3, 2, padding=1, count_include_pad=False), nn.AdaptiveAvgPool2d(1)),
            "adaptive": nn.AdaptiveAvgPool2d(1), "mean": nn.AdaptiveAvgPool2d((1, 1))}[pool]
    seed = draw(st.integers(0, 2**16))
    torch.manual_seed(seed)
    model = nn.Sequential(*blocks, head, nn.Flatten(), nn.Linear(c_in, 2)).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    batch = draw(st.integers(1, 3))
    shape = (channels, size, size)
    return Architecture(model, torch.randn(batch, *shape), torch.randn(batch + 1, *shape),
                        " -> ".join(desc) + f" -> {pool} pool (seed {seed})")


_SHUFFLES = ("roll", "flip", "swap_halves", "transpose_twice", "reshape_round_trip", "gather", "stack_unbind")


class _Shuffle(nn.Module):
    """A pure bookkeeping op on [batch, tokens, features] that keeps the shape."""

    def __init__(self, kind: str, tokens: int, features: int, seed: int):
        super().__init__()
        self.kind = kind
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("order", torch.randperm(tokens, generator=generator))
        self.split = int(torch.randint(1, features, (1,), generator=generator)) if features > 1 else 1

    def forward(self, h):
        if self.kind == "roll":
            return torch.roll(h, shifts=1, dims=1)
        if self.kind == "flip":
            return h.flip(-1)
        if self.kind == "swap_halves":
            a, b = torch.split(h, [self.split, h.shape[-1] - self.split], dim=-1)
            return torch.cat([b, a], dim=-1)
        if self.kind == "transpose_twice":
            return h.transpose(1, 2).contiguous().transpose(1, 2)
        if self.kind == "reshape_round_trip":
            return h.reshape(h.shape[0], -1).view(h.shape[0], h.shape[1], h.shape[2])
        if self.kind == "gather":
            return h[:, self.order]
        parts = h.unbind(dim=1)
        return torch.stack(parts[::-1], dim=1)


@st.composite
def sequence_architectures(draw, *, max_layers: int = 3, max_tokens: int = 4, max_features: int = 5) -> Architecture:
    """Token-wise dense layers on [batch, tokens, features] separated by random bookkeeping ops."""
    tokens, features = draw(st.integers(1, max_tokens)), draw(st.integers(1, max_features))
    layers, desc, width = [], [], features
    for _ in range(draw(st.integers(1, max_layers))):
        out = draw(st.integers(1, max_features))
        layers += [nn.Linear(width, out), draw(st.sampled_from(ACTIVATIONS))()]
        desc.append(f"Linear({width},{out}) {type(layers[-1]).__name__}")
        kind = draw(st.sampled_from(_SHUFFLES))
        layers.append(_Shuffle(kind, tokens, out, draw(st.integers(0, 2**16))))
        desc.append(kind)
        width = out
    layers += [nn.Flatten(), nn.Linear(tokens * width, 2)]
    seed = draw(st.integers(0, 2**16))
    torch.manual_seed(seed)
    model = nn.Sequential(*layers).eval()
    batch = draw(st.integers(1, 3))
    return Architecture(model, torch.randn(batch, tokens, features), torch.randn(batch + 1, tokens, features),
                        " -> ".join(desc) + f" (seed {seed})")


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


@st.composite
def deepsets_architectures(draw, *, max_layers: int = 3, max_set_size: int = 5, max_features: int = 5) -> Architecture:
    """DeepSets on sets [batch, N, D]: set layers (pooled by mean/sum/max, or centered), an invariant readout."""
    set_size, features = draw(st.integers(1, max_set_size)), draw(st.integers(1, max_features))
    layers, activations, desc, width = [], [], [], features
    for _ in range(draw(st.integers(1, max_layers))):
        out, bias = draw(st.integers(1, max_features)), draw(st.booleans())
        form, pool = draw(st.sampled_from(["pooled", "centered"])), draw(st.sampled_from(["mean", "sum", "max"]))
        layers.append(_SetLayer(width, out, form, pool, bias))
        activations.append(draw(st.sampled_from(ACTIVATIONS))())
        desc.append(f"SetLayer({width},{out},{form if form == 'centered' else pool},bias={bias}) "
                    f"{type(activations[-1]).__name__}")
        width = out
    readout = draw(st.sampled_from(["mean", "sum", "max"]))
    seed = draw(st.integers(0, 2**16))
    torch.manual_seed(seed)
    model = _DeepSet(layers, activations, readout, nn.Linear(width, 2)).eval()
    batch = draw(st.integers(1, 3))
    return Architecture(model, torch.randn(batch, set_size, features), torch.randn(batch + 1, set_size, features),
                        " -> ".join(desc) + f" -> {readout} over the set (seed {seed})")


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
    nd = draw(st.sampled_from(dims))
    size = tuple(draw(st.integers(1, max_size)) for _ in range(nd))
    channels, points, in_features = draw(st.integers(1, max_channels)), draw(st.integers(1, max_points)), 3
    options = dict(mode=draw(st.sampled_from(["bilinear", "nearest"])),
                   padding_mode=draw(st.sampled_from(["zeros", "border"])), align_corners=draw(st.booleans()))
    seed = draw(st.integers(0, 2**16))
    torch.manual_seed(seed)
    model = _GridModel(in_features, points, size, channels, options).eval()
    batch = draw(st.integers(1, 3))
    return Architecture(model, torch.randn(batch, in_features), torch.randn(batch + 1, in_features),
                        f"grid {size} x {channels} channels at {points} points, {options} (seed {seed})")


class _DrawnAttention(nn.Module):
    """Self-attention written one of three ways, with an optional causal mask, then a readout layer."""

    def __init__(self, dim: int, heads: int, form: str, causal: bool):
        super().__init__()
        self.heads, self.form, self.causal = heads, form, causal
        self.out = nn.Linear(dim, dim)
        self.mha = nn.MultiheadAttention(dim, heads, batch_first=True) if form == "mha" else None
        self.qkv = nn.Linear(dim, 3 * dim) if form != "mha" else None
        self.register_buffer("mask", torch.ones(8, 8).tril().bool())

    def forward(self, x):
        b, t, d = x.shape
        if self.mha is not None:
            mask = ~self.mask[:t, :t] if self.causal else None
            return self.out(self.mha(x, x, x, attn_mask=mask, need_weights=False)[0])
        qkv = self.qkv(x)
        q, k, v = (qkv[..., i * d:(i + 1) * d].view(b, t, self.heads, d // self.heads).transpose(1, 2) for i in range(3))
        if self.form == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        else:
            scores = q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5
            if self.causal:
                scores = scores.masked_fill(~self.mask[:t, :t], float("-inf"))
            y = scores.softmax(dim=-1) @ v
        return self.out(y.transpose(1, 2).reshape(b, t, d))


@st.composite
def attention_architectures(draw, *, max_heads: int = 3, max_head_dim: int = 3, max_tokens: int = 4,
                            forms: tuple = ("hand_written", "sdpa", "mha")) -> Architecture:
    """Self-attention: hand-written, F.scaled_dot_product_attention or nn.MultiheadAttention (fx only)."""
    heads, head_dim = draw(st.integers(1, max_heads)), draw(st.integers(1, max_head_dim))
    form, causal = draw(st.sampled_from(forms)), draw(st.booleans())
    tokens, batch, seed = draw(st.integers(1, max_tokens)), draw(st.integers(1, 3)), draw(st.integers(0, 2**16))
    dim = heads * head_dim
    torch.manual_seed(seed)
    model = _DrawnAttention(dim, heads, form, causal).eval()
    return Architecture(model, torch.randn(batch, tokens, dim), torch.randn(batch + 1, tokens, dim),
                        f"{form} attention, {heads} heads x {head_dim}, {tokens} tokens, causal={causal} (seed {seed})")
