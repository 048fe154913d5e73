"""Relabelling a compiled graph's nodes: :func:`permute_graph`."""
from __future__ import annotations

import dataclasses

import torch

from gmnfx.errors import InputShapeError

__all__ = ["permute_graph", "check_permutation"]


def check_permutation(perm, num_nodes: int, what: str = "perm") -> torch.Tensor:
    """``perm`` as a LongTensor permutation of ``range(num_nodes)``, or a clear InputShapeError."""
    perm = torch.as_tensor(perm)
    if perm.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise InputShapeError(f"{what}: expected an integer tensor of node indices (got dtype {perm.dtype})")
    perm = perm.long().cpu()
    if perm.shape != (num_nodes,):
        raise InputShapeError(f"{what}: expected shape ({num_nodes},), one new index per node (got {tuple(perm.shape)})")
    seen = torch.zeros(num_nodes, dtype=torch.bool)
    in_range = (perm >= 0) & (perm < num_nodes)
    if not bool(in_range.all()):
        bad = int((~in_range).nonzero()[0])
        raise InputShapeError(f"{what}: node {bad} is sent to {int(perm[bad])}, outside [0, {num_nodes})")
    seen[perm] = True
    if not bool(seen.all()):
        missing = int((~seen).nonzero()[0])
        raise InputShapeError(f"{what} is not a permutation: no node is sent to {missing} (two nodes share a target)")
    return perm


def permute_graph(graph, perm):
    """The graph with its nodes relabelled: old node ``i`` becomes node ``perm[i]``.

    Node features move with their nodes, ``edge_index`` and the input/output node
    lists are mapped through ``perm``; edges keep their order, values and
    ``edge_param``. Works on any permutation, automorphism or not.

    Args:
        graph: a ``ParameterGraph`` or ``ComputationGraph``.
        perm: LongTensor [num_nodes], a permutation of ``range(num_nodes)``.

    Example:
        >>> g2 = permute_graph(g, gmnfx.symmetry.sample(g))   # same structure, relabelled
    """
    perm = check_permutation(perm, graph.num_nodes)
    node_feat = torch.empty_like(graph.node_feat)
    node_feat[perm] = graph.node_feat
    return dataclasses.replace(
        graph,
        edge_index=perm[graph.edge_index],
        node_feat=node_feat,
        input_nodes=perm[graph.input_nodes],
        output_nodes=perm[graph.output_nodes],
    )
