"""Feature encoders: compiled-graph columns -> hidden node and edge features.

Categorical columns (node type, op, activation, edge type, layer index,
padding mode, operand) go through embeddings; real-valued ones (parameter
values, kernel offsets, BatchNorm statistics, input/output indices) through
sinusoidal features followed by a linear map. Nothing here tells two hidden
neurons of the same layer apart, so the encoders keep every symmetry of the
graph: an automorphism preserves all of these columns.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from gmnfx.schema import Activation, EdgeType, NodeCol, NodeOp, NodeType

__all__ = ["FourierFeatures", "NodeEncoder", "EdgeEncoder", "MAX_LAYERS"]

MAX_LAYERS = 2048  # default size of the layer-index embedding tables
_PADDING_MODES = 4
_OPERANDS = 3


class FourierFeatures(nn.Module):
    r"""Sinusoidal features of real values at geometric frequencies, plus the value itself.

    .. math:: \phi(v) = [v, \sin(\pi f_k v), \cos(\pi f_k v)]_{k < K},\quad f_k = f_{max}^{k / (K - 1)}

    Args:
        num_inputs: how many real columns are encoded together.
        num_frequencies: K (default 8).
        max_frequency: f_max (default 256: resolves weight differences of about 1/256).

    Shapes:
        input [M, num_inputs] -> output [M, num_inputs * (2K + 1)]
    """

    def __init__(self, num_inputs: int, num_frequencies: int = 8, max_frequency: float = 256.0) -> None:
        super().__init__()
        exponents = torch.linspace(0, 1, num_frequencies) if num_frequencies > 1 else torch.zeros(1)
        self.register_buffer("frequencies", math.pi * max_frequency ** exponents, persistent=False)
        self.num_inputs = num_inputs
        self.out_features = num_inputs * (2 * num_frequencies + 1)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        angles = values[..., :, None] * self.frequencies
        feats = torch.cat([values[..., :, None], torch.sin(angles), torch.cos(angles)], dim=-1)
        return feats.flatten(-2)


def _signed_log(values: torch.Tensor) -> torch.Tensor:
    """sign(v) log(1 + |v|): large statistics and hyperparameters on a scale a linear layer can use."""
    return torch.sign(values) * torch.log1p(values.abs())


def _checked_codes(codes: torch.Tensor, size: int, what: str, fix: str) -> torch.Tensor:
    codes = codes.long()
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= size):
        bad = codes[(codes < 0) | (codes >= size)][0]
        raise ValueError(f"{what} code {int(bad)} is outside the encoder's table of {size} entries; {fix}")
    return codes


class NodeEncoder(nn.Module):
    """Hidden features of a graph's nodes from ``node_feat`` [N, len(NODE_FEATURES)].

    Embeddings of node type, op, activation and layer index; sinusoidal features of the LeakyReLU slope,
    norm epsilon (log scale), BatchNorm running statistics, the input/output index of input and output nodes
    (hidden nodes get none) and computation-graph positions.

    Args:
        hidden_dim: output width.
        max_layers: size of the layer-index embedding (graphs with more lowering steps are refused).
    """

    def __init__(self, hidden_dim: int, max_layers: int = MAX_LAYERS, num_frequencies: int = 8) -> None:
        super().__init__()
        self.max_layers = max_layers
        self.node_type = nn.Embedding(len(NodeType), hidden_dim)
        self.op = nn.Embedding(len(NodeOp), hidden_dim)
        self.activation = nn.Embedding(len(Activation), hidden_dim)
        self.layer = nn.Embedding(max_layers, hidden_dim)
        self.io_tensor = nn.Embedding(8, hidden_dim)
        self.values = FourierFeatures(8, num_frequencies, max_frequency=64.0)
        self.values_proj = nn.Linear(self.values.out_features, hidden_dim)

    def forward(self, node_feat: torch.Tensor) -> torch.Tensor:
        col = node_feat
        out = self.node_type(_checked_codes(col[:, NodeCol.NODE_TYPE], len(NodeType), "node_type",
                                            "the graph was written by a newer gmnfx"))
        out = out + self.op(_checked_codes(col[:, NodeCol.OP], len(NodeOp), "node op",
                                           "the graph was written by a newer gmnfx"))
        out = out + self.activation(_checked_codes(col[:, NodeCol.ACTIVATION], len(Activation), "activation",
                                                   "the graph was written by a newer gmnfx"))
        out = out + self.layer(_checked_codes(col[:, NodeCol.LAYER], self.max_layers, "layer index",
                                              "build the GMN with a larger max_layers"))
        is_io = col[:, NodeCol.IO_TENSOR] >= 0
        io_tensor = torch.where(is_io, col[:, NodeCol.IO_TENSOR], torch.zeros_like(col[:, 0]))
        out = out + self.io_tensor(_checked_codes(io_tensor, 8, "io_tensor", "models with more than 8 inputs "
                                                  "or outputs are not supported")) * is_io[:, None]
        io_index = torch.where(is_io, col[:, NodeCol.IO_INDEX] + 1, torch.zeros_like(col[:, 0]))
        reals = torch.stack([
            col[:, NodeCol.ACTIVATION_PARAM],
            torch.log10(col[:, NodeCol.NORM_EPS].clamp_min(1e-12)) * (col[:, NodeCol.NORM_EPS] > 0),
            col[:, NodeCol.NORM_MEAN],
            _signed_log(col[:, NodeCol.NORM_VAR]),
            _signed_log(io_index) / 4,
            col[:, NodeCol.POS_0] / 64, col[:, NodeCol.POS_1] / 64, col[:, NodeCol.POS_2] / 64,
        ], dim=1)
        return out + self.values_proj(self.values(reals))


class EdgeEncoder(nn.Module):
    """Hidden features of edges from the typed edge columns of a graph or :class:`~gmnfx.GraphBatch`.

    Embeddings of edge type, layer index, padding mode and operand; sinusoidal features of the edge's value
    (the parameter, or the fixed weight) and of its position (kernel offset, flattened-map position, grid cell);
    a linear map of the log-scaled kernel size, stride, dilation, padding and groups.
    """

    def __init__(self, hidden_dim: int, max_layers: int = MAX_LAYERS, num_frequencies: int = 8) -> None:
        super().__init__()
        self.max_layers = max_layers
        self.edge_type = nn.Embedding(len(EdgeType), hidden_dim)
        self.layer = nn.Embedding(max_layers, hidden_dim)
        self.padding_mode = nn.Embedding(_PADDING_MODES, hidden_dim)
        self.operand = nn.Embedding(_OPERANDS, hidden_dim)
        self.value = FourierFeatures(1, num_frequencies, max_frequency=256.0)
        self.position = FourierFeatures(3, num_frequencies // 2 or 1, max_frequency=8.0)
        self.reals_proj = nn.Linear(self.value.out_features + self.position.out_features + 13, hidden_dim)

    def forward(self, edge_type: torch.Tensor, edge_weight: torch.Tensor, edge_pos: torch.Tensor,
                block_attrs: torch.Tensor, edge_block: torch.Tensor) -> torch.Tensor:
        block = block_attrs[edge_block.long()]
        out = self.edge_type(_checked_codes(edge_type, len(EdgeType), "edge_type",
                                            "the graph was written by a newer gmnfx"))
        out = out + self.layer(_checked_codes(block[:, 0], self.max_layers, "layer index",
                                              "build the GMN with a larger max_layers"))
        out = out + self.padding_mode(_checked_codes(block[:, 14], _PADDING_MODES, "padding_mode", "unknown mode"))
        out = out + self.operand(_checked_codes(block[:, 15], _OPERANDS, "operand", "unknown operand"))
        reals = torch.cat([self.value(edge_weight[:, None].to(out.dtype)), self.position(edge_pos.to(out.dtype) / 4),
                           _signed_log(block[:, 1:14].to(out.dtype))], dim=1)
        return out + self.reals_proj(reals)
