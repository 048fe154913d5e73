"""Many compiled graphs as one disjoint union: :func:`batch` and :class:`GraphBatch`.

A metanetwork trains on many networks at once, often of different
architectures. ``gmnfx.batch(graphs)`` concatenates their nodes and edges,
shifting ``edge_index`` by each graph's node offset and ``edge_block`` by its
block offset, and records which graph every node and edge came from. The
edges of graph ``g`` are ``batch.edge_ptr[g]:batch.edge_ptr[g + 1]`` in the
order of ``graphs[g].edges``, so an edge readout splits back with
:meth:`GraphBatch.split_edges` and writes into each model with
``gmnfx.write_parameters``.

Example::

    batch = gmnfx.batch([gmnfx.compile(mlp, x1), gmnfx.compile(cnn, x2)])
    batch.num_graphs, batch.num_nodes, batch.num_edges
    batch.node_graph, batch.edge_graph        # graph id per node / edge
    data = batch.to_pyg()                     # torch_geometric Data with a `batch` vector
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import torch

from gmnfx.graphs import _CompiledGraph, assemble_edge_feat
from gmnfx.kernels.segments import Segments, segments_of
from gmnfx.schema import NodeCol

__all__ = ["GraphBatch", "batch"]

_LONG = torch.long


@dataclass
class GraphBatch:
    """A disjoint union of compiled graphs (see :func:`batch`).

    Node and edge columns have the meaning they have on a single graph
    (``gmnfx.schema``); ``edge_index`` and ``edge_block`` are shifted to the
    union's numbering, ``edge_param`` stays an index into each graph's own
    ``flat_parameters`` (``edge_param + param_ptr[edge_graph]`` indexes the
    concatenation of all of them).

    Shapes:
        node_feat [N, len(NODE_FEATURES)]; edge_index [2, E]; edge_weight, edge_type, edge_param,
        edge_tied, edge_block, edge_graph [E]; edge_pos [E, 3]; block_attrs [num_blocks, 16];
        node_graph [N]; node_ptr, edge_ptr, param_ptr [G + 1].
    """

    num_graphs: int
    node_feat: torch.Tensor
    edge_index: torch.Tensor
    edge_weight: torch.Tensor
    edge_type: torch.Tensor
    edge_pos: torch.Tensor
    edge_block: torch.Tensor
    block_attrs: torch.Tensor
    edge_param: torch.Tensor
    edge_tied: torch.Tensor
    node_graph: torch.Tensor
    edge_graph: torch.Tensor
    node_ptr: torch.Tensor
    edge_ptr: torch.Tensor
    param_ptr: torch.Tensor

    def __post_init__(self) -> None:
        self._segments: dict[str, Segments] = {}

    # ------------------------------------------------------------------ sizes and columns
    @property
    def num_nodes(self) -> int:
        return int(self.node_feat.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def device(self) -> torch.device:
        return self.node_feat.device

    @property
    def node_type(self) -> torch.Tensor:
        return self.node_feat[:, NodeCol.NODE_TYPE].long()

    @property
    def edge_feat(self) -> torch.Tensor:
        """Float edge features [E, len(EDGE_FEATURES)], assembled as on a single graph."""
        return assemble_edge_feat(self.edge_type, self.edge_weight, self.edge_pos, self.block_attrs, self.edge_block)

    def __repr__(self) -> str:
        return f"GraphBatch(num_graphs={self.num_graphs}, num_nodes={self.num_nodes}, num_edges={self.num_edges})"

    # ------------------------------------------------------------------ message-passing structure
    def in_segments(self) -> Segments:
        """Edges grouped by destination node (CSR over ``edge_index[1]``), computed once and cached."""
        return self._cached("in", self.edge_index[1])

    def out_segments(self) -> Segments:
        """Edges grouped by source node (CSR over ``edge_index[0]``), computed once and cached."""
        return self._cached("out", self.edge_index[0])

    def _cached(self, key: str, index: torch.Tensor) -> Segments:
        if key not in self._segments:
            self._segments[key] = segments_of(index, self.num_nodes)
        return self._segments[key]

    # ------------------------------------------------------------------ moving and splitting
    def to(self, device: torch.device | str) -> "GraphBatch":
        """A copy on ``device`` (cached segment structures move with it)."""
        moved = GraphBatch(**{f.name: _move(getattr(self, f.name), device) for f in fields(self)})
        moved._segments = {k: Segments(*(_move(t, device) for t in seg)) for k, seg in self._segments.items()}
        return moved

    def split_nodes(self, values: torch.Tensor) -> list[torch.Tensor]:
        """Per-graph slices of a node tensor [N, ...] (e.g. a node readout)."""
        _expect_rows(values, self.num_nodes, "node")
        return list(torch.split(values, torch.diff(self.node_ptr).tolist()))

    def split_edges(self, values: torch.Tensor) -> list[torch.Tensor]:
        """Per-graph slices of an edge tensor [E, ...] (e.g. an edge readout), each in its graph's edge order."""
        _expect_rows(values, self.num_edges, "edge")
        return list(torch.split(values, torch.diff(self.edge_ptr).tolist()))

    def to_pyg(self):
        """A ``torch_geometric.data.Data`` with x, edge_index, edge_attr, batch and ptr (plus edge_weight,
        edge_param, edge_tied and edge_graph), ready for PyG layers and pooling."""
        from torch_geometric.data import Data

        return Data(x=self.node_feat, edge_index=self.edge_index, edge_attr=self.edge_feat,
                    edge_weight=self.edge_weight, edge_param=self.edge_param, edge_tied=self.edge_tied,
                    batch=self.node_graph, ptr=self.node_ptr, edge_graph=self.edge_graph,
                    num_nodes=self.num_nodes)


