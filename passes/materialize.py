"""Pass 4a: materialize the computation graph (one node per neuron, one edge per weight use).

Also home of :func:`gather_block_edges`, which both materializations use to
concatenate the edges of every block with the id of the block they came from.
"""
from __future__ import annotations

import torch

from gmnfx.edge_blocks import CollapseContext, EdgeColumns

__all__ = ["build_computation_graph", "gather_block_edges", "collapse_context"]


def collapse_context(state) -> CollapseContext:
    graph = state.neuron_graph
    return CollapseContext(graph.neurons.column("channel"), graph.all_positions(), state.param_table.describe)


def gather_block_edges(state, which: str) -> tuple[EdgeColumns, torch.Tensor, torch.Tensor]:
    """Edges of all blocks (``which``: "computation_edges" or "parameter_edges"), each edge's block id and type.

    Parameter edges come back carrying their parameter's value in ``weight``.
    """
    ctx = collapse_context(state)
    blocks = state.neuron_graph.blocks
    parts = [getattr(block, which)(ctx) for block in state.progress_iter(blocks, which.replace("_", " "))]
    sizes = [len(part) for part in parts]
    flat = state.flat_params if state.flat_params.is_floating_point() else state.flat_params.float()
    edges = EdgeColumns.empty(sum(sizes), flat.dtype)
    block_ids = torch.empty(sum(sizes), dtype=torch.int32)
    types = torch.empty(sum(sizes), dtype=torch.long)
    start = 0
    for i, (block, part, n) in enumerate(zip(blocks, parts, sizes)):
        part.write_into(edges, start, flat)
        block_ids[start : start + n] = i
        types[start : start + n] = int(block.edge_type)
        start += n
    return edges, block_ids, types


def build_computation_graph(state):
    """Neuron-level nodes and edges into ``state.nodes`` / ``state.edges``."""
    graph = state.neuron_graph
    channel = graph.neurons.column("channel")
    nodes = {name: graph.channels.column(name)[channel] for name in
             ("node_type", "op", "activation", "activation_param", "layer", "norm_eps", "norm_mean", "norm_var")}
    nodes["io_tensor"] = graph.neurons.column("io_tensor").clone()
    nodes["io_index"] = graph.neurons.column("io_index").clone()
    for d in range(3):
        nodes[f"pos_{d}"] = graph.neurons.column(f"pos_{d}")
    state.nodes = nodes
    state.edges, state.edge_block, state.edge_type = gather_block_edges(state, "computation_edges")
    return state
