"""Pass 4b: collapse weight sharing into the parameter graph.

Conv positions collapse into channel nodes (kernel offsets become edge
features), every block emits one edge per parameter it uses, and a parameter
used by several blocks (tied or reused weights) keeps one edge at its first
use; later uses joining other channels become parameter-free TIED edges so the
coupling stays visible (``edge_tied``: the parameter each TIED edge repeats).
A parameter on no edge is an error.

Channels are numbered in order of their ``rank`` first, so a constant that
feeds older channels (a class token joining a sequence's feature channels)
comes before them and every edge still runs from a lower to a higher id.
"""
from __future__ import annotations

import torch

from gmnfx.edge_blocks import EdgeColumns, combine_index_keys
from gmnfx.errors import ParameterPlacementError
from gmnfx.schema import EdgeType

from .materialize import gather_block_edges

__all__ = ["collapse_weight_sharing"]


def collapse_weight_sharing(state):
    """Channel-level nodes and edges into ``state.nodes`` / ``state.edges``."""
    graph = state.neuron_graph
    graph.renumber_channels_by_rank()  # before any channel id is read
    nodes = {name: graph.channels.column(name) for name in
             ("node_type", "op", "activation", "activation_param", "layer", "io_tensor", "io_index",
              "norm_eps", "norm_mean", "norm_var")}
    nodes.update({f"pos_{d}": graph.channels.column(f"pos_{d}") for d in range(3)})  # 0 except grid cells
    state.nodes = nodes
    edges, block, edge_type = gather_block_edges(state, "parameter_edges")
    counts = torch.bincount(edges.param + 1, minlength=state.param_table.num_parameters + 1)[1:]
    if not bool((counts > 0).all()):
        _raise_unplaced(counts > 0, state.param_table)
    tied = torch.full((len(edges),), -1, dtype=torch.long)
    if counts.numel() and int(counts.max()) > 1:
        edges, block, edge_type, tied = _resolve_shared_parameters(edges, block, edge_type, state.flat_params, counts)
    state.edges, state.edge_block, state.edge_type, state.edge_tied = edges, block, edge_type, tied
    return state


def _resolve_shared_parameters(edges: EdgeColumns, block: torch.Tensor, edge_type: torch.Tensor,
                               flat_params: torch.Tensor, counts: torch.Tensor):
    """One edge per (parameter, channel pair); the first use of a parameter keeps it, later ones are TIED.

    Returns the kept edges, their blocks and types, and per edge the parameter a TIED edge repeats (else -1).
    """
    num_params, num_edges = flat_params.numel(), edges.param.numel()
    shared = torch.nonzero((edges.param >= 0) & (counts[edges.param.clamp(min=0)] > 1)).squeeze(1)
    p = edges.param[shared]
    first_of_param = torch.full((num_params,), num_edges, dtype=torch.long)
    first_of_param.scatter_reduce_(0, p, shared, reduce="amin")
    first = first_of_param[p]
    # a later use joining the same channel pair as the first is the same parameter-graph edge: dropped
    repeat_of_first = (shared != first) & (edges.src[shared] == edges.src[first]) & (edges.dst[shared] == edges.dst[first])
    later = shared[(shared != first) & ~repeat_of_first]
    if bool((counts[edges.param[later]] > 2).any()):  # three or more uses: later uses may repeat each other
        inverse = combine_index_keys([edges.param[later], edges.src[later], edges.dst[later]])
        first_of_triple = torch.full((int(inverse.max()) + 1,), num_edges, dtype=torch.long)
        later = first_of_triple.scatter_reduce_(0, inverse, later, reduce="amin").sort().values
    keep = torch.ones(num_edges, dtype=torch.bool)
    keep[shared] = False
    keep[first_of_param[first_of_param < num_edges]] = True
    keep[later] = True
    tied = later
    # the columns were built for this collapse alone: mark the TIED edges in place
    edge_type[tied] = int(EdgeType.TIED)
    repeats = torch.full((num_edges,), -1, dtype=torch.long)
    repeats[tied] = edges.param[tied]
    edges.param[tied] = -1
    if bool(keep.all()):  # the usual case (tied weights): nothing to drop, no copy of the columns
        return edges, block, edge_type, repeats
    idx = torch.nonzero(keep).squeeze(1)
    out = EdgeColumns(edges.src[idx], edges.dst[idx], edges.param[idx], edges.weight[idx], edges.pos[idx])
    return out, block[idx], edge_type[idx], repeats[idx]


def _raise_unplaced(placed: torch.Tensor, table) -> None:
    missing = []
    for entry in table.entries:
        part = placed[entry.offset : entry.offset + entry.numel]
        if not bool(part.all()):
            missing.append(f"{entry.name} ({int((~part).sum())} of {entry.numel} values)")
    raise ParameterPlacementError(
        "these parameters are not used by the traced forward pass, so they cannot be placed on any edge: "
        + ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        + ". Remove unused parameters from the model, or compile the submodule that uses them."
    )
