"""The coloured graph whose automorphisms are a parameter graph's symmetries.

Node colours are the structural node features (everything but BatchNorm running
statistics), with the network's input and output neurons individualized. Edge
colours are the structural edge features: type, block attributes (layer,
kernel, stride, ..., operand), position, and for parameter-free edges their
fixed weight. Parameter values are not colours: they are what a symmetry moves.

Weight tying adds structure. A tied parameter sits on one edge and is repeated by
TIED edges; a symmetry must send every tie group onto a tie group. When the uses
of one tied block correspond endpoint by endpoint (a bijection between the
owner's sources and the use's sources, or its destinations, as for a layer applied
twice or an embedding reused as the output head), the tie is exactly a set of
*link* edges between corresponding endpoints. Otherwise each tie group becomes a
gadget: a node per edge of the group, joined to one node per tied parameter.

All colours are exact integer ranks (``torch.unique``), so equal colours mean
equal features, never a hash collision.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from gmnfx.schema import NODE_FEATURES, EdgeType, NodeType

__all__ = ["ColouredGraph", "coloured_graph", "edge_colours", "combine"]

_VALUE_NODE_FEATURES = ("norm_mean", "norm_var")  # BatchNorm running statistics: moved by symmetries
_STRUCTURAL_NODE_COLUMNS = [i for i, name in enumerate(NODE_FEATURES) if name not in _VALUE_NODE_FEATURES]

# kinds of edges in the coloured graph (part of every edge colour)
_REAL, _LINK_SRC, _LINK_DST, _LINK_CROSS_A, _LINK_CROSS_B, _GADGET_IN, _GADGET_OUT, _GADGET_TIE, _LOOP = range(9)


@dataclass
class ColouredGraph:
    """A directed graph with exact node and edge colours; nodes ``>= num_real`` are tie gadgets."""

    num_nodes: int
    num_real: int
    colour: torch.Tensor  # [num_nodes] long
    src: torch.Tensor  # [E'] long
    dst: torch.Tensor
    ecol: torch.Tensor  # [E'] long: colour of the edge and of its multiplicity


def ranks(x: torch.Tensor) -> torch.Tensor:
    """Dense ranks of the values of a 1-d tensor (equal values, equal ranks; order kept)."""
    if x.numel() == 0:
        return x.long()
    if not x.dtype.is_floating_point:
        low, high = int(x.min()), int(x.max())
        if high - low < 4 * x.numel() + 1024:  # small range: a presence table instead of a sort
            present = torch.zeros(high - low + 1, dtype=torch.bool)
            present[x - low] = True
            return (torch.cumsum(present, 0) - 1)[x - low]
    return torch.unique(x, return_inverse=True)[1]


def combine(*columns: torch.Tensor) -> torch.Tensor:
    """Dense ranks of the rows ``(columns[0][i], columns[1][i], ...)`` in lexicographic order (exact).

    Integer columns with a small range are packed into one int64 key directly; a
    key about to overflow, and float columns, are first reduced to dense ranks.
    """
    limit = 1 << 62
    key, key_width = None, 1
    for column in columns:
        if column.dtype.is_floating_point or column.numel() == 0:
            column = ranks(column)
        low = int(column.min()) if column.numel() else 0
        width = int(column.max()) - low + 1 if column.numel() else 1
        if width >= limit:
            column = ranks(column)
            low, width = 0, int(column.max()) + 1
        if key is None:
            key, key_width = column - low, width
            continue
        if key_width * width >= limit:
            key = ranks(key)
            key_width = int(key.max()) + 1
        key = key * width + (column - low)
        key_width *= width
    return ranks(key)


def node_colours(graph) -> torch.Tensor:
    """Exact colour of every node: structural features, inputs and outputs individualized."""
    feat = graph.node_feat[:, _STRUCTURAL_NODE_COLUMNS].double()
    node_type = graph.node_type
    fixed = (node_type == NodeType.INPUT) | (node_type == NodeType.OUTPUT)
    identity = torch.where(fixed, torch.arange(graph.num_nodes), torch.full_like(node_type, -1))
    return combine(*feat.unbind(1), identity) if graph.num_nodes else torch.empty(0, dtype=torch.long)


def edge_colours(graph) -> torch.Tensor:
    """Exact colour of every edge: type, block attributes, position, and the weight of fixed edges."""
    if graph.num_edges == 0:
        return torch.empty(0, dtype=torch.long)
    block_colour = combine(*graph.block_attrs.double().unbind(1))[graph.edge_block]
    fixed = (graph.edge_param < 0) & (graph.edge_type != EdgeType.TIED)
    value = torch.zeros(graph.num_edges, dtype=torch.long)
    value[fixed] = ranks(graph.edge_weight[fixed].double()) + 1  # fixed weights are structure; parameters are not
    pos = graph.edge_pos
    if torch.equal(pos, pos.round()):  # integer offsets (always, today): pack them instead of sorting floats
        pos = pos.long()
    return combine(graph.edge_type, block_colour, *pos.unbind(1), value)


def coloured_graph(graph) -> ColouredGraph:
    """The coloured graph of a ``ParameterGraph``: exact colours, tie links or gadgets, folded multi-edges."""
    colour = node_colours(graph)
    ecol = edge_colours(graph)
    src, dst = graph.edge_index[0], graph.edge_index[1]
    kinds, sources, targets, bases = [torch.full_like(src, _REAL)], [src], [dst], [ecol]
    num_nodes = graph.num_nodes
    extra_colours = []

    tied = (graph.edge_type == EdgeType.TIED).nonzero().flatten()
    if tied.numel():
        links, gadget = _tie_structure(graph, ecol, tied, num_nodes, int(colour.max()) + 1 if colour.numel() else 0)
        for kind, a, b, base in links:
            kinds.append(torch.full_like(a, kind)), sources.append(a), targets.append(b), bases.append(base)
        if gadget is not None:
            gadget_colour, (kind, a, b, base) = gadget
            extra_colours.append(gadget_colour)
            kinds.append(kind), sources.append(a), targets.append(b), bases.append(base)
            num_nodes += gadget_colour.numel()

    colour = torch.cat([colour, *extra_colours])
    kind, src, dst, base = (torch.cat(x) for x in (kinds, sources, targets, bases))
    loop = src == dst  # a link from a node to itself: a colour of that node, carried by a private marker node
    if bool(loop.any()):
        markers = torch.arange(int(loop.sum())) + num_nodes
        marker_colour = int(colour.max()) + 1 + combine(kind[loop], base[loop])
        colour = torch.cat([colour, marker_colour])
        dst = dst.clone()
        dst[loop] = markers
        kind = torch.where(loop, torch.full_like(kind, _LOOP), kind)
        num_nodes += markers.numel()
    colour = ranks(colour)
    edge_colour = combine(kind, base) if bool((kind != _REAL).any()) else base
    src, dst, edge_colour = _fold_multi_edges(src, dst, edge_colour, num_nodes)
    return ColouredGraph(num_nodes, graph.num_nodes, colour, src, dst, edge_colour)


def _fold_multi_edges(src, dst, ecol, num_nodes: int):
    """One edge per (src, dst, colour), its multiplicity folded into the colour (exact)."""
    if src.numel() == 0:
        return src, dst, ecol
    width = int(ecol.max()) + 1
    if num_nodes * num_nodes * width < 1 << 62:
        key = (src * num_nodes + dst) * width + ecol
    else:
        key = combine(src, dst, ecol)
    sorted_key = torch.sort(key).values
    if not bool((sorted_key[1:] == sorted_key[:-1]).any()):
        return src, dst, ecol  # no parallel edges of one colour: nothing to fold
    first = torch.ones_like(key, dtype=torch.bool)
    order = torch.argsort(key, stable=True)
    first[1:] = sorted_key[1:] != sorted_key[:-1]
    group = torch.cumsum(first, 0) - 1
    counts = torch.bincount(group)
    keep = order[first]
    return src[keep], dst[keep], combine(ecol[keep], counts)


def _is_bijection(block: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per block id: whether ``a -> b`` is a well-defined injective map on that block's rows."""
    num_blocks = int(block.max()) + 1

    def distinct(*cols):  # number of distinct rows per block
        key = combine(block, *cols)
        block_of_key = torch.empty(int(key.max()) + 1, dtype=torch.long)
        block_of_key[key] = block
        return torch.bincount(block_of_key, minlength=num_blocks)

    pairs = distinct(a, b)
    return (distinct(a) == pairs) & (distinct(b) == pairs)


