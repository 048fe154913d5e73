"""Applying a symmetry to a model: :func:`permute_model`, and the edge each edge is sent to."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from gmnfx.errors import GmnfxError, InputShapeError
from gmnfx.params import check_model_matches, flat_parameters
from gmnfx.schema import EdgeType, NodeCol, NodeOp
from gmnfx.symmetry.colours import combine, edge_colours, node_colours
from gmnfx.symmetry.group import _require_parameter_graph
from gmnfx.symmetry.relabel import check_permutation

__all__ = ["permute_model", "edge_images"]


def edge_images(graph, perm) -> torch.Tensor:
    """For a symmetry ``perm`` of ``graph``: the index of the edge each edge is sent to.

    Raises InputShapeError when ``perm`` is not a symmetry (it changes a node's
    colour, or sends an edge where the graph has no edge of that kind).
    """
    perm = check_permutation(perm, graph.num_nodes)
    colour = node_colours(graph)
    moved = (colour[perm] != colour).nonzero().flatten()
    if moved.numel():
        i = int(moved[0])
        raise InputShapeError(f"perm is not a symmetry of the graph: node {i} ({_describe_node(graph, i)}) is sent "
                              f"to node {int(perm[i])} ({_describe_node(graph, int(perm[i]))}), which differs in kind")
    src, dst = graph.edge_index
    ecol = edge_colours(graph)
    num_edges = graph.num_edges
    keys = combine(torch.cat([src, perm[src]]), torch.cat([dst, perm[dst]]), torch.cat([ecol, ecol]))
    original, mapped = keys[:num_edges], keys[num_edges:]
    order_original = torch.argsort(original, stable=True)
    order_mapped = torch.argsort(mapped, stable=True)
    differ = (original[order_original] != mapped[order_mapped]).nonzero().flatten()
    if differ.numel():
        e = int(order_mapped[int(differ[0])])
        s, d = int(src[e]), int(dst[e])
        raise InputShapeError(
            f"perm is not a symmetry of the graph: edge {e} ({EdgeType(int(graph.edge_type[e])).name}, layer "
            f"'{_layer_name(graph, int(graph.edge_layer[e]))}', node {s} -> {d}) would become {int(perm[s])} -> "
            f"{int(perm[d])}, and the graph has no such edge")
    image = torch.empty(num_edges, dtype=torch.long)
    image[order_mapped] = order_original
    _check_ties(graph, image)
    return image


def permute_model(model: nn.Module, graph, perm) -> nn.Module:
    """A deep copy of ``model`` with its parameters moved by the symmetry ``perm`` of ``graph``.

    The parameter on each edge moves to the edge it is sent to (and BatchNorm
    running statistics move with their nodes), so the copy computes the same
    function and ``gmnfx.compile(copy)`` equals ``permute_graph(graph, perm)``
    up to edge order.

    Args:
        model: the model ``graph`` was compiled from.
        graph: its ``ParameterGraph``.
        perm: a symmetry of ``graph`` (e.g. from ``gmnfx.symmetry.sample(graph)``).

    Example:
        >>> twin = permute_model(model, graph, gmnfx.symmetry.sample(graph))
        >>> torch.allclose(twin(x), model(x))
        True
    """
    _require_parameter_graph(graph, "permute_model")
    check_model_matches(model, graph, "permute_model")
    image = edge_images(graph, perm)
    perm = check_permutation(perm, graph.num_nodes)
    flat = flat_parameters(model)
    moved = flat.clone()
    owned = graph.edge_param >= 0
    moved[graph.edge_param[image[owned]]] = flat[graph.edge_param[owned]]
    twin = copy.deepcopy(model)
    with torch.no_grad():
        offset = 0
        for p in twin.parameters():
            p.copy_(moved[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
    _permute_batchnorm_statistics(twin, model, graph, perm)
    return twin


def _check_ties(graph, image: torch.Tensor) -> None:
    """A TIED edge must go to a TIED edge repeating the parameter its owner's edge went to."""
    tied = (graph.edge_type == EdgeType.TIED).nonzero().flatten()
    if tied.numel() == 0:
        return
    owner_of = torch.full((graph.num_parameters,), -1, dtype=torch.long)
    owned = (graph.edge_param >= 0).nonzero().flatten()
    owner_of[graph.edge_param[owned]] = owned
    expected = graph.edge_param[image[owner_of[graph.edge_tied[tied]]]]
    broken = (graph.edge_tied[image[tied]] != expected).nonzero().flatten()
    if broken.numel():
        e = int(tied[int(broken[0])])
        raise InputShapeError(f"perm is not a symmetry of the graph: it separates the uses of a tied parameter "
                              f"(TIED edge {e}, layer '{_layer_name(graph, int(graph.edge_layer[e]))}')")


def _permute_batchnorm_statistics(twin: nn.Module, model: nn.Module, graph, perm: torch.Tensor) -> None:
    """Running statistics are per-channel values on BATCHNORM nodes: move them with their nodes."""
    is_bn = graph.node_feat[:, NodeCol.OP].long() == NodeOp.BATCHNORM
    layers = torch.unique(graph.node_layer[is_bn & (perm != torch.arange(graph.num_nodes))]).tolist()
    done: dict[int, torch.Tensor] = {}
    for layer in layers:
        nodes = (is_bn & (graph.node_layer == layer)).nonzero().flatten()
        path = graph.layers[layer]["module_path"]
        source = _batchnorm_module(model, path)
        if source is None or source.running_mean.numel() != nodes.numel() or not torch.equal(
                graph.node_feat[nodes, NodeCol.NORM_MEAN].double(), source.running_mean.detach().double().cpu()):
            raise GmnfxError(f"permute_model: cannot tell which running statistics the batch norm nodes of layer "
                             f"'{graph.layers[layer]['name']}' (module '{path or '<root>'}') hold; gmnfx moves "
                             f"the buffers of BatchNorm modules applied once")
        channel = torch.full((graph.num_nodes,), -1, dtype=torch.long)
        channel[nodes] = torch.arange(nodes.numel())
        order = torch.empty(nodes.numel(), dtype=torch.long)
        order[channel[perm[nodes]]] = torch.arange(nodes.numel())  # new channel c holds old channel order[c]
        if id(source) in done and not torch.equal(done[id(source)], order):
            raise GmnfxError(f"permute_model: BatchNorm module '{path}' is applied at two places that this "
                             f"symmetry permutes differently; its running statistics cannot follow both")
        done[id(source)] = order
        target = twin.get_submodule(path)
        with torch.no_grad():
            target.running_mean.copy_(source.running_mean[order])
            target.running_var.copy_(source.running_var[order])


def _batchnorm_module(model: nn.Module, path: str):
    try:
        module = model.get_submodule(path)
    except AttributeError:
        return None
    has_stats = isinstance(getattr(module, "running_mean", None), torch.Tensor) and isinstance(
        getattr(module, "running_var", None), torch.Tensor)
    return module if has_stats else None


def _layer_name(graph, layer: int) -> str:
    return graph.layers[layer]["name"] if 0 <= layer < len(graph.layers) else str(layer)


def _describe_node(graph, i: int) -> str:
    from gmnfx.schema import NodeType

    return f"{NodeType(int(graph.node_type[i])).name.lower()} node of layer '{_layer_name(graph, int(graph.node_layer[i]))}'"
