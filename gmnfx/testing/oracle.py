"""A brute-force automorphism count by VF2 search: the test oracle of ``gmnfx.symmetry``."""
from __future__ import annotations

from gmnfx.errors import GmnfxError
from gmnfx.schema import EDGE_FEATURES, NODE_FEATURES, EdgeCol, EdgeType, NodeCol, NodeType

__all__ = ["brute_force_group_order"]


def brute_force_group_order(graph, *, max_nodes: int = 40, limit: int = 200_000) -> int:
    """Number of automorphisms of a small ParameterGraph, by VF2 search (networkx).

    Independent of ``gmnfx.symmetry``: the oracle its ``group_order`` is tested against.
    An automorphism is a node permutation that keeps every node's features (except the
    BatchNorm running statistics ``norm_mean``/``norm_var``), every edge's type and
    features (except the parameter value; fixed weights of parameter-free edges count),
    fixes the INPUT and OUTPUT nodes, and maps tie groups (a parameter's edge and its
    TIED edges) onto tie groups. Tying is encoded by a gadget: each edge of a tie group
    becomes an edge node ``src -> m_e -> dst``, and a tie node per parameter points to its
    group's edge nodes; distinct restrictions to the original nodes are counted.

    Args:
        graph: a ``ParameterGraph``.
        max_nodes: refuse graphs with more nodes than this (default 40).
        limit: stop once more than this many automorphisms were enumerated (default 200_000).

    Raises:
        TypeError: ``graph`` is not a parameter graph.
        GmnfxError: the graph is too large, or has too many automorphisms.
    """
    if getattr(graph, "kind", None) != "parameter":
        raise TypeError(f"brute_force_group_order: expected a ParameterGraph (got {type(graph).__name__}); "
                        f"compile with graph=\"parameter\"")
    if graph.num_nodes > max_nodes:
        raise GmnfxError(f"brute_force_group_order: the graph has {graph.num_nodes} nodes, more than "
                         f"max_nodes={max_nodes}; VF2 search is only for small test graphs")
    from networkx.algorithms.isomorphism import DiGraphMatcher

    augmented = _tie_gadget_graph(graph)
    matcher = DiGraphMatcher(augmented, augmented, node_match=_same_colour, edge_match=_same_colour)
    restrictions = set()
    for enumerated, mapping in enumerate(matcher.isomorphisms_iter(), start=1):
        if enumerated > limit:
            raise GmnfxError(f"brute_force_group_order: more than limit={limit} automorphisms enumerated "
                             f"on a graph with {graph.num_nodes} nodes; pass a larger limit= or a smaller graph")
        restrictions.add(tuple(mapping[i] for i in range(graph.num_nodes)))
    return len(restrictions)


def _same_colour(a: dict, b: dict) -> bool:
    return a["colour"] == b["colour"]


def _node_colours(graph) -> list:
    """Per node: its features without the BatchNorm statistics, plus its id for INPUT/OUTPUT nodes."""
    keep = [c for c in range(len(NODE_FEATURES)) if c not in (NodeCol.NORM_MEAN, NodeCol.NORM_VAR)]
    rows = graph.node_feat[:, keep].tolist()
    fixed = (NodeType.INPUT, NodeType.OUTPUT)
    return [tuple(row) + ((i,) if t in fixed else ()) for i, (row, t) in enumerate(zip(rows, graph.node_type.tolist()))]


def _edge_colours(graph) -> list:
    """Per edge: its features without the value, plus the fixed weight of parameter-free non-TIED edges."""
    keep = [c for c in range(len(EDGE_FEATURES)) if c != EdgeCol.VALUE]
    rows = graph.edge_feat[:, keep].tolist()
    fixed = ((graph.edge_param == -1) & (graph.edge_type != EdgeType.TIED)).tolist()
    weights = graph.edge_weight.tolist()
    return [tuple(row) + ((1.0, w) if f else (0.0, 0.0)) for row, f, w in zip(rows, fixed, weights)]


def _tie_groups(graph) -> dict:
    """{flat parameter index: [edges carrying it]} for every parameter with at least one TIED edge."""
    tied = graph.edge_tied.tolist()
    groups = {p: [] for p in set(tied) if p >= 0}
    for e, (p, t) in enumerate(zip(graph.edge_param.tolist(), tied)):
        if p in groups:
            groups[p].append(e)
        if t >= 0:
            groups[t].append(e)
    return groups


def _tie_gadget_graph(graph):
    """A ``networkx.DiGraph`` with coloured nodes/edges; parallel edges merged into sorted colour tuples."""
    import networkx as nx

    edge_colours = _edge_colours(graph)
    groups = _tie_groups(graph)
    in_group = {e for edges in groups.values() for e in edges}
    g = nx.DiGraph()
    g.add_nodes_from((i, {"colour": c}) for i, c in enumerate(_node_colours(graph)))
    merged = {}
    for e, (s, d) in enumerate(graph.edge_index.t().tolist()):
        if e in in_group:  # replaced by its edge node: src -> m_e -> dst
            g.add_node(("edge", e), colour=("edge", edge_colours[e]))
            g.add_edge(s, ("edge", e), colour=("into edge node",))
            g.add_edge(("edge", e), d, colour=("out of edge node",))
        else:
            merged.setdefault((s, d), []).append(edge_colours[e])
    g.add_edges_from((s, d, {"colour": tuple(sorted(cs))}) for (s, d), cs in merged.items())
    for p, edges in groups.items():
        g.add_node(("tie", p), colour=("tie",))
        g.add_edges_from((("tie", p), ("edge", e), {"colour": ("tie",)}) for e in edges)
    return g