def _tie_structure(graph, ecol, tied, num_nodes: int, next_colour: int):
    """Link edges for ties whose uses correspond endpoint by endpoint; a gadget for the others."""
    owner_of = torch.full((graph.num_parameters + 1,), -1, dtype=torch.long)
    has_param = (graph.edge_param >= 0).nonzero().flatten()
    owner_of[graph.edge_param[has_param]] = has_param
    owner = owner_of[graph.edge_tied[tied]]
    if bool((owner < 0).any()):
        from gmnfx.errors import InvariantError

        bad = int(tied[owner < 0][0])
        raise InvariantError(f"TIED edge {bad} repeats parameter {int(graph.edge_tied[bad])}, which sits on no edge")
    src, dst = graph.edge_index
    block = combine(ecol[tied], ecol[owner])
    so, do, st, dt = src[owner], dst[owner], src[tied], dst[tied]
    straight = _is_bijection(block, so, st) & _is_bijection(block, do, dt)
    crossed = ~straight & _is_bijection(block, so, dt) & _is_bijection(block, do, st)
    straight_edge, crossed_edge = straight[block], crossed[block]
    links = [
        (_LINK_SRC, so[straight_edge], st[straight_edge], block[straight_edge]),
        (_LINK_DST, do[straight_edge], dt[straight_edge], block[straight_edge]),
        (_LINK_CROSS_A, so[crossed_edge], dt[crossed_edge], block[crossed_edge]),
        (_LINK_CROSS_B, do[crossed_edge], st[crossed_edge], block[crossed_edge]),
    ]
    rest = ~(straight_edge | crossed_edge)
    if not bool(rest.any()):
        return links, None
    return links, _tie_gadget(graph, ecol, tied[rest], owner[rest], num_nodes, next_colour)


