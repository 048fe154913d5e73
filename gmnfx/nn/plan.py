"""What message passing needs to know about a graph, computed once per forward: :class:`MessagePlan`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from gmnfx.kernels.segments import Segments, segments_of
from gmnfx.nn.chunks import EdgeChunk, plan_edge_chunks

__all__ = ["MessagePlan", "message_plan", "batch_plan"]


@dataclass
class MessagePlan:
    """Edges grouped by destination (``in_chunks``) and by source (``out_chunks``), node degrees, and which
    graph each node and edge belongs to (``node_groups`` / ``edge_groups``: CSR over graphs)."""

    num_nodes: int
    num_edges: int
    num_graphs: int
    src: torch.Tensor
    dst: torch.Tensor
    in_chunks: list[EdgeChunk]
    out_chunks: list[EdgeChunk]
    in_degree: torch.Tensor
    out_degree: torch.Tensor
    node_graph: torch.Tensor
    node_groups: Segments
    edge_groups: Segments
    in_segments: Segments  # edges grouped by destination
    out_segments: Segments  # edges grouped by source


def message_plan(edge_index: torch.Tensor, num_nodes: int, *, node_graph: Optional[torch.Tensor] = None,
                 num_graphs: Optional[int] = None, edge_chunk_size: Optional[int] = None,
                 in_segments: Optional[Segments] = None, out_segments: Optional[Segments] = None,
                 node_groups: Optional[Segments] = None, edge_groups: Optional[Segments] = None) -> MessagePlan:
    """Build the plan of a graph given as ``edge_index`` [2, E] over ``num_nodes`` nodes.

    Args:
        node_graph: graph id of every node (PyG's ``batch`` vector); None: one graph.
        num_graphs: number of graphs (default ``node_graph.max() + 1``).
        edge_chunk_size: process edges in chunks of about this many edges, recomputing them in backward
            instead of storing their intermediates (None: all edges at once).
    """
    _check_edge_index(edge_index, num_nodes)
    src, dst = edge_index[0], edge_index[1]
    device = edge_index.device
    if node_graph is None:
        node_graph = torch.zeros(num_nodes, dtype=torch.long, device=device)
        num_graphs = 1 if num_graphs is None else num_graphs
    else:
        if node_graph.shape != (num_nodes,):
            raise ValueError(f"expected node_graph (batch vector) of shape [{num_nodes}] "
                             f"(got {tuple(node_graph.shape)})")
        node_graph = node_graph.long()
        if num_graphs is None:
            num_graphs = int(node_graph.max()) + 1 if num_nodes else 0
    in_segments = in_segments or segments_of(dst, num_nodes)
    out_segments = out_segments or segments_of(src, num_nodes)
    node_groups = node_groups or segments_of(node_graph, num_graphs)
    edge_groups = edge_groups or segments_of(node_graph[src], num_graphs)
    return MessagePlan(
        num_nodes=num_nodes, num_edges=int(edge_index.shape[1]), num_graphs=num_graphs, src=src, dst=dst,
        in_chunks=plan_edge_chunks(in_segments, edge_chunk_size),
        out_chunks=plan_edge_chunks(out_segments, edge_chunk_size),
        in_degree=torch.diff(in_segments.rowptr), out_degree=torch.diff(out_segments.rowptr),
        node_graph=node_graph, node_groups=node_groups, edge_groups=edge_groups, in_segments=in_segments,
        out_segments=out_segments)


def batch_plan(batch, edge_chunk_size: Optional[int] = None) -> MessagePlan:
    """The plan of a :class:`~gmnfx.GraphBatch`, reusing its cached groupings (nodes and edges are
    contiguous per graph, so their graph groupings are the batch's pointers)."""
    return message_plan(batch.edge_index, batch.num_nodes, node_graph=batch.node_graph,
                        num_graphs=batch.num_graphs, edge_chunk_size=edge_chunk_size,
                        in_segments=batch.in_segments(), out_segments=batch.out_segments(),
                        node_groups=Segments(batch.node_ptr, None), edge_groups=Segments(batch.edge_ptr, None))


def _check_edge_index(edge_index: torch.Tensor, num_nodes: int) -> None:
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"expected edge_index of shape [2, num_edges] (got {tuple(edge_index.shape)})")
    if edge_index.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"expected an integer edge_index (got {edge_index.dtype})")
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        bad = int(((edge_index < 0) | (edge_index >= num_nodes)).any(0).nonzero()[0])
        raise ValueError(f"edge {bad} ({int(edge_index[0, bad])} -> {int(edge_index[1, bad])}) refers to a node "
                         f"outside [0, {num_nodes}): edge_index and the node features disagree")
