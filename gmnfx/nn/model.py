"""The Graph Metanetwork: encoders, a stack of :class:`GMNLayer`, and a graph, node or edge readout."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import nn

from gmnfx.batch import GraphBatch, batch as make_batch
from gmnfx.graphs import _CompiledGraph
from gmnfx.kernels import segment_reduce
from gmnfx.nn.chunks import run_edge_chunks
from gmnfx.nn.encoders import MAX_LAYERS, EdgeEncoder, NodeEncoder
from gmnfx.nn.layer import ACTIVATIONS, GMNLayer, _mlp
from gmnfx.nn.plan import MessagePlan, batch_plan

__all__ = ["GMN", "READOUTS"]

READOUTS = ("graph", "node", "edge")

GraphInput = Union[GraphBatch, _CompiledGraph, Sequence[_CompiledGraph]]


class GMN(nn.Module):
    r"""A Graph Metanetwork over compiled parameter (or computation) graphs.

    Node and edge features are encoded (:class:`NodeEncoder`, :class:`EdgeEncoder`), updated by
    ``num_layers`` :class:`GMNLayer` s, and read out:

    * ``readout="graph"``: ``MLP([mean_nodes x, mean_edges e])`` per graph -> [num_graphs, out_dim],
      invariant to the input network's weight-space symmetries (e.g. accuracy prediction);
    * ``readout="node"``: ``MLP(x)`` -> [num_nodes, out_dim], equivariant;
    * ``readout="edge"``: ``MLP(e)`` -> [num_edges, out_dim] aligned with the batch's edges, equivariant
      (weight editing: ``gmnfx.write_parameters(model, graph, out[:, 0])`` per graph).

    Args:
        out_dim: output width.
        hidden_dim: feature width (default 64).
        num_layers: message-passing layers (default 4).
        readout: "graph" (default), "node" or "edge".
        aggregation, activation, global_feature, residual: passed to every :class:`GMNLayer`.
        edge_chunk_size: run every per-edge computation in chunks of about this many edges and recompute
            them in backward instead of storing their intermediates: memory per layer drops to its input,
            output and their gradients (use it for graphs of millions of edges on CPU; None: no chunking).
        max_layers: size of the layer-index embeddings (graphs with more lowering steps are refused).

    Example::

        gmn = gmnfx.nn.GMN(out_dim=1, hidden_dim=32)
        batch = gmnfx.batch([gmnfx.compile(m, x) for m in models])
        predicted_accuracy = gmn(batch)[:, 0]          # [num_graphs]
    """

    def __init__(self, out_dim: int, hidden_dim: int = 64, num_layers: int = 4, readout: str = "graph", *,
                 aggregation: str = "mean", activation: str = "relu", global_feature: bool = False,
                 residual: bool = False, edge_chunk_size: Optional[int] = None,
                 max_layers: int = MAX_LAYERS) -> None:
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS} (got {readout!r})")
        if num_layers < 0 or hidden_dim < 1 or out_dim < 1:
            raise ValueError(f"expected out_dim >= 1, hidden_dim >= 1 and num_layers >= 0 "
                             f"(got {out_dim}, {hidden_dim}, {num_layers})")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)} (got {activation!r})")
        self.out_dim, self.hidden_dim, self.readout = out_dim, hidden_dim, readout
        self.edge_chunk_size = edge_chunk_size
        self.node_encoder = NodeEncoder(hidden_dim, max_layers)
        self.edge_encoder = EdgeEncoder(hidden_dim, max_layers)
        self.global_init = nn.Parameter(torch.randn(hidden_dim)) if global_feature else None
        self.layers = nn.ModuleList(
            GMNLayer(hidden_dim, aggregation, activation, global_feature=global_feature, residual=residual)
            for _ in range(num_layers))
        head_in = hidden_dim * ((3 if global_feature else 2) if readout == "graph" else 1)
        self.head = _mlp(head_in, hidden_dim, out_dim, activation)

    def forward(self, graphs: GraphInput) -> torch.Tensor:
        """Run the metanetwork on a :class:`~gmnfx.GraphBatch`, one graph, or a list of graphs."""
        data = _as_batch(graphs, self.node_encoder.layer.weight.device)
        plan = batch_plan(data, self.edge_chunk_size)
        x = self.node_encoder(data.node_feat)
        e = self._encode_edges(data, plan)
        u = None
        if self.global_init is not None:
            u = self.global_init.expand(data.num_graphs, -1)
        e_mean = None
        for i, layer in enumerate(self.layers):
            last = i == len(self.layers) - 1
            # the last layer's edges are read only by an edge readout; a graph readout takes their mean
            x, e, u, e_mean = layer.propagate(x, e, u, plan, keep_edges=not last or self.readout == "edge",
                                              pool_edges=last and self.readout == "graph")
        return self._read_out(x, e, u, e_mean, plan)

    def _encode_edges(self, data: GraphBatch, plan: MessagePlan) -> torch.Tensor:
        columns = [data.edge_type, data.edge_weight, data.edge_pos, data.edge_block]
        params = [p for p in self.edge_encoder.parameters() if p.requires_grad]
        return run_edge_chunks(lambda chunk, cols, _: self.edge_encoder(*cols[:3], data.block_attrs, cols[3]),
                               plan.in_chunks, columns, [], params, plan.num_edges)[0]

    def _read_out(self, x: torch.Tensor, e: Optional[torch.Tensor], u: Optional[torch.Tensor],
                  e_mean: Optional[torch.Tensor], plan: MessagePlan):
        if self.readout == "node":
            return self.head(x)
        if self.readout == "edge":
            params = [p for p in self.head.parameters() if p.requires_grad]
            return run_edge_chunks(lambda chunk, cols, _: self.head(cols[0]), plan.in_chunks, [e], [], params,
                                   plan.num_edges)[0]
        if e_mean is None:  # no layers: pool the encoded edges
            e_mean = segment_reduce(e, plan.edge_groups.rowptr, plan.edge_groups.perm, "mean")
        x_mean = segment_reduce(x, plan.node_groups.rowptr, plan.node_groups.perm, "mean")
        return self.head(torch.cat([x_mean, e_mean] + ([u] if u is not None else []), dim=1))


def _as_batch(graphs: GraphInput, device: torch.device) -> GraphBatch:
    if isinstance(graphs, GraphBatch):
        data = graphs
    elif isinstance(graphs, _CompiledGraph):
        data = make_batch([graphs])
    elif isinstance(graphs, (list, tuple)):
        data = make_batch(graphs)
    else:
        raise TypeError(f"GMN expects a GraphBatch, a compiled graph or a list of them (got {type(graphs).__name__});"
                        " build one with gmnfx.batch(graphs)")
    return data if data.device == device else data.to(device)