def _tie_gadget(graph, ecol, tied, owner, num_nodes: int, next_colour: int):
    """A node per edge of each tie group, and a node per tied parameter joined to its group's edge nodes."""
    src, dst = graph.edge_index
    params = graph.edge_tied[tied]
    owners = torch.unique(owner)
    members = torch.cat([owners, tied])  # edges of the gadget's tie groups
    member_param = torch.cat([graph.edge_param[owners], params])
    is_owner = torch.cat([torch.ones_like(owners), torch.zeros_like(tied)])
    edge_node = torch.arange(members.numel()) + num_nodes
    tie_params, tie_index = torch.unique(member_param, return_inverse=True)
    tie_node = tie_index + num_nodes + members.numel()
    width = int(ecol.max()) + 1
    colour = torch.cat([next_colour + 1 + ecol[members], torch.full_like(tie_params, next_colour)])
    kind = torch.cat([torch.full_like(members, _GADGET_IN), torch.full_like(members, _GADGET_OUT),
                      torch.full_like(members, _GADGET_TIE)])
    a = torch.cat([src[members], edge_node, tie_node])
    b = torch.cat([edge_node, dst[members], edge_node])
    base = torch.cat([ecol[members], ecol[members], is_owner * width + ecol[members]])
    return colour, (kind, a, b, base)