def batch(graphs: Sequence[_CompiledGraph]) -> GraphBatch:
    """Join compiled graphs (parameter or computation graphs, any architectures) into one :class:`GraphBatch`.

    Args:
        graphs: a non-empty sequence of graphs from ``gmnfx.compile`` or ``gmnfx.load_graph``.
    """
    if isinstance(graphs, (_CompiledGraph, GraphBatch)):
        raise TypeError("gmnfx.batch expects a sequence of graphs (got a single graph): wrap it in a list")
    graphs = list(graphs)
    if not graphs:
        raise ValueError("gmnfx.batch expects at least one graph (got an empty sequence)")
    for i, g in enumerate(graphs):
        if not isinstance(g, _CompiledGraph):
            raise TypeError(f"gmnfx.batch: graphs[{i}] is a {type(g).__name__}, expected a ParameterGraph or "
                            "ComputationGraph from gmnfx.compile / gmnfx.load_graph")
    num_nodes = [g.num_nodes for g in graphs]
    num_edges = [g.num_edges for g in graphs]
    num_blocks = [int(g.block_attrs.shape[0]) for g in graphs]
    node_ptr = _ptr(num_nodes)
    block_ptr = _ptr(num_blocks)
    graph_ids = torch.arange(len(graphs))
    return GraphBatch(
        num_graphs=len(graphs),
        node_feat=torch.cat([g.node_feat for g in graphs]),
        edge_index=torch.cat([g.edge_index + node_ptr[i] for i, g in enumerate(graphs)], dim=1),
        edge_weight=torch.cat([g.edge_weight for g in graphs]),
        edge_type=torch.cat([g.edge_type for g in graphs]),
        edge_pos=torch.cat([g.edge_pos for g in graphs]),
        edge_block=torch.cat([g.edge_block.long() + block_ptr[i] for i, g in enumerate(graphs)]),
        block_attrs=torch.cat([g.block_attrs for g in graphs]),
        edge_param=torch.cat([g.edge_param for g in graphs]),
        edge_tied=torch.cat([g.edge_tied for g in graphs]),
        node_graph=torch.repeat_interleave(graph_ids, torch.tensor(num_nodes)),
        edge_graph=torch.repeat_interleave(graph_ids, torch.tensor(num_edges)),
        node_ptr=node_ptr,
        edge_ptr=_ptr(num_edges),
        param_ptr=_ptr([g.num_parameters for g in graphs]),
    )


def _ptr(counts: list[int]) -> torch.Tensor:
    ptr = torch.zeros(len(counts) + 1, dtype=_LONG)
    ptr[1:] = torch.cumsum(torch.tensor(counts, dtype=_LONG), 0)
    return ptr


def _move(value, device):
    return value.to(device) if isinstance(value, torch.Tensor) else value


def _expect_rows(values: torch.Tensor, rows: int, what: str) -> None:
    if values.dim() == 0 or values.shape[0] != rows:
        shape = tuple(values.shape)
        raise ValueError(f"expected a tensor with one row per {what} ({rows} rows), got shape {shape}")
