"""Pass 6: validate the finished graph (cheap, vectorized checks).

Always:

* every edge index is a node and every ``edge_param`` a parameter (or -1);
* ``src < dst`` for every edge: ids follow creation order, so this certifies a DAG.

With ``debug`` (``GMNFX_DEBUG=1``; always on in the tests), the O(parameters) re-checks:

* parameter graph: every parameter on exactly one edge (``collapse_weight_sharing``
  guarantees this by construction and reports unplaced parameters by name);
* every parameter edge carries its parameter's value.
"""
from __future__ import annotations

import torch

from gmnfx.errors import InvariantError

__all__ = ["validate", "check_graph", "check_edge_values"]


def validate(state):
    check_graph(state.result, state.flat_params, coverage=state.debug)
    if state.debug:
        check_edge_values(state.result, state.flat_params)
    return state


def check_graph(graph, flat_params: torch.Tensor, coverage: bool = True) -> None:
    """Raise InvariantError if ``graph`` breaks an invariant of its kind."""
    src, dst = graph.edge_index
    if graph.num_edges and not bool((src < dst).all()):
        backwards = torch.nonzero(src >= dst).squeeze(1)
        e = int(backwards[0])
        layer = int(graph.edge_layer[e])
        raise InvariantError(
            f"{backwards.numel()} edges run against creation order (first: {int(src[e])} -> {int(dst[e])}, "
            f"from layer {graph.layers[layer] if layer < len(graph.layers) else layer}); a lowering rule "
            "created a neuron before the neurons it reads from"
        )
    if graph.num_edges and (int(src.min()) < 0 or int(dst.max()) >= graph.num_nodes):  # src < dst bounds the rest
        raise InvariantError("edge_index refers to nodes outside [0, num_nodes)")
    if graph.num_edges and (int(graph.edge_param.min()) < -1 or int(graph.edge_param.max()) >= flat_params.numel()):
        raise InvariantError("edge_param refers outside [-1, number of parameters)")
    if coverage and graph.kind == "parameter":
        counts = torch.bincount(graph.edge_param + 1, minlength=flat_params.numel() + 1)[1:]
        if not bool((counts == 1).all()):
            bad = int(torch.nonzero(counts != 1)[0])
            raise InvariantError(f"parameter {bad} sits on {int(counts[bad])} edges (expected exactly 1)")


def check_edge_values(graph, flat_params: torch.Tensor) -> None:
    """Raise InvariantError unless every parameter edge carries its parameter's current value."""
    with_param = graph.edge_param >= 0
    expected = flat_params[graph.edge_param[with_param]].to(graph.edge_weight.dtype)
    actual = graph.edge_weight[with_param]
    if not bool(((actual == expected) | (actual.isnan() & expected.isnan())).all()):
        raise InvariantError("an edge's weight differs from the parameter it carries")
