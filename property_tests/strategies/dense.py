"""Strategies for dense networks: MLPs, token-wise layers with bookkeeping ops, elementwise ops."""
from __future__ import annotations


import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import strategies as st

from strategies._base import Architecture, _activation, _finish, _name, _seed


# ---------------------------------------------------------------------- MLPs
@st.composite
def mlp_architectures(draw, *, min_layers: int = 1, max_layers: int = 4, max_width: int = 8) -> Architecture:
    """Linear layers (bias on/off) with activations and optional LayerNorm/BatchNorm1d between them."""
    seed = _seed(draw)
    widths = draw(st.lists(st.integers(1, max_width), min_size=min_layers + 1, max_size=max_layers + 1))
    layers, desc = [], []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        bias = draw(st.booleans())
        layers.append(nn.Linear(a, b, bias=bias))
        desc.append(f"Linear({a},{b},bias={bias})")
        if i < len(widths) - 2:
            layers.append(_activation(draw))
            desc.append(_name(layers[-1]))
            if draw(st.booleans()):
                layers.append(draw(st.sampled_from([nn.LayerNorm, nn.BatchNorm1d]))(b))
                desc.append(_name(layers[-1]))
    return _finish(draw, nn.Sequential(*layers), (widths[0],), " -> ".join(desc), seed)

# ---------------------------------------------------------------------- token-wise layers and bookkeeping
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
def sequence_architectures(draw, *, max_layers: int = 3, max_tokens: int = 4,
                           max_features: int = 5) -> Architecture:
    """Token-wise dense layers on [batch, tokens, features] separated by random bookkeeping ops."""
    seed = _seed(draw)
    tokens, features = draw(st.integers(1, max_tokens)), draw(st.integers(1, max_features))
    layers, desc, width = [], [], features
    for _ in range(draw(st.integers(1, max_layers))):
        out = draw(st.integers(1, max_features))
        layers += [nn.Linear(width, out), _activation(draw)]
        kind, shuffle_seed = draw(st.sampled_from(_SHUFFLES)), draw(st.integers(0, 2**16))
        layers.append(_Shuffle(kind, tokens, out, shuffle_seed))
        desc.append(f"Linear({width},{out}) {_name(layers[-2])} -> {kind}(seed {shuffle_seed})")
        width = out
    layers += [nn.Flatten(), nn.Linear(tokens * width, 2)]
    desc.append(f"flatten -> Linear({tokens * width},2)")
    return _finish(draw, nn.Sequential(*layers), (tokens, features), " -> ".join(desc), seed)

# ---------------------------------------------------------------------- elementwise ops, softmax, padding
ELEMENTWISE_OPS = ("sin", "gelu_tanh", "hardtanh", "clamp_relu", "clamp_relu6", "leaky_relu", "scale", "divide",
                   "neg", "sub", "product", "power", "param_add", "param_mul", "softmax", "log_softmax", "pad",
                   "functional_layer_norm", "merged_batch")


_UNARY = {"sin": torch.sin, "neg": torch.neg, "softmax": lambda t: t.softmax(dim=-1),
          "log_softmax": lambda t: F.log_softmax(t, dim=-1), "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
          "hardtanh": lambda t: F.hardtanh(t, 0.0, 6.0), "clamp_relu": lambda t: t.clamp(min=0),
          "clamp_relu6": lambda t: torch.clamp(t, 0, 6)}


class _Step(nn.Module):
    """``op(Linear(h))`` for one drawn op; "sub"/"product" combine it with a second Linear of ``h``,
    "merged_batch" applies the Linear to ``h.reshape(-1, D)`` and views the rows back into tokens."""

    def __init__(self, op: str, d_in: int, d: int, option):
        super().__init__()
        self.op, self.option, self.lin = op, option, nn.Linear(d_in, d)
        self.other = nn.Linear(d_in, d) if op in ("sub", "product") else None
        with_param = op in ("param_add", "param_mul", "functional_layer_norm")
        self.p = nn.Parameter(torch.rand(d) + 0.5) if with_param else None
        self.q = nn.Parameter(torch.randn(d)) if op == "functional_layer_norm" else None

    def forward(self, h):
        if self.op == "merged_batch":
            return torch.tanh(self.lin(h.reshape(-1, h.shape[-1]))).view(h.shape[0], h.shape[1], -1)
        a, op, c = self.lin(h), self.op, self.option
        if op in _UNARY:
            return _UNARY[op](a)
        if op == "leaky_relu":
            return F.leaky_relu(a, c)
        if op in ("scale", "divide", "power"):
            return a * c if op == "scale" else a / c if op == "divide" else a ** c
        if op in ("sub", "product"):
            return a - self.other(h) if op == "sub" else a * torch.tanh(self.other(h))
        if op in ("param_add", "param_mul"):
            return a + self.p if op == "param_add" else a * self.p
        if op == "pad":
            return F.pad(a, c[:2], value=c[2])
        return F.layer_norm(a, (a.shape[-1],), self.p, self.q, c)


def _step_option(draw, op: str):
    """The op's own drawn constant (slope, scalar, exponent, (left, right, value) padding, eps), or None."""
    return {"leaky_relu": lambda: draw(st.sampled_from([0.01, 0.2])),
            "scale": lambda: draw(st.sampled_from([0.5, -2.0, 3.0])),
            "divide": lambda: draw(st.sampled_from([0.5, -2.0, 3.0])),
            "power": lambda: draw(st.integers(2, 3)),
            "pad": lambda: (draw(st.integers(0, 2)), draw(st.integers(0, 2)), draw(st.sampled_from([0.0, 1.5]))),
            "functional_layer_norm": lambda: draw(st.sampled_from([1e-5, 1e-3]))}.get(op, lambda: None)()


@st.composite
def elementwise_architectures(draw, *, max_ops: int = 3, max_width: int = 4, max_tokens: int = 3,
                              ops: tuple = ELEMENTWISE_OPS) -> Architecture:
    """Linear layers each followed by one drawn op, on features [B, F] or tokens [B, T, F], then a Linear head.

    Ops: sin, GELU(tanh), hardtanh(0, 6), clamp(min=0), clamp(0, 6), leaky_relu(slope), x * c, x / c, -x,
    a - b and a * tanh(b) of two Linears, x ** n, x + param, x * param, softmax, log_softmax, F.pad on the
    features (constant value), F.layer_norm with parameters, and (tokens) a Linear on the merged batch
    ``x.reshape(-1, D)`` viewed back.
    """
    seed = _seed(draw)
    tokens = draw(st.integers(0, max_tokens))  # 0: features [B, F]
    width = features = draw(st.integers(1, max_width))
    steps, desc = [], []
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from([o for o in ops if tokens or o != "merged_batch"]))
        out, option = draw(st.integers(1, max_width)), _step_option(draw, op)
        steps.append(_Step(op, width, out, option))
        shown = {"sub": f"(minus Linear({width},{out}))", "product": f"(times tanh(Linear({width},{out})))",
                 "merged_batch": "(Linear on x.reshape(-1, D), tanh, viewed back)"}.get(op, "")
        desc.append(f"Linear({width},{out}) {op}{shown}" + ("" if option is None else f"({option})"))
        width = out + (option[0] + option[1] if op == "pad" else 0)
    model = nn.Sequential(*steps, nn.Linear(width, 2))
    shape = (tokens, features) if tokens else (features,)
    return _finish(draw, model, shape, " -> ".join(desc) + f" -> Linear({width},2)", seed)
