"""Invariant checks run between passes when debugging (``debug=True`` or ``GMNFX_DEBUG=1``)."""
from __future__ import annotations

import torch

from gmnfx.errors import InvariantError
from gmnfx.ir import META_VALUE, Neurons

__all__ = ["check_invariants"]


def check_invariants(state, after: str) -> None:
    """Check what the passes so far promise; raise InvariantError naming the pass that broke it."""
    try:
        if state.neuron_graph is not None:
            _check_neuron_graph(state)
        if state.edges is not None:
            _check_edges(state)
    except InvariantError as exc:
        raise InvariantError(f"after pass '{after}': {exc}") from None


def _check_neuron_graph(state) -> None:
    graph = state.neuron_graph
    channel = graph.neurons.column("channel")
    if channel.numel() and (int(channel.min()) < 0 or int(channel.max()) >= graph.num_channels):
        raise InvariantError("a neuron belongs to a channel that does not exist")
    for node in state.graph_module.graph.nodes:
        value = node.meta.get(META_VALUE)
        if isinstance(value, Neurons) and value.ids.numel():
            if int(value.ids.min()) < 0 or int(value.ids.max()) >= graph.num_neurons:
                raise InvariantError(f"node '{node.name}' refers to neurons that do not exist")


def _check_edges(state) -> None:
    edges = state.edges
    n = len(state.nodes["op"])
    if len(edges) and (int(torch.minimum(edges.src, edges.dst).min()) < 0 or int(torch.maximum(edges.src, edges.dst).max()) >= n):
        raise InvariantError("an edge refers to a node that does not exist")
    if bool((edges.src >= edges.dst).any()):
        raise InvariantError("an edge runs against creation order, so the graph may not be a DAG")
    if edges.param.numel() and int(edges.param.max()) >= state.param_table.num_parameters:
        raise InvariantError("an edge refers to a parameter that does not exist")
